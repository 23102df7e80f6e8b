#!/usr/bin/env bash
# Ships this directory to every worker of a peers file, compiles and runs it there.
# Usage: examples/hello/run.sh PEERS_FILE [more master options]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
master=${MASTER:-$here/../../build/master/master}
peers=${1:?usage: run.sh PEERS_FILE [master options]}
shift
exec "$master" --peers "$peers" --send "$here/" "$@" \
  --cmd 'g++ -O2 -o hello main.cpp' --cmd './hello'
