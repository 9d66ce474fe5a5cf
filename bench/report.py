#!/usr/bin/env python3
"""Turns the JSON figures of scripts/bench.sh into the results tables, checks
every system's decisions, and (with --write) puts the tables into the
benchmark document between its markers.

Exits 1 when a system missed or repeated a decision, or its counts per
status differ from the independent recount. Timings never fail it.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SCALE_BEGIN, SCALE_END = "<!-- bench:scale:begin -->", "<!-- bench:scale:end -->"


def write_block(path, begin, end, text, after=None):
    """Replaces the text between two markers in a document, or adds it
    (after the `after` marker if there is one, else at the end)."""
    doc = open(path).read()
    block = f"{begin}\n{text}\n{end}"
    if begin in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    elif after and after in doc:
        i = doc.index(after) + len(after)
        doc = f"{doc[:i]}\n\n{block}{doc[i:]}"
    else:
        doc = f"{doc.rstrip()}\n\n{block}\n"
    open(path, "w").write(doc)


def scale(r, a, failures):
    """The scale-out phase: one instance, then two, on the same backlog."""
    runs = [(n, load(f"{r}/scale-{n}.collect.json"), load(f"{r}/scale-{n}.cpu.json"), load(f"{r}/scale-{n}.recount.json")) for n in (1, 2)]
    if not all(c for _, c, _, _ in runs):
        return None
    out = [f"### Scale-out ({datetime.date.today().isoformat()})\n",
           f"Command: `BENCH_PHASES=scale scripts/bench.sh` (or the full run). The same backlog of {a.intents:,} intents, exactly-once, "
           f"through one sendgate instance and then two in one consumer group, on {machine()}, with the broker on the same cores.\n",
           "| instances | decisions/s | vs one | machine CPU busy | decisions checked |", "|---|---|---|---|---|"]
    one = runs[0][1].get("rate") or 1
    for n, c, cpu, rc in runs:
        ok = c.get("missing") == 0 and c.get("duplicates") == 0 and (rc or {}).get("status") == c.get("status")
        if not ok:
            failures.append(f"scale-out with {n}: missing {c.get('missing')}, repeated {c.get('duplicates')}, counts {c.get('status')} vs recount {(rc or {}).get('status')}")
        out.append(f"| {n} | {c.get('rate', 0):,.0f} | {c.get('rate', 0) / one:.2f}x | {(cpu or {}).get('cpu_busy', 0):.0%} | {'0 missing, 0 repeated; counts = recount' if ok else '**differ**'} |")
    two = runs[1][1].get("rate", 0) / one
    busy = (runs[0][2] or {}).get("cpu_busy", 0)
    out.append("")
    out.append(f"Goal: two instances at least 1.6x one where the cores allow it. Measured {two:.2f}x; " +
               ("met." if two >= 1.6 else f"not met: with one instance the machine's cores were already {busy:.0%} busy (broker, load reader and sendgate), so a second instance has no core to run on; it adds a second copy of every client and transaction instead."))
    return "\n".join(out)

COMMIT_INTERVAL_MS = 100


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]) // (1024 * 1024)
    except (OSError, StopIteration):
        mem = 0
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.system()} {platform.release()}"


def ms(us):
    return f"{us / 1000:.1f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--intents", type=int, required=True)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--latency-secs", required=True)
    ap.add_argument("--fixed-rate", type=int, default=1000)
    ap.add_argument("--write")
    a = ap.parse_args()
    r = a.results
    systems = a.systems.split()
    if not any(load(f"{r}/{s}.collect.json") for s in systems):
        systems = []  # a run of the scale-out phase alone
    failures, notes = [], []

    rows, tput = [], {}
    for s in systems:
        c = load(f"{r}/{s}.collect.json") or {}
        lat = load(f"{r}/{s}.latency.json") or {}
        fixed = load(f"{r}/{s}.latency-fixed.json") or {}
        rss = (load(f"{r}/{s}.rss.json") or {}).get("peak_rss_mib", 0)
        tput[s] = c.get("rate", 0)
        checks = []
        if c.get("missing", 1) != 0:
            failures.append(f"{s}: {c.get('missing')} intents without a decision")
        if c.get("duplicates", 1) != 0:
            failures.append(f"{s}: {c.get('duplicates')} repeated decisions")
        if not s.startswith("passthrough"):
            expected = (load(f"{r}/{s}.recount.json") or {}).get("status")
            if expected != c.get("status"):
                failures.append(f"{s}: counts per status {c.get('status')} differ from the recount {expected}")
            checks.append("counts = recount" if expected == c.get("status") else "**counts differ**")
        for run in (lat, fixed):
            # Not a correctness check: an overloaded system may still be
            # working when the latency run stops waiting (the throughput
            # run above checks that every intent gets its one decision).
            if run and run.get("received") != run.get("sent"):
                notes.append(f"{s}: latency run at {run.get('rate'):,.0f}/s: {run.get('sent', 0) - run.get('received', 0):,} of {run.get('sent', 0):,} decisions not out within 30 s of the last send (not counted in its percentiles)")
        checks.insert(0, "0 missing, 0 repeated" if c.get("missing") == 0 and c.get("duplicates") == 0 else "**missing or repeated**")
        status = ", ".join(f"{k} {v:,}" for k, v in sorted((c.get("status") or {}).items()))
        rows.append((s, c, lat, rss, "; ".join(checks), status, fixed))

    base = tput.get("passthrough") or 0
    out = []
    out.append(f"## Side by side ({datetime.date.today().isoformat()})\n")
    out.append(f"Command: `scripts/bench.sh{' --smoke' if a.mode == 'smoke' else ''}`. Machine: {machine()}; one local Apache Kafka broker "
               f"(KRaft, single node) on the same machine; every system against the same broker in the same run. "
               f"Workload: {a.intents:,} intents and about {a.intents // 2:,} delivery events (`sendgate load --key-by-sender-domain --deliveries-only`, "
               f"Zipf-skewed senders and recipients), preloaded, then each system works through the backlog; policy `bench/policy.toml`. "
               f"Latency: a fixed rate of half the system's own throughput, and {a.fixed_rate:,}/s for all, {a.latency_secs} s each, from each intent's scheduled send "
               f"to its decision being readable (read-committed), in an HdrHistogram.\n")
    out.append(f"| system | decisions/s | vs pass-through | p50 / p99 / p99.9 at half its rate | that rate | p50 / p99 / p99.9 at {a.fixed_rate:,}/s | peak RSS | decisions checked |")
    out.append("|---|---|---|---|---|---|---|---|")
    def pct(run):
        return " / ".join(ms(run[k]) for k in ("p50_us", "p99_us", "p999_us")) if run and "p50_us" in run else "-"
    for s, c, lat, rss, checks, _, fixed in rows:
        ratio = f"{c.get('rate', 0) / base:.2f}x" if base else "-"
        out.append(f"| {s} | {c.get('rate', 0):,.0f} | {ratio} | {pct(lat)} | {lat.get('rate', 0):,.0f}/s | {pct(fixed)} | {rss} MiB | {checks} |")
    out.append("")
    cpu_rows = [(s, c) for s, c, *_ in rows if c.get("machine_cpu_seconds") and c.get("distinct")]
    if cpu_rows:
        out.append("CPU per decision over the same backlog spans: the whole machine's busy time (every process on both cores), and the broker's share of it:\n")
        out.append("| system | machine CPU per decision | the broker's part | everything else (the system's own processes) |")
        out.append("|---|---|---|---|")
        for s, c in cpu_rows:
            n = c["distinct"]
            m, b = c["machine_cpu_seconds"] / n * 1e6, c.get("broker_cpu_seconds", 0) / n * 1e6
            out.append(f"| {s} | {m:.0f} µs | {b:.0f} µs | {m - b:.0f} µs |")
        out.append("")
    out.append("Decisions per status (each equal to `sendgate bench recount`, which recomputes them from the intents):\n")
    for s, _, _, _, _, status, _ in rows:
        out.append(f"- {s}: {status}")
    out.append("")

    restores = []
    for k in a.keys.split():
        rs, raw = load(f"{r}/restore-{k}.json"), load(f"{r}/restore-{k}.raw.json")
        if rs and raw:
            rate = rs["records"] / max(rs["ms"], 1) * 1000
            restores.append((int(k), rs, raw, rate))
    if restores:
        out.append("Restore of the recipient stage's changelog (one window counter per key) into an empty state directory, against a plain read-committed read of the same records; memory and disk of sendgate with those keys active, after a short load on top:\n")
        out.append("| active keys | restore | restore records/s | plain read records/s | restore / read | RSS | peak RSS | state on disk |")
        out.append("|---|---|---|---|---|---|---|---|")
        for k, rs, raw, rate in restores:
            out.append(f"| {k:,} | {rs['ms'] / 1000:.1f} s | {rate:,.0f} | {raw['rate']:,.0f} | {rate / raw['rate']:.0%} | {rs['rss_mib']} MiB | {rs['peak_rss_mib']} MiB | {rs['disk_mib']} MiB |")
        out.append("")

    eos, alo, peer = tput.get("sendgate-eos", 0), tput.get("sendgate-alo", 0), tput.get("streams-peer", 0)
    p99 = (load(f"{r}/sendgate-eos.latency.json") or {}).get("p99_us")
    p99_fixed = (load(f"{r}/sendgate-eos.latency-fixed.json") or {}).get("p99_us")
    goals = []
    if peer:
        goals.append(("exactly-once throughput at least 3x the Kafka Streams peer", f"{eos / peer:.2f}x", eos >= 3 * peer))
    if base:
        goals.append(("exactly-once throughput at least 50 % of the pass-through", f"{eos / base:.0%}", eos >= 0.5 * base))
    if alo:
        goals.append(("exactly-once at least 0.85x at-least-once", f"{eos / alo:.2f}x", eos >= 0.85 * alo))
    if p99 is not None:
        goals.append((f"p99 at 50 % load at most the commit interval + 15 ms ({COMMIT_INTERVAL_MS + 15} ms)", ms(p99) + (f" ({ms(p99_fixed)} at {a.fixed_rate:,}/s)" if p99_fixed else ""), p99 <= (COMMIT_INTERVAL_MS + 15) * 1000))
    if restores:
        k, rs, raw, rate = restores[-1]
        goals.append((f"restore at least 50 % of the plain read ({k:,} records)", f"{rate / raw['rate']:.0%}", rate >= 0.5 * raw["rate"]))
        goals.append((f"RSS under 1 GiB with {k:,} active keys", f"{rs['peak_rss_mib']} MiB peak", rs["peak_rss_mib"] < 1024))
    chain = tput.get("passthrough-4hops", 0)
    if chain and eos:
        chain_fixed = (load(f"{r}/passthrough-4hops.latency-fixed.json") or {}).get("p99_us")
        chain_p50 = (load(f"{r}/passthrough-4hops.latency-fixed.json") or {}).get("p50_us")
        p50_fixed = (load(f"{r}/sendgate-eos.latency-fixed.json") or {}).get("p50_us")
        if chain_fixed and p99_fixed and chain_p50 and p50_fixed:
            out.append(f"The floor of sendgate's longest path: the pass-through through four transactional hops in series (as an allowed intent passes the router and three stages), "
                       f"with no state and no decoding, had a p50 / p99 of {ms(chain_p50)} / {ms(chain_fixed)} at {a.fixed_rate:,}/s; sendgate's were {ms(p50_fixed)} / {ms(p99_fixed)} "
                       f"(most of its intents are deferred by the sender stage, two hops in). Each hop waits for the one before it to commit, about one {COMMIT_INTERVAL_MS} ms interval.\n")
    if a.mode == "smoke":
        out.append("Smoke run: the backlog is too small for its timings to mean anything; only the correctness checks count.\n")
    out.append("| goal | measured | met |")
    out.append("|---|---|---|")
    for g, m, ok in goals:
        out.append(f"| {g} | {m} | {'yes' if ok else '**no**'} |")
    out.append("")
    for n in notes:
        out.append(f"- {n}")
    if notes:
        out.append("")
    if failures:
        out.append("Correctness failures: " + "; ".join(failures) + "\n")

    scale_text = scale(r, a, failures)
    if scale_text:
        print(scale_text)
        if a.write and a.mode == "full":
            write_block(a.write, SCALE_BEGIN, SCALE_END, scale_text, after=END)
    if not any(load(f"{r}/{s}.collect.json") for s in systems):
        # Only the scale-out phase ran: the main table stays as it is.
        if failures:
            print("bench: correctness failures:\n  " + "\n  ".join(failures), file=sys.stderr)
            sys.exit(1)
        return
    text = "\n".join(out)
    print(text)
    if a.write and a.mode == "full":
        doc = open(a.write).read()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in doc:
            doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
        else:
            head, sep, rest = doc.partition("\n## ")
            doc = f"{head}\n{block}\n{sep}{rest}" if sep else f"{doc}\n{block}\n"
        open(a.write, "w").write(doc)
        print(f"written to {a.write}", file=sys.stderr)
    if failures:
        print("bench: correctness failures:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
