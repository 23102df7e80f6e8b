#!/usr/bin/env bash
# The local demo: a fresh cluster key, three workers on loopback ports, and the master shipping
# examples/hello to them (compile and run a small C++ program). Stops the workers when done.
# Usage: examples/demo.sh [BUILD_DIR]   (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
demo=$(mktemp -d /tmp/distcomp-demo-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$demo"
}
trap cleanup EXIT

"$build/master/master" --keygen --key "$demo/cluster.key"
: > "$demo/peers.txt"
for i in 1 2 3; do
  "$build/worker/worker" --bind 127.0.0.1 --port 0 --key "$demo/cluster.key" \
    --workdir "$demo/work$i" 2> "$demo/worker$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do
    grep -q 'listening on' "$demo/worker$i.log" && break
    sleep 0.05
  done
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$demo/worker$i.log")
  [ -n "$port" ] || { echo "worker $i did not start:"; cat "$demo/worker$i.log"; exit 1; }
  echo "127.0.0.1:$port" >> "$demo/peers.txt"
done
echo "--- peers: $(tr '\n' ' ' < "$demo/peers.txt")"
echo "--- master --peers peers.txt --send examples/hello/ --cmd 'g++ -O2 -o hello main.cpp' --cmd ./hello"
"$build/master/master" --key "$demo/cluster.key" --peers "$demo/peers.txt" \
  --send "$root/examples/hello/" --cmd 'g++ -O2 -o hello main.cpp' --cmd './hello'
