#!/usr/bin/env bash
# A long audited run: a workload of N intents (and about N/2 delivery
# events) through a live processor that is SIGKILLed and restarted in the
# middle, then `sendgate audit replay --baseline` over all of it. Prints the
# replay's summary; exits non-zero on any difference.
#
#   scripts/audit-run.sh [INTENTS]     (default 700000: ~1.05M input records)
#
# AUDIT_FIRST_BIN=PATH runs that binary (a build of an earlier release, say)
# until the SIGKILL, and this build after it: the restart then restores
# state and reads stage topics the earlier release wrote, and the replay
# (by this build) re-decides all of it. An upgrade check.
#
# Uses its own broker port (19192) and data, and a fresh namespace.
set -euo pipefail
source "$(dirname "$0")/common.sh"
INTENTS="${1:-700000}"
export KAFKA_PORT=19192 KAFKA_CONTROLLER_PORT=19193
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export SENDGATE_NAMESPACE="audit-$(date +%s)"
WORK="$(mktemp -d)"
export SENDGATE_STATE_DIR="$WORK/state" SENDGATE_METRICS_ADDR="127.0.0.1:9664" SENDGATE_API_ADDR=""
DEADLINE=$((SECONDS + 3600))

bash "$REPO_ROOT/scripts/setup.sh"
build_release
# Its own broker, from empty data: runs do not pile up on disk.
bash "$REPO_ROOT/scripts/kafka.sh" wipe >/dev/null
bash "$REPO_ROOT/scripts/kafka.sh" start
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; bash "$REPO_ROOT/scripts/kafka.sh" stop || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$SENDGATE_BIN" topics apply >/dev/null
printf '[[policy]]\nscope = "default"\nbusiness_hours = "off"\n' > "$WORK/policy.toml"
"$SENDGATE_BIN" policy apply "$WORK/policy.toml"

decided() { curl -s "http://$SENDGATE_METRICS_ADDR/metrics" | awk '/^sendgate_decisions_total/ {s+=$2} END {print s+0}'; }
start() { "${1:-$SENDGATE_BIN}" run >>"$WORK/run.log" 2>&1 & PID=$!; }

if [ -n "${AUDIT_FIRST_BIN:-}" ]; then
  say "until the SIGKILL: $AUDIT_FIRST_BIN; after it: $SENDGATE_BIN"
  start "$AUDIT_FIRST_BIN"
else
  start
fi
sleep 5
say "publishing $INTENTS intents and their delivery events"
"$SENDGATE_BENCH_BIN" load --intents "$INTENTS" --seed 20261123 --deadline-secs 1800
T0=$SECONDS
say "waiting for half of the decisions, then SIGKILL"
while [ "$(decided)" -lt $((INTENTS / 2)) ]; do [ $SECONDS -lt $DEADLINE ] || { echo "timed out"; exit 1; }; sleep 2; done
kill -9 "$PID"; wait "$PID" 2>/dev/null || true
BEFORE=$(grep -c "" "$WORK/run.log")
start
say "restarted; waiting for every decision"
# Metrics restart from zero: count the decisions on the topic instead.
while true; do
  n=$("$SENDGATE_BIN" decisions --from-beginning --idle-timeout-ms 3000 2>/dev/null | wc -l)
  [ "$n" -ge "$INTENTS" ] && break
  [ $SECONDS -lt $DEADLINE ] || { echo "timed out with $n decisions"; exit 1; }
  sleep 5
done
say "all $INTENTS intents decided in $((SECONDS - T0)) s (with a SIGKILL); restart log:"
tail -n +"$BEFORE" "$WORK/run.log" | grep -E "not clean|state restored" || true
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
say "audit replay"
"$SENDGATE_BIN" audit replay --baseline --scratch "$WORK/scratch"
