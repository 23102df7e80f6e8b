#!/usr/bin/env bash
# bench/ship.sh: shipping files to 8 nodes with distcomp, side by side with the ssh tools people
# use for it, all over loopback on this machine:
#   - distcomp: `master --send SRC --cmd true` to 8 local workers (each on its own loopback
#     address 127.0.1.I, its own workdir and --cache-dir, a fresh key); the worker unpacks into a
#     fresh job directory, so this is a copy plus a no-op command;
#   - parallel-scp -r (pssh; it runs `scp -qC`, so ssh compression is on), parallel-rsync -a (pssh),
#     8 `rsync -a` over ssh at once, and 8 `tar c | zstd | ssh nI 'zstd -d | tar x'` at once,
#     against private sshd instances on 127.0.1.1..8 (bench/peers.sh). All hosts are this machine:
#     a forced command in the generated authorized_keys starts every ssh session in the host's own
#     destination root ($tmp/dest/nI), so every tool writes to its own relative path (`pscp/`,
#     `prsync/`, `rsync/`, `tarzstd/`) and the hosts never share files.
# Cases (data generated deterministically into the temp dir; Python's seeded PRNG):
#   1. a SIZE_MB tree of FILES files (2/3 source-like text, 1/3 random, log-normal sizes), cold:
#      before every run the workers are restarted with empty caches, the master's hash cache is
#      removed and the peers' destinations are emptied;
#   2. the same tree again, unchanged: warm (worker caches, hash cache and destinations kept);
#   3. the same tree after one file changed (a different file is appended to before each round);
#   4. one BIG_MB file (1 MiB blocks, alternately text and random), cold as in case 1.
# Each case: one untimed warm-up round, then REPS (CASE4_REPS) timed rounds; a round runs every
# tool once, in turn, so a change in machine load hits them alike; `sync` before every timed run
# so no run pays for the previous one's writeback. In the cold cases the warm-up round is checked:
# every host's copy (file count, bytes, md5 over all files) must equal the source, else the tool
# is marked INCOMPLETE COPY and the script exits 1 at the end.
# Reported: median wall time per tool and case, distcomp/peer (<1: distcomp faster), the fastest
# peer; the master's peak RSS (GNU time %M) and the workers' (VmHWM, max over the 8; the workers
# are restarted at the start of each case and before each cold run, so each case has its own
# peak) with the target: worker peak RSS below 64 MiB during case 4.
# Traffic stays on loopback; every process started here is stopped by its pid, temp dir removed.
# Installs pssh, rsync, zstd, openssh-server/-client and time with apt-get when missing.
# Usage: bench/ship.sh
#   env: BUILD=/work/main/build (dir with master/master and worker/worker), REPS=5,
#        CASE4_REPS=min(REPS,3), SIZE_MB=100, FILES=5000, BIG_MB=500, SHIP_CASES="1 2 3 4",
#        SHIP_TOOLS="distcomp pscp prsync rsync tarzstd", SHIP_LIMIT=900 (s, one run),
#        SAVE=1 (also write stdout to bench/results/ship-<nproc>cores-<date>.txt).
#   smoke run: REPS=1 SIZE_MB=5 FILES=200 BIG_MB=20 bash bench/ship.sh
set -euo pipefail
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
master=$build/master/master
worker=$build/worker/worker
REPS=${REPS:-5}
CASE4_REPS=${CASE4_REPS:-$((REPS < 3 ? REPS : 3))}
SIZE_MB=${SIZE_MB:-100}
FILES=${FILES:-5000}
BIG_MB=${BIG_MB:-500}
SHIP_CASES=${SHIP_CASES:-"1 2 3 4"}
SHIP_TOOLS=${SHIP_TOOLS:-"distcomp pscp prsync rsync tarzstd"}
SHIP_LIMIT=${SHIP_LIMIT:-900}
readonly NODES=8
if ! [ "$FILES" -ge 3 ] || ! [ "$SIZE_MB" -ge 1 ] || ! [ "$BIG_MB" -ge 1 ] || ! [ "$REPS" -ge 1 ] ||
  ! [ "$CASE4_REPS" -ge 1 ]; then
  echo "ship.sh: want FILES >= 3 (a third of them are text), SIZE_MB, BIG_MB, REPS, CASE4_REPS >= 1" >&2
  exit 2
fi
for c in $SHIP_CASES; do case $c in 1 | 2 | 3 | 4) ;; *)
  echo "ship.sh: SHIP_CASES: unknown case $c (cases are 1 2 3 4)" >&2
  exit 2
  ;;
esac; done
for t in $SHIP_TOOLS; do case $t in distcomp | pscp | prsync | rsync | tarzstd) ;; *)
  echo "ship.sh: SHIP_TOOLS: unknown tool $t (distcomp pscp prsync rsync tarzstd)" >&2
  exit 2
  ;;
esac; done
readonly WORKER_RSS_LIMIT_KB=$((64 * 1024)) # the target: worker peak RSS in case 4
for f in "$master" "$worker"; do [ -x "$f" ] || {
  echo "ship.sh: missing $f: build first (cmake -S . -B build -G Ninja && cmake --build build" \
    "--target master worker) or point BUILD at a build directory" >&2
  exit 2
}; done
command -v python3 >/dev/null || {
  echo "ship.sh: python3 is needed to generate the data" >&2
  exit 2
}

tmp=$(mktemp -d /tmp/distcomp-ship-XXXXXX)
pids=()        # long-lived: the sshd instances (peers.sh adds them)
worker_pids=() # the current workers; restarted often, so kept apart and emptied once reaped
run_pid=""     # the timed command running in the background, if any
tee_pid=""     # SAVE=1: the tee writing stdout to the results file
# alive PID: PID is still a child of this shell and not a zombie (a pid, once reaped, may be anyone's).
alive() {
  local line f
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -ra f <<<"${line##*) }"
  [ "${f[0]}" != Z ] && [ "${f[1]}" = "$$" ]
}
# stop PID...: SIGTERM, up to 10 s to go, then SIGKILL. Polls rather than `wait`s: after a Ctrl-C
# that also reached the workers, `wait` for a child reaped while the trap ran can block forever.
stop() {
  local p i left
  [ $# -gt 0 ] || return 0
  kill "$@" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    left=0
    for p; do if alive "$p"; then left=1; fi; done
    [ "$left" = 1 ] || return 0
    sleep 0.05
  done
  for p; do if alive "$p"; then kill -9 "$p" 2>/dev/null || true; fi; done
}
cleanup() {
  local i
  # Only the script itself: a child forked for `cmd &` runs the traps until it execs.
  [ "$BASHPID" = "$$" ] || return 0
  set +e
  # A Ctrl-C during a run: timeout made the command its own process group (id: timeout's pid);
  # stop the whole group, or rsync and ssh children outlive their parents for a moment.
  if [ -n "$run_pid" ]; then
    kill -- "-$run_pid" 2>/dev/null
    stop "$run_pid"
    for ((i = 0; i < 200; i++)); do kill -0 -- "-$run_pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 -- "-$run_pid" 2>/dev/null
  fi
  declare -F stop_workers >/dev/null && stop_workers
  declare -F peers_cleanup >/dev/null && peers_cleanup
  stop "${pids[@]}"
  rm -rf "$tmp"
  if [ -n "$tee_pid" ]; then # let tee write the last lines before the shell returns
    exec >&-
    for ((i = 0; i < 100; i++)); do alive "$tee_pid" || break; sleep 0.05; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=bench/peers.sh
. "$root/bench/peers.sh"

# ship_install: rsync and zstd (peers_install does pssh, sshd, ssh and GNU time); rsync must also
# be there for the remote side, which is this machine.
ship_install() {
  local need=() sudo=""
  command -v rsync >/dev/null || need+=(rsync)
  command -v zstd >/dev/null || need+=(zstd)
  [ ${#need[@]} -eq 0 ] && return 0
  echo "installing ${need[*]} (apt-get)" >&2
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >/dev/null
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
calc() { awk "BEGIN {printf \"%.${2:-3}f\", ($1)}"; }
elapsed() { calc "($((${2/./} - ${1/./}))) / 1000000" 4; } # elapsed T0 T1 ($EPOCHREALTIME values)
progress() { echo "  [$(date +%T)] $*" >&2; }
mib() { if [ -n "${1:-}" ]; then calc "$1 / 1024" 1; else echo "-"; fi; } # KiB -> MiB

# Workers -----------------------------------------------------------------------------------------
# start_workers: NODES workers, worker I on 127.0.1.I (the address of ssh host nI), any free port;
# writes the peers file $tmp/peers. Their caches stay on disk across restarts.
start_workers() {
  local i addr
  # The last start's logs say "listening on" too, until the new worker's redirection truncates them.
  rm -f "$tmp"/w*.log
  for ((i = 1; i <= NODES; i++)); do
    "$worker" --bind "$(peer_addr "$i")" --port 0 --key "$tmp/k.key" --workdir "$tmp/w$i" \
      --cache-dir "$tmp/cache$i" 2>"$tmp/w$i.log" &
    worker_pids+=($!)
  done
  : >"$tmp/peers"
  for ((i = 1; i <= NODES; i++)); do
    for _ in $(seq 200); do grep -q 'listening on' "$tmp/w$i.log" && break; sleep 0.05; done
    addr=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$tmp/w$i.log")
    if [ -z "$addr" ]; then
      echo "worker $i did not start:" >&2
      cat "$tmp/w$i.log" >&2
      return 1
    fi
    echo "$addr" >>"$tmp/peers"
  done
}
stop_workers() {
  stop "${worker_pids[@]}"
  worker_pids=() # gone: their pids may be anyone's now
}
# worker_hwm: the largest VmHWM (KiB) of the running workers: their peak RSS since they started.
worker_hwm() {
  local pid v max=0
  for pid in "${worker_pids[@]}"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${v:-0}" -le "$max" ] || max=$v
  done
  echo "$max"
}
# cold_workers: fresh workers with empty caches and no master hash cache: a first send.
cold_workers() {
  stop_workers
  rm -rf "$tmp"/cache* "$tmp/xdg"
  start_workers
}

# Data --------------------------------------------------------------------------------------------
# gen tree DIR SIZE_MB FILES | gen big FILE SIZE_MB: deterministic data (seeded PRNG). Text is
# source-like tokens picked by random bytes (zstd -3 packs it about 3.5x); random data does not pack.
gen() {
  python3 - "$@" <<'PY'
import math, os, random, sys
mode, out, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(20240601)
tok = ("int auto const return for while if else struct class template typename std::vector "
       "std::string size_t uint64_t nullptr true false static inline void bool char double "
       "namespace using public private override virtual + - * / = == != < > <= >= && || ( ) "
       "{ } [ ] ; , . -> :: // # include define").split()
while len(tok) < 256:
    tok.append("%s_%d" % (rnd.choice(["x", "buf", "len", "node", "item", "count", "ptr"]), len(tok)))
for i in range(0, 256, 16):
    tok[i] = ";\n   "
tok = [(t + " ").encode() for t in tok]
def text(n):
    out = b""
    while len(out) < n:
        out += b"".join([tok[b] for b in rnd.randbytes(n // 4 + 16)])
    return out[:n]
total = size_mb * 1000 * 1000
if mode == "tree":
    nfiles = int(sys.argv[4])
    w = [math.exp(rnd.gauss(0, 1)) for _ in range(nfiles)]
    s = sum(w)
    for i in range(nfiles):
        n = max(1, int(w[i] / s * total))
        d = "%s/d%02d/d%02d" % (out, i // 500, (i // 50) % 10)
        os.makedirs(d, exist_ok=True)
        random_file = i % 3 == 2
        with open("%s/%s%05d.%s" % (d, "blob" if random_file else "file", i, "bin" if random_file else "cpp"), "wb") as f:
            f.write(rnd.randbytes(n) if random_file else text(n))
else:
    with open(out, "wb") as f:
        i = 0
        while i * (1 << 20) < total:
            n = min(1 << 20, total - i * (1 << 20))
            f.write(text(n) if i % 2 == 0 else rnd.randbytes(n))
            i += 1
PY
}

# sig.sh PATH: "FILES BYTES MD5" of a file or tree: md5 over the sorted per-file md5 lines. It
# runs here on the peers' copies and, shipped along, on the workers for distcomp's.
cat >"$tmp/sig.sh" <<'EOF'
#!/bin/sh
export LC_ALL=C
cd "$(dirname "$1")" || exit 1
b=$(basename "$1")
[ -e "$b" ] || { echo "missing"; exit 0; }
files=$(find "$b" -type f | wc -l)
bytes=$(find "$b" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
sum=$(find "$b" -type f -print0 | sort -z | xargs -0 -r md5sum | md5sum | cut -c1-32)
echo "$files $bytes $sum"
EOF

# Tools -------------------------------------------------------------------------------------------
label() {
  case $1 in
    distcomp) echo "distcomp (master --send)" ;;
    pscp) echo "parallel-scp -r" ;;
    prsync) echo "parallel-rsync -a" ;;
    rsync) echo "rsync -a x8 (& + wait)" ;;
    tarzstd) echo "tar|zstd|ssh x8 (& + wait)" ;;
  esac
}
# ship_cmd TOOL SRC [CHECK]: sets the array cmd that ships SRC (a directory or a file) to all
# NODES hosts; each peer writes to TOOL/ in the host's destination root, so SRC's copy is
# $tmp/dest/nI/TOOL/$(basename SRC). CHECK=1 (distcomp): run sig.sh on the copy instead of true.
ship_cmd() {
  local tool=$1 src=$2 check=${3:-0}
  case $tool in
    distcomp)
      if [ "$check" = 1 ]; then
        cmd=("$master" --key "$tmp/k.key" --peers "$tmp/peers" --no-progress --send "$tmp/sig.sh"
          --send "$src" --cmd "sh sig.sh $(basename "$src")")
      else
        cmd=("$master" --key "$tmp/k.key" --peers "$tmp/peers" --no-progress --send "$src" --cmd true)
      fi
      ;;
    # -O: the legacy scp protocol; the private sshd has no sftp subsystem.
    pscp) cmd=(parallel-scp -h "$hosts" -p "$NODES" -t 0 -x "-O -F $ssh_cfg" -r "$src" pscp/) ;;
    prsync) cmd=(parallel-rsync -h "$hosts" -p "$NODES" -t 0 -S "-F $ssh_cfg" -a "$src" prsync/) ;;
    rsync)
      # shellcheck disable=SC2016
      cmd=(bash -c 'rc=0; ps=(); for ((i = 1; i <= $2; i++)); do rsync -a -e "ssh -F $1" "$3" "n$i:rsync/" & ps+=($!); done
        for p in "${ps[@]}"; do wait "$p" || rc=1; done; exit $rc' rsync-x8 "$ssh_cfg" "$NODES" "$src")
      ;;
    tarzstd)
      # shellcheck disable=SC2016
      cmd=(bash -c 'set -o pipefail; rc=0; ps=(); for ((i = 1; i <= $2; i++)); do
          tar cf - -C "$3" "$4" | zstd -q | ssh -F "$1" "n$i" "zstd -dq | tar xf - -C tarzstd" & ps+=($!)
        done
        for p in "${ps[@]}"; do wait "$p" || rc=1; done; exit $rc' tarzstd-x8 "$ssh_cfg" "$NODES" \
        "$(dirname "$src")" "$(basename "$src")")
      ;;
  esac
}
# clear_dest TOOL: empties the tool's destination on every host (cold start for the peer).
clear_dest() {
  local i
  for ((i = 1; i <= NODES; i++)); do
    rm -rf "$tmp/dest/n$i/$1"
    mkdir -p "$tmp/dest/n$i/$1"
  done
}

# run_once LIMIT: runs "${cmd[@]}" under `timeout LIMIT` and GNU time, in the background so that
# Ctrl-C reaches the trap at once; sets wall (s), rc, rss (KiB, peak RSS of the command itself);
# stdout in $tmp/out, stderr in $tmp/err.
run_once() {
  local t0 t1
  rc=0
  t0=$EPOCHREALTIME
  timeout -k 5 "$1" /usr/bin/time -f '%M' -o "$tmp/time" "${cmd[@]}" </dev/null >"$tmp/out" 2>"$tmp/err" &
  run_pid=$!
  wait "$run_pid" || rc=$?
  t1=$EPOCHREALTIME
  run_pid=""
  wall=$(elapsed "$t0" "$t1")
  rss=$(tail -n 1 "$tmp/time" 2>/dev/null || echo 0)
  [[ $rss =~ ^[0-9]+$ ]] || rss=0
}

# Results: walls[CASE|TOOL] (timed walls, space separated), med[CASE|TOOL], note[CASE|TOOL],
# failed[CASE|TOOL], upload[CASE] (distcomp's summary of its last run), mrss/wrss[CASE] (KiB).
declare -A walls med note failed upload mrss wrss
bad_copies=0

# prepare CASE TOOL: the state before a run: cold cases start from nothing.
prepare() {
  local c=$1 t=$2 i
  if [ "$c" = 1 ] || [ "$c" = 4 ]; then
    if [ "$t" = distcomp ]; then cold_workers; else clear_dest "$t"; fi
  elif [ "$t" != distcomp ]; then
    for ((i = 1; i <= NODES; i++)); do mkdir -p "$tmp/dest/n$i/$t"; done
  fi
}
# after_run CASE TOOL: bookkeeping after a run of TOOL in CASE; returns 1 if it failed.
after_run() {
  local c=$1 t=$2 k="$1|$2" h
  if [ "$t" = distcomp ]; then
    [ "$rss" -le "${mrss[$c]:-0}" ] || mrss[$c]=$rss
    h=$(worker_hwm)
    [ "$h" -le "${wrss[$c]:-0}" ] || wrss[$c]=$h
    upload[$c]=$(grep -o 'upload [0-9.]* [kMGTP]*B of [^,]*, [0-9]* of [0-9]* files cached' "$tmp/err" | head -n 1 || true)
  fi
  # The ssh tools print nothing on success but a line of output per host for pssh: rc is the test.
  if [ "$rc" -ne 0 ]; then
    failed[$k]=1
    note[$k]="FAILED rc=$rc: $(head -c 300 "$tmp/err" "$tmp/out" | grep -v '^==>' | head -n 3 | tr '\n' ' ')"
    progress "case $c $t: ${note[$k]}"
    return 1
  fi
}
# verify CASE TOOL SRC: every host's copy equals SRC (count, bytes, md5); prints one line.
verify() {
  local c=$1 t=$2 src=$3 want got ok=0 i bad=""
  want=$(sh "$tmp/sig.sh" "$src")
  if [ "$t" = distcomp ]; then
    ok=$(grep -c " | $want\$" "$tmp/out" || true)
    [ "$ok" -eq "$NODES" ] || bad="$(grep -v " | $want\$" "$tmp/out" | head -n 1)"
  else
    for ((i = 1; i <= NODES; i++)); do
      got=$(sh "$tmp/sig.sh" "$tmp/dest/n$i/$t/$(basename "$src")")
      if [ "$got" = "$want" ]; then ok=$((ok + 1)); else bad="n$i: $got"; fi
    done
  fi
  if [ "$ok" -eq "$NODES" ]; then
    # shellcheck disable=SC2086 # $want: files, bytes, md5
    printf 'verify case %s %-28s %d/%d hosts: %s files, %s bytes, md5 %s ok\n' "$c" "$(label "$t")" \
      "$ok" "$NODES" $want
  else
    printf 'verify case %s %-28s INCOMPLETE COPY: %d/%d hosts match (want "%s"; %s)\n' "$c" "$(label "$t")" \
      "$ok" "$NODES" "$want" "$bad" | tee /dev/stderr
    failed["$c|$t"]=1
    note["$c|$t"]="INCOMPLETE COPY"
    bad_copies=$((bad_copies + 1))
  fi
}

# run_case CASE SRC REPS: a warm-up round (checked in the cold cases), then REPS timed rounds.
run_case() {
  local c=$1 src=$2 reps=$3 r t k
  # Fresh workers for each case (each cold run restarts them anyway): VmHWM is then this case's.
  stop_workers
  start_workers
  for ((r = 0; r <= reps; r++)); do
    [ "$c" != 3 ] || touch_one "$r"
    for t in $SHIP_TOOLS; do
      k="$c|$t"
      [ -z "${failed[$k]:-}" ] || continue
      prepare "$c" "$t"
      if [ "$r" -eq 0 ] && { [ "$c" = 1 ] || [ "$c" = 4 ]; }; then
        ship_cmd "$t" "$src" 1
      else
        ship_cmd "$t" "$src"
      fi
      [ "$r" -eq 0 ] || sync -f "$tmp"
      run_once "$SHIP_LIMIT"
      after_run "$c" "$t" || continue
      if [ "$r" -eq 0 ]; then
        if [ "$c" = 1 ] || [ "$c" = 4 ]; then verify "$c" "$t" "$src"; fi
        progress "case $c $t: warm-up $(calc "$wall" 3) s"
      else
        walls[$k]="${walls[$k]:-} $wall"
        progress "case $c $t: run $r/$reps $(calc "$wall" 3) s"
      fi
      # Cold cases: free the disk now, not at the tool's next run (case 4: NODES x BIG_MB per
      # tool); case 1's last copies are where case 2 starts.
      if [ "$t" != distcomp ] && { [ "$c" = 4 ] || { [ "$c" = 1 ] && [ "$r" -lt "$reps" ]; }; }; then
        clear_dest "$t"
      fi
    done
  done
  for t in $SHIP_TOOLS; do
    k="$c|$t"
    [ -n "${failed[$k]:-}" ] || [ -z "${walls[$k]:-}" ] || med[$k]=$(tr ' ' '\n' <<<"${walls[$k]# }" | median)
  done
}
# touch_one ROUND: case 3: appends a line to one text file, a different one each round.
touch_one() {
  local f
  f=$(find "$tree" -name '*.cpp' | sort | sed -n "$((($1 * 37) % text_files + 1))p")
  printf '// edit %d\n' "$1" >>"$f"
}

# -------------------------------------------------------------------------------------------------
if [ "${SAVE:-0}" = 1 ]; then
  mkdir -p "$root/bench/results"
  out_file=$root/bench/results/ship-$(nproc)cores-$(date +%F).txt
  exec > >(tee "$out_file")
  tee_pid=$!
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
peers_install pssh
ship_install
"$master" --keygen --key "$tmp/k.key" 2>/dev/null
export XDG_CACHE_HOME=$tmp/xdg # the master's hash cache: private, and removed for cold runs
export TMPDIR=$tmp             # the master's spool for compressed files beyond 256 MiB

peers_start_sshd "$NODES"
hosts=$ssh_dir/hosts-$NODES
head -n "$NODES" "$ssh_dir/hosts-all" >"$hosts"
# Every session starts in its host's destination root: the host's index from the address the
# client connected to (SSH_CONNECTION="CLIENT-ADDR CLIENT-PORT SERVER-ADDR SERVER-PORT"), as
# peer_addr numbers them.
cat >"$ssh_dir/dispatch" <<EOF
#!/bin/sh
set -- \$SSH_CONNECTION
a=\${3#127.0.}
i=\$(( (\${a%.*} - 1) * 250 + \${a#*.} ))
cd "$tmp/dest/n\$i" || exit 1
exec /bin/sh -c "\$SSH_ORIGINAL_COMMAND"
EOF
sed -i "s|^|command=\"/bin/sh $ssh_dir/dispatch\" |" "$ssh_dir/authorized_keys"
for ((i = 1; i <= NODES; i++)); do mkdir -p "$tmp/dest/n$i"; done

tree=$tmp/src/tree
big=$tmp/big/big.bin
mkdir -p "$tmp/src" "$tmp/big"
t0=$SECONDS
if [[ " $SHIP_CASES " == *" "[123]" "* ]]; then gen tree "$tree" "$SIZE_MB" "$FILES"; fi
if [[ " $SHIP_CASES " == *" 4 "* ]]; then gen big "$big" "$BIG_MB"; fi
progress "data generated in $((SECONDS - t0)) s"
text_files=$(find "$tmp/src" -name '*.cpp' | wc -l)
tree_sig=$( [ ! -d "$tree" ] || sh "$tmp/sig.sh" "$tree")
tree_packed=$( [ ! -d "$tree" ] || tar cf - -C "$tmp/src" tree | zstd -q | wc -c)
big_packed=$( [ ! -f "$big" ] || zstd -q <"$big" | wc -c)

echo "distcomp file-shipping benchmark, $(date '+%F %T %Z'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $load_start at start"
echo "  $("$master" --version); $(ssh -V 2>&1); $(rsync --version | head -n 1 | sed 's/  */ /g')"
echo "  pssh $(parallel-scp --version 2>&1); $(zstd --version | sed 's/^\*\*\* //; s/, by.*//'); $(tar --version | head -n 1); kernel $(uname -r)"
echo "  $NODES nodes on loopback: workers and sshd on 127.0.1.1..$NODES (sshd port $ssh_port)"
[ -z "$tree_sig" ] || echo "  tree: $(cut -d' ' -f1 <<<"$tree_sig") files, $(calc "$(cut -d' ' -f2 <<<"$tree_sig") / 1000000" 1) MB ($text_files text), tar|zstd -3: $(calc "$tree_packed / 1000000" 1) MB"
[ -z "$big_packed" ] || echo "  big file: $(calc "$(stat -c %s "$big") / 1000000" 1) MB, zstd -3: $(calc "$big_packed / 1000000" 1) MB"
echo "  medians of $REPS timed rounds (case 4: $CASE4_REPS) after one warm-up round; a round runs each tool once"
echo

declare -A title
title[1]="1. tree, first send (cold: fresh workers with empty caches and no master hash cache; empty destinations)"
title[2]="2. tree again, unchanged (warm)"
title[3]="3. tree with one file changed (warm; a different file appended to each round)"
title[4]="4. one big file, first send (cold as in 1)"
for c in $SHIP_CASES; do
  progress "${title[$c]}"
  case $c in
    1 | 2 | 3) run_case "$c" "$tree" "$REPS" ;;
    *) run_case 4 "$big" "$CASE4_REPS" ;;
  esac
  # The peers' copies of the tree are not needed after case 3: free the disk for case 4.
  [ "$c" != 3 ] || for t in $SHIP_TOOLS; do [ "$t" = distcomp ] || clear_dest "$t"; done
done
stop_workers

# Report ------------------------------------------------------------------------------------------
# ratio DISTCOMP PEER: "distcomp/peer (distcomp Nx faster|slower)"
ratio() {
  local r
  r=$(calc "$1 / $2" 2)
  if [ "$(calc "$1 <= $2" 0)" = 1 ]; then
    printf '%s (distcomp %sx faster)' "$r" "$(calc "$2 / $1" 1)"
  else
    printf '%s (distcomp %sx slower)' "$r" "$(calc "$1 / $2" 1)"
  fi
}
# spread KEY: "min-max" of the timed runs
spread() { tr ' ' '\n' <<<"${walls[$1]# }" | sort -g | awk 'NR == 1 { a = $1 } { b = $1 } END { printf "%.2f-%.2f", a, b }'; }
declare -A best_tool
echo
for c in $SHIP_CASES; do
  echo "${title[$c]}"
  printf '  %-28s %10s  %-15s  %s\n' "" "median" "min-max (s)" "distcomp/peer"
  dc=${med["$c|distcomp"]:-}
  best=""
  for t in $SHIP_TOOLS; do
    k="$c|$t"
    m=${med[$k]:-}
    if [ -z "$m" ]; then
      printf '  %-28s %10s  %-15s  %s\n' "$(label "$t")" "-" "" "${note[$k]:-not run}"
      continue
    fi
    r=""
    [ "$t" = distcomp ] || [ -z "$dc" ] || r=$(ratio "$dc" "$m")
    printf '  %-28s %8.3f s  %-15s  %s\n' "$(label "$t")" "$m" "$(spread "$k")" "$r"
    [ "$t" != distcomp ] || continue
    if [ -z "$best" ] || [ "$(calc "$m < $best" 0)" = 1 ]; then best=$m best_tool[$c]=$t; fi
  done
  if [ -n "$best" ]; then
    printf '  fastest peer: %s, %.3f s%s\n' "$(label "${best_tool[$c]}")" "$best" \
      "$([ -z "$dc" ] || echo "; distcomp/fastest peer = $(ratio "$dc" "$best")")"
  fi
  if [ -n "${mrss[$c]:-}" ]; then
    echo "  distcomp per node: ${upload[$c]:-?} (last run); peak RSS: master $(mib "${mrss[$c]}") MiB," \
      "worker $(mib "${wrss[$c]:-0}") MiB (max of $NODES)"
  fi
  echo
done

# The same medians as one grid: a row per tool, a column per case.
echo "summary: median wall time (s) per case"
printf '  %-28s' ""
for c in $SHIP_CASES; do printf '%10s' "case $c"; done
echo
for t in $SHIP_TOOLS; do
  printf '  %-28s' "$(label "$t")"
  for c in $SHIP_CASES; do
    m=${med["$c|$t"]:-}
    if [ -n "$m" ]; then printf '%10.3f' "$m"; else printf '%10s' "-"; fi
  done
  echo
done
printf '  %-28s' "distcomp/fastest peer"
for c in $SHIP_CASES; do
  dc=${med["$c|distcomp"]:-} b=${best_tool[$c]:-}
  if [ -n "$dc" ] && [ -n "$b" ]; then printf '%10s' "$(calc "$dc / ${med["$c|$b"]}" 2)"; else printf '%10s' "-"; fi
done
echo
printf '  %-28s' "fastest peer"
for c in $SHIP_CASES; do printf '%10s' "${best_tool[$c]:--}"; done
echo
printf '  %-28s' "master peak RSS (MiB)"
for c in $SHIP_CASES; do printf '%10s' "$(mib "${mrss[$c]:-}")"; done
echo
printf '  %-28s' "worker peak RSS (MiB, max/8)"
for c in $SHIP_CASES; do printf '%10s' "$(mib "${wrss[$c]:-}")"; done
echo
echo

echo "targets"
# The issue's: cases 1 and 4 at least as fast as the fastest peer; cases 2 and 3 at least 10x
# faster than parallel-rsync.
for c in $SHIP_CASES; do
  dc=${med["$c|distcomp"]:-} b=${best_tool[$c]:-} pr=${med["$c|prsync"]:-}
  case $c in
    1 | 4)
      if [ -z "$dc" ] || [ -z "$b" ]; then
        echo "  [n/a]    case $c at least as fast as the fastest peer: not measured"
        continue
      fi
      if [ "$(calc "$dc <= ${med["$c|$b"]}" 0)" = 1 ]; then v="[met]   "; else v="[MISSED]"; fi
      echo "  $v case $c at least as fast as the fastest peer: distcomp $dc s vs $(label "$b") ${med["$c|$b"]} s" ;;
    2 | 3)
      if [ -z "$dc" ] || [ -z "$pr" ]; then
        echo "  [n/a]    case $c 10x faster than parallel-rsync: not measured"
        continue
      fi
      if [ "$(calc "$pr >= 10 * $dc" 0)" = 1 ]; then v="[met]   "; else v="[MISSED]"; fi
      echo "  $v case $c 10x faster than parallel-rsync: distcomp $dc s vs $pr s (x$(calc "$pr / $dc" 2))" ;;
  esac
done
if [ -n "${wrss[4]:-}" ]; then
  if [ "${wrss[4]}" -lt "$WORKER_RSS_LIMIT_KB" ]; then v="[met]   "; else v="[MISSED]"; fi
  echo "  $v worker peak RSS in case 4 ($BIG_MB MB file): $(mib "${wrss[4]}") MiB (limit $(mib "$WORKER_RSS_LIMIT_KB") MiB; master $(mib "${mrss[4]}") MiB)"
else
  echo "  [n/a]    worker peak RSS in case 4: not measured"
fi
echo
echo "command lines (SRC = the tree or the big file; config = the generated ssh config, hosts-$NODES = n1..n$NODES;"
echo "  parallel-scp runs \`scp -qC\`: ssh's zlib compression is on; every ssh session starts in the host's dest dir)"
for t in $SHIP_TOOLS; do
  ship_cmd "$t" SRC
  line=$(printf '%q ' "${cmd[@]}")
  line=${line//$master/master}
  line=${line//$ssh_dir\//}
  line=${line//$tmp\//}
  case $t in
    rsync) line="for i in 1..$NODES: rsync -a -e 'ssh -F config' SRC nI:rsync/ & (then wait for each)" ;;
    tarzstd) line="for i in 1..$NODES: tar cf - -C DIR NAME | zstd -q | ssh -F config nI 'zstd -dq | tar xf - -C tarzstd' & (then wait for each)" ;;
  esac
  printf '  %-28s %s\n' "$(label "$t")" "$line"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total $((SECONDS / 60)) min $((SECONDS % 60)) s"
if [ "$bad_copies" -gt 0 ]; then
  echo "ship.sh: $bad_copies tool(s) made an INCOMPLETE COPY (see the verify lines)" >&2
  exit 1
fi
