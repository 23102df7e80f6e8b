#include "common/hash_cache.hpp"

#include "common/bytes.hpp"
#include "common/unique_fd.hpp"

#include <sodium.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <unistd.h>
#include <vector>

namespace dc {
namespace {

constexpr std::string_view k_magic = "DCMPHSH1";
constexpr std::size_t k_max_file_bytes = std::size_t{64} << 20; // never more than a cache is worth

bool read_whole(const std::string& path, Bytes& out)
{
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::uint64_t>(st.st_size) > k_max_file_bytes) {
    return false;
  }
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
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

HashCache::Entry HashCache::entry_of(const struct stat& st)
{
  Entry e;
  e.dev = static_cast<std::uint64_t>(st.st_dev);
  e.ino = static_cast<std::uint64_t>(st.st_ino);
  e.size = static_cast<std::uint64_t>(st.st_size);
  e.mtime_s = st.st_mtim.tv_sec;
  e.mtime_ns = static_cast<std::uint32_t>(st.st_mtim.tv_nsec);
  e.ctime_s = st.st_ctim.tv_sec;
  e.ctime_ns = static_cast<std::uint32_t>(st.st_ctim.tv_nsec);
  return e;
}

HashCache::HashCache(std::string path, std::chrono::seconds racy_window)
    : m_path(std::move(path)), m_racy_window(racy_window)
{
  Bytes raw;
  if (m_path.empty() || !read_whole(m_path, raw) || raw.size() < k_magic.size() ||
      std::string_view(reinterpret_cast<const char*>(raw.data()), k_magic.size()) != k_magic) {
    return;
  }
  try {
    ByteReader r(ByteView(raw).subspan(k_magic.size()));
    while (r.remaining() > 0) {
      const auto len = r.get_be<std::uint16_t>();
      const ByteView p = r.take(len);
      std::string name(p.begin(), p.end());
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
      e.loaded_at = m_entries.size();
      if (!m_entries.emplace(std::move(name), e).second) {
        throw std::runtime_error("duplicate entry"); // not a file save() wrote
      }
    }
    m_loaded = true;
  } catch (const std::exception&) {
    m_entries.clear(); // damaged: start over
  }
}

std::optional<Hash> HashCache::find(const std::string& path, const struct stat& st) const
{
  const auto it = m_entries.find(path);
  if (it == m_entries.end()) {
    return std::nullopt;
  }
  const Entry now = entry_of(st);
  const Entry& e = it->second;
  if (e.dev != now.dev || e.ino != now.ino || e.size != now.size || e.mtime_s != now.mtime_s ||
      e.mtime_ns != now.mtime_ns || e.ctime_s != now.ctime_s || e.ctime_ns != now.ctime_ns) {
    return std::nullopt;
  }
  e.used = true;
  ++m_hits;
  return e.hash;
}

void HashCache::remember(const std::string& path, const struct stat& st, const Hash& hash)
{
  if (m_path.empty()) {
    return;
  }
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  if (st.st_ctim.tv_sec + m_racy_window.count() >= now && m_racy_window.count() > 0) {
    m_changed = m_entries.erase(path) > 0 || m_changed; // too fresh to trust next time
    return;
  }
  Entry e = entry_of(st);
  e.hash = hash;
  e.used = true;
  m_entries[path] = e;
  m_changed = true;
}

bool HashCache::save() const noexcept
{
  if (m_path.empty()) {
    return false;
  }
  // The order written: used entries first, then the others, each in path order.
  const auto in_written_order = [&](const auto& visit) {
    std::size_t written = 0;
    for (const bool used_pass : {true, false}) {
      for (const auto& [path, e] : m_entries) {
        if (e.used == used_pass && written < k_max_hash_cache_entries && path.size() <= 0xffff) {
          visit(path, e, written++);
        }
      }
    }
  };
  if (m_loaded && !m_changed) {
    bool same = true; // every entry would land where it was read from: the same bytes
    in_written_order([&](const std::string&, const Entry& e, std::size_t at) {
      same = same && e.loaded_at == at;
    });
    if (same) {
      return true;
    }
  }
  try {
    Bytes out(k_magic.begin(), k_magic.end());
    in_written_order([&](const std::string& path, const Entry& e, std::size_t) {
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
