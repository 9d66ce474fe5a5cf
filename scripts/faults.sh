#!/usr/bin/env bash
# The fault-injection harness, after Kafka's own exactly-once system test and
# Jepsen's analyses of Kafka transactions: a seeded workload published in
# batches to a three-broker cluster (scripts/cluster.sh: replication 3,
# min.insync.replicas 2) while up to three sendgate instances (one consumer
# group) meet faults of every kind:
#   - instance: SIGKILL, clean stop (SIGTERM), join, and SIGSTOP for longer
#     than the session timeout then SIGCONT (a zombie that must be fenced);
#   - broker: SIGKILL of the node that coordinates a live sendgate
#     transaction, and of the leader of a stage partition, then its restart;
#     in the long run also a restart of the whole cluster;
#   - network, between the instances and the brokers through a TCP proxy
#     (scripts/netproxy.sh): latency and jitter, a slow broker, a bandwidth
#     limit, a blackhole (connections open, nothing passes) and a cut;
#   - disk: instance 3's state directory is a small filesystem of its own
#     (tmpfs, so the harness runs as root), filled until the instance stops,
#     then emptied; it restarts and restores from the changelog;
#   - upgrade (long run): instances start on the previous release
#     (bench/upgrade-from) and are replaced one at a time by the current
#     build, so both run in one group through the faults.
# Then `sendgate-bench verify` reads every decision read-committed and
# recomputes from the inputs what each must be: zero missing, zero
# duplicates, zero status or counter mismatches, or the run fails.
#
#   scripts/faults.sh                short (about 5 minutes): the test command runs it
#   scripts/faults.sh --long         30+ minutes, 1.2M intents, every fault kind
#                                    in turn every 20-60 s, rolling upgrade;
#                                    writes its figures to docs/reliability.md
#   scripts/faults.sh --failover     failover time with and without standby
#                                    replicas; writes docs/reliability.md too
#
# After every fault a probe (one intent per partition) measures how long
# until every partition is answered again: the failover time.
#
# Env: FAULTS_SEED (default 20261124); CLUSTER_PORT (default 19500: the
# cluster's ports, see scripts/cluster.sh); FAULTS_UPGRADE_FROM (a commit,
# default the one in bench/upgrade-from); FAULTS_WORKLOAD (exact, the
# default, or mixed, the long run's default; see below).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MODE="${1:---short}"
case "$MODE" in --short|--long|--failover) ;; *) echo "usage: scripts/faults.sh [--short|--long|--failover]" >&2; exit 2 ;; esac
SEED="${FAULTS_SEED:-20261124}"
RANDOM=$SEED
CLUSTER="$REPO_ROOT/scripts/cluster.sh"
NETPROXY="$REPO_ROOT/scripts/netproxy.sh"
export CLUSTER_PORT="${CLUSTER_PORT:-19500}"
# exact: deliveries and opens only, under the sender-only policy, so the
# verifier predicts every decision and counter (the short run); mixed: hard
# and soft bounces, complaints, unsubscribes and 4xx throttles from many
# recipient domains, approvals, and operators' suppressions and mailbox
# pauses and resumes on the commands topic, under the full benchmark
# policy, held to the limits, suppressions, pauses and approvals whatever
# the interleaving (the long run).
WORKLOAD="${FAULTS_WORKLOAD:-$([ "$MODE" = --long ] && echo mixed || echo exact)}"
case "$WORKLOAD" in exact|mixed) ;; *) echo "FAULTS_WORKLOAD is exact or mixed, not '$WORKLOAD'" >&2; exit 2 ;; esac

[ "$(id -u)" = 0 ] || { echo "faults.sh: the full-disk fault mounts a small tmpfs: run as root" >&2; exit 1; }
bash "$REPO_ROOT/scripts/setup.sh"
build_release
bash "$NETPROXY" install

WORK="$(mktemp -d)"
DISK="$WORK/disk"
# The run keeps its own copy of the binary: a build in the same target
# directory during a long run must not change what its instances restart on.
cp "$SENDGATE_BIN" "$WORK/sendgate"
SENDGATE_BIN="$WORK/sendgate"
cp "$SENDGATE_BENCH_BIN" "$WORK/sendgate-bench"
SENDGATE_BENCH_BIN="$WORK/sendgate-bench"
declare -A PIDS=() BIN_OF=()

cleanup() {
  for i in "${!PIDS[@]}"; do kill -CONT "${PIDS[$i]}" 2>/dev/null; kill -9 "${PIDS[$i]}" 2>/dev/null || true; done
  [ -n "${LOADER:-}" ] && { pkill -P "$LOADER" 2>/dev/null; kill "$LOADER" 2>/dev/null; } || true
  bash "$NETPROXY" stop >/dev/null 2>&1 || true
  bash "$CLUSTER" stop >/dev/null 2>&1 || true
  mountpoint -q "$DISK" 2>/dev/null && umount "$DISK" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Its own cluster, from empty data, so runs do not pile up on disk; the
# instances reach it through the proxies, the load, the probe and the
# verifier directly (the network faults are the instances').
bash "$CLUSTER" wipe >/dev/null 2>&1 || true
bash "$CLUSTER" start
bash "$NETPROXY" start
DIRECT="$(bash "$CLUSTER" bootstrap)"
PROXIED="$(bash "$CLUSTER" proxied-bootstrap)"
export SENDGATE_BOOTSTRAP="$DIRECT" SENDGATE_REPLICATION_FACTOR=3
export SENDGATE_METRICS_ADDR="" SENDGATE_API_ADDR=""

# Instance 3's state lives on a filesystem of its own, small enough to fill.
DISK_MB=128; [ "$MODE" = --long ] && DISK_MB=1024
mkdir -p "$DISK"
mount -t tmpfs -o "size=${DISK_MB}m" tmpfs "$DISK" || { echo "faults.sh: cannot mount a tmpfs on $DISK" >&2; exit 1; }

T0=$SECONDS
log() { printf '[faults %4ds] %s\n' $((SECONDS - T0)) "$*" | tee -a "$WORK/faults.log" >&2; }
declare -A COUNT=()
counted() { COUNT[$1]=$(( ${COUNT[$1]:-0} + 1 )); FAULTS=$((FAULTS + 1)); }

# ------------------------------------------------------------ instances
state_dir() { if [ "$1" = 3 ]; then echo "$DISK/state-3"; else echo "$WORK/state-$1"; fi; }
start_inst() {
  local i=$1 bin="${BIN_OF[$1]:-$SENDGATE_BIN}"
  # Instance 3 flushes its state to disk often (1 MiB memtables), so that a
  # full disk is met within seconds.
  SENDGATE_BOOTSTRAP="$PROXIED" SENDGATE_INSTANCE_ID="i$i" SENDGATE_STATE_DIR="$(state_dir "$i")" \
    SENDGATE_STATE_WRITE_BUFFER_MB="$([ "$i" = 3 ] && echo 1 || echo 64)" \
    "$bin" run --no-create-topics >>"$WORK/inst-$i.log" 2>&1 &
  PIDS[$i]=$!
  log "instance $i started (pid ${PIDS[$i]}$([ "$bin" != "$SENDGATE_BIN" ] && echo ", previous release"))"
}
alive() { [ -n "${PIDS[$1]:-}" ] && kill -0 "${PIDS[$1]}" 2>/dev/null; }
kill_inst() {
  local i=$1
  kill -9 "${PIDS[$i]}" 2>/dev/null || log "instance $i had already exited"
  wait "${PIDS[$i]}" 2>/dev/null || true
  unset "PIDS[$i]"
  log "instance $i SIGKILLed"
  counted sigkill
}
stop_inst() {
  local i=$1 t=$SECONDS lines
  lines=$(wc -l <"$WORK/inst-$i.log")
  kill -TERM "${PIDS[$i]}" 2>/dev/null || log "instance $i had already exited"
  # A clean stop commits or aborts, writes the checkpoint and leaves the
  # group within the drain deadline; a minute means it hung.
  for _ in $(seq 600); do kill -0 "${PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "${PIDS[$i]}" 2>/dev/null; then
    log "instance $i did not stop within 60 s of SIGTERM"; kill -9 "${PIDS[$i]}"; HUNG=$((HUNG + 1))
  fi
  local rc=0; wait "${PIDS[$i]}" 2>/dev/null || rc=$?
  unset "PIDS[$i]"
  # Every task (the router and four stages) stops cleanly, and the process exits 0.
  local clean; clean=$(tail -n +"$((lines + 1))" "$WORK/inst-$i.log" | grep -c "task stopped cleanly" || true)
  if [ "$rc" = 70 ]; then
    # The watchdog ended a stop that a hung client call kept from being
    # clean (src/runtime/watchdog.rs): nothing committed, data safe.
    log "instance $i: a client call hung while it stopped; the watchdog ended it (exit 70)"; STUCK_STOPS=$((STUCK_STOPS + 1))
  elif [ "$rc" != 0 ] || [ "$clean" -lt 5 ]; then
    log "instance $i: exit $rc, $clean of 5 tasks stopped cleanly"; HUNG=$((HUNG + 1))
  fi
  log "instance $i stopped by SIGTERM in $((SECONDS - t)) s (exit $rc)"
}
# SIGSTOP for longer than the session timeout (10 s): the group moves the
# instance's partitions; resumed, it is a zombie whose producers are fenced
# and whose transactions must not land (the verifier counts duplicates).
pause_inst() {
  local i=$1 secs=$2
  kill -STOP "${PIDS[$i]}"
  log "instance $i SIGSTOPped for $secs s"
  sleep "$secs"
  kill -CONT "${PIDS[$i]}"
  log "instance $i resumed (SIGCONT)"
  counted pause
}
# The previous release's instance i replaced by the current build.
upgrade_inst() {
  local i=$1
  stop_inst "$i"
  BIN_OF[$i]="$SENDGATE_BIN"
  start_inst "$i"
  counted upgrade
}
running() { local i; for i in 1 2 3; do alive "$i" && echo -n "$i "; done; }
stopped() { local i; for i in 1 2 3; do alive "$i" || echo -n "$i "; done; }
# Restarts instances that exited on their own (a full disk), and counts them.
reap() {
  local i
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      local rc=0; wait "${PIDS[$i]}" 2>/dev/null || rc=$?
      unset "PIDS[$i]"
      log "instance $i had exited (exit $rc): $(grep -a 'sendgate: ' "$WORK/inst-$i.log" | tail -n 1 | cut -c1-160)"
    fi
  done
}
# Sets PICKED to one of the words of $1. Not `$(pick ...)`: RANDOM in a
# subshell does not advance the parent's, and the schedule must follow the seed.
pick() { local a=($1); PICKED="${a[$((RANDOM % ${#a[@]}))]}"; }

# ------------------------------------------------------------ brokers
# SIGKILL of node $1, back after $2 s. One node at a time: with two of
# three in sync every partition stays writable.
kill_node_for() {
  local node=$1 secs=$2 why=$3 t
  bash "$CLUSTER" kill-node "$node" 2>/dev/null
  log "broker $node SIGKILLed ($why)"
  sleep "$secs"
  t=$SECONDS
  bash "$CLUSTER" start-node "$node" >/dev/null 2>&1 || { log "broker $node did not come back"; BROKER_FAILED=1; }
  log "broker $node back ($((SECONDS - t)) s to start)"
}
# The coordinator of a sendgate transaction (one in progress if any).
kill_coordinator() {
  local lines node
  lines="$(bash "$CLUSTER" coordinators "$SENDGATE_NAMESPACE." 2>/dev/null || true)"
  node="$(echo "$lines" | awk '$3 == "Ongoing" { print $2; exit }')"
  [ -n "$node" ] || node="$(echo "$lines" | awk 'NF >= 2 { print $2; exit }')"
  [ -n "$node" ] || { pick "1 2 3"; node=$PICKED; }
  kill_node_for "$node" "$1" "coordinator of $(echo "$lines" | awk -v n="$node" '$2 == n' | wc -l) sendgate transactional ids"
  counted coordinator_kill
}
# The leader of a partition of the sender stage's topic.
kill_leader() {
  local p=$((RANDOM % 6)) node
  node="$(bash "$CLUSTER" leaders "$SENDGATE_NAMESPACE.stage.sender" 2>/dev/null | awk -v p="$p" '$1 == p { print $2 }')"
  [ -n "$node" ] && [ "$node" != -1 ] || { pick "1 2 3"; node=$PICKED; }
  kill_node_for "$node" "$1" "leader of stage.sender partition $p"
  counted leader_kill
}
# Every node stopped cleanly, then started: the whole cluster away.
restart_cluster() {
  log "cluster restart"
  bash "$CLUSTER" stop >/dev/null 2>&1
  sleep "$1"
  bash "$CLUSTER" start >/dev/null 2>&1 || { log "the cluster did not come back"; BROKER_FAILED=1; }
  log "cluster back"
  counted cluster_restart
}

# ------------------------------------------------------------ network
# A network fault between the instances and the brokers for $2 s.
net_fault() {
  local kind=$1 secs=$2 node
  pick "1 2 3"; node=$PICKED
  case "$kind" in
    latency) bash "$NETPROXY" latency all 60 40; log "network: +60 ms (+-40) to every broker" ;;
    slow) bash "$NETPROXY" latency "$node" 800 200; log "network: broker $node slow (+800 ms +-200)" ;;
    bandwidth) bash "$NETPROXY" bandwidth "$node" 32; log "network: broker $node limited to 32 KB/s" ;;
    blackhole) bash "$NETPROXY" blackhole "$node"; log "network: broker $node blackholed (connections open, nothing passes)" ;;
    cut) bash "$NETPROXY" down "$node"; log "network: broker $node cut (connections closed and refused)" ;;
  esac
  sleep "$secs"
  bash "$NETPROXY" heal
  log "network healed"
  counted "net_$kind"
}

# ------------------------------------------------------------ disk
# Fills instance 3's filesystem until the instance stops (it flushes every
# MiB of state), keeps it full a few seconds more, then frees it and
# starts the instance again: it restores from the changelog.
disk_full() {
  alive 3 || { start_inst 3; sleep 8; }
  local t=$SECONDS stopped_in=""
  dd if=/dev/zero of="$DISK/filler" bs=1M >/dev/null 2>&1 || true
  log "disk: instance 3's filesystem full ($(df -h --output=avail "$DISK" | tail -n 1 | tr -d ' ') left)"
  for _ in $(seq 900); do alive 3 || break; sleep 0.1; done
  if alive 3; then
    log "disk: instance 3 still runs after 90 s on a full disk (it has not needed to write)"
  else
    stopped_in=$((SECONDS - t))
    local msg; msg="$(grep -a 'sendgate: ' "$WORK/inst-3.log" | tail -n 1)"
    if [[ "$msg" == *"filesystem under state_dir is full"* ]]; then
      log "disk: instance 3 stopped after $stopped_in s, saying: ${msg:0:200}"
    else
      log "disk: instance 3 stopped without naming the full disk: ${msg:0:300}"; DISK_UNCLEAR=$((DISK_UNCLEAR + 1))
    fi
    reap
  fi
  sleep 5
  rm -f "$DISK/filler"
  log "disk: space back"
  alive 3 || start_inst 3
  echo "${stopped_in:-running}" >>"$WORK/disk.txt"
  counted disk_full
}

# After a fault: how long until every partition answers again.
# Before any load: instance 1 alone until it has decided an intent in
# every partition. Its router drains the policies partition before the
# intents, so by then the run's policy is in every stage partition's state.
# Started together, an instance that does not own the policies partition
# could route the first intents before the policy, and they would be
# decided under the defaults (docs/design.md, known limits: seen as
# DEFERRED outside_business_hours when the run starts after 18:00 in the
# default zone).
start_first_instance() {
  start_inst 1
  if ! "$SENDGATE_BENCH_BIN" probe --label "ready-$SENDGATE_NAMESPACE" --timeout-secs 300 >/dev/null 2>>"$WORK/probe.log"; then
    log "instance 1 decided nothing within 300 s: $(tail -n 1 "$WORK/probe.log")"
  fi
}

probe() {
  local label=$1 out
  reap
  if out=$("$SENDGATE_BENCH_BIN" probe --label "$label" --timeout-secs 300 2>>"$WORK/probe.log"); then
    local ms; ms=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ms"])' "$out")
    echo "$label $ms" >>"$WORK/failover.txt"
    log "probe $label: every partition answered $ms ms after the fault"
  else
    log "probe $label: no answer within 300 s: $(tail -n 1 "$WORK/probe.log")"; echo "$label timeout" >>"$WORK/failover.txt"
  fi
}

# ------------------------------------------------------------ workload
# Batches of intents with their delivery events, each batch its own seed
# (so its own intent ids), in the background.
start_load() {
  local batches=$1 size=$2 gap=$3
  (
    for b in $(seq 0 $((batches - 1))); do
      "$SENDGATE_BENCH_BIN" load --intents "$size" --events-per-intent 0.5 --seed $((SEED * 1000 + b)) --key-by-sender-domain $([ "$WORKLOAD" = exact ] && echo --deliveries-only || echo --operator-traffic) --deadline-secs 600 \
        >>"$WORK/load.log" 2>&1 || echo "batch $b failed (the brokers were away?); going on" >>"$WORK/load.log"
      sleep "$gap"
    done
  ) &
  LOADER=$!
}

prepare() {
  export SENDGATE_NAMESPACE="faults-$1-$(date +%s)"
  "$SENDGATE_BIN" topics apply >/dev/null
  if [ "$WORKLOAD" = exact ]; then
    "$SENDGATE_BIN" policy apply "$REPO_ROOT/bench/policy-sender.toml" >/dev/null
  else
    "$SENDGATE_BIN" policy apply "$REPO_ROOT/bench/policy.toml" >/dev/null
  fi
  FAULTS=0 HUNG=0 STUCK_STOPS=0 JOINS=0 DISK_UNCLEAR=0 BROKER_FAILED=0
  COUNT=()
  : >"$WORK/failover.txt"
}

# Waits for the workload to be decided in full, then verifies (bounded).
finish() {
  local limit=$1 out
  [ -n "${LOADER:-}" ] && { wait "$LOADER" || true; LOADER=""; }
  bash "$NETPROXY" heal
  reap
  local i; for i in 1 2 3; do alive "$i" || { start_inst "$i"; JOINS=$((JOINS + 1)); }; done
  log "load done; waiting for every decision"
  local deadline=$((SECONDS + limit))
  while true; do
    out=$("$SENDGATE_BENCH_BIN" verify 2>>"$WORK/verify.log" || true)
    missing=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["missing"])' "$out" 2>/dev/null || echo "?")
    [ "$missing" = 0 ] && break
    [ $SECONDS -lt $deadline ] || break
    log "$missing intents still without a decision"
    sleep 10
  done
  # The final stops must not add a decision either: verify after them.
  for i in $(running); do stop_inst "$i"; done
  if [ "$WORKLOAD" = exact ]; then
    VERIFY=$("$SENDGATE_BENCH_BIN" verify 2>>"$WORK/verify.log" || true)
  else
    VERIFY=$("$SENDGATE_BENCH_BIN" verify --no-recount 2>>"$WORK/verify.log" || true)
    # Whatever the interleaving: every window within its limit, no send to
    # a recipient after its suppression, exactly the approvals held.
    CHECK=$("$SENDGATE_BENCH_BIN" recount --logic full --check 2>>"$WORK/verify.log" || true)
    log "limits: $CHECK"
  fi
  log "verify: $VERIFY"
  # Every stage's decisions and kept state re-derived from its log, with
  # every instance stopped: a crash, fencing or restore that left a stage's
  # state other than its log implies shows here.
  if "$SENDGATE_BIN" audit replay --show 5 >"$WORK/replay.txt" 2>"$WORK/replay-err.txt"; then REPLAY=0; else REPLAY=1; fi
  log "replay: $(grep -aiE 'differ|compared|state' "$WORK/replay.txt" | head -n 6 | tr '\n' ' ')"
}

# A failed run's logs outlive it (its directory goes with it): every
# instance's, the loader's, the probes', the verifier's and the replay's,
# in the cache; the last five failed runs are kept.
keep_logs() {
  local dest="$SENDGATE_CACHE/faults-logs/${SENDGATE_NAMESPACE:-run}"
  mkdir -p "$dest" && cp "$WORK"/*.log "$WORK"/*.txt "$dest"/ 2>/dev/null || true
  ls -1dt "$SENDGATE_CACHE"/faults-logs/* 2>/dev/null | tail -n +6 | xargs -r rm -rf
  log "the run's logs are kept in $dest"
}

failover_summary() {
  python3 - "$WORK/failover.txt" <<'EOF'
import sys
ms = {}
for line in open(sys.argv[1]):
    label, v = line.split()
    kind = label.rsplit("-", 1)[0]
    ms.setdefault(kind, []).append(None if v == "timeout" else int(v))
for kind, vs in sorted(ms.items()):
    ok = sorted(v for v in vs if v is not None)
    med = ok[len(ok) // 2] if ok else None
    print(f"{kind}: {len(vs)} probes, median {med} ms, max {max(ok) if ok else None} ms, {len(vs) - len(ok)} timed out")
EOF
}

judge() {
  python3 - "$VERIFY" "$HUNG" "$DISK_UNCLEAR" "$BROKER_FAILED" "${CHECK:-}" "${REPLAY:-1}" "$WORK/replay.txt" "$WORK/replay-err.txt" <<'EOF'
import json, os, sys
v = json.loads(sys.argv[1]) if sys.argv[1].startswith("{") else None
hung, unclear, broker_failed = (int(a) for a in sys.argv[2:5])
check = json.loads(sys.argv[5]).get("check") if sys.argv[5].startswith("{") else None
replay_failed = sys.argv[6] != "0"
if v is None:
    print("verify did not run to the end"); sys.exit(1)
bad = v["missing"] + v["duplicates"] + v["unexpected"] + v["status_mismatches"] + v["counter_mismatches"]
line = (f"intents {v['intents']}, decisions {v['decision_records']}, missing {v['missing']}, duplicates {v['duplicates']}, "
        f"unexpected {v['unexpected']}")
if v["counters_checked"]:
    line += f", status mismatches {v['status_mismatches']}, counter mismatches {v['counter_mismatches']} ({v['counters_checked']} counters checked)"
if check is not None:
    line += (f"; limits: {check['windows']} windows, {check['over_limit']} over their limit, {check['suppressed_allowed']} sends after a suppression, "
             f"{check['paused_allowed']} sends from a paused mailbox, {check['approval_mismatches']} approval mismatches")
    bad += check["over_limit"] + check["suppressed_allowed"] + check["paused_allowed"] + check["approval_mismatches"]
# The replay's error says whether it found differences or could not run
# at all (a topic unreadable, say): the two are different failures.
replay_err = open(sys.argv[8], errors="replace").read().strip() if replay_failed and os.path.exists(sys.argv[8]) else ""
found = any(w in replay_err for w in ("differ", "could not be replayed"))
replay_word = "no difference" if not replay_failed else "DIFFERENCES" if found else "DID NOT RUN TO THE END"
line += f"; audit replay (every stage's decisions and state from its log): {replay_word}"
line += f"; unclean stops {hung}, full-disk stops without a clear error {unclear}"
print(line)
for e in v["examples"] + (check["examples"] if check else []):
    print("  " + e)
if replay_failed:
    for l in open(sys.argv[7], errors="replace").read().splitlines()[-8:] + replay_err.splitlines()[-4:]:
        print("  replay: " + l)
if broker_failed:
    print("  a broker did not come back")
sys.exit(1 if bad or hung or unclear or broker_failed or replay_failed or v["intents"] == 0 else 0)
EOF
}

fault_summary() {
  local k out=()
  for k in $(echo "${!COUNT[@]}" | tr ' ' '\n' | sort); do out+=("$k ${COUNT[$k]}"); done
  (IFS=,; echo "$FAULTS faults (${out[*]})" | sed 's/,/, /g'; ) | tr -d '\n'; echo ", $JOINS joins"
}

# The exact workload's verifier recounts each intent in the clock hour (and
# day) of its own log time. The sender stage judges an intent at its
# partition's stream clock instead: the latest log time it has seen, which
# is later than the intent's own for one parked behind intents in flight
# and decided when their outcomes come back. Within one hour the two agree;
# an intent parked across the hour's end is judged (and counted) in the new
# hour, as it should be, but the recount cannot tell (a run that crossed
# 07:00 with a 15 s pause at the turn: 32 statuses and 227 counters "wrong",
# the audit replay exact). So a run that may not end before the hour does
# waits for the next one: at most its own length, about 1 time in 10.
one_clock_hour() {
  local need=$1 left=$(( 3600 - $(date -u +%s) % 3600 ))
  if [ "$WORKLOAD" = exact ] && [ "$left" -lt "$need" ]; then
    log "the hour ends in $left s, before this run would: waiting for it to turn (the verifier recounts each intent in its own hour)"
    sleep $((left + 5))
  fi
}

# ------------------------------------------------------------ schedules
run_short() {
  # From here to the last decision: 225 to 280 s in the runs of
  # 2026-12-01, a slow day among them.
  one_clock_hour 360
  prepare short
  start_first_instance; start_inst 2; start_inst 3
  sleep 8
  start_load 14 2500 8
  sleep 6; disk_full; probe disk-1
  kill_inst 2; probe kill-1; start_inst 2; JOINS=$((JOINS + 1))
  kill_coordinator 6; probe coordinator_kill-1
  net_fault latency 10; probe net_latency-1
  pause_inst 1 15; probe pause-1
  net_fault blackhole 12; probe net_blackhole-1
  net_fault cut 6; probe net_cut-1
  stop_inst 1; counted stop; probe stop-1
  finish 300
}

# The previous release's binary (bench/upgrade-from), built once from a
# worktree of that commit into the same target directory and kept in the
# cache: the rolling upgrade's old side.
previous_release() {
  local rev; rev="$(git -C "$REPO_ROOT" rev-parse --verify "${FAULTS_UPGRADE_FROM:-$(cat "$REPO_ROOT/bench/upgrade-from")}^{commit}")"
  OLD_BIN="$SENDGATE_CACHE/releases/sendgate-$rev"
  if [ ! -x "$OLD_BIN" ]; then
    say "building the previous release ($rev) for the rolling upgrade"
    local tree="$WORK/previous"
    git -C "$REPO_ROOT" worktree add --detach "$tree" "$rev" >/dev/null
    (cd "$tree" && cargo build --release --locked --bins)
    mkdir -p "$(dirname "$OLD_BIN")"
    cp "$CARGO_TARGET_DIR/release/sendgate" "$OLD_BIN.tmp" && mv "$OLD_BIN.tmp" "$OLD_BIN"
    git -C "$REPO_ROOT" worktree remove --force "$tree"
    # The current build back in its place (relinked, nothing recompiled).
    build_release
  fi
  UPGRADE_REV=$rev
}

run_long() {
  previous_release
  # (Only with FAULTS_WORKLOAD=exact; the long run's default is mixed.)
  one_clock_hour 2700
  prepare long
  local minutes=32
  # Instances 1 and 2 start on the previous release, 3 on this build; 1 and
  # 2 are upgraded at a third and two thirds of the run.
  BIN_OF[1]="$OLD_BIN"; BIN_OF[2]="$OLD_BIN"
  start_first_instance; start_inst 2; start_inst 3
  sleep 10
  # 1,200,000 intents: 60 batches of 20,000, one every ~32 s.
  start_load 60 20000 30
  local end=$((SECONDS + minutes * 60)) n=0 kinds=() upgraded=0
  while [ $SECONDS -lt $end ]; do
    sleep $((20 + RANDOM % 41))
    n=$((n + 1))
    reap
    # At least two instances up before the next fault.
    while [ "$(running | wc -w)" -lt 2 ]; do pick "$(stopped)"; start_inst "$PICKED"; JOINS=$((JOINS + 1)); sleep 10; done
    local elapsed=$((SECONDS - T0))
    if [ $upgraded -lt 2 ] && [ $elapsed -ge $(( (upgraded + 1) * minutes * 20 )) ]; then
      upgraded=$((upgraded + 1)); upgrade_inst "$upgraded"; probe "upgrade-$n"; continue
    fi
    # Every kind in turn, in a seeded order that changes every round.
    if [ ${#kinds[@]} = 0 ]; then
      kinds=(sigkill stop join pause coordinator leader cluster latency slow bandwidth blackhole cut disk)
      local i j tmp; for ((i = ${#kinds[@]} - 1; i > 0; i--)); do j=$((RANDOM % (i + 1))); tmp=${kinds[$i]}; kinds[$i]=${kinds[$j]}; kinds[$j]=$tmp; done
    fi
    local kind=${kinds[0]}; kinds=("${kinds[@]:1}")
    case $kind in
      sigkill) pick "$(running)"; local v=$PICKED; kill_inst "$v"; probe "sigkill-$n"; sleep $((5 + RANDOM % 20)); start_inst "$v" ;;
      stop) pick "$(running)"; stop_inst "$PICKED"; counted stop; probe "stop-$n" ;;
      join) if [ -n "$(stopped)" ]; then pick "$(stopped)"; start_inst "$PICKED"; JOINS=$((JOINS + 1)); probe "join-$n"; fi ;;
      pause) pick "$(running)"; pause_inst "$PICKED" $((12 + RANDOM % 20)); probe "pause-$n" ;;
      coordinator) kill_coordinator $((5 + RANDOM % 20)); probe "coordinator_kill-$n" ;;
      leader) kill_leader $((5 + RANDOM % 20)); probe "leader_kill-$n" ;;
      cluster) restart_cluster $((5 + RANDOM % 10)); probe "cluster_restart-$n" ;;
      latency|slow|bandwidth|blackhole|cut) net_fault "$kind" $((10 + RANDOM % 30)); probe "net_$kind-$n" ;;
      disk) disk_full; probe "disk_full-$n" ;;
    esac
  done
  # Whatever still runs the previous release is upgraded before the end.
  local i; for i in 1 2; do if [ "${BIN_OF[$i]}" != "$SENDGATE_BIN" ]; then BIN_OF[$i]="$SENDGATE_BIN"; alive "$i" && { stop_inst "$i"; start_inst "$i"; counted upgrade; }; fi; done
  finish 1800
}

# Failover with and without standby replicas: the same preloaded state,
# two instances, one of them stopped (cleanly: no session to wait out) or
# SIGKILLed three times each; the probe times the other's take-over.
run_failover() {
  local standby rounds=3
  for standby in false true; do
    export SENDGATE_STANDBY_REPLICAS=$standby
    # Each half is judged by the recount on its own: about 3.5 minutes.
    one_clock_hour 300
    prepare "failover-$standby"
    start_first_instance; start_inst 2
    sleep 8
    start_load 1 300000 0; wait "$LOADER"; LOADER=""
    log "standby_replicas=$standby: 300,000 intents published; waiting for them to be decided"
    "$SENDGATE_BENCH_BIN" collect --expect 300000 --idle-secs 120 >/dev/null
    for r in $(seq $rounds); do
      sleep 15; stop_inst 2; probe "stop_standby_$standby-$r"; start_inst 2
      sleep 15; kill_inst 2; probe "kill_standby_$standby-$r"; start_inst 2
    done
    finish 300
    judge >>"$WORK/judged.txt" || FAILED=1
    log "restores while taking over (standby_replicas=$standby):"
    grep -h "state restored" "$WORK"/inst-1.log | grep -o 'state restored.*' | tail -n 12 | tee -a "$WORK/faults.log" >&2 || true
    mv "$WORK/inst-1.log" "$WORK/inst-1-standby-$standby.log"; rm -f "$WORK/inst-2.log"
    cat "$WORK/failover.txt" >>"$WORK/failover-all.txt"
  done
  cp "$WORK/failover-all.txt" "$WORK/failover.txt"
}

FAILED=0
case "$MODE" in
  --short) run_short ;;
  --long) run_long ;;
  --failover) run_failover ;;
esac

SUMMARY="$(failover_summary)"
if [ "$MODE" = --failover ]; then
  RESULT="$(cat "$WORK/judged.txt")"
else
  RESULT="$(judge)" || FAILED=1
fi
FAULT_LINE="$(fault_summary)"
DISK_LINE=""
if [ -s "$WORK/disk.txt" ]; then
  DISK_LINE="full disk, each time: $(awk '{ printf "%s%s", (NR > 1 ? "; " : ""), ($1 == "running" ? "instance 3 still ran after 90 s on the full disk (it had not needed to write)" : "instance 3 stopped by itself after " $1 " s, with the error that names the full disk") }' "$WORK/disk.txt"); once space was back it restarted and restored from the changelog"
fi
# A task stuck in a client call past its deadline restarts its process
# (src/runtime/watchdog.rs): counted, not a failure.
WATCHDOG="$(cat "$WORK"/inst-*.log 2>/dev/null | grep -ac 'has hung past its deadline' || true)"
FAULT_LINE="$FAULT_LINE; $WATCHDOG watchdog restarts (a client call hung past its deadline), $STUCK_STOPS stops ended by the watchdog"
log "faults injected: $FAULT_LINE"
log "$RESULT"
[ -n "$DISK_LINE" ] && log "$DISK_LINE"
log "failover (fault to every partition answered):"
echo "$SUMMARY" | while read -r l; do log "  $l"; done

if [ "$MODE" != --short ]; then
  python3 "$REPO_ROOT/bench/reliability.py" "$REPO_ROOT/docs/reliability.md" "$MODE" "$SEED" $((SECONDS - T0)) "$FAULT_LINE" "$RESULT" "$SUMMARY" "$DISK_LINE" "${UPGRADE_REV:-}"
fi
[ "$FAILED" = 0 ] || { keep_logs; log "FAILED"; exit 1; }
log "passed"
