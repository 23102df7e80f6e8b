#include "common/open_beneath.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace dc {
namespace {

std::atomic<bool> g_openat2_missing{false}; // set once the kernel answers ENOSYS

} // namespace

int open_beneath(int dirfd, const char* name, int flags, mode_t mode)
{
  if (!g_openat2_missing.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags);
    how.mode = (flags & O_CREAT) != 0 ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd;
    do {
      fd = ::syscall(SYS_openat2, dirfd, name, &how, sizeof how);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0 || errno != ENOSYS) {
      return static_cast<int>(fd);
    }
    g_openat2_missing.store(true, std::memory_order_relaxed);
  }
  int fd;
  do {
    fd = ::openat(dirfd, name, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

} // namespace dc
