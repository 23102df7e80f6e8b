#include "common/hash_cache.hpp"

#include "common/bytes.hpp"
#include "common/unique_fd.hpp"

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <stdexcept>
#include <sys/mman.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace dc {
namespace {

constexpr std::string_view k_magic = "DCMPHSH1";
constexpr std::size_t k_max_file_bytes = std::size_t{64} << 20; // never more than a cache is worth
constexpr std::size_t k_record_size = 8 + 8 + 8 + 8 + 4 + 8 + 4 + k_hash_size; // after the path

// Maps the whole file (read-only, its pages mapped at once): no copy, no page faults one by one.
// Only a process truncating the file in place could make reading the mapping fail, and save()
// never does that (it renames a new file over the old one, which stays mapped as it was).
HashCache::Mapping map_whole(const std::string& path)
{
  HashCache::Mapping m;
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
      static_cast<std::uint64_t>(st.st_size) > k_max_file_bytes) {
    return m;
  }
  void* addr = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ,
                      MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
  if (addr != MAP_FAILED) {
    m.data = static_cast<const std::uint8_t*>(addr);
    m.size = static_cast<std::size_t>(st.st_size);
  }
  return m;
}

} // namespace

std::string default_hash_cache_path()
{
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::string(xdg) + "/distcomp/hashes";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    return std::string(home) + "/.cache/distcomp/hashes";
  }
  return {};
}

HashCache::Mapping::~Mapping()
{
  if (data != nullptr) {
    ::munmap(const_cast<std::uint8_t*>(data), size);
  }
}

HashCache::Mapping& HashCache::Mapping::operator=(Mapping&& other) noexcept
{
  if (this != &other) {
    this->~Mapping();
    data = std::exchange(other.data, nullptr);
    size = std::exchange(other.size, 0);
  }
  return *this;
}

HashCache::Entry HashCache::entry_of(const FileStamp& st)
{
  Entry e;
  e.dev = st.dev;
  e.ino = st.ino;
  e.size = st.size;
  e.mtime_s = st.mtime.tv_sec;
  e.mtime_ns = static_cast<std::uint32_t>(st.mtime.tv_nsec);
  e.ctime_s = st.ctime.tv_sec;
  e.ctime_ns = static_cast<std::uint32_t>(st.ctime.tv_nsec);
  return e;
}

HashCache::Entry HashCache::decode(const Loaded& l) const
{
  ByteReader r(ByteView(m_raw.data + l.record, k_record_size));
  Entry e;
  e.dev = r.get_be<std::uint64_t>();
  e.ino = r.get_be<std::uint64_t>();
  e.size = r.get_be<std::uint64_t>();
  e.mtime_s = static_cast<std::int64_t>(r.get_be<std::uint64_t>());
  e.mtime_ns = r.get_be<std::uint32_t>();
  e.ctime_s = static_cast<std::int64_t>(r.get_be<std::uint64_t>());
  e.ctime_ns = r.get_be<std::uint32_t>();
  const ByteView h = r.take(k_hash_size);
  std::copy(h.begin(), h.end(), e.hash.begin());
  return e;
}

HashCache::HashCache(std::string path, std::chrono::seconds racy_window)
    : m_path(std::move(path)), m_racy_window(racy_window)
{
  if (!m_path.empty()) {
    m_raw = map_whole(m_path);
  }
  if (m_raw.size < k_magic.size() ||
      std::string_view(reinterpret_cast<const char*>(m_raw.data), k_magic.size()) != k_magic) {
    m_raw = Mapping();
    return;
  }
  try {
    const ByteView all(m_raw.data, m_raw.size);
    ByteReader r(all.subspan(k_magic.size()));
    while (r.remaining() > 0) {
      const auto len = r.get_be<std::uint16_t>();
      const std::string_view name = as_chars(r.take(len));
      const ByteView record = r.take(k_record_size);
      m_loaded.push_back(
          Loaded{name, static_cast<std::size_t>(record.data() - all.data()), m_loaded.size()});
    }
    // save() writes two runs in path order (used entries, then the others): merge them.
    const auto by_path = [](const Loaded& a, const Loaded& b) { return a.path < b.path; };
    const auto second_run = std::is_sorted_until(m_loaded.begin(), m_loaded.end(), by_path);
    if (std::is_sorted(second_run, m_loaded.end(), by_path)) {
      std::inplace_merge(m_loaded.begin(), second_run, m_loaded.end(), by_path);
    } else {
      std::sort(m_loaded.begin(), m_loaded.end(), by_path);
    }
    const auto same_path = [](const Loaded& a, const Loaded& b) { return a.path == b.path; };
    if (std::adjacent_find(m_loaded.begin(), m_loaded.end(), same_path) != m_loaded.end()) {
      throw std::runtime_error("duplicate entry"); // not a file save() wrote
    }
    m_read = true;
  } catch (const std::exception&) {
    m_loaded.clear(); // damaged: start over
    m_raw = Mapping();
  }
}

const HashCache::Loaded* HashCache::find_loaded(std::string_view path) const
{
  const auto it = std::lower_bound(m_loaded.begin(), m_loaded.end(), path,
                                   [](const Loaded& l, std::string_view p) { return l.path < p; });
  return it != m_loaded.end() && it->path == path && !it->dropped ? &*it : nullptr;
}

std::optional<Hash> HashCache::find(std::string_view path, const FileStamp& st) const
{
  Entry e;
  const Loaded* loaded = nullptr;
  if (const auto added = m_added.find(path); added != m_added.end()) {
    e = added->second;
  } else if ((loaded = find_loaded(path)) != nullptr) {
    e = decode(*loaded);
  } else {
    return std::nullopt;
  }
  const Entry now = entry_of(st);
  if (e.dev != now.dev || e.ino != now.ino || e.size != now.size || e.mtime_s != now.mtime_s ||
      e.mtime_ns != now.mtime_ns || e.ctime_s != now.ctime_s || e.ctime_ns != now.ctime_ns) {
    return std::nullopt;
  }
  if (loaded != nullptr) {
    loaded->used = true;
  }
  ++m_hits;
  return e.hash;
}

void HashCache::remember(std::string_view path, const FileStamp& st, const Hash& hash)
{
  if (m_path.empty()) {
    return;
  }
  if (const Loaded* loaded = find_loaded(path)) { // replaced or forgotten below
    const_cast<Loaded*>(loaded)->dropped = true;
    ++m_dropped;
    m_changed = true;
  }
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  if (st.ctime.tv_sec + m_racy_window.count() >= now && m_racy_window.count() > 0) {
    if (const auto added = m_added.find(path); added != m_added.end()) {
      m_added.erase(added); // too fresh to trust next time
      m_changed = true;
    }
    return;
  }
  Entry e = entry_of(st);
  e.hash = hash;
  m_added.insert_or_assign(std::string(path), e);
  m_changed = true;
}

bool HashCache::save() const noexcept
{
  if (m_path.empty()) {
    return false;
  }
  // The order written: used entries first, then the others, each in path order (a merge of the
  // loaded entries still held and the added ones, which are all used).
  const auto in_written_order = [&](const auto& visit) {
    std::size_t written = 0;
    for (const bool used_pass : {true, false}) {
      auto loaded = m_loaded.begin();
      auto added = m_added.begin();
      for (;;) {
        while (loaded != m_loaded.end() && (loaded->dropped || loaded->used != used_pass)) {
          ++loaded;
        }
        const bool take_added = used_pass && added != m_added.end() &&
                                (loaded == m_loaded.end() || added->first < loaded->path);
        std::string_view path;
        Entry e;
        std::size_t loaded_at = SIZE_MAX;
        if (take_added) {
          path = added->first;
          e = added->second;
          ++added;
        } else if (loaded != m_loaded.end()) {
          path = loaded->path;
          e = decode(*loaded);
          loaded_at = loaded->loaded_at;
          ++loaded;
        } else {
          break;
        }
        if (written < k_max_hash_cache_entries && path.size() <= 0xffff) {
          visit(path, e, loaded_at, written++);
        }
      }
    }
  };
  if (m_read && !m_changed) {
    bool same = true; // every entry would land where it was read from: the same bytes
    in_written_order([&](std::string_view, const Entry&, std::size_t loaded_at, std::size_t at) {
      same = same && loaded_at == at;
    });
    if (same) {
      return true;
    }
  }
  try {
    Bytes out(k_magic.begin(), k_magic.end());
    in_written_order([&](std::string_view path, const Entry& e, std::size_t, std::size_t) {
      put_be<std::uint16_t>(out, static_cast<std::uint16_t>(path.size()));
      put_bytes(out, as_bytes(path));
      put_be<std::uint64_t>(out, e.dev);
      put_be<std::uint64_t>(out, e.ino);
      put_be<std::uint64_t>(out, e.size);
      put_be<std::uint64_t>(out, static_cast<std::uint64_t>(e.mtime_s));
      put_be<std::uint32_t>(out, e.mtime_ns);
      put_be<std::uint64_t>(out, static_cast<std::uint64_t>(e.ctime_s));
      put_be<std::uint32_t>(out, e.ctime_ns);
      put_bytes(out, ByteView(e.hash.data(), e.hash.size()));
    });
    const std::filesystem::path target(m_path);
    std::error_code ec;
    if (!std::filesystem::exists(target.parent_path(), ec)) {
      std::filesystem::create_directories(target.parent_path(), ec);
      std::filesystem::permissions(target.parent_path(), std::filesystem::perms::owner_all, ec);
    }
    std::uint8_t nonce[6];
    randombytes_buf(nonce, sizeof nonce);
    const std::string tmp = m_path + ".tmp-" + to_hex(ByteView(nonce, sizeof nonce));
    {
      const UniqueFd fd(
          ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (fd.get() < 0) {
        return false;
      }
      std::size_t done = 0;
      while (done < out.size()) {
        const ssize_t n = ::write(fd.get(), out.data() + done, out.size() - done);
        if (n < 0 && errno == EINTR) {
          continue;
        }
        if (n <= 0) {
          ::unlink(tmp.c_str());
          return false;
        }
        done += static_cast<std::size_t>(n);
      }
    }
    if (::rename(tmp.c_str(), m_path.c_str()) != 0) {
      ::unlink(tmp.c_str());
      return false;
    }
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace dc
