#pragma once
// Opening a path beneath a directory without following any symlink (bundles on the worker, results
// on the master).

#include <sys/types.h>

namespace dc {

// Opens `name` beneath `dirfd` without following any symlink: openat2 with RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS where the kernel has it (Linux >= 5.6), plain openat otherwise. `flags` must
// include O_NOFOLLOW so the fallback refuses a symlink too (only in the last component: pass one
// component at a time where the fallback must not follow one on the way). Returns -1 with errno
// set.
int open_beneath(int dirfd, const char* name, int flags, mode_t mode = 0);

} // namespace dc
