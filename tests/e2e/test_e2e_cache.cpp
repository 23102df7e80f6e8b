// End-to-end: the worker's content cache. An unchanged re-send travels as a manifest only, a
// changed file is the only upload, a corrupted cache blob is sent again, a job cannot change the
// cache, concurrent masters sharing blobs do not corrupt each other, and --no-cache and
// --cache-size do what they say.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sys/stat.h>

using namespace dc::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// src/a.txt, src/b.txt, src/sub/c.txt: 3 files, 6 + 5 + 8 = 19 bytes.
std::string make_tree(const TempDir& dir)
{
  const std::string src = dir / "src";
  write_file(src + "/a.txt", "alpha\n");
  write_file(src + "/b.txt", "beta\n");
  write_file(src + "/sub/c.txt", "charlie\n");
  return src;
}

std::vector<std::string> blob_files(const std::string& cache_dir)
{
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cache_dir + "/blobs", ec)) {
    out.push_back(e.path().string());
  }
  return out;
}

} // namespace

TEST_CASE("e2e: cache: an unchanged re-send is all cached and a changed file is the only upload")
{
  Cluster c(1);
  const std::string src = make_tree(c.dir);
  const std::string label = c[0].address() + " | ";
  const std::vector<std::string> cat = {"--send", src + "/", "--cmd", "cat a.txt b.txt sub/c.txt"};

  MasterRun run = c.run(cat);
  CHECK(run.exit_code == 0);
  CHECK(contains(run.err, "upload 19 B of 19 B, 0 of 3 files cached"));
  CHECK(blob_files(c[0].workdir() + "/cache").size() == 3);

  run = c.run(cat);
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() ==
        std::vector<std::string>{label + "alpha", label + "beta", label + "charlie"});
  CHECK(contains(run.err, "upload 0 B of 19 B, 3 of 3 files cached"));

  write_file(src + "/b.txt", "beta, edited\n");
  run = c.run(cat);
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(label + "beta, edited"));
  CHECK(contains(run.err, "upload 13 B of 27 B, 2 of 3 files cached"));
}

TEST_CASE("e2e: cache: a corrupted or truncated cache blob is detected and sent again")
{
  Cluster c(1);
  const std::string src = make_tree(c.dir);
  const std::string label = c[0].address() + " | ";
  // --keep: a kept job dir is never reused, so the files must come from the cache.
  const std::vector<std::string> cat = {"--keep", "--send", src + "/", "--cmd",
                                        "cat a.txt b.txt sub/c.txt"};
  REQUIRE(c.run(cat).exit_code == 0);
  const auto blobs = blob_files(c[0].workdir() + "/cache");
  REQUIRE(blobs.size() == 3);
  for (std::size_t i = 0; i < 2; ++i) {
    REQUIRE(::chmod(blobs[i].c_str(), 0644) == 0);
    const std::string old = read_file(blobs[i]);
    std::ofstream(blobs[i], std::ios::trunc) << (i == 0 ? std::string(old.size(), 'X') : "");
  }

  const MasterRun run = c.run(cat);
  INFO(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() ==
        std::vector<std::string>{label + "alpha", label + "beta", label + "charlie"});
  CHECK(contains(run.err, "1 of 3 files cached"));
  CHECK(contains(c[0].log(), "is corrupted; removed"));
  CHECK(contains(c[0].log(), "has the wrong size; removed"));
  CHECK(contains(c.run(cat).err, "3 of 3 files cached")); // repaired
}

TEST_CASE("e2e: cache: a job that changes its files does not change the cache")
{
  Cluster c(1);
  const std::string src = make_tree(c.dir);
  const std::string label = c[0].address() + " | ";
  MasterRun run = c.run(
      {"--send", src + "/", "--cmd", "chmod u+w a.txt && echo tampered > a.txt && cat a.txt"});
  CHECK(run.has_stdout_line(label + "tampered"));
  run = c.run({"--send", src + "/", "--cmd",
               "echo again > a.txt; truncate -s 0 b.txt; echo more >> sub/c.txt"});
  CHECK(run.exit_code == 0);
  run = c.run({"--send", src + "/", "--cmd", "cat a.txt b.txt sub/c.txt"});
  CHECK(run.stdout_lines() ==
        std::vector<std::string>{label + "alpha", label + "beta", label + "charlie"});
  CHECK(contains(run.err, "3 of 3 files cached"));
  CHECK_FALSE(contains(c[0].log(), "corrupted"));
}

TEST_CASE("e2e: cache: masters sending the same new files at once all get them whole")
{
  Cluster c(1);
  // Large enough that the uploads overlap: 4 files of 2 MiB of varied bytes.
  const std::string src = c.dir / "big";
  for (int f = 0; f < 4; ++f) {
    std::string content;
    for (int i = 0; content.size() < (2u << 20); ++i) {
      content += std::to_string(i * 7919 + f) + (i % 13 == 0 ? "\n" : " ");
    }
    write_file(src + "/f" + std::to_string(f), content);
  }
  const std::string sums = "cksum f0 f1 f2 f3";
  std::vector<std::unique_ptr<MasterProcess>> masters;
  for (int i = 0; i < 4; ++i) {
    masters.push_back(
        std::make_unique<MasterProcess>(c.args({"--send", src + "/", "--cmd", sums})));
  }
  std::vector<std::string> outputs;
  for (auto& m : masters) {
    const MasterRun run = m->wait(60s);
    INFO(run.err);
    CHECK(run.exit_code == 0);
    CHECK(run.stdout_lines().size() == 4);
    outputs.push_back(run.out);
  }
  for (const auto& out : outputs) {
    CHECK(out == outputs[0]); // every master saw the same, whole files
  }
  const auto blobs = blob_files(c[0].workdir() + "/cache");
  CHECK(blobs.size() == 4);
  CHECK(fs::is_empty(c[0].workdir() + "/cache/tmp"));
  const MasterRun again = c.run({"--send", src + "/", "--cmd", sums});
  CHECK(again.out == outputs[0]);
  CHECK(contains(again.err, "4 of 4 files cached"));
  CHECK_FALSE(contains(c[0].log(), "corrupted"));
}

TEST_CASE("e2e: cache: --no-cache sends every file every time and --cache-size evicts")
{
  WorkerConfig no_cache;
  no_cache.extra = {"--no-cache"};
  Cluster none(1, no_cache);
  const std::string src = make_tree(none.dir);
  const std::vector<std::string> cat = {"--send", src + "/", "--cmd", "cat a.txt"};
  REQUIRE(none.run(cat).exit_code == 0);
  const MasterRun second = none.run(cat);
  CHECK(second.exit_code == 0);
  CHECK(contains(second.err, "upload 19 B of 19 B, 0 of 3 files cached"));
  CHECK_FALSE(fs::exists(none[0].workdir() + "/cache"));

  // 14 bytes of cache hold a.txt and b.txt (11 bytes) but not c.txt (8 bytes) as well.
  WorkerConfig small_cache;
  small_cache.extra = {"--cache-size", "14"};
  Cluster small(1, small_cache);
  const std::string src2 = make_tree(small.dir);
  REQUIRE(small.run({"--send", src2 + "/a.txt", "--send", src2 + "/b.txt", "--cmd", "true"})
              .exit_code == 0);
  CHECK(contains(
      small.run({"--send", src2 + "/a.txt", "--send", src2 + "/b.txt", "--cmd", "true"}).err,
      "2 of 2 files cached"));
  REQUIRE(small.run({"--send", src2 + "/sub/c.txt", "--cmd", "true"}).exit_code == 0);
  // c.txt (8 bytes) pushed out the least recently used: a.txt (6 bytes) was enough.
  const MasterRun after =
      small.run({"--send", src2 + "/a.txt", "--send", src2 + "/b.txt", "--cmd", "true"});
  CHECK(contains(after.err, "1 of 2 files cached"));
  CHECK(blob_files(small[0].workdir() + "/cache").size() <= 2);
}

TEST_CASE("e2e: cache: bad cache options are one clear line and exit 2")
{
  TempDir dir;
  const std::string key = make_key(dir);
  MasterRun run = run_worker({"--bind", "127.0.0.1", "--port", "0", "--key", key, "--workdir",
                              dir / "w", "--cache-size", "lots"});
  CHECK(run.exit_code == 2);
  CHECK(contains(run.err, "--cache-size: expected a size such as 4G, 512M or 1000000"));
  run = run_worker({"--bind", "127.0.0.1", "--port", "0", "--key", key, "--workdir", dir / "w",
                    "--no-cache", "--cache-dir", dir / "c"});
  CHECK(run.exit_code == 2);
  CHECK(contains(run.err, "--no-cache cannot be combined with --cache-dir or --cache-size"));
}
