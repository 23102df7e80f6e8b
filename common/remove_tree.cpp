#include "common/remove_tree.hpp"

#include "common/log.hpp"

#include <filesystem>
#include <sys/stat.h>
#include <system_error>

namespace dc {

void remove_tree(const std::string& path) noexcept
{
  std::error_code ec;
  struct stat st {};
  // A job may leave read-only dirs behind; make them writable first. Never through a symlink: not
  // at the top (a file or a link is only unlinked), not below (the walk does not follow links).
  if (::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    for (auto it = std::filesystem::recursive_directory_iterator(
             path, std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec) && !it->is_symlink(ec)) {
        ::chmod(it->path().c_str(), 0700);
      }
    }
    ec.clear();
    ::chmod(path.c_str(), 0700);
  }
  std::filesystem::remove_all(path, ec);
  if (ec) {
    log_warn("cannot remove %s: %s", path.c_str(), ec.message().c_str());
  }
}

} // namespace dc
