#pragma once
// `master --status`: asks every worker of the peers file, in parallel, for its facts (WELCOME)
// and its load (STATUS/STATUS_REPLY, PROTOCOL.md §5) and prints one table row, or one JSON line,
// per node.

#include "master/run_plan.hpp"

namespace dc::master {

// Queries every peer of `plan` (at most --fanout at once, each bounded by --connect-timeout per
// step) and prints the table (or JSON lines) to stdout. Returns the exit status: 0 every node
// answered, 3 some node was unreachable, rejected us or failed, 130 interrupted, 141 stdout
// closed. Never throws for a node's failure.
int run_status(const RunPlan& plan);

} // namespace dc::master
