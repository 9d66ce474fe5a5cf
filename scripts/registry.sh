#!/usr/bin/env bash
# Run a real, Confluent-compatible Schema Registry on 127.0.0.1 without
# Docker: Apicurio Registry with in-memory storage, whose /apis/ccompat/v7
# API speaks the Confluent Schema Registry REST protocol (what librdkafka,
# confluent-kafka and the Confluent serdes use). The server distribution
# comes from Maven Central through scripts/registry/pom.xml and is cached
# outside the repository. Nothing is persisted: every start is empty.
#
# Usage: scripts/registry.sh COMMAND
#   install   fetch the server into the cache (skipped when present), then
#             record a class-data-sharing archive for the current java
#             (skipped when present; see REGISTRY_CDS)
#   start     install if needed, start the registry in the background and
#             wait until the Confluent API answers
#   stop      SIGTERM, wait up to REGISTRY_STOP_TIMEOUT s, then SIGKILL
#   restart   stop, then start (which also empties the registry)
#   status    say whether the registry runs (exit 0) or not (exit 3)
#   url       print the base URL of the Confluent-compatible API,
#             e.g. http://127.0.0.1:18081/apis/ccompat/v7
#   env       print SCHEMA_REGISTRY_URL=<that URL>
#   log [N]   print the last N (100) lines of the registry log
#
# Settings (environment):
#   SENDGATE_CACHE          cache root              (default ~/.cache/sendgate)
#   REGISTRY_VERSION        io.apicurio:apicurio-registry-app release
#                           (default 2.6.13.Final, runs on Java 17; the 3.x
#                           releases served here need Java 21+ via JAVA_HOME)
#   REGISTRY_PORT           HTTP port               (default 18081)
#   REGISTRY_MANAGEMENT_PORT  management port of fast-jar releases (3.3.x), bound
#                           to 127.0.0.1 too      (default REGISTRY_PORT+1000)
#   REGISTRY_RUN_DIR        pid file and log        (default $SENDGATE_CACHE/registry-run-<port>)
#   REGISTRY_HEAP_OPTS      heap                    (default -Xmx384m)
#   REGISTRY_JVM_OPTS       extra JVM flags, e.g. -Dquarkus.log.level=DEBUG
#   REGISTRY_CDS            1: record (at install) and use an AppCDS archive,
#                           which roughly halves start-up; 0: don't (default 1)
#   REGISTRY_START_TIMEOUT  seconds to wait for readiness (default 90)
#   REGISTRY_STOP_TIMEOUT   seconds to wait for a clean stop (default 30)
#   JAVA_HOME, MVN          Java 17+ installation, Maven command (default mvn)
#
# Behaviour worth knowing (Apicurio 2.6's ccompat API vs Confluent's):
#   - POST/PUT bodies need Content-Type application/vnd.schemaregistry.v1+json
#     or application/json; anything else (curl's default form type) gets 415.
#     Responses are application/json.
#   - Schema ids are global content ids: the same schema under two subjects
#     gets the same id, and ids are not dense (gaps are normal).
#   - Unknown id: 404 {"error_code":40403,"message":"No content with id/hash
#     'contentId-999999' was found."}. Default compatibility is NONE
#     (Confluent's is BACKWARD); set it per subject with PUT /config/<subject>.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_DIR="$SCRIPT_DIR/registry"

CACHE_ROOT="${SENDGATE_CACHE:-$HOME/.cache/sendgate}"
# Keep equal to <registry.version> in scripts/registry/pom.xml.
REGISTRY_VERSION="${REGISTRY_VERSION:-2.6.13.Final}"
REGISTRY_PORT="${REGISTRY_PORT:-18081}"
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-$((REGISTRY_PORT + 1000))}"
INSTALL_DIR="$CACHE_ROOT/registry-$REGISTRY_VERSION"
# One run directory per port, so registries on different ports (e.g.
# parallel test runs) never share a pid file.
RUN_DIR="${REGISTRY_RUN_DIR:-$CACHE_ROOT/registry-run-$REGISTRY_PORT}"
REGISTRY_HEAP_OPTS="${REGISTRY_HEAP_OPTS:--Xmx384m}"
REGISTRY_JVM_OPTS="${REGISTRY_JVM_OPTS:-}"
REGISTRY_CDS="${REGISTRY_CDS:-1}"
REGISTRY_START_TIMEOUT="${REGISTRY_START_TIMEOUT:-90}"
REGISTRY_STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-30}"
MVN="${MVN:-mvn}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

HOST=127.0.0.1
BASE_URL="http://$HOST:$REGISTRY_PORT"
API_URL="$BASE_URL/apis/ccompat/v7"
PID_FILE="$RUN_DIR/registry.pid"
LOG_FILE="$RUN_DIR/registry.log"
# Tags the JVM's command line, so a reused pid is never mistaken for ours.
RUN_TAG="-Dsendgate.registry.run=$RUN_DIR"

log() { printf 'registry.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Locking, pid files, starting and stopping a background process; shared
# with scripts/kafka.sh.
# shellcheck source=SCRIPTDIR/lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

require_curl() {
  command -v curl >/dev/null 2>&1 || die "curl not found; it probes the registry"
}

installed() { [[ -f "$INSTALL_DIR/.complete" ]]; }

# The jar to run: releases up to 3.0 ship a Quarkus legacy-jar
# (apicurio-registry-app-<v>-runner.jar beside lib/), later ones a fast-jar
# (quarkus-run.jar with lib/, app/, quarkus/).
app_jar() {
  local dir="${1:-$INSTALL_DIR}" jar
  if [[ -f "$dir/quarkus-run.jar" ]]; then
    echo "$dir/quarkus-run.jar"
    return 0
  fi
  for jar in "$dir"/*-runner.jar; do
    [[ -f "$jar" ]] && { echo "$jar"; return 0; }
  done
  return 1
}

# The CDS archive is only valid for the JVM that wrote it, so its name
# carries a hash of that JVM's path and version.
cds_archive() {
  local key
  key="$( { readlink -f "$(command -v "$JAVA")"; "$JAVA" -version 2>&1; } | cksum | cut -d' ' -f1)"
  echo "$INSTALL_DIR/cds/jvm-$key.jsa"
}

cmd_install() {
  if ! installed; then
    take_lock "$CACHE_ROOT/registry-$REGISTRY_VERSION.lock"
    installed || fetch
  fi
  if [[ "$REGISTRY_CDS" == 1 ]] && [[ ! -s "$(cds_archive)" ]]; then
    take_lock "$CACHE_ROOT/registry-$REGISTRY_VERSION.lock"
    [[ -s "$(cds_archive)" ]] || record_cds || log "warning: no CDS archive; the registry starts without one"
  fi
  return 0
}

fetch() {
  command -v "$MVN" >/dev/null 2>&1 || die "maven ($MVN) not found; it fetches the registry"
  log "fetching Apicurio Registry $REGISTRY_VERSION into $INSTALL_DIR"
  # Fetch and unpack into a scratch directory and rename at the end, so an
  # interrupted download never looks like a complete install.
  local tmp="$INSTALL_DIR.tmp.$$"
  local tarball="$tmp/apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! run_maven -f "$CONF_DIR/pom.xml" \
      -Dregistry.version="$REGISTRY_VERSION" -DoutputDirectory="$tmp" dependency:copy \
      || [[ ! -s "$tarball" ]]; then
    rm -rf "$tmp"
    die "maven could not fetch io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all"
  fi
  tar --no-same-owner -xzf "$tarball" -C "$tmp" || { rm -rf "$tmp"; die "could not unpack $tarball"; }
  rm -f "$tarball"
  app_jar "$tmp" >/dev/null || { rm -rf "$tmp"; die "no quarkus-run.jar or *-runner.jar in the $REGISTRY_VERSION distribution"; }
  touch "$tmp/.complete"
  rm -rf "$INSTALL_DIR"
  mv "$tmp" "$INSTALL_DIR"
  log "installed $(du -sh "$INSTALL_DIR" | cut -f1) in $INSTALL_DIR"
}

# JVM flags shared by the real and the training run. C1 only and serial GC:
# the registry answers a handful of test requests, so start-up dominates.
jvm_args() {
  local -a heap extra
  read -r -a heap <<<"$REGISTRY_HEAP_OPTS"
  read -r -a extra <<<"$REGISTRY_JVM_OPTS"
  JVM=(
    "${heap[@]}"
    -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true
    # CDS warnings about classes it cannot archive are noise.
    -Xlog:cds=off -Xlog:cds+dynamic=off
    "-Dquarkus.http.host=$HOST"
  )
  JVM+=(${extra[@]+"${extra[@]}"})
}

# The Quarkus management interface (health, metrics) of fast-jar releases listens
# on 0.0.0.0:9000 unless told otherwise; 2.x has none and would only warn
# about the unknown keys. $1: its port.
management_args() {
  MGMT=()
  if [[ "$(app_jar)" == */quarkus-run.jar ]]; then
    MGMT=("-Dquarkus.management.host=$HOST" "-Dquarkus.management.port=$1")
  fi
}

# Record an AppCDS archive (JDK 13+ dynamic archive): one start with
# -XX:ArchiveClassesAtExit, a few requests to load the classes tests use,
# then SIGTERM, on which the JVM writes the archive (~60 MB, 10-15 s in
# all). Later starts map the classes instead of loading and verifying them.
record_cds() {
  require_java "Apicurio Registry"
  require_curl
  local archive tmp_archive train_log pid port="" _
  archive="$(cds_archive)"
  mkdir -p "$(dirname "$archive")"
  tmp_archive="$archive.tmp.$$"
  train_log="$INSTALL_DIR/cds/train.log"
  rm -f "$tmp_archive"
  : >"$train_log"
  log "recording a class-data archive for $JAVA (once per java; REGISTRY_CDS=0 skips it)"
  jvm_args
  management_args 0
  # Port 0: any free port, read back from the log.
  ( exec "$JAVA" "${JVM[@]}" ${MGMT[@]+"${MGMT[@]}"} "-XX:ArchiveClassesAtExit=$tmp_archive" \
      -Dquarkus.http.port=0 \
      -Dsendgate.registry.train="$INSTALL_DIR" -jar "$(app_jar)" \
      </dev/null >"$train_log" 2>&1 9>&- ) &
  pid=$!
  for _ in $(seq $((REGISTRY_START_TIMEOUT * 5))); do
    kill -0 "$pid" 2>/dev/null || break
    port="$(sed -n 's/.*Listening on: http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$train_log" 2>/dev/null | head -n 1)"
    [[ -n "$port" ]] && curl -fsS -o /dev/null "http://$HOST:$port/apis/ccompat/v7/subjects" 2>/dev/null && break
    port=""
    sleep 0.2
  done
  if [[ -n "$port" ]]; then
    local u="http://$HOST:$port/apis/ccompat/v7" ct='Content-Type: application/vnd.schemaregistry.v1+json'
    # Touch the paths a serializer and a test use, so their classes are archived.
    curl -fsS -o /dev/null -X POST -H "$ct" "$u/subjects/cds-value/versions" \
      --data '{"schema":"{\"type\":\"record\",\"name\":\"C\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}"}' || true
    curl -fsS -o /dev/null -X POST -H "$ct" "$u/subjects/cds-value" \
      --data '{"schema":"{\"type\":\"record\",\"name\":\"C\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}"}' || true
    curl -sS -o /dev/null "$u/schemas/ids/1" || true
    curl -sS -o /dev/null "$u/schemas/ids/999999" || true
    curl -sS -o /dev/null "$u/subjects/cds-value/versions/latest" || true
    curl -sS -o /dev/null -X DELETE "$u/subjects/cds-value" || true
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((REGISTRY_STOP_TIMEOUT * 5))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$tmp_archive"
    return 1
  fi
  wait "$pid" 2>/dev/null || true
  if [[ -z "$port" || ! -s "$tmp_archive" ]]; then
    rm -f "$tmp_archive"
    tail -n 20 "$train_log" >&2
    return 1
  fi
  mv "$tmp_archive" "$archive"
  log "CDS archive: $archive ($(du -sh "$archive" | cut -f1))"
}

# True when $1 is a live JVM started by this script for this run directory.
is_our_registry() {
  local args
  args="$(process_cmdline "$1")" || return 1
  [[ "$args" == *"$RUN_TAG "* ]]
}

registry_pid() { running_pid "$PID_FILE" is_our_registry; }

# True when the Confluent-compatible API answers at $API_URL.
api_ready() {
  curl -fsS -o /dev/null --max-time 5 "$API_URL/subjects" 2>/dev/null
}

launch() {
  local -a cds=()
  local archive
  jvm_args
  management_args "$REGISTRY_MANAGEMENT_PORT"
  if [[ "$REGISTRY_CDS" == 1 ]]; then
    archive="$(cds_archive)"
    [[ -s "$archive" ]] && cds=("-XX:SharedArchiveFile=$archive")
  fi
  # A fresh log per start, so wait_ready's grep only sees this run's errors.
  : >"$LOG_FILE"
  # Detached from this shell, so the registry runs until `stop`.
  spawn_detached "$PID_FILE" "$LOG_FILE" \
    "$JAVA" "${JVM[@]}" ${MGMT[@]+"${MGMT[@]}"} ${cds[@]+"${cds[@]}"} \
    "-Dquarkus.http.port=$REGISTRY_PORT" \
    "$RUN_TAG" -jar "$(app_jar)" \
    || die "the registry process did not start"
}

terminate() {
  stop_process "$1" is_our_registry "$REGISTRY_STOP_TIMEOUT" registry
  rm -f "$PID_FILE"
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + REGISTRY_START_TIMEOUT))
  while (( SECONDS < deadline )); do
    if ! is_our_registry "$pid"; then
      tail_logs 60 "$LOG_FILE"
      if grep -q UnsupportedClassVersionError "$LOG_FILE" 2>/dev/null; then
        die "Apicurio Registry $REGISTRY_VERSION needs a newer Java than $JAVA (set JAVA_HOME, e.g. to a Java 21+ JDK)"
      fi
      die "the registry exited during startup (see above)"
    fi
    api_ready && return 0
    sleep 0.2
  done
  tail_logs 60 "$LOG_FILE"
  log "error: registry not ready at $API_URL after ${REGISTRY_START_TIMEOUT}s (REGISTRY_START_TIMEOUT); stopping it"
  terminate "$pid"
  exit 1
}

cmd_start() {
  require_java "Apicurio Registry"
  require_curl
  cmd_install
  take_lock "${RUN_DIR%/}.lock"
  local pid
  pid="$(registry_pid)"
  if [[ -n "$pid" ]]; then
    wait_ready "$pid"   # it may have been started a moment ago
    log "already running (pid $pid) at $API_URL"
    return 0
  fi
  if port_open "$REGISTRY_PORT"; then
    if api_ready; then
      log "a schema registry not started from $RUN_DIR already serves $API_URL; nothing to do"
      return 0
    fi
    die "port $REGISTRY_PORT is in use by something that does not serve $API_URL (set REGISTRY_PORT)"
  fi
  mkdir -p "$RUN_DIR"
  local t0=$SECONDS
  launch
  pid="$(read_pid "$PID_FILE")"
  wait_ready "$pid"
  log "Apicurio Registry $REGISTRY_VERSION ready at $API_URL (pid $pid, $((SECONDS - t0))s; log $LOG_FILE)"
}

cmd_stop() {
  take_lock "${RUN_DIR%/}.lock"
  local pid
  pid="$(registry_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    log "not running (run dir $RUN_DIR)"
    return 0
  fi
  log "stopping registry (pid $pid)"
  terminate "$pid"
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(registry_pid)"
  if [[ -n "$pid" ]]; then
    local state="answering"
    api_ready || state="not answering yet"
    echo "running: pid $pid, $API_URL ($state), Apicurio Registry $REGISTRY_VERSION"
    return 0
  fi
  if port_open "$REGISTRY_PORT"; then
    echo "not running from $RUN_DIR, but something listens on $HOST:$REGISTRY_PORT"
  else
    echo "not running (run dir $RUN_DIR)"
  fi
  return 3   # LSB "program is not running"
}

case "${1:-}" in
  install) shift; require_java "Apicurio Registry"; cmd_install ;;
  start)   shift; cmd_start ;;
  stop)    shift; cmd_stop ;;
  restart) shift; cmd_stop; cmd_start ;;
  status)  shift; cmd_status ;;
  url)     shift; echo "$API_URL" ;;
  env)     shift; echo "SCHEMA_REGISTRY_URL=$API_URL" ;;
  log)     shift; tail -n "${1:-100}" "$LOG_FILE" ;;
  -h|--help|help) print_usage "$0" ;;
  *) print_usage "$0" >&2; exit 2 ;;
esac
