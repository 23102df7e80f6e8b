#pragma once
// Everything the master can be told on its command line.

#include "common/async.hpp"
#include "master/terminal_style.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dc::master {

// How output is shown (see output_view.hpp).
enum class ViewKind { live, blocks, gather, outdir, json };

struct Options {
  std::string peers_file;              // --peers; "" leaves the choice to select_nodes
  std::vector<std::string> hosts;      // -w hostlists
  std::vector<std::string> excluded;   // -x hostlists
  std::vector<std::string> groups;     // -g
  std::vector<std::string> send;       // --send paths, rsync convention
  std::vector<std::string> ignore;     // --ignore patterns (.distcompignore syntax)
  bool hash_cache = true;              // --no-hash-cache turns the local hash cache off
  std::optional<bool> progress;        // --progress / --no-progress; unset: when stderr is a tty
  std::vector<std::string> commands;   // --cmd, then the words after `--` as one command
  std::vector<std::string> fetch;      // --fetch patterns (common/fetch_pattern.hpp)
  std::string results_dir = "results"; // --results-dir: DIR/<node>/ per node
  std::uint64_t fetch_limit = std::uint64_t{4} << 30; // --fetch-limit: bytes per node
  std::map<std::string, std::string> env;
  std::optional<std::string> key_path;
  bool force = false; // with --keygen: overwrite; otherwise: accept loose key permissions
  bool keygen = false;
  Clock::duration connect_timeout = 5s; // connect + handshake + WELCOME, per node
  double command_timeout_s = 0;         // 0 = none
  bool keep = false;
  bool stdin = false;                 // --stdin
  bool largest_remote_status = false; // -S
  std::size_t fanout = 256;
  bool verbose = false;
  ViewKind view = ViewKind::live;
  bool gather_live = false; // --gather --live
  std::string outdir;       // --outdir
  ColorMode color = ColorMode::auto_;
  bool status = false;      // --status: a table of the workers instead of a run
  bool status_json = false; // --status --json: JSON lines instead of the table
};

// Parses argv. Prints --help/--version and exits 0 itself; throws ConfigError on bad usage.
Options parse_options(int argc, char** argv);

// Exit statuses of `master` (also in --help and the README).
inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_command_failed = 1;
inline constexpr int k_exit_usage = 2;
inline constexpr int k_exit_unreachable = 3;
inline constexpr int k_exit_timeout = 4;
inline constexpr int k_exit_interrupted = 130;

} // namespace dc::master
