#!/usr/bin/env bash
# A real multi-host test: four network namespaces made here, each with its own address on a
# bridge (198.18.0.0/15, the range reserved for benchmarks), one worker in each, and the master
# in a fifth. It runs the Python ring across them and checks every node's line, ships and
# compiles examples/hello, and kills one worker mid-run to check the master's report and the
# other nodes' messaging errors. Everything it made is removed on exit, also after a failure.
# Exits 77 (CTest's skip code) when namespaces cannot be made: never counted as passed.
# Usage: multi_host.sh WORKER_BIN MASTER_BIN SOURCE_DIR
set -uo pipefail
worker=${1:?worker binary}
master=${2:?master binary}
src=${3:?source dir}

skip() {
  echo "SKIPPED: $* — this test did NOT run" >&2
  exit 77
}
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip > /dev/null || skip "no 'ip' command (iproute2)"

id=$$ # unique per run: namespaces dcmt<pid>-*, interfaces inside them only
tmp=$(mktemp -d /tmp/distcomp-netns-XXXXXX)
namespaces=()
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2> /dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2> /dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

bridge_ns=dcmt$id-br
ip netns add "$bridge_ns" 2> "$tmp/err" || skip "cannot create a network namespace: $(cat "$tmp/err")"
namespaces+=("$bridge_ns")
ip -n "$bridge_ns" link add br0 type bridge || skip "cannot create a bridge"
ip -n "$bridge_ns" link set br0 up

# Node k (0-3) is 198.18.0.(k+1); the master is 198.18.0.100. The veth pairs are made inside
# the bridge namespace with one end moved straight into the node's: the host's network is
# never touched.
add_host() { # NAME ADDRESS
  local ns=dcmt$id-$1
  ip netns add "$ns" || fail "ip netns add $ns"
  namespaces+=("$ns")
  ip -n "$bridge_ns" link add "v$1" type veth peer name eth0 netns "$ns" || skip "cannot create veth pairs"
  ip -n "$bridge_ns" link set "v$1" master br0 up
  ip -n "$ns" addr add "$2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}
add_host m 198.18.0.100
for k in 0 1 2 3; do add_host "$k" "198.18.0.$((k + 1))"; done

"$master" --keygen --key "$tmp/cluster.key" 2> /dev/null || fail "keygen"
: > "$tmp/peers.txt"
for k in 0 1 2 3; do
  ip netns exec "dcmt$id-$k" "$worker" --bind "198.18.0.$((k + 1))" --port 6969 \
    --key "$tmp/cluster.key" --workdir "$tmp/work$k" --kill-grace 1 2> "$tmp/worker$k.log" &
  pids[k]=$!
  echo "198.18.0.$((k + 1))" >> "$tmp/peers.txt"
done
for k in 0 1 2 3; do
  for _ in $(seq 200); do
    grep -q 'listening on' "$tmp/worker$k.log" && break
    sleep 0.05
  done
  grep -q 'listening on' "$tmp/worker$k.log" || fail "worker $k did not start: $(cat "$tmp/worker$k.log")"
done

in_master_ns() { ip netns exec "dcmt$id-m" "$master" --key "$tmp/cluster.key" --peers "$tmp/peers.txt" "$@"; }

# 1. The ring across four hosts: every node prints its left neighbour's line.
in_master_ns --send "$src/examples/ring/" --cmd 'python3 ring.py' > "$tmp/ring.out" 2> "$tmp/ring.err" ||
  fail "ring: master exited $?: $(cat "$tmp/ring.err")"
for k in 0 1 2 3; do
  line="198.18.0.$((k + 1)) | Next to $(((k + 3) % 4)) is $k"
  grep -qxF "$line" "$tmp/ring.out" || fail "ring: missing '$line' in: $(cat "$tmp/ring.out")"
done
echo "ok: ring across 4 namespaces"

# 2. Ship, compile and run examples/hello on every host.
in_master_ns --send "$src/examples/hello/" --cmd 'g++ -O2 -o hello main.cpp' --cmd ./hello \
  > "$tmp/hello.out" 2> "$tmp/hello.err" || fail "hello: master exited $?: $(cat "$tmp/hello.err")"
for k in 0 1 2 3; do
  grep -q "^198.18.0.$((k + 1)) | .* from node $k of 4 " "$tmp/hello.out" ||
    fail "hello: no line from node $k in: $(cat "$tmp/hello.out")"
done
echo "ok: hello compiled and run on 4 namespaces"

# 3. Kill worker 2 mid-run: the master reports that node lost (exit 3), and the nodes waiting
# for node 2's message fail with a clear error instead of hanging.
in_master_ns --cmd 'echo started; if [ "$DISTCOMP_NODE_ID" = 2 ]; then sleep 60; else distcomp-msg recv 2; fi' \
  > "$tmp/kill.out" 2> "$tmp/kill.err" &
master_pid=$!
pids+=("$master_pid")
for _ in $(seq 200); do
  [ "$(grep -c '| started$' "$tmp/kill.out")" = 4 ] && break
  sleep 0.05
done
[ "$(grep -c '| started$' "$tmp/kill.out")" = 4 ] || fail "kill: the nodes did not start: $(cat "$tmp/kill.err")"
kill -9 "${pids[2]}"
wait "${pids[2]}" 2> /dev/null # reaped here, so bash does not report the kill
wait "$master_pid"
status=$?
[ "$status" = 3 ] || fail "kill: master exited $status, expected 3: $(cat "$tmp/kill.err")"
grep -q '^198.18.0.3 .*lost.*connection lost' "$tmp/kill.err" ||
  fail "kill: no 'lost' report for node 2 in: $(cat "$tmp/kill.err")"
for k in 0 1 3; do
  grep -qF "198.18.0.$((k + 1)) | distcomp-msg: error: recv from node 2: its job has ended" "$tmp/kill.err" ||
    fail "kill: node $k did not report the ended node: $(cat "$tmp/kill.err")"
done
echo "ok: a killed worker is reported lost, its peers' receives fail"
exit 0
