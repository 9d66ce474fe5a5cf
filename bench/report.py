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


def recount_check(s, c, rc, failures, exact):
    """The recount's verdict on one system's decisions: its limits held
    (always), and its counts per status equal to the sequential model's
    (`exact`: the sender-only peer, which has no later stage to release a
    reservation), or how far its ALLOWED count is from them."""
    rc = rc or {}
    expected, chk = rc.get("status"), rc.get("check")
    if not chk:
        failures.append(f"{s}: no recount check")
        return "**not checked**"
    broken = chk.get("over_limit", 1) + chk.get("suppressed_allowed", 1) + chk.get("paused_allowed", 1) + chk.get("approval_mismatches", 1)
    if broken:
        failures.append(f"{s}: {chk.get('over_limit')} windows over their limit, {chk.get('suppressed_allowed')} suppressed recipients written to, "
                        f"{chk.get('paused_allowed')} sends from paused mailboxes, {chk.get('approval_mismatches')} approvals not held as asked; e.g. {chk.get('examples')}")
        return "**limits broken**"
    verdict = f"limits held ({chk.get('windows', 0):,} windows)"
    if exact:
        if expected != c.get("status"):
            failures.append(f"{s}: counts per status {c.get('status')} differ from the recount {expected}")
            return verdict + "; **counts differ**"
        return verdict + "; counts = recount"
    got, want = (c.get("status") or {}).get("ALLOWED", 0), (expected or {}).get("ALLOWED", 0)
    return verdict + f"; ALLOWED {got - want:+,} ({(got - want) / max(want, 1):+.2%}) vs one at a time"


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
        if c.get("missing") != 0 or c.get("duplicates") != 0:
            failures.append(f"scale-out with {n}: missing {c.get('missing')}, repeated {c.get('duplicates')}")
        checked = recount_check(f"scale-out with {n}", c, rc, failures, exact=False)
        out.append(f"| {n} | {c.get('rate', 0):,.0f} | {c.get('rate', 0) / one:.2f}x | {(cpu or {}).get('cpu_busy', 0):.0%} | {c.get('missing')} missing, {c.get('duplicates')} repeated; {checked} |")
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
    ap.add_argument("--low-rate", type=int, default=20)
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
        low = load(f"{r}/{s}.latency-low.json") or {}
        rss = (load(f"{r}/{s}.rss.json") or {}).get("peak_rss_mib", 0)
        tput[s] = c.get("rate", 0)
        checks = []
        if c.get("missing", 1) != 0:
            failures.append(f"{s}: {c.get('missing')} intents without a decision")
        if c.get("duplicates", 1) != 0:
            failures.append(f"{s}: {c.get('duplicates')} repeated decisions")
        if not s.startswith("passthrough"):
            checks.append(recount_check(s, c, load(f"{r}/{s}.recount.json"), failures, exact=(s == "streams-peer")))
        for run in (lat, fixed, low):
            # Not a correctness check: an overloaded system may still be
            # working when the latency run stops waiting (the throughput
            # run above checks that every intent gets its one decision).
            if run and run.get("received") != run.get("sent"):
                notes.append(f"{s}: latency run at {run.get('rate'):,.0f}/s: {run.get('sent', 0) - run.get('received', 0):,} of {run.get('sent', 0):,} decisions not out within 30 s of the last send (not counted in its percentiles)")
        checks.insert(0, "0 missing, 0 repeated" if c.get("missing") == 0 and c.get("duplicates") == 0 else "**missing or repeated**")
        status = ", ".join(f"{k} {v:,}" for k, v in sorted((c.get("status") or {}).items()))
        rows.append((s, c, lat, rss, "; ".join(checks), status, fixed, low))

    base = tput.get("passthrough") or 0
    out = []
    out.append(f"## Side by side ({datetime.date.today().isoformat()})\n")
    out.append(f"Command: `scripts/bench.sh{' --smoke' if a.mode == 'smoke' else ''}`. Machine: {machine()}; one local Apache Kafka broker "
               f"(KRaft, single node) on the same machine; every system against the same broker in the same run. "
               f"Workload: {a.intents // 100:,} unsubscribes (`sendgate-bench load --intents 0 --suppressed {a.intents // 100}`), consumed by the system before the backlog is loaded, "
               f"then {a.intents:,} intents and about {a.intents // 2:,} delivery events (`sendgate-bench load --key-by-sender-domain --deliveries-only --own-recipients`, "
               f"Zipf-skewed senders and recipients, each recipient written to by one sender domain), preloaded, then each system works through the backlog; policy `bench/policy.toml`. "
               f"`streams-peer` is the Kafka Streams peer with the sender stage's guards alone, `streams-peer-full` the one with the logic of sendgate's three keyed stages and its parking (bench/streams-peer/README.md). "
               f"Latency: a fixed rate of half the system's own throughput, {a.fixed_rate:,}/s and {a.low_rate:,}/s for all, {a.latency_secs} s each, from each intent's scheduled send "
               f"to its decision being readable (read-committed), in an HdrHistogram.\n")
    out.append(f"| system | decisions/s | vs pass-through | p50 / p99 / p99.9 at half its rate | that rate | p50 / p99 / p99.9 at {a.fixed_rate:,}/s | at {a.low_rate:,}/s | peak RSS | decisions checked |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    def pct(run):
        return " / ".join(ms(run[k]) for k in ("p50_us", "p99_us", "p999_us")) if run and "p50_us" in run else "-"

    def part(run, status):
        # `sendgate-bench latency` reports ALLOWED and DEFERRED apart when it
        # read the decisions' status; older figures have neither.
        p = (run or {}).get(status) or {}
        if not p.get("count"):
            return "-"
        return f"{ms(p.get('p50_us', 0))} / {ms(p.get('p99_us', 0))} ({p['count']:,})"
    for s, c, lat, rss, checks, _, fixed, low in rows:
        ratio = f"{c.get('rate', 0) / base:.2f}x" if base else "-"
        out.append(f"| {s} | {c.get('rate', 0):,.0f} | {ratio} | {pct(lat)} | {lat.get('rate', 0):,.0f}/s | {pct(fixed)} | {pct(low)} | {rss} MiB | {checks} |")
    out.append("")
    by_outcome = [(s, lat, fixed, low) for s, c, lat, rss, checks, _, fixed, low in rows if any(run and ("allowed" in run or "deferred" in run) for run in (lat, fixed, low))]
    if by_outcome:
        out.append("Latency by outcome (p50 / p99, and how many decisions): an ALLOWED intent passes every stage of sendgate and of streams-peer-full (at streams-peer, the only stage), a DEFERRED one mostly stops at the sender stage:\n")
        out.append(f"| system | ALLOWED at half its rate | DEFERRED at half its rate | ALLOWED at {a.fixed_rate:,}/s | DEFERRED at {a.fixed_rate:,}/s | ALLOWED at {a.low_rate:,}/s | DEFERRED at {a.low_rate:,}/s |")
        out.append("|---|---|---|---|---|---|---|")
        for s, lat, fixed, low in by_outcome:
            out.append(f"| {s} | {part(lat, 'allowed')} | {part(lat, 'deferred')} | {part(fixed, 'allowed')} | {part(fixed, 'deferred')} | {part(low, 'allowed')} | {part(low, 'deferred')} |")
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
    out.append("Decisions per status; `sendgate-bench recount` recomputes them from the input topics deciding each intent alone in turn (`--logic sender` for streams-peer, `--logic full` for the others) and checks every system's decisions against the limits:\n")
    for s, _, _, _, _, status, _, _ in rows:
        seq = (load(f"{r}/{s}.recount.json") or {}).get("status")
        out.append(f"- {s}: {status}" + (f" (one at a time: {', '.join(f'{k} {v:,}' for k, v in sorted(seq.items()))})" if seq else ""))
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

    eos, alo = tput.get("sendgate-eos", 0), tput.get("sendgate-alo", 0)
    peer, peer_full = tput.get("streams-peer", 0), tput.get("streams-peer-full", 0)
    p99 = (load(f"{r}/sendgate-eos.latency.json") or {}).get("p99_us")
    p99_fixed = (load(f"{r}/sendgate-eos.latency-fixed.json") or {}).get("p99_us")
    goals = []
    if peer_full and eos:
        goals.append(("exactly-once backlog throughput at least 2x the Kafka Streams peer with the same logic (streams-peer-full)", f"{eos / peer_full:.2f}x", eos >= 2 * peer_full))
    if peer and eos:
        goals.append(("exactly-once backlog throughput at least 1.3x the Kafka Streams peer with the sender stage alone (streams-peer)", f"{eos / peer:.2f}x", eos >= 1.3 * peer))
    ratios = [f"{name} {rate / p:.2f}x {label}" for name, rate in (("exactly-once", eos), ("at-least-once", alo)) if rate
              for label, p in (("streams-peer-full", peer_full), ("streams-peer", peer)) if p]
    if ratios:
        out.append("sendgate's throughput against the Kafka Streams peers: " + ", ".join(ratios) + ".\n")
    if alo:
        goals.append(("exactly-once at least 0.9x at-least-once", f"{eos / alo:.2f}x", eos >= 0.9 * alo))
    for name, rate in ((f"{a.fixed_rate:,}/s", "latency-fixed"), (f"{a.low_rate:,}/s", "latency-low")):
        allowed = ((load(f"{r}/sendgate-eos.{rate}.json") or {}).get("allowed") or {})
        if allowed.get("count"):
            goals.append((f"at {name}, ALLOWED intents (every stage): p50 at most 50 ms", ms(allowed["p50_us"]), allowed["p50_us"] <= 50_000))
            goals.append((f"at {name}, ALLOWED intents: p99 at most 150 ms", ms(allowed["p99_us"]), allowed["p99_us"] <= 150_000))
    eos_c = next((c for s, c, *_ in rows if s == "sendgate-eos"), {})
    if eos_c.get("machine_cpu_seconds") and eos_c.get("distinct"):
        us = eos_c["machine_cpu_seconds"] / eos_c["distinct"] * 1e6
        goals.append(("CPU per decision (machine and broker) at most 60 µs", f"{us:.0f} µs", us <= 60))
    if restores:
        k, rs, raw, rate = restores[-1]
        goals.append((f"restore at least 60 % of the plain read ({k:,} records)", f"{rate / raw['rate']:.0%}", rate >= 0.6 * raw["rate"]))
        goals.append((f"RSS under 1 GiB with {k:,} active keys", f"{rs['peak_rss_mib']} MiB peak", rs["peak_rss_mib"] < 1024))
    chain = tput.get("passthrough-4hops", 0)
    if chain and eos:
        chain_fixed = (load(f"{r}/passthrough-4hops.latency-fixed.json") or {}).get("p99_us")
        chain_p50 = (load(f"{r}/passthrough-4hops.latency-fixed.json") or {}).get("p50_us")
        p50_fixed = (load(f"{r}/sendgate-eos.latency-fixed.json") or {}).get("p50_us")
        if chain_fixed and p99_fixed and chain_p50 and p50_fixed:
            out.append(f"The floor of sendgate's longest path: the pass-through through four transactional hops in series (as an allowed intent passes the router and three stages), "
                       f"with no state and no decoding, had a p50 / p99 of {ms(chain_p50)} / {ms(chain_fixed)} at {a.fixed_rate:,}/s; sendgate's were {ms(p50_fixed)} / {ms(p99_fixed)} "
                       f"(most of its intents are deferred by the sender stage, two hops in). Each hop waits for the one before it to commit: at once when it has read all there is, else at the {COMMIT_INTERVAL_MS} ms interval.\n")
    if a.mode == "smoke":
        out.append("Smoke run: the backlog is too small for its timings to mean anything; only the correctness checks count.\n")
    if goals:
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
