#!/usr/bin/env bash
# The main job, from a fresh machine: install what the build needs, build,
# start a local Kafka broker unless SENDGATE_BOOTSTRAP points at one, apply
# the topics, start the processor, and run the demo against it. The
# processor then keeps running until Ctrl-C (or exits after the demo with
# --exit-after-demo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

exit_after_demo=0
for arg in "$@"; do
  case "$arg" in
    --exit-after-demo) exit_after_demo=1 ;;
    *) echo "usage: scripts/run.sh [--exit-after-demo]" >&2; exit 2 ;;
  esac
done

"$REPO_ROOT/scripts/setup.sh"
build_release

started_broker=0
if [ -z "${SENDGATE_BOOTSTRAP:-}" ]; then
  export KAFKA_PORT="${KAFKA_PORT:-9092}"
  if ! "$REPO_ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then
    say "no SENDGATE_BOOTSTRAP: starting a local Kafka broker on 127.0.0.1:$KAFKA_PORT"
    "$REPO_ROOT/scripts/kafka.sh" start
    started_broker=1
  fi
  export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
fi
say "Kafka: $SENDGATE_BOOTSTRAP"

export SENDGATE_STATE_DIR="${SENDGATE_STATE_DIR:-$REPO_ROOT/.sendgate/state}"
mkdir -p "$REPO_ROOT/.sendgate"
say "applying topics"
"$SENDGATE_BIN" topics apply

log="$REPO_ROOT/.sendgate/sendgate.log"
say "starting the processor (log: $log, metrics: http://${SENDGATE_METRICS_ADDR:-127.0.0.1:9464}/metrics)"
"$SENDGATE_BIN" run --no-create-topics >"$log" 2>&1 &
proc=$!
stop_all() {
  if kill -0 "$proc" 2>/dev/null; then
    kill -TERM "$proc" 2>/dev/null || true
    wait "$proc" 2>/dev/null || true
  fi
  if [ "$started_broker" = 1 ] && [ "$exit_after_demo" = 1 ]; then
    "$REPO_ROOT/scripts/kafka.sh" stop || true
  fi
}
trap stop_all EXIT

say "demo: a runaway agent and a bounce storm"
"$SENDGATE_BIN" demo

if [ "$exit_after_demo" = 1 ]; then
  exit 0
fi
cat >&2 <<TXT

sendgate is running against $SENDGATE_BOOTSTRAP. In another terminal:
  export SENDGATE_BOOTSTRAP=$SENDGATE_BOOTSTRAP
  $SENDGATE_BIN decisions            # follow decisions as JSON lines
  echo '{"intent_id":"my-1","tenant":"demo","sender":"me@example.com","recipient":"you@example.org","class":"OUTBOUND"}' \\
    | $SENDGATE_BIN produce intents
Ctrl-C stops the processor (the broker keeps running: scripts/kafka.sh stop).
TXT
wait "$proc"
