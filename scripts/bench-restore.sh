#!/usr/bin/env bash
# Restore speed of two builds of sendgate, on the same changelog in the same
# run: the recipient stage's changelog filled once with KEYS window counters
# (`sendgate-bench fill-changelog`, as scripts/bench.sh's restore phase),
# then, ROUNDS times, a plain read-committed read of it and each build's
# restore into an empty state directory, A and B in turn (B first on even
# rounds, so neither always runs on a warmer page cache). For a change to
# the restore path, measured against the build before it.
#
#   scripts/bench-restore.sh BIN_A BIN_B [KEYS] [ROUNDS]    (default 10000000, 3)
#
# Its own broker on port 19592. Prints each round and the medians: restore
# records/s of each build, as a share of the plain read, and B / A.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"
[ $# -ge 2 ] || { echo "usage: scripts/bench-restore.sh BIN_A BIN_B [KEYS] [ROUNDS]" >&2; exit 2; }
A="$1"; B="$2"; KEYS="${3:-10000000}"; ROUNDS="${4:-3}"
for bin in "$A" "$B"; do [ -x "$bin" ] || { echo "bench-restore: $bin is not an executable" >&2; exit 2; }; done
[ -x "$SENDGATE_BENCH_BIN" ] || { echo "bench-restore: $SENDGATE_BENCH_BIN is missing: build first (cargo build --release --bins)" >&2; exit 2; }
export KAFKA_PORT=19592 KAFKA_CONTROLLER_PORT=19593
export SENDGATE_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" SENDGATE_API_ADDR="" SENDGATE_METRICS_ADDR=""
export SENDGATE_RECONCILE_DELIVERIES=false
export SENDGATE_NAMESPACE="restore-ab-$(date +%s)"
start_own_broker_and_workdir
"$A" topics apply >/dev/null
"$A" policy apply bench/policy.toml >/dev/null
say "filling the recipient stage's changelog with $KEYS keys"
"$SENDGATE_BENCH_BIN" fill-changelog --stage recipient --keys "$KEYS" >"$WORK/fill.json"

# One build's restore, in this shell (so the exit trap sees its $PID): the
# records and milliseconds its log reports, as a line of restores.txt.
restore_with() {
  local bin="$1" label="$2" round="$3" log="$WORK/run-$2-$3.log" deadline=$((SECONDS + 1800)) line
  rm -rf "$WORK/state"
  SENDGATE_STATE_DIR="$WORK/state" "$bin" run >"$log" 2>&1 & PID=$!
  until grep -qs "state restored from changelog stage=recipient partitions" "$log"; do
    [ $SECONDS -lt $deadline ] && kill -0 "$PID" 2>/dev/null || { tail -20 "$log" >&2; echo "bench-restore: $bin did not restore" >&2; exit 1; }
    sleep 0.5
  done
  stop_and_reap "$PID"; PID=""
  line=$(grep "state restored from changelog stage=recipient partitions" "$log" | tail -1 | sed -n 's/.*records=\([0-9]*\).*ms=\([0-9]*\).*/\1 \2/p')
  [ -n "$line" ] || { echo "bench-restore: no records and ms in $bin's restore line" >&2; exit 1; }
  echo "$round $label $line" >>"$WORK/restores.txt"
}

for round in $(seq "$ROUNDS"); do
  read_json=$("$SENDGATE_BENCH_BIN" read-rate stage.recipient.changelog)
  order="A B"; [ $((round % 2)) = 0 ] && order="B A"
  for label in $order; do
    bin="$A"; [ "$label" = B ] && bin="$B"
    restore_with "$bin" "$label" "$round"
  done
  echo "$round read $(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["records"], round(j["seconds"]*1000))' "$read_json")" >>"$WORK/restores.txt"
  say "round $round: $(grep "^$round " "$WORK/restores.txt" | cut -d' ' -f2- | tr '\n' ';')"
done

python3 - "$WORK/restores.txt" "$KEYS" <<'PY'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    _, label, records, ms = line.split()
    rates.setdefault(label, []).append(int(records) / max(int(ms), 1) * 1000)
med = {k: statistics.median(v) for k, v in rates.items()}
print(f"restore of {int(sys.argv[2]):,} keys, median of {len(rates['read'])} rounds (records/s):")
for k in ("read", "A", "B"):
    share = "" if k == "read" else f"  ({med[k] / med['read']:.0%} of the plain read)"
    print(f"  {k:5} {med[k]:>12,.0f}{share}   rounds: {', '.join(f'{r:,.0f}' for r in rates[k])}")
print(f"  B / A: {med['B'] / med['A']:.2f}x")
PY
