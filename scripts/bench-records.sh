#!/usr/bin/env bash
# What two builds of sendgate write per intent, on the same backlog: the
# records (end offsets, transaction markers included) and the bytes on disk
# (compressed batches, as the broker keeps them) of each internal topic and
# of the decisions, per intent decided. For a change to what a stage writes,
# measured against the build before it. The stage topics' record counts do
# not depend on timing; the changelogs' do a little (a key written several
# times in one transaction reaches its changelog once), and so do the bytes
# (how records fall into compressed batches).
#
#   scripts/bench-records.sh BIN_A BIN_B [INTENTS]     (default 20000)
#
# Workload: INTENTS/100 unsubscribes, consumed first, then INTENTS intents
# and their deliveries and opens preloaded (`sendgate-bench load
# --key-by-sender-domain --deliveries-only --own-recipients`, seed 7), the
# benchmark policy, exactly-once. Each build gets a fresh namespace on its
# own broker (port 19492). Prints a table and the ratios B / A.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"
[ $# -ge 2 ] || { echo "usage: scripts/bench-records.sh BIN_A BIN_B [INTENTS]" >&2; exit 2; }
A="$1"; B="$2"; N="${3:-20000}"
for bin in "$A" "$B"; do [ -x "$bin" ] || { echo "bench-records: $bin is not an executable" >&2; exit 2; }; done
[ -x "$SENDGATE_BENCH_BIN" ] || { echo "bench-records: $SENDGATE_BENCH_BIN is missing: build first (cargo build --release --bins)" >&2; exit 2; }
export KAFKA_PORT=19492 KAFKA_CONTROLLER_PORT=19493
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" SENDGATE_API_ADDR="" SENDGATE_METRICS_ADDR=""
export SENDGATE_RECONCILE_DELIVERIES=false
CACHE_ROOT="${SENDGATE_CACHE:-$HOME/.cache/sendgate}"
DATA="${KAFKA_DATA_DIR:-$CACHE_ROOT/kafka-data-$KAFKA_PORT}/data"
LIBS="$CACHE_ROOT/kafka-${KAFKA_VERSION:-4.1.2}/lib"
start_own_broker_and_workdir
RUN="$(date +%s)"

started() {
  local log="$1" deadline=$((SECONDS + 120))
  until grep -qs "sendgate running" "$log"; do
    [ $SECONDS -lt $deadline ] && kill -0 "$PID" 2>/dev/null || { tail -20 "$log"; echo "bench-records: sendgate did not start"; exit 1; }
    sleep 0.5
  done
}

for label in A B; do
  bin="$A"; [ "$label" = B ] && bin="$B"
  ns="rec-$label-$RUN"
  export SENDGATE_NAMESPACE="$ns" SENDGATE_STATE_DIR="$WORK/state-$label"
  "$bin" topics apply >/dev/null
  "$bin" policy apply bench/policy.toml >/dev/null
  "$SENDGATE_BENCH_BIN" load --intents 0 --seed 7 --key-by-sender-domain --own-recipients --suppressed $((N / 100)) >/dev/null
  "$bin" run >"$WORK/$label.log" 2>&1 & PID=$!
  started "$WORK/$label.log"
  sleep 8
  "$SENDGATE_BENCH_BIN" load --intents "$N" --seed 7 --key-by-sender-domain --deliveries-only --own-recipients >/dev/null
  "$SENDGATE_BENCH_BIN" collect --expect "$N" --idle-secs 120 >"$WORK/$label.collect.json"
  # Let the last releases and changelog writes commit.
  sleep 5
  stop_and_reap "$PID"; PID=""
  java -cp "$LIBS/*" org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$SENDGATE_BOOTSTRAP" --topic "$ns\\..*" 2>/dev/null >"$WORK/$label.offsets"
  for dir in "$DATA/$ns".*; do
    [ -d "$dir" ] || continue
    # The log segments alone (the index files are preallocated).
    printf '%s %s\n' "$(basename "$dir")" "$(find "$dir" -name '*.log' -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
  done >"$WORK/$label.bytes"
  say "$label: $(cat "$WORK/$label.collect.json")"
done

python3 - "$WORK" "$N" "rec-A-$RUN" "rec-B-$RUN" <<'PY'
import collections, json, os, re, sys
work, n, ns_a, ns_b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def load(label, ns):
    recs, size = collections.Counter(), collections.Counter()
    for line in open(os.path.join(work, f"{label}.offsets")):
        topic, _, end = line.strip().rpartition(":")
        topic = topic.rpartition(":")[0]
        if topic.startswith(ns + "."):
            recs[topic[len(ns) + 1:]] += int(end)
    for line in open(os.path.join(work, f"{label}.bytes")):
        d, b = line.split()
        topic = re.sub(r"-\d+$", "", d)[len(ns) + 1:]
        size[topic] += int(b)
    return recs, size
ra, sa = load("A", ns_a)
rb, sb = load("B", ns_b)
rows = [t for t in sorted(set(ra) | set(rb)) if t.startswith("stage.") or t == "decisions"]
print(f"{'topic':34} {'records/intent A':>17} {'B':>8} {'B/A':>6} {'bytes/intent A':>15} {'B':>8} {'B/A':>6}")
def row(name, a_r, b_r, a_b, b_b):
    ratio = lambda x, y: f"{y / x:.2f}x" if x else "-"
    print(f"{name:34} {a_r / n:17.2f} {b_r / n:8.2f} {ratio(a_r, b_r):>6} {a_b / n:15.0f} {b_b / n:8.0f} {ratio(a_b, b_b):>6}")
for t in rows:
    row(t, ra[t], rb[t], sa[t], sb[t])
stage = [t for t in rows if t.startswith("stage.")]
row("every stage topic and changelog", sum(ra[t] for t in stage), sum(rb[t] for t in stage), sum(sa[t] for t in stage), sum(sb[t] for t in stage))
PY
