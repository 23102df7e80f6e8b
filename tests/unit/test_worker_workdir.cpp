// Workdir: fresh job dirs, and a finished one emptied and renamed to be the next job's.

#include "tests/support/temp_files.hpp"
#include "worker/workdir.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using dc::test::TempDir;
using dc::worker::Workdir;

namespace {

std::vector<std::string> names_in(const std::string& dir)
{
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

unsigned mode_of(const std::string& path)
{
  struct stat st {};
  REQUIRE(lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// A fresh job dir: 0700, nothing in it but an empty .tmp (0700).
void check_fresh(const std::string& dir)
{
  CHECK(mode_of(dir) == 0700);
  CHECK(names_in(dir) == std::vector<std::string>{".tmp"});
  CHECK(fs::is_directory(fs::symlink_status(dir + "/.tmp")));
  CHECK(names_in(dir + "/.tmp").empty());
  CHECK(mode_of(dir + "/.tmp") == 0700);
}

std::vector<std::string> job_dirs(const std::string& workdir)
{
  std::vector<std::string> out;
  for (const std::string& name : names_in(workdir)) {
    if (name.rfind("job-", 0) == 0) {
      out.push_back(name);
    }
  }
  return out;
}

} // namespace

TEST_CASE("workdir: a job dir is fresh, and a finished one is emptied and renamed for the next job")
{
  TempDir tmp;
  const std::string outside = tmp / "outside";
  dc::test::write_file(outside, "not the job's");
  {
    Workdir wd(tmp / "wd");
    const std::string first = wd.create_job_dir(false);
    CHECK(fs::path(first).filename().string().rfind("job-", 0) == 0);
    check_fresh(first);

    // What a job may leave: files, a read-only tree, a symlink out, a full .tmp, odd modes.
    dc::test::write_file(first + "/result.txt", "data");
    fs::create_directories(first + "/out/deep");
    dc::test::write_file(first + "/out/deep/f", "x");
    REQUIRE(chmod((first + "/out/deep").c_str(), 0500) == 0);
    REQUIRE(chmod((first + "/out").c_str(), 0500) == 0);
    fs::create_symlink(outside, first + "/link");
    dc::test::write_file(first + "/.tmp/scratch", "tmp");
    REQUIRE(chmod((first + "/.tmp").c_str(), 0755) == 0);
    // Attributes a job may set on its dirs (a default ACL is one: system.posix_acl_default).
    REQUIRE(setxattr(first.c_str(), "user.mark", "1", 1, 0) == 0);
    REQUIRE(setxattr((first + "/.tmp").c_str(), "user.mark", "1", 1, 0) == 0);
    REQUIRE(chmod(first.c_str(), 0555) == 0);
    wd.remove_job_dir(first);
    wd.wait_removed();
    CHECK_FALSE(fs::exists(fs::symlink_status(first)));
    REQUIRE(job_dirs(wd.path()).size() == 1); // the spare

    const std::string second = wd.create_job_dir(false);
    CHECK(second != first); // a new name, as for a new dir
    check_fresh(second);
    CHECK(listxattr(second.c_str(), nullptr, 0) == 0);
    CHECK(listxattr((second + "/.tmp").c_str(), nullptr, 0) == 0);
    CHECK(dc::test::read_file(outside) == "not the job's"); // the symlink was not followed

    // .tmp replaced by a symlink to a directory outside: the link goes, the target stays.
    fs::create_directory(tmp / "outdir");
    dc::test::write_file(tmp / "outdir/keep", "k");
    fs::remove(second + "/.tmp");
    fs::create_directory_symlink(tmp / "outdir", second + "/.tmp");
    wd.remove_job_dir(second);
    wd.wait_removed();
    const std::string third = wd.create_job_dir(false);
    check_fresh(third);
    CHECK(dc::test::read_file(tmp / "outdir/keep") == "k");

    // One spare at most: of two finished dirs one is kept, the other removed.
    const std::string fourth = wd.create_job_dir(false);
    wd.remove_job_dir(third);
    wd.remove_job_dir(fourth);
    wd.wait_removed();
    CHECK(job_dirs(wd.path()).size() == 1);

    // --keep dirs are never the spare.
    const std::string kept = wd.create_job_dir(true);
    CHECK(fs::path(kept).filename().string().rfind("kept-", 0) == 0);
    check_fresh(kept);
  }
  // The worker's exit removes the spare (the kept dir stays).
  const auto left = names_in(tmp / "wd");
  CHECK(job_dirs(tmp / "wd").empty());
  CHECK(std::count_if(left.begin(), left.end(),
                      [](const std::string& n) { return n.rfind("kept-", 0) == 0; }) == 1);
}

TEST_CASE("workdir: job dirs left by an earlier worker are removed at start")
{
  TempDir tmp;
  {
    Workdir wd(tmp / "wd");
    const std::string a = wd.create_job_dir(false);
    dc::test::write_file(a + "/f", "x");
    // No remove_job_dir: as if the worker died here.
    REQUIRE(fs::exists(a));
  }
  CHECK(job_dirs(tmp / "wd").size() == 1);
  Workdir again(tmp / "wd");
  CHECK(job_dirs(tmp / "wd").empty());
}
