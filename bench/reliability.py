"""Writes a fault-harness run's figures into docs/reliability.md, between
`<!-- faults:MODE:begin -->` and `<!-- faults:MODE:end -->` (added at the
end of the document the first time), with the command, machine and date.

    python3 bench/reliability.py DOC MODE SEED SECONDS FAULTS KILLS STOPS BROKER_RESTARTS JOINS RESULT FAILOVER
"""
import datetime
import os
import platform
import sys

doc, mode, seed, seconds, faults, kills, stops, restarts, joins, result, failover = sys.argv[1:12]
name = mode.lstrip("-")


def machine():
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return f"{os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}; broker, load generator and every instance on the same machine"


lines = [
    f"<!-- faults:{name}:begin -->",
    f"Command: `scripts/faults.sh {mode}` (FAULTS_SEED={seed}); {datetime.date.today().isoformat()}; {int(seconds) // 60} min {int(seconds) % 60} s.",
    f"Machine: {machine()}.",
    "",
    f"- Faults injected: {faults} ({kills} SIGKILLs, {stops} clean stops, {restarts} broker restarts); {joins} instances joined.",
]
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
