#!/usr/bin/env bash
# `cmake --install` puts the messaging clients next to the programs, and an installed worker
# gives its jobs those (not the build tree's): the header on CPATH, the Python module on
# PYTHONPATH, distcomp-msg on PATH. Loopback only; the worker is stopped by its pid.
# Usage: install.sh BUILD_DIR
set -uo pipefail
build=${1:?build dir}
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
tmp=$(mktemp -d /tmp/distcomp-install-XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 || fail "cmake --install: $(cat "$tmp/install.log")"
for f in bin/worker bin/master bin/distcomp-msg include/distcomp/msg.hpp share/distcomp/python/distcomp_msg.py; do
  [ -f "$prefix/$f" ] || fail "not installed: $f"
done
"$prefix/bin/master" --keygen --key "$tmp/k.key" 2> /dev/null || fail "keygen"
"$prefix/bin/worker" --bind 127.0.0.1 --port 0 --key "$tmp/k.key" --workdir "$tmp/work" 2> "$tmp/worker.log" &
pid=$!
for _ in $(seq 200); do
  grep -q 'listening on' "$tmp/worker.log" && break
  sleep 0.05
done
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/worker.log")
[ -n "$port" ] || fail "worker did not start: $(cat "$tmp/worker.log")"
out=$("$prefix/bin/master" --key "$tmp/k.key" -w "127.0.0.1:$port" --cmd \
  'command -v distcomp-msg; echo "$CPATH"; echo "$PYTHONPATH"; distcomp-msg send 0 self; distcomp-msg recv 0; echo' 2>&1) ||
  fail "master: $out"
expect() { grep -qxF "127.0.0.1:$port | $1" <<< "$out" || fail "expected '$1' in: $out"; }
expect "$prefix/bin/distcomp-msg"
expect "$prefix/include"
expect "$prefix/share/distcomp/python"
expect "self"
echo "ok: installed clients, used by an installed worker's job"
