#include "worker/client_files.hpp"

#include <filesystem>
#include <system_error>

namespace dc::worker {
namespace {

namespace fs = std::filesystem;

std::string first_holding(std::initializer_list<std::string> dirs, const std::string& file)
{
  for (const std::string& dir : dirs) {
    std::error_code ec;
    if (!dir.empty() && fs::is_regular_file(fs::path(dir) / file, ec)) {
      return fs::weakly_canonical(dir, ec).string();
    }
  }
  return "";
}

} // namespace

ClientFiles find_client_files()
{
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const std::string bin = ec ? "" : exe.parent_path().string();
  const std::string prefix = ec ? "" : exe.parent_path().parent_path().string();
  ClientFiles files;
  files.include_dir = first_holding(
      {prefix.empty() ? "" : prefix + "/include", DC_CLIENT_INCLUDE_DIR}, "distcomp/msg.hpp");
  files.python_dir =
      first_holding({prefix.empty() ? "" : prefix + "/share/distcomp/python", DC_CLIENT_PYTHON_DIR},
                    "distcomp_msg.py");
  files.bin_dir = first_holding({bin, DC_CLIENT_BIN_DIR}, "distcomp-msg");
  return files;
}

} // namespace dc::worker
