#include "common/reusable_tree.hpp"

#include "common/dir_listing.hpp"
#include "common/unique_fd.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <string_view>
#include <system_error>
#include <unistd.h>

namespace dc {
namespace {

constexpr mode_t k_dir_mode = 0755; // what BundleWriter gives directories (and files to write)

[[noreturn]] void fail(const char* op, const std::string& path)
{
  throw std::system_error(errno, std::generic_category(),
                          std::string(op) + " " + escape_for_log(path));
}

// A directory of the walk, opened when first needed: one whose entries the snapshot lists and
// vouches for and which all stay needs no descriptor (an openat costs as much as a few lstats).
class Dir {
public:
  explicit Dir(int fd) : m_fd(fd) {}
  Dir(Dir& parent, const char* name, const std::string& path)
      : m_parent(&parent), m_name(name), m_path(&path)
  {
  }

  // Opens it; false with errno set if it cannot be.
  bool open_now()
  {
    UniqueFd fd(::openat(m_parent->fd(), m_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0) {
      return false;
    }
    m_fd = fd.get();
    m_owned = std::move(fd);
    return true;
  }
  int fd()
  {
    if (m_fd < 0 && !open_now()) {
      fail("cannot open", *m_path);
    }
    return m_fd;
  }
  // For a listing that takes the descriptor over: fd() stays valid while the listing lives.
  DirListing listing()
  {
    const int dir_fd = fd();
    return m_owned.get() >= 0 ? DirListing(std::move(m_owned)) : DirListing(dir_fd);
  }

private:
  int m_fd = -1;
  UniqueFd m_owned;
  Dir* m_parent = nullptr;
  const char* m_name = nullptr;        // NUL-terminated, alive while this walk runs
  const std::string* m_path = nullptr; // for errors
};

class Reconciler {
public:
  Reconciler(const Manifest& manifest, const ReusableTree& previous, int trash_fd,
             const std::vector<std::string>& leave_alone, const TreeSnapshot* snapshot)
      : m_manifest(manifest), m_previous(previous), m_trash_fd(trash_fd),
        m_leave_alone(leave_alone), m_snapshot(snapshot)
  {
    // Each entry's record, by merging two lists sorted by path.
    const std::vector<ManifestEntry>& entries = manifest.entries;
    m_file_of_entry.resize(entries.size(), 0);
    m_record_of_entry.resize(entries.size(), nullptr);
    std::size_t files = 0;
    auto record = previous.files.begin();
    for (std::size_t i = 0; i < entries.size(); ++i) {
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
    Dir root(root_fd);
    walk(root, "", 0, m_manifest.entries.size(), listed_whole(""));
    std::sort(m_out.kept_dirs.begin(), m_out.kept_dirs.end());
    std::sort(m_out.settled_dirs.begin(), m_out.settled_dirs.end());
    return std::move(m_out);
  }

private:
  using Child = std::pair<std::string_view, std::size_t>; // name, entry index
  using SnapshotEntry = std::vector<std::pair<std::string, FileStamp>>::const_iterator;
  struct SnapshotRange {
    SnapshotEntry begin, end; // empty without a snapshot
    std::size_t skip = 0;     // length of "dir/" in their paths
  };

  enum class Outcome { kept, moved_out, gone };

  // `prefix` is a directory of the manifest ("" = root) whose entries beneath it are [lo, hi).
  // Returns whether its own entries are already what the manifest wants: nothing moved out of it
  // and every child kept, so nothing will be added to or removed from it (its mtime stays).
  // `listed`: the snapshot listed it whole (its names need no listing again).
  bool walk(Dir& dir, const std::string& prefix, std::size_t lo, std::size_t hi, bool listed)
  {
    // Its children in name order: beneath "P", sorted paths put the children "P/x" in the order
    // of x (grandchildren interleave and are skipped).
    const std::size_t skip = prefix.empty() ? 0 : prefix.size() + 1;
    std::vector<Child> children;
    for (std::size_t i = lo; i < hi; ++i) {
      const std::string_view rest = std::string_view(m_manifest.entries[i].path).substr(skip);
      if (rest.find('/') == std::string_view::npos) {
        children.emplace_back(rest, i);
      }
    }
    // The snapshot's entries beneath it (all of them for the root): its children are there.
    SnapshotRange snap{};
    if (m_snapshot != nullptr) {
      const auto& all = m_snapshot->entries;
      const auto below = [](const std::pair<std::string, FileStamp>& e, const std::string& p) {
        return e.first < p;
      };
      snap.begin = prefix.empty() ? all.begin()
                                  : std::lower_bound(all.begin(), all.end(), prefix + "/", below);
      snap.end =
          prefix.empty() ? all.end() : std::lower_bound(snap.begin, all.end(), prefix + "0", below);
      snap.skip = skip;
    }
    std::size_t kept = 0;
    bool moved_out = false;
    const auto take = [&](std::string_view name) { // name views a NUL-terminated string
      if (prefix.empty() &&
          std::find(m_leave_alone.begin(), m_leave_alone.end(), name) != m_leave_alone.end()) {
        return;
      }
      const auto child =
          std::lower_bound(children.begin(), children.end(), name,
                           [](const Child& c, std::string_view n) { return c.first < n; });
      const bool in_manifest = child != children.end() && child->first == name;
      const Outcome outcome =
          visit(dir, prefix, snap, name.data(), in_manifest ? child->second : SIZE_MAX, hi);
      kept += outcome == Outcome::kept ? 1 : 0;
      moved_out = moved_out || outcome == Outcome::moved_out;
    };
    if (listed) {
      // Its names as the snapshot listed them: no listing again (a name made since is one a
      // fresh dir would not show either).
      for (auto it = snap.begin; it != snap.end; ++it) {
        const std::string_view rest = std::string_view(it->first).substr(skip);
        if (rest.find('/') == std::string_view::npos) {
          take(rest);
        }
      }
      return !moved_out && kept == children.size();
    }
    DirListing listing = dir.listing();
    if (!listing.ok()) {
      fail("cannot list", prefix);
    }
    // Entries are renamed out while the listing runs; a name returned again is passed over below.
    for (;;) {
      const std::optional<std::string_view> next = listing.next();
      if (!next) {
        if (errno != 0) {
          fail("cannot list", prefix);
        }
        return !moved_out && kept == children.size();
      }
      take(*next); // d_name: NUL-terminated
    }
  }

  Outcome visit(Dir& dir, const std::string& prefix, const SnapshotRange& snap, const char* name,
                std::size_t index, std::size_t hi)
  {
    const auto path = [&] { return prefix.empty() ? std::string(name) : prefix + "/" + name; };
    FileStamp st;
    if (index != SIZE_MAX && !stat_of(dir, snap, name, st)) {
      if (errno == ENOENT) {
        return Outcome::gone; // moved out already (returned again by readdir)
      }
      fail("cannot stat", path());
    }
    const ManifestEntry* entry = index == SIZE_MAX ? nullptr : &m_manifest.entries[index];
    if (entry != nullptr && entry->kind == EntryKind::dir && S_ISDIR(st.mode)) {
      Dir sub(dir, name, entry->path);
      // Listed whole by the snapshot, with the writer's mode: opened only if something in it
      // must move or be stat'ed (a job cannot have made it unreadable unseen).
      const bool listed = listed_whole(entry->path);
      const bool lazy = listed && (st.mode & 07777) == k_dir_mode;
      if (lazy || sub.open_now()) {
        if ((st.mode & 07777) != k_dir_mode && ::fchmod(sub.fd(), k_dir_mode) != 0) {
          fail("cannot chmod", entry->path);
        }
        m_out.kept_dirs.push_back(entry->path);
        // Its entries: the block of paths starting with "path/", after it and before `hi`.
        const auto begin = m_manifest.entries.begin();
        const auto sub_lo = std::lower_bound(
            begin + static_cast<std::ptrdiff_t>(index) + 1, begin + static_cast<std::ptrdiff_t>(hi),
            entry->path + "/",
            [](const ManifestEntry& e, const std::string& p) { return e.path < p; });
        const auto sub_hi = std::lower_bound(
            sub_lo, begin + static_cast<std::ptrdiff_t>(hi), entry->path + "0", // '0' follows '/'
            [](const ManifestEntry& e, const std::string& p) { return e.path < p; });
        const bool settled = walk(sub, entry->path, static_cast<std::size_t>(sub_lo - begin),
                                  static_cast<std::size_t>(sub_hi - begin), listed);
        if (settled && st.mtime.tv_sec == entry->mtime_s &&
            st.mtime.tv_nsec == static_cast<long>(entry->mtime_ns)) {
          m_out.settled_dirs.push_back(entry->path);
        }
        return Outcome::kept;
      }
      if (errno != EACCES) {
        fail("cannot open", entry->path);
      }
      // A job made it unreadable: it goes, with all it holds.
    } else if (entry != nullptr && entry->kind == EntryKind::file &&
               unchanged(*entry, m_record_of_entry[index], st)) {
      const std::size_t file = m_file_of_entry[index];
      m_out.kept_files[file] = true;
      m_out.kept_stamps[file] = st;
      return Outcome::kept;
    }
    const std::string trash_name = std::to_string(m_out.moved_out);
    if (::renameat(dir.fd(), name, m_trash_fd, trash_name.c_str()) != 0) {
      if (errno == ENOENT) {
        return Outcome::gone; // moved out already (returned again by readdir)
      }
      fail("cannot move out", path());
    }
    ++m_out.moved_out;
    return Outcome::moved_out;
  }

  bool listed_whole(const std::string& dir) const
  {
    return m_snapshot != nullptr &&
           std::binary_search(m_snapshot->listed_dirs.begin(), m_snapshot->listed_dirs.end(), dir);
  }

  // The lstat of `name` in `dir_fd`: from the snapshot (`snap`: its entries beneath that
  // directory) if it has it, else asked now. False with errno set if it cannot be stat'ed.
  bool stat_of(Dir& dir, const SnapshotRange& snap, std::string_view name, FileStamp& out)
  {
    // Beneath one directory, full-path order is the order of what follows "dir/".
    const auto it =
        std::lower_bound(snap.begin, snap.end, name,
                         [&](const std::pair<std::string, FileStamp>& e, std::string_view n) {
                           return std::string_view(e.first).substr(snap.skip) < n;
                         });
    if (it != snap.end && std::string_view(it->first).substr(snap.skip) == name) {
      out = it->second;
      return true;
    }
    struct stat st {};
    if (::fstatat(dir.fd(), name.data(), &st, AT_SYMLINK_NOFOLLOW) != 0) { // name ends in NUL
      return false;
    }
    out = FileStamp::of(st);
    return true;
  }

  bool unchanged(const ManifestEntry& e, const WrittenFile* it, const FileStamp& now) const
  {
    if (it == nullptr) {
      return false;
    }
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
  const TreeSnapshot* m_snapshot;
  std::string m_path;                                // scratch: the path looked up in the snapshot
  std::vector<std::size_t> m_file_of_entry;          // by entry index
  std::vector<const WrittenFile*> m_record_of_entry; // by entry index, or null
  Reconciled m_out;
};

} // namespace

timespec seal_tree(int root_fd)
{
  struct stat st {};
  if (::fstat(root_fd, &st) != 0 || ::fchmod(root_fd, st.st_mode & 07777) != 0 ||
      ::fstat(root_fd, &st) != 0) {
    throw std::system_error(errno, std::generic_category(), "cannot seal the job dir");
  }
  return st.st_ctim;
}

namespace {

class Snapshotter {
public:
  Snapshotter(const std::vector<std::string>& leave_alone, std::size_t max_entries,
              const std::atomic<bool>* stop)
      : m_leave_alone(leave_alone), m_max_entries(max_entries), m_stop(stop)
  {
  }

  // False if the tree holds more than max_entries.
  bool walk(DirListing& listing, const std::string& prefix)
  {
    if (!listing.ok()) {
      if (prefix.empty()) {
        throw std::system_error(errno, std::generic_category(), "cannot list the job dir");
      }
      return true; // unreadable: the reconcile stats and moves it out itself
    }
    bool whole = true; // every name in it is in `entries`
    for (;;) {
      const std::optional<std::string_view> next = listing.next();
      if (!next) {
        if (errno == 0 && whole) {
          listed_dirs.push_back(prefix);
        }
        return true;
      }
      if (m_stop != nullptr && m_stop->load(std::memory_order_relaxed)) {
        return true; // what it has is still of use
      }
      const std::string_view name = *next;
      if (prefix.empty() &&
          std::find(m_leave_alone.begin(), m_leave_alone.end(), name) != m_leave_alone.end()) {
        continue;
      }
      struct stat st {};
      if (::fstatat(listing.fd(), name.data(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        whole = false; // gone meanwhile, or a dir without search permission: the reconcile looks
        continue;
      }
      if (entries.size() == m_max_entries) {
        return false;
      }
      std::string path = prefix.empty() ? std::string(name) : prefix + "/" + std::string(name);
      entries.emplace_back(path, FileStamp::of(st));
      if (S_ISDIR(st.st_mode)) {
        DirListing sub(UniqueFd(
            ::openat(listing.fd(), name.data(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)));
        if (!walk(sub, path)) {
          return false;
        }
      }
    }
  }

  std::vector<std::pair<std::string, FileStamp>> entries;
  std::vector<std::string> listed_dirs;

private:
  const std::vector<std::string>& m_leave_alone;
  std::size_t m_max_entries;
  const std::atomic<bool>* m_stop;
};

} // namespace

std::optional<TreeSnapshot> snapshot_tree(int root_fd, const std::vector<std::string>& leave_alone,
                                          std::size_t max_entries, const std::atomic<bool>* stop)
{
  Snapshotter snapshotter(leave_alone, max_entries, stop);
  DirListing root(root_fd);
  if (!snapshotter.walk(root, "")) {
    return std::nullopt;
  }
  TreeSnapshot snapshot{std::move(snapshotter.entries), std::move(snapshotter.listed_dirs)};
  std::sort(snapshot.entries.begin(), snapshot.entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::sort(snapshot.listed_dirs.begin(), snapshot.listed_dirs.end());
  return snapshot;
}

Reconciled reconcile_tree(int root_fd, const Manifest& manifest, const ReusableTree& previous,
                          int trash_fd, const std::vector<std::string>& leave_alone,
                          const TreeSnapshot* snapshot)
{
  return Reconciler(manifest, previous, trash_fd, leave_alone, snapshot).run(root_fd);
}

} // namespace dc
