#include "common/bundle_source.hpp"

#include "common/dir_listing.hpp"
#include "common/file_stamp.hpp"
#include "common/ignore_rules.hpp"
#include "common/open_beneath.hpp"
#include "common/secure_buffer.hpp"
#include "common/unique_fd.hpp"
#include "common/wire.hpp"

#include <sodium.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace dc {

static_assert(k_max_bundle_slice == k_max_body_size, "a slice must fit one record body");

namespace {

constexpr off_t k_max_ignore_file = 1 << 20; // bytes of one .distcompignore: a list, not data

// Opens a regular file for reading without following a symlink or blocking on a FIFO that
// replaced it since the scan. Returns -1 with errno set (ELOOP/EINVAL for a non-regular file).
int open_regular(const std::string& path)
{
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return -1;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return -1;
  }
  return fd;
}

// Reads up to `size` bytes, retrying on EINTR. Returns the count (0 at EOF), -1 with errno.
ssize_t read_some(int fd, std::uint8_t* buffer, std::size_t size)
{
  for (;;) {
    const ssize_t n = ::read(fd, buffer, size);
    if (n >= 0 || errno != EINTR) {
      return n;
    }
  }
}

struct Found {
  std::string bundle_path;
  std::string local_path;
  FileStamp st;
};

// What one thread of a walk found and refused; the parts are put together at the end.
struct WalkPart {
  std::deque<Found> found; // grows without moving what it holds (a tree has 100k+ entries)
  std::vector<std::string> offences;
  std::size_t offence_count = 0;
  std::size_t ignored = 0;

  void offend(std::string what)
  {
    // Kept whole (bounded) so that the listed ones can be the first in order, whichever thread
    // met them.
    if (offences.size() < 64 * k_max_listed_offenders) {
      offences.push_back(std::move(what));
    }
    ++offence_count;
  }
};

// One directory to walk: opened beneath the directory named on the command line, never
// through a symlink.
struct DirTask {
  std::string local;  // its path as the user would write it (messages, ignore files)
  std::string prefix; // its bundle path (below the named directory: relative(prefix))
  std::shared_ptr<const IgnoreRules> rules; // its parents' rules, its own file's not yet read
};

// Walks the arguments, collecting entries and every reason to refuse them, leaving out what the
// ignore rules name. A named directory's subdirectories are walked by up to k_walk_threads
// threads at once: a tree's scan is mostly one lstat per entry, and the master's other work
// (connecting to the nodes) leaves the other cores idle meanwhile.
class Scanner {
public:
  explicit Scanner(const std::vector<std::string>& ignore_patterns) : m_parts(1)
  {
    auto rules = std::make_shared<IgnoreRules>();
    for (const auto& p : ignore_patterns) {
      rules->add_option_pattern(p);
    }
    m_rules = std::move(rules);
  }

  std::size_t ignored() const
  {
    std::size_t n = 0;
    for (const WalkPart& part : m_parts) {
      n += part.ignored;
    }
    return n;
  }

  void add_argument(const std::string& arg)
  {
    WalkPart& out = m_parts.front();
    struct stat st {};
    if (::lstat(arg.c_str(), &st) != 0) {
      out.offend(escape_for_log(arg) + ": " + std::strerror(errno));
      return;
    }
    std::string base = arg;
    while (!base.empty() && base.back() == '/') {
      base.pop_back();
    }
    const bool trailing_slash = base.size() != arg.size();
    const auto slash = base.rfind('/');
    const std::string name = slash == std::string::npos ? base : base.substr(slash + 1);
    const bool contents = trailing_slash || name.empty() || name == "." || name == "..";
    // Ignore rules see paths relative to the directory that was named.
    if (contents && S_ISDIR(st.st_mode)) {
      m_root.clear();
      const std::string dir = base.empty() ? "/" : base;
      walk(DirTask{dir, "", m_rules}, true); // "link/" names the directory a link points to
    } else {
      m_root = name;
      std::vector<DirTask> tree;
      add(arg, name, st, m_rules, out, tree);
      if (!tree.empty()) {
        walk(std::move(tree.front()), false);
      }
    }
  }

  // Every entry found, in no particular order; they stay where they are.
  template <typename Visit>
  void for_each_found(Visit&& visit)
  {
    for (WalkPart& part : m_parts) {
      for (Found& f : part.found) {
        visit(f);
      }
    }
  }

  void offend(std::string what) { m_parts.front().offend(std::move(what)); }

  void throw_if_offended() const
  {
    std::size_t count = 0;
    std::vector<const std::string*> listed;
    for (const WalkPart& part : m_parts) {
      count += part.offence_count;
      for (const std::string& o : part.offences) {
        listed.push_back(&o);
      }
    }
    if (count == 0) {
      return;
    }
    std::sort(listed.begin(), listed.end(),
              [](const std::string* a, const std::string* b) { return *a < *b; });
    listed.resize(std::min(listed.size(), k_max_listed_offenders));
    std::string msg = "cannot send: ";
    for (std::size_t i = 0; i < listed.size(); ++i) {
      msg += (i == 0 ? "" : ", ") + *listed[i];
    }
    if (count > listed.size()) {
      msg += ", and " + std::to_string(count - listed.size()) + " more";
    }
    throw ConfigError(msg);
  }

private:
  static constexpr unsigned k_walk_threads = 4;

  // Checks one entry and records it; a directory becomes a task in `subdirs`.
  void add(const std::string& local, const std::string& bundle_path, const struct stat& st,
           const std::shared_ptr<const IgnoreRules>& rules, WalkPart& out,
           std::vector<DirTask>& subdirs) const
  {
    if (const char* kind = special_kind(st.st_mode)) {
      out.offend(escape_for_log(local) + " (" + kind + ")");
      return;
    }
    if (const char* problem = bundle_path_problem(bundle_path)) {
      out.offend(escape_for_log(local) + " (name not sendable: " + problem + ")");
      return; // its children would all be refused for the same reason
    }
    out.found.push_back({bundle_path, local, FileStamp::of(st)});
    if (S_ISDIR(st.st_mode)) {
      subdirs.push_back(DirTask{local, bundle_path, rules});
    }
  }

  // `bundle_path` relative to the directory named on the command line.
  std::string relative(const std::string& bundle_path) const
  {
    if (m_root.empty()) {
      return bundle_path;
    }
    return bundle_path.size() > m_root.size() ? bundle_path.substr(m_root.size() + 1) : "";
  }

  // Reads `dir_fd`'s .distcompignore into `rules` for that directory.
  void read_ignore_file(int dir_fd, const std::string& local_dir, const std::string& rel_dir,
                        IgnoreRules& rules, WalkPart& out) const
  {
    const std::string path =
        (local_dir == "/" ? "" : local_dir) + "/" + std::string(k_ignore_file_name);
    struct stat st {};
    const std::string name(k_ignore_file_name);
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
      return; // gone since the listing (a symlink of that name is refused like any other)
    }
    if (st.st_size > k_max_ignore_file) {
      out.offend(escape_for_log(path) + " (larger than 1 MiB)");
      return;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      out.offend(escape_for_log(path) + ": " + std::strerror(errno));
      return;
    }
    std::string line;
    while (std::getline(in, line)) {
      rules.add_file_line(line, rel_dir);
    }
  }

  // Walks the tree of the directory `root` names (following a symlink only if `follow`), its
  // subdirectories taken by whichever thread is free.
  void walk(DirTask root, bool follow)
  {
    const UniqueFd root_fd(
        ::open(root.local.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW)));
    if (root_fd.get() < 0) {
      m_parts.front().offend(escape_for_log(root.local) + ": " + std::strerror(errno));
      return;
    }
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<DirTask> queue; // taken from the back: depth first, a bounded queue
    queue.push_back(std::move(root));
    std::size_t busy = 0;
    std::exception_ptr failure;
    const auto work = [&](WalkPart& out) {
      std::unique_lock lock(mutex);
      for (;;) {
        changed.wait(lock, [&] { return !queue.empty() || busy == 0; });
        if (queue.empty() || failure) {
          return;
        }
        DirTask task = std::move(queue.back());
        queue.pop_back();
        ++busy;
        lock.unlock();
        std::vector<DirTask> subdirs;
        try {
          walk_one(root_fd.get(), task, out, subdirs);
        } catch (...) {
          subdirs.clear();
          lock.lock();
          failure = failure ? failure : std::current_exception();
          queue.clear();
          --busy;
          changed.notify_all();
          return;
        }
        lock.lock();
        --busy;
        for (DirTask& sub : subdirs) {
          queue.push_back(std::move(sub));
        }
        if (!subdirs.empty() || busy == 0) {
          changed.notify_all();
        }
      }
    };
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const unsigned helpers = std::min(cores, k_walk_threads) - 1;
    while (m_parts.size() < 1 + helpers) {
      m_parts.emplace_back();
    }
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < helpers; ++i) {
      threads.emplace_back(work, std::ref(m_parts[1 + i]));
    }
    work(m_parts.front());
    for (std::thread& t : threads) {
      t.join();
    }
    if (failure) {
      std::rethrow_exception(failure);
    }
  }

  // Lists one directory and checks its entries; its subdirectories go to `subdirs`.
  void walk_one(int root_fd, const DirTask& task, WalkPart& out,
                std::vector<DirTask>& subdirs) const
  {
    const std::string rel_dir = relative(task.prefix); // "" = the named directory
    UniqueFd fd(rel_dir.empty() ? ::fcntl(root_fd, F_DUPFD_CLOEXEC, 0)
                                : open_beneath(root_fd, rel_dir.c_str(),
                                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    DirListing listing(std::move(fd));
    if (!listing.ok()) {
      out.offend(escape_for_log(task.local) + ": " + std::strerror(errno));
      return;
    }
    std::vector<std::string> names;
    bool has_ignore_file = false;
    while (const std::optional<std::string_view> next = listing.next()) {
      has_ignore_file = has_ignore_file || *next == k_ignore_file_name;
      names.emplace_back(*next);
    }
    if (errno != 0) {
      out.offend(escape_for_log(task.local) + ": " + std::strerror(errno));
      return;
    }
    std::shared_ptr<const IgnoreRules> rules = task.rules;
    if (has_ignore_file) { // its rules hold beneath it: its subdirectories share the copy
      auto own = std::make_shared<IgnoreRules>(*rules);
      read_ignore_file(listing.fd(), task.local, rel_dir, *own, out);
      rules = std::move(own);
    }
    const std::string local_prefix = task.local == "/" ? "/" : task.local + "/";
    for (const auto& entry : names) {
      struct stat st {};
      if (::fstatat(listing.fd(), entry.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        out.offend(escape_for_log(local_prefix + entry) + ": " + std::strerror(errno));
        continue;
      }
      if (!rules->empty() &&
          rules->ignored(rel_dir.empty() ? entry : rel_dir + "/" + entry, S_ISDIR(st.st_mode))) {
        ++out.ignored; // before any check: an ignored socket or link is no reason to refuse
        continue;
      }
      add(local_prefix + entry, task.prefix.empty() ? entry : task.prefix + "/" + entry, st, rules,
          out, subdirs);
    }
  }

  std::deque<WalkPart> m_parts;               // [0]: the calling thread's; one per helper after it
  std::shared_ptr<const IgnoreRules> m_rules; // the --ignore patterns
  std::string m_root; // bundle path of the directory named on the command line ("" = contents)
};

// Hashes a file in k_hash_chunk reads; returns false with errno set if it cannot be read.
// `after` is the file's fstat once read (to tell whether it changed while it was read).
bool hash_file(const std::string& path, Bytes& buffer, std::uint64_t& size, Hash& hash,
               struct stat& after)
{
  const UniqueFd fd(open_regular(path));
  if (fd.get() < 0) {
    return false;
  }
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, hash.size());
  buffer.resize(k_hash_chunk);
  size = 0;
  for (;;) {
    const ssize_t n = read_some(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      return false;
    }
    if (n == 0) {
      break;
    }
    crypto_generichash_update(&state, buffer.data(), static_cast<std::size_t>(n));
    size += static_cast<std::uint64_t>(n);
  }
  crypto_generichash_final(&state, hash.data(), hash.size());
  return ::fstat(fd.get(), &after) == 0;
}

// Sets `out` to `path` made absolute against `cwd` (reusing out's memory).
void absolute_path(const std::string& path, const std::string& cwd, std::string& out)
{
  out.clear();
  if (path.empty() || path[0] != '/') {
    out.append(cwd).push_back('/');
  }
  out.append(path);
}

void check_zstd(std::size_t rc, const char* what)
{
  if (ZSTD_isError(rc)) {
    throw std::runtime_error(std::string("zstd ") + what + ": " + ZSTD_getErrorName(rc));
  }
}

Bytes compress_whole(ByteView data, int level)
{
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) {
    throw std::bad_alloc();
  }
  check_zstd(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level), "level");
  check_zstd(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0), "checksum");
  Bytes out(ZSTD_compressBound(data.size()));
  const std::size_t n =
      ZSTD_compress2(cctx.get(), out.data(), out.size(), data.data(), data.size());
  check_zstd(n, "compress");
  out.resize(n);
  return out;
}

} // namespace

const char* special_kind(mode_t mode)
{
  if (S_ISLNK(mode)) {
    return "symbolic link";
  }
  if (S_ISFIFO(mode)) {
    return "fifo";
  }
  if (S_ISSOCK(mode)) {
    return "socket";
  }
  if (S_ISCHR(mode)) {
    return "character device";
  }
  if (S_ISBLK(mode)) {
    return "block device";
  }
  return S_ISREG(mode) || S_ISDIR(mode) ? nullptr : "special file";
}

bool hash_regular_file(const std::string& path, Bytes& buffer, std::uint64_t& size, Hash& hash,
                       struct stat& after)
{
  return hash_file(path, buffer, size, hash, after);
}

Bytes compress_manifest(const Manifest& manifest)
{
  return compress_whole(encode_manifest(manifest), 1);
}

BundleSource scan_sources(const std::vector<std::string>& args,
                          const std::vector<std::string>& ignore_patterns, HashCache* hashes)
{
  return scan_sources(args, ignore_patterns, [hashes] { return hashes; });
}

BundleSource scan_sources(const std::vector<std::string>& args,
                          const std::vector<std::string>& ignore_patterns,
                          const std::function<HashCache*()>& hashes_after_walk)
{
  init_sodium();
  Scanner scanner(ignore_patterns);
  for (const auto& arg : args) {
    scanner.add_argument(arg);
  }
  HashCache* const hashes = hashes_after_walk();
  // Sorted by bundle path through pointers: an entry is not moved (the walk yields each
  // directory's names in the filesystem's order, so there is real sorting to do).
  std::vector<Found*> order;
  scanner.for_each_found([&](Found& f) { order.push_back(&f); });
  std::stable_sort(order.begin(), order.end(),
                   [](const Found* a, const Found* b) { return a->bundle_path < b->bundle_path; });
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (order[i]->bundle_path == order[i - 1]->bundle_path) {
      scanner.offend(escape_for_log(order[i]->bundle_path) +
                     " (sent twice: " + escape_for_log(order[i - 1]->local_path) + " and " +
                     escape_for_log(order[i]->local_path) + ")");
    }
  }
  scanner.throw_if_offended(); // before reading any content

  BundleSource source;
  source.ignored = scanner.ignored();
  source.manifest.entries.reserve(order.size());
  Bytes buffer; // one read buffer for every file
  std::string cwd;
  std::string key; // the hash cache's key of one file, its memory reused
  if (hashes != nullptr) {
    std::error_code ec;
    cwd = std::filesystem::current_path(ec).string();
  }
  for (Found* f : order) {
    ManifestEntry e;
    e.kind = S_ISDIR(f->st.mode) ? EntryKind::dir : EntryKind::file;
    e.mtime_s = f->st.mtime.tv_sec;
    e.mtime_ns = static_cast<std::uint32_t>(f->st.mtime.tv_nsec);
    if (e.kind == EntryKind::file) {
      e.executable = (f->st.mode & 0111) != 0;
      if (hashes != nullptr) {
        absolute_path(f->local_path, cwd, key);
      }
      if (const auto cached = hashes != nullptr ? hashes->find(key, f->st) : std::nullopt) {
        e.hash = *cached;
        e.size = f->st.size;
      } else {
        struct stat after {};
        if (!hash_file(f->local_path, buffer, e.size, e.hash, after)) {
          scanner.offend(escape_for_log(f->local_path) + ": " + std::strerror(errno));
          continue;
        }
        ++source.files_read;
        if (hashes != nullptr && FileStamp::of(after) == f->st) {
          hashes->remember(key, f->st, e.hash);
        }
      }
      source.file_paths.push_back(std::move(f->local_path));
    }
    e.path = std::move(f->bundle_path);
    source.manifest.entries.push_back(std::move(e));
  }
  scanner.throw_if_offended();
  source.compressed_manifest = compress_manifest(source.manifest);
  return source;
}

void BlobCompressor::FreeCCtx::operator()(ZSTD_CCtx_s* cctx) const
{
  ZSTD_freeCCtx(cctx);
}

BlobCompressor::BlobCompressor(const BundleSource& source, int level, std::uint64_t memory_budget)
    : m_source(source), m_cctx(ZSTD_createCCtx()), m_memory_budget(memory_budget)
{
  init_sodium();
  if (!m_cctx) {
    throw std::bad_alloc();
  }
  for (std::size_t i = 0; i < source.manifest.entries.size(); ++i) {
    if (source.manifest.entries[i].kind == EntryKind::file) {
      m_entry_of_file.push_back(i);
    }
  }
  if (m_entry_of_file.size() != source.file_paths.size()) {
    throw std::invalid_argument("BlobCompressor: file_paths do not match the manifest");
  }
  check_zstd(ZSTD_CCtx_setParameter(m_cctx.get(), ZSTD_c_compressionLevel, level), "level");
}

BlobCompressor::~BlobCompressor()
{
  if (m_spool_fd >= 0) {
    ::close(m_spool_fd);
  }
}

BlobRef BlobCompressor::frame(std::size_t file_index)
{
  const ManifestEntry& entry = m_source.manifest.entries.at(m_entry_of_file.at(file_index));
  const auto found = m_cache.find(entry.hash);
  if (found != m_cache.end()) {
    return found->second;
  }
  BlobRef ref = compress(file_index);
  m_cache.emplace(entry.hash, ref);
  return ref;
}

std::shared_ptr<const Bytes> BlobCompressor::blob(std::size_t file_index)
{
  const BlobRef ref = frame(file_index);
  if (ref.memory) {
    return ref.memory;
  }
  Bytes scratch;
  const ByteView all = read(ref, 0, static_cast<std::size_t>(ref.size), scratch);
  return std::make_shared<const Bytes>(all.begin(), all.end());
}

ByteView BlobCompressor::read(const BlobRef& ref, std::uint64_t at, std::size_t len, Bytes& scratch)
{
  if (at >= ref.size) {
    return {};
  }
  len = static_cast<std::size_t>(std::min<std::uint64_t>(len, ref.size - at));
  if (ref.memory) {
    return ByteView(*ref.memory).subspan(static_cast<std::size_t>(at), len);
  }
  scratch.resize(len);
  std::size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(m_spool_fd, scratch.data() + done, len - done,
                              static_cast<off_t>(ref.offset + at + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      throw BundleError("io_error", std::string("cannot read the spool of compressed blobs: ") +
                                        (n < 0 ? std::strerror(errno) : "short file"));
    }
    done += static_cast<std::size_t>(n);
  }
  return ByteView(scratch.data(), len);
}

void BlobCompressor::spool_write(ByteView data, std::uint64_t at)
{
  if (m_spool_fd < 0) {
    const char* env = std::getenv("TMPDIR");
    const std::string dir = env != nullptr && *env != '\0' ? env : "/tmp";
    m_spool_fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
    if (m_spool_fd < 0) { // no O_TMPFILE on that filesystem: a named file, unlinked at once
      std::string name = dir + "/distcomp-spool-XXXXXX";
      m_spool_fd = ::mkostemp(name.data(), O_CLOEXEC);
      if (m_spool_fd >= 0) {
        ::unlink(name.c_str());
      }
    }
    if (m_spool_fd < 0) {
      throw BundleError("io_error", "cannot create a spool file for compressed blobs in " +
                                        escape_for_log(dir) + ": " + std::strerror(errno));
    }
  }
  while (!data.empty()) {
    const ssize_t n = ::pwrite(m_spool_fd, data.data(), data.size(), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      throw BundleError("io_error",
                        std::string("cannot spool compressed blobs: ") + std::strerror(errno));
    }
    data = data.subspan(static_cast<std::size_t>(n));
    at += static_cast<std::uint64_t>(n);
  }
}

BlobRef BlobCompressor::compress(std::size_t file_index)
{
  const std::size_t entry_index = m_entry_of_file[file_index];
  const ManifestEntry& entry = m_source.manifest.entries[entry_index];
  const std::string& path = m_source.file_paths[file_index];
  const auto changed = [&](const char* how) {
    return BundleError("bad_bundle",
                       "cannot send " + escape_for_log(path) + ": " + how + " since it was scanned",
                       static_cast<long long>(entry_index));
  };

  const UniqueFd fd(open_regular(path));
  if (fd.get() < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot read " + escape_for_log(path));
  }
  check_zstd(ZSTD_CCtx_reset(m_cctx.get(), ZSTD_reset_session_only), "reset");
  check_zstd(ZSTD_CCtx_setParameter(m_cctx.get(), ZSTD_c_checksumFlag, 0), "checksum");
  check_zstd(ZSTD_CCtx_setParameter(m_cctx.get(), ZSTD_c_contentSizeFlag, 1), "content size");
  check_zstd(ZSTD_CCtx_setPledgedSrcSize(m_cctx.get(), entry.size), "pledged size");

  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, k_hash_size);
  // Output collects in memory while it fits the budget; past it (or past k_max_memory_blob for
  // one blob) everything so far and the rest go to the end of the spool file.
  auto out = std::make_shared<Bytes>();
  bool spooled = false;
  const std::uint64_t spool_at = m_spool_size;
  std::uint64_t spool_written = 0;
  Bytes& in_buffer = m_in_buffer;
  Bytes& out_buffer = m_out_buffer;
  in_buffer.resize(k_hash_chunk);
  out_buffer.resize(ZSTD_CStreamOutSize());
  const auto emit = [&](ByteView chunk) {
    if (!spooled && (m_memory_bytes + out->size() + chunk.size() > m_memory_budget ||
                     out->size() + chunk.size() > k_max_memory_blob)) {
      spooled = true;
      spool_write(*out, spool_at);
      spool_written = out->size();
      Bytes().swap(*out);
    }
    if (spooled) {
      spool_write(chunk, spool_at + spool_written);
      spool_written += chunk.size();
    } else {
      put_bytes(*out, chunk);
    }
  };
  const auto pump = [&](ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
    for (;;) {
      ZSTD_outBuffer zout{out_buffer.data(), out_buffer.size(), 0};
      const std::size_t left = ZSTD_compressStream2(m_cctx.get(), &zout, &in, mode);
      check_zstd(left, "compress");
      emit(ByteView(out_buffer.data(), zout.pos));
      const bool done = mode == ZSTD_e_end ? left == 0 : in.pos == in.size;
      if (done) {
        return;
      }
    }
  };

  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = read_some(fd.get(), in_buffer.data(), in_buffer.size());
    if (n < 0) {
      throw std::system_error(errno, std::generic_category(),
                              "cannot read " + escape_for_log(path));
    }
    if (n == 0) {
      break;
    }
    total += static_cast<std::uint64_t>(n);
    if (total > entry.size) {
      throw changed("it grew");
    }
    crypto_generichash_update(&state, in_buffer.data(), static_cast<std::size_t>(n));
    ZSTD_inBuffer in{in_buffer.data(), static_cast<std::size_t>(n), 0};
    pump(in, ZSTD_e_continue);
  }
  if (total != entry.size) {
    throw changed("it shrank");
  }
  Hash hash{};
  crypto_generichash_final(&state, hash.data(), hash.size());
  if (hash != entry.hash) {
    throw changed("its content changed");
  }
  ZSTD_inBuffer none{nullptr, 0, 0};
  pump(none, ZSTD_e_end);
  if (spooled) {
    m_spool_size = spool_at + spool_written; // committed only now: a failed blob is overwritten
    return BlobRef{nullptr, spool_at, spool_written};
  }
  out->shrink_to_fit();
  m_memory_bytes += out->size();
  const std::uint64_t size = out->size();
  return BlobRef{std::move(out), 0, size};
}

std::vector<ByteView> split_slices(ByteView data, std::size_t max_slice)
{
  if (max_slice == 0) {
    throw std::invalid_argument("split_slices: max_slice must be positive");
  }
  std::vector<ByteView> slices;
  slices.reserve(data.size() / max_slice + 1);
  for (std::size_t pos = 0; pos < data.size(); pos += max_slice) {
    slices.push_back(data.subspan(pos, std::min(max_slice, data.size() - pos)));
  }
  return slices;
}

} // namespace dc
