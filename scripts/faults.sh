#!/usr/bin/env bash
# The fault-injection harness, after Kafka's own exactly-once system test:
# a seeded workload published in batches while up to three sendgate
# instances (one consumer group) are SIGKILLed, stopped cleanly, restarted,
# joined and left, and the broker is restarted; then `sendgate bench verify`
# reads every decision read-committed and recomputes from the inputs what
# each must be: zero missing, zero duplicates, zero status or counter
# mismatches, or the run fails.
#
#   scripts/faults.sh                short (a few minutes): the test command runs it
#   scripts/faults.sh --long         30+ minutes, 1M+ intents, a fault every
#                                    30-120 s, a broker restart every 10 minutes;
#                                    writes its figures to docs/reliability.md
#   scripts/faults.sh --failover     failover time with and without standby
#                                    replicas; writes docs/reliability.md too
#
# After every fault a probe (one intent per partition) measures how long
# until every partition is answered again: the failover time.
#
# Env: FAULTS_SEED (default 20261124); KAFKA_PORT to use that broker (the
# test command passes its own), else one is started on 19392.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MODE="${1:---short}"
case "$MODE" in --short|--long|--failover) ;; *) echo "usage: scripts/faults.sh [--short|--long|--failover]" >&2; exit 2 ;; esac
SEED="${FAULTS_SEED:-20261124}"
RANDOM=$SEED

bash "$REPO_ROOT/scripts/setup.sh"
build_release

OWN_BROKER=0
if [ -z "${KAFKA_PORT:-}" ]; then
  export KAFKA_PORT=19392 KAFKA_CONTROLLER_PORT=19393
  OWN_BROKER=1
fi
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export SENDGATE_METRICS_ADDR="" SENDGATE_API_ADDR=""
WORK="$(mktemp -d)"
BROKER_STARTED=0
declare -A PIDS=()

cleanup() {
  for i in "${!PIDS[@]}"; do kill -9 "${PIDS[$i]}" 2>/dev/null || true; done
  [ -n "${LOADER:-}" ] && { pkill -P "$LOADER" 2>/dev/null; kill "$LOADER" 2>/dev/null; } || true
  [ "$BROKER_STARTED" = 1 ] && bash "$REPO_ROOT/scripts/kafka.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! bash "$REPO_ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then
  # Its own broker starts from empty data, so runs do not pile up on disk.
  [ "$OWN_BROKER" = 1 ] && bash "$REPO_ROOT/scripts/kafka.sh" wipe >/dev/null
  bash "$REPO_ROOT/scripts/kafka.sh" start
  BROKER_STARTED=1
fi

T0=$SECONDS
log() { printf '[faults %4ds] %s\n' $((SECONDS - T0)) "$*" | tee -a "$WORK/faults.log" >&2; }

# ------------------------------------------------------------ instances
start_inst() {
  local i=$1
  SENDGATE_INSTANCE_ID="i$i" SENDGATE_STATE_DIR="$WORK/state-$i" "$SENDGATE_BIN" run --no-create-topics >>"$WORK/inst-$i.log" 2>&1 &
  PIDS[$i]=$!
  log "instance $i started (pid ${PIDS[$i]})"
}
kill_inst() {
  local i=$1
  kill -9 "${PIDS[$i]}" 2>/dev/null || log "instance $i had already exited"
  wait "${PIDS[$i]}" 2>/dev/null || true
  unset "PIDS[$i]"
  log "instance $i SIGKILLed"
  FAULTS=$((FAULTS + 1)); KILLS=$((KILLS + 1))
}
stop_inst() {
  local i=$1 t=$SECONDS lines
  lines=$(wc -l <"$WORK/inst-$i.log")
  kill -TERM "${PIDS[$i]}" 2>/dev/null || log "instance $i had already exited"
  # A clean stop commits or aborts, writes the checkpoint and leaves the
  # group within the drain deadline; a minute means it hung.
  for _ in $(seq 600); do kill -0 "${PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "${PIDS[$i]}" 2>/dev/null; then
    log "instance $i did not stop within 60 s of SIGTERM"; kill -9 "${PIDS[$i]}"; HUNG=$((HUNG + 1))
  fi
  local rc=0; wait "${PIDS[$i]}" 2>/dev/null || rc=$?
  unset "PIDS[$i]"
  # Every task (the router and four stages) stops cleanly, and the process exits 0.
  local clean; clean=$(tail -n +"$((lines + 1))" "$WORK/inst-$i.log" | grep -c "task stopped cleanly" || true)
  if [ "$rc" != 0 ] || [ "$clean" -lt 5 ]; then log "instance $i: exit $rc, $clean of 5 tasks stopped cleanly"; HUNG=$((HUNG + 1)); fi
  log "instance $i stopped by SIGTERM in $((SECONDS - t)) s (exit $rc)"
  FAULTS=$((FAULTS + 1)); STOPS=$((STOPS + 1))
}
restart_broker() {
  log "broker restart"
  bash "$REPO_ROOT/scripts/kafka.sh" stop >/dev/null
  sleep "${1:-5}"
  bash "$REPO_ROOT/scripts/kafka.sh" start >/dev/null
  log "broker back"
  FAULTS=$((FAULTS + 1)); BROKER_RESTARTS=$((BROKER_RESTARTS + 1))
}
running() { echo "${!PIDS[@]}"; }
stopped() { local i; for i in 1 2 3; do [ -n "${PIDS[$i]:-}" ] || echo -n "$i "; done; }
# Sets PICKED to one of the words of $1. Not `$(pick ...)`: RANDOM in a
# subshell does not advance the parent's, and the schedule must follow the seed.
pick() { local a=($1); PICKED="${a[$((RANDOM % ${#a[@]}))]}"; }

# After a fault: how long until every partition answers again.
probe() {
  local label=$1 out
  if out=$("$SENDGATE_BIN" bench probe --label "$label" --timeout-secs 300 2>>"$WORK/probe.log"); then
    local ms; ms=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ms"])' "$out")
    echo "$label $ms" >>"$WORK/failover.txt"
    log "probe $label: every partition answered $ms ms after the fault"
  else
    log "probe $label: no answer within 300 s: $(tail -n 1 "$WORK/probe.log")"; echo "$label timeout" >>"$WORK/failover.txt"
  fi
}

# ------------------------------------------------------------ workload
# Batches of intents with their delivery events, each batch its own seed
# (so its own intent ids), in the background.
start_load() {
  local batches=$1 size=$2 gap=$3
  (
    for b in $(seq 0 $((batches - 1))); do
      "$SENDGATE_BIN" load --intents "$size" --events-per-intent 0.5 --seed $((SEED * 1000 + b)) --key-by-sender-domain --deliveries-only --deadline-secs 600 \
        >>"$WORK/load.log" 2>&1 || echo "batch $b failed (the broker was away?); going on" >>"$WORK/load.log"
      sleep "$gap"
    done
  ) &
  LOADER=$!
}

prepare() {
  export SENDGATE_NAMESPACE="faults-$1-$(date +%s)"
  "$SENDGATE_BIN" topics apply >/dev/null
  "$SENDGATE_BIN" policy apply "$REPO_ROOT/bench/policy-sender.toml" >/dev/null
  FAULTS=0 KILLS=0 STOPS=0 BROKER_RESTARTS=0 JOINS=0 HUNG=0
  : >"$WORK/failover.txt"
}

# Waits for the workload to be decided in full, then verifies (bounded).
finish() {
  local limit=$1 out
  [ -n "${LOADER:-}" ] && { wait "$LOADER" || true; LOADER=""; }
  local i; for i in 1 2 3; do [ -n "${PIDS[$i]:-}" ] || { start_inst "$i"; JOINS=$((JOINS + 1)); }; done
  log "load done; waiting for every decision"
  local deadline=$((SECONDS + limit))
  while true; do
    out=$("$SENDGATE_BIN" bench verify 2>>"$WORK/verify.log" || true)
    missing=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["missing"])' "$out" 2>/dev/null || echo "?")
    [ "$missing" = 0 ] && break
    [ $SECONDS -lt $deadline ] || break
    log "$missing intents still without a decision"
    sleep 10
  done
  # The final stops must not add a decision either: verify after them.
  for i in $(running); do stop_inst "$i"; STOPS=$((STOPS - 1)); FAULTS=$((FAULTS - 1)); done
  VERIFY=$("$SENDGATE_BIN" bench verify 2>>"$WORK/verify.log" || true)
  log "verify: $VERIFY"
}

failover_summary() {
  python3 - "$WORK/failover.txt" <<'EOF'
import sys
ms = {}
for line in open(sys.argv[1]):
    label, v = line.split()
    kind = label.split("-")[0]
    ms.setdefault(kind, []).append(None if v == "timeout" else int(v))
for kind, vs in sorted(ms.items()):
    ok = sorted(v for v in vs if v is not None)
    med = ok[len(ok) // 2] if ok else None
    print(f"{kind}: {len(vs)} probes, median {med} ms, max {max(ok) if ok else None} ms, {len(vs) - len(ok)} timed out")
EOF
}

judge() {
  python3 - "$VERIFY" "$HUNG" <<'EOF'
import json, sys
v = json.loads(sys.argv[1]) if sys.argv[1].startswith("{") else None
hung = int(sys.argv[2])
if v is None:
    print("verify did not run to the end"); sys.exit(1)
bad = v["missing"] + v["duplicates"] + v["unexpected"] + v["status_mismatches"] + v["counter_mismatches"]
print(f"intents {v['intents']}, decisions {v['decision_records']}, missing {v['missing']}, duplicates {v['duplicates']}, "
      f"unexpected {v['unexpected']}, status mismatches {v['status_mismatches']}, counter mismatches {v['counter_mismatches']} "
      f"({v['counters_checked']} counters checked), unclean stops {hung}")
for e in v["examples"]:
    print("  " + e)
sys.exit(1 if bad or hung or v["intents"] == 0 else 0)
EOF
}

# ------------------------------------------------------------ schedules
run_short() {
  prepare short
  start_inst 1; start_inst 2
  sleep 8
  start_load 12 2500 8
  sleep 12; kill_inst 2; probe kill-1
  sleep 5; start_inst 2; JOINS=$((JOINS + 1))
  sleep 10; start_inst 3; JOINS=$((JOINS + 1)); probe join-1
  sleep 8; stop_inst 1; probe stop-1
  sleep 5; kill_inst 3; probe kill-2
  restart_broker 5; probe broker-1
  start_inst 1; start_inst 3; JOINS=$((JOINS + 2))
  sleep 10; pick "$(running)"; kill_inst "$PICKED"; probe kill-3
  finish 300
}

run_long() {
  prepare long
  local minutes=32 next_broker=600
  start_inst 1; start_inst 2; start_inst 3
  sleep 10
  # 1,200,000 intents: 60 batches of 20,000, one every ~32 s.
  start_load 60 20000 30
  local end=$((SECONDS + minutes * 60)) n=0
  # A SIGKILL every 30-120 s; between them instances rejoin, stay away or
  # leave cleanly; a broker restart every 10 minutes. At least one instance
  # is up at any time.
  while [ $SECONDS -lt $end ]; do
    sleep $((30 + RANDOM % 91))
    n=$((n + 1))
    if [ $((SECONDS - T0)) -ge $next_broker ]; then
      restart_broker $((5 + RANDOM % 20)); probe "broker-$n"; next_broker=$((next_broker + 600))
    fi
    local up=($(running))
    if [ ${#up[@]} -lt 2 ]; then
      pick "$(stopped)"; start_inst "$PICKED"; JOINS=$((JOINS + 1)); sleep 10; up=($(running))
    fi
    pick "${up[*]}"; local v=$PICKED
    kill_inst "$v"; probe "kill-$n"
    case $((RANDOM % 3)) in
      0) sleep $((5 + RANDOM % 20)); start_inst "$v" ;;
      1) pick "$(stopped)"; local w=$PICKED
         if [ "$w" != "$v" ]; then start_inst "$w"; JOINS=$((JOINS + 1)); probe "join-$n"; fi ;;
      2) start_inst "$v"; sleep $((5 + RANDOM % 20))
         pick "$(running)"; stop_inst "$PICKED"; probe "stop-$n" ;;
    esac
  done
  finish 1800
}

# Failover with and without standby replicas: the same preloaded state,
# two instances, one of them stopped (cleanly: no session to wait out) or
# SIGKILLed three times each; the probe times the other's take-over.
run_failover() {
  local standby rounds=3
  for standby in false true; do
    export SENDGATE_STANDBY_REPLICAS=$standby
    prepare "failover-$standby"
    start_inst 1; start_inst 2
    sleep 8
    start_load 1 300000 0; wait "$LOADER"; LOADER=""
    log "standby_replicas=$standby: 300,000 intents published; waiting for them to be decided"
    "$SENDGATE_BIN" bench collect --expect 300000 --idle-secs 120 >/dev/null
    for r in $(seq $rounds); do
      sleep 15; stop_inst 2; probe "stop_standby_$standby-$r"; start_inst 2
      sleep 15; kill_inst 2; probe "kill_standby_$standby-$r"; start_inst 2
    done
    finish 300
    judge >>"$WORK/judged.txt" || FAILED=1
    log "restores while taking over (standby_replicas=$standby):"
    grep -h "state restored" "$WORK"/inst-1.log | grep -o 'state restored.*' | tail -n 12 | tee -a "$WORK/faults.log" >&2 || true
    mv "$WORK/inst-1.log" "$WORK/inst-1-standby-$standby.log"; rm -f "$WORK/inst-2.log"
    cat "$WORK/failover.txt" >>"$WORK/failover-all.txt"
  done
  cp "$WORK/failover-all.txt" "$WORK/failover.txt"
}

FAILED=0
case "$MODE" in
  --short) run_short ;;
  --long) run_long ;;
  --failover) run_failover ;;
esac

SUMMARY="$(failover_summary)"
if [ "$MODE" = --failover ]; then
  RESULT="$(cat "$WORK/judged.txt")"
else
  RESULT="$(judge)" || FAILED=1
fi
log "faults injected: $FAULTS ($KILLS SIGKILLs, $STOPS clean stops, $BROKER_RESTARTS broker restarts), $JOINS joins"
log "$RESULT"
log "failover (fault to every partition answered):"
echo "$SUMMARY" | while read -r l; do log "  $l"; done

if [ "$MODE" != --short ]; then
  python3 "$REPO_ROOT/bench/reliability.py" "$REPO_ROOT/docs/reliability.md" "$MODE" "$SEED" $((SECONDS - T0)) "$FAULTS" "$KILLS" "$STOPS" "$BROKER_RESTARTS" "$JOINS" "$RESULT" "$SUMMARY"
fi
[ "$FAILED" = 0 ] || { log "FAILED"; exit 1; }
log "passed"
