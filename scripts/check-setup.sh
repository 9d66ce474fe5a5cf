#!/usr/bin/env bash
# Checks that scripts/setup.sh detects exactly what the build loads, so the
# two cannot drift apart silently (a detector once took libclang-cpp, which
# Debian images ship, for libclang, which bindgen loads, and a fresh machine
# failed in the middle of the RocksDB build).
#
#   scripts/check-setup.sh
#
# 1. On this machine, after setup.sh has run: every need is present, and the
#    file or command that satisfied it belongs to the Debian package setup
#    would install for it, or to a package that package depends on. A file
#    owned by an unrelated package is a wrong detection. (Files owned by no
#    package, e.g. a Rust or Python installed by hand, are reported and pass.)
# 2. On fixture roots (SENDGATE_SETUP_ROOT): libclang-cpp alone is not
#    libclang; a file named libclang.so without the C API is not either; the
#    real library is; a header under the multiarch include directory counts.
# 3. The built binary's librdkafka has every feature sendgate needs
#    (`sendgate config check`), when the binary exists.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

failures=0
fail() { printf 'check-setup: FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }
ok() { printf 'check-setup: ok: %s\n' "$*" >&2; }

closure() {
  { echo "$1"; apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "$1" 2>/dev/null | grep -v '^ ' | sed 's/:.*//'; } | sort -u
}

# 1. This machine.
if command -v dpkg >/dev/null 2>&1 && command -v apt-cache >/dev/null 2>&1; then
  while IFS=$'\t' read -r name pkg state found; do
    if [ "$state" != present ]; then
      fail "$name is missing after setup.sh ran (package $pkg)"
      continue
    fi
    allowed="$(closure "$pkg")"
    for f in $found; do
      real="$(readlink -f "$f")"
      # dpkg knows a file by the path its package installed it at, which a
      # symlink or the /lib -> /usr/lib merge may hide: ask for both.
      owner="$( { dpkg -S "$f" || dpkg -S "$real"; } 2>/dev/null | head -1 | sed 's/:.*//; s/, .*//')" || true
      if [ -z "$owner" ]; then
        ok "$name: $f is not from a Debian package (installed by hand); accepted"
      elif grep -qx "$owner" <<<"$allowed"; then
        ok "$name: $f from $owner ($pkg)"
      else
        fail "$name: setup.sh accepted $f, which belongs to $owner, not to $pkg or what it depends on"
      fi
    done
  done < <(bash scripts/setup.sh --report)
else
  echo "check-setup: no dpkg/apt-cache here; skipping the package ownership check" >&2
fi

# 2. Fixtures.
fixture=$(mktemp -d)
trap 'rm -rf "$fixture"' EXIT
report_on() { SENDGATE_SETUP_ROOT="$1" bash scripts/setup.sh --report | awk -F'\t' -v n="$2" '$1 == n {print $3}'; }
real_clang="$(bash scripts/setup.sh --report | awk -F'\t' '$1 == "libclang" {print $4}')"
cpp_lib="$(ls /usr/lib/llvm-*/lib/libclang-cpp.so* 2>/dev/null | head -1 || true)"
if [ -n "$cpp_lib" ]; then
  mkdir -p "$fixture/cpp/usr/lib/llvm-14/lib" "$fixture/renamed/usr/lib/llvm-14/lib"
  ln -s "$cpp_lib" "$fixture/cpp/usr/lib/llvm-14/lib/libclang-cpp.so.14"
  [ "$(report_on "$fixture/cpp" libclang)" = missing ] && ok "libclang-cpp alone is not libclang" || fail "libclang-cpp alone was taken for libclang"
  ln -s "$cpp_lib" "$fixture/renamed/usr/lib/llvm-14/lib/libclang.so"
  [ "$(report_on "$fixture/renamed" libclang)" = missing ] && ok "a libclang.so without the C API is refused" || fail "a libclang.so without clang_createIndex was accepted"
else
  fail "no libclang-cpp on this machine to build the fixture from"
fi
if [ -n "$real_clang" ]; then
  mkdir -p "$fixture/real/usr/lib/llvm-14/lib"
  ln -s "$(readlink -f "$real_clang")" "$fixture/real/usr/lib/llvm-14/lib/libclang.so"
  [ "$(report_on "$fixture/real" libclang)" = present ] && ok "the real libclang is found" || fail "the real libclang in the fixture was not found"
fi
mkdir -p "$fixture/multiarch/usr/include/x86_64-linux-gnu/curl" "$fixture/multiarch/usr/lib/x86_64-linux-gnu"
touch "$fixture/multiarch/usr/include/x86_64-linux-gnu/curl/curl.h" "$fixture/multiarch/usr/lib/x86_64-linux-gnu/libcurl.so"
[ "$(report_on "$fixture/multiarch" libcurl)" = present ] && ok "a multiarch header counts" || fail "curl/curl.h under the multiarch include directory was not found"
[ "$(report_on "$fixture/multiarch" zlib)" = missing ] && ok "a missing header is missing" || fail "zlib was reported present in an empty fixture"

# 3. The build's librdkafka.
if [ -x "$SENDGATE_BIN" ]; then
  if out="$("$SENDGATE_BIN" config check 2>&1)"; then
    ok "$(grep librdkafka <<<"$out")"
  else
    fail "sendgate config check: $out"
  fi
fi

if [ "$failures" -gt 0 ]; then
  echo "check-setup: $failures problem(s)" >&2
  exit 1
fi
echo "check-setup: setup.sh detects what the build loads" >&2
