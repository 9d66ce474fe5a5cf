# shellcheck shell=bash
# Process plumbing shared by the scripts that run a local test service in the
# background: scripts/kafka.sh (the broker), scripts/kafka/secure.sh (its
# OIDC token server) and scripts/registry.sh (the schema registry).
#
# Sourced, never run. It only defines functions (sourcing it twice is
# harmless); what a service is, where its files live, how to tell that it is
# ready and what to print stays in the calling script.
#
# The caller must define:
#   log MESSAGE      print a message to stderr, prefixed with the script's name
#   die MESSAGE      log "error: MESSAGE" and exit 1
#   JAVA             the java command (for require_java only)
#   MVN              the Maven command (for run_maven only)
# and run with `set -o pipefail` (run_maven's status is Maven's).
#
# Functions:
#   require_java WHAT           die unless $JAVA runs and is Java 17+; WHAT
#                               names what needs it in the message
#   take_lock FILE              hold an exclusive lock on FILE (fd 9) until exit
#   run_maven ARGS...           run Maven quietly, its output cleaned, on stderr
#   with_timeout SECONDS CMD... CMD, killed after SECONDS where `timeout` exists
#   port_open PORT              true when 127.0.0.1:PORT accepts a connection
#   read_pid FILE               print the pid in FILE (nothing if no file)
#   process_cmdline PID         print the command line of PID; false if none
#   running_pid FILE IS_OURS    print the pid in FILE if `IS_OURS PID` holds
#   spawn_detached PID_FILE LOG CMD...
#                               start CMD in the background, detached, and wait
#                               for its pid in PID_FILE
#   stop_process PID IS_OURS TIMEOUT [NAME]
#                               SIGTERM, wait up to TIMEOUT s, then SIGKILL
#   tail_logs N FILE...         print the last N lines of each non-empty FILE
#   print_usage SCRIPT          print SCRIPT's leading comment (its help)
#
# IS_OURS is the name of a function taking a pid that is true only for the
# caller's own live process (typically process_cmdline plus a match on the
# arguments that only that process has), so that a stale pid file whose
# number the system has since given to another process is never acted on.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "service.sh is a library sourced by scripts/kafka.sh and scripts/registry.sh" >&2
  exit 2
fi

# The JVMs these scripts run (Kafka 4, Apicurio Registry) need Java 17; a
# "1.8" style version is older still and fails the numeric test.
require_java() {
  local what="$1" spec
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (install Java 17+ or set JAVA_HOME)"
  spec="$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2; exit}')"
  [[ "$spec" =~ ^[0-9]+$ && "$spec" -ge 17 ]] || die "$what needs Java 17+, found '${spec:-unknown}' ($JAVA)"
}

# Serialise install and start/stop between concurrent invocations. The lock
# is held on fd 9 until the script exits; anything started in the background
# must close fd 9 (spawn_detached does), or it would hold the lock for as
# long as it runs. Callers put the lock file beside, not inside, what it
# guards, so that a wipe can delete the directory while holding the lock.
take_lock() {
  local file="$1"
  command -v flock >/dev/null 2>&1 || return 0   # e.g. macOS: run unlocked
  mkdir -p "$(dirname "$file")"
  exec 9>"$file"
  flock -w 180 9 || die "could not lock $file within 180 s"
}

# Maven's quiet mode still prints bare colour-reset codes; strip them. The
# output goes to stderr so that it never mixes with a command's result.
run_maven() {
  "$MVN" -q -B -Dstyle.color=never "$@" 2>&1 | sed $'s/\e\\[[0-9;]*m//g' >&2
}

# `timeout SECONDS CMD...` where coreutils has it (not stock macOS).
with_timeout() {
  if command -v timeout >/dev/null 2>&1; then
    timeout "$@"
  else
    shift
    "$@"
  fi
}

# True when a TCP connection to 127.0.0.1:$1 succeeds. Uses bash's /dev/tcp so
# no netcat is needed.
port_open() {
  # shellcheck disable=SC2016  # $0 is expanded by the inner bash
  with_timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" >/dev/null 2>&1
}

# Digits only: a pid file cut short or edited by hand yields no pid rather
# than an argument that kill or ps would misread.
read_pid() {
  if [[ -f "$1" ]]; then
    tr -dc '0-9' <"$1"
  fi
}

# The full command line of a live process, for the IS_OURS predicates. A
# zombie shows as "[name] <defunct>", so it matches no caller's pattern.
process_cmdline() {
  local pid="$1"
  [[ -n "$pid" ]] || return 1
  ps -ww -p "$pid" -o args= 2>/dev/null
}

# The pid recorded in FILE if the predicate IS_OURS accepts it, else nothing.
running_pid() {
  local file="$1" is_ours="$2" pid
  pid="$(read_pid "$file")"
  if "$is_ours" "$pid"; then
    echo "$pid"
  fi
}

# Start CMD in the background with stdin from /dev/null and stdout and stderr
# appended to LOG, and wait up to 5 s for its pid in PID_FILE (false if none
# appears). setsid: the process leaves the caller's session and process
# group, so it outlives the shell (and a Ctrl-C there) until it is stopped.
# The pid is written by the process that then execs CMD, so it is CMD's pid
# whether or not setsid had to fork. 9>&- keeps take_lock's lock out of it.
spawn_detached() {
  local pid_file="$1" log_file="$2"
  shift 2
  local -a detach=()
  rm -f "$pid_file"
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  # shellcheck disable=SC2016  # $$ and $0 are expanded by the inner sh
  ${detach[@]+"${detach[@]}"} sh -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$@" \
    </dev/null >>"$log_file" 2>&1 9>&- &
  local _
  for _ in $(seq 50); do
    [[ -s "$pid_file" ]] && break
    sleep 0.1
  done
  [[ -s "$pid_file" ]]
}

# SIGTERM lets a service flush and close its files; SIGKILL only if it is
# still ours after TIMEOUT seconds (checked every 0.1 s). NAME, if given, is
# logged before the SIGKILL. The caller removes its pid file.
stop_process() {
  local pid="$1" is_ours="$2" timeout="$3" name="${4:-}" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while "$is_ours" "$pid"; do
    if (( waited >= timeout * 10 )); then
      if [[ -n "$name" ]]; then
        log "$name (pid $pid) still running after ${timeout}s; sending SIGKILL"
      fi
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# On a failed start: the end of each log that has anything in it, on stderr.
tail_logs() {
  local lines="$1" f
  shift
  for f in "$@"; do
    if [[ -s "$f" ]]; then
      printf '\n--- last lines of %s ---\n' "$f" >&2
      tail -n "$lines" "$f" >&2
    fi
  done
}

# A script's help is its leading comment: line 2 up to `set -euo pipefail`.
print_usage() {
  sed -n '2,/^set -euo/p' "$1" | sed '$d; s/^# \{0,1\}//'
}
