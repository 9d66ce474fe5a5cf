# Shared by the scripts: where builds go, and how to build.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SENDGATE_CACHE="${SENDGATE_CACHE:-$HOME/.cache/sendgate}"
# One fixed target directory outside the clone: a fresh clone (CI) reuses the
# compiled RocksDB and librdkafka instead of spending ~25 minutes on them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SENDGATE_CACHE/target}"
# One profile (release) for tests, the binary and benchmarks, so RocksDB's
# C++ is compiled once.
# SENDGATE_BIN may name another binary (a long run keeps its own copy while
# the tree is rebuilt); the scripts then use it as it is.
SENDGATE_BIN_GIVEN="${SENDGATE_BIN:+1}"
SENDGATE_BIN="${SENDGATE_BIN:-$CARGO_TARGET_DIR/release/sendgate}"
# The instruments of the benchmarks and the fault harness (load, collect,
# recount, verify, probe, ...), built beside it.
SENDGATE_BENCH_BIN="${SENDGATE_BENCH_BIN:-$(dirname "$SENDGATE_BIN")/sendgate-bench}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

build_release() {
  if [ -n "$SENDGATE_BIN_GIVEN" ]; then
    say "using $SENDGATE_BIN as it is"
    return
  fi
  say "building sendgate (release; the first build compiles RocksDB and librdkafka, ~22 min on 2 cores)"
  (cd "$REPO_ROOT" && cargo build --release --locked --bins)
}

# A benchmark's binary: the cached release build when there is one and
# SENDGATE_BIN was not given (say when it was built), else setup and a build.
cached_or_built_release() {
  if [ -z "$SENDGATE_BIN_GIVEN" ] && [ -x "$SENDGATE_BIN" ]; then
    say "using the cached release build $SENDGATE_BIN ($(date -r "$SENDGATE_BIN" '+%F %T'))"
  else
    [ -z "$SENDGATE_BIN_GIVEN" ] && "$REPO_ROOT/scripts/setup.sh"
    build_release
  fi
}

# Starts the local broker (KAFKA_PORT) unless one of ours already runs there;
# with OWN_BROKER=1 it starts from empty data. Sets started_broker=1 when it
# started one, for the caller's cleanup to stop it.
start_broker_unless_running() {
  if ! "$REPO_ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then
    [ "${OWN_BROKER:-0}" = 1 ] && "$REPO_ROOT/scripts/kafka.sh" wipe >/dev/null 2>&1
    "$REPO_ROOT/scripts/kafka.sh" start
    started_broker=1
  fi
}

# Stops a system under test started in the background by this shell: SIGTERM,
# up to 60 s for a clean exit, then SIGKILL; reaps it either way.
stop_and_reap() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# For the scripts that compare two builds on their own broker (KAFKA_PORT):
# a work directory ($WORK), that broker started from empty data, and on
# exit the system under test ($PID) stopped, the broker stopped and the
# work directory removed.
start_own_broker_and_workdir() {
  WORK="$(mktemp -d)"; PID=""
  trap 'stop_own_broker_and_workdir' EXIT
  bash "$REPO_ROOT/scripts/setup.sh"
  bash "$REPO_ROOT/scripts/kafka.sh" wipe >/dev/null 2>&1 || true
  bash "$REPO_ROOT/scripts/kafka.sh" start >/dev/null
}
stop_own_broker_and_workdir() {
  [ -n "$PID" ] && stop_and_reap "$PID"
  bash "$REPO_ROOT/scripts/kafka.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
