#!/usr/bin/env bash
# Two builds of sendgate side by side on one local broker, alternating
# (A B A B ...), at a fixed rate: the latency of ALLOWED and DEFERRED
# intents from `sendgate-bench latency`, and the machine's CPU time and
# context switches per decision over each run (from /proc/stat). For a
# change on the per-decision path, measured against the build before it.
#
#   scripts/bench-ab.sh BIN_A BIN_B [RATE] [SECONDS] [ROUNDS]
#                                   (defaults 1000, 20, 2)
#
# Prints one JSON line per run and a summary of medians. Never fails on a
# timing. Uses its own broker port (19392) and the benchmark policy.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"
[ $# -ge 2 ] || { echo "usage: scripts/bench-ab.sh BIN_A BIN_B [RATE] [SECONDS] [ROUNDS]" >&2; exit 2; }
A="$1"; B="$2"; RATE="${3:-1000}"; SECS="${4:-20}"; ROUNDS="${5:-2}"
for bin in "$A" "$B"; do [ -x "$bin" ] || { echo "bench-ab: $bin is not an executable" >&2; exit 2; }; done
[ -x "$SENDGATE_BENCH_BIN" ] || { echo "bench-ab: $SENDGATE_BENCH_BIN is missing: build first (cargo build --release --bins)" >&2; exit 2; }
export KAFKA_PORT=19392 KAFKA_CONTROLLER_PORT=19393
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" SENDGATE_API_ADDR="" SENDGATE_METRICS_ADDR=""
export SENDGATE_RECONCILE_DELIVERIES=false
start_own_broker_and_workdir
# busy and total jiffies, and context switches, of the whole machine
stat_now() { awk '/^cpu / {b=$2+$3+$4+$7+$8; t=b+$5+$6} /^ctxt/ {c=$2} END {print b, t, c}' /proc/stat; }
RUN="$(date +%s)"
for round in $(seq 1 "$ROUNDS"); do
  for label in A B; do
    bin="$A"; [ "$label" = B ] && bin="$B"
    export SENDGATE_NAMESPACE="ab-$label-$round-$RUN" SENDGATE_STATE_DIR="$WORK/state-$label-$round"
    "$bin" topics apply >/dev/null 2>&1
    "$bin" policy apply bench/policy.toml >/dev/null
    log="$WORK/$label-$round.log"
    "$bin" run >"$log" 2>&1 & PID=$!
    deadline=$((SECONDS + 120))
    until grep -qs "sendgate running" "$log"; do
      [ $SECONDS -lt $deadline ] && kill -0 "$PID" 2>/dev/null || { tail -20 "$log"; echo "bench-ab: $bin did not start"; exit 1; }
      sleep 0.5
    done
    read -r b0 t0 c0 < <(stat_now)
    lat=$("$SENDGATE_BENCH_BIN" latency --rate "$RATE" --seconds "$SECS" --seed 5)
    read -r b1 t1 c1 < <(stat_now)
    stop_and_reap "$PID"; PID=""
    python3 - "$label" "$round" "$lat" "$((b1 - b0))" "$((c1 - c0))" "$(getconf CLK_TCK)" <<'PY' | tee -a "$WORK/runs.jsonl"
import json, sys
label, rnd, lat, busy, ctxt, hz = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
n = max(lat["received"], 1)
print(json.dumps({"build": label, "round": int(rnd), "received": lat["received"],
    "allowed_p50_ms": lat["allowed"]["p50_us"] / 1000, "allowed_p99_ms": lat["allowed"]["p99_us"] / 1000,
    "deferred_p50_ms": lat["deferred"]["p50_us"] / 1000, "deferred_p99_ms": lat["deferred"]["p99_us"] / 1000,
    "machine_cpu_us_per_decision": round(busy / hz * 1e6 / n, 1), "context_switches_per_decision": round(ctxt / n, 1)}))
PY
  done
done
# (The runs are written with tee inside the loop, not by piping the loop:
# a piped loop runs in a subshell, and the exit trap would not see $PID.)
python3 - "$WORK/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
keys = ["allowed_p50_ms", "allowed_p99_ms", "deferred_p50_ms", "deferred_p99_ms", "machine_cpu_us_per_decision", "context_switches_per_decision"]
med = {b: {k: statistics.median(r[k] for r in runs if r["build"] == b) for k in keys} for b in "AB"}
for k in keys:
    a, b = med["A"][k], med["B"][k]
    print(f"{k:32} A {a:10.1f}  B {b:10.1f}  B/A {b / a if a else float('nan'):.2f}x")
PY
