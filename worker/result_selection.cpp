#include "worker/result_selection.hpp"

#include "common/bytes.hpp"
#include "common/error.hpp"
#include "common/fetch_pattern.hpp"
#include "common/unique_fd.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <system_error>

namespace dc::worker {
namespace {

std::string join(const std::string& dir, const std::string& name)
{
  return dir.empty() ? name : dir + "/" + name;
}

class Selector {
public:
  Selector(std::string root, const std::set<std::string>& internal, const BundleLimits& limits)
      : m_root(std::move(root)), m_internal(internal), m_limits(limits)
  {
  }

  // Matches components [i, end) of a pattern beneath directory `dir` (bundle path `rel`).
  // Returns whether anything matched.
  bool expand(int dir_fd, const std::string& rel, const std::vector<std::string>& comps,
              std::size_t i)
  {
    if (i == comps.size()) { // "." : the whole job dir
      add_children(dir_fd, rel);
      return true;
    }
    const std::string& c = comps[i];
    std::vector<std::string> names;
    if (has_glob(c)) {
      names = list(dir_fd, rel);
      std::erase_if(names, [&](const std::string& n) {
        return !component_matches(c, n) || (rel.empty() && m_internal.count(n) != 0);
      });
    } else {
      names.push_back(c);
    }
    bool matched = false;
    for (const auto& name : names) {
      struct stat st {};
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        continue; // not there (a literal name), or gone since it was listed
      }
      const std::string path = join(rel, name);
      if (i + 1 < comps.size()) {
        if (!S_ISDIR(st.st_mode)) {
          continue; // a file or a link cannot hold the rest of the pattern
        }
        const UniqueFd sub(open_dir(dir_fd, name));
        if (sub.get() < 0) {
          continue;
        }
        if (expand(sub.get(), path, comps, i + 1)) {
          matched = true;
          m_parents.emplace(path, st);
        }
      } else {
        matched = true;
        add(dir_fd, path, name, st);
      }
    }
    return matched;
  }

  ResultSelection finish()
  {
    // Every parent of what was found is an entry too (it exists: the walk came through it).
    for (const auto& [path, st] : m_parents) {
      if (bundle_path_problem(path) == nullptr) { // else its matches were left out as well
        insert(path, st);
      }
    }
    ResultSelection out;
    out.skipped = m_skipped;
    out.skipped_examples = std::move(m_examples);
    Bytes buffer;
    for (const auto& [path, st] : m_found) { // std::map: bytewise order, parents first
      ManifestEntry e;
      e.kind = S_ISDIR(st.st_mode) ? EntryKind::dir : EntryKind::file;
      e.mtime_s = st.st_mtim.tv_sec;
      e.mtime_ns = static_cast<std::uint32_t>(st.st_mtim.tv_nsec);
      e.path = path;
      if (e.kind == EntryKind::file) {
        e.executable = (st.st_mode & 0111) != 0;
        const std::string local = m_root + "/" + path;
        struct stat after {};
        if (!hash_regular_file(local, buffer, e.size, e.hash, after)) {
          skip(path, std::strerror(errno)); // gone or unreadable since the walk
          continue;
        }
        out.source.file_paths.push_back(local);
      }
      out.source.manifest.entries.push_back(std::move(e));
    }
    if (out.source.manifest.total_bytes() > m_limits.max_bytes) {
      throw too_large(out.source.manifest.total_bytes());
    }
    out.source.compressed_manifest = compress_manifest(out.source.manifest);
    return out;
  }

private:
  BundleError too_large(std::uint64_t bytes) const
  {
    return BundleError("bundle_too_large", "the results hold " + std::to_string(bytes) +
                                               " bytes, over the limit of " +
                                               std::to_string(m_limits.max_bytes));
  }

  static int open_dir(int dir_fd, const std::string& name)
  {
    return ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }

  // The names in `dir_fd` but "." and "..", sorted (readdir order is the filesystem's).
  std::vector<std::string> list(int dir_fd, const std::string& rel)
  {
    std::vector<std::string> names;
    const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* dir = fd < 0 ? nullptr : ::fdopendir(fd);
    if (dir == nullptr) {
      if (fd >= 0) {
        ::close(fd);
      }
      skip(rel.empty() ? "." : rel, std::strerror(errno));
      return names;
    }
    while (const dirent* d = ::readdir(dir)) {
      const std::string_view n = d->d_name;
      if (n != "." && n != "..") {
        names.emplace_back(n);
      }
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }

  // One matched entry: a file, a directory with its whole tree, or something left out.
  void add(int dir_fd, const std::string& path, const std::string& name, const struct stat& st)
  {
    if (const char* problem = bundle_path_problem(path)) {
      skip(path, problem);
      return;
    }
    if (S_ISREG(st.st_mode)) {
      insert(path, st);
    } else if (S_ISDIR(st.st_mode)) {
      const UniqueFd sub(open_dir(dir_fd, name));
      if (sub.get() < 0) {
        skip(path, std::strerror(errno));
        return;
      }
      insert(path, st);
      add_children(sub.get(), path);
    } else {
      skip(path, special_kind(st.st_mode));
    }
  }

  void add_children(int dir_fd, const std::string& rel)
  {
    for (const auto& name : list(dir_fd, rel)) {
      if (rel.empty() && m_internal.count(name) != 0) {
        continue;
      }
      struct stat st {};
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        add(dir_fd, join(rel, name), name, st);
      }
    }
  }

  void insert(const std::string& path, const struct stat& st)
  {
    if (!m_found.emplace(path, st).second) {
      return;
    }
    if (m_found.size() > m_limits.max_entries) {
      throw BundleError("bundle_too_large", "the results hold more than " +
                                                std::to_string(m_limits.max_entries) + " entries");
    }
    // Refused during the walk, before any byte is hashed; finish() checks again after hashing
    // (a file may have grown).
    if (S_ISREG(st.st_mode)) {
      m_bytes += static_cast<std::uint64_t>(st.st_size);
      if (m_bytes > m_limits.max_bytes) {
        throw too_large(m_bytes);
      }
    }
  }

  void skip(const std::string& path, const char* why)
  {
    if (m_skipped++ < k_max_skipped_examples) {
      m_examples.push_back(escape_for_log(path) + " (" + why + ")");
    }
  }

  std::string m_root;
  const std::set<std::string>& m_internal;
  BundleLimits m_limits;
  std::map<std::string, struct stat> m_found;   // bundle path -> lstat, files and dirs
  std::map<std::string, struct stat> m_parents; // directories walked through to a match
  std::uint64_t m_bytes = 0;                    // sizes of the files in m_found
  std::uint64_t m_skipped = 0;
  std::vector<std::string> m_examples;
};

} // namespace

ResultSelection select_results(const std::string& job_dir, const std::vector<std::string>& patterns,
                               const std::set<std::string>& internal, const BundleLimits& limits)
{
  const UniqueFd root(::open(job_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.get() < 0) {
    throw std::system_error(errno, std::generic_category(), "open job dir");
  }
  Selector selector(job_dir, internal, limits);
  std::vector<std::string> missing;
  for (const auto& pattern : patterns) {
    if (!selector.expand(root.get(), "", split_fetch_pattern(pattern), 0)) {
      missing.push_back(pattern);
    }
  }
  ResultSelection out = selector.finish();
  out.missing = std::move(missing);
  return out;
}

} // namespace dc::worker
