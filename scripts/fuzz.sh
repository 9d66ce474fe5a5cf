#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz, nightly toolchain)
# of every decoder of external input: fuzz/fuzz_targets/. Without a
# sanitizer: the targets run safe Rust (a panic, an overflow under debug
# assertions, a timeout or an allocation past the limits is a finding), and
# AddressSanitizer would instrument the bundled C libraries' builds too,
# which then do not link.
#
#   scripts/fuzz.sh --short             each target for 10 s (CI; any crash fails)
#   scripts/fuzz.sh [--runs N]          each target for N executions (default 10,000,000)
#   scripts/fuzz.sh --target NAME ...   only that target
#   scripts/fuzz.sh --build-only        build the targets and stop (the test
#                                       command builds them beside other work)
#
# Prints one line per target: executions, seconds, executions a second,
# corpus size, peak memory. The corpus grows between runs in
# $SENDGATE_CACHE/fuzz-corpus (outside the clone), seeded from fuzz/seeds. A
# crash leaves its input in fuzz/artifacts/TARGET/ and fails the run: fix it,
# and add the input to a regression test.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

FUZZ_TARGET_DIR="${SENDGATE_FUZZ_TARGET_DIR:-$SENDGATE_CACHE/fuzz-target}"
CORPUS_DIR="$SENDGATE_CACHE/fuzz-corpus"
CARGO_FUZZ_VERSION=0.13.2
targets=(ingress registry json_lines policy address internal)
runs=10000000
seconds=""
only=()
build_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) seconds=10 ;;
    --runs) runs="$2"; shift ;;
    --target) only+=("$2"); shift ;;
    --build-only) build_only=1 ;;
    *) echo "fuzz.sh: unknown argument $1 (--short, --runs N, --target NAME, --build-only)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#only[@]} -gt 0 ] && targets=("${only[@]}")

# The nightly toolchain (cargo-fuzz's instrumentation flags need it) comes with
# rustup's install here; cargo-fuzz itself from crates.io.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly Rust toolchain is missing: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

say "building the fuzz targets (nightly, debug assertions; they link the core crate alone, with no RocksDB or librdkafka)"
# (One target, or all of them.)
build_one=()
[ ${#targets[@]} -eq 1 ] && build_one=("${targets[0]}")
cargo +nightly fuzz build --sanitizer none --target-dir "$FUZZ_TARGET_DIR" "${build_one[@]}" 2>&1 | tail -3 >&2 || { echo "fuzz.sh: the fuzz targets did not build" >&2; exit 1; }
[ "$build_only" = 1 ] && exit 0

printf '%-11s %12s %8s %10s %8s %9s\n' target executions seconds exec/s corpus peak_MiB
for t in "${targets[@]}"; do
  corpus="$CORPUS_DIR/$t"
  mkdir -p "$corpus"
  if [ -n "$seconds" ]; then limit=(-max_total_time="$seconds"); else limit=(-runs="$runs"); fi
  log="$(mktemp)"
  start=$SECONDS
  # -max_len bounds an input as the router bounds a record; -rss_limit_mb
  # and -malloc_limit_mb turn an unbounded allocation into a finding.
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  if ! cargo +nightly fuzz run --sanitizer none --target-dir "$FUZZ_TARGET_DIR" "$t" "$corpus" "${seeds[@]}" -- \
      "${limit[@]}" -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 -close_fd_mask=3 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz.sh: target $t failed; its input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  elapsed=$((SECONDS - start))
  execs=$(awk '/^stat::number_of_executed_units:/ {n=$2} END {print n}' "$log")
  rss=$(awk '/^stat::peak_rss_mb:/ {n=$2} END {print n}' "$log")
  files=$(find "$corpus" -type f | wc -l)
  printf '%-11s %12s %8s %10s %8s %9s\n' "$t" "${execs:-?}" "$elapsed" "$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))" "$files" "${rss:-?}"
  rm -f "$log"
done
