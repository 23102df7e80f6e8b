#pragma once
// What an lstat says about a file that tells whether it changed: identity (device, inode), size,
// mode, link count and both timestamps. ctime cannot be set by a program, so a file changed in
// place, even with its mtime restored, gets a new stamp. Used by the master's hash cache and scan
// and by the worker's job dir reuse.

#include <cstdint>
#include <ctime>
#include <sys/stat.h>

namespace dc {

struct FileStamp {
  std::uint64_t dev = 0, ino = 0, size = 0, nlink = 0;
  std::uint32_t mode = 0; // st_mode, type bits included
  timespec mtime{}, ctime{};

  static FileStamp of(const struct stat& st);
  bool operator==(const FileStamp& other) const;
};

// Orders timestamps; true if `a` is strictly earlier than `b`.
bool earlier(const timespec& a, const timespec& b);

} // namespace dc
