#!/usr/bin/env bash
# Request-reply latency: how long an app waits for a decision when it asks
# the HTTP API (`POST /v1/intents?wait_ms=...`, one intent per request),
# beside the topic-to-topic latency (intents produced to the intents topic,
# decisions read from the decisions topic) at the same rate in the same run.
# Both are measured from each intent's scheduled send, so a stall counts.
# sendgate (exactly-once) runs with its API on 127.0.0.1 and the benchmark
# policy; each rate gets a fresh namespace.
#
#   scripts/bench-request-reply.sh           rates 20/s and 100/s, 30 s each
#   scripts/bench-request-reply.sh --smoke   20/s for 3 s (CI): checks that every request is answered
#
# BENCH_RATES and BENCH_SECONDS override the rates and the duration. One
# JSON line per rate on stdout. Its own broker on port 19592 unless
# KAFKA_PORT says otherwise. Exits non-zero when a request got no answer;
# never on a timing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

MODE=full
[ "${1:-}" = "--smoke" ] && MODE=smoke
if [ "$MODE" = full ]; then RATES="${BENCH_RATES:-20 100}"; SECS="${BENCH_SECONDS:-30}"; else RATES="${BENCH_RATES:-20}"; SECS="${BENCH_SECONDS:-3}"; fi
SEED=20261129
OWN_BROKER=0; [ -z "${KAFKA_PORT:-}" ] && OWN_BROKER=1
export KAFKA_PORT="${KAFKA_PORT:-19592}" KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19593}"
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" SENDGATE_METRICS_ADDR=""
# Reconciliation off, as in bench/policy.toml: the peers do no such work.
export SENDGATE_RECONCILE_DELIVERIES=false
# An operator's token for the benchmark only.
TOKEN="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export SENDGATE_API_TOKENS="operator=$TOKEN" SENDGATE_BENCH_API_TOKEN="$TOKEN"
WORK="$(mktemp -d)"
RUN="$(date +%s)"
PID=""
started_broker=0

cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  [ "$started_broker" = 1 ] && scripts/kafka.sh stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cached_or_built_release
sg() { "$SENDGATE_BIN" "$@"; }
sgb() { "$SENDGATE_BENCH_BIN" "$@"; }

start_broker_unless_running

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for rate in $RATES; do
  export SENDGATE_NAMESPACE="brr-$rate-$RUN" SENDGATE_STATE_DIR="$WORK/state-$rate"
  port="$(free_port)"
  export SENDGATE_API_ADDR="127.0.0.1:$port"
  sg topics apply >/dev/null 2>&1
  sg policy apply bench/policy.toml >/dev/null
  log="$WORK/sendgate-$rate.log"
  "$SENDGATE_BIN" run >"$log" 2>&1 & PID=$!
  deadline=$((SECONDS + 120))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { tail -20 "$log"; echo "bench-request-reply: sendgate was not ready in 120 s"; exit 1; }
    kill -0 "$PID" 2>/dev/null || { tail -20 "$log"; echo "bench-request-reply: sendgate exited"; exit 1; }
    sleep 0.5
  done
  say "request-reply at $rate/s for $SECS s, beside topic-to-topic"
  sgb request-reply --api "http://127.0.0.1:$port" --rate "$rate" --seconds "$SECS" --seed "$SEED"
  stop_and_reap "$PID"
  PID=""
done
