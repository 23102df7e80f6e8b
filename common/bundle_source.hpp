#pragma once
// Sending side of a bundle (PROTOCOL.md §5): scan local files into a manifest, compress each wanted
// blob once per run, cut streams into record-sized slices. The master uses it for --send, the
// worker will use it for --fetch results.

#include "common/bytes.hpp"
#include "common/ignore_rules.hpp"
#include "common/manifest.hpp"

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

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
BundleSource scan_sources(const std::vector<std::string>& args,
                          const std::vector<std::string>& ignore_patterns = {});

// Compresses blobs once per run and hands the same bytes to every node that wants them. Files with
// the same hash share one blob. Thread-compatible (use from one thread). `source` is borrowed and
// must outlive the compressor; every blob handed out stays cached until the compressor dies.
class BlobCompressor {
public:
  // Prepares a compressor at zstd `level` (1..22: every level keeps windows <= 2^27). Throws
  // std::invalid_argument if source.file_paths does not match the manifest's files.
  explicit BlobCompressor(const BundleSource& source, int level = 3);
  BlobCompressor(const BlobCompressor&) = delete;
  BlobCompressor& operator=(const BlobCompressor&) = delete;

  // Returns file `file_index`'s content as one zstd frame (content size pinned in the header,
  // checksum flag off), reading the file in 1 MiB chunks; the result is cached. Throws
  // std::out_of_range for a bad index, std::system_error if the file cannot be read and
  // BundleError("bad_bundle", ref = entry index) if it changed size or hash since scan_sources.
  std::shared_ptr<const Bytes> blob(std::size_t file_index);

private:
  std::shared_ptr<const Bytes> compress(std::size_t file_index);

  struct FreeCCtx {
    void operator()(ZSTD_CCtx_s* cctx) const;
  };

  const BundleSource& m_source;
  std::vector<std::size_t> m_entry_of_file;
  std::map<Hash, std::shared_ptr<const Bytes>> m_cache; // one blob per distinct content
  std::unique_ptr<ZSTD_CCtx_s, FreeCCtx> m_cctx;
  Bytes m_in_buffer;  // file reads, k_hash_chunk bytes, reused
  Bytes m_out_buffer; // zstd output, ZSTD_CStreamOutSize() bytes, reused
};

// Returns `data` cut into consecutive views of at most `max_slice` bytes (none for empty data);
// the views borrow `data`. Throws std::invalid_argument if max_slice is 0.
std::vector<ByteView> split_slices(ByteView data, std::size_t max_slice = k_max_bundle_slice);

} // namespace dc
