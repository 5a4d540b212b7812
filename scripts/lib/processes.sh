# Process helpers shared by scripts/bench.sh and scripts/ab.sh, sourced by
# both. The caller sets $tool (the name in messages), $out (the reports), $logs (a directory for
# each service's log) and the array pids (every process started, which
# stop_all stops).

log() { printf '%s  %s\n' "$(date +%T)" "$*"; }

stop_all() { # stops every process this script started, by pid
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
}

# A port nobody listens on, below the ephemeral range.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "$tool: no free port" >&2
  return 1
}

wait_ready() { # url
  for _ in $(seq 300); do
    curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$tool: $1 did not become ready" >&2
  return 1
}

# start NAME BINARY [VAR=value ...]: starts the service at path BINARY with
# a high open-file limit on a free port; sets $started_url and $started_pid.
start() {
  local name=$1 binary=$2 port
  shift 2
  port=$(free_port) || return 1
  (ulimit -n "$(ulimit -Hn)" && exec env MM_HTTP_ADDR="127.0.0.1:$port" MM_LOG_LEVEL=warn "$@" "$binary") \
    >"$logs/$name.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
  started_url="http://127.0.0.1:$port"
  wait_ready "$started_url"
}

infra_pids() { # the pids of Redis and RabbitMQ, as the load tester's -infra-pids
  local r b
  r=$(pgrep -x redis-server | head -1 || true)
  b=$(pgrep -x beam.smp | head -1 || true)
  local s=""
  [ -n "$r" ] && s="redis=$r"
  [ -n "$b" ] && s="${s:+$s,}rabbitmq=$b"
  echo "$s"
}

# summary DIR RC: one log line of a load-tester run whose report is in
# $out/DIR and whose exit code was RC.
summary() { # dir rc
  local verdict=pass
  [ "$2" -eq 0 ] || verdict="FAIL (exit $2)"
  if [ -f "$out/$1/report.txt" ]; then
    log "$1: $(grep -E '^throughput' "$out/$1/report.txt" | sed -E 's/^throughput +//'); $(grep -E '^time to assign' "$out/$1/report.txt" | sed -E 's/^time to assign +//; s/ +\(.*//'); lost $(grep -E '^lost tickets' "$out/$1/report.txt" | awk '{print $3}'); $verdict"
  else
    log "$1: no report; $verdict; see $logs/$1.log"
    tail -3 "$logs/$1.log" >&2 || true
  fi
}
