#pragma once
// The worker's content cache (PROTOCOL.md §5): a directory of verified blobs named by their
// BLAKE2b-256 hash, so a file that did not change is not sent again.
//
//   DIR/.lock            flock'd for the worker's lifetime: one worker per cache directory
//   DIR/blobs/<hex hash> one verified blob, mode 0444; its mtime is its last use (LRU order)
//   DIR/tmp/             blobs being copied in; renamed into blobs/ only after their hash verified
//
// Files reach a job dir by copy or reflink (FICLONE), never by hard link, so a job that changes
// its files cannot change the cache. Every blob served is checked (size and hash, of the very
// bytes that reach the job dir) before the master is told it need not send it; a corrupted or
// truncated blob is removed and wanted again. The total size stays within a capacity by evicting
// the least recently used blobs. All methods run on the worker's one thread and do their file
// work synchronously, so two sessions never interleave inside the cache; the lock keeps other
// processes out.

#include "common/blob_store.hpp"
#include "common/bytes.hpp"

#include <cstdint>
#include <map>
#include <string>

namespace dc::worker {

class BlobCache final : public BlobStore {
public:
  // Opens or creates `dir` (0700) with blobs/ and tmp/, takes the lock, removes what tmp/ holds
  // and any file in blobs/ that is not a regular file named by a hash, indexes the rest by mtime
  // and evicts down to `capacity` bytes. Throws ConfigError if another process holds the lock or
  // the directory is unusable.
  BlobCache(std::string dir, std::uint64_t capacity);
  ~BlobCache() override;
  BlobCache(const BlobCache&) = delete;
  BlobCache& operator=(const BlobCache&) = delete;

  bool fill(int fd, const Hash& hash, std::uint64_t size, std::string_view path) override;
  void add(int fd, const Hash& hash, std::uint64_t size) noexcept override;

  bool contains(const Hash& hash) const { return m_entries.count(hash) != 0; }
  std::uint64_t bytes() const { return m_bytes; } // sum of the indexed blobs' sizes
  std::size_t count() const { return m_entries.size(); }
  std::uint64_t capacity() const { return m_capacity; }
  const std::string& dir() const { return m_dir; }
  // The path of the blob named `hash` (whether or not it is held), for tests and logs.
  std::string blob_path(const Hash& hash) const;

private:
  struct Entry {
    std::uint64_t size = 0;
    std::uint64_t last_use = 0; // key into m_lru
  };

  void index_existing();
  void touch(const Hash& hash, int fd);
  void forget(const Hash& hash, const char* why);
  void evict_to(std::uint64_t limit); // least recently used first
  void close_fds();

  std::string m_dir;
  std::uint64_t m_capacity;
  int m_lock_fd = -1;
  int m_blobs_fd = -1;
  int m_tmp_fd = -1;
  std::map<Hash, Entry> m_entries;
  std::map<std::uint64_t, Hash> m_lru; // least recently used first
  std::uint64_t m_clock = 0;           // last use counter
  std::uint64_t m_bytes = 0;
  Bytes m_buffer; // copy and hash buffer, reused
};

} // namespace dc::worker
