#pragma once
// Everything the worker can be told on its command line. Every limit of PROTOCOL.md §6 is here
// so tests can shorten timeouts.

#include "common/async.hpp"
#include "common/manifest.hpp"

#include <optional>
#include <string>
#include <vector>

namespace dc::worker {

struct Limits {
  // Before authentication.
  Clock::duration preamble_timeout = 5s;   // PREAMBLE must arrive this soon after accept
  Clock::duration handshake_timeout = 10s; // handshake + HELLO within this of accept
  std::size_t max_pending = 64;            // unauthenticated connections, in total
  std::size_t max_pending_per_ip = 8;      // unauthenticated connections per source address
  double handshake_rate = 500;             // handshakes/s per source address (token bucket)
  double handshake_burst = 100;
  int reject_limit = 10;                // REJECT(key) from one address within reject_window...
  Clock::duration reject_window = 10s;  // ...
  Clock::duration reject_penalty = 30s; // ...refuses that address for this long
  // After authentication.
  std::size_t max_sessions = 16; // authenticated sessions at once
  std::size_t max_runs_per_session = 64;
  std::size_t max_processes = 64;      // running commands, whole worker
  Clock::duration idle_timeout = 60s;  // no record from the master for this long: close
  Clock::duration send_timeout = 60s;  // a send making no progress for this long: close
  Clock::duration kill_grace = 5s;     // SIGTERM, then SIGKILL after this
  Clock::duration drain_grace = 200ms; // after a shell exits, output still in its pipes
  BundleLimits bundle;
  std::uint64_t disk_reserve = 1ull << 30; // a bundle may use free disk minus this
};

struct Options {
  std::string bind = "::";
  std::uint16_t port = 6969;
  std::vector<std::string> key_paths; // empty: the default search path
  bool force_permissions = false;
  std::string workdir;
  std::string cache_dir;                             // --cache-dir; "" = <workdir>/cache
  std::uint64_t cache_size = std::uint64_t{4} << 30; // --cache-size, bytes
  bool no_cache = false;                             // --no-cache
  Limits limits;
  bool verbose = false;
};

// Parses argv. Prints --help/--version and exits 0 itself; throws ConfigError on bad usage.
Options parse_options(int argc, char** argv);

} // namespace dc::worker
