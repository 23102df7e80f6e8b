#!/usr/bin/env bash
# bench/msg.sh: node-to-node messages on this machine (PROTOCOL.md "Messages").
#   1. round-trip latency of a 1-byte message across 8 local workers: node 0 ping-pongs with
#      nodes 1..7 in turn (median and p99 of ROUNDS round trips, after 100 warm-up ones);
#   2. throughput of 64 MiB messages between two nodes (COUNT of them, timed until the receiver
#      acknowledges the last one);
#   3. barrier time on 8 and on 64 nodes (mean over BARRIERS barriers after a first one).
# Every message goes job -> worker -> master -> worker -> job over encrypted sessions on
# loopback. The job (bench/msg_bench.cpp) is compiled once here and shipped with --send.
# Traffic stays on loopback; every process started here is stopped by its pid, temp dirs removed.
# Usage: bench/msg.sh [BUILD_DIR]
#   env: ROUNDS=2000 COUNT=4 BARRIERS=200, BENCH_PARTS="latency throughput barrier" (sections)
set -euo pipefail
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
master=$build/master/master
worker=$build/worker/worker
ROUNDS=${ROUNDS:-2000}
COUNT=${COUNT:-4}
BARRIERS=${BARRIERS:-200}
BENCH_PARTS=${BENCH_PARTS:-"latency throughput barrier"}
part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }
for f in "$master" "$worker"; do [ -x "$f" ] || {
  echo "missing $f: build first (cmake -S . -B build -G Ninja && cmake --build build)" >&2
  exit 2
}; done

tmp=$(mktemp -d /tmp/distcomp-msgbench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/job"
g++ -O2 -std=c++17 -I "$root/client/include" -o "$tmp/job/msg_bench" "$root/bench/msg_bench.cpp"
"$master" --keygen --key "$tmp/k.key" 2> /dev/null
nodes=8
part barrier && nodes=64
for i in $(seq "$nodes"); do
  "$worker" --bind 127.0.0.1 --port 0 --key "$tmp/k.key" --workdir "$tmp/w$i" 2> "$tmp/w$i.log" &
  pids+=($!)
done
: > "$tmp/all.txt"
for i in $(seq "$nodes"); do
  for _ in $(seq 200); do
    grep -q 'listening on' "$tmp/w$i.log" && break
    sleep 0.05
  done
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/w$i.log")
  [ -n "$port" ] || { echo "worker $i did not start: $(cat "$tmp/w$i.log")" >&2; exit 1; }
  echo "127.0.0.1:$port" >> "$tmp/all.txt"
done
head -n 2 "$tmp/all.txt" > "$tmp/2.txt" # the first two workers
head -n 8 "$tmp/all.txt" > "$tmp/8.txt"

run() { # PEERS ARGS...: prints node 0's result line
  local peers=$1
  shift
  "$master" --key "$tmp/k.key" --peers "$peers" --send "$tmp/job/" --cmd "./msg_bench $*" \
    > "$tmp/out" 2> "$tmp/err" || { echo "run failed: $(cat "$tmp/err")" >&2; exit 1; }
  sed -n "s/^$(head -n 1 "$peers") | //p" "$tmp/out"
}

echo "bench/msg.sh on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
if part latency; then run "$tmp/8.txt" latency "$ROUNDS"; fi
if part throughput; then run "$tmp/2.txt" throughput 64 "$COUNT"; fi
if part barrier; then
  run "$tmp/8.txt" barrier "$BARRIERS"
  run "$tmp/all.txt" barrier "$BARRIERS"
fi
