#pragma once
// Watching a sealed job dir with inotify, so that the next bundle's reconcile (reusable_tree.hpp)
// can take what nothing touched from the records instead of lstat'ing every entry again: on a
// re-send of thousands of files those lstats are most of the worker's work.
//
// Every directory and file of the tree is watched from right after the tree was sealed, before
// any command ran there. Every way to change what an lstat of an entry says goes through the VFS
// and queues an event on the entry's own watch or its directory's: a write or truncate
// (IN_MODIFY), chmod, chown, utimes or a link count change (IN_ATTRIB), a rename or removal
// (IN_MOVE_SELF, IN_DELETE_SELF, IN_MOVED_FROM/TO, IN_DELETE), a new name (IN_CREATE). A write
// through a shared mapping queues nothing, but needs an open after the watch began (IN_OPEN),
// which counts as a change too. So an entry with no event since its watch began, beneath
// directories with none, is as recorded. A queue overflow trusts nothing.

#include "common/reusable_tree.hpp"
#include "common/unique_fd.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dc {

class TreeWatch {
public:
  // A watch costs kernel memory and counts against the user's inotify limit
  // (fs.inotify.max_user_watches), shared with everything else the user runs: larger trees are
  // not watched, their reconcile lstats as before.
  static constexpr std::size_t k_max_entries = 32'768;

  // Watches `tree`, just sealed beneath `root_fd`, which is at `root_path` now. Takes over
  // `previous` (the tree's predecessor, after its snapshot()): its watches stay on what the tree
  // kept and its last snapshot vouched for, the rest go. Directories are stat'ed once their watch
  // is in place, except settled ones the snapshot vouched for (nothing changed them since); files
  // keep their recorded stamps (only the writer touched them since). Returns
  // null if the tree is too large, on a filesystem not known to be local (ext4, xfs, btrfs,
  // tmpfs, f2fs, zfs), or a watch cannot be added (inotify limits).
  static std::shared_ptr<TreeWatch> start(int root_fd, const std::string& root_path,
                                          const ReusableTree& tree,
                                          std::shared_ptr<TreeWatch> previous,
                                          const std::vector<std::string>& leave_alone);

  // Reads the events queued since start: every entry that had none, nor any directory above it,
  // with its recorded stamp, and the directories whose names did not change. nullopt if nothing
  // can be trusted (queue overflow, the root removed). Once per watch.
  std::optional<TreeSnapshot> snapshot();

  ~TreeWatch() = default;
  TreeWatch(const TreeWatch&) = delete;
  TreeWatch& operator=(const TreeWatch&) = delete;

private:
  struct Entry {
    std::string path; // "" = the root
    bool dir = false;
    bool clean = false;   // the last snapshot() found it where it was (its watch on it)
    bool vouched = false; // ... and vouched for its stamp
    int wd = -1;          // its watch
    std::uint32_t parent; // index of its directory (the root's own: 0)
    FileStamp stamp;      // not for the root
  };

  TreeWatch() = default;
  std::size_t index_of(std::string_view path) const; // entries.size() if not there
  void discard_events() const;

  UniqueFd m_fd;                                      // the inotify instance
  std::vector<Entry> m_entries;                       // sorted by path, the root first
  std::vector<std::pair<int, std::uint32_t>> m_by_wd; // sorted by wd
  std::vector<std::string> m_leave_alone;             // top-level names not watched
};

} // namespace dc
