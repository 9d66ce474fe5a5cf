#!/usr/bin/env bash
# Runs every test: unit, property and scenario tests, the integration tests
# against a real Apache Kafka broker that this script starts (on its own
# port, so a broker you run for the demo is left alone) and stops, and the
# benchmark script's smoke run, the fault harness's short run and a short
# run of every fuzz target.
#
#   scripts/test.sh [cargo test args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

# How long each part took, printed at the end: CI has a budget (25
# minutes) and this says where it goes.
timings=()
mark_start=$SECONDS
mark() { timings+=("$1 $((SECONDS - mark_start)) s"); mark_start=$SECONDS; }

"$REPO_ROOT/scripts/setup.sh"
mark setup
say "building"
cargo build --release --locked --all-targets
# The scripts below (benchmark smoke, fault harness) use the binaries this
# build made: their own `cargo build --bins` would compile the sendgate
# crate a second time (cargo keeps the library of an --all-targets build
# and of a --bins build apart), minutes of each CI run.
export SENDGATE_BIN="$CARGO_TARGET_DIR/release/sendgate"
# setup.sh's detection against what the build loads, and the built
# client library's features.
bash "$REPO_ROOT/scripts/check-setup.sh"
# No two modules depend on each other (the map in src/lib.rs), in either crate.
python3 "$REPO_ROOT/scripts/check-module-cycles.py" "$REPO_ROOT/src"
python3 "$REPO_ROOT/scripts/check-module-cycles.py" "$REPO_ROOT/crates/core/src"
# The guard core depends on no Kafka client, RocksDB or async runtime.
bash "$REPO_ROOT/scripts/check-core-deps.sh"
mark build

export KAFKA_PORT="${SENDGATE_TEST_KAFKA_PORT:-19092}"
export KAFKA_CONTROLLER_PORT="${SENDGATE_TEST_KAFKA_CONTROLLER_PORT:-19093}"
# The secured listeners too (SASL_SSL on KAFKA_PORT+2 with PLAIN, SCRAM and
# OAUTHBEARER/OIDC, mutual TLS on KAFKA_PORT+3): the interop tests connect
# through them. Exported, so a broker restart in a test keeps them.
export KAFKA_SECURE=1
# Where kafka.sh keeps this port's data (its default).
kafka_data="${KAFKA_DATA_DIR:-$SENDGATE_CACHE/kafka-data-$KAFKA_PORT}"
export REGISTRY_PORT="${SENDGATE_TEST_REGISTRY_PORT:-18081}"
started_broker=0
started_registry=0
cleanup() {
  local rc=$?
  # What each part took, also when one failed (CI has a 25-minute budget).
  if [ ${#timings[@]} -gt 0 ]; then
    say "time taken$([ "$rc" = 0 ] || echo " (until the failure)"): $(IFS=';'; echo "${timings[*]}" | sed 's/;/, /g')"
  fi
  # A fuzz build still going when a step failed: stop it with its cargo.
  if [ -n "${fuzz_build:-}" ] && kill -0 "$fuzz_build" 2>/dev/null; then
    pkill -P "$fuzz_build" 2>/dev/null || true
    kill "$fuzz_build" 2>/dev/null || true
  fi
  if [ "$started_registry" = 1 ]; then
    "$REPO_ROOT/scripts/registry.sh" stop || true
  fi
  if [ "$started_broker" = 1 ]; then
    "$REPO_ROOT/scripts/kafka.sh" stop || true
  fi
}
trap cleanup EXIT
if ! "$REPO_ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then
  say "starting a local Kafka broker on 127.0.0.1:$KAFKA_PORT for the tests (with SASL_SSL and mutual TLS listeners)"
  "$REPO_ROOT/scripts/kafka.sh" wipe >/dev/null 2>&1 || true
  "$REPO_ROOT/scripts/kafka.sh" start
  started_broker=1
fi
# A real schema registry (Apicurio, Confluent-compatible API) for the
# registry wire-format tests.
if ! "$REPO_ROOT/scripts/registry.sh" status >/dev/null 2>&1; then
  say "starting a local schema registry on 127.0.0.1:$REGISTRY_PORT"
  "$REPO_ROOT/scripts/registry.sh" start
  started_registry=1
fi
# The standard Python client and its Avro serializer, in a cache venv.
venv="$SENDGATE_CACHE/interop-venv"
req="$REPO_ROOT/tests/interop/requirements.txt"
if ! cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then
  say "installing the Python interop client into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi

# The Python client package (clients/python), installed from this tree on
# every run: its tests (tests/clients.rs) import the installed copy.
say "installing the Python client package (clients/python) into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$REPO_ROOT/clients/python"
"$venv/bin/pip" install -q --disable-pip-version-check "$REPO_ROOT/clients/python[test]"

export SENDGATE_TEST_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export SENDGATE_TEST_KAFKA_SCRIPT="$REPO_ROOT/scripts/kafka.sh"
export SENDGATE_TEST_KAFKA_DATA_DIR="$kafka_data"
export SENDGATE_TEST_KAFKA_LIBS="$SENDGATE_CACHE/kafka-${KAFKA_VERSION:-4.1.2}/lib"
export SENDGATE_TEST_SECURE_ENV="$kafka_data/tls/credentials.env"
export SENDGATE_TEST_REGISTRY_URL="$("$REPO_ROOT/scripts/registry.sh" url)"
export SENDGATE_TEST_PYTHON="$venv/bin/python"
# The operator page's browser test: Debian's chromium and its WebDriver
# (setup.sh installs both).
export SENDGATE_TEST_CHROMIUM="$(command -v chromium)"
export SENDGATE_TEST_CHROMEDRIVER="$(command -v chromedriver)"
say "running the tests (integration tests use the broker at $SENDGATE_TEST_BOOTSTRAP)"
# Four test threads on two cores: the integration tests spend most of their
# time waiting on the broker (one binary of 47 tests: 188 s with four, 290 s
# with the default two; docs/design.md, Build and CI times).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
mark "broker, registry and clients"
cargo test --release --locked "$@"
mark tests

# The benchmark script's short version, on the same broker: it checks that
# every system decides every intent once, with the recounted numbers. It
# never fails on a timing.
if [ $# -eq 0 ]; then
  # The fuzz targets build (nightly, their own target directory: minutes of
  # compiling) while the benchmark smoke runs, which never fails on a
  # timing; the fuzz run below waits for it.
  say "building the fuzz targets in the background (scripts/fuzz.sh --build-only)"
  fuzz_log="$(mktemp)"
  bash "$REPO_ROOT/scripts/fuzz.sh" --build-only >"$fuzz_log" 2>&1 &
  fuzz_build=$!
  say "benchmark smoke run (scripts/bench.sh --smoke)"
  bash "$REPO_ROOT/scripts/bench.sh" --smoke
  mark "benchmark smoke"
  say "request-reply benchmark smoke run (scripts/bench-request-reply.sh --smoke)"
  bash "$REPO_ROOT/scripts/bench-request-reply.sh" --smoke
  mark "request-reply smoke"
  # The fault harness's short run: several SIGKILLs, a clean stop, joins and
  # a broker restart across three instances; zero missing, duplicated or
  # wrong decisions, or it fails.
  say "fault harness, short run on a three-broker cluster (scripts/faults.sh)"
  bash "$REPO_ROOT/scripts/faults.sh"
  mark "fault harness"
  if ! wait "$fuzz_build"; then cat "$fuzz_log" >&2; echo "test.sh: the fuzz targets did not build" >&2; exit 1; fi
  cat "$fuzz_log" >&2; rm -f "$fuzz_log"
  # Every fuzz target for 10 s (the long runs: scripts/fuzz.sh).
  say "fuzzing, short run (scripts/fuzz.sh --short)"
  bash "$REPO_ROOT/scripts/fuzz.sh" --short
  mark "fuzz (the rest of its build, the short run)"
fi
