#include "master/results_dir.hpp"

#include "common/blob_copy.hpp"
#include "common/open_beneath.hpp"
#include "common/remove_tree.hpp"
#include "common/unique_fd.hpp"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace dc::master {

// DIR/NAME of the last run, opened once: a file is offered only if every component of its path is
// a real directory or regular file there (no symlink is followed) with the size and hash wanted.
class ResultsDir::Previous final : public BlobStore {
public:
  explicit Previous(const std::string& path)
      : m_fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))
  {
  }

  bool fill(int fd, const Hash& hash, std::uint64_t size, std::string_view path) override
  {
    if (m_fd.get() < 0) {
      return false;
    }
    const UniqueFd in(open_path(path));
    struct stat st {};
    if (in.get() < 0 || ::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<std::uint64_t>(st.st_size) != size) {
      return false;
    }
    return fill_verified(in.get(), fd, hash, size, m_buffer);
  }

  void add(int, const Hash&, std::uint64_t) noexcept override {}

private:
  // One component at a time, O_NOFOLLOW each, so a symlink anywhere on the way is refused.
  int open_path(std::string_view path) const
  {
    UniqueFd dir;
    int at = m_fd.get();
    for (;;) {
      const auto slash = path.find('/');
      const std::string component(path.substr(0, slash));
      if (slash == std::string_view::npos) {
        return open_beneath(at, component.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      }
      dir = UniqueFd(
          open_beneath(at, component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (dir.get() < 0) {
        return -1;
      }
      at = dir.get();
      path.remove_prefix(slash + 1);
    }
  }

  UniqueFd m_fd;
  Bytes m_buffer;
};

ResultsDir::ResultsDir(const std::string& dir, const std::string& name)
    : m_dir(dir), m_final(dir + "/" + name), m_partial(dir + "/." + name + ".partial-XXXXXX")
{
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    throw std::system_error(ec, "cannot create " + dir);
  }
  if (::mkdtemp(m_partial.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "cannot create a directory in " + dir);
  }
  m_partial_fd = ::open(m_partial.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (m_partial_fd < 0 || ::fchmod(m_partial_fd, 0755) != 0) {
    const int err = errno;
    remove_tree(m_partial);
    throw std::system_error(err, std::generic_category(), "cannot open " + m_partial);
  }
  m_previous = std::make_unique<Previous>(m_final);
}

BlobStore& ResultsDir::previous()
{
  return *m_previous;
}

ResultsDir::~ResultsDir()
{
  if (m_partial_fd >= 0) {
    ::close(m_partial_fd);
  }
  if (!m_committed) {
    remove_tree(m_partial);
  }
}

void ResultsDir::commit()
{
  m_previous.reset(); // close the old tree before it goes
  // Swap the new tree with the old one in one step, so DIR/NAME always holds a complete run.
  if (::renameat2(AT_FDCWD, m_partial.c_str(), AT_FDCWD, m_final.c_str(), RENAME_EXCHANGE) == 0) {
    m_committed = true;
    remove_tree(m_partial); // now the old results
    return;
  }
  if (errno == ENOENT) { // no previous results
    if (::rename(m_partial.c_str(), m_final.c_str()) == 0) {
      m_committed = true;
      return;
    }
  } else if (errno == EINVAL || errno == ENOSYS) { // no exchange here: move the old tree aside
    const std::string old = m_partial + ".old";
    if (::rename(m_final.c_str(), old.c_str()) == 0) {
      if (::rename(m_partial.c_str(), m_final.c_str()) == 0) {
        m_committed = true;
        remove_tree(old);
        return;
      }
      const int err = errno;
      ::rename(old.c_str(), m_final.c_str());
      errno = err;
    }
  }
  throw std::system_error(errno, std::generic_category(), "cannot replace " + m_final);
}

} // namespace dc::master
