#include "common/bundle_writer.hpp"

#include "common/open_beneath.hpp"
#include "common/unique_fd.hpp"

#define ZSTD_STATIC_LINKING_ONLY // ZSTD_getFrameHeader: inspect each frame before decoding it
#include <sodium.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

namespace dc {
namespace {

constexpr std::uint64_t k_max_window = std::uint64_t{1} << k_max_window_log;
constexpr std::size_t k_copy_chunk = std::size_t{128} << 10; // duplicate copies, bytes per read
// Slack over ZSTD_compressBound for one frame's compressed bytes: a hostile frame of empty blocks
// must not keep us busy forever without output.
constexpr std::uint64_t k_frame_slack = 4096;
constexpr mode_t k_dir_mode = 0755;
constexpr mode_t k_file_mode = 0644;
constexpr mode_t k_exec_mode = 0755;

[[noreturn]] void bad_bundle(const std::string& msg, long long ref = -1)
{
  throw BundleError("bad_bundle", msg, ref);
}

[[noreturn]] void too_large(const std::string& msg, long long ref = -1)
{
  throw BundleError("bundle_too_large", msg, ref);
}

// Turns a failed file-system call on a bundle entry into the error the peer should see. The
// message names only the job-relative path, hex-escaped.
[[noreturn]] void fs_failure(int err, const char* op, std::string_view path, long long ref)
{
  const std::string msg = std::string(op) + " " + escape_for_log(path) + ": " + std::strerror(err);
  switch (err) {
  case ENOSPC:
  case EDQUOT:
    throw BundleError("no_space", msg, ref);
  case EEXIST:
  case ENOTDIR:
  case ELOOP:
  case EXDEV: // openat2 RESOLVE_BENEATH: the walk would have left root
  case ENOENT:
  case EISDIR:
    throw BundleError("bad_path", msg, ref);
  case EFBIG:
    throw BundleError("bundle_too_large", msg, ref);
  default:
    throw std::system_error(err, std::generic_category(), msg);
  }
}

std::string leaf_of(std::string_view path)
{
  const auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// Opens directory `dir` (relative, validated) by walking its components from root_fd, one
// openat/openat2 with O_NOFOLLOW per component, so a symlink planted anywhere on the way is
// refused. An empty `dir` is root itself: the returned UniqueFd is then empty and `fd_out` =
// root_fd.
UniqueFd walk_to_dir(int root_fd, std::string_view dir, std::string_view entry_path, long long ref,
                     int& fd_out)
{
  UniqueFd current;
  fd_out = root_fd;
  std::size_t start = 0;
  while (start < dir.size()) {
    std::size_t slash = dir.find('/', start);
    if (slash == std::string_view::npos) {
      slash = dir.size();
    }
    const std::string component(dir.substr(start, slash - start));
    const int next =
        open_beneath(fd_out, component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (next < 0) {
      fs_failure(errno, "cannot open the directory of", entry_path, ref);
    }
    current = UniqueFd(next);
    fd_out = next;
    start = slash + 1;
  }
  return current;
}

void write_all(int fd, ByteView data, std::string_view path, long long ref)
{
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      fs_failure(errno, "cannot write", path, ref);
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

void set_metadata(int fd, mode_t mode, const ManifestEntry& e, long long ref)
{
  if (::fchmod(fd, mode) != 0) {
    fs_failure(errno, "cannot chmod", e.path, ref);
  }
  const timespec times[2] = {{0, UTIME_OMIT},
                             {static_cast<time_t>(e.mtime_s), static_cast<long>(e.mtime_ns)}};
  if (::futimens(fd, times) != 0) {
    if (errno == EINVAL || errno == EOVERFLOW) {
      bad_bundle("mtime not representable for " + escape_for_log(e.path), ref);
    }
    fs_failure(errno, "cannot set the mtime of", e.path, ref);
  }
}

std::uint64_t max_window_for(std::uint64_t content)
{
  return std::min(k_max_window, std::max(k_min_window_allowance, content));
}

} // namespace

struct BundleWriter::HashState {
  crypto_generichash_state state;
};

// One zstd frame at a time, streamed: checks the frame header before decoding anything (no
// skippable frame, no dictionary, window and content size within bounds), then decodes into a
// fixed output buffer handed to a sink chunk by chunk.
class BundleWriter::FrameDecoder {
public:
  FrameDecoder() : m_dctx(ZSTD_createDCtx()), m_out(ZSTD_DStreamOutSize())
  {
    if (m_dctx == nullptr) {
      throw std::bad_alloc();
    }
    check(ZSTD_DCtx_setParameter(m_dctx, ZSTD_d_windowLogMax, k_max_window_log));
  }
  ~FrameDecoder() { ZSTD_freeDCtx(m_dctx); }
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // Prepares the next frame. Its content must be exactly `content` bytes if `exact`, else at most.
  void begin(std::uint64_t max_window, std::uint64_t content, bool exact, long long ref)
  {
    check(ZSTD_DCtx_reset(m_dctx, ZSTD_reset_session_only));
    m_header.clear();
    m_header_done = false;
    m_in_frame = true;
    m_max_window = max_window;
    m_content = content;
    m_exact = exact;
    m_ref = ref;
  }

  bool in_frame() const { return m_in_frame; }

  // Consumes `in` until the frame ends (returns true, `in` holds what follows) or `in` is empty.
  template <typename Sink>
  bool feed(ByteView& in, Sink&& sink)
  {
    if (!m_header_done) {
      if (!collect_header(in)) {
        return false;
      }
      ZSTD_inBuffer header{m_header.data(), m_header.size(), 0};
      if (run(header, sink)) {
        bad_bundle("zstd frame ended inside its header", m_ref);
      }
    }
    ZSTD_inBuffer zin{in.data(), in.size(), 0};
    const bool ended = run(zin, sink);
    in = in.subspan(zin.pos);
    if (ended) {
      m_in_frame = false;
    }
    return ended;
  }

private:
  void check(std::size_t rc) const
  {
    if (ZSTD_isError(rc)) {
      bad_bundle(std::string("zstd: ") + ZSTD_getErrorName(rc), m_ref);
    }
  }

  bool collect_header(ByteView& in)
  {
    for (;;) {
      ZSTD_frameHeader h{};
      const std::size_t need = ZSTD_getFrameHeader(&h, m_header.data(), m_header.size());
      if (ZSTD_isError(need)) {
        bad_bundle(std::string("not a zstd frame: ") + ZSTD_getErrorName(need), m_ref);
      }
      if (need == 0) {
        check_header(h);
        m_header_done = true;
        return true;
      }
      if (in.empty()) {
        return false;
      }
      const std::size_t take = std::min(need - m_header.size(), in.size());
      m_header.insert(m_header.end(), in.begin(), in.begin() + static_cast<std::ptrdiff_t>(take));
      in = in.subspan(take);
    }
  }

  void check_header(const ZSTD_frameHeader& h) const
  {
    if (h.frameType == ZSTD_skippableFrame) {
      bad_bundle("skippable zstd frame", m_ref);
    }
    if (h.dictID != 0) {
      bad_bundle("zstd frame needs a dictionary", m_ref);
    }
    if (h.windowSize > k_max_window) {
      bad_bundle("zstd window of " + std::to_string(h.windowSize) + " bytes exceeds 2^27", m_ref);
    }
    if (h.windowSize > m_max_window) {
      bad_bundle("zstd window of " + std::to_string(h.windowSize) + " bytes for " +
                     std::to_string(m_content) + " bytes of content",
                 m_ref);
    }
    if (h.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN) {
      if (m_exact && h.frameContentSize != m_content) {
        bad_bundle("zstd frame declares " + std::to_string(h.frameContentSize) +
                       " bytes, the manifest " + std::to_string(m_content),
                   m_ref);
      }
      if (!m_exact && h.frameContentSize > m_content) {
        too_large("zstd frame declares " + std::to_string(h.frameContentSize) +
                      " bytes, over the limit of " + std::to_string(m_content),
                  m_ref);
      }
    }
  }

  template <typename Sink>
  bool run(ZSTD_inBuffer& zin, Sink& sink)
  {
    for (;;) {
      ZSTD_outBuffer zout{m_out.data(), m_out.size(), 0};
      const std::size_t rc = ZSTD_decompressStream(m_dctx, &zout, &zin);
      check(rc);
      if (zout.pos > 0) {
        sink(ByteView(m_out.data(), zout.pos));
      }
      if (rc == 0) {
        return true; // frame fully decoded and flushed
      }
      if (zin.pos == zin.size && zout.pos < zout.size) {
        return false; // needs more input
      }
    }
  }

  ZSTD_DCtx* m_dctx;
  Bytes m_out;
  Bytes m_header; // at most ZSTD_FRAMEHEADERSIZE_MAX bytes
  bool m_header_done = false;
  bool m_in_frame = false;
  std::uint64_t m_max_window = 0;
  std::uint64_t m_content = 0;
  bool m_exact = false;
  long long m_ref = -1;
};

BundleWriter::BundleWriter(int root_fd, const BundleBegin& declared, const BundleLimits& limits,
                           BlobStore* store)
    : m_root_fd(root_fd), m_declared(declared), m_limits(limits), m_store(store)
{
  if (sodium_init() < 0) {
    throw std::runtime_error("libsodium initialisation failed");
  }
  if (declared.entries > limits.max_entries || declared.entries > UINT32_MAX) {
    too_large("bundle declares " + std::to_string(declared.entries) +
              " entries, over the limit of " + std::to_string(limits.max_entries));
  }
  if (declared.files > declared.entries) {
    bad_bundle("bundle declares more files than entries");
  }
  if (declared.bytes > limits.max_bytes) {
    too_large("bundle declares " + std::to_string(declared.bytes) + " bytes, over the limit of " +
              std::to_string(limits.max_bytes));
  }
  // The largest manifest the declared counts allow (every path 4096 bytes).
  const std::uint64_t largest =
      k_manifest_header_size + declared.entries * (k_manifest_entry_fixed_size + k_max_path_bytes) +
      declared.files * k_manifest_file_extra_size;
  m_manifest_cap = std::min(limits.max_manifest_bytes, largest);
  if (declared.manifest_zbytes > ZSTD_compressBound(m_manifest_cap) + k_frame_slack) {
    too_large("bundle declares a manifest of " + std::to_string(declared.manifest_zbytes) +
              " compressed bytes, over the limit");
  }
  m_bytes_cap = std::min(declared.bytes, limits.max_bytes);
  m_decoder = std::make_unique<FrameDecoder>();
  m_decoder->begin(max_window_for(m_manifest_cap), m_manifest_cap, false, -1);
}

BundleWriter::~BundleWriter()
{
  if (m_blob_fd >= 0) {
    ::close(m_blob_fd);
  }
}

void BundleWriter::reuse_tree(const ReusableTree& previous, int trash_fd,
                              std::vector<std::string> leave_alone)
{
  m_previous = &previous;
  m_trash_fd = trash_fd;
  m_leave_alone = std::move(leave_alone);
}

void BundleWriter::use_snapshot(TreeSnapshot snapshot)
{
  m_snapshot = std::move(snapshot);
}

void BundleWriter::set_test_hook(std::function<void(std::size_t entry_index)> hook)
{
  m_hook = std::move(hook);
}

template <typename F>
auto BundleWriter::guarded(F&& step)
{
  if (m_phase == Phase::failed) {
    bad_bundle("bundle already rejected");
  }
  try {
    return step();
  } catch (...) {
    m_phase = Phase::failed;
    if (m_blob_fd >= 0) {
      ::close(m_blob_fd);
      m_blob_fd = -1;
    }
    throw;
  }
}

void BundleWriter::feed_manifest(ByteView zstd_slice)
{
  guarded([&] { feed_manifest_unchecked(zstd_slice); });
}

void BundleWriter::feed_manifest_unchecked(ByteView slice)
{
  if (m_phase != Phase::manifest) {
    bad_bundle("MANIFEST after MANIFEST_END");
  }
  m_manifest_zbytes += slice.size();
  if (m_manifest_zbytes > m_declared.manifest_zbytes) {
    bad_bundle("manifest longer than the declared " + std::to_string(m_declared.manifest_zbytes) +
               " compressed bytes");
  }
  if (m_manifest_frame_done && !slice.empty()) {
    bad_bundle("bytes after the manifest frame");
  }
  if (slice.empty()) {
    return;
  }
  const bool ended = m_decoder->feed(slice, [&](ByteView chunk) {
    if (chunk.size() > m_manifest_cap - m_manifest_raw.size()) {
      too_large("manifest exceeds " + std::to_string(m_manifest_cap) + " bytes");
    }
    put_bytes(m_manifest_raw, chunk);
  });
  if (ended) {
    m_manifest_frame_done = true;
    if (!slice.empty()) {
      bad_bundle("bytes after the manifest frame");
    }
  }
}

Bytes BundleWriter::end_manifest()
{
  return guarded([&] {
    if (m_phase != Phase::manifest) {
      bad_bundle("MANIFEST_END out of order");
    }
    if (!m_manifest_frame_done) {
      bad_bundle("manifest frame incomplete");
    }
    if (m_manifest_zbytes != m_declared.manifest_zbytes) {
      bad_bundle("manifest shorter than the declared " +
                 std::to_string(m_declared.manifest_zbytes) + " compressed bytes");
    }
    BundleLimits limits = m_limits;
    limits.max_entries = std::min(limits.max_entries, m_declared.entries);
    limits.max_bytes = m_bytes_cap;
    limits.max_manifest_bytes = m_manifest_cap;
    m_manifest = decode_manifest(m_manifest_raw, limits);
    Bytes().swap(m_manifest_raw);
    if (m_manifest.entries.size() != m_declared.entries ||
        m_manifest.file_count() != m_declared.files ||
        m_manifest.total_bytes() != m_declared.bytes) {
      bad_bundle("manifest disagrees with BUNDLE_BEGIN");
    }

    for (std::size_t i = 0; i < m_manifest.entries.size(); ++i) {
      if (m_manifest.entries[i].kind == EntryKind::file) {
        m_entry_of_file.push_back(i);
      }
    }
    m_stamps.assign(m_entry_of_file.size(), FileStamp{});
    if (m_previous != nullptr) {
      m_reconciled = reconcile_tree(m_root_fd, m_manifest, *m_previous, m_trash_fd, m_leave_alone,
                                    m_snapshot ? &*m_snapshot : nullptr);
      m_previous = nullptr;
      m_snapshot.reset();
    } else {
      m_reconciled.kept_files.assign(m_entry_of_file.size(), false);
    }
    // Group the files still to write by hash with a sort (O(n log n) whatever the hashes; no hash
    // table to flood): the first file of each group is wanted, the others are copied from it.
    // Kept files need nothing (on a re-send that is nearly all of them).
    std::vector<std::pair<Hash, std::size_t>> by_hash;
    for (std::size_t f = 0; f < m_entry_of_file.size(); ++f) {
      if (!m_reconciled.kept_files[f]) {
        by_hash.emplace_back(m_manifest.entries[m_entry_of_file[f]].hash, f);
      }
    }
    std::sort(by_hash.begin(), by_hash.end());
    m_twin_of_file.assign(m_entry_of_file.size(), std::nullopt);
    for (std::size_t k = 1; k < by_hash.size(); ++k) {
      if (by_hash[k].first == by_hash[k - 1].first) {
        const std::size_t first =
            m_twin_of_file[by_hash[k - 1].second].value_or(by_hash[k - 1].second);
        m_twin_of_file[by_hash[k].second] = first;
      }
    }
    create_directories();
    Bytes want((m_entry_of_file.size() + 7) / 8, 0);
    m_from_store.assign(m_entry_of_file.size(), false);
    for (std::size_t f = 0; f < m_entry_of_file.size(); ++f) {
      if (m_reconciled.kept_files[f]) {
        m_stamps[f] = m_reconciled.kept_stamps[f];
        continue;
      }
      if (m_twin_of_file[f]) {
        continue;
      }
      if (fill_from_store(f)) {
        m_from_store[f] = true;
        continue;
      }
      m_wanted.push_back(f);
      want[f / 8] = static_cast<std::uint8_t>(want[f / 8] | (1u << (f % 8)));
    }
    m_phase = Phase::blobs;
    return want;
  });
}

void BundleWriter::create_directories()
{
  for (std::size_t i = 0; i < m_manifest.entries.size(); ++i) {
    const ManifestEntry& e = m_manifest.entries[i];
    if (e.kind != EntryKind::dir ||
        std::binary_search(m_reconciled.kept_dirs.begin(), m_reconciled.kept_dirs.end(), e.path)) {
      continue;
    }
    const auto ref = static_cast<long long>(i);
    int parent = -1;
    const UniqueFd owner = walk_to_dir(m_root_fd, bundle_parent(e.path), e.path, ref, parent);
    if (::mkdirat(parent, leaf_of(e.path).c_str(), k_dir_mode) != 0) {
      fs_failure(errno, "cannot create directory", e.path, ref);
    }
    if (m_hook) {
      m_hook(i);
    }
  }
}

bool BundleWriter::fill_from_store(std::size_t file_index)
{
  if (m_store == nullptr) {
    return false;
  }
  const std::size_t entry_index = m_entry_of_file[file_index];
  const ManifestEntry& e = m_manifest.entries[entry_index];
  const auto ref = static_cast<long long>(entry_index);
  int parent = -1;
  const UniqueFd owner = walk_to_dir(m_root_fd, bundle_parent(e.path), e.path, ref, parent);
  const std::string leaf = leaf_of(e.path);
  UniqueFd out(open_beneath(parent, leaf.c_str(),
                            O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, k_file_mode));
  if (out.get() < 0) {
    fs_failure(errno, "cannot create", e.path, ref);
  }
  if (m_hook) {
    m_hook(entry_index);
  }
  bool filled = false;
  try {
    filled = m_store->fill(out.get(), e.hash, e.size, e.path);
  } catch (const std::system_error& err) {
    fs_failure(err.code().value(), "cannot write", e.path, ref);
  }
  if (!filled) {
    out.reset();
    // The blob will arrive: start_blob creates the file again (O_EXCL).
    if (::unlinkat(parent, leaf.c_str(), 0) != 0) {
      fs_failure(errno, "cannot remove", e.path, ref);
    }
    return false;
  }
  set_metadata(out.get(), e.executable ? k_exec_mode : k_file_mode, e, ref);
  record(file_index, out.get(), ref);
  return true;
}

void BundleWriter::feed_blobs(ByteView zstd_slice)
{
  guarded([&] { feed_blobs_unchecked(zstd_slice); });
}

void BundleWriter::feed_blobs_unchecked(ByteView slice)
{
  if (m_phase != Phase::blobs) {
    bad_bundle("BLOB_DATA out of order");
  }
  while (!slice.empty()) {
    if (!m_decoder->in_frame()) {
      if (m_next_wanted == m_wanted.size()) {
        bad_bundle(std::to_string(slice.size()) + " bytes after the last wanted blob");
      }
      start_blob();
    }
    const std::size_t before = slice.size();
    const bool ended = m_decoder->feed(slice, [&](ByteView chunk) { write_blob_output(chunk); });
    m_blob_zbytes += before - slice.size();
    const std::size_t entry_index = m_entry_of_file[m_wanted[m_next_wanted]];
    const std::uint64_t size = m_manifest.entries[entry_index].size;
    if (m_blob_zbytes > ZSTD_compressBound(size) + k_frame_slack) {
      bad_bundle("blob frame far longer than its content needs",
                 static_cast<long long>(entry_index));
    }
    if (ended) {
      end_blob();
    }
  }
}

void BundleWriter::start_blob()
{
  const std::size_t entry_index = m_entry_of_file[m_wanted[m_next_wanted]];
  const ManifestEntry& e = m_manifest.entries[entry_index];
  const auto ref = static_cast<long long>(entry_index);
  m_decoder->begin(max_window_for(e.size), e.size, true, ref);
  int parent = -1;
  const UniqueFd owner = walk_to_dir(m_root_fd, bundle_parent(e.path), e.path, ref, parent);
  m_blob_fd = open_beneath(parent, leaf_of(e.path).c_str(),
                           O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, k_file_mode);
  if (m_blob_fd < 0) {
    fs_failure(errno, "cannot create", e.path, ref);
  }
  if (m_hook) {
    m_hook(entry_index);
  }
  m_blob_hash = std::make_unique<HashState>();
  crypto_generichash_init(&m_blob_hash->state, nullptr, 0, k_hash_size);
  m_blob_written = 0;
  m_blob_zbytes = 0;
}

void BundleWriter::write_blob_output(ByteView chunk)
{
  const std::size_t entry_index = m_entry_of_file[m_wanted[m_next_wanted]];
  const ManifestEntry& e = m_manifest.entries[entry_index];
  const auto ref = static_cast<long long>(entry_index);
  if (chunk.size() > m_bytes_cap - m_total_written) {
    too_large("bundle expands beyond " + std::to_string(m_bytes_cap) + " bytes", ref);
  }
  if (chunk.size() > e.size - m_blob_written) {
    bad_bundle("blob of " + escape_for_log(e.path) + " decodes to more than its " +
                   std::to_string(e.size) + " bytes",
               ref);
  }
  crypto_generichash_update(&m_blob_hash->state, chunk.data(), chunk.size());
  write_all(m_blob_fd, chunk, e.path, ref);
  m_blob_written += chunk.size();
  m_total_written += chunk.size();
}

void BundleWriter::end_blob()
{
  const std::size_t entry_index = m_entry_of_file[m_wanted[m_next_wanted]];
  const ManifestEntry& e = m_manifest.entries[entry_index];
  const auto ref = static_cast<long long>(entry_index);
  if (m_blob_written != e.size) {
    bad_bundle("blob of " + escape_for_log(e.path) + " decodes to " +
                   std::to_string(m_blob_written) + " bytes, not " + std::to_string(e.size),
               ref);
  }
  Hash hash{};
  crypto_generichash_final(&m_blob_hash->state, hash.data(), hash.size());
  if (hash != e.hash) {
    bad_bundle("hash mismatch for " + escape_for_log(e.path), ref);
  }
  set_metadata(m_blob_fd, e.executable ? k_exec_mode : k_file_mode, e, ref);
  record(m_wanted[m_next_wanted], m_blob_fd, ref);
  if (m_store != nullptr) {
    m_store->add(m_blob_fd, e.hash, e.size); // copies and checks again; never throws
  }
  ::close(m_blob_fd);
  m_blob_fd = -1;
  ++m_next_wanted;
}

BundleStats BundleWriter::finish()
{
  return guarded([&] {
    if (m_phase != Phase::blobs) {
      bad_bundle("BUNDLE_END out of order");
    }
    if (m_decoder->in_frame() || m_next_wanted != m_wanted.size()) {
      const std::size_t missing = m_entry_of_file[m_wanted[m_next_wanted]];
      bad_bundle("BUNDLE_END before the blob of " +
                     escape_for_log(m_manifest.entries[missing].path) + " was complete",
                 static_cast<long long>(missing));
    }
    const std::vector<bool>& kept = m_reconciled.kept_files;
    for (std::size_t f = 0; f < m_twin_of_file.size(); ++f) {
      if (m_twin_of_file[f]) { // never a kept file
        copy_duplicate(f);
      }
    }
    apply_dir_metadata();
    m_phase = Phase::finished;
    BundleStats stats{m_entry_of_file.size(), m_manifest.total_bytes(), 0, 0};
    for (std::size_t f = 0; f < m_entry_of_file.size(); ++f) {
      const std::size_t first = m_twin_of_file[f].value_or(f);
      stats.kept += kept[f] ? 1 : 0;
      stats.from_cache += kept[f] || m_from_store[first] ? 1 : 0;
    }
    return stats;
  });
}

void BundleWriter::copy_duplicate(std::size_t file_index)
{
  const std::size_t entry_index = m_entry_of_file[file_index];
  const ManifestEntry& e = m_manifest.entries[entry_index];
  const ManifestEntry& twin = m_manifest.entries[m_entry_of_file[*m_twin_of_file[file_index]]];
  const auto ref = static_cast<long long>(entry_index);

  int twin_parent = -1;
  const UniqueFd twin_owner =
      walk_to_dir(m_root_fd, bundle_parent(twin.path), twin.path, ref, twin_parent);
  const UniqueFd in(
      open_beneath(twin_parent, leaf_of(twin.path).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0));
  if (in.get() < 0) {
    fs_failure(errno, "cannot open", twin.path, ref);
  }
  int parent = -1;
  const UniqueFd owner = walk_to_dir(m_root_fd, bundle_parent(e.path), e.path, ref, parent);
  const UniqueFd out(open_beneath(parent, leaf_of(e.path).c_str(),
                                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                  k_file_mode));
  if (out.get() < 0) {
    fs_failure(errno, "cannot create", e.path, ref);
  }
  if (m_hook) {
    m_hook(entry_index);
  }
  std::uint64_t copied = 0;
  bool in_kernel = true; // copy_file_range: no round trip through us, reflinks where possible
  Bytes buffer;
  while (copied < e.size) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(
        e.size - copied, in_kernel ? std::uint64_t{1} << 30 : k_copy_chunk));
    ssize_t n;
    if (in_kernel) {
      n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, want, 0);
      if (n < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP)) {
        in_kernel = false;
        continue;
      }
    } else {
      buffer.resize(k_copy_chunk);
      n = ::read(in.get(), buffer.data(), want);
      if (n > 0) {
        write_all(out.get(), ByteView(buffer.data(), static_cast<std::size_t>(n)), e.path, ref);
      }
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      fs_failure(errno, "cannot copy to", e.path, ref);
    }
    if (n == 0) {
      bad_bundle("twin of " + escape_for_log(e.path) + " is shorter than its size", ref);
    }
    copied += static_cast<std::uint64_t>(n);
  }
  set_metadata(out.get(), e.executable ? k_exec_mode : k_file_mode, e, ref);
  record(file_index, out.get(), ref);
}

void BundleWriter::record(std::size_t file_index, int fd, long long ref)
{
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    fs_failure(errno, "cannot stat", m_manifest.entries[m_entry_of_file[file_index]].path, ref);
  }
  m_stamps[file_index] = FileStamp::of(st);
}

ReusableTree BundleWriter::written_tree(timespec sealed) const
{
  ReusableTree tree;
  tree.sealed = sealed;
  if (m_phase != Phase::finished) {
    return tree; // nothing reusable from a bundle that did not complete
  }
  const auto& kept_files = m_reconciled.kept_files;     // empty unless a tree was reused
  const auto& kept_dirs = m_reconciled.kept_dirs;       // sorted
  const auto& settled_dirs = m_reconciled.settled_dirs; // sorted
  tree.files.reserve(m_entry_of_file.size());
  tree.dirs.reserve(m_manifest.entries.size() - m_entry_of_file.size());
  std::size_t f = 0;
  for (const ManifestEntry& e : m_manifest.entries) { // manifest order = path order
    if (e.kind == EntryKind::file) {
      const bool kept = f < kept_files.size() && kept_files[f];
      tree.files.push_back(WrittenFile{e.path, e.hash, m_stamps[f], kept});
      ++f;
    } else {
      const bool kept = std::binary_search(kept_dirs.begin(), kept_dirs.end(), e.path);
      const bool settled = std::binary_search(settled_dirs.begin(), settled_dirs.end(), e.path);
      tree.dirs.push_back(WrittenDir{e.path, kept, settled});
    }
  }
  return tree;
}

void BundleWriter::apply_dir_metadata()
{
  // Reverse bytewise order visits every child before its parent (a parent is a prefix of its
  // children, so it sorts first): a parent's mtime is set after its last change.
  for (std::size_t i = m_manifest.entries.size(); i-- > 0;) {
    const ManifestEntry& e = m_manifest.entries[i];
    if (e.kind != EntryKind::dir || std::binary_search(m_reconciled.settled_dirs.begin(),
                                                       m_reconciled.settled_dirs.end(), e.path)) {
      continue;
    }
    const auto ref = static_cast<long long>(i);
    int dir = -1;
    const UniqueFd owner = walk_to_dir(m_root_fd, e.path, e.path, ref, dir);
    set_metadata(dir, k_dir_mode, e, ref);
  }
}

std::uint64_t cap_to_free_space(int dir_fd, std::uint64_t max_bytes, std::uint64_t reserve)
{
  struct statvfs fs {};
  if (::fstatvfs(dir_fd, &fs) != 0) {
    return max_bytes;
  }
  const std::uint64_t free_bytes = std::uint64_t(fs.f_bavail) * fs.f_frsize;
  return std::min(max_bytes, free_bytes > reserve ? free_bytes - reserve : 0);
}

} // namespace dc
