# shellcheck shell=bash
# The port layout of the fault harness's three-broker cluster, shared by
# scripts/cluster.sh (the brokers) and scripts/netproxy.sh (the TCP proxies
# in front of them). Sourced, never run.
#
# CLUSTER_PORT (default 19500): node N's clients on CLUSTER_PORT+10N, its
# controller on +1, its EXTERNAL listener on +2, advertised as +5 (the
# proxy's port in front of it); the proxy's API on CLUSTER_PORT+4.
CLUSTER_PORT="${CLUSTER_PORT:-19500}"
NODES=(1 2 3)

client_port() { echo $((CLUSTER_PORT + 10 * $1)); }
controller_port() { echo $((CLUSTER_PORT + 10 * $1 + 1)); }
external_port() { echo $((CLUSTER_PORT + 10 * $1 + 2)); }
proxy_port() { echo $((CLUSTER_PORT + 10 * $1 + 5)); }
proxy_api_port() { echo $((CLUSTER_PORT + 4)); }
