#include "common/tree_watch.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace dc {
namespace {

// Directories: their own changes and their names'. Files: every change, and every open (a write
// through a shared mapping shows only as the open before it).
constexpr std::uint32_t k_dir_mask = IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                     IN_MOVED_TO | IN_MOVE_SELF | IN_DELETE_SELF | IN_ONLYDIR |
                                     IN_DONT_FOLLOW;
constexpr std::uint32_t k_file_mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_OPEN |
                                      IN_MOVE_SELF | IN_DELETE_SELF | IN_DONT_FOLLOW;
constexpr std::uint32_t k_name_change = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO;
constexpr std::uint32_t k_gone = IN_MOVE_SELF | IN_DELETE_SELF | IN_IGNORED | IN_UNMOUNT;

// Reads whatever is queued on the non-blocking inotify `fd`, calling `on_event` for each.
// False if reading fails otherwise than with an empty queue.
template <class OnEvent>
bool read_events(int fd, OnEvent&& on_event)
{
  alignas(inotify_event) char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      inotify_event event{};
      std::memcpy(&event, buffer + at, sizeof event);
      const char* name = buffer + at + sizeof(inotify_event);
      on_event(event, event.len > 0 ? std::string_view(name, ::strnlen(name, event.len))
                                    : std::string_view());
      at += static_cast<ssize_t>(sizeof(inotify_event) + event.len);
    }
  }
}

// Whether every change to a file there goes through this kernel's VFS, so inotify sees it: local
// filesystems only. On NFS, SMB, FUSE or an overlay's lower layer a change can come from
// elsewhere and queue nothing here; such a tree is not watched (the reconcile stats it).
bool watchable_filesystem(int fd)
{
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) {
    return false;
  }
  switch (static_cast<unsigned long>(fs.f_type)) {
  case 0xEF53UL:     // ext2/3/4
  case 0x58465342UL: // xfs
  case 0x9123683EUL: // btrfs
  case 0x01021994UL: // tmpfs
  case 0xF2F52010UL: // f2fs
  case 0x2FC12FC1UL: // zfs
    return true;
  default:
    return false;
  }
}

} // namespace

std::size_t TreeWatch::index_of(std::string_view path) const
{
  const auto it = std::lower_bound(m_entries.begin(), m_entries.end(), path,
                                   [](const Entry& e, std::string_view p) { return e.path < p; });
  return it != m_entries.end() && it->path == path
             ? static_cast<std::size_t>(it - m_entries.begin())
             : m_entries.size();
}

void TreeWatch::discard_events() const
{
  read_events(m_fd.get(), [](const inotify_event&, std::string_view) {});
}

std::shared_ptr<TreeWatch> TreeWatch::start(int root_fd, const std::string& root_path,
                                            const ReusableTree& tree,
                                            std::shared_ptr<TreeWatch> previous,
                                            const std::vector<std::string>& leave_alone)
{
  if (1 + tree.dirs.size() + tree.files.size() > k_max_entries || !watchable_filesystem(root_fd)) {
    return nullptr;
  }
  std::shared_ptr<TreeWatch> watch(new TreeWatch());
  watch->m_leave_alone = leave_alone;
  std::vector<Entry>& entries = watch->m_entries;
  entries.reserve(1 + tree.dirs.size() + tree.files.size());
  // kept: the previous tree's entry is still there (the reconcile kept it in place).
  std::vector<bool> kept;
  kept.reserve(entries.capacity());
  // settled: a kept directory the writer changed nothing in (its stamp is still the old one).
  std::vector<bool> settled;
  settled.reserve(entries.capacity());
  entries.push_back(Entry{"", true, false, false, -1, 0, {}});
  kept.push_back(true); // the root is the parked dir itself (the adoption checked its identity)
  settled.push_back(false);
  {
    auto d = tree.dirs.begin();
    auto f = tree.files.begin();
    while (d != tree.dirs.end() || f != tree.files.end()) { // merge: both sorted by path
      if (f == tree.files.end() || (d != tree.dirs.end() && d->path < f->path)) {
        entries.push_back(Entry{d->path, true, false, false, -1, 0, {}});
        kept.push_back(d->kept);
        settled.push_back(d->settled);
        ++d;
      } else {
        entries.push_back(Entry{f->path, false, false, false, -1, 0, f->stamp});
        kept.push_back(f->kept);
        settled.push_back(false);
        ++f;
      }
    }
  }
  for (std::size_t i = 1; i < entries.size(); ++i) {
    const std::size_t slash = entries[i].path.rfind('/');
    const std::size_t parent =
        slash == std::string::npos
            ? 0
            : watch->index_of(std::string_view(entries[i].path).substr(0, slash));
    if (parent >= i || !entries[parent].dir) {
      return nullptr; // not a tree (a manifest always has the parents of its entries)
    }
    entries[i].parent = static_cast<std::uint32_t>(parent);
  }

  // Watches the previous snapshot vouched for, on entries kept in place, are on these very inodes.
  std::vector<bool> stamped(entries.size(), false); // a directory's old stamp still holds
  if (previous != nullptr) {
    watch->m_fd = std::move(previous->m_fd);
    const std::vector<Entry>& old = previous->m_entries;
    auto o = old.begin();
    for (std::size_t i = 0; i < entries.size(); ++i) {
      while (o != old.end() && o->path < entries[i].path) {
        ++o;
      }
      if (o != old.end() && o->path == entries[i].path && o->clean && kept[i] &&
          o->dir == entries[i].dir) {
        entries[i].wd = o->wd;
        if (entries[i].dir && settled[i] && o->vouched) {
          entries[i].stamp = o->stamp;
          stamped[i] = true;
        }
      }
    }
  } else {
    watch->m_fd = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  }
  const int fd = watch->m_fd.get();
  if (fd < 0) {
    return nullptr;
  }
  std::string path;
  for (Entry& e : entries) {
    if (e.wd >= 0) {
      continue;
    }
    path = root_path;
    if (!e.path.empty()) {
      path += '/';
      path += e.path;
    }
    // The same inode watched already (the reconcile kept it, but after a look of its own) gives
    // its old watch back.
    e.wd = ::inotify_add_watch(fd, path.c_str(), e.dir ? k_dir_mask : k_file_mask);
    if (e.wd < 0) {
      return nullptr; // ENOSPC: fs.inotify.max_user_watches
    }
  }
  watch->m_by_wd.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    watch->m_by_wd.emplace_back(entries[i].wd, static_cast<std::uint32_t>(i));
  }
  std::sort(watch->m_by_wd.begin(), watch->m_by_wd.end());
  if (std::adjacent_find(watch->m_by_wd.begin(), watch->m_by_wd.end(), [](auto& a, auto& b) {
        return a.first == b.first;
      }) != watch->m_by_wd.end()) {
    return nullptr; // two paths, one inode: not a tree the writer made
  }
  if (previous != nullptr) { // the watches on what left the tree go
    for (const Entry& o : previous->m_entries) {
      if (!std::binary_search(watch->m_by_wd.begin(), watch->m_by_wd.end(),
                              std::pair<int, std::uint32_t>(o.wd, 0),
                              [](auto& a, auto& b) { return a.first < b.first; })) {
        ::inotify_rm_watch(fd, o.wd);
      }
    }
  }
  // What is queued so far is the writer's own doing (no one else knows the dir's name yet).
  watch->discard_events();
  for (std::size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].dir && !stamped[i]) {
      struct stat st {};
      if (::fstatat(root_fd, entries[i].path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISDIR(st.st_mode)) {
        return nullptr;
      }
      entries[i].stamp = FileStamp::of(st);
    }
  }
  return watch;
}

std::optional<TreeSnapshot> TreeWatch::snapshot()
{
  const std::size_t n = m_entries.size();
  for (Entry& e : m_entries) {
    e.clean = false;
    e.vouched = false;
  }
  std::vector<bool> changed(n, false); // the entry and everything beneath it
  std::vector<bool> restat(n, false);  // a directory's own stamp
  std::vector<bool> relist(n, false);  // a directory's names
  bool trusted = true;
  std::string child;
  const bool read_ok = read_events(m_fd.get(), [&](const inotify_event& ev, std::string_view name) {
    if ((ev.mask & IN_Q_OVERFLOW) != 0) {
      trusted = false;
      return;
    }
    const auto it = std::lower_bound(
        m_by_wd.begin(), m_by_wd.end(), ev.wd,
        [](const std::pair<int, std::uint32_t>& p, int wd) { return p.first < wd; });
    if (it == m_by_wd.end() || it->first != ev.wd) {
      return; // a watch that went (something no longer in the tree)
    }
    const std::size_t i = it->second;
    const Entry& e = m_entries[i];
    if (!name.empty()) { // about a name in directory e
      if (i == 0 &&
          std::find(m_leave_alone.begin(), m_leave_alone.end(), name) != m_leave_alone.end()) {
        return; // the job's TMPDIR, replaced by the worker itself at each adoption
      }
      if ((ev.mask & k_name_change) == 0) {
        return; // a child's IN_ATTRIB: the child's own watch has it too
      }
      relist[i] = true;
      restat[i] = true; // a name more or less: a new mtime
      child = e.path.empty() ? std::string(name) : e.path + "/" + std::string(name);
      if (const std::size_t c = index_of(child); c < n) {
        changed[c] = true; // gone, or something else under its name
      }
      return;
    }
    if (i == 0) {
      // The root's renames are the worker's (parking, adoption); its own stamp is not used.
      if ((ev.mask & (IN_DELETE_SELF | IN_IGNORED | IN_UNMOUNT)) != 0) {
        trusted = false;
      }
      return;
    }
    if (!e.dir || (ev.mask & k_gone) != 0) {
      changed[i] = true;
    } else {
      restat[i] = true; // IN_ATTRIB: a chmod or utimes of the directory
    }
  });
  if (!read_ok || !trusted) {
    return std::nullopt;
  }
  // Parents come first in path order: a change above an entry reaches it in one pass.
  for (std::size_t i = 1; i < n; ++i) {
    if (changed[m_entries[i].parent]) {
      changed[i] = true;
    }
    if (changed[i] || restat[i]) {
      relist[m_entries[i].parent] = true; // one of its names is not in the snapshot
    }
  }
  TreeSnapshot snapshot;
  snapshot.entries.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    Entry& e = m_entries[i];
    if (changed[i]) {
      continue;
    }
    e.clean = true; // still the inode its watch is on (an IN_ATTRIB does not change that)
    e.vouched = !restat[i];
    if (i > 0 && e.vouched) {
      snapshot.entries.emplace_back(e.path, e.stamp);
    }
    if (e.dir && !relist[i]) {
      snapshot.listed_dirs.push_back(e.path);
    }
  }
  return snapshot; // both lists in path order, as m_entries
}

} // namespace dc
