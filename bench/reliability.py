"""Writes a fault-harness run's figures into docs/reliability.md, between
`<!-- faults:MODE:begin -->` and `<!-- faults:MODE:end -->` (added at the
end of the document the first time), with the command, machine and date.

    python3 bench/reliability.py DOC MODE SEED SECONDS FAULTS RESULT FAILOVER [DISK [UPGRADE_FROM]]

FAULTS is the harness's line of faults per kind; DISK its full-disk line;
UPGRADE_FROM the previous release's commit in a rolling upgrade.
"""
import datetime
import os
import platform
import sys

doc, mode, seed, seconds, faults, result, failover = sys.argv[1:8]
disk = sys.argv[8] if len(sys.argv) > 8 else ""
upgrade_from = sys.argv[9] if len(sys.argv) > 9 else ""
name = mode.lstrip("-")


def machine():
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return f"{os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}; three brokers, the TCP proxies, the load generator and every instance on the same machine"


lines = [
    f"<!-- faults:{name}:begin -->",
    f"Command: `scripts/faults.sh {mode}` (FAULTS_SEED={seed}); {datetime.date.today().isoformat()}; {int(seconds) // 60} min {int(seconds) % 60} s.",
    f"Machine: {machine()}.",
    "",
    f"- Faults injected: {faults}.",
]
if upgrade_from:
    lines.append(f"- Rolling upgrade: instances 1 and 2 started on the previous release ({upgrade_from[:12]}) beside this build and were replaced one at a time.")
if disk:
    lines.append(f"- {disk[0].upper()}{disk[1:]}.")
for r in result.strip().splitlines():
    lines.append(f"- Verified: {r.strip()}" if not r.startswith("  ") else f"  - {r.strip()}")
lines.append("- Failover, from the fault until every partition answered a probe:")
for f in failover.strip().splitlines():
    lines.append(f"  - {f.strip()}")
lines.append(f"<!-- faults:{name}:end -->")
block = "\n".join(lines)

text = open(doc).read() if os.path.exists(doc) else "# Reliability\n"
begin, end = f"<!-- faults:{name}:begin -->", f"<!-- faults:{name}:end -->"
if begin in text and end in text:
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(doc, "w").write(text)
print(f"wrote the {name} run's figures to {doc}")
