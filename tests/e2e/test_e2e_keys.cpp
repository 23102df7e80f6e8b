// End-to-end: `master --keygen` and the key-file permission checks of both programs.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>

using namespace dc::test;

namespace {

int mode_of(const std::string& path)
{
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return static_cast<int>(st.st_mode & 07777);
}

} // namespace

TEST_CASE(
    "e2e: keys: --keygen creates a 0600 key and refuses to overwrite it but --force replaces it")
{
  TempDir dir;
  const std::string path = dir / "cluster.key";
  MasterRun run = run_master({"--keygen", "--key", path});
  CHECK(run.exit_code == 0);
  CHECK(mode_of(path) == 0600);
  const std::string first = read_file(path);
  CHECK(first.rfind("distcomp-key-v1 ", 0) == 0);
  CHECK(first.size() == 16 + 64 + 1);

  run = run_master({"--keygen", "--key", path});
  CHECK(run.exit_code != 0);
  CAPTURE(run.err);
  CHECK(run.err.find(path) != std::string::npos);
  CHECK(run.err.find("already exists") != std::string::npos);
  CHECK(run.err.find("--force") != std::string::npos);
  CHECK(read_file(path) == first);

  run = run_master({"--keygen", "--force", "--key", path});
  CHECK(run.exit_code == 0);
  CHECK(mode_of(path) == 0600);
  const std::string second = read_file(path);
  CHECK(second.rfind("distcomp-key-v1 ", 0) == 0);
  CHECK(second != first);
}

TEST_CASE("e2e: keys: master and worker refuse a 0644 key file and name its path")
{
  TempDir dir;
  const std::string key = make_key(dir);
  REQUIRE(chmod(key.c_str(), 0644) == 0);
  const std::string peers = write_peers(dir, {"127.0.0.1:" + std::to_string(unused_port())});

  const MasterRun master = run_master({"--peers", peers, "--key", key, "--cmd", "true"});
  CHECK(master.exit_code == 2);
  CAPTURE(master.err);
  CHECK(master.err.find(key) != std::string::npos);

  const MasterRun worker = run_worker(
      {"--bind", "127.0.0.1", "--port", "0", "--key", key, "--workdir", dir / "workdir"});
  CHECK(worker.exit_code > 0);
  CAPTURE(worker.err);
  CHECK(worker.err.find(key) != std::string::npos);
  CHECK(worker.err.find("listening") == std::string::npos);
}
