#pragma once
// Reading the names in an open directory, "." and ".." left out, without moving or closing the
// caller's fd: the listing reads a duplicate of its own, rewound to the start.

#include <dirent.h>
#include <optional>
#include <string_view>

namespace dc {

class DirListing {
public:
  // Lists `dir_fd`; ok() is false, with errno set, if it cannot.
  explicit DirListing(int dir_fd);
  ~DirListing();
  DirListing(const DirListing&) = delete;
  DirListing& operator=(const DirListing&) = delete;

  bool ok() const { return m_dir != nullptr; }
  // The next name (valid until the next call), or nullopt at the end (errno 0) or on a read
  // error (errno set). Names may be renamed away meanwhile: readdir may then return or skip them,
  // never the others twice or not at all.
  std::optional<std::string_view> next();

private:
  DIR* m_dir = nullptr;
};

} // namespace dc
