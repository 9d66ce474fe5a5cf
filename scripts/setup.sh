#!/usr/bin/env bash
# Installs what building and running sendgate needs, once, and checks for
# Rust, Java 17+ and Maven (the local Kafka broker).
#
#   scripts/setup.sh            detect, install what is missing (apt), verify
#   scripts/setup.sh --report   print one line per need: name, package, state
#                               and the file or command that satisfied it;
#                               installs nothing (scripts/check-setup.sh)
#
# Each need is detected by the exact thing the build loads, not by a package
# that merely looks alike: bindgen (RocksDB's bindings) dlopens the libclang
# C library, which exports clang_createIndex; libclang-cpp, which Debian
# images often ship alone, is a different library and does not count.
# SENDGATE_SETUP_ROOT prefixes every searched path (the check's fixtures).
set -euo pipefail

ROOT="${SENDGATE_SETUP_ROOT:-}"
report=0
case "${1:-}" in
  --report) report=1 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--report]" >&2; exit 2 ;;
esac

# The directories clang-sys searches for libclang, in its order (after
# LIBCLANG_PATH), on Debian and Ubuntu.
libclang_dirs() {
  [ -n "${LIBCLANG_PATH:-}" ] && echo "$ROOT$LIBCLANG_PATH"
  local d
  for d in "$ROOT"/usr/lib/llvm-*/lib "$ROOT"/usr/lib/x86_64-linux-gnu "$ROOT"/usr/lib/aarch64-linux-gnu \
           "$ROOT"/usr/lib64 "$ROOT"/usr/lib "$ROOT"/usr/local/lib; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

# Prints the first libclang that bindgen would accept: named like clang-sys
# names it (libclang.so, libclang.so.N, libclang-N.so[.M]) and exporting the
# C API. Fails when there is none.
find_libclang() {
  local dir f
  while IFS= read -r dir; do
    for f in "$dir"/libclang.so "$dir"/libclang.so.[0-9]* "$dir"/libclang-[0-9]*.so*; do
      [ -e "$f" ] || continue
      if exports_clang_c_api "$f"; then
        echo "$f"
        return 0
      fi
    done
  done < <(libclang_dirs)
  return 1
}

exports_clang_c_api() {
  if command -v nm >/dev/null 2>&1; then
    # grep reads to the end (no -q): an early exit would SIGPIPE nm and,
    # under pipefail, fail the check at random.
    nm -D --defined-only "$1" 2>/dev/null | grep -w clang_createIndex >/dev/null
  else
    # No binutils yet (g++ brings them): the name alone has to do; the
    # check after installing g++ looks again.
    return 0
  fi
}

# bindgen also needs clang's own headers (stddef.h and friends) beside it.
find_clang_headers() {
  local f
  for f in "$ROOT"/usr/lib/llvm-*/lib/clang/*/include/stddef.h; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

find_command() { command -v "$1" 2>/dev/null; }

# The tests' Python side (the token server of the secured test broker, the
# standard Python client in a venv): Debian splits venv and ensurepip off.
find_python_venv() {
  command -v python3 >/dev/null 2>&1 || return 1
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || return 1
  command -v python3
}

# A development library: its header (Debian puts some under the multiarch
# include directory, e.g. curl/curl.h) and the unversioned .so the linker takes.
find_dev_lib() {
  local header="$1" lib="$2" d h="" inc
  for inc in "$ROOT"/usr/include "$ROOT"/usr/include/x86_64-linux-gnu "$ROOT"/usr/include/aarch64-linux-gnu; do
    if [ -e "$inc/$header" ]; then
      h="$inc/$header"
      break
    fi
  done
  [ -n "$h" ] || return 1
  for d in "$ROOT"/usr/lib/x86_64-linux-gnu "$ROOT"/usr/lib/aarch64-linux-gnu "$ROOT"/usr/lib64 "$ROOT"/usr/lib; do
    if [ -e "$d/$lib" ]; then
      echo "$h $d/$lib"
      return 0
    fi
  done
  return 1
}

# name | Debian package | detector. The order is the order of the report.
NEEDS=(
  "libclang|libclang-dev|find_libclang"
  "clang-headers|libclang-dev|find_clang_headers"
  "c-compiler|g++|find_command cc"
  "c++-compiler|g++|find_command c++"
  "nm|binutils|find_command nm"
  "make|make|find_command make"
  "perl|perl|find_command perl"
  "pkg-config|pkg-config|find_command pkg-config"
  "openssl-dev|libssl-dev|find_dev_lib openssl/ssl.h libssl.so"
  "libcurl|libcurl4-openssl-dev|find_dev_lib curl/curl.h libcurl.so"
  "zlib|zlib1g-dev|find_dev_lib zlib.h libz.so"
  "openssl-cli|openssl|find_command openssl"
  "curl|curl|find_command curl"
  "ps|procps|find_command ps"
  "python3-venv|python3-venv|find_python_venv"
  "java|openjdk-17-jdk-headless|find_command java"
  "javac|openjdk-17-jdk-headless|find_command javac"
  "maven|maven|find_command mvn"
  "chromium|chromium|find_command chromium"
  "chromedriver|chromium-driver|find_command chromedriver"
  # The fault harness: Go builds its TCP proxy (scripts/netproxy.sh), and
  # mount gives one instance a small filesystem to fill.
  "go|golang-go|find_command go"
  "mount|mount|find_command mount"
)

detect_all() {
  missing_pkgs=()
  local need name pkg detector found
  for need in "${NEEDS[@]}"; do
    IFS='|' read -r name pkg detector <<<"$need"
    # shellcheck disable=SC2086  # the detector is a command with arguments
    if found="$($detector)"; then
      [ "$report" = 1 ] && printf '%s\t%s\tpresent\t%s\n' "$name" "$pkg" "$found"
    else
      [ "$report" = 1 ] && printf '%s\t%s\tmissing\t-\n' "$name" "$pkg"
      case " ${missing_pkgs[*]-} " in *" $pkg "*) ;; *) missing_pkgs+=("$pkg") ;; esac
    fi
  done
  return 0
}

detect_all
if [ "$report" = 1 ]; then
  exit 0
fi

if ((${#missing_pkgs[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing_pkgs[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  else
    echo "setup: please install the equivalents of these Debian packages: ${missing_pkgs[*]} (no apt-get here)" >&2
    exit 1
  fi
  # Look again: an install that did not bring what the build loads is an
  # error here, not twenty minutes later in the middle of the build.
  detect_all
  if ((${#missing_pkgs[@]})); then
    echo "setup: still missing after installing: ${missing_pkgs[*]}; see 'scripts/setup.sh --report'" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust is missing; install it from rustup (cargo 1.80 or newer)" >&2
  exit 1
fi
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ "${java_major:-0}" -lt 17 ]; then
  echo "setup: Java 17 or newer is needed for the Kafka broker (found ${java_major:-none})" >&2
  exit 1
fi
