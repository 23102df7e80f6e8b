#pragma once
// Copying a blob into a fresh file while checking its size and hash: how a BlobStore fills a file
// (the worker's content cache, the master's previous results) without ever serving bad bytes.

#include "common/bytes.hpp"
#include "common/manifest.hpp"

#include <cstdint>

namespace dc {

// A failed write to the destination of a copy: the caller decides whose fault that is.
struct WriteFailure {
  int err;
};

// Copies the `size` bytes of `in` (read from offset 0, its position untouched) into `out` (empty,
// at offset 0): a reflink where the filesystem shares extents (FICLONE), else a copy through
// `buffer`. Hashes the bytes that reached `out` (after a reflink, by reading `out` back: the clone
// is a snapshot, so what was hashed is what the reader will see). Returns true when `out` holds
// exactly `size` bytes with `hash`; false when `in` is shorter, longer, unreadable or different.
// Throws WriteFailure when `out` cannot be written.
bool copy_verified(int in, int out, const Hash& hash, std::uint64_t size, Bytes& buffer);

// What a BlobStore's fill does with a source file it found: copy_verified from `in` into `out`;
// when the bytes do not match, `out` is emptied again (reset_file) and false returned. A failed
// write to `out` throws std::system_error ("cannot write"): the caller's file, not the store, is
// at fault.
bool fill_verified(int in, int out, const Hash& hash, std::uint64_t size, Bytes& buffer);

// Empties `fd` again after a failed fill, so the caller gets the file it gave. Throws
// std::system_error.
void reset_file(int fd);

} // namespace dc
