#!/usr/bin/env bash
# Installs what building and running sendgate needs, once: libclang (bindgen
# for RocksDB), a C/C++ toolchain and make (RocksDB, librdkafka), and checks
# for Rust, Java 17+ and Maven (the local Kafka broker).
set -euo pipefail

missing_pkgs=()
have_libclang() {
  ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1
}
have_libclang || missing_pkgs+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || missing_pkgs+=(g++)
command -v make >/dev/null 2>&1 || missing_pkgs+=(make)
command -v perl >/dev/null 2>&1 || missing_pkgs+=(perl)
command -v java >/dev/null 2>&1 || missing_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing_pkgs+=(maven)

if ((${#missing_pkgs[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing_pkgs[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null
  else
    echo "setup: please install: ${missing_pkgs[*]} (no apt-get here)" >&2
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
