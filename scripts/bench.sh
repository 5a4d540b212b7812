#!/usr/bin/env bash
# The benchmark (make bench): measures the suite end to end on this machine,
# with the load generator on the same machine, and prints one comparison
# table. In one go it
#   1. builds the binaries and the load tester into a temporary directory;
#   2. measures the raw limits of this machine: RabbitMQ publish+consume,
#      Redis SET, GET and EVAL, a front's trivial HTTP rate and create rate;
#   3. runs the embedded matchmaker, then the distributed mode (front ×1,
#      matcher ×2, assigner ×1 on the local RabbitMQ and Redis), each under
#      the pipeline scenario at a fixed rate and then at increasing rates to
#      find the most it sustains (0 lost, p99 under a bound, keeping up);
#   4. profiles each mode under load: its processes with perf (when perf is
#      there), and the Go CPU, block and mutex profiles of the suite run in
#      a test process (go test -bench BenchmarkPipeline ./loadtest);
#   5. holds as many long-polls on one front as the open-file limit allows,
#      then as many ticket streams (SSE), and times one change to all;
#   6. measures what authentication costs: per request for each algorithm
#      (go test -bench BenchmarkAuthenticate ./internal/httpapi), and end to
#      end, the embedded fixed-rate run again with MM_AUTH=off.
# The suite runs with auth on (an HS256 secret made for the run); the load
# tester mints its tokens with the same secret.
# Every run starts a fresh suite. The distributed mode gets its own RabbitMQ
# vhost and Redis key prefix, deleted at the end, so it runs beside tests
# and other stacks. Reports, charts and profiles are kept under $BENCH_OUT.
#
# Settings (environment): BENCH_OUT (a new temporary directory by default),
# BENCH_FIXED_RATE (2000), BENCH_FIXED_SECONDS (20), BENCH_STEP_SECONDS (10),
# BENCH_STEPS (5 per mode), BENCH_MAX_P99 (500ms), BENCH_WARMUP (2s: every
# run offers its rate this long before it measures), BENCH_EMBEDDED_START
# (3000), BENCH_DISTRIBUTED_START (1000), BENCH_HOLD (50000), BENCH_PROFILE
# (1; 0 skips perf), BENCH_PLAYER_FLAGS (more load-tester flags for every
# players run, e.g. "-poll-until assigned").
set -euo pipefail
cd "$(dirname "$0")/.."

fixed_rate=${BENCH_FIXED_RATE:-2000}
fixed_seconds=${BENCH_FIXED_SECONDS:-20}
step_seconds=${BENCH_STEP_SECONDS:-10}
steps=${BENCH_STEPS:-5}
max_p99=${BENCH_MAX_P99:-500ms}
warmup=${BENCH_WARMUP:-2s}
embedded_start=${BENCH_EMBEDDED_START:-3000}
distributed_start=${BENCH_DISTRIBUTED_START:-1000}
hold=${BENCH_HOLD:-50000}
profile=${BENCH_PROFILE:-1}

command -v go >/dev/null || { echo "bench: Go 1.26 or newer must be on PATH" >&2; exit 1; }
scripts/ensure-services.sh

began=$(date +%s)
run_id="mmbench-$(date +%Y%m%d%H%M%S)-$$"
tmp=$(mktemp -d)
out=${BENCH_OUT:-$tmp/out}
mkdir -p "$out" "$out/profiles"
bin=$tmp/bin
logs=$out/logs
mkdir -p "$logs"
vhost=$run_id
amqp_url="amqp://guest:guest@127.0.0.1:5672/$vhost"
redis_addr=127.0.0.1:6379
pids=()
# Auth on, as a studio runs: the services and the load tester read the
# same secret. Every simulated client comes from loopback, so the limit on
# failed authentications per address is off.
MM_AUTH_HS256_SECRET="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export MM_AUTH_HS256_SECRET MM_AUTH_FAILURE_RATE=0

tool=bench
# shellcheck source=lib/processes.sh
. scripts/lib/processes.sh

cleanup() {
  stop_all
  rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$run_id*" | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 unlink >/dev/null || true
  rm -rf "$bin"
  if [ -z "${BENCH_OUT:-}" ]; then log "reports kept in $out"; fi
}
trap cleanup EXIT

# stack MODE TAG: starts a fresh suite; sets front, assigner and svc_pids.
stack() {
  local mode=$1 tag=$2
  if [ "$mode" = embedded ]; then
    start "$tag-matchmaker" "$bin/matchmaker" MM_AMQP_URL= MM_REDIS_ADDR=
    front=$started_url assigner=$started_url svc_pids="matchmaker=$started_pid"
    return
  fi
  local env=(MM_AMQP_URL="$amqp_url" MM_REDIS_ADDR="$redis_addr"
    MM_AMQP_PREFIX="$run_id.$tag." MM_REDIS_PREFIX="$run_id:$tag:")
  start "$tag-front" "$bin/front" "${env[@]}"
  front=$started_url svc_pids="front=$started_pid"
  start "$tag-assigner" "$bin/assigner" "${env[@]}"
  assigner=$started_url svc_pids="$svc_pids,assigner=$started_pid"
  start "$tag-matcher1" "$bin/matcher" "${env[@]}"
  svc_pids="$svc_pids,matcher1=$started_pid"
  start "$tag-matcher2" "$bin/matcher" "${env[@]}"
  svc_pids="$svc_pids,matcher2=$started_pid"
}

# players DIR LABEL SUITE RATE SECONDS DRAIN [more flags]: one pipeline run
# against $front/$assigner; returns the load tester's exit code.
players() {
  local dir=$1 label=$2 suite=$3 rate=$4 seconds=$5 drain=$6
  shift 6
  local extra=()
  [ "$suite" = distributed ] && extra+=(-infra-pids "$(infra_pids)")
  # shellcheck disable=SC2206 # BENCH_PLAYER_FLAGS is a list of flags
  extra+=(${BENCH_PLAYER_FLAGS:-})
  local rc=0
  "$bin/loadtest" -scenario pipeline -front "$front" -assigner "$assigner" \
    -label "$label" -suite "$suite" -rate "$rate" -warmup "$warmup" -duration "${seconds}s" -drain "${drain}s" \
    -service-pids "$svc_pids" "${extra[@]}" -run-id "$run_id-$(basename "$dir")" -out "$out/$dir" "$@" \
    >"$logs/$dir.log" 2>&1 || rc=$?
  summary "$dir" "$rc"
  return "$rc"
}

# search MODE PREFIX START: runs increasing rates for $step_seconds each on
# a fresh suite, then bisects between the best pass and the first failure;
# sets $best (0 if no rate passed), $best_dir and $lowest (the lowest rate
# tried).
search() {
  local mode=$1 prefix=$2 rate=$3 lo=0 hi=0 dir
  best=0 best_dir="" lowest=$3
  for i in $(seq "$steps"); do
    dir=$(printf '%s-ramp-%05d' "$prefix" "$rate")
    stack "$mode" "r$i"
    lowest=$((rate < lowest ? rate : lowest))
    if players "$dir" "$mode $rate/s" "$mode" "$rate" "$step_seconds" 10 \
        -max-p99 "$max_p99" -min-throughput 0.95; then
      lo=$rate best=$rate best_dir=$dir
    else
      hi=$rate
    fi
    stop_all
    if [ "$hi" -eq 0 ]; then
      rate=$((rate * 3 / 2))
    else
      # Stop once the bracket is within a tenth of the best.
      [ $((hi - lo)) -le $((lo / 10 + 100)) ] && break
      if [ "$lo" -eq 0 ]; then rate=$((hi / 2)); else rate=$(((lo + hi) / 2)); fi
      rate=$((rate / 100 * 100))
    fi
  done
}

# profile MODE RATE: perf samples every service of a fresh suite under the
# pipeline load at RATE for 8 s, and keeps the top costs.
profile_mode() {
  local mode=$1 rate=$2
  if [ "$profile" != 1 ] || ! command -v perf >/dev/null; then
    log "profile $mode: skipped (perf missing or BENCH_PROFILE=0)"
    return
  fi
  stack "$mode" "p"
  local pidlist
  pidlist=$(echo "$svc_pids" | tr ',' '\n' | cut -d= -f2 | paste -sd,)
  "$bin/loadtest" -scenario pipeline -front "$front" -assigner "$assigner" -rate "$rate" \
    -warmup 2s -duration 8s -drain 10s -run-id "$run_id-prof-$mode" -label "$mode profile $rate/s" \
    >"$logs/profile-$mode.log" 2>&1 &
  local lt=$!
  sleep 2
  perf record -F 499 -g -p "$pidlist" -o "$out/profiles/$mode.perf" -- sleep 8 >/dev/null 2>&1 || true
  wait "$lt" || true
  local comm f self children
  for comm in $(echo "$svc_pids" | tr ',' '\n' | cut -d= -f1 | sed 's/[0-9]*$//' | sort -u); do
    f="$out/profiles/$mode-$comm.txt"
    self="$out/profiles/$mode-$comm.self"
    children="$out/profiles/$mode-$comm.children"
    perf report -i "$out/profiles/$mode.perf" --comm "$comm" --percentage relative --no-children \
      --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$self" || true
    perf report -i "$out/profiles/$mode.perf" --comm "$comm" --percentage relative --children \
      --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$children" || true
    {
      echo "# perf, $mode mode, $comm, pipeline at $rate/s: self time by symbol"
      awk 'NR <= 25' "$self"
      echo
      echo "# self time by package"
      awk '
        { pct = $1; sub(/%/, "", pct); sym = $3
          if ($2 == "[k]") pkg = "kernel"
          else { pkg = sym; sub(/\.[^\/]*$/, "", pkg); if (pkg == "") pkg = sym }
          t[pkg] += pct }
        END { for (p in t) printf "%7.2f%%  %s\n", t[p], p }' "$self" | sort -rn | awk 'NR <= 15'
      echo
      echo "# time including callees, the suite's own functions"
      grep quickmatch "$children" | awk 'NR <= 25' || true
    } >"$f"
    rm -f "$self" "$children"
    log "profile $mode $comm: $(sed -n '/self time by package/,/^$/p' "$f" | sed -n '2,5p' | awk '{printf "%s %s; ", $1, $2}')"
  done
  stop_all
}

# go_profile MODE RATE: the Go CPU, block and mutex profiles of the suite
# run inside a test process (BenchmarkPipeline) at RATE for about 8 s; the
# block profile shows where the suite waits, which perf cannot.
go_profile() {
  local mode=$1 rate=$2 p="$out/profiles/go-$1"
  if [ "$profile" != 1 ]; then return; fi
  # A run that misses its gates still leaves its profiles.
  MM_TEST_AMQP_URL="$amqp_url" MM_TEST_REDIS_ADDR="$redis_addr" go test -count=1 -run '^$' \
    -bench "Pipeline/$mode\$" -benchtime "$((rate * 8))x" -o "$out/profiles/loadtest.test" \
    -cpuprofile "$p-cpu.out" -blockprofile "$p-block.out" -mutexprofile "$p-mutex.out" \
    ./loadtest -args -bench.rate="$rate" >"$logs/go-profile-$mode.log" 2>&1 || true
  if [ ! -s "$p-cpu.out" ]; then
    log "go profile $mode: failed; see $logs/go-profile-$mode.log"
    return
  fi
  local suite='quickmatch/(front|matcher|assigner|internal|services)'
  go tool pprof -top -cum -nodecount 40 -focus "$suite" "$out/profiles/loadtest.test" "$p-cpu.out" >"$p-cpu.txt" 2>/dev/null || true
  go tool pprof -top -cum -nodecount 40 -focus "$suite" "$out/profiles/loadtest.test" "$p-block.out" >"$p-block.txt" 2>/dev/null || true
  go tool pprof -top -cum -nodecount 40 -focus "$suite" "$out/profiles/loadtest.test" "$p-mutex.out" >"$p-mutex.txt" 2>/dev/null || true
  log "go profile $mode: $(grep -E '^Benchmark' "$logs/go-profile-$mode.log" | tr -s ' \t' ' ')"
}

log "bench $run_id: building into $bin"
go build -o "$bin/" ./services/front ./services/matcher ./services/assigner ./services/matchmaker ./loadtest

rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "go: $(go env GOVERSION)"
  echo "rabbitmq: $(rabbitmqctl -q version 2>/dev/null || echo unknown)"
  echo "redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
  echo "open files (hard): $(ulimit -Hn)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"
sed 's/^/  /' "$out/machine.txt"

# --- raw limits ---------------------------------------------------------
log "limit: RabbitMQ publish+consume (go test -bench BenchmarkPublishConsume/classic)"
rabbit=$(MM_TEST_AMQP_URL="$amqp_url" go test -count=1 -run '^$' -bench 'BenchmarkPublishConsume/classic$' \
  -benchtime 100000x ./internal/broker/rabbit/ 2>&1 | tee "$logs/limit-rabbitmq.log" |
  awk '/msgs\/s/ { for (i = 1; i < NF; i++) if ($(i+1) == "msgs/s") print $i }' | tail -1)
rabbit=${rabbit:-0}

redis_rate() { # redis-benchmark arguments...
  redis-benchmark -h 127.0.0.1 -p 6379 -q -n 200000 "$@" 2>&1 | tr '\r' '\n' |
    sed -nE 's/.*: ([0-9.]+) requests per second.*/\1/p' | tail -1
}
log "limit: Redis (redis-benchmark -q -n 200000, 50 clients)"
redis_set=$(redis_rate SET "$run_id:k" xyz)
redis_get=$(redis_rate GET "$run_id:k")
redis_eval=$(redis_rate EVAL "local s = redis.call('HGET', KEYS[1], 'status') redis.call('HSET', KEYS[1], 'status', ARGV[1]) return s" 1 "$run_id:eval" matched)
cat >"$out/limits.json" <<EOF
{
  "rabbitmq": {"value": ${rabbit}, "unit": "msgs/s", "how": "go test -bench BenchmarkPublishConsume/classic: 512-byte persistent messages in confirmed batches of 100 from 4 publishers, one consumer"},
  "redis_set": {"value": ${redis_set:-0}, "unit": "ops/s", "how": "redis-benchmark -q -n 200000 SET (50 clients, no pipelining)"},
  "redis_get": {"value": ${redis_get:-0}, "unit": "ops/s", "how": "redis-benchmark -q -n 200000 GET (50 clients, no pipelining)"},
  "redis_eval": {"value": ${redis_eval:-0}, "unit": "ops/s", "how": "redis-benchmark -q -n 200000 EVAL of a 3-call Lua script (HGET, HSET) on one hash"}
}
EOF
log "limit: RabbitMQ $rabbit msgs/s; Redis SET $redis_set, GET $redis_get, EVAL $redis_eval ops/s"

# A front alone (no matcher), for the HTTP limits and then the long-poll hold.
env_alone=(MM_AMQP_URL="$amqp_url" MM_REDIS_ADDR="$redis_addr" MM_AMQP_PREFIX="$run_id.alone." MM_REDIS_PREFIX="$run_id:alone:")
start alone-front "$bin/front" "${env_alone[@]}"
front=$started_url front_pid=$started_pid
for target in http_trivial front_create; do
  args=(-http-path /livez)
  [ "$target" = front_create ] && args=(-http-create)
  rc=0
  "$bin/loadtest" -mode http -front "$front" -label "$target" "${args[@]}" -concurrency 64 -duration 5s \
    -service-pids "front=$front_pid" -run-id "$run_id-$target" -out "$out/0$([ "$target" = http_trivial ] && echo 1 || echo 2)-limit-$target" \
    >"$logs/limit-$target.log" 2>&1 || rc=$?
  log "limit: $target $(grep -E '^rate' "$logs/limit-$target.log" | sed -E 's/^rate +//') (exit $rc)"
done

# --- long-poll capacity -------------------------------------------------
# Both ends need a file per held poll; the hard limit bounds how many.
limit=$(ulimit -Hn)
n=$hold
if [ "$limit" != unlimited ] && [ "$n" -gt $((limit - 500)) ]; then
  n=$((limit - 500))
  log "hold: the open-file hard limit is $limit, so $n polls instead of $hold"
fi
rc=0
"$bin/loadtest" -mode hold -front "$front" -front-pid "$front_pid" -hold "$n" -wake sigterm \
  -run-id "$run_id-hold" -label "hold" -out "$out/30-hold" >"$logs/hold.log" 2>&1 || rc=$?
log "hold: $(grep -E '^(polls|per held poll|wake)' "$out/30-hold/report.txt" 2>/dev/null | tr -s ' \t' ' ' | paste -sd';') (exit $rc)"
stop_all
# The same number of ticket streams (SSE) on a fresh front, woken by
# cancelling their tickets: the time to deliver one change to every stream.
start alone-stream-front "$bin/front" "${env_alone[@]}"
front=$started_url front_pid=$started_pid
rc=0
"$bin/loadtest" -mode hold -hold-stream -front "$front" -front-pid "$front_pid" -hold "$n" -wake cancel \
  -run-id "$run_id-hold-streams" -label "hold streams" -out "$out/31-hold-streams" >"$logs/hold-streams.log" 2>&1 || rc=$?
log "hold streams: $(grep -E '^(polls|per held poll|wake)' "$out/31-hold-streams/report.txt" 2>/dev/null | tr -s ' \t' ' ' | paste -sd';') (exit $rc)"
stop_all

# --- auth cost ----------------------------------------------------------
log "auth: per request (go test -bench BenchmarkAuthenticate ./internal/httpapi)"
go test -count=1 -run '^$' -bench BenchmarkAuthenticate -benchtime 2000x ./internal/httpapi/ >"$out/auth-bench.txt" 2>&1 || true
log "auth: $(awk '/^BenchmarkAuthenticate/ { sub(/^BenchmarkAuthenticate\//, "", $1); sub(/-[0-9]+$/, "", $1); printf "%s %s ns; ", $1, $3 }' "$out/auth-bench.txt")"

# --- embedded -----------------------------------------------------------
stack embedded fixed
players 10-embedded-fixed "embedded $fixed_rate/s" embedded "$fixed_rate" "$fixed_seconds" 15 || true
stop_all
# The same run with auth off, for what auth costs end to end.
start "noauth-matchmaker" "$bin/matchmaker" MM_AMQP_URL= MM_REDIS_ADDR= MM_AUTH=off MM_AUTH_HS256_SECRET=
front=$started_url assigner=$started_url svc_pids="matchmaker=$started_pid"
players 12-embedded-fixed-noauth "embedded $fixed_rate/s auth off" embedded "$fixed_rate" "$fixed_seconds" 15 -auth-secret= || true
stop_all
search embedded 11-embedded "$embedded_start"
emb_best=$best
if [ -n "$best_dir" ]; then
  cp -r "$out/$best_dir" "$out/19-embedded-max"
  sed -i -E "0,/\"label\": \"[^\"]*\"/s//\"label\": \"embedded max ($best\/s)\"/" "$out/19-embedded-max/report.json"
fi
# Profiles at the most the mode sustains, or else at the least it was offered.
prof_rate=$(( emb_best > 0 ? emb_best : lowest ))
profile_mode embedded "$prof_rate"
go_profile embedded "$prof_rate"

# --- distributed --------------------------------------------------------
stack distributed fixed
players 20-distributed-fixed "distributed $fixed_rate/s" distributed "$fixed_rate" "$fixed_seconds" 30 || true
stop_all
search distributed 21-distributed "$distributed_start"
dist_best=$best
if [ -n "$best_dir" ]; then
  cp -r "$out/$best_dir" "$out/29-distributed-max"
  sed -i -E "0,/\"label\": \"[^\"]*\"/s//\"label\": \"distributed max ($best\/s)\"/" "$out/29-distributed-max/report.json"
fi
prof_rate=$(( dist_best > 0 ? dist_best : lowest ))
profile_mode distributed "$prof_rate"
go_profile distributed "$prof_rate"

# --- the table ----------------------------------------------------------
echo
sed 's/^/    /' "$out/machine.txt"
echo
"$bin/loadtest" -mode table -in "$out" | tee "$out/table.md"
log "max sustained (0 lost, p99 ≤ $max_p99, ≥ 95% of the offered rate assigned): embedded $emb_best/s, distributed $dist_best/s"
log "done in $(( $(date +%s) - began )) s; reports, charts (chart.png) and profiles in $out"
