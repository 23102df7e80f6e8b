#!/usr/bin/env bash
# Ships the ring to every worker of a peers file and runs it there.
# Usage: examples/ring/run.sh PEERS_FILE [cpp|python|shell] [more master options]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
master=${MASTER:-$here/../../build/master/master}
peers=${1:?usage: run.sh PEERS_FILE [cpp|python|shell] [master options]}
flavour=${2:-cpp}
shift $(( $# >= 2 ? 2 : 1 ))
case $flavour in
  cpp) cmds=(--cmd 'g++ -O2 -o ring ring.cpp' --cmd ./ring) ;;
  python) cmds=(--cmd 'python3 ring.py') ;;
  shell) cmds=(--cmd 'sh ring.sh') ;;
  *) echo "run.sh: error: unknown flavour '$flavour' (cpp, python or shell)" >&2; exit 2 ;;
esac
exec "$master" --peers "$peers" --send "$here/" "$@" "${cmds[@]}"
