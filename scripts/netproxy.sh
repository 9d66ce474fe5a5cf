#!/usr/bin/env bash
# Network faults between sendgate and the brokers of scripts/cluster.sh:
# Toxiproxy (github.com/Shopify/toxiproxy, built from the Go module proxy
# with `go install`) listens on each broker's advertised EXTERNAL port and
# forwards to the broker, so every connection a client opens through
# `cluster.sh proxied-bootstrap` passes a proxy that can slow, throttle or
# cut it. The brokers replicate to each other directly, unaffected.
#
# Usage: scripts/netproxy.sh COMMAND [ARGS]
#   install               build the proxy into the cache (skipped when present)
#   start                 start it and create one proxy per broker (broker-1..3)
#   stop                  stop it
#   status                exit 0 when it answers
#   latency N MS JITTER   add MS ms (+- JITTER) to everything to and from broker N
#   bandwidth N KBPS      limit broker N's traffic to KBPS KB/s each way
#   blackhole N           broker N's connections stay open but carry nothing
#                         (data dropped silently, as by a cut cable)
#   down N | up N         refuse and close broker N's connections / accept again
#   heal [N]              remove every fault (of broker N, or of all)
#   list                  the proxies and their faults, as JSON
# N may be "all". Every fault is on both directions.
#
# Settings: CLUSTER_PORT (default 19500, as cluster.sh); the proxy's API is on
# CLUSTER_PORT+4. SENDGATE_CACHE (default ~/.cache/sendgate).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${SENDGATE_CACHE:-$HOME/.cache/sendgate}"
# shellcheck source=SCRIPTDIR/lib/cluster-ports.sh
. "$SCRIPT_DIR/lib/cluster-ports.sh"
API_PORT="$(proxy_api_port)"
API="http://127.0.0.1:$API_PORT"
TOXIPROXY_VERSION=2.5.0
BIN_DIR="$CACHE_ROOT/toxiproxy-$TOXIPROXY_VERSION"
BIN="$BIN_DIR/toxiproxy-server"
RUN_DIR="$CACHE_ROOT/netproxy-$CLUSTER_PORT"
PID_FILE="$RUN_DIR/toxiproxy.pid"
LOG_FILE="$RUN_DIR/toxiproxy.log"

log() { printf 'netproxy.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=SCRIPTDIR/lib/service.sh
. "$SCRIPT_DIR/lib/service.sh"

cmd_install() {
  [[ -x "$BIN" ]] && return 0
  command -v go >/dev/null 2>&1 || die "go not found; it builds the TCP proxy (Toxiproxy $TOXIPROXY_VERSION)"
  take_lock "$BIN_DIR.lock"
  [[ -x "$BIN" ]] && return 0
  log "building Toxiproxy $TOXIPROXY_VERSION into $BIN_DIR"
  local tmp="$BIN_DIR.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION" >&2 \
    || { rm -rf "$tmp"; die "go install of Toxiproxy $TOXIPROXY_VERSION failed (is the Go module proxy reachable?)"; }
  mv "$tmp/server" "$tmp/toxiproxy-server"
  rm -rf "$BIN_DIR"; mv "$tmp" "$BIN_DIR"
}

# One request to the proxy's HTTP API; prints the answer.
api() {
  local method=$1 path=$2 body=${3:-}
  python3 - "$method" "$API$path" "$body" <<'EOF'
import sys, urllib.request, urllib.error
method, url, body = sys.argv[1:4]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.exit(f"netproxy.sh: {method} {url}: {e.code} {e.read().decode().strip()}")
except OSError as e:
    sys.exit(f"netproxy.sh: {method} {url}: {e} (is the proxy running? scripts/netproxy.sh start)")
EOF
}

is_ours() {
  local args
  args="$(process_cmdline "$1")" || return 1
  [[ "$args" == *"toxiproxy-server"*"-port $API_PORT"* ]]
}

cmd_start() {
  cmd_install
  mkdir -p "$RUN_DIR"
  take_lock "$RUN_DIR.lock"
  if [[ -z "$(running_pid "$PID_FILE" is_ours)" ]]; then
    port_open "$API_PORT" && die "port $API_PORT is in use (set CLUSTER_PORT)"
    spawn_detached "$PID_FILE" "$LOG_FILE" "$BIN" -host 127.0.0.1 -port "$API_PORT" || die "the proxy did not start"
    local i
    for i in $(seq 50); do port_open "$API_PORT" && break; sleep 0.1; done
    port_open "$API_PORT" || { tail_logs 20 "$LOG_FILE"; die "the proxy does not answer on $API_PORT"; }
  fi
  local n
  for n in "${NODES[@]}"; do
    api GET "/proxies/broker-$n" >/dev/null 2>&1 && continue
    api POST /proxies "{\"name\":\"broker-$n\",\"listen\":\"127.0.0.1:$(proxy_port "$n")\",\"upstream\":\"127.0.0.1:$(external_port "$n")\",\"enabled\":true}" >/dev/null
  done
  log "proxies up: $(for n in "${NODES[@]}"; do printf '%s->%s ' "$(proxy_port "$n")" "$(external_port "$n")"; done)(API $API)"
}

cmd_stop() {
  take_lock "$RUN_DIR.lock"
  local pid
  pid="$(running_pid "$PID_FILE" is_ours)"
  [[ -n "$pid" ]] && stop_process "$pid" is_ours 10 proxy
  rm -f "$PID_FILE"
}

nodes_of() { if [[ "$1" == all ]]; then echo "${NODES[@]}"; else echo "$1"; fi; }

# add_toxic NODE NAME TYPE ATTRIBUTES_JSON: on both streams.
add_toxic() {
  local n=$1 name=$2 type=$3 attrs=$4 stream
  for stream in upstream downstream; do
    api DELETE "/proxies/broker-$n/toxics/$name-$stream" >/dev/null 2>&1 || true
    api POST "/proxies/broker-$n/toxics" \
      "{\"name\":\"$name-$stream\",\"type\":\"$type\",\"stream\":\"$stream\",\"toxicity\":1.0,\"attributes\":$attrs}" >/dev/null
  done
}

cmd_heal() {
  local n t
  if [[ "${1:-all}" == all ]]; then api POST /reset >/dev/null; return; fi
  for t in $(api GET "/proxies/broker-$1/toxics" | python3 -c 'import json,sys; print(" ".join(t["name"] for t in json.load(sys.stdin)))'); do
    api DELETE "/proxies/broker-$1/toxics/$t" >/dev/null
  done
  api POST "/proxies/broker-$1" '{"enabled":true}' >/dev/null
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) [[ -n "$(running_pid "$PID_FILE" is_ours)" ]] && api GET /version >/dev/null ;;
  latency) for n in $(nodes_of "${2:?node}"); do add_toxic "$n" latency latency "{\"latency\":${3:?ms},\"jitter\":${4:-0}}"; done ;;
  bandwidth) for n in $(nodes_of "${2:?node}"); do add_toxic "$n" bandwidth bandwidth "{\"rate\":${3:?KB/s}}"; done ;;
  blackhole) for n in $(nodes_of "${2:?node}"); do add_toxic "$n" blackhole timeout '{"timeout":0}'; done ;;
  down) for n in $(nodes_of "${2:?node}"); do api POST "/proxies/broker-$n" '{"enabled":false}' >/dev/null; done ;;
  up) for n in $(nodes_of "${2:?node}"); do api POST "/proxies/broker-$n" '{"enabled":true}' >/dev/null; done ;;
  heal) cmd_heal "${2:-all}" ;;
  list) api GET /proxies; echo ;;
  -h|--help|help) print_usage "$0" ;;
  *) print_usage "$0" >&2; exit 2 ;;
esac
