#pragma once
// Bundle manifest codec (content: PROTOCOL.md §5). Pure: no I/O. Integers big-endian.
// <manifest> ::= "DCMPMANI" <entries: u32> <files: u32> <entry>*
// <entry>    ::= <kind: u8 = 1 dir | 2 file> <mode: u8 = 0 plain | 1 executable; 0 for dirs>
//                <mtime_s: i64> <mtime_ns: u32 < 10^9> <path_len: u16> <path>
//                [file only: <size: u64> <hash: 32 bytes BLAKE2b-256 of the content>]
// Order: paths strictly increasing bytewise; every parent directory appears as its own dir entry
// (which, the parent being a prefix, always sorts before its children).

#include "common/bytes.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dc {

inline constexpr std::string_view k_manifest_magic = "DCMPMANI";
inline constexpr std::size_t k_manifest_header_size = 16;         // magic + entries + files
inline constexpr std::size_t k_manifest_entry_fixed_size = 16;    // kind, mode, mtimes, path_len
inline constexpr std::size_t k_manifest_file_extra_size = 8 + 32; // size + hash
inline constexpr std::size_t k_max_path_bytes = 4096;     // PATH_MAX: the worker must open it
inline constexpr std::size_t k_max_component_bytes = 255; // NAME_MAX of every Linux filesystem
inline constexpr std::size_t k_max_path_depth = 64;       // bounds the per-entry directory walk
inline constexpr std::size_t k_hash_size = 32;            // crypto_generichash output, bytes

enum class EntryKind : std::uint8_t { dir = 1, file = 2 };

using Hash = std::array<std::uint8_t, k_hash_size>; // BLAKE2b-256 = crypto_generichash(32)

struct ManifestEntry {
  EntryKind kind = EntryKind::file;
  bool executable = false; // files only
  std::int64_t mtime_s = 0;
  std::uint32_t mtime_ns = 0;
  std::string path;       // relative, '/'-separated, valid under validate_bundle_path
  std::uint64_t size = 0; // files only, bytes
  Hash hash{};            // files only
};

struct Manifest {
  std::vector<ManifestEntry> entries;
  // Returns the number of file entries.
  std::uint32_t file_count() const;
  // Returns the sum of the file sizes in bytes (the expanded size of the bundle).
  std::uint64_t total_bytes() const;
};

// Limits on a received bundle (PROTOCOL.md §6 defaults; each one a worker option).
struct BundleLimits {
  // Expanded bytes: a job dir must not fill the disk. The worker passes
  // min(this, free disk - 1 GiB) so the host keeps working.
  std::uint64_t max_bytes = std::uint64_t{64} << 30;
  // Entries (dirs + files): bounds inodes, directory walks and the decoded manifest in memory.
  std::uint64_t max_entries = 1'000'000;
  // Decompressed manifest bytes: the manifest is held whole in memory while it is decoded.
  std::uint64_t max_manifest_bytes = std::uint64_t{64} << 20;
};

// Returns why `path` breaks a path rule of PROTOCOL.md §5 ("backslash", "invalid UTF-8", ...), or
// nullptr if it is a valid bundle path. Throws nothing.
const char* bundle_path_problem(std::string_view path);

// The directory holding bundle path `path` ("" for a top-level entry).
std::string_view bundle_parent(std::string_view path);

// Checks one bundle path against PROTOCOL.md §5 (valid UTF-8; no NUL, control char or backslash;
// no empty, "." or ".." component; no leading '/'; component <= 255 B, path <= 4096 B, depth <=
// 64). Throws BundleError("bad_path", "bad path (<reason>): <hex-escaped name>", ref).
void validate_bundle_path(std::string_view path, long long ref);

// Returns the exact bytes of PROTOCOL.md §5. Throws nothing; asserts that the entries are sorted,
// unique and have paths of at most k_max_path_bytes (the caller built them with scan_sources).
Bytes encode_manifest(const Manifest& m);

// Decodes `raw` and validates all of it: magic, kinds, mode byte (0/1, dirs 0), mtime_ns < 10^9,
// paths, strict bytewise order, parents present as dirs, counts, no trailing bytes and the limits.
// Throws BundleError with ref = entry index (-1 for the header or the end):
//   bad_bundle       truncated, bad magic or kind or mode, unsorted, missing parent, count
//                    mismatch, trailing bytes;
//   bad_path         a path rule, a duplicate path, a file used as a parent directory;
//   bundle_too_large entries, manifest bytes or expanded bytes over `limits`.
Manifest decode_manifest(ByteView raw, const BundleLimits& limits);

} // namespace dc
