#!/usr/bin/env bash
# Build the Kafka Streams peer if needed, then run it.
#
# Usage: bench/streams-peer/run.sh --build-only
#        bench/streams-peer/run.sh --bootstrap 127.0.0.1:PORT --namespace NS --state-dir DIR
#          [--logic sender|full] [--threads N] [--guarantee exactly_once_v2|at_least_once] [--commit-interval-ms 100]
#          [--recipient-day-limit N] [--park-max N] [--suppressions global|repartition]   (--logic full only)
#
# Runs until SIGTERM or SIGINT, then closes Kafka Streams and exits 0.
#
# Environment:
#   JAVA_HOME         Java 17+ installation (default: java on PATH)
#   MVN               Maven command (default mvn)
#   PEER_HEAP_OPTS    JVM heap flags (default -Xms256m -Xmx1g)
#   PEER_JVM_OPTS     extra JVM flags, e.g. -Dorg.slf4j.simpleLogger.defaultLogLevel=info
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MVN="${MVN:-mvn}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
JAR="$DIR/target/streams-peer.jar"
LIB="$DIR/target/lib"

log() { printf 'run.sh: %s\n' "$*" >&2; }

# True when the jar is missing or older than any source or the POM.
needs_build() {
  [[ -f "$JAR" && -d "$LIB" ]] || return 0
  [[ -n "$(find "$DIR/pom.xml" "$DIR/src" -newer "$JAR" -type f -print -quit)" ]]
}

build() {
  # Maven's quiet mode still prints bare colour-reset codes; strip them.
  # (pipefail makes a pipeline fail when Maven does.)
  local -a mvn=("$MVN" -q -B -Dstyle.color=never -f "$DIR/pom.xml" package)
  log "building (offline)"
  if "${mvn[0]}" -o "${mvn[@]:1}" 2>&1 | sed $'s/\e\\[[0-9;]*m//g' >&2; then
    return 0
  fi
  log "offline build failed (dependencies not in the local Maven repository yet?); building online"
  if ! "${mvn[@]}" 2>&1 | sed $'s/\e\\[[0-9;]*m//g' >&2; then
    log "error: build failed"
    exit 1
  fi
}

if needs_build; then
  build
fi
[[ "${1:-}" == "--build-only" ]] && exit 0

read -r -a heap <<<"${PEER_HEAP_OPTS:--Xms256m -Xmx1g}"
read -r -a extra <<<"${PEER_JVM_OPTS:-}"
exec "$JAVA" "${heap[@]}" ${extra[@]+"${extra[@]}"} \
  -cp "$JAR:$LIB/*" dev.sendgate.peer.SenderStagePeer "$@"
