#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

// Every master and worker the tests start inherits our environment: point the master's hash
// cache ($XDG_CACHE_HOME/distcomp/hashes) at a directory of this test process, not at the home
// of whoever runs the tests. Tests that are about the hash cache set their own.
int main(int argc, char** argv)
{
  std::string dir = (std::filesystem::temp_directory_path() / "dc-e2e-cache-XXXXXX").string();
  const bool isolated = mkdtemp(dir.data()) != nullptr;
  if (isolated) {
    setenv("XDG_CACHE_HOME", dir.c_str(), 1);
  }
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (isolated) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return rc;
}
