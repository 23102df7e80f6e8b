#include "worker/workdir.hpp"

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/remove_tree.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/file.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace dc::worker {
namespace {
constexpr const char* k_job_prefix = "job-";
constexpr const char* k_kept_prefix = "kept-";
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
  if (m_lock_fd >= 0) {
    close(m_lock_fd);
  }
}

void Workdir::remove_job_dir(std::string path)
{
  std::unique_lock lock(m_mutex);
  if (!m_remover.joinable()) {
    try {
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
    lock.unlock();
    remove_tree(path);
    lock.lock();
  }
}

std::string Workdir::create_job_dir(bool keep) const
{
  std::string templ = m_path + "/" + (keep ? k_kept_prefix : k_job_prefix) + "XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp");
  }
  return templ;
}

} // namespace dc::worker
