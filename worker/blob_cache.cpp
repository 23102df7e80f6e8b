#include "worker/blob_cache.hpp"

#include "common/blob_copy.hpp"
#include "common/dir_listing.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "common/secure_buffer.hpp"
#include "common/unique_fd.hpp"

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <optional>
#include <sys/file.h>
#include <sys/stat.h>
#include <system_error>
#include <tuple>
#include <unistd.h>
#include <vector>

namespace dc::worker {
namespace {

constexpr mode_t k_blob_mode = 0444; // a blob is never written after its rename

std::string hex_of(const Hash& hash)
{
  return to_hex(ByteView(hash.data(), hash.size()));
}

bool hash_from_hex(std::string_view name, Hash& out)
{
  if (name.size() != 2 * k_hash_size) {
    return false;
  }
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  for (std::size_t i = 0; i < k_hash_size; ++i) {
    const int hi = nibble(name[2 * i]);
    const int lo = nibble(name[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

int open_subdir(const std::string& dir, int parent, const char* name)
{
  if (::mkdirat(parent, name, 0700) != 0 && errno != EEXIST) {
    throw ConfigError("cache dir " + dir + ": cannot create " + name + ": " + std::strerror(errno));
  }
  const int fd = ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    throw ConfigError("cache dir " + dir + ": cannot open " + name + ": " + std::strerror(errno));
  }
  return fd;
}

// Names of the entries of the directory `dir_fd` (without "." and "..").
std::vector<std::string> list_dir(int dir_fd)
{
  std::vector<std::string> names;
  DirListing listing(dir_fd);
  while (const std::optional<std::string_view> name = listing.next()) {
    names.emplace_back(*name);
  }
  return names;
}

} // namespace

BlobCache::BlobCache(std::string dir, std::uint64_t capacity)
    : m_dir(std::move(dir)), m_capacity(capacity)
{
  init_sodium();
  std::error_code ec;
  std::filesystem::create_directories(m_dir, ec);
  if (ec) {
    throw ConfigError("cache dir " + m_dir + ": " + ec.message());
  }
  const UniqueFd dir_fd(::open(m_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (dir_fd.get() < 0 || ::fstat(dir_fd.get(), &st) != 0) {
    throw ConfigError("cache dir " + m_dir + ": " + std::strerror(errno));
  }
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    throw ConfigError("cache dir " + m_dir + ": must be owned by us and not group/world-writable");
  }
  if (::fchmod(dir_fd.get(), 0700) != 0) {
    throw ConfigError("cache dir " + m_dir + ": " + std::strerror(errno));
  }
  m_lock_fd = ::openat(dir_fd.get(), ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (m_lock_fd < 0) {
    throw ConfigError("cache dir " + m_dir + ": cannot open lock file: " + std::strerror(errno));
  }
  if (::flock(m_lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(m_lock_fd);
    m_lock_fd = -1;
    throw ConfigError("cache dir " + m_dir +
                      ": in use by another worker (use --cache-dir or --no-cache)");
  }
  try {
    m_blobs_fd = open_subdir(m_dir, dir_fd.get(), "blobs");
    m_tmp_fd = open_subdir(m_dir, dir_fd.get(), "tmp");
    index_existing();
  } catch (...) {
    close_fds();
    throw;
  }
}

BlobCache::~BlobCache()
{
  close_fds();
}

void BlobCache::close_fds()
{
  for (int* fd : {&m_tmp_fd, &m_blobs_fd, &m_lock_fd}) {
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  }
}

std::string BlobCache::blob_path(const Hash& hash) const
{
  return m_dir + "/blobs/" + hex_of(hash);
}

void BlobCache::index_existing()
{
  // Copies interrupted by a crash: never renamed into place, so never trusted.
  for (const auto& name : list_dir(m_tmp_fd)) {
    ::unlinkat(m_tmp_fd, name.c_str(), 0);
  }
  std::vector<std::tuple<std::int64_t, std::int64_t, Hash, std::uint64_t>> found;
  for (const auto& name : list_dir(m_blobs_fd)) {
    struct stat st {};
    Hash hash{};
    if (::fstatat(m_blobs_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    if (!S_ISREG(st.st_mode) || !hash_from_hex(name, hash)) {
      log_warn("cache: removing %s (not a blob)", escape_for_log(name).c_str());
      ::unlinkat(m_blobs_fd, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
      continue;
    }
    found.emplace_back(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, hash,
                       static_cast<std::uint64_t>(st.st_size));
  }
  std::sort(found.begin(), found.end()); // oldest use first
  for (const auto& [sec, nsec, hash, size] : found) {
    m_entries[hash] = Entry{size, ++m_clock};
    m_lru[m_clock] = hash;
    m_bytes += size;
  }
  evict_to(m_capacity);
  log_info("cache %s: %zu blobs, %llu bytes (capacity %llu)", m_dir.c_str(), m_entries.size(),
           static_cast<unsigned long long>(m_bytes), static_cast<unsigned long long>(m_capacity));
}

bool BlobCache::fill(int fd, const Hash& hash, std::uint64_t size, std::string_view /*path*/)
{
  const auto it = m_entries.find(hash);
  if (it == m_entries.end() || it->second.size != size) {
    return false; // a size that disagrees with a verified blob: the manifest is wrong, not us
  }
  const std::string name = hex_of(hash);
  const UniqueFd in(::openat(m_blobs_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (in.get() < 0 || ::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    forget(hash, "missing");
    return false;
  }
  if (static_cast<std::uint64_t>(st.st_size) != size) {
    forget(hash, "has the wrong size");
    reset_file(fd);
    return false;
  }
  if (!fill_verified(in.get(), fd, hash, size, m_buffer)) {
    forget(hash, "is corrupted");
    return false;
  }
  touch(hash, in.get());
  return true;
}

void BlobCache::add(int fd, const Hash& hash, std::uint64_t size) noexcept
{
  try {
    if (size > m_capacity) {
      return;
    }
    if (contains(hash)) {
      touch(hash, -1);
      return;
    }
    evict_to(m_capacity - size); // make room before writing
    const std::string name = hex_of(hash);
    std::uint8_t nonce[8];
    randombytes_buf(nonce, sizeof nonce);
    const std::string tmp_name = name + "." + to_hex(ByteView(nonce, sizeof nonce));
    const UniqueFd out(::openat(m_tmp_fd, tmp_name.c_str(),
                                O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (out.get() < 0) {
      log_warn("cache: cannot create a blob: %s", std::strerror(errno));
      return;
    }
    bool ok = false;
    int err = 0;
    try {
      ok = copy_verified(fd, out.get(), hash, size, m_buffer);
    } catch (const WriteFailure& f) {
      err = f.err;
    }
    if (ok && ::fchmod(out.get(), k_blob_mode) != 0) {
      ok = false;
      err = errno;
    }
    if (ok && ::renameat(m_tmp_fd, tmp_name.c_str(), m_blobs_fd, name.c_str()) != 0) {
      ok = false;
      err = errno;
    }
    if (!ok) {
      ::unlinkat(m_tmp_fd, tmp_name.c_str(), 0);
      if (err != 0) {
        log_warn("cache: cannot keep a blob: %s", std::strerror(err));
      } else {
        log_warn("cache: blob %s changed before it was cached; not kept", name.c_str());
      }
      return;
    }
    m_entries[hash] = Entry{size, ++m_clock};
    m_lru[m_clock] = hash;
    m_bytes += size;
  } catch (const std::exception& e) {
    log_warn("cache: cannot keep a blob: %s", e.what());
  }
}

void BlobCache::touch(const Hash& hash, int fd)
{
  Entry& e = m_entries.at(hash);
  m_lru.erase(e.last_use);
  e.last_use = ++m_clock;
  m_lru[e.last_use] = hash;
  // The mtime carries the LRU order across restarts; failing to set it only ages the blob.
  const timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  if (fd >= 0) {
    ::futimens(fd, times);
  } else {
    ::utimensat(m_blobs_fd, hex_of(hash).c_str(), times, AT_SYMLINK_NOFOLLOW);
  }
}

void BlobCache::forget(const Hash& hash, const char* why)
{
  const auto it = m_entries.find(hash);
  if (it == m_entries.end()) {
    return;
  }
  const std::string name = hex_of(hash);
  log_warn("cache: blob %s %s; removed, it will be sent again", name.c_str(), why);
  ::unlinkat(m_blobs_fd, name.c_str(), 0);
  m_bytes -= it->second.size;
  m_lru.erase(it->second.last_use);
  m_entries.erase(it);
}

void BlobCache::evict_to(std::uint64_t limit)
{
  while (m_bytes > limit && !m_lru.empty()) {
    const Hash hash = m_lru.begin()->second;
    const auto entry = m_entries.find(hash);
    ::unlinkat(m_blobs_fd, hex_of(hash).c_str(), 0);
    m_bytes -= entry->second.size;
    m_lru.erase(entry->second.last_use);
    m_entries.erase(entry);
    log_debug("cache: evicted %s", hex_of(hash).c_str());
  }
}

} // namespace dc::worker
