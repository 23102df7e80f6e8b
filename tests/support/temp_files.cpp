#include "tests/support/temp_files.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace dc::test {

TempDir::TempDir()
{
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/dc-test-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  m_path = templ;
}

TempDir::~TempDir()
{
  if (std::getenv("DC_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
}

void write_file(const std::string& path, const std::string& content, int mode)
{
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  chmod(path.c_str(), static_cast<mode_t>(mode));
}

std::string read_file(const std::string& path)
{
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool exists(const std::string& path)
{
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> used_job_dirs(const std::string& workdir)
{
  namespace fs = std::filesystem;
  const auto is_spare = [](const fs::path& dir) {
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    return !ec && names == std::vector<std::string>{".tmp"} && !fs::is_symlink(dir / ".tmp") &&
           fs::is_directory(dir / ".tmp", ec) && fs::is_empty(dir / ".tmp", ec) && !ec;
  };
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(workdir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind("job-", 0) == 0 && !is_spare(it->path())) {
      out.push_back(it->path().string());
    }
  }
  return out;
}

} // namespace dc::test
