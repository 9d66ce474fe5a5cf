#!/usr/bin/env bash
# Side-by-side benchmarks on one local broker, in one run:
#   - the limit: a stateless transactional pass-through (`sendgate-bench passthrough`);
#   - the floor of sendgate's topology: the same pass-through through four
#     transactional hops in series, as an allowed intent passes the router
#     and three stages (`sendgate-bench passthrough --hops 4`);
#   - the peers, Kafka Streams applications with exactly_once_v2
#     (bench/streams-peer): `streams-peer` with the sender stage's windows
#     alone, `streams-peer-full` with the logic of sendgate's three keyed
#     stages (sender, recipient, recipient domain) and their repartitions;
#   - sendgate, at-least-once and exactly-once.
# For each: decisions per second over a backlog, its decisions checked by
# an independent recount (every limit held; the sender-only peer's counts
# exact), and latency at a fixed 50 % of its own maximum and at 1,000/s,
# ALLOWED and DEFERRED apart. Then sendgate's restore of a changelog of 1M and 10M keys
# against a plain read of it, with RSS and disk.
#
#   scripts/bench.sh            the full run; writes the results into docs/benchmarks.md
#   scripts/bench.sh --smoke    a short run (CI): checks correctness, writes nothing
#
# BENCH_PHASES (default "throughput latency restore scale"; the smoke run
# leaves out scale) runs some phases only;
# BENCH_RESULTS=DIR keeps the figures there, so phases run apart share a table.
#
# Exits non-zero when a system misses or repeats a decision, breaks a
# limit, or (sender-only peer) its counts differ from the recount; never on
# a timing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

MODE=full
[ "${1:-}" = "--smoke" ] && MODE=smoke
if [ "$MODE" = full ]; then
  N="${BENCH_INTENTS:-300000}"; LATENCY_SECS=30; KEYS="${BENCH_KEYS:-1000000 10000000}"
else
  N=3000; LATENCY_SECS=5; KEYS=20000
fi
SYSTEMS="${BENCH_SYSTEMS:-passthrough passthrough-4hops streams-peer streams-peer-full sendgate-alo sendgate-eos}"
SEED=20261124
FIXED_RATE="${BENCH_FIXED_RATE:-1000}"
LOW_RATE="${BENCH_LOW_RATE:-20}"
# Its own broker port unless told otherwise (the test script passes its own).
OWN_BROKER=0; [ -z "${KAFKA_PORT:-}" ] && OWN_BROKER=1
export KAFKA_PORT="${KAFKA_PORT:-19292}" KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19293}"
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" SENDGATE_API_ADDR="" SENDGATE_METRICS_ADDR=""
# Reconciliation off, as in bench/policy.toml: the peers do no such work.
export SENDGATE_RECONCILE_DELIVERIES=false
WORK="$(mktemp -d)"
R="${BENCH_RESULTS:-$WORK/results}"; mkdir -p "$R"
if [ "$MODE" = full ]; then DEFAULT_PHASES="throughput latency restore scale"; else DEFAULT_PHASES="throughput latency restore"; fi
PHASES="${BENCH_PHASES:-$DEFAULT_PHASES}"
phase() { [[ " $PHASES " == *" $1 "* ]]; }
RUN="$(date +%s)"
PID=""

"$REPO_ROOT/scripts/setup.sh"
build_release
if [[ " $SYSTEMS " == *" streams-peer"* ]] && { phase throughput || phase latency; }; then
  say "building the Kafka Streams peer"
  bench/streams-peer/run.sh --build-only
fi

started_broker=0
# Its own broker starts from empty data: every run adds namespaces (a day
# of full runs filled 35 GB). The last run's topics stay until then.
start_broker_unless_running
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  [ "$started_broker" = 1 ] && scripts/kafka.sh stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Short for the binary. The systems under test are started with the binary
# itself: a shell function in the background would put a subshell between $!
# and the process, and stopping $! would leave the process running.
sg() { "$SENDGATE_BIN" "$@"; }
sgb() { "$SENDGATE_BENCH_BIN" "$@"; }

# A fresh namespace with the topics and the benchmark policy.
prepare() {
  export SENDGATE_NAMESPACE="bench-$1-$RUN" SENDGATE_STATE_DIR="$WORK/state-$1"
  sg topics apply >/dev/null 2>&1
  sg policy apply bench/policy.toml >/dev/null
}

# Starts a system in the background; waits until it consumes.
start_system() {
  local system="$1" log="$R/$1-$2.log" ready_n=1
  case "$system" in
    passthrough) "$SENDGATE_BENCH_BIN" passthrough >"$log" 2>&1 & PID=$! ; ready="partitions assigned" ;;
    # One task per hop, as sendgate runs one task per stage; every hop must
    # have its partitions before the clock starts.
    passthrough-4hops) "$SENDGATE_BENCH_BIN" passthrough --hops 4 --tasks 1 >"$log" 2>&1 & PID=$! ; ready="partitions assigned" ; ready_n=4 ;;
    streams-peer) bench/streams-peer/run.sh --bootstrap "$SENDGATE_BOOTSTRAP" --namespace "$SENDGATE_NAMESPACE" --state-dir "$WORK/peer-$2" >"$log" 2>&1 & PID=$! ; ready="RUNNING" ;;
    # sendgate's own parking, and its bound: the same logic, the same work.
    streams-peer-full) bench/streams-peer/run.sh --logic full --parking sendgate --park-max 64 --bootstrap "$SENDGATE_BOOTSTRAP" --namespace "$SENDGATE_NAMESPACE" --state-dir "$WORK/peer-full-$2" >"$log" 2>&1 & PID=$! ; ready="RUNNING" ;;
    sendgate-alo) SENDGATE_PROCESSING_GUARANTEE=at_least_once "$SENDGATE_BIN" run >"$log" 2>&1 & PID=$! ; ready="sendgate running" ;;
    sendgate-eos) "$SENDGATE_BIN" run >"$log" 2>&1 & PID=$! ; ready="sendgate running" ;;
  esac
  local deadline=$((SECONDS + 120))
  until [ "$(grep -c "$ready" "$log")" -ge "$ready_n" ]; do
    [ $SECONDS -lt $DEADLINE_ALL ] && [ $SECONDS -lt $deadline ] || { tail -20 "$log"; echo "bench: $system did not start"; exit 1; }
    kill -0 "$PID" 2>/dev/null || { tail -20 "$log"; echo "bench: $system exited"; exit 1; }
    sleep 0.5
  done
}

# The throughput workload. First N/100 unsubscribes, which the system
# consumes before the backlog is loaded: preloaded together, a starting
# system fetches the partitions in no fixed order and could decide an
# intent before the unsubscribe appended ahead of it reached the stage
# that needs it (sendgate and Kafka Streams alike). Then N intents, each
# sender domain's in one partition, each recipient written to by one sender
# domain, with deliveries and opens beside them (they change no decision).
SUPPRESSED=$((N / 100))
consume_suppressions() {
  sgb load --intents 0 --seed "$SEED" --key-by-sender-domain --own-recipients --suppressed "$SUPPRESSED" >/dev/null
  start_system "$1" prefix
  sleep "${BENCH_PREFIX_SECS:-8}"
  stop_system
}
load_backlog() { sgb load --intents "$N" --seed "$SEED" --key-by-sender-domain --deliveries-only --own-recipients >/dev/null; }

# The recount of a system's decisions: its limits checked (`--check`: no
# window over its limit, no suppressed recipient written to, approvals
# held), and the counts per status of deciding each intent alone in turn,
# with the sender stage's guards alone for the sender-only peer (whose
# counts must equal them) and all three keyed stages for the others
# (sendgate and the full-logic peer park intents behind reservations in
# flight; a later intent can still take a place first, so their counts may
# differ a little, never over a limit). Non-zero on a broken limit, which
# the report turns into a failure.
recount_logic() { if [ "$1" = streams-peer ]; then echo sender; else echo full; fi; }
recount() { sgb recount --logic "$(recount_logic "$1")" --check >"$2" || true; }

# Peak resident memory of the running system, in MiB.
peak_rss_mib() { awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$PID/status" 2>/dev/null || echo 0; }

stop_system() {
  stop_and_reap "$PID"
  PID=""
}

DEADLINE_ALL=$((SECONDS + ${BENCH_DEADLINE_SECS:-5400}))
# The broker's process, for the CPU each system costs it per decision.
BROKER_PID="$(scripts/kafka.sh status | sed -n 's/^running: pid \([0-9]*\),.*/\1/p')"

phase throughput && say "throughput: $SUPPRESSED unsubscribes, then $N intents (and about $((N / 2)) delivery events) per system, preloaded"
for system in $SYSTEMS; do
  phase throughput || break
  prepare "$system"
  [[ "$system" == passthrough* ]] || consume_suppressions "$system"
  load_backlog
  sgb collect --expect "$N" --idle-secs 120 ${BROKER_PID:+--broker-pid "$BROKER_PID"} >"$R/$system.collect.json" &
  COLLECTOR=$!
  start_system "$system" tput
  wait "$COLLECTOR" || { echo "bench: collecting $system's decisions failed"; exit 1; }
  echo "{\"peak_rss_mib\": $(peak_rss_mib)}" >"$R/$system.rss.json"
  stop_system
  if [[ "$system" != passthrough* ]]; then recount "$system" "$R/$system.recount.json"; fi
  say "$system: $(cat "$R/$system.collect.json")"
done

phase latency && say "latency at 50 % of each system's maximum, $LATENCY_SECS s each"
for system in $SYSTEMS; do
  phase latency || break
  rate=$(python3 -c "import json; print(max(50, round(json.load(open('$R/$system.collect.json'))['rate'] / 2)))")
  # A smoke run's backlog is too small to measure a rate: keep it light.
  [ "$MODE" = smoke ] && rate=$((rate < FIXED_RATE ? rate : FIXED_RATE))
  prepare "$system-lat"
  start_system "$system" latency
  sgb latency --rate "$rate" --seconds "$LATENCY_SECS" --seed "$SEED" >"$R/$system.latency.json"
  stop_system
  say "$system: $(cat "$R/$system.latency.json")"
  # The same fixed rate for every system as well: at half of a backlog's
  # rate a system may already queue (a live stream comes in smaller batches).
  [ "$MODE" = smoke ] && continue
  prepare "$system-lat-fixed"
  start_system "$system" latency-fixed
  sgb latency --rate "$FIXED_RATE" --seconds "$LATENCY_SECS" --seed "$SEED" >"$R/$system.latency-fixed.json"
  stop_system
  say "$system at $FIXED_RATE/s: $(cat "$R/$system.latency-fixed.json")"
  # And a gentle stream, as one app's agents send: what a single decision
  # costs when nothing queues.
  prepare "$system-lat-low"
  start_system "$system" latency-low
  sgb latency --rate "$LOW_RATE" --seconds "$LATENCY_SECS" --seed "$SEED" >"$R/$system.latency-low.json"
  stop_system
  say "$system at $LOW_RATE/s: $(cat "$R/$system.latency-low.json")"
done

phase restore && say "restore and memory: sendgate with $KEYS active keys"
for keys in $KEYS; do
  phase restore || break
  prepare "restore-$keys"
  sgb fill-changelog --stage recipient --keys "$keys" >"$R/restore-$keys.fill.json"
  sgb read-rate stage.recipient.changelog >"$R/restore-$keys.raw.json"
  start_system sendgate-eos "restore-$keys"
  log="$R/sendgate-eos-restore-$keys.log"
  deadline=$((SECONDS + 1800))
  until grep -q "state restored from changelog stage=recipient partitions" "$log"; do
    [ $SECONDS -lt $deadline ] || { echo "bench: restore of $keys keys did not finish"; exit 1; }
    sleep 1
  done
  # Work on top of the restored state for a few seconds, then measure.
  sgb load --intents 2000 --seed 1 --deliveries-only >/dev/null
  sleep 5
  line=$(grep "state restored from changelog stage=recipient partitions" "$log" | tail -1)
  records=$(sed -n 's/.*records=\([0-9]*\).*/\1/p' <<<"$line")
  ms=$(sed -n 's/.*ms=\([0-9]*\).*/\1/p' <<<"$line")
  rss=$(awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$PID/status")
  disk=$(du -sm "$SENDGATE_STATE_DIR" | cut -f1)
  echo "{\"keys\": $keys, \"records\": $records, \"ms\": $ms, \"rss_mib\": $rss, \"peak_rss_mib\": $(peak_rss_mib), \"disk_mib\": $disk}" >"$R/restore-$keys.json"
  stop_system
  rm -rf "$SENDGATE_STATE_DIR"
  say "restore $keys: $(cat "$R/restore-$keys.json") raw: $(cat "$R/restore-$keys.raw.json")"
done

# Scale-out: the same backlog through one instance, then two in one group.
# Beside the rates, how busy the machine's cores were: with the broker and
# the instances on two cores, a second instance can only help if the first
# left cores idle.
cpu_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat; }
phase scale && say "scale-out: $N intents through one instance, then two"
for n in 1 2; do
  phase scale || break
  prepare "scale-$n"
  consume_suppressions sendgate-eos
  load_backlog
  sgb collect --expect "$N" --idle-secs 120 >"$R/scale-$n.collect.json" &
  COLLECTOR=$!
  read -r total0 idle0 < <(cpu_ticks)
  SCALE_PIDS=()
  for i in $(seq "$n"); do
    SENDGATE_INSTANCE_ID="s$i" SENDGATE_STATE_DIR="$WORK/state-scale-$n-$i" SENDGATE_METRICS_ADDR="" SENDGATE_API_ADDR="" \
      "$SENDGATE_BIN" run >"$R/scale-$n-$i.log" 2>&1 &
    SCALE_PIDS+=($!)
  done
  wait "$COLLECTOR" || { echo "bench: collecting the scale-out run's decisions failed"; exit 1; }
  read -r total1 idle1 < <(cpu_ticks)
  echo "{\"instances\": $n, \"cpu_busy\": $(python3 -c "print(round(1 - ($idle1 - $idle0) / max(1, $total1 - $total0), 3))")}" >"$R/scale-$n.cpu.json"
  for pid in "${SCALE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SCALE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  recount sendgate-eos "$R/scale-$n.recount.json"
  say "$n instance(s): $(cat "$R/scale-$n.collect.json") $(cat "$R/scale-$n.cpu.json")"
done

say "results"
python3 bench/report.py "$R" --mode "$MODE" --intents "$N" --systems "$SYSTEMS" --keys "$KEYS" --latency-secs "$LATENCY_SECS" --fixed-rate "$FIXED_RATE" --low-rate "$LOW_RATE" --write docs/benchmarks.md
