#!/usr/bin/env bash
# A three-broker Apache Kafka cluster on 127.0.0.1 (KRaft: each node is a
# broker and one of three controller voters), for the fault harness: topics
# replicated three times with min.insync.replicas 2, so a partition leader
# or a transaction coordinator can die and fail over. Each node is run by
# scripts/kafka.sh from the same Maven-fetched jars as the single broker.
#
# Usage: scripts/cluster.sh COMMAND [ARGS]
#   start             start every node (in parallel: a node serves clients
#                     only once a quorum of controllers is up) and wait for
#                     all three
#   stop              stop every node cleanly
#   start-node N      start node N (1-3) again
#   stop-node N       stop node N cleanly
#   kill-node N       SIGKILL node N (no flush, no clean shutdown)
#   status            each node's state; exit 0 when all three run
#   wipe              stop and delete every node's data
#   bootstrap         print the direct bootstrap list (host:port,...)
#   proxied-bootstrap print the bootstrap list through the TCP proxies
#                     (scripts/netproxy.sh) that the EXTERNAL listeners
#                     advertise
#   leaders TOPIC     print "partition leader" for each partition of TOPIC
#   coordinators PREFIX
#                     print "transactional-id coordinator state" for the
#                     transactional ids starting with PREFIX
#   tool CLASS ARGS   run a Kafka tool class against node 1..3
#
# Ports (CLUSTER_PORT, default 19500): node N's clients on CLUSTER_PORT+10N,
# its controller on +1, its EXTERNAL listener on +2, advertised as +5 (the
# proxy's port in front of it). Data under $SENDGATE_CACHE/kafka-cluster-<CLUSTER_PORT>/node-N.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${SENDGATE_CACHE:-$HOME/.cache/sendgate}"
# shellcheck source=SCRIPTDIR/lib/cluster-ports.sh
. "$SCRIPT_DIR/lib/cluster-ports.sh"
CLUSTER_DIR="$CACHE_ROOT/kafka-cluster-$CLUSTER_PORT"

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=SCRIPTDIR/lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

voters() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# The cluster id is chosen once and kept beside the nodes' data: every node
# must format its storage with the same one.
cluster_id() {
  mkdir -p "$CLUSTER_DIR"
  if [[ ! -s "$CLUSTER_DIR/cluster.id" ]]; then
    # A KRaft cluster id is 16 bytes, URL-safe base64 without padding.
    python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))' >"$CLUSTER_DIR/cluster.id"
  fi
  cat "$CLUSTER_DIR/cluster.id"
}

# Runs scripts/kafka.sh for node $1 with the rest of the arguments.
node() {
  local n=$1; shift
  case "$n" in 1|2|3) ;; *) die "no node '$n' (1, 2 or 3)" ;; esac
  # Replication 3 and two in sync for every topic, the internal ones too.
  KAFKA_EXTRA_PROPERTIES="default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
${KAFKA_EXTRA_PROPERTIES:-}" \
  KAFKA_SECURE=0 \
  KAFKA_NODE_ID="$n" \
  KAFKA_PORT="$(client_port "$n")" \
  KAFKA_CONTROLLER_PORT="$(controller_port "$n")" \
  KAFKA_EXTERNAL_PORT="$(external_port "$n")" \
  KAFKA_ADVERTISED_PORT="$(proxy_port "$n")" \
  KAFKA_CLUSTER_VOTERS="$(voters)" \
  KAFKA_CLUSTER_ID="$(cluster_id)" \
  KAFKA_DATA_DIR="$CLUSTER_DIR/node-$n" \
  KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx768m -Xms256m}" \
    bash "$SCRIPT_DIR/kafka.sh" "$@"
}

bootstrap_of() {
  local fn=$1 n out=()
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$("$fn" "$n")"); done
  (IFS=,; echo "${out[*]}")
}

node_pid() { cat "$CLUSTER_DIR/node-$1/kafka.pid" 2>/dev/null || true; }

# Runs a Kafka tool class against any live node.
tool() {
  local n
  for n in "${NODES[@]}"; do
    if node "$n" status >/dev/null 2>&1; then
      node "$n" tool "$@"
      return
    fi
  done
  die "no node of the cluster is running"
}

cmd_start() {
  local n pids=() rc=0
  node 1 install
  for n in "${NODES[@]}"; do
    node "$n" start >"$CLUSTER_DIR/start-$n.log" 2>&1 &
    pids+=($!)
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || rc=1; done
  if [[ $rc != 0 ]]; then
    for n in "${NODES[@]}"; do cat "$CLUSTER_DIR/start-$n.log" >&2; done
    die "the cluster did not start (see above)"
  fi
  log "three brokers ready: $(bootstrap_of client_port) (through the proxies: $(bootstrap_of proxy_port))"
}

cmd_kill_node() {
  local n=$1 pid
  pid="$(node_pid "$n")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || die "node $n is not running"
  kill -9 "$pid"
  # Gone before returning, so a start right after finds the port free.
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$CLUSTER_DIR/node-$n/kafka.pid"
  log "node $n SIGKILLed (pid $pid)"
}

cmd_status() {
  local n rc=0
  for n in "${NODES[@]}"; do
    printf 'node %s: ' "$n"
    node "$n" status || rc=3
  done
  return $rc
}

cmd_leaders() {
  local topic=$1
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_of client_port)" --describe --topic "$topic" \
    | sed -n 's/.*Partition: \([0-9]*\)[[:space:]]*Leader: \([-0-9]*\).*/\1 \2/p'
}

cmd_coordinators() {
  local prefix=$1
  tool org.apache.kafka.tools.TransactionsCommand --bootstrap-server "$(bootstrap_of client_port)" list \
    | awk -v p="$prefix" 'index($1, p) == 1 { print $1, $2, $4 }'
}

case "${1:-}" in
  start) cmd_start ;;
  stop) for n in "${NODES[@]}"; do node "$n" stop || true; done ;;
  start-node) node "${2:?node}" start ;;
  stop-node) node "${2:?node}" stop ;;
  kill-node) cmd_kill_node "${2:?node}" ;;
  status) cmd_status ;;
  wipe) for n in "${NODES[@]}"; do node "$n" wipe || true; done; rm -rf "$CLUSTER_DIR" ;;
  bootstrap) bootstrap_of client_port ;;
  proxied-bootstrap) bootstrap_of proxy_port ;;
  leaders) cmd_leaders "${2:?topic}" ;;
  coordinators) cmd_coordinators "${2:?prefix}" ;;
  tool) shift; tool "$@" ;;
  -h|--help|help) print_usage "$0" ;;
  *) print_usage "$0" >&2; exit 2 ;;
esac
