#include "common/error.hpp"
#include "tests/support/temp_files.hpp"
#include "worker/result_selection.hpp"

#include <doctest/doctest.h>

#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

using dc::worker::select_results;

namespace {

// A job dir to select from, removed afterwards.
class JobDir : public dc::test::TempDir {
public:
  void file(const std::string& rel, const std::string& content = "x") const
  {
    dc::test::write_file(*this / rel, content);
  }
  const std::string& path = TempDir::path();
};

const std::set<std::string> k_internal{".tmp"};

dc::worker::ResultSelection select(const JobDir& job, const std::vector<std::string>& patterns,
                                   const dc::BundleLimits& limits = {})
{
  return select_results(job.path, patterns, k_internal, limits);
}

std::vector<std::string> paths(const dc::worker::ResultSelection& s)
{
  std::vector<std::string> out;
  for (const auto& e : s.source.manifest.entries) {
    out.push_back((e.kind == dc::EntryKind::dir ? "d:" : "f:") + e.path);
  }
  return out;
}

using Paths = std::vector<std::string>;

} // namespace

TEST_CASE("result selection: a file comes with its parents, a directory with its whole tree")
{
  JobDir job;
  job.file("out/run1/result.csv", "1,2\n");
  job.file("out/run1/log.txt");
  job.file("model/weights.bin", std::string(1000, 'w'));
  job.file("model/sub/more.bin");
  job.file("unrelated.txt");
  const auto s = select(job, {"out/run1/result.csv", "model"});
  // Bytewise path order: every parent before what it holds.
  CHECK(paths(s) == Paths{"d:model", "d:model/sub", "f:model/sub/more.bin", "f:model/weights.bin",
                          "d:out", "d:out/run1", "f:out/run1/result.csv"});
  CHECK(s.missing.empty());
  CHECK(s.skipped == 0);
  REQUIRE(s.source.file_paths.size() == 3);
  CHECK(s.source.file_paths[0] == job.path + "/model/sub/more.bin");
  CHECK(s.source.manifest.total_bytes() == 1 + 1000 + 4);
  CHECK_FALSE(s.source.compressed_manifest.empty());
}

TEST_CASE("result selection: globs match per component, and patterns that match nothing are named")
{
  JobDir job;
  job.file("run-1/out.csv");
  job.file("run-2/out.csv");
  job.file("run-2/out.log");
  job.file("run-x/out.csv");
  job.file(".hidden.csv");
  job.file("top.csv");
  const auto s = select(job, {"run-[0-9]/*.csv", "*.csv", "missing.txt", "nope/*"});
  CHECK(paths(s) == Paths{"d:run-1", "f:run-1/out.csv", "d:run-2", "f:run-2/out.csv", "f:top.csv"});
  CHECK(s.missing == std::vector<std::string>{"missing.txt", "nope/*"});
}

TEST_CASE("result selection: '.' is the whole job dir without the worker's own .tmp")
{
  JobDir job;
  job.file("a.txt");
  job.file(".tmp/scratch");
  job.file(".config/keep");
  CHECK(paths(select(job, {"."})) == Paths{"d:.config", "f:.config/keep", "f:a.txt"});
  CHECK(paths(select(job, {"*"})) == Paths{"f:a.txt"});
  // Named literally, an internal directory is the user's to fetch.
  CHECK(paths(select(job, {".tmp"})) == Paths{"d:.tmp", "f:.tmp/scratch"});
}

TEST_CASE("result selection: symlinks, sockets and fifos are skipped and counted, never followed")
{
  JobDir job;
  JobDir outside;
  outside.file("secret", "do not send");
  job.file("out/real.txt");
  REQUIRE(::symlink((outside.path + "/secret").c_str(), (job.path + "/out/link").c_str()) == 0);
  REQUIRE(::symlink(outside.path.c_str(), (job.path + "/dirlink").c_str()) == 0);
  REQUIRE(::mkfifo((job.path + "/out/fifo").c_str(), 0600) == 0);
  const auto s = select(job, {"out", "dirlink/secret", "dirlink"});
  CHECK(paths(s) == Paths{"d:out", "f:out/real.txt"});
  CHECK(s.skipped == 3); // out/fifo, out/link, dirlink itself
  CHECK(s.skipped_examples == std::vector<std::string>{"out/fifo (fifo)",
                                                       "out/link (symbolic link)",
                                                       "dirlink (symbolic link)"});
  // A path through a symlinked directory matches nothing: it is not followed.
  CHECK(s.missing == std::vector<std::string>{"dirlink/secret"});
}

TEST_CASE("result selection: results over the entry or byte limit are refused before hashing")
{
  JobDir job;
  for (int i = 0; i < 10; ++i) {
    job.file("out/f" + std::to_string(i), std::string(100, 'x'));
  }
  dc::BundleLimits few;
  few.max_entries = 5;
  CHECK_THROWS_WITH_AS(select(job, {"out"}, few), doctest::Contains("more than 5 entries"),
                       dc::BundleError);
  dc::BundleLimits small;
  small.max_bytes = 999;
  CHECK_THROWS_WITH_AS(select(job, {"out"}, small), doctest::Contains("over the limit of 999"),
                       dc::BundleError);
  small.max_bytes = 1000;
  CHECK(select(job, {"out"}, small).source.manifest.total_bytes() == 1000);
}

TEST_CASE("result selection: a bad pattern is a ConfigError naming it")
{
  JobDir job;
  CHECK_THROWS_WITH_AS(select(job, {"../etc"}), "--fetch '../etc': '..' would leave the job dir",
                       dc::ConfigError);
}
