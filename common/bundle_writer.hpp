#pragma once
// Receiving side of a bundle (PROTOCOL.md §5): a sans-I/O state machine fed with the MANIFEST and
// BLOB_DATA slices that writes regular files and directories beneath one directory and nowhere
// else. The worker uses it for --send, the master will use it for --fetch results.
//
//   BundleWriter(root, declared)   BUNDLE_BEGIN: declared counts checked against the limits
//   feed_manifest(slice)*          MANIFEST: one zstd frame, streamed, real output capped
//   end_manifest() -> WANT         MANIFEST_END: decode + validate, create every directory
//   feed_blobs(slice)*             BLOB_DATA: one zstd frame per wanted file, written as decoded
//   finish() -> stats              BUNDLE_END: copy duplicates, apply modes and mtimes
//
// Every non-duplicate file is wanted, empty ones included (an empty file costs one ~10-byte
// frame, and "wanted" then always means "has a frame"), unless a BlobStore (the worker's content
// cache) fills it, verified, before WANT is answered; each blob received and verified is offered
// to that store. A file whose hash an earlier file already has is not wanted: finish() copies it
// from that twin. Any failure throws BundleError; the writer
// never deletes anything, the caller removes the whole job dir (partial state is only ever
// beneath root). Given the tree an earlier bundle left in root (reuse_tree), the writer first
// reconciles it (reusable_tree.hpp): files still in place are neither wanted nor written. After a
// throw the writer is unusable (every later call throws bad_bundle).

#include "common/blob_store.hpp"
#include "common/bytes.hpp"
#include "common/manifest.hpp"
#include "common/reusable_tree.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace dc {

inline constexpr unsigned k_max_window_log = 27; // PROTOCOL.md §5: ZSTD_d_windowLogMax, 128 MiB
// A frame's window may exceed its content size up to this much (our compressor pins the size, so
// its windows never do); bounds the decoder's memory for small hostile files to ~1 MiB.
inline constexpr std::uint64_t k_min_window_allowance = std::uint64_t{1} << 20;

struct BundleBegin { // declared by the sender in BUNDLE_BEGIN; only used to reject early
  std::uint64_t entries = 0, files = 0, bytes = 0, manifest_zbytes = 0;
};

// `max_bytes` capped at the free space of the filesystem holding `dir_fd` minus `reserve`, so a
// bundle (a job's files, a node's results) never fills the disk; unchanged if the filesystem
// cannot tell.
std::uint64_t cap_to_free_space(int dir_fd, std::uint64_t max_bytes, std::uint64_t reserve);

struct BundleStats {
  std::uint64_t files = 0;      // files in the bundle, duplicates included
  std::uint64_t bytes = 0;      // their total size in bytes
  std::uint64_t from_cache = 0; // files the sender need not send: from the BlobStore or kept
  std::uint64_t kept = 0;       // of those, files the reused tree already held in place
};

class BundleWriter {
public:
  // Borrows `root_fd`, an open O_DIRECTORY fd of a fresh, empty job dir. The limits are final:
  // pass max_bytes = min(cap, free disk - 1 GiB). Throws BundleError("bundle_too_large") at once if
  // the declared entries, bytes or manifest size exceed the limits, "bad_bundle" if the
  // declaration is inconsistent (more files than entries). `store` (borrowed, may be null) is
  // asked for every non-duplicate file before WANT and given every blob that verified.
  BundleWriter(int root_fd, const BundleBegin& declared, const BundleLimits& limits,
               BlobStore* store = nullptr);
  ~BundleWriter();
  BundleWriter(const BundleWriter&) = delete;
  BundleWriter& operator=(const BundleWriter&) = delete;

  // Decompresses one MANIFEST slice (ZSTD_decompressStream only, window <= 2^27, no skippable
  // frame). Throws BundleError: bad_bundle for a zstd error, more compressed bytes than declared
  // or bytes after the frame; bundle_too_large when the real output exceeds
  // min(max_manifest_bytes, the largest manifest the declared counts allow).
  void feed_manifest(ByteView zstd_slice);

  // Before end_manifest: root holds `previous` (borrowed until end_manifest returns), the tree an
  // earlier bundle wrote there. end_manifest reconciles it first, moving what the new bundle
  // does not keep into `trash_fd` and leaving the top-level names in `leave_alone` alone.
  void reuse_tree(const ReusableTree& previous, int trash_fd, std::vector<std::string> leave_alone);
  // With reuse_tree, before end_manifest: the reconcile takes its stats from `snapshot`
  // (snapshot_tree of root, taken since root became this bundle's).
  void use_snapshot(TreeSnapshot snapshot);

  // Decodes and validates the manifest (decode_manifest), checks it equals the declaration,
  // reconciles a reused tree, creates every directory (0755 for now, exact at finish), writes the
  // files the store holds and returns the WANT bitmap: ceil(files/8) bytes, bit i of byte i/8 (LSB
  // first) = file i, 1 = send. Throws BundleError (bad_bundle, bad_path, bundle_too_large,
  // no_space) with ref = entry index.
  Bytes end_manifest();

  // Decodes one BLOB_DATA slice: the wanted blobs in manifest order, one zstd frame each, written
  // and hashed as they decode, in bounded memory (a 128 KiB output buffer plus a zstd window of at
  // most min(2^27, max(1 MiB, file size)) bytes). Throws BundleError: bad_bundle for a zstd error,
  // a skippable frame, a frame whose header or output disagrees with the manifest size, a hash
  // mismatch or bytes after the last wanted frame; bundle_too_large when the real output exceeds
  // min(declared bytes, max_bytes); bad_path / no_space from file creation and writes.
  void feed_blobs(ByteView zstd_slice);

  // Ends the bundle: checks every wanted blob arrived whole, copies duplicates from their twins,
  // sets modes to exactly 0644/0755 and applies mtimes (files, then directories deepest first).
  // Returns what was written. Throws BundleError (bad_bundle if blobs are missing, bad_path,
  // no_space).
  BundleStats finish();

  // After finish: the files as written, for a later bundle to reuse; `sealed` from seal_tree.
  ReusableTree written_tree(timespec sealed) const;

  // Tests only: `hook(entry_index)` runs right after each entry is created (to plant symlinks).
  void set_test_hook(std::function<void(std::size_t entry_index)> hook);

private:
  class FrameDecoder;
  struct HashState;
  enum class Phase { manifest, blobs, finished, failed };

  void feed_manifest_unchecked(ByteView slice);
  void feed_blobs_unchecked(ByteView slice);
  void create_directories();
  bool fill_from_store(std::size_t file_index);
  void start_blob();
  void write_blob_output(ByteView chunk);
  void end_blob();
  void copy_duplicate(std::size_t file_index);
  void record(std::size_t file_index, int fd, long long ref);
  void apply_dir_metadata();
  template <typename F>
  auto guarded(F&& step);

  int m_root_fd;
  BundleBegin m_declared;
  BundleLimits m_limits;
  std::uint64_t m_manifest_cap = 0; // bytes of decompressed manifest allowed
  std::uint64_t m_bytes_cap = 0;    // bytes of blob output allowed
  Phase m_phase = Phase::manifest;
  std::unique_ptr<FrameDecoder> m_decoder;
  std::uint64_t m_manifest_zbytes = 0;
  Bytes m_manifest_raw;
  bool m_manifest_frame_done = false;
  Manifest m_manifest;
  std::vector<std::size_t> m_entry_of_file;
  std::vector<std::optional<std::size_t>> m_twin_of_file; // set for files that are not wanted
  std::vector<std::size_t> m_wanted;                      // file indexes, in order
  std::vector<bool> m_from_store;                         // per file: filled by m_store
  BlobStore* m_store = nullptr;
  std::size_t m_next_wanted = 0; // index into m_wanted
  int m_blob_fd = -1;            // file being written
  std::uint64_t m_blob_written = 0;
  std::uint64_t m_blob_zbytes = 0;
  std::uint64_t m_total_written = 0;
  std::unique_ptr<HashState> m_blob_hash;
  std::function<void(std::size_t)> m_hook;
  // Tree reuse: the earlier tree and where its leftovers go; then what was kept.
  const ReusableTree* m_previous = nullptr;
  int m_trash_fd = -1;
  std::vector<std::string> m_leave_alone;
  std::optional<TreeSnapshot> m_snapshot;
  Reconciled m_reconciled;
  std::vector<FileStamp> m_stamps; // per file, once written (or kept)
};

} // namespace dc
