#pragma once
// --fetch on the worker: the job dir's entries that a FETCH's patterns select, as the sending side
// of a results bundle (PROTOCOL.md §5, results). Symlinks are never followed, neither as the last
// component nor on the way; they, sockets, FIFOs, devices and names no bundle may carry are left
// out and counted. A directory brings its whole tree; the parents of everything selected come too.

#include "common/bundle_source.hpp"
#include "common/manifest.hpp"

#include <set>
#include <string>
#include <vector>

namespace dc::worker {

inline constexpr std::size_t k_max_skipped_examples = 5;

struct ResultSelection {
  BundleSource source;              // manifest, local paths of its files, compressed manifest
  std::vector<std::string> missing; // patterns that matched nothing
  std::uint64_t skipped = 0;        // entries left out (symlinks, special files, bad names)
  std::vector<std::string> skipped_examples; // the first few of them, "path (symbolic link)"
};

// Walks `job_dir` (absolute) for `patterns` (checked with split_fetch_pattern). Entries named in
// `internal` (the worker's own ".tmp") are left out at the top of the job dir unless a
// pattern names them literally. Throws ConfigError for a bad pattern, BundleError
// ("bundle_too_large") when the selection exceeds limits.max_entries or limits.max_bytes, and
// std::system_error when the job dir cannot be opened.
ResultSelection select_results(const std::string& job_dir, const std::vector<std::string>& patterns,
                               const std::set<std::string>& internal, const BundleLimits& limits);

} // namespace dc::worker
