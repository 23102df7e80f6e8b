#!/usr/bin/env bash
# Ships examples/pi to every worker of a peers file, compiles and runs it there.
# Usage: examples/pi/run.sh PEERS_FILE [TOTAL_SAMPLES] [more master options]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
master=${MASTER:-$here/../../build/master/master}
peers=${1:?usage: run.sh PEERS_FILE [TOTAL_SAMPLES] [master options]}
samples=${2:-200000000}
shift $(( $# >= 2 ? 2 : 1 ))
exec "$master" --peers "$peers" --send "$here/" "$@" \
  --cmd 'g++ -O2 -o pi pi.cpp' --cmd "./pi $samples"
