#!/usr/bin/env bash
# The A/B benchmark (make ab OLD=commit [NEW=commit]): compares the
# distributed mode of two commits on this machine, runs of one alternating
# with runs of the other within minutes, so that both meet the same machine,
# the same RabbitMQ and Redis, and the same load generator. In one go it
#   1. builds the services (front, matcher, assigner) of OLD_COMMIT from a
#      git worktree in a temporary directory, and those of NEW_COMMIT the
#      same way, or of the working tree as it is when none is named;
#   2. builds the load tester once, from the new side, and drives both sides
#      with it: they speak the same public HTTP API, and the generator stays
#      the same;
#   3. for each rate, runs old, new, old, new, ... (AB_ROUNDS pairs): every
#      run starts a fresh stack (front ×1, matcher ×2, assigner ×1) on its
#      own RabbitMQ vhost and Redis key prefix, offers the pipeline scenario
#      at the rate, and deletes the vhost and the keys after it;
#   4. prints one Markdown table of every run (and of each side's mean when
#      there is more than one round), kept as $AB_OUT/ab.md beside each
#      run's report.
# The processes, vhosts, keys and worktrees it made are removed at the end,
# failed or not. Only loopback addresses are targeted.
#
# Usage: scripts/ab.sh OLD_COMMIT [NEW_COMMIT]   (default NEW: the working tree)
#
# Settings (environment): AB_RATES ("900 2000", players/s), AB_ROUNDS (2:
# old new old new per rate), AB_SECONDS (15 measured seconds per run),
# AB_WARMUP (2s: every run offers its rate this long before it measures),
# AB_DRAIN (20s: how long tickets have to finish after arrivals end), AB_OUT
# (a new temporary directory by default), AB_PLAYER_FLAGS (more load-tester
# flags for every run, e.g. "-poll-until assigned").
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/ab.sh OLD_COMMIT [NEW_COMMIT]   (NEW default: the working tree)" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
case $1 in -h | --help) usage ;; esac

rates=${AB_RATES:-900 2000}
rounds=${AB_ROUNDS:-2}
seconds=${AB_SECONDS:-15}
warmup=${AB_WARMUP:-2s}
drain=${AB_DRAIN:-20s}
# A bare number of seconds is taken for a duration too.
[[ $warmup =~ ^[0-9]+$ ]] && warmup=${warmup}s
[[ $drain =~ ^[0-9]+$ ]] && drain=${drain}s
# shellcheck disable=SC2206 # AB_PLAYER_FLAGS is a list of flags
player_flags=(${AB_PLAYER_FLAGS:-})

die() { echo "ab: $*" >&2; exit 1; }
command -v go >/dev/null || die "Go 1.26 or newer must be on PATH"
command -v jq >/dev/null || die "jq must be on PATH (it reads the reports)"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "AB_ROUNDS must be a positive integer"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "AB_SECONDS must be a positive integer (seconds)"
for r in $rates; do [[ $r =~ ^[1-9][0-9]*$ ]] || die "AB_RATES must be positive integers: $r"; done
for f in "${player_flags[@]}"; do
  case $f in -allow-remote* | --allow-remote* | -front* | --front* | -assigner* | --assigner*)
    die "AB_PLAYER_FLAGS may not set $f: the script picks the (loopback) targets" ;;
  esac
done

old=$(git rev-parse --verify -q "$1^{commit}") || die "not a commit: $1"
new=""
if [ $# -eq 2 ]; then new=$(git rev-parse --verify -q "$2^{commit}") || die "not a commit: $2"; fi
# The stacks must honour their own key prefix, or their keys could not be
# told apart and deleted.
git grep -q REDIS_PREFIX "$old" -- services || die "$1 has no MM_REDIS_PREFIX; it cannot run on its own key prefix"

old_name="old $(git rev-parse --short "$old")"
if [ -n "$new" ]; then
  new_name="new $(git rev-parse --short "$new")"
else
  new_name="new $(git rev-parse --short HEAD)"
  [ -z "$(git status --porcelain)" ] || new_name="$new_name+wt"
fi

scripts/ensure-services.sh

began=$(date +%s)
run_id="mmab-$(date +%Y%m%d%H%M%S)-$$"
tmp=$(mktemp -d -t mmab.XXXXXX)
out=${AB_OUT:-$tmp/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=$tmp/bin
logs=$out/logs
mkdir -p "$logs" "$bin/old" "$bin/new"
redis_addr=127.0.0.1:6379
pids=()      # processes this script started
vhosts=()    # RabbitMQ vhosts this script made
worktrees=() # git worktrees this script added

tool=ab
# shellcheck source=lib/processes.sh
. scripts/lib/processes.sh

drop_redis_keys() { # pattern
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$1" | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 unlink >/dev/null || true
}

cleanup() {
  local rc=$? v w
  trap - EXIT INT TERM
  stop_all
  for v in "${vhosts[@]}"; do rabbitmqctl -q delete_vhost "$v" >/dev/null 2>&1 || true; done
  drop_redis_keys "$run_id*"
  for w in "${worktrees[@]}"; do
    if ! git worktree remove --force "$w" >/dev/null 2>&1; then
      rm -rf "$w"
      git worktree prune >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$bin"
  [ "$rc" -eq 0 ] || log "ab: stopped (exit $rc); its processes, vhosts, keys and worktrees are removed"
  if [ -z "${AB_OUT:-}" ]; then log "reports kept in $out"; else rmdir "$tmp" 2>/dev/null || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stack SIDE TAG: starts a fresh distributed suite of SIDE's binaries on a
# new vhost and key prefix named after TAG; sets front, assigner, svc_pids
# and vhost.
stack() {
  local side=$1 tag=$2
  vhost="$run_id-$tag"
  rabbitmqctl -q add_vhost "$vhost" >/dev/null
  vhosts+=("$vhost")
  rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
  local env=(MM_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost" MM_REDIS_ADDR="$redis_addr"
    MM_AMQP_PREFIX="$run_id.$tag." MM_REDIS_PREFIX="$run_id:$tag:"
    # Both sides without auth, which builds before it lack: the A/B is of
    # the pipeline; make bench measures what auth costs.
    MM_AUTH=off MM_AUTH_HS256_SECRET=)
  start "$tag-front" "$bin/$side/front" "${env[@]}" || return 1
  front=$started_url svc_pids="front=$started_pid"
  start "$tag-assigner" "$bin/$side/assigner" "${env[@]}" || return 1
  assigner=$started_url svc_pids="$svc_pids,assigner=$started_pid"
  start "$tag-matcher1" "$bin/$side/matcher" "${env[@]}" || return 1
  svc_pids="$svc_pids,matcher1=$started_pid"
  start "$tag-matcher2" "$bin/$side/matcher" "${env[@]}" || return 1
  svc_pids="$svc_pids,matcher2=$started_pid"
}

# unstack TAG: stops the suite and deletes its vhost and keys.
unstack() {
  stop_all
  rabbitmqctl -q delete_vhost "$run_id-$1" >/dev/null 2>&1 || true
  drop_redis_keys "$run_id:$1:*"
}

secs() { # a Go duration such as 20s, 500ms or 2m, in whole seconds rounded up (300 if other)
  if [[ $1 =~ ^([0-9]+)ms$ ]]; then echo $(((BASH_REMATCH[1] + 999) / 1000))
  elif [[ $1 =~ ^([0-9]+)s$ ]]; then echo "${BASH_REMATCH[1]}"
  elif [[ $1 =~ ^([0-9]+)m$ ]]; then echo $((BASH_REMATCH[1] * 60))
  else echo 300; fi
}

# players DIR LABEL RATE: one pipeline run against $front/$assigner; the load
# tester bounds itself (warm-up + duration + drain, then 30 s to finish), and
# a timeout bounds it again. Returns its exit code.
players() {
  local dir=$1 label=$2 rate=$3 rc=0 bound
  bound=$(($(secs "$warmup") + seconds + $(secs "$drain") + 90))
  timeout -k 10 "$bound" "$bin/loadtest" -scenario pipeline -front "$front" -assigner "$assigner" \
    -label "$label" -suite distributed -rate "$rate" -warmup "$warmup" -duration "${seconds}s" -drain "$drain" \
    -service-pids "$svc_pids" -infra-pids "$(infra_pids)" "${player_flags[@]}" \
    -run-id "$run_id-$dir" -out "$out/$dir" >"$logs/$dir.log" 2>&1 &
  local lt=$!
  pids+=("$lt")
  wait "$lt" || rc=$?
  summary "$dir" "$rc"
  return "$rc"
}

# --- build --------------------------------------------------------------
services=(./services/front ./services/matcher ./services/assigner)
log "ab $run_id: building $old_name from a worktree"
git worktree add -q --detach "$tmp/wt-old" "$old"
worktrees+=("$tmp/wt-old")
go -C "$tmp/wt-old" build -o "$bin/old/" "${services[@]}" >"$logs/build-old.log" 2>&1 ||
  { cat "$logs/build-old.log" >&2; die "$old_name does not build"; }
if [ -n "$new" ]; then
  log "building $new_name (and the load tester) from a worktree"
  git worktree add -q --detach "$tmp/wt-new" "$new"
  worktrees+=("$tmp/wt-new")
  new_src=$tmp/wt-new
else
  log "building $new_name (and the load tester) from the working tree"
  new_src=$PWD
  git -C "$new_src" status --short >"$out/new-working-tree.txt"
  git -C "$new_src" diff HEAD >"$out/new-working-tree.diff" || true
fi
hint=""
[ -n "$new" ] || hint=" (the working tree; scripts/ab.sh $1 HEAD compares with the last commit instead)"
go -C "$new_src" build -o "$bin/new/" "${services[@]}" >"$logs/build-new.log" 2>&1 ||
  { cat "$logs/build-new.log" >&2; die "$new_name does not build$hint"; }
go -C "$new_src" build -o "$bin/" ./loadtest >>"$logs/build-new.log" 2>&1 ||
  { cat "$logs/build-new.log" >&2; die "the load tester of $new_name does not build"; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "old: $old ($old_name)"
  echo "new: ${new:-working tree on $(git rev-parse HEAD)} ($new_name)"
  echo "load tester: from the new side"
  echo "rates: $rates; rounds: $rounds; seconds: $seconds; warmup: $warmup; drain: $drain"
  echo "player flags: ${player_flags[*]:-none}"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "go: $(go env GOVERSION)"
  echo "rabbitmq: $(rabbitmqctl -q version 2>/dev/null || echo unknown)"
  echo "redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"
sed 's/^/  /' "$out/machine.txt"

# --- the runs -----------------------------------------------------------
n=0
runs=() # "dir rate name" of every run, in order
for rate in $rates; do
  for round in $(seq "$rounds"); do
    for side in old new; do
      n=$((n + 1))
      name=$old_name
      [ "$side" = new ] && name=$new_name
      dir=$(printf '%02d-%s-%05d-%d' "$n" "$side" "$rate" "$round")
      tag=$(printf 'r%02d' "$n")
      if stack "$side" "$tag"; then
        players "$dir" "$name $rate/s #$round" "$rate" || true
      else
        log "$dir: the stack did not start; see $logs/$tag-*.log"
      fi
      unstack "$tag"
      runs+=("$dir $rate $side")
      sleep 2 # lets the machine settle between stacks
    done
  done
done

# --- the table ----------------------------------------------------------
# row DIR: rate, assigned/s, p50, p99, lost, and CPU per player of the
# services, of Redis+RabbitMQ and of the load tester, tab-separated, from
# the run's report.json; nothing when there is none.
row() {
  local f=$out/$1/report.json
  [ -f "$f" ] || return 0
  jq -r '.players as $p | ($p.players.assigned // 0) as $n |
    [$p.target_rate_per_s, $p.assigned_per_s, $p.time_to_assign.p50_ms, $p.time_to_assign.p99_ms,
     $p.lost_tickets, ($p.services_cpu_per_player_ms // 0), ($p.infra_cpu_per_player_ms // 0),
     (if $n > 0 then .generator.cpu_s * 1000 / $n else 0 end),
     ([($p.lost_at // {}) | to_entries[] | "\(.value) \(.key)"] | join(", "))] | @tsv' "$f"
}

table() {
  echo "| rate | commit | assigned/s | p50 | p99 | lost/not terminal | services CPU/player | Redis+RabbitMQ CPU/player | load-tester CPU/player |"
  echo "|--:|---|--:|--:|--:|--:|--:|--:|--:|"
  local r dir rate side name line
  for r in "${runs[@]}"; do
    read -r dir rate side <<<"$r"
    name=$old_name
    [ "$side" = new ] && name=$new_name
    line=$(row "$dir")
    if [ -z "$line" ]; then
      printf '| %s | %s (%s) | no report | | | | | | |\n' "$rate" "$name" "$dir"
    else
      printf '%s\t%s\t%s\n' "$rate" "$name" "$line"
    fi
  done | awk -F'\t' -v rounds="$rounds" '
    function ms(v) { return v < 10 ? sprintf("%.2fms", v) : v < 100 ? sprintf("%.1fms", v) : v < 10000 ? sprintf("%.0fms", v) : sprintf("%.1fs", v / 1000) }
    function cpu(v) { return v > 0 ? sprintf("%.3f ms", v) : "—" }
    function put(rate, name, a, p50, p99, lost, lostat, svc, inf, gen) {
      printf "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", rate, name, a, ms(p50), ms(p99),
        lost (lostat != "" ? " (" lostat ")" : ""), cpu(svc), cpu(inf), cpu(gen)
    }
    function means(rate,   s, k) {
      for (s = 1; s <= ns; s++) {
        k = rate SUBSEP side[s]
        if (cnt[k] < 2) continue
        put(rate, "**" side[s] " (mean of " cnt[k] ")**", sum[k, 1] / cnt[k], sum[k, 2] / cnt[k], sum[k, 3] / cnt[k],
          sprintf("%.1f", sum[k, 4] / cnt[k]), "", sum[k, 5] / cnt[k], sum[k, 6] / cnt[k], sum[k, 7] / cnt[k])
      }
    }
    /^\| / { print; next } # a run without a report
    {
      if (prev != "" && $1 != prev) means(prev)
      prev = $1
      if (!(($2) in seen)) { seen[$2] = 1; side[++ns] = $2 }
      put($1, $2, $4, $5, $6, $7, $11, $8, $9, $10)
      k = $1 SUBSEP $2; cnt[k]++
      sum[k, 1] += $4; sum[k, 2] += $5; sum[k, 3] += $6; sum[k, 4] += $7
      sum[k, 5] += $8; sum[k, 6] += $9; sum[k, 7] += $10
    }
    END { if (prev != "") means(prev) }'
}

echo
table | tee "$out/ab.md"
{
  echo
  echo "Distributed mode (front ×1, matcher ×2, assigner ×1), pipeline scenario, ${seconds} s measured per run after a $warmup warm-up, $drain drain;"
  echo "assigned/s over the measured window; p50/p99 of the time to assign; lost: tickets created but not terminal at the end;"
  echo "CPU per player assigned. Old: $old. New: ${new:-the working tree on $(git rev-parse HEAD)}. Load tester: the new side's."
} >>"$out/ab.md"
# Runs that failed a gate (lost tickets, errors, ...) are named under the
# table: their figures may not compare.
for r in "${runs[@]}"; do
  read -r dir _ _ <<<"$r"
  if [ ! -f "$out/$dir/report.json" ]; then
    echo "- $dir: no report; see logs/$dir.log"
  elif [ "$(jq -r '.pass' "$out/$dir/report.json")" != true ]; then
    echo "- $dir failed: $(jq -r '.failures // [] | join("; ")' "$out/$dir/report.json")"
  fi
done | { f=$(cat); [ -z "$f" ] || { printf '\nRuns that failed a gate:\n%s\n' "$f" | tee -a "$out/ab.md"; }; }
log "done in $(($(date +%s) - began)) s; table in $out/ab.md, reports under $out"
