#pragma once
// Sending side of a bundle (PROTOCOL.md §5): scan local files into a manifest, compress each wanted
// blob once per run, cut streams into record-sized slices. The master uses it for --send, the
// worker will use it for --fetch results.

#include "common/bytes.hpp"
#include "common/hash_cache.hpp"
#include "common/ignore_rules.hpp"
#include "common/manifest.hpp"

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

struct stat;

struct ZSTD_CCtx_s;

namespace dc {

inline constexpr std::size_t k_max_bundle_slice = 65518;          // record body limit (wire.hpp)
inline constexpr std::size_t k_hash_chunk = std::size_t{1} << 20; // read size while hashing
inline constexpr std::size_t k_max_listed_offenders = 20; // keeps the refusal one readable line

struct BundleSource {
  Manifest manifest;
  std::vector<std::string> file_paths; // local path of each *file* entry, in manifest file order
  Bytes compressed_manifest;           // one zstd frame of encode_manifest(manifest)
  std::size_t ignored = 0;             // entries left out by ignore rules (not walked into)
  std::size_t files_read = 0;          // files hashed by reading them (the rest: hash cache)
};

// Scans --send arguments with rsync's convention: "src/" (or "src/.", ".", "/") sends the contents
// of src at the job root, "src" sends the directory itself, a file is sent under its base name
// ("../x" is fine: only the base name is used). Directories are walked recursively; a file is
// executable if any x bit is set; mtimes come from lstat; contents are hashed (BLAKE2b-256, 1 MiB
// reads). No arguments give an empty manifest. Inside each directory named, entries matched by
// `ignore_patterns` (--ignore) or a .distcompignore file are left out (ignore_rules.hpp); what is
// named on the command line is always sent. Throws ConfigError listing up to 20 offenders in one
// message ("cannot send: a/link (symbolic link), b/fifo (fifo)") for symlinks, devices, FIFOs,
// sockets, names invalid under validate_bundle_path, paths sent twice, missing or unreadable
// arguments ("cannot send: x: No such file or directory"), and for an empty ignore pattern.
//
// With `hashes`, a file whose path and lstat (device, inode, size, mtime, ctime) match an entry
// is not read (hash_cache.hpp), and the files read are remembered there.
BundleSource scan_sources(const std::vector<std::string>& args,
                          const std::vector<std::string>& ignore_patterns = {},
                          HashCache* hashes = nullptr);
// The same, asking for the hash cache only once the walk is done (null: none), so that loading
// it can overlap the walk.
BundleSource scan_sources(const std::vector<std::string>& args,
                          const std::vector<std::string>& ignore_patterns,
                          const std::function<HashCache*()>& hashes_after_walk);

// What a file of mode `mode` is, for messages ("symbolic link", "fifo", "socket", "character
// device", "block device", "special file"), or nullptr for a regular file or a directory: the only
// kinds a bundle carries.
const char* special_kind(mode_t mode);

// Hashes the regular file at `path` (BLAKE2b-256, k_hash_chunk reads, never following a symlink
// in the last component). Returns false with errno set if it cannot be opened or read; `after` is
// its fstat once read (to tell whether it changed while it was read).
bool hash_regular_file(const std::string& path, Bytes& buffer, std::uint64_t& size, Hash& hash,
                       struct stat& after);

// The manifest as BUNDLE_BEGIN's one zstd frame (what BundleSource::compressed_manifest holds).
Bytes compress_manifest(const Manifest& manifest);

// Compressed blobs kept in memory, in bytes, before the rest spools to a temporary file: enough
// for a typical source tree, a bound for trees of many GiB.
inline constexpr std::uint64_t k_default_blob_memory = std::uint64_t{256} << 20;
// A single compressed blob above this size goes to the spool at once instead of memory.
inline constexpr std::uint64_t k_max_memory_blob = std::uint64_t{16} << 20;

// One compressed blob: in memory, or `size` bytes at `offset` of the compressor's spool file.
struct BlobRef {
  std::shared_ptr<const Bytes> memory; // null when spooled
  std::uint64_t offset = 0;
  std::uint64_t size = 0; // compressed bytes
};

// Compresses blobs once per run and hands the same bytes to every node that wants them. Files with
// the same hash share one blob. Thread-compatible (use from one thread). `source` is borrowed and
// must outlive the compressor; every blob handed out stays available until the compressor dies.
// Blobs are kept in memory up to a budget; the rest go to an unlinked temporary file (in $TMPDIR,
// else /tmp), so memory stays bounded whatever the size of the bundle.
class BlobCompressor {
public:
  // Prepares a compressor at zstd `level` (1..22: every level keeps windows <= 2^27) that keeps
  // at most `memory_budget` bytes of compressed blobs in memory. Throws std::invalid_argument if
  // source.file_paths does not match the manifest's files.
  explicit BlobCompressor(const BundleSource& source, int level = 3,
                          std::uint64_t memory_budget = k_default_blob_memory);
  BlobCompressor(const BlobCompressor&) = delete;
  BlobCompressor& operator=(const BlobCompressor&) = delete;

  // Returns file `file_index`'s content as one zstd frame (content size pinned in the header,
  // checksum flag off), reading the file in 1 MiB chunks and compressing it the first time only.
  // Throws std::out_of_range for a bad index, std::system_error if the file cannot be read,
  // BundleError("bad_bundle", ref = entry index) if it changed size or hash since scan_sources
  // and BundleError("io_error") if the spool file cannot be written.
  BlobRef frame(std::size_t file_index);
  // Returns bytes [at, at + len) of `ref` (len clipped to its end): a view of the memory blob, or
  // of `scratch` into which a spooled slice was read. Throws BundleError("io_error").
  ByteView read(const BlobRef& ref, std::uint64_t at, std::size_t len, Bytes& scratch);
  // The whole frame in memory (a spooled one is read back): for tests and small blobs.
  std::shared_ptr<const Bytes> blob(std::size_t file_index);

  std::uint64_t memory_bytes() const { return m_memory_bytes; } // compressed, held in memory
  std::uint64_t spooled_bytes() const { return m_spool_size; }  // compressed, in the spool

private:
  BlobRef compress(std::size_t file_index);
  void spool_write(ByteView data, std::uint64_t at);

  struct FreeCCtx {
    void operator()(ZSTD_CCtx_s* cctx) const;
  };

  const BundleSource& m_source;
  std::vector<std::size_t> m_entry_of_file;
  std::map<Hash, BlobRef> m_cache; // one blob per distinct content
  std::unique_ptr<ZSTD_CCtx_s, FreeCCtx> m_cctx;
  std::uint64_t m_memory_budget;
  std::uint64_t m_memory_bytes = 0;
  int m_spool_fd = -1; // created on first use
  std::uint64_t m_spool_size = 0;
  Bytes m_in_buffer;  // file reads, k_hash_chunk bytes, reused
  Bytes m_out_buffer; // zstd output, ZSTD_CStreamOutSize() bytes, reused

public:
  ~BlobCompressor();
};

// Returns `data` cut into consecutive views of at most `max_slice` bytes (none for empty data);
// the views borrow `data`. Throws std::invalid_argument if max_slice is 0.
std::vector<ByteView> split_slices(ByteView data, std::size_t max_slice = k_max_bundle_slice);

} // namespace dc
