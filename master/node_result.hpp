#pragma once
// What happened on one node, and how a run's results become summary lines and an exit status.

#include "common/async.hpp"

#include <optional>
#include <string>
#include <vector>

namespace dc::master {

enum class NodeState {
  pending,     // not started
  ok,          // every command exited 0
  failed,      // a command exited non-zero or was killed by a signal, or the worker refused a step
  unreachable, // could not connect (refused, no route, connect timeout, name not found)
  rejected,  // connected but the worker refused us (key, version, busy) or failed to prove the key
  timed_out, // a command hit --timeout
  cancelled, // interrupted by the user
  lost,      // connection lost mid-session: output may be incomplete
};

const char* to_string(NodeState s);

// What one node's bundle cost: content bytes and files in the bundle, how much of it the worker
// wanted (had to be sent) and how many files it took from its content cache.
struct UploadStats {
  std::uint64_t files = 0, bytes = 0;           // the whole bundle
  std::uint64_t sent_files = 0, sent_bytes = 0; // wanted by the worker (uncompressed sizes)
  std::uint64_t cached_files = 0;               // BUNDLE_OK from_cache
};

// What --fetch brought back from one node.
struct FetchStats {
  std::string dir;                    // where: DIR/<node>
  std::uint64_t files = 0, bytes = 0; // in the results, duplicates included
  std::uint64_t reused_files = 0;     // copied from the previous results, not sent
  std::uint64_t skipped = 0;          // left out on the worker (symlinks, special files)
  std::vector<std::string> skipped_examples;
};

struct NodeResult {
  NodeState state = NodeState::pending;
  std::optional<int> exit_code;   // of the last command that ran
  std::optional<int> exit_signal; // if it was killed by a signal
  std::string detail;             // why, for every state but ok
  std::string kept_dir;           // --keep: where the job dir is on the node
  Clock::duration connect{};      // connect + handshake + WELCOME
  Clock::duration upload{};       // bundle sent and verified
  Clock::duration run{};          // commands
  Clock::duration fetch{};        // --fetch: results received and in place (zero without)
  Clock::duration total{};
  std::uint64_t bytes_sent = 0;
  std::optional<UploadStats> upload_stats; // set once the worker confirmed the bundle
  std::optional<FetchStats> fetch_stats;   // set once --fetch's results are in place
};

// "lab01   ok    exit 0   1.84 s   (connect 2 ms, upload 31 ms, run 1.80 s)", followed by
// upload_text() when a bundle was sent.
std::string summary_line(const std::string& label, std::size_t label_width, const NodeResult& r);
// "upload 0.4 MB of 96 MB, 2311 of 2312 files cached"
std::string upload_text(const UploadStats& s);
// "0 B", "812 B", "4.2 kB", "96 MB", "1.3 GB" (decimal units, as rates and disks are quoted).
std::string format_size(std::uint64_t bytes);
// "fetched 3 files, 1.2 MB into results/lab01 (2 unchanged); 1 skipped: out/l (symbolic link)"
std::string fetch_text(const FetchStats& s);
// "exit 0", "signal 9 (SIGKILL)", or "" when no command ended.
std::string exit_text(const NodeResult& r);
// A short outcome for headers: "exit 0", "timeout, signal 15 (SIGTERM)", "unreachable".
std::string outcome_text(const NodeResult& r);
// "stragglers (over 2x the median run time 1.20 s): lab07 3.10 s, lab09 2.80 s", or "" when no
// node that ran its commands took more than twice the median of them (needs 3+ such nodes).
std::string straggler_line(const std::vector<std::string>& labels,
                           const std::vector<NodeResult>& results);
// "2 ok · 0 failed · 0 unreachable — total time 1.93 s"
std::string total_line(const std::vector<NodeResult>& results, Clock::duration total);
// The documented exit status: the first of 130, 3, 4, 1 that applies, else 0 (2 is decided
// before any node runs). With `largest_remote`, the largest remote exit code (128+N for signal N)
// replaces 1 and 4.
int exit_status(const std::vector<NodeResult>& results, bool interrupted, bool largest_remote);
std::string format_duration(Clock::duration d);

} // namespace dc::master
