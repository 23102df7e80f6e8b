#pragma once
// Where --fetch puts one node's results: DIR/<node>/ (PROTOCOL.md §5, results). The bundle is
// written into a fresh hidden directory beside it and swapped into place only once it verified, so
// a failed or hostile transfer leaves the previous results untouched and nothing half-written.
// Files whose content the previous results already hold (same path, size and hash) are copied
// locally instead of being sent again.

#include "common/blob_store.hpp"
#include "common/bytes.hpp"

#include <memory>
#include <string>

namespace dc::master {

class ResultsDir {
public:
  // Prepares DIR/.NAME.partial-XXXXXX (`name` a safe file name) and creates DIR (mode 0755, its
  // parents too) if missing. Throws std::system_error naming the directory.
  ResultsDir(const std::string& dir, const std::string& name);
  // Removes the partial directory unless commit() ran.
  ~ResultsDir();
  ResultsDir(const ResultsDir&) = delete;
  ResultsDir& operator=(const ResultsDir&) = delete;

  int fd() const { return m_partial_fd; } // the partial directory, for BundleWriter
  // The previous results of this node (DIR/NAME), matched by path, size and hash: a BlobStore that
  // never follows a symlink and never adds anything.
  BlobStore& previous();
  // Replaces DIR/NAME with the new results (an atomic exchange where the kernel has it), then
  // removes the old ones. Throws std::system_error; the old results stay on failure.
  void commit();
  const std::string& final_path() const { return m_final; }

private:
  class Previous;

  std::string m_dir, m_final, m_partial;
  int m_partial_fd = -1;
  bool m_committed = false;
  std::unique_ptr<Previous> m_previous;
};

} // namespace dc::master
