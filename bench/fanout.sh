#!/usr/bin/env bash
# bench/fanout.sh: the fan-out cost of distcomp on this machine, side by side with pdsh -R ssh,
# parallel-ssh and clush (ClusterShell).
#   1. `true` on N nodes (N = 1, 8, 64, 256): median wall time of RUNS runs (after one warm-up) of
#      - distcomp: `master --cmd true` over N local workers (127.0.0.1, distinct ports, fresh key);
#      - the spawn floor: N local `sh -c true` processes started at once (posix_spawn, timed in
#        one Python process);
#      - pdsh, parallel-ssh, clush, each at fanout N, against private sshd instances on N loopback
#        addresses 127.0.1.1, 127.0.1.2, ... (bench/peers.sh), over plain ssh and over
#        ControlMaster connections opened beforehand (+CM), and N bare `ssh host true` processes
#        at once (the ssh floor). An ssh tool whose warm-up run at some N takes longer than
#        BENCH_SSH_BUDGET seconds is skipped at that N and above, and the table says so.
#   2. `seq 1 LINES` (2,000,000) on 8 nodes, output to /dev/null: median wall time of STREAM_RUNS
#      runs, the client's CPU seconds (user+sys of the tool and its ssh children, GNU time) and the
#      server side's (workers or sshd with their sessions and jobs, from /proc) for
#      distcomp, pdsh, parallel-ssh -P (it prints chunks, not lines), clush (line mode) and 8 bare
#      ssh processes (the floor, untagged); the warm-up run pipes the output through a counter of
#      the lines that carry a node tag (distcomp: all 16,000,000).
#   3. a 20 MB source tree (~400 files, mixed text and random data) sent to 8 workers and
#      checked there (`--send tree/ --cmd 'du -sb .'`): median wall time.
#   Then distcomp/peer ratios and whether the targets are met: `true` on 64 nodes at least 40x
#   faster than the fastest plain-ssh peer and within 1.5x of the spawn floor; the 8-node stream,
#   tagged line by line, at least as fast as 8 bare ssh processes, with less client CPU.
# Traffic stays on loopback; every process started here is stopped by its pid, temp dirs removed.
# Installs pdsh, pssh, clustershell, openssh-server/-client and time with apt-get when missing.
# Usage: bench/fanout.sh [BUILD_DIR]
#   env: RUNS=7 (`true` and the tree), STREAM_RUNS=3, BENCH_NODES="1 8 64 256",
#        BENCH_QUICK=1 (smoke run: RUNS=3, STREAM_RUNS=1, BENCH_NODES="1 8 64"),
#        BENCH_PEERS="pdsh pssh clush ssh" ("none": distcomp and the spawn floor only),
#        BENCH_SSH_BUDGET=60 (s, one ssh-tool `true` run), BENCH_CELL_BUDGET=150 (s, the timed runs
#        of one tool at one N: fewer runs if needed), BENCH_STREAM_LIMIT=300 (s, one stream run; a
#        tool over it is timed on a tenth of the stream instead), BENCH_LINES=2000000,
#        BENCH_TSV=FILE (results as tab-separated lines: workload nodes tool median_s cpu_s runs
#        note server_cpu_s), BENCH_PARTS="true stream tree" (the sections to run).
set -euo pipefail
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
master=$build/master/master
worker=$build/worker/worker
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  RUNS=${RUNS:-3} STREAM_RUNS=${STREAM_RUNS:-1} BENCH_NODES=${BENCH_NODES:-${NODES:-"1 8 64"}}
fi
RUNS=${RUNS:-7}
STREAM_RUNS=${STREAM_RUNS:-3}
BENCH_NODES=${BENCH_NODES:-${NODES:-"1 8 64 256"}}
BENCH_PEERS=${BENCH_PEERS:-"pdsh pssh clush ssh"}
[ "$BENCH_PEERS" != none ] || BENCH_PEERS=""
BENCH_SSH_BUDGET=${BENCH_SSH_BUDGET:-60}
BENCH_CELL_BUDGET=${BENCH_CELL_BUDGET:-150}
BENCH_LINES=${BENCH_LINES:-2000000}
BENCH_PARTS=${BENCH_PARTS:-"true stream tree"}
part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }
BENCH_STREAM_LIMIT=${BENCH_STREAM_LIMIT:-300}
readonly TOOL_LIMIT=300 # s: no single `true` or tree run goes on longer
readonly STREAM_NODES=8
for f in "$master" "$worker"; do [ -x "$f" ] || {
  echo "missing $f: build first (cmake -S . -B build -G Ninja && cmake --build build)" >&2
  exit 2
}; done

tmp=$(mktemp -d /tmp/distcomp-bench-XXXXXX)
pids=()
worker_pids=()
cleanup() {
  declare -F peers_cleanup >/dev/null && peers_cleanup
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # 256 ssh children and their pipes
# shellcheck source=bench/peers.sh
. "$root/bench/peers.sh"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
calc() { awk "BEGIN {printf \"%.${2:-3}f\", ($1)}"; }
elapsed() { calc "($((${2/./} - ${1/./}))) / 1000000" 4; } # elapsed T0 T1 ($EPOCHREALTIME values)
# count_tagged: reads a tool's output, prints TAGGED/ALL: lines carrying a node tag, all lines.
# Tags: `label | N` (distcomp), `nI: N` (pdsh, clush, the first line of each parallel-ssh chunk).
count_tagged() { awk '{ n++ } /^[^ ]+ [|] [0-9]+$/ || /^n[0-9]+: [0-9]+$/ { t++ } END { print (t + 0) "/" (n + 0) }'; }

# proc_ticks PID...: sets ticks to the user+sys clock ticks of the processes and of their reaped
# children (/proc/PID/stat fields 14-17): the server side of a run, measured around it.
proc_ticks() {
  local p line f
  ticks=0
  for p in "$@"; do
    read -r line <"/proc/$p/stat" || continue
    read -ra f <<<"${line##*) }"
    ticks=$((ticks + f[11] + f[12] + f[13] + f[14]))
  done
}
clk_tck=$(getconf CLK_TCK)
srv_pids=() # the processes that serve the runs measured with CPU: workers or sshd listeners

# Results: med[KEY] (s), cpu[KEY] (client s), srv[KEY] (server s), nruns[KEY], note[KEY];
# KEY = workload|nodes|tool.
declare -A med cpu srv nruns note skipped
record() { # KEY MEDIAN CPU RUNS NOTE [SERVER_CPU]
  med[$1]=$2 cpu[$1]=$3 nruns[$1]=$4 note[$1]=$5 srv[$1]=${6:-}
  echo "  [$(date +%T)] $1: ${2:--} s${3:+, cpu $3 s}${6:+, server cpu $6 s}, $4 run(s) $5" >&2 # progress
  if [ -n "${BENCH_TSV:-}" ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${1%%|*}" "$(cut -d'|' -f2 <<<"$1")" "${1##*|}" "$2" "$3" "$4" "$5" "${6:-}" >>"$BENCH_TSV"
  fi
}

# run_once LIMIT CPU [SINK]: runs "${cmd[@]}" once (stdin /dev/null, stdout to /dev/null or piped
# into the function SINK for the check run) under `timeout LIMIT`; sets wall (s), rc, and with
# CPU=1 ucpu (user+sys s of the command and its children) and scpu (of the srv_pids and their
# reaped children: workers and jobs, or sshd and sessions); stderr in $tmp/err.
run_once() {
  local limit=$1 want_cpu=$2 sink=${3:-/dev/null} t0 t1 u s ticks0=0
  rc=0 ucpu="" scpu=""
  if [ "$want_cpu" = 1 ] && [ ${#srv_pids[@]} -gt 0 ]; then
    proc_ticks "${srv_pids[@]}"
    ticks0=$ticks
  fi
  t0=$EPOCHREALTIME
  if [ "$want_cpu" = 1 ] && [ "$sink" = /dev/null ]; then
    PDSH_SSH_ARGS_APPEND=$pdsh_append /usr/bin/time -f '%e %U %S' -o "$tmp/time" \
      timeout -k 5 "$limit" "${cmd[@]}" </dev/null >/dev/null 2>"$tmp/err" || rc=$?
  elif [ "$sink" = /dev/null ]; then
    PDSH_SSH_ARGS_APPEND=$pdsh_append timeout -k 5 "$limit" "${cmd[@]}" </dev/null >/dev/null 2>"$tmp/err" || rc=$?
  else
    PDSH_SSH_ARGS_APPEND=$pdsh_append timeout -k 5 "$limit" "${cmd[@]}" </dev/null 2>"$tmp/err" |
      "$sink" >"$tmp/check" || rc=$?
  fi
  t1=$EPOCHREALTIME
  wall=$(elapsed "$t0" "$t1")
  if [ "$want_cpu" = 1 ] && [ "$sink" = /dev/null ]; then
    read -r _ u s < <(tail -n 1 "$tmp/time")
    ucpu=$(calc "$u + $s" 2)
    if [ ${#srv_pids[@]} -gt 0 ]; then
      sleep 0.5 # sshd reaps a session's processes just after the client has gone
      proc_ticks "${srv_pids[@]}"
      scpu=$(calc "($ticks - $ticks0) / $clk_tck" 2)
    fi
  fi
}

# measure KEY RUNS LIMIT CPU STRICT [CHECK]: one warm-up run (piped through CHECK if given), then
# RUNS timed runs (fewer if they would take longer than BENCH_CELL_BUDGET); records the medians.
# STRICT=1: any stderr output is a failure (ssh tools); the master's summary goes to stderr.
measure() {
  local key=$1 runs=$2 limit=$3 want_cpu=$4 strict=$5 check=${6:-} walls=() cpus=() scpus=() why="" i
  run_once "$limit" 0 "${check:-/dev/null}"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then why="over ${limit}s (warm-up run timed out)"; fi
  if [ -z "$why" ] && { [ "$rc" -ne 0 ] || { [ "$strict" = 1 ] && [ -s "$tmp/err" ]; }; }; then
    why="FAILED rc=$rc: $(head -c 200 "$tmp/err" | head -n 2 | tr '\n' ' ')"
  fi
  if [ -n "$why" ]; then
    record "$key" "" "" 0 "$why"
    return 1
  fi
  local checked="" warm=$wall
  [ -z "$check" ] || checked=$(cat "$tmp/check")
  if [ "$(calc "$warm * $runs > $BENCH_CELL_BUDGET" 0)" = 1 ]; then
    runs=$(calc "int($BENCH_CELL_BUDGET / $warm)" 0)
    [ "$runs" -ge 1 ] || runs=1
  fi
  for ((i = 0; i < runs; i++)); do
    run_once "$limit" "$want_cpu"
    if [ "$rc" -ne 0 ] || { [ "$strict" = 1 ] && [ -s "$tmp/err" ]; }; then
      record "$key" "" "" 0 "FAILED in a timed run, rc=$rc: $(head -n 1 "$tmp/err")"
      return 1
    fi
    walls+=("$wall")
    [ -z "$ucpu" ] || cpus+=("$ucpu")
    [ -z "$scpu" ] || scpus+=("$scpu")
  done
  local m c="" sc=""
  m=$(printf '%s\n' "${walls[@]}" | median)
  [ ${#cpus[@]} -eq 0 ] || c=$(printf '%s\n' "${cpus[@]}" | median)
  [ ${#scpus[@]} -eq 0 ] || sc=$(printf '%s\n' "${scpus[@]}" | median)
  record "$key" "$m" "$c" "$runs" "$checked" "$sc"
}

# ---------------------------------------------------------------------------------------------
nodes_max=0
for n in $BENCH_NODES; do [ "$n" -gt "$nodes_max" ] && nodes_max=$n; done
part true || nodes_max=0
hosts=$nodes_max
[ "$hosts" -ge "$STREAM_NODES" ] || hosts=$STREAM_NODES
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

"$master" --keygen --key "$tmp/k.key" 2>/dev/null
: >"$tmp/all-peers"
for i in $(seq 1 "$hosts"); do
  "$worker" --bind 127.0.0.1 --port 0 --key "$tmp/k.key" --workdir "$tmp/w$i" 2>"$tmp/w$i.log" &
  pids+=($!)
  worker_pids+=($!)
done
for i in $(seq 1 "$hosts"); do
  for _ in $(seq 200); do grep -q 'listening on' "$tmp/w$i.log" && break; sleep 0.05; done
  sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$tmp/w$i.log" >>"$tmp/all-peers"
done
[ "$(wc -l <"$tmp/all-peers")" -eq "$hosts" ] || {
  echo "workers did not start"
  exit 1
}

peer_tools=()
if [ -n "$BENCH_PEERS" ]; then
  # shellcheck disable=SC2086
  peers_install $BENCH_PEERS
  peers_start_sshd "$hosts"
  for t in $BENCH_PEERS; do peer_tools+=("$t" "$t-cm"); done
fi

echo "distcomp fan-out benchmark: $(nproc) cores, load average $load_start at start; medians of" \
  "$RUNS runs (\`true\`, tree) and $STREAM_RUNS runs (stream), each after a warm-up run"
[ ${#peer_tools[@]} -eq 0 ] ||
  echo "ssh peers: hosts n1..n$hosts = $(peer_addr 1)... on $(((hosts + 15) / 16)) sshd instance(s)," \
    "port $ssh_port; +CM = over ControlMaster connections opened beforehand"

# 1. `true` on N nodes ---------------------------------------------------------------------------
part true || BENCH_NODES_RUN=""
if [ ${#peer_tools[@]} -gt 0 ] && part true; then
  t0=$SECONDS
  peers_open_masters "$nodes_max" 300
  echo "opened $nodes_max ControlMaster connections in $((SECONDS - t0)) s"
fi
pdsh_append=""
for n in ${BENCH_NODES_RUN-$BENCH_NODES}; do
  head -n "$n" "$tmp/all-peers" >"$tmp/peers-$n"
  cmd=("$master" --key "$tmp/k.key" --peers "$tmp/peers-$n" --cmd true)
  measure "true|$n|distcomp" "$RUNS" "$TOOL_LIMIT" 0 0 || true
  # The floor: N `sh -c true` started at once with posix_spawn (vfork + exec, what the worker
  # uses) and waited for, timed inside one Python process: a bash loop would add its own fork.
  record "true|$n|floor" "$(python3 - "$n" "$RUNS" <<'PY' | median
import os, sys, time
n, runs = int(sys.argv[1]), int(sys.argv[2])
for _ in range(runs):
    t0 = time.perf_counter()
    pids = [os.posix_spawn("/bin/sh", ["sh", "-c", "true"], os.environ) for _ in range(n)]
    for pid in pids:
        os.waitpid(pid, 0)
    print(f"{time.perf_counter() - t0:.6f}")
PY
)" "" "$RUNS" ""
  for t in "${peer_tools[@]}"; do
    if [ -n "${skipped[$t]:-}" ]; then
      record "true|$n|$t" "" "" 0 "skipped: over the ${BENCH_SSH_BUDGET}s budget at $(cut -d' ' -f1 <<<"${skipped[$t]}") nodes"
      continue
    fi
    peer_cmd "$t" "$n" true
    if ! measure "true|$n|$t" "$RUNS" "$BENCH_SSH_BUDGET" 0 1; then
      case ${note["true|$n|$t"]} in over*) skipped[$t]="$n" ;; esac
    fi
    pdsh_append=""
  done
done
if [ ${#peer_tools[@]} -gt 0 ] && part true; then
  alive=$(peers_masters_alive)
  [ "$alive" -eq "$nodes_max" ] ||
    echo "WARNING: only $alive of $nodes_max ControlMaster connections survived the +CM runs" \
      "(runs through a missing one used a plain connection)"
  peers_close_masters
fi

# 2. `seq 1 LINES` on 8 nodes --------------------------------------------------------------------
stream="seq 1 $BENCH_LINES"
total_lines=$((BENCH_LINES * STREAM_NODES))
stream_tools=()
part stream || STREAM_RUNS=0
if part stream; then
  head -n "$STREAM_NODES" "$tmp/all-peers" >"$tmp/peers-stream"
  cmd=("$master" --key "$tmp/k.key" --peers "$tmp/peers-stream" --cmd "$stream")
  srv_pids=("${worker_pids[@]:0:STREAM_NODES}")
  measure "stream|$STREAM_NODES|distcomp" "$STREAM_RUNS" "$BENCH_STREAM_LIMIT" 1 0 count_tagged || true
  for t in $BENCH_PEERS; do stream_tools+=("$t"); done
  srv_pids=("${sshd_pids[@]}")
  for t in "${stream_tools[@]}"; do
    k="stream|$STREAM_NODES|$t"
    peer_cmd "$t" "$STREAM_NODES" "$stream"
    if ! measure "$k" "$STREAM_RUNS" "$BENCH_STREAM_LIMIT" 1 1 count_tagged; then
      case ${note[$k]} in
        over*) # too slow for the whole stream: one run of a tenth of it, for its rate
          peer_cmd "$t" "$STREAM_NODES" "seq 1 $((BENCH_LINES / 10))"
          run_once "$BENCH_STREAM_LIMIT" 1
          if [ "$rc" -eq 0 ]; then
            note[$k]="${note[$k]}; a tenth (seq 1 $((BENCH_LINES / 10))): $(calc "$wall" 1) s, cpu $ucpu s"
            note[$k]+=" = $(calc "$total_lines / 10 / $wall / 1000000" 2) Mlines/s"
            record "stream-tenth|$STREAM_NODES|$t" "$wall" "$ucpu" 1 "" "$scpu"
          else
            note[$k]="${note[$k]}; a tenth of it (seq 1 $((BENCH_LINES / 10))) too (rc=$rc)"
          fi
          ;;
      esac
    fi
    pdsh_append=""
  done
  srv_pids=()
fi

# 3. a 20 MB tree: 200 source-like text files (~50 KB) and 200 random files (~50 KB) ------------
if part tree; then
  tree=$tmp/tree
  mkdir -p "$tree/src" "$tree/data"
  python3 - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(42)
words = [w.encode() for w in "int main return for while struct class template vector string auto const".split()]
for i in range(200):
    with open(f"{root}/src/file{i:03}.cpp", "wb") as f:
        out = bytearray()
        while len(out) < 50_000:
            out += b" ".join(rnd.choice(words) for _ in range(12)) + b";\n"
        f.write(out)
    with open(f"{root}/data/blob{i:03}.bin", "wb") as f:
        f.write(os.urandom(50_000))
PY
  size=$(du -sb "$tree" | cut -f1)
  head -n 8 "$tmp/all-peers" >"$tmp/peers-ship"
  cmd=("$master" --key "$tmp/k.key" --peers "$tmp/peers-ship" --send "$tree/" --cmd 'du -sb . >/dev/null')
  measure "tree|8|distcomp" "$RUNS" "$TOOL_LIMIT" 0 0 || true
fi

# Report -----------------------------------------------------------------------------------------
fmt_s() { if [ -n "$1" ]; then printf '%8.3f s' "$1"; else printf '%10s' "-"; fi; }
# ratio DISTCOMP PEER: "distcomp/peer (distcomp Nx faster)"
ratio() {
  [ -n "$1" ] && [ -n "$2" ] || return 0
  local r
  r=$(calc "$1 / $2" 3)
  if [ "$(calc "$1 <= $2" 0)" = 1 ]; then
    printf '%7s  (distcomp %sx faster)' "$r" "$(calc "$2 / $1" 1)"
  else
    printf '%7s  (distcomp %sx slower)' "$r" "$(calc "$1 / $2" 2)"
  fi
}
label() {
  case $1 in
    distcomp) echo "distcomp" ;;
    floor) echo "spawn floor (N x sh -c true)" ;;
    *) peer_label "$1" ;;
  esac
}
report_true() {
  echo
  echo "1. \`true\` on N nodes: median wall time; distcomp/peer = distcomp's median / the peer's"
  for n in $BENCH_NODES; do
    dc=${med["true|$n|distcomp"]:-}
    printf '%-36s %10s   %s\n' "--- $n node(s)" "median" "distcomp/peer"
    for t in distcomp floor "${peer_tools[@]}"; do
      k="true|$n|$t"
      extra=""
      [ "${nruns[$k]:-$RUNS}" -ge "$RUNS" ] || [ -z "${med[$k]:-}" ] || extra=" [${nruns[$k]} runs: cell budget]"
      if [ -z "${med[$k]:-}" ]; then
        printf '  %-34s %10s   %s\n' "$(label "$t")" "-" "${note[$k]:-}"
      elif [ "$t" = distcomp ]; then
        printf '  %-34s %s\n' "$(label "$t")" "$(fmt_s "${med[$k]}")"
      else
        printf '  %-34s %s   %s%s\n' "$(label "$t")" "$(fmt_s "${med[$k]}")" "$(ratio "$dc" "${med[$k]}")" "$extra"
      fi
    done
  done
  echo
  echo "   medians in seconds (- = not measured)"
  printf '   %-30s' "N ="
  for n in $BENCH_NODES; do printf '%9s' "$n"; done
  echo
  for t in distcomp floor "${peer_tools[@]}"; do
    printf '   %-30s' "$(label "$t")"
    for n in $BENCH_NODES; do
      v=${med["true|$n|$t"]:-}
      if [ -n "$v" ]; then printf '%9.3f' "$v"; else printf '%9s' "-"; fi
    done
    echo
  done
}
report_stream() {
  echo
  echo "2. \`$stream\` on $STREAM_NODES nodes > /dev/null ($total_lines lines): median wall time; client CPU" \
    "= user+sys of the tool and its ssh children; server CPU = of the workers or sshd (with the" \
    "sessions and the seq processes); tagged lines/all lines in the warm-up run"
  printf '  %-34s %10s %9s %10s %10s   %-13s %-13s %s\n' "" "wall" "Mlines/s" "client CPU" "server CPU" \
    "dc/peer wall" "dc/peer CPU" "tagged/all lines"
  for t in distcomp "${stream_tools[@]}"; do
    k="stream|$STREAM_NODES|$t"
    case $t in
      ssh) l="$STREAM_NODES bare ssh (floor, untagged)" ;;
      clush) l="clush (line mode)" ;;
      pssh) l="parallel-ssh -P (chunks)" ;;
      *) l=$(label "$t") ;;
    esac
    if [ -z "${med[$k]:-}" ]; then
      printf '  %-34s %10s   %s\n' "$l" "-" "${note[$k]:-}"
      continue
    fi
    rw="" rc_=""
    if [ "$t" != distcomp ]; then
      [ -z "$dcw" ] || rw=$(calc "$dcw / ${med[$k]}" 2)
      [ -z "$dcc" ] || rc_=$(calc "$dcc / ${cpu[$k]}" 2)
    fi
    extra=""
    [ "${nruns[$k]}" -ge "$STREAM_RUNS" ] || extra="  [${nruns[$k]} run(s): cell budget]"
    printf '  %-34s %s %9s %8.2f s %10s   %-13s %-13s %s%s\n' "$l" "$(fmt_s "${med[$k]}")" \
      "$(calc "$total_lines / ${med[$k]} / 1000000" 1)" "${cpu[$k]}" "${srv[$k]:+${srv[$k]} s}" \
      "${rw:--}" "${rc_:--}" "${note[$k]}" "$extra"
  done
}
report_tree() {
  echo
  k="tree|8|distcomp"
  if [ -n "${med[$k]:-}" ]; then
    printf '3. 20 MB tree to 8 nodes: %.3f s   (%.1f MB x 8 nodes, %.0f MB/s aggregate)\n' "${med[$k]}" \
      "$(calc "$size / 1000000" 1)" "$(calc "$size * 8 / 1000000 / ${med[$k]}" 1)"
  else
    echo "3. 20 MB tree to 8 nodes: ${note[$k]:-}"
  fi
}
dcw=${med["stream|$STREAM_NODES|distcomp"]:-}
dcc=${cpu["stream|$STREAM_NODES|distcomp"]:-}
if part true; then report_true; fi
if part stream; then report_stream; fi
if part tree; then report_tree; fi

echo
echo "targets"
verdict() { if [ "$1" = 1 ]; then printf '  [met]    %s\n' "$2"; else printf '  [MISSED] %s\n' "$2"; fi; }
dc64=${med["true|64|distcomp"]:-}
fl64=${med["true|64|floor"]:-}
best="" best_t=""
for t in $BENCH_PEERS; do
  [ "$t" != ssh ] || continue
  v=${med["true|64|$t"]:-}
  [ -n "$v" ] || continue
  if [ -z "$best" ] || [ "$(calc "$v < $best" 0)" = 1 ]; then best=$v best_t=$t; fi
done
if [ -n "$dc64" ] && [ -n "$best" ]; then
  s=$(calc "$best / $dc64" 1)
  verdict "$(calc "$s >= 40" 0)" "\`true\` on 64 nodes >= 40x faster than the fastest plain-ssh peer: $(label "$best_t") $(calc "$best" 3) s / distcomp $(calc "$dc64" 3) s = ${s}x"
  [ -z "$fl64" ] || echo "           (the spawn floor itself is $(calc "$best / $fl64" 1)x faster than that peer in this run)"
else
  echo "  [n/a]    \`true\` on 64 nodes vs the fastest plain-ssh peer: not measured"
fi
if [ -n "$dc64" ] && [ -n "$fl64" ]; then
  s=$(calc "$dc64 / $fl64" 2)
  verdict "$(calc "$s <= 1.5" 0)" "\`true\` on 64 nodes within 1.5x of the spawn floor: distcomp $(calc "$dc64" 3) s / floor $(calc "$fl64" 3) s = ${s}x"
else
  echo "  [n/a]    \`true\` on 64 nodes vs the spawn floor: not measured"
fi
bw=${med["stream|$STREAM_NODES|ssh"]:-}
bc_=${cpu["stream|$STREAM_NODES|ssh"]:-}
tagged=${note["stream|$STREAM_NODES|distcomp"]:-}
if [ -n "$dcw" ]; then
  verdict "$([ "$tagged" = "$total_lines/$total_lines" ] && echo 1 || echo 0)" \
    "stream tagged line by line: distcomp printed $tagged tagged/all lines (want $total_lines/$total_lines)"
fi
if [ -n "$dcw" ] && [ -n "$bw" ]; then
  verdict "$(calc "$dcw <= $bw" 0)" "stream at least as fast as $STREAM_NODES bare ssh: distcomp $(calc "$dcw" 2) s vs ssh $(calc "$bw" 2) s (x$(calc "$dcw / $bw" 2))"
  verdict "$(calc "$dcc < $bc_" 0)" "stream with less client CPU than $STREAM_NODES bare ssh: distcomp $dcc s vs ssh $bc_ s (x$(calc "$dcc / $bc_" 2))"
else
  echo "  [n/a]    stream vs $STREAM_NODES bare ssh: not measured"
fi

if [ ${#peer_tools[@]} -gt 0 ]; then
  echo
  echo "command lines (N=8; cfg = the generated ssh client config, hosts-8 = n1..n8; +CM: config-cm)"
  printf '  %-26s %s\n' "distcomp" "master --key K --peers PEERS(127.0.0.1:PORT x 8) --cmd CMD"
  for t in $BENCH_PEERS; do
    peer_cmd "$t" 8 CMD
    line=$(printf '%q ' "${cmd[@]}")
    [ "$t" != ssh ] || line="for i in 1..8: ssh -F config -n n\$i CMD & (then wait for each)"
    line=${line//$ssh_dir\//}
    [ "$t" != pdsh ] || line="PDSH_SSH_ARGS_APPEND='-F config' $line"
    printf '  %-26s %s\n' "$(label "$t")" "$line"
  done
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
