#pragma once
// BlobStore: where a BundleWriter may find blobs it already holds, and where it hands the blobs it
// received and verified (the worker's content cache, PROTOCOL.md §5). Optional: without one, every
// non-duplicate file is wanted.

#include "common/manifest.hpp"

#include <cstdint>
#include <string_view>

namespace dc {

class BlobStore {
public:
  virtual ~BlobStore() = default;

  // Writes the blob with `hash` and `size` into `fd` (a fresh, empty regular file opened for
  // reading and writing) if the store holds it, checking size and hash of exactly the bytes that
  // reach `fd` (a corrupted copy is dropped from the store, never served). Returns true when `fd`
  // holds the verified content; false when the store does not have it (`fd` is then empty again).
  // `path` is the file's bundle path (a store of earlier results looks there first; a content
  // cache ignores it). Throws std::system_error only for a failure to write `fd` (ENOSPC, EIO).
  virtual bool fill(int fd, const Hash& hash, std::uint64_t size, std::string_view path) = 0;

  // Offers a blob that was received and verified: `fd` is readable from offset 0 and holds
  // `size` bytes with `hash` (the store checks again as it copies, so a file changed since
  // cannot poison it). Never throws: a store that cannot keep the blob just does not.
  virtual void add(int fd, const Hash& hash, std::uint64_t size) noexcept = 0;
};

} // namespace dc
