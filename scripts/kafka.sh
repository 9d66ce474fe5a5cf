#!/usr/bin/env bash
# Run a real, single-node Apache Kafka broker (KRaft, broker+controller in one
# JVM) on 127.0.0.1 without Docker. The jars come from Maven Central through
# scripts/kafka/pom.xml and are cached outside the repository.
#
# Usage: scripts/kafka.sh COMMAND [ARGS]
#   install        fetch the broker jars into the cache (skipped when present)
#   start          install if needed, format storage once, start the broker in
#                  the background and wait until it serves clients
#   stop           SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, then SIGKILL
#   restart        stop, then start
#   status         say whether the broker runs (exit 0) or not (exit 3)
#   wipe           stop and delete the data directory
#   env            print KAFKA_BOOTSTRAP=127.0.0.1:<port> (with KAFKA_SECURE=1
#                  also the secured listeners' client settings)
#   log            print the last lines of the broker log
#   topics ARGS    run the topic tool against the broker (e.g. `topics --list`)
#   tool CLASS ARGS  run any Kafka tool class with the broker's classpath,
#                  e.g. `tool org.apache.kafka.tools.ConsoleProducer ...`
#
# Settings (environment):
#   SENDGATE_CACHE         cache root             (default ~/.cache/sendgate)
#   KAFKA_VERSION          Kafka release          (default 4.1.2)
#   KAFKA_PORT             client port            (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port  (default 9093)
#   KAFKA_DATA_DIR         data directory         (default $SENDGATE_CACHE/kafka-data-<port>)
#   KAFKA_HEAP_OPTS        broker heap            (default -Xmx1g -Xms256m)
#   KAFKA_JVM_OPTS         extra broker JVM flags (default none)
#   KAFKA_EXTRA_PROPERTIES extra server.properties lines, newline separated;
#                          they override the template
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait for a clean stop (default 60)
#   JAVA_HOME, MVN         Java 17+ installation, Maven command (default mvn)
#   KAFKA_SECURE           1: also SASL_SSL (PLAIN, SCRAM, OAUTHBEARER/OIDC) on
#                          KAFKA_PORT+2 and mutual TLS on KAFKA_PORT+3, with a
#                          test CA, users and an OIDC token server; see
#                          scripts/kafka/secure.sh (client settings go to
#                          $KAFKA_DATA_DIR/tls/credentials.env)
# One node of a multi-broker cluster (scripts/cluster.sh sets these):
#   KAFKA_NODE_ID          this node's id         (default 1)
#   KAFKA_CLUSTER_VOTERS   the static controller quorum, id@host:port,...;
#                          every node formats its storage for it (no
#                          --standalone) under KAFKA_CLUSTER_ID
#   KAFKA_CLUSTER_ID       the cluster id every node formats with
#   KAFKA_EXTERNAL_PORT    a second client listener (EXTERNAL) on this port,
#   KAFKA_ADVERTISED_PORT  advertised on that port (a proxy in front of it)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_DIR="$SCRIPT_DIR/kafka"

CACHE_ROOT="${SENDGATE_CACHE:-$HOME/.cache/sendgate}"
# Keep equal to <kafka.version> in scripts/kafka/pom.xml and the image tag in
# docker-compose.yml.
KAFKA_VERSION="${KAFKA_VERSION:-4.1.2}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
LIB_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION/lib"
# One data directory per client port, so brokers on different ports (e.g.
# parallel test runs) never share storage.
DATA_DIR="${KAFKA_DATA_DIR:-$CACHE_ROOT/kafka-data-$KAFKA_PORT}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1g -Xms256m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
KAFKA_NODE_ID="${KAFKA_NODE_ID:-1}"
KAFKA_CLUSTER_VOTERS="${KAFKA_CLUSTER_VOTERS:-}"
KAFKA_CLUSTER_ID="${KAFKA_CLUSTER_ID:-}"
KAFKA_EXTERNAL_PORT="${KAFKA_EXTERNAL_PORT:-}"
KAFKA_ADVERTISED_PORT="${KAFKA_ADVERTISED_PORT:-$KAFKA_EXTERNAL_PORT}"
MVN="${MVN:-mvn}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
PROPS="$DATA_DIR/server.properties"
PID_FILE="$DATA_DIR/kafka.pid"
SERVER_LOG="$DATA_DIR/server.log"
STDOUT_LOG="$DATA_DIR/stdout.log"
# Written at format time: the KRaft quorum remembers the controller endpoint,
# so starting the same storage on another controller port would never elect.
FORMAT_STAMP="$DATA_DIR/formatted.env"
# Present in every data directory this script created; `wipe` refuses to
# delete a directory without it (KAFKA_DATA_DIR could point anywhere).
MARKER="$DATA_DIR/.sendgate-kafka"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Locking, pid files, starting and stopping a background process; shared
# with scripts/registry.sh.
# shellcheck source=SCRIPTDIR/lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

# KAFKA_SECURE=1: secured listeners, users, test CA and token server. Only
# defines secure_* hooks, each a no-op unless KAFKA_SECURE=1.
# shellcheck source=SCRIPTDIR/kafka/secure.sh
. "$CONF_DIR/secure.sh"

installed() { [[ -f "$LIB_DIR/.complete" ]]; }

cmd_install() {
  if installed; then
    return 0
  fi
  take_lock "$CACHE_ROOT/kafka-$KAFKA_VERSION.lock"
  installed && return 0           # another invocation finished meanwhile
  command -v "$MVN" >/dev/null 2>&1 || die "maven ($MVN) not found; it fetches the Kafka jars"
  log "fetching Kafka $KAFKA_VERSION jars into $LIB_DIR"
  # Copy into a scratch directory and rename at the end, so an interrupted
  # download never looks like a complete install.
  local tmp="$LIB_DIR.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! run_maven -f "$CONF_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp"; then
    rm -rf "$tmp"
    rmdir "$(dirname "$LIB_DIR")" 2>/dev/null || true
    die "maven could not fetch Kafka $KAFKA_VERSION (is that version on Maven Central?)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after download"; }
  touch "$tmp/.complete"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  log "installed $(find "$LIB_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1))"
}

# JVM for the short-lived tools: small heap, serial GC and the C1 compiler
# only, since they run for a second or two and startup time dominates.
tool_cmd() {
  local class="$1"; shift
  TOOL=("$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$CONF_DIR/tools-log4j2.xml"
        -cp "$LIB_DIR/*" "$class" "$@")
}

run_tool() {
  tool_cmd "$@"
  "${TOOL[@]}"
}

# True when the broker at $BOOTSTRAP is registered and unfenced. The listener
# opens before the controller unfences the broker; until then the metadata it
# serves lists no broker, and the tool prints no "(id: N" line.
broker_ready() {
  local out
  tool_cmd org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$CONF_DIR/admin-probe.properties"
  out="$(with_timeout 30 "${TOOL[@]}" 2>/dev/null)" || return 1
  [[ "$out" == *"(id: "* ]]
}

# True when $1 is a live (non-zombie) JVM running this data directory's
# broker; a stale pid file whose number was reused does not match.
is_our_broker() {
  local args
  args="$(process_cmdline "$1")" || return 1
  [[ "$args" == *"kafka.Kafka $PROPS"* ]]
}

broker_pid() { running_pid "$PID_FILE" is_our_broker; }

render_properties() {
  local tpl
  tpl="$(<"$CONF_DIR/server.properties.in")"
  tpl="${tpl//@PORT@/$KAFKA_PORT}"
  tpl="${tpl//@CONTROLLER_PORT@/$KAFKA_CONTROLLER_PORT}"
  tpl="${tpl//@LOG_DIRS@/$DATA_DIR/data}"
  tpl="${tpl//node.id=1/node.id=$KAFKA_NODE_ID}"
  if [[ -n "$KAFKA_CLUSTER_VOTERS" ]]; then
    # A static quorum of every node's controller instead of a standalone one.
    tpl="${tpl//controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT/controller.quorum.voters=$KAFKA_CLUSTER_VOTERS}"
  fi
  if [[ -n "$KAFKA_EXTERNAL_PORT" ]]; then
    # Clients that bootstrap on EXTERNAL are told the advertised port of
    # every broker: with a TCP proxy in front of each, all their traffic
    # passes the proxies, while the brokers talk to each other directly.
    tpl="${tpl//listeners=PLAINTEXT:\/\/127.0.0.1:$KAFKA_PORT,/listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,EXTERNAL://127.0.0.1:$KAFKA_EXTERNAL_PORT,}"
    tpl="${tpl//advertised.listeners=PLAINTEXT:\/\/127.0.0.1:$KAFKA_PORT,EXTERNAL:\/\/127.0.0.1:$KAFKA_EXTERNAL_PORT,/advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,EXTERNAL://127.0.0.1:$KAFKA_ADVERTISED_PORT,}"
    tpl="${tpl//listener.security.protocol.map=PLAINTEXT:PLAINTEXT,/listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT,}"
  fi
  {
    printf '%s\n' "$tpl"
    secure_properties
    if [[ -n "$KAFKA_EXTRA_PROPERTIES" ]]; then
      printf '\n# From KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES"
    fi
  } >"$PROPS.tmp"
  mv "$PROPS.tmp" "$PROPS"
}

# Format the KRaft storage once. --standalone makes this node the sole voter
# of a dynamic controller quorum; meta.properties marks a formatted directory.
format_storage() {
  if [[ -f "$DATA_DIR/data/meta.properties" ]]; then
    if [[ -f "$FORMAT_STAMP" ]]; then
      local formatted_cport
      formatted_cport="$(sed -n 's/^CONTROLLER_PORT=//p' "$FORMAT_STAMP")"
      if [[ -n "$formatted_cport" && "$formatted_cport" != "$KAFKA_CONTROLLER_PORT" ]]; then
        die "$DATA_DIR was formatted for controller port $formatted_cport, not $KAFKA_CONTROLLER_PORT; use that port or run 'wipe'"
      fi
    fi
    return 0
  fi
  local cluster_id="$KAFKA_CLUSTER_ID" quorum=(--standalone)
  [[ -n "$KAFKA_CLUSTER_VOTERS" ]] && quorum=()
  [[ -n "$cluster_id" ]] || cluster_id="$(run_tool kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  [[ -n "$cluster_id" ]] || die "could not generate a cluster id"
  log "formatting $DATA_DIR/data (cluster id $cluster_id)"
  if ! run_tool kafka.tools.StorageTool format --cluster-id "$cluster_id" \
      --config "$PROPS" ${quorum[@]+"${quorum[@]}"} --ignore-formatted \
      ${SECURE_FORMAT_ARGS[@]+"${SECURE_FORMAT_ARGS[@]}"} >"$DATA_DIR/format.log" 2>&1; then
    cat "$DATA_DIR/format.log" >&2
    die "formatting the storage failed"
  fi
  printf 'CLUSTER_ID=%s\nCONTROLLER_PORT=%s\nKAFKA_VERSION=%s\n' \
    "$cluster_id" "$KAFKA_CONTROLLER_PORT" "$KAFKA_VERSION" >"$FORMAT_STAMP"
}

launch() {
  local -a heap extra
  read -r -a heap <<<"$KAFKA_HEAP_OPTS"
  read -r -a extra <<<"$KAFKA_JVM_OPTS"
  # Same GC settings as Kafka's own start script.
  local -a jvm=(
    "${heap[@]}"
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dkafka.logs.dir=$DATA_DIR"
    "-Dlog4j2.configurationFile=$CONF_DIR/log4j2.xml"
    ${extra[@]+"${extra[@]}"}
  )
  # Detached from this shell, so the broker runs until `stop`.
  spawn_detached "$PID_FILE" "$STDOUT_LOG" \
    "$JAVA" "${jvm[@]}" -cp "$LIB_DIR/*" kafka.Kafka "$PROPS" \
    || die "the broker process did not start"
}

# Stop the broker with pid $1: SIGTERM lets it flush and close its logs, so the
# next start skips log recovery; SIGKILL only if it hangs. Also called by
# secure.sh when a secured start fails after the broker came up.
terminate() {
  stop_process "$1" is_our_broker "$KAFKA_STOP_TIMEOUT" broker
  rm -f "$PID_FILE"
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while (( SECONDS < deadline )); do
    if ! is_our_broker "$pid"; then
      tail_logs 60 "$STDOUT_LOG" "$SERVER_LOG"
      die "the broker exited during startup (see above; data in $DATA_DIR)"
    fi
    # The cheap port check first: each probe is a JVM start.
    if port_open "$KAFKA_PORT" && broker_ready; then
      return 0
    fi
    sleep 1
  done
  tail_logs 60 "$STDOUT_LOG" "$SERVER_LOG"
  log "error: broker not ready on $BOOTSTRAP after ${KAFKA_START_TIMEOUT}s (KAFKA_START_TIMEOUT); stopping it"
  terminate "$pid"
  exit 1
}

cmd_start() {
  require_java "Kafka $KAFKA_VERSION"
  cmd_install
  take_lock "${DATA_DIR%/}.lock"
  local pid
  pid="$(broker_pid)"
  if [[ -n "$pid" ]]; then
    wait_ready "$pid"   # it may have been started a moment ago
    secure_check_running
    log "already running (pid $pid) on $BOOTSTRAP"
    return 0
  fi
  if port_open "$KAFKA_PORT"; then
    # Someone else's broker (another checkout, a container) is fine as long
    # as it is Kafka; anything else on the port is an error.
    if broker_ready; then
      log "a Kafka broker not started from $DATA_DIR already serves $BOOTSTRAP; nothing to do"
      return 0
    fi
    die "port $KAFKA_PORT is in use by something that is not a ready Kafka broker (set KAFKA_PORT)"
  fi
  port_open "$KAFKA_CONTROLLER_PORT" && die "controller port $KAFKA_CONTROLLER_PORT is in use (set KAFKA_CONTROLLER_PORT)"

  mkdir -p "$DATA_DIR/data"
  touch "$MARKER"
  secure_prepare
  render_properties
  format_storage
  local t0=$SECONDS
  launch
  pid="$(read_pid "$PID_FILE")"
  wait_ready "$pid"
  secure_finish "$pid"
  log "Kafka $KAFKA_VERSION ready on $BOOTSTRAP (pid $pid, $((SECONDS - t0))s; log $SERVER_LOG)"
}

cmd_stop() {
  take_lock "${DATA_DIR%/}.lock"
  local pid
  pid="$(broker_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    secure_stop_token_server
    log "not running (data dir $DATA_DIR)"
    return 0
  fi
  log "stopping broker (pid $pid)"
  terminate "$pid"
  secure_stop_token_server
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(broker_pid)"
  if [[ -n "$pid" ]]; then
    local state="accepting connections"
    port_open "$KAFKA_PORT" || state="not yet accepting connections"
    echo "running: pid $pid, $BOOTSTRAP ($state), Kafka $KAFKA_VERSION, data $DATA_DIR"
    return 0
  fi
  if port_open "$KAFKA_PORT"; then
    echo "not running from $DATA_DIR, but something listens on $BOOTSTRAP"
  else
    echo "not running (data $DATA_DIR)"
  fi
  return 3   # LSB "program is not running"
}

cmd_wipe() {
  cmd_stop
  take_lock "${DATA_DIR%/}.lock"
  if [[ ! -e "$DATA_DIR" ]]; then
    log "nothing to wipe at $DATA_DIR"
    return 0
  fi
  [[ -f "$MARKER" ]] || die "$DATA_DIR was not created by this script (no $(basename "$MARKER")); not deleting it"
  rm -rf "$DATA_DIR"
  rm -f "${DATA_DIR%/}.lock"
  log "deleted $DATA_DIR"
}

need_install() {
  installed || die "Kafka $KAFKA_VERSION is not installed; run: $0 install"
}

case "${1:-}" in
  install) shift; cmd_install ;;
  start)   shift; cmd_start ;;
  stop)    shift; cmd_stop ;;
  restart) shift; cmd_stop; cmd_start ;;
  status)  shift; cmd_status ;;
  wipe)    shift; cmd_wipe ;;
  env)     shift; echo "KAFKA_BOOTSTRAP=$BOOTSTRAP"; secure_env ;;
  log)     shift; tail -n "${1:-100}" "$SERVER_LOG" ;;
  topics)  shift; need_install; run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
  tool)    shift; [[ $# -ge 1 ]] || die "usage: $0 tool CLASS [ARGS...]"; need_install; run_tool "$@" ;;
  -h|--help|help) print_usage "$0" ;;
  *) print_usage "$0" >&2; exit 2 ;;
esac
