#pragma once
// Reusing the tree an earlier bundle wrote (the worker's last job dir) for the next bundle, so an
// unchanged re-send stats files instead of creating them again. Only a file that is provably the
// one the writer wrote and verified is kept; everything else leaves the tree before the new
// bundle is written, so the result equals a fresh directory holding exactly the new bundle.
//
// Provably: the writer records each file's stat right after it wrote, verified and chmod'ed it
// (device, inode, size, mtime, ctime, mode, one link). Any change a job can make to the file or
// its name changes its ctime (which no one but the kernel sets) or its inode; a file whose ctime
// is not older than the moment the tree was sealed (before any command started) could have been
// changed within the same timestamp tick, so it is not trusted.

#include "common/file_stamp.hpp"
#include "common/manifest.hpp"

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

namespace dc {

class TreeWatch;

struct WrittenFile {
  std::string path; // bundle path
  Hash hash{};
  FileStamp stamp;   // right after the writer finished the file
  bool kept = false; // left in place from the tree before, not written
};

struct WrittenDir {
  std::string path;     // bundle path
  bool kept = false;    // the directory of the tree before, not made
  bool settled = false; // kept, and neither its entries nor its metadata changed by the writer
};

struct ReusableTree {
  std::vector<WrittenFile> files; // sorted by path, bytewise (manifest order)
  std::vector<WrittenDir> dirs;   // likewise
  // The root's ctime right after the bundle was finished, before anything else ran there.
  timespec sealed{};
  // What has happened to the tree since it was sealed, if it is watched (common/tree_watch.hpp).
  std::shared_ptr<TreeWatch> watch;
};

// Sets the root's ctime to now (a chmod to its own mode) and returns it: every later change
// beneath the root gets a ctime at least this late. Throws std::system_error.
timespec seal_tree(int root_fd);

struct Reconciled {
  std::vector<bool> kept_files;       // per manifest file (in file order): already in place
  std::vector<FileStamp> kept_stamps; // per manifest file: its stamp, where kept
  std::vector<std::string> kept_dirs; // manifest dirs already in place (sorted)
  // Kept dirs whose entries are all kept, none moved out, and whose mtime is the manifest's:
  // nothing will change them, so their metadata need not be set again (sorted).
  std::vector<std::string> settled_dirs;
  std::uint64_t moved_out = 0; // entries moved to the trash
};

// Entries beneath a root with their lstat, known ahead of reconcile_tree so the stats need not
// wait for the manifest: from a TreeWatch (tree_watch.hpp) on the tree since it was sealed, else
// from snapshot_tree while the master still scans its files. Sorted by path.
struct TreeSnapshot {
  std::vector<std::pair<std::string, FileStamp>> entries;
  // Directories ("" = the root) whose every name is in `entries`: they need not be listed again.
  std::vector<std::string> listed_dirs; // sorted
};

// Walks the tree beneath `root_fd` without following symlinks (top-level names in `leave_alone`
// and unreadable directories not entered) and lstats every entry. Once `stop` (if given) is set,
// returns the entries it has so far: a part is still of use, reconcile_tree stats the rest.
// Returns nullopt if the tree holds more than `max_entries` entries. Throws std::system_error if
// the root cannot be listed.
std::optional<TreeSnapshot> snapshot_tree(int root_fd, const std::vector<std::string>& leave_alone,
                                          std::size_t max_entries,
                                          const std::atomic<bool>* stop = nullptr);

// Makes the tree beneath `root_fd` a subset of `manifest`: walks it without following symlinks,
// keeps the manifest's directories (made 0755 so files can be written into them) and the files
// whose stat still equals `previous`'s record with the hash, size, executable bit and mtime the
// manifest wants, and moves everything else (files the job changed or made, symlinks, sockets,
// directories the manifest lacks, unreadable directories) into `trash_fd` (a directory on the
// same filesystem the caller removes later) under fresh names. Top-level names in `leave_alone`
// are not touched. With `snapshot`, an entry it holds is judged by its stat there (taken after the
// tree became this job's, so a change since is one a fresh dir would not show either); others
// are stat'ed now. Throws std::system_error if the tree cannot be read or an entry cannot be
// moved; the tree may then be half reconciled.
Reconciled reconcile_tree(int root_fd, const Manifest& manifest, const ReusableTree& previous,
                          int trash_fd, const std::vector<std::string>& leave_alone,
                          const TreeSnapshot* snapshot = nullptr);

} // namespace dc
