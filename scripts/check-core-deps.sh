#!/usr/bin/env bash
# The guard core (crates/core) must stay free of I/O: fails when its
# dependency tree (normal, build and dev dependencies) holds a Kafka client,
# RocksDB or an async runtime, and names the crate and the path that brings it.
#
#   scripts/check-core-deps.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

forbidden='^(rdkafka|rdkafka-sys|rocksdb|librocksdb-sys|tokio|async-std|smol|futures-executor|mio)$'
tree="$(cargo tree --locked -p sendgate-core -e normal,build,dev --prefix none --format '{p}' | awk '{print $1}' | sort -u)"
count=$(printf '%s\n' "$tree" | grep -c . || true)
bad="$(printf '%s\n' "$tree" | grep -E "$forbidden" || true)"
if [ -n "$bad" ]; then
  for crate in $bad; do
    echo "check-core-deps: sendgate-core depends on $crate:" >&2
    cargo tree --locked -p sendgate-core -e normal,build,dev -i "$crate" >&2 || true
  done
  echo "check-core-deps: the core crate must not depend on a Kafka client, RocksDB or an async runtime; move the code that needs it to the sendgate crate" >&2
  exit 1
fi
echo "check-core-deps: sendgate-core's $count crates include no Kafka client, RocksDB or async runtime"
