#pragma once
// The master's local hash cache: BLAKE2b-256 of files it sent before, keyed by path and checked
// against (device, inode, size, mtime, ctime), so an unchanged tree is re-sent after a directory
// walk instead of a read of every byte. ctime cannot be set by a program, so a file changed in
// place (even with its mtime restored) is hashed again; a file whose ctime is younger than the
// racy window when it is hashed is not remembered (a write in the same clock tick would leave
// every field equal). It is only a cache: a missing or damaged file is an empty cache.
//
// File: "DCMPHSH1" then records <path_len u16> <path> <dev u64> <ino u64> <size u64>
//       <mtime_s i64> <mtime_ns u32> <ctime_s i64> <ctime_ns u32> <hash 32>, big-endian.

#include "common/file_stamp.hpp"
#include "common/manifest.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dc {

inline constexpr std::size_t k_max_hash_cache_entries = 200'000; // ~30 MB on disk at most

class HashCache {
public:
  // Loads `path` if it exists and is well-formed (else starts empty). Throws nothing.
  explicit HashCache(std::string path, std::chrono::seconds racy_window = std::chrono::seconds(2));

  // The cached hash of `path` if `st` (an lstat of it) matches what was recorded: device, inode,
  // size, mtime and ctime.
  std::optional<Hash> find(std::string_view path, const FileStamp& st) const;
  // Records the hash of `path` read while `st` described it (unless its ctime is racy).
  void remember(std::string_view path, const FileStamp& st, const Hash& hash);
  // Writes the cache (a temporary file renamed into place, parent made 0700 if missing): the
  // entries used or added since loading first, then older ones, at most
  // k_max_hash_cache_entries; nothing when the file already holds exactly that (an unchanged
  // re-send). Returns false (and leaves the old file) on any failure.
  bool save() const noexcept;

  std::size_t size() const { return m_loaded.size() - m_dropped + m_added.size(); }
  std::size_t hits() const { return m_hits; }

  // A read-only mapping of the loaded file (none: data null).
  struct Mapping {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
    Mapping() = default;
    Mapping(Mapping&& other) noexcept { *this = std::move(other); }
    Mapping& operator=(Mapping&& other) noexcept;
    ~Mapping();
  };

private:
  struct Entry {
    std::uint64_t dev = 0, ino = 0, size = 0;
    std::int64_t mtime_s = 0, ctime_s = 0;
    std::uint32_t mtime_ns = 0, ctime_ns = 0;
    Hash hash{};
  };
  // An entry of the file loaded, decoded only when looked up: loading a cache of 100k files
  // makes no allocation per entry.
  struct Loaded {
    std::string_view path; // into m_raw
    std::size_t record;    // offset of the fixed-size part in m_raw
    std::size_t loaded_at; // position in the file
    mutable bool used = false;
    bool dropped = false; // replaced or forgotten by remember()
  };
  static Entry entry_of(const FileStamp& st);
  Entry decode(const Loaded& l) const;
  const Loaded* find_loaded(std::string_view path) const;

  std::string m_path;
  std::chrono::seconds m_racy_window;
  Mapping m_raw;                                     // the file as loaded
  std::vector<Loaded> m_loaded;                      // sorted by path
  std::size_t m_dropped = 0;                         // entries of m_loaded dropped
  std::map<std::string, Entry, std::less<>> m_added; // remembered since loading (all used)
  mutable std::size_t m_hits = 0;
  bool m_read = false;    // the file was read whole: save() may find nothing to write
  bool m_changed = false; // remember() added, replaced or dropped an entry
};

// $XDG_CACHE_HOME/distcomp/hashes, else ~/.cache/distcomp/hashes; "" without either variable.
std::string default_hash_cache_path();

} // namespace dc
