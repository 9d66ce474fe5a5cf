#!/usr/bin/env bash
# Runs every test: unit, property and scenario tests, the integration tests
# against a real Apache Kafka broker that this script starts (on its own
# port, so a broker you run for the demo is left alone) and stops, and the
# benchmark script's smoke run and the fault harness's short run.
#
#   scripts/test.sh [cargo test args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"
say "building"
cargo build --release --locked --all-targets

export KAFKA_PORT="${SENDGATE_TEST_KAFKA_PORT:-19092}"
export KAFKA_CONTROLLER_PORT="${SENDGATE_TEST_KAFKA_CONTROLLER_PORT:-19093}"
started_broker=0
if ! "$REPO_ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then
  say "starting a local Kafka broker on 127.0.0.1:$KAFKA_PORT for the tests"
  "$REPO_ROOT/scripts/kafka.sh" wipe >/dev/null 2>&1 || true
  "$REPO_ROOT/scripts/kafka.sh" start
  started_broker=1
fi
cleanup() {
  if [ "$started_broker" = 1 ]; then
    "$REPO_ROOT/scripts/kafka.sh" stop || true
  fi
}
trap cleanup EXIT

export SENDGATE_TEST_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export SENDGATE_TEST_KAFKA_SCRIPT="$REPO_ROOT/scripts/kafka.sh"
say "running the tests (integration tests use the broker at $SENDGATE_TEST_BOOTSTRAP)"
cargo test --release --locked "$@"

# The benchmark script's short version, on the same broker: it checks that
# every system decides every intent once, with the recounted numbers. It
# never fails on a timing.
if [ $# -eq 0 ]; then
  say "benchmark smoke run (scripts/bench.sh --smoke)"
  bash "$REPO_ROOT/scripts/bench.sh" --smoke
  # The fault harness's short run: several SIGKILLs, a clean stop, joins and
  # a broker restart across three instances; zero missing, duplicated or
  # wrong decisions, or it fails.
  say "fault harness, short run (scripts/faults.sh)"
  bash "$REPO_ROOT/scripts/faults.sh"
fi
