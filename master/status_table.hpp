#pragma once
// `master --status`: what one node told us, and how the answers become the table, the JSON
// lines and the exit status. Pure functions: the network side is in status.cpp.

#include "common/async.hpp"
#include "common/messages.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dc::master {

enum class StatusState {
  up,          // WELCOME and STATUS_REPLY came
  no_status,   // WELCOME came, but the worker does not announce the "status" feature
  unreachable, // no session: name lookup, connect, connect timeout, closed before WELCOME
  rejected,    // the worker refused us: REJECT, failed proof of the key, busy, shutting down
  error,       // the session broke after WELCOME (no STATUS_REPLY in time, protocol error)
};

// "up", "no_status", "unreachable", "rejected", "error" (the JSON `state`).
const char* to_string(StatusState s);

struct NodeStatus {
  std::string label; // the peers file line
  StatusState state = StatusState::unreachable;
  std::string reason;               // why not up; empty when up or no_status
  std::string version;              // WELCOME `version`
  std::optional<WorkerFacts> facts; // WELCOME `facts`
  std::optional<StatusReplyBody> reply;
};

// 1536 -> "1.5 KiB", 33285996544 -> "31.0 GiB" (binary units; whole numbers from 100 up).
std::string format_bytes(std::uint64_t bytes);
// Seconds as "45s", "12m 05s", "3h 12m", "5d 03h".
std::string format_uptime(std::uint64_t seconds);
// "2x RTX 3090, 1x A100-SXM4-80GB"; "none" without GPUs. Names lose a leading "NVIDIA " and
// "GeForce "; equal names are counted in order of first appearance.
std::string summarize_gpus(const std::vector<GpuFact>& gpus);
// "up", "no status support", or "unreachable: <reason>" and so on.
std::string state_text(const NodeStatus& s);

// The table: a header and one row per node in peers order, columns aligned (widths in UTF-8
// code points, control characters shown as '?'), "-" where a value is unknown. Ends with '\n'.
std::string format_status_table(const std::vector<NodeStatus>& nodes);
// One JSON object on one line: {"type":"node", "index", "node", "state", "reason", "version",
// facts..., dynamic facts...}; every key is always present, null when unknown.
std::string status_json_line(const NodeStatus& node, std::size_t index);
// The final line: {"type":"summary", "nodes", "up", "no_status", "unreachable", "rejected",
// "error", "elapsed_ms"}.
std::string status_summary_json(const std::vector<NodeStatus>& nodes, Clock::duration elapsed);
// "2 up · 1 unreachable — 12 ms" (zero counts left out), for stderr under the table.
std::string status_total_line(const std::vector<NodeStatus>& nodes, Clock::duration elapsed);
// 0 when every node answered (up or no status support), else 3 (k_exit_unreachable).
int status_exit_code(const std::vector<NodeStatus>& nodes);

} // namespace dc::master
