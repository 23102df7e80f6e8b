#!/usr/bin/env bash
# bench/fanout.sh: fan-out cost of distcomp on this machine.
#   1. `master --cmd true` over N local workers (N = 1, 8, 32, 64): median wall time of RUNS runs,
#      next to the floor of spawning N local `sh -c true` processes.
#   2. a 20 MB source tree (~400 files, mixed text and random data) sent to 8 workers and
#      checked there (`--send tree/ --cmd 'du -sb .'`): median wall time.
# Workers listen on 127.0.0.1 only; every process started here is stopped by its pid.
# Usage: bench/fanout.sh [BUILD_DIR] (env RUNS=7, NODES="1 8 32 64")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
master=$build/master/master
worker=$build/worker/worker
RUNS=${RUNS:-7}
NODES=${NODES:-"1 8 32 64"}
tmp=$(mktemp -d /tmp/distcomp-bench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

"$master" --keygen --key "$tmp/k.key" 2>/dev/null
max=0
for n in $NODES; do [ "$n" -gt "$max" ] && max=$n; done
: > "$tmp/all-peers"
for i in $(seq 1 "$max"); do
  "$worker" --bind 127.0.0.1 --port 0 --key "$tmp/k.key" --workdir "$tmp/w$i" 2> "$tmp/w$i.log" &
  pids+=($!)
done
for i in $(seq 1 "$max"); do
  for _ in $(seq 200); do grep -q 'listening on' "$tmp/w$i.log" && break; sleep 0.05; done
  sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$tmp/w$i.log" >> "$tmp/all-peers"
done
[ "$(wc -l < "$tmp/all-peers")" -eq "$max" ] || { echo "workers did not start"; exit 1; }

echo "distcomp fan-out benchmark ($(nproc) cores, $RUNS runs each, medians)"
printf '%-28s %12s %14s %8s\n' "workload" "distcomp" "spawn floor" "ratio"
for n in $NODES; do
  head -n "$n" "$tmp/all-peers" > "$tmp/peers-$n"
  "$master" --key "$tmp/k.key" --peers "$tmp/peers-$n" --cmd true >/dev/null 2>&1 # warm-up
  times=()
  for _ in $(seq "$RUNS"); do
    t0=$(now)
    "$master" --key "$tmp/k.key" --peers "$tmp/peers-$n" --cmd true >/dev/null 2>"$tmp/err" ||
      { cat "$tmp/err"; exit 1; }
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  dc=$(printf '%s\n' "${times[@]}" | median)
  floors=()
  for _ in $(seq "$RUNS"); do
    t0=$(now)
    spawned=()
    for _ in $(seq "$n"); do sh -c true & spawned+=($!); done
    wait "${spawned[@]}"
    t1=$(now)
    floors+=("$(echo "$t1 - $t0" | bc -l)")
  done
  floor=$(printf '%s\n' "${floors[@]}" | median)
  printf '%-28s %10.3f s %12.3f s %7.2fx\n' "true on $n nodes" "$dc" "$floor" "$(echo "$dc / $floor" | bc -l)"
done

# A 20 MB tree: 200 source-like text files (~50 KB) and 200 random files (~50 KB).
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
head -n 8 "$tmp/all-peers" > "$tmp/peers-ship"
times=()
for _ in $(seq "$RUNS"); do
  t0=$(now)
  "$master" --key "$tmp/k.key" --peers "$tmp/peers-ship" --send "$tree/" --cmd 'du -sb . >/dev/null' \
    >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
  t1=$(now)
  times+=("$(echo "$t1 - $t0" | bc -l)")
done
ship=$(printf '%s\n' "${times[@]}" | median)
printf '%-28s %10.3f s   (%.1f MB x 8 nodes, %.0f MB/s aggregate)\n' "20 MB tree to 8 nodes" "$ship" \
  "$(echo "$size / 1000000" | bc -l)" "$(echo "$size * 8 / 1000000 / $ship" | bc -l)"
