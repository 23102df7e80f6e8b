#pragma once
// The worker's base directory: one worker per directory (flock), a fresh job dir per session
// (0700, holding only an empty .tmp), removed afterwards; dirs left by a crash are removed at
// start-up. A finished job dir is emptied and renamed on a thread of its own to be the next
// job's fresh dir (one spare at most), instead of removed: creating two directories per job was
// ~0.5 ms of CPU on ext4, mostly inode allocation, on the path of every job.
// The last job dir whose bundle completed may instead be parked, for the next job's bundle to
// reuse (common/reusable_tree.hpp); at most one is parked, removed when replaced or at exit.

#include "common/reusable_tree.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace dc::worker {

class Workdir {
public:
  // Creates `path` (0700) if missing, takes an exclusive lock and removes stale job dirs.
  // Throws ConfigError if another worker holds the lock or the directory is unusable.
  explicit Workdir(std::string path);
  // Finishes the removals still queued, then releases the lock.
  ~Workdir();
  Workdir(const Workdir&) = delete;
  Workdir& operator=(const Workdir&) = delete;

  const std::string& path() const { return m_path; }
  // Returns the path of a fresh job directory (0700) holding only an empty `.tmp` (0700), with a
  // name no job had before: the spare if there is one, else a new one. A kept one (`keep`, never
  // a spare) is named so that start-up cleanup leaves it alone. Throws std::system_error.
  std::string create_job_dir(bool keep);
  // Removes a finished job's directory on a thread of its own and returns at once: deleting
  // thousands of files can take seconds, which must delay neither the session's BYE (the master
  // waits for it) nor the other sessions on the io thread. The emptied directory becomes the
  // spare when there is none. Never throws.
  void remove_job_dir(std::string path);
  // Waits until every removal queued so far is done (tests).
  void wait_removed();

  struct Parked {
    std::string path;
    std::uint64_t dev = 0, ino = 0; // of the directory parked, to know it again
    ReusableTree tree;
  };
  // Keeps `parked` for the next job; a dir parked before and not taken is removed. Never throws.
  void park(Parked parked);
  // The parked dir, if any; the caller owns it from now on.
  std::optional<Parked> take_parked();

  // The default base directory: $XDG_RUNTIME_DIR is too small for bundles, so /var/tmp.
  static std::string default_path();

private:
  void remove_loop();
  // Empties a finished job dir down to an empty .tmp and renames it to a fresh name; the new
  // path, or empty if anything failed (the caller removes whatever is left).
  std::string recycle(const std::string& path) const;

  std::string m_path;
  int m_lock_fd = -1;
  std::mutex m_mutex;
  std::condition_variable m_queued;
  std::condition_variable m_drained;
  std::deque<std::string> m_doomed; // job dirs waiting for removal
  bool m_removing = false;          // the remover is working on one
  std::string m_spare;              // a fresh job dir ready for the next job, or empty
  bool m_closing = false;
  std::thread m_remover;          // started by the first remove_job_dir
  std::optional<Parked> m_parked; // only touched by the io thread
};

} // namespace dc::worker
