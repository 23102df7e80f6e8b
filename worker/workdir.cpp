#include "worker/workdir.hpp"

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/remove_tree.hpp"
#include "common/signals_blocked.hpp"

#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <optional>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

namespace dc::worker {
namespace {
constexpr const char* k_job_prefix = "job-";
constexpr const char* k_kept_prefix = "kept-";
constexpr const char* k_job_tmp = ".tmp";

// The names in directory `path` (not . and ..); nullopt if it cannot be listed.
std::optional<std::vector<std::string>> names_in(const std::string& path)
{
  std::error_code ec;
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) {
    return std::nullopt;
  }
  return names;
}

// Removes every extended attribute of `path` (not following a symlink) but the system's own
// security labels (security.*): a job may have set a default ACL on its dir, which files of the
// next job made there would inherit. False if one would not go.
bool clear_xattrs(const std::string& path)
{
  std::vector<char> names(256);
  ssize_t n = 0;
  while ((n = llistxattr(path.c_str(), names.data(), names.size())) < 0 && errno == ERANGE) {
    names.resize(names.size() * 4);
  }
  if (n < 0) {
    return errno == ENOTSUP; // a filesystem without xattrs has none to clear
  }
  for (const char* name = names.data(); name < names.data() + n; name += std::strlen(name) + 1) {
    if (std::strncmp(name, "security.", 9) != 0 && lremovexattr(path.c_str(), name) != 0 &&
        errno != ENODATA) {
      return false;
    }
  }
  return true;
}

// Six characters of mkdtemp's alphabet from one draw of randomness (randombytes_uniform per
// character would be a getrandom each). The slight modulo bias does not matter for a name that
// only has to be new: the rename refuses one that exists.
std::string random_suffix()
{
  static constexpr char k_chars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char bytes[6];
  randombytes_buf(bytes, sizeof bytes);
  std::string s(sizeof bytes, 'x');
  for (std::size_t i = 0; i < sizeof bytes; ++i) {
    s[i] = k_chars[bytes[i] % (sizeof k_chars - 1)];
  }
  return s;
}

} // namespace

std::string Workdir::default_path()
{
  return "/var/tmp/distcomp-worker-" + std::to_string(geteuid());
}

Workdir::Workdir(std::string path)
{
  // Absolute, so that DISTCOMP_JOB_DIR, TMPDIR and the message socket a job is given name the
  // same place from the job's own directory (a worker may be started with `--workdir wd`).
  std::error_code not_absolute;
  const auto absolute = std::filesystem::absolute(path, not_absolute);
  m_path = not_absolute ? std::move(path) : absolute.lexically_normal().string();
  while (m_path.size() > 1 && m_path.back() == '/') {
    m_path.pop_back();
  }
  if (mkdir(m_path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw ConfigError("workdir " + m_path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (lstat(m_path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw ConfigError("workdir " + m_path + ": not a directory");
  }
  if (st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
    throw ConfigError("workdir " + m_path + ": must be owned by us and not group/world-writable");
  }
  m_lock_fd = open((m_path + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (m_lock_fd < 0) {
    throw ConfigError("workdir " + m_path + ": cannot open lock file: " + std::strerror(errno));
  }
  if (flock(m_lock_fd, LOCK_EX | LOCK_NB) != 0) {
    close(m_lock_fd);
    throw ConfigError("workdir " + m_path + ": in use by another worker (use --workdir)");
  }
  std::error_code ec;
  int stale = 0;
  for (const auto& entry : std::filesystem::directory_iterator(m_path, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(k_job_prefix, 0) == 0) {
      remove_tree(entry.path().string());
      ++stale;
    }
  }
  if (stale > 0) {
    log_info("removed %d job dir(s) left by an earlier run", stale);
  }
}

Workdir::~Workdir()
{
  if (m_parked) {
    remove_job_dir(std::move(m_parked->path));
  }
  {
    const std::lock_guard lock(m_mutex);
    m_closing = true;
  }
  m_queued.notify_one();
  if (m_remover.joinable()) {
    m_remover.join();
  }
  if (!m_spare.empty()) {
    remove_tree(m_spare);
  }
  if (m_lock_fd >= 0) {
    close(m_lock_fd);
  }
}

void Workdir::remove_job_dir(std::string path)
{
  std::unique_lock lock(m_mutex);
  if (!m_remover.joinable()) {
    try {
      const SignalsBlocked in_remover;
      m_remover = std::thread([this] { remove_loop(); });
    } catch (const std::system_error& e) { // no thread: remove it here, late rather than never
      lock.unlock();
      log_warn("cannot start a thread to remove job dirs (%s): removing it now", e.what());
      remove_tree(path);
      return;
    }
  }
  m_doomed.push_back(std::move(path));
  lock.unlock();
  m_queued.notify_one();
}

void Workdir::park(Parked parked)
{
  if (m_parked) {
    remove_job_dir(std::move(m_parked->path));
  }
  m_parked = std::move(parked);
}

std::optional<Workdir::Parked> Workdir::take_parked()
{
  return std::exchange(m_parked, std::nullopt);
}

void Workdir::remove_loop()
{
  std::unique_lock lock(m_mutex);
  for (;;) {
    m_queued.wait(lock, [this] { return m_closing || !m_doomed.empty(); });
    if (m_doomed.empty()) {
      return; // closing, and nothing left
    }
    const std::string path = std::move(m_doomed.front());
    m_doomed.pop_front();
    m_removing = true;
    const bool want_spare = m_spare.empty() && !m_closing;
    lock.unlock();
    std::string spare = want_spare ? recycle(path) : std::string();
    if (spare.empty()) {
      remove_tree(path);
    }
    lock.lock();
    // Only this thread fills m_spare, and only when it was empty: just the stop can intervene.
    if (!spare.empty() && !m_closing) {
      m_spare = std::move(spare);
    } else if (!spare.empty()) {
      lock.unlock();
      remove_tree(spare);
      lock.lock();
    }
    m_removing = false;
    if (m_doomed.empty()) {
      m_drained.notify_all();
    }
  }
}

void Workdir::wait_removed()
{
  std::unique_lock lock(m_mutex);
  m_drained.wait(lock, [this] { return m_doomed.empty() && !m_removing; });
}

std::string Workdir::recycle(const std::string& path) const
{
  // Only a job dir of ours, right below the workdir, reached without a symlink.
  struct stat st {};
  if (path.rfind(m_path + "/" + k_job_prefix, 0) != 0 ||
      path.find('/', m_path.size() + 1) != std::string::npos || lstat(path.c_str(), &st) != 0 ||
      !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || chmod(path.c_str(), 0700) != 0) {
    return {};
  }
  const std::string tmp = path + "/" + k_job_tmp;
  const auto names = names_in(path);
  if (!names) {
    return {};
  }
  for (const std::string& name : *names) {
    if (name != k_job_tmp) {
      remove_tree(path + "/" + name); // never follows a symlink
    }
  }
  if (lstat(tmp.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    remove_tree(tmp);
    if (mkdir(tmp.c_str(), 0700) != 0) {
      return {};
    }
  } else if (chmod(tmp.c_str(), 0700) == 0) {
    for (const std::string& name : names_in(tmp).value_or(std::vector<std::string>{})) {
      remove_tree(tmp + "/" + name);
    }
  }
  // Fresh means nothing left: not a file that would not go, nor one a straggler just wrote, nor
  // an ACL or other attribute the job set (chmod above reset the modes).
  const auto left = names_in(path);
  const auto left_tmp = names_in(tmp);
  if (!left || *left != std::vector<std::string>{k_job_tmp} || !left_tmp || !left_tmp->empty() ||
      !clear_xattrs(path) || !clear_xattrs(tmp)) {
    return {};
  }
  // A new name, as mkdtemp would give: a job's path is never the one the last job had.
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string fresh = m_path + "/" + k_job_prefix + random_suffix();
    if (renameat2(AT_FDCWD, path.c_str(), AT_FDCWD, fresh.c_str(), RENAME_NOREPLACE) == 0) {
      return fresh;
    }
    if (errno != EEXIST) {
      return {};
    }
  }
  return {};
}

std::string Workdir::create_job_dir(bool keep)
{
  if (!keep) {
    const std::lock_guard lock(m_mutex);
    if (!m_spare.empty()) {
      return std::exchange(m_spare, {});
    }
  }
  std::string templ = m_path + "/" + (keep ? k_kept_prefix : k_job_prefix) + "XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp");
  }
  if (mkdir((templ + "/" + k_job_tmp).c_str(), 0700) != 0) {
    const int e = errno;
    ::rmdir(templ.c_str());
    throw std::system_error(e, std::generic_category(), "mkdir job TMPDIR");
  }
  return templ;
}

} // namespace dc::worker
