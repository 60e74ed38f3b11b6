# bench/rounds.sh - what bench/compare, bench/compare_lua and
# bench/compare_net share, sourced by them (not run on its own):
#
#   rounds_option OPT VALUE      parse --rounds/--load/--cpus; 1 if OPT is not one
#   rounds_start_load            start $load busy processes (pinned like us)
#   rounds_stop_load             end them (also on exit, Ctrl-C and TERM)
#   pinned CMD...                run CMD on $cpus (taskset), or as is
#   rounds_summary FILE          per key, the median of the per-round ratios
#
# Why rounds: on a shared machine one peer run followed by one of ours is
# not a comparison (back to back, the same Tokio workload took 4.0 ms and
# then 12.7 ms).  The scripts alternate peer, ours, peer, ours ... and
# quote the median of the per-round ratios ours / peer with their range.
#
# --load N runs N busy processes (pure user-space loops) for the whole
# comparison, so that the peer's rounds and ours compete with the same
# neighbours; --cpus LIST pins the peer, ours and the load to those CPUs
# (taskset -c LIST), which with more workers than CPUs oversubscribes them
# as a CPU quota does.  The load processes are this shell's children,
# killed by PID when the script ends however it ends; each also checks
# several times a second that the script is still alive, so not even a
# SIGKILL of the script leaves one spinning.

rounds=5
load=0
cpus=""
load_pids=()

# rounds_option OPT VALUE: sets rounds, load or cpus from one option;
# returns 1 when OPT is none of them.  Bad values exit 2 through
# die_usage, which the sourcing script defines.
rounds_option() {
  case $1 in
    --rounds)
      [[ $2 =~ ^[0-9]+$ ]] && (( 10#$2 >= 1 )) || die_usage "--rounds: invalid value '$2' (expected an integer >= 1)"
      rounds=$((10#$2)) ;;
    --load)
      [[ $2 =~ ^[0-9]+$ ]] && (( 10#$2 <= 64 )) || die_usage "--load: invalid value '$2' (expected an integer 0..64)"
      load=$((10#$2)) ;;
    --cpus)
      [[ $2 =~ ^[0-9]+([-,][0-9]+)*$ ]] || die_usage "--cpus: invalid value '$2' (expected a CPU list such as 0 or 0,1 or 0-1)"
      command -v taskset >/dev/null || die_usage "--cpus: taskset (util-linux) is not installed"
      taskset -c "$2" true 2>/dev/null || die_usage "--cpus: taskset refuses the CPU list '$2' (CPUs here: 0-$(( $(nproc --all) - 1 )))"
      cpus=$2 ;;
    *) return 1 ;;
  esac
}

# How many CPUs $cpus names (for the header: workers above it oversubscribe).
rounds_cpu_count() {
  if [[ -z $cpus ]]; then nproc; return; fi
  local n=0 part
  for part in ${cpus//,/ }; do
    if [[ $part == *-* ]]; then n=$(( n + ${part#*-} - ${part%-*} + 1 )); else n=$((n + 1)); fi
  done
  echo "$n"
}

# One line describing the conditions, for the output's header.
rounds_conditions() {
  local c="rounds=$rounds load=$load cpus=${cpus:-all}"
  [[ -n $cpus ]] && c+=" ($(rounds_cpu_count) CPUs)"
  echo "$c"
}

pinned() {
  if [[ -n $cpus ]]; then taskset -c "$cpus" "$@"; else "$@"; fi
}

rounds_start_load() {
  local i parent=$$ pin=()
  [[ -n $cpus ]] && pin=(taskset -c "$cpus")
  for (( i = 0; i < load; i++ )); do
    # A simple command, not a function, so that $! is the spinning
    # process itself and not a subshell around it.
    "${pin[@]}" bash -c '
      while :; do
        for (( k = 0; k < 50000; k++ )); do :; done
        kill -0 "$1" 2>/dev/null || exit 0
      done' load "$parent" &
    load_pids+=($!)
  done
}

rounds_stop_load() {
  local p
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  load_pids=()
}

# Cleanup at exit: the sourcing script's own (a function named
# rounds_cleanup_hook, if it defines one), the load, then $tmp.
rounds_cleanup() {
  local status=$?
  set +e  # a failing step here must not replace the script's status
  declare -F rounds_cleanup_hook >/dev/null && rounds_cleanup_hook
  rounds_stop_load
  [[ -n ${tmp:-} ]] && rm -rf "$tmp"
  exit "$status"
}
trap rounds_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# rounds_summary FILE: FILE has one line per round and pairing,
# `KEY RATIO OURS PEER` (KEY a workload, or workload/peer); prints per KEY,
# in order of first appearance, `KEY MEDIAN MIN MAX OURS_MEDIAN
# PEER_MEDIAN N`: the median of the ratios with their range, and the
# medians of the two sides' own figures.  The median of an even count is
# the mean of the middle two.
rounds_summary() {
  awk '
    function median(s, n,   a, i, k, t) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { t = a[i] + 0; for (k = i - 1; k >= 1 && a[k] + 0 > t; k--) a[k + 1] = a[k]; a[k + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function lo(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0; return m }
    function hi(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
    NF >= 4 {
      if (!($1 in cnt)) order[++nk] = $1
      cnt[$1]++; r[$1] = r[$1] " " $2; o[$1] = o[$1] " " $3; p[$1] = p[$1] " " $4
    }
    END {
      for (i = 1; i <= nk; i++) {
        k = order[i]
        printf "%s %.4f %.4f %.4f %.1f %.1f %d\n", k, median(r[k]), lo(r[k]), hi(r[k]), median(o[k]), median(p[k]), cnt[k]
      }
    }' "$1"
}
