#!/usr/bin/env bash
# The local demo: a fresh cluster key, three workers on loopback ports, and the master running
# an example on them. Stops the workers when done.
# Usage: examples/demo.sh [EXAMPLE] [BUILD_DIR]   (default: hello, build)
#   hello        compile and run examples/hello (every node prints its node id)
#   ring         examples/ring in C++ (node-to-node messages); ring-python, ring-shell likewise
#   pi           examples/pi: Monte-Carlo pi, node 0 gathers the parts by messages
# DEMO_NODES=N starts N workers instead of 3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
example=hello
if [ $# -gt 0 ] && [ ! -d "$1" ]; then
  example=$1
  shift
fi
build=${1:-$root/build}
build=$(cd "$build" && pwd)
nodes=${DEMO_NODES:-3}
case $example in
  hello | ring | ring-python | ring-shell | pi) ;;
  *) echo "demo.sh: error: unknown example '$example' (hello, ring, ring-python, ring-shell, pi)" >&2; exit 2 ;;
esac
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
for i in $(seq "$nodes"); do
  "$build/worker/worker" --bind 127.0.0.1 --port 0 --key "$demo/cluster.key" \
    --workdir "$demo/work$i" 2> "$demo/worker$i.log" &
  pids+=($!)
done
for i in $(seq "$nodes"); do
  for _ in $(seq 100); do
    grep -q 'listening on' "$demo/worker$i.log" && break
    sleep 0.05
  done
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$demo/worker$i.log")
  [ -n "$port" ] || { echo "worker $i did not start:"; cat "$demo/worker$i.log"; exit 1; }
  echo "127.0.0.1:$port" >> "$demo/peers.txt"
done
echo "--- peers: $(tr '\n' ' ' < "$demo/peers.txt")"
export MASTER=$build/master/master
case $example in
  hello) run=("$root/examples/hello/run.sh" "$demo/peers.txt") ;;
  ring) run=("$root/examples/ring/run.sh" "$demo/peers.txt" cpp) ;;
  ring-python) run=("$root/examples/ring/run.sh" "$demo/peers.txt" python) ;;
  ring-shell) run=("$root/examples/ring/run.sh" "$demo/peers.txt" shell) ;;
  pi) run=("$root/examples/pi/run.sh" "$demo/peers.txt" "${PI_SAMPLES:-200000000}") ;;
esac
echo "--- ${run[*]#$root/}"
"${run[@]}" --key "$demo/cluster.key"
