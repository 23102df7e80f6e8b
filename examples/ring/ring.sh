#!/bin/sh
# examples/ring for shell scripts, with distcomp-msg (the worker puts it on PATH).
set -e
i=$DISTCOMP_NODE_ID
n=$DISTCOMP_N_NODES
next=$(( (i + 1) % n ))
distcomp-msg send "$next" "Next to $i is $next"
distcomp-msg recv $(( (i - 1 + n) % n ))
echo
