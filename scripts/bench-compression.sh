#!/usr/bin/env bash
# What each output compression (SENDGATE_COMPRESSION: none, lz4, zstd,
# snappy, gzip) costs and saves, on one local broker, in one run: for each
# codec, sendgate (exactly-once) decides a preloaded backlog of intents, and
# the run records
#   - decisions per second over the backlog (`sendgate-bench collect`'s rate);
#   - the CPU time the whole machine and the broker spent over that span;
#   - the bytes the broker holds for everything sendgate wrote: every topic
#     of the namespace but the inputs (intents, delivery, policies, commands),
#     that is decisions, alerts, dead letters, the stage topics and the
#     changelogs; and the changelogs apart.
# The inputs are written uncompressed (the load, the policy and the topics
# run with SENDGATE_COMPRESSION=none), so only sendgate's own output differs.
# Bytes are the sizes of the log segments (*.log): the record batches as the
# broker stores them. `du -sb` of the topic directories would add the
# active segments' index files, which the broker preallocates (10 MiB each,
# sparse) whatever the codec; the JSON has that figure too (output_dir_bytes).
#
# After one unmeasured warm-up run, every codec runs twice, the second
# round in the opposite order, to show the spread and any drift over the
# run; ratios are against `none` in the same round. One JSON line per run on stdout, then a table.
#
#   scripts/bench-compression.sh
#
# BENCH_INTENTS (default 100000) intents per run; BENCH_CODECS (default
# "none lz4 zstd snappy gzip") and BENCH_ROUNDS (default 2) choose the runs;
# BENCH_RESULTS=DIR keeps the logs and JSON there. SENDGATE_BIN names the
# binary; without it the release build in the cache is used if it exists
# (built otherwise). The binary is copied first, so a rebuild of the tree
# during the run does not mix binaries.
# Its own broker on port 19492 (controller 19493) unless KAFKA_PORT says
# otherwise; it starts from empty data and is stopped at the end.
#
# Exits non-zero when a run decided fewer than all intents; never on a timing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

N="${BENCH_INTENTS:-100000}"
CODECS="${BENCH_CODECS:-none lz4 zstd snappy gzip}"
ROUNDS="${BENCH_ROUNDS:-2}"
SEED=20261124
OWN_BROKER=0; [ -z "${KAFKA_PORT:-}" ] && OWN_BROKER=1
export KAFKA_PORT="${KAFKA_PORT:-19492}" KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19493}"
unset KAFKA_SECURE
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" SENDGATE_API_ADDR="" SENDGATE_METRICS_ADDR=""
# Reconciliation off, as in bench/policy.toml: the peers do no such work.
export SENDGATE_RECONCILE_DELIVERIES=false
# Everything but the system under test writes uncompressed.
export SENDGATE_COMPRESSION=none
WORK="$(mktemp -d)"
R="${BENCH_RESULTS:-$WORK/results}"; mkdir -p "$R"
TS="$(date +%s)"
PID=""
COLLECTOR=""
started_broker=0

cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  [ -n "$COLLECTOR" ] && kill "$COLLECTOR" 2>/dev/null || true
  [ "$started_broker" = 1 ] && scripts/kafka.sh stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cached_or_built_release
[ -x "$SENDGATE_BIN" ] || { echo "bench-compression: no binary at $SENDGATE_BIN"; exit 1; }
cp "$SENDGATE_BIN" "$WORK/sendgate"
cp "$SENDGATE_BENCH_BIN" "$WORK/sendgate-bench"
BIN="$WORK/sendgate"
sg() { "$BIN" "$@"; }
sgb() { "$WORK/sendgate-bench" "$@"; }

start_broker_unless_running
STATUS="$(scripts/kafka.sh status)" || { echo "bench-compression: no broker of ours on $SENDGATE_BOOTSTRAP: $STATUS"; exit 1; }
BROKER_PID="$(sed -n 's/^running: pid \([0-9]*\),.*/\1/p' <<<"$STATUS")"
BROKER_DATA="$(sed -n 's/.*, data \(.*\)$/\1/p' <<<"$STATUS")/data"
[ -n "$BROKER_PID" ] && [ -d "$BROKER_DATA" ] || { echo "bench-compression: cannot tell the broker's pid or data directory from: $STATUS"; exit 1; }

# The bytes the broker holds for a namespace, by kind of topic (JSON).
topic_bytes() {
  python3 - "$BROKER_DATA" "$1" <<'EOF'
import json, os, re, sys
data, ns = sys.argv[1], sys.argv[2]
inputs = {"intents", "delivery", "policies", "commands"}
pat = re.compile(re.escape(ns) + r"\.(.+)-(\d+)$")
b = dict(output_bytes=0, changelog_bytes=0, decisions_bytes=0, stage_bytes=0, input_bytes=0, output_dir_bytes=0, output_partitions=0)
for d in os.listdir(data):
    m = pat.match(d)
    if not m:
        continue
    topic, path = m.group(1), os.path.join(data, d)
    sizes = {f: os.stat(os.path.join(path, f)).st_size for f in os.listdir(path)}
    logs = sum(s for f, s in sizes.items() if f.endswith(".log"))
    if topic in inputs:
        b["input_bytes"] += logs
        continue
    b["output_bytes"] += logs
    b["output_dir_bytes"] += sum(sizes.values())
    b["output_partitions"] += 1
    if topic.endswith(".changelog"):
        b["changelog_bytes"] += logs
    elif topic == "decisions":
        b["decisions_bytes"] += logs
    elif topic.startswith("stage."):
        b["stage_bytes"] += logs
print(json.dumps(b))
EOF
}

stop_system() {
  stop_and_reap "$PID"
  PID=""
}

# One run: a fresh namespace, the backlog, sendgate with the codec.
run_one() {
  local codec="$1" round="$2" tag="$1-$2"
  export SENDGATE_NAMESPACE="bcomp-$codec-$round-$TS" SENDGATE_STATE_DIR="$WORK/state-$tag"
  sg topics apply >/dev/null 2>&1
  sg policy apply bench/policy.toml >/dev/null
  sgb load --intents "$N" --seed "$SEED" --key-by-sender-domain --deliveries-only --own-recipients >/dev/null
  sgb collect --expect "$N" --idle-secs 120 --broker-pid "$BROKER_PID" >"$R/$tag.collect.json" &
  COLLECTOR=$!
  local log="$R/$tag.log"
  SENDGATE_COMPRESSION="$codec" "$BIN" run >"$log" 2>&1 & PID=$!
  local deadline=$((SECONDS + 120))
  until grep -q "sendgate running" "$log"; do
    [ $SECONDS -lt $deadline ] || { tail -20 "$log"; echo "bench-compression: sendgate ($codec) did not start"; exit 1; }
    kill -0 "$PID" 2>/dev/null || { tail -20 "$log"; echo "bench-compression: sendgate ($codec) exited"; exit 1; }
    sleep 0.5
  done
  wait "$COLLECTOR" || { echo "bench-compression: collecting the decisions ($codec) failed"; exit 1; }
  COLLECTOR=""
  stop_system
  rm -rf "$SENDGATE_STATE_DIR"
  python3 - "$R/$tag.collect.json" "$codec" "$round" "$SENDGATE_NAMESPACE" "$N" "$(topic_bytes "$SENDGATE_NAMESPACE")" <<'EOF' | tee -a "$R/runs.jsonl"
import json, sys
c = json.load(open(sys.argv[1]))
codec, rnd, ns, n, b = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), json.loads(sys.argv[6])
d = max(1, c["distinct"])
print(json.dumps(dict(
    codec=codec, round=rnd, namespace=ns, intents=n, distinct=c["distinct"], missing=c["missing"], duplicates=c["duplicates"],
    seconds=round(c["seconds"], 3), rate=c["rate"],
    machine_cpu_seconds=round(c["machine_cpu_seconds"], 2), broker_cpu_seconds=round(c["broker_cpu_seconds"], 2),
    **b,
    bytes_per_decision=round(b["output_bytes"] / d, 1), changelog_bytes_per_decision=round(b["changelog_bytes"] / d, 1),
    machine_cpu_us_per_decision=round(c["machine_cpu_seconds"] * 1e6 / d, 1), broker_cpu_us_per_decision=round(c["broker_cpu_seconds"] * 1e6 / d, 1))))
EOF
}

say "compression: $N intents per run, codecs: $CODECS, $ROUNDS rounds, broker pid $BROKER_PID"
# A broker's first run is slower than the ones after it (its JIT and page
# cache warm up): one unmeasured run first, so `none` is not penalised for
# going first.
say "warm-up run (not measured)"
run_one none 0 >/dev/null
: >"$R/runs.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  order="$CODECS"
  # Every other round in the opposite order.
  [ $((round % 2)) = 0 ] && order="$(tr ' ' '\n' <<<"$CODECS" | grep . | tac | tr '\n' ' ')"
  for codec in $order; do
    say "round $round: $codec"
    run_one "$codec" "$round"
  done
done

say "results"
python3 - "$R/runs.jsonl" "$N" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2])
base = {r["round"]: r for r in runs if r["codec"] == "none"}
def ratio(r, k):
    b = base.get(r["round"])
    return f"{r[k] / b[k]:.2f}" if b and b[k] else "-"
cols = ["codec", "round", "dec/s", "x none", "out B/dec", "x none", "chlog B/dec", "x none", "machine us/dec", "x none", "broker us/dec"]
print(" | ".join(cols))
print(" | ".join("-" * len(c) for c in cols))
for r in sorted(runs, key=lambda r: (r["round"], r["codec"] != "none", r["codec"])):
    print(" | ".join(str(x) for x in [r["codec"], r["round"], int(r["rate"]), ratio(r, "rate"), r["bytes_per_decision"], ratio(r, "bytes_per_decision"),
        r["changelog_bytes_per_decision"], ratio(r, "changelog_bytes_per_decision"), r["machine_cpu_us_per_decision"], ratio(r, "machine_cpu_us_per_decision"),
        r["broker_cpu_us_per_decision"]]))
# Over the rounds: the mean, and the spread of the rate.
print()
print("codec | rounds | dec/s mean (min-max) | x none | out B/dec | x none | machine us/dec | x none")
print("----- | ------ | -------------------- | ------ | --------- | ------ | -------------- | ------")
mean = lambda xs: sum(xs) / len(xs)
by = {}
for r in runs:
    by.setdefault(r["codec"], []).append(r)
agg = {c: dict(rate=mean([r["rate"] for r in rs]), lo=min(r["rate"] for r in rs), hi=max(r["rate"] for r in rs),
               b=mean([r["bytes_per_decision"] for r in rs]), cpu=mean([r["machine_cpu_us_per_decision"] for r in rs]), k=len(rs)) for c, rs in by.items()}
nb = agg.get("none")
rel = lambda a, k: f"{a[k] / nb[k]:.2f}" if nb and nb[k] else "-"
for c, a in agg.items():
    print(f"{c} | {a['k']} | {a['rate']:.0f} ({a['lo']:.0f}-{a['hi']:.0f}) | {rel(a, 'rate')} | {a['b']:.1f} | {rel(a, 'b')} | {a['cpu']:.1f} | {rel(a, 'cpu')}")
short = [r for r in runs if r["distinct"] < n]
for r in short:
    print(f"bench-compression: {r['codec']} round {r['round']} decided {r['distinct']} of {n} intents")
sys.exit(1 if short else 0)
EOF
