#include "common/dir_listing.hpp"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace dc {

DirListing::DirListing(int dir_fd)
{
  // fdopendir owns the fd it is given: a duplicate, which shares dir_fd's offset, hence the rewind.
  const int copy = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    return;
  }
  m_dir = ::fdopendir(copy);
  if (m_dir == nullptr) {
    const int err = errno;
    ::close(copy);
    errno = err;
    return;
  }
  ::rewinddir(m_dir);
}

DirListing::DirListing(UniqueFd dir)
{
  if (dir.get() < 0) {
    return; // errno still tells why the open failed
  }
  m_dir = ::fdopendir(dir.get());
  if (m_dir != nullptr) {
    dir.release(); // closedir closes it
  }
}

DirListing::~DirListing()
{
  if (m_dir != nullptr) {
    ::closedir(m_dir);
  }
}

std::optional<std::string_view> DirListing::next()
{
  for (;;) {
    errno = 0;
    const dirent* d = m_dir == nullptr ? nullptr : ::readdir(m_dir);
    if (d == nullptr) {
      return std::nullopt;
    }
    const std::string_view name = d->d_name;
    if (name != "." && name != "..") {
      return name;
    }
  }
}

} // namespace dc
