#include "common/reusable_tree.hpp"

#include "common/unique_fd.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <string_view>
#include <system_error>
#include <unistd.h>
#include <unordered_map>

namespace dc {
namespace {

constexpr mode_t k_dir_mode = 0755; // what BundleWriter gives directories (and files to write)

[[noreturn]] void fail(const char* op, const std::string& path)
{
  throw std::system_error(errno, std::generic_category(),
                          std::string(op) + " " + escape_for_log(path));
}

bool same_time(const timespec& a, const timespec& b)
{
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

class Reconciler {
public:
  Reconciler(const Manifest& manifest, const ReusableTree& previous, int trash_fd,
             const std::vector<std::string>& leave_alone)
      : m_manifest(manifest), m_previous(previous), m_trash_fd(trash_fd), m_leave_alone(leave_alone)
  {
    // One hash lookup per name met, and each entry's record found by merging two sorted lists.
    const std::vector<ManifestEntry>& entries = manifest.entries;
    m_file_of_entry.resize(entries.size(), 0);
    m_record_of_entry.resize(entries.size(), nullptr);
    m_entry_of_path.reserve(entries.size());
    std::size_t files = 0;
    auto record = previous.files.begin();
    for (std::size_t i = 0; i < entries.size(); ++i) {
      m_entry_of_path.emplace(entries[i].path, i);
      if (entries[i].kind == EntryKind::file) {
        m_file_of_entry[i] = files++;
        while (record != previous.files.end() && record->path < entries[i].path) {
          ++record;
        }
        if (record != previous.files.end() && record->path == entries[i].path) {
          m_record_of_entry[i] = &*record;
        }
      }
    }
    m_out.kept_files.assign(files, false);
    m_out.kept_stamps.resize(files);
  }

  Reconciled run(int root_fd)
  {
    walk(root_fd, "");
    std::sort(m_out.kept_dirs.begin(), m_out.kept_dirs.end());
    return std::move(m_out);
  }

private:
  void walk(int dir_fd, const std::string& prefix)
  {
    // fdopendir owns its fd: give it a duplicate, so dir_fd stays usable for the *at calls.
    const int listing_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (listing_fd < 0) {
      fail("cannot list", prefix);
    }
    const std::unique_ptr<DIR, DirCloser> dir(::fdopendir(listing_fd));
    if (!dir) {
      ::close(listing_fd);
      fail("cannot list", prefix);
    }
    ::rewinddir(dir.get()); // the duplicate shares dir_fd's offset, which a reader may have moved
    // Entries are renamed out while the listing runs: POSIX lets readdir skip or return removed
    // names, never the others twice or not at all; a vanished name is passed over below.
    for (;;) {
      errno = 0;
      const dirent* d = ::readdir(dir.get());
      if (d == nullptr) {
        if (errno != 0) {
          fail("cannot list", prefix);
        }
        return;
      }
      const std::string name = d->d_name;
      if (name == "." || name == "..") {
        continue;
      }
      if (prefix.empty() &&
          std::find(m_leave_alone.begin(), m_leave_alone.end(), name) != m_leave_alone.end()) {
        continue;
      }
      visit(dir_fd, name, prefix.empty() ? name : prefix + "/" + name);
    }
  }

  void visit(int dir_fd, const std::string& name, const std::string& path)
  {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        return; // moved out already (returned again by readdir)
      }
      fail("cannot stat", path);
    }
    const auto found = m_entry_of_path.find(path);
    const std::size_t index = found == m_entry_of_path.end() ? SIZE_MAX : found->second;
    const ManifestEntry* entry = index == SIZE_MAX ? nullptr : &m_manifest.entries[index];
    if (entry != nullptr && entry->kind == EntryKind::dir && S_ISDIR(st.st_mode)) {
      const UniqueFd sub(
          ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub.get() >= 0) {
        if ((st.st_mode & 07777) != k_dir_mode && ::fchmod(sub.get(), k_dir_mode) != 0) {
          fail("cannot chmod", path);
        }
        m_out.kept_dirs.push_back(path);
        walk(sub.get(), path);
        return;
      }
      if (errno != EACCES) {
        fail("cannot open", path);
      }
      // A job made it unreadable: it goes, with all it holds.
    } else if (entry != nullptr && entry->kind == EntryKind::file &&
               unchanged(*entry, m_record_of_entry[index], st)) {
      const std::size_t file = m_file_of_entry[index];
      m_out.kept_files[file] = true;
      m_out.kept_stamps[file] = FileStamp::of(st);
      return;
    }
    const std::string trash_name = std::to_string(m_out.moved_out);
    if (::renameat(dir_fd, name.c_str(), m_trash_fd, trash_name.c_str()) != 0) {
      fail("cannot move out", path);
    }
    ++m_out.moved_out;
  }

  bool unchanged(const ManifestEntry& e, const WrittenFile* it, const struct stat& st) const
  {
    if (it == nullptr) {
      return false;
    }
    const FileStamp now = FileStamp::of(st);
    const mode_t want_mode = S_IFREG | (e.executable ? 0755 : 0644);
    return now == it->stamp && it->hash == e.hash && now.size == e.size && now.nlink == 1 &&
           now.mode == want_mode && now.mtime.tv_sec == e.mtime_s &&
           now.mtime.tv_nsec == static_cast<long>(e.mtime_ns) &&
           earlier(now.ctime, m_previous.sealed);
  }

  const Manifest& m_manifest;
  const ReusableTree& m_previous;
  int m_trash_fd;
  const std::vector<std::string>& m_leave_alone;
  std::vector<std::size_t> m_file_of_entry;                          // by entry index
  std::vector<const WrittenFile*> m_record_of_entry;                 // by entry index, or null
  std::unordered_map<std::string_view, std::size_t> m_entry_of_path; // views into the manifest
  Reconciled m_out;
};

} // namespace

FileStamp FileStamp::of(const struct stat& st)
{
  FileStamp s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = static_cast<std::uint64_t>(st.st_size);
  s.nlink = st.st_nlink;
  s.mode = st.st_mode;
  s.mtime = st.st_mtim;
  s.ctime = st.st_ctim;
  return s;
}

bool FileStamp::operator==(const FileStamp& o) const
{
  return dev == o.dev && ino == o.ino && size == o.size && nlink == o.nlink && mode == o.mode &&
         same_time(mtime, o.mtime) && same_time(ctime, o.ctime);
}

bool earlier(const timespec& a, const timespec& b)
{
  return a.tv_sec != b.tv_sec ? a.tv_sec < b.tv_sec : a.tv_nsec < b.tv_nsec;
}

timespec seal_tree(int root_fd)
{
  struct stat st {};
  if (::fstat(root_fd, &st) != 0 || ::fchmod(root_fd, st.st_mode & 07777) != 0 ||
      ::fstat(root_fd, &st) != 0) {
    throw std::system_error(errno, std::generic_category(), "cannot seal the job dir");
  }
  return st.st_ctim;
}

Reconciled reconcile_tree(int root_fd, const Manifest& manifest, const ReusableTree& previous,
                          int trash_fd, const std::vector<std::string>& leave_alone)
{
  return Reconciler(manifest, previous, trash_fd, leave_alone).run(root_fd);
}

} // namespace dc
