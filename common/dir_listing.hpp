#pragma once
// Reading the names in an open directory, "." and ".." left out: either of a directory the
// listing owns (no extra system call), or without moving or closing the caller's fd (the listing
// reads a duplicate of its own, rewound to the start).

#include "common/unique_fd.hpp"

#include <dirent.h>
#include <optional>
#include <string_view>

namespace dc {

class DirListing {
public:
  // Lists `dir_fd`; ok() is false, with errno set, if it cannot.
  explicit DirListing(int dir_fd);
  // Lists `dir` (just opened, so at its start) and owns it; ok() is false, errno kept or set,
  // if it is not open or cannot be listed.
  explicit DirListing(UniqueFd dir);
  ~DirListing();
  DirListing(const DirListing&) = delete;
  DirListing& operator=(const DirListing&) = delete;

  bool ok() const { return m_dir != nullptr; }
  // The directory's fd, for *at() calls on its entries (-1 unless ok()).
  int fd() const { return m_dir != nullptr ? ::dirfd(m_dir) : -1; }
  // The next name (valid until the next call), or nullopt at the end (errno 0) or on a read
  // error (errno set). Names may be renamed away meanwhile: readdir may then return or skip them,
  // never the others twice or not at all.
  std::optional<std::string_view> next();

private:
  DIR* m_dir = nullptr;
};

} // namespace dc
