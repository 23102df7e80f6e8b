#include "common/file_stamp.hpp"
#include "tests/support/temp_files.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>

namespace {

dc::FileStamp stamp_of(const std::string& path)
{
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return dc::FileStamp::of(st);
}

} // namespace

TEST_CASE("file stamp: equal for an untouched file, different after a change that restores mtime")
{
  const dc::test::TempDir dir;
  const std::string path = dir.path() + "/a";
  std::ofstream(path) << "alpha";
  const dc::FileStamp before = stamp_of(path);
  CHECK(stamp_of(path) == before);
  CHECK(before.size == 5);
  CHECK(S_ISREG(before.mode));
  CHECK(before.nlink == 1);
  std::ofstream(path) << "ALPHA"; // same size, new content
  const timespec times[2] = {before.mtime, before.mtime};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
  const dc::FileStamp after = stamp_of(path);
  CHECK(after.mtime.tv_sec == before.mtime.tv_sec);
  CHECK(after.mtime.tv_nsec == before.mtime.tv_nsec);
  CHECK_FALSE(after == before); // the ctime moved
  CHECK_FALSE(dc::earlier(after.ctime, before.ctime));
}

TEST_CASE("file stamp: earlier orders by seconds, then nanoseconds, strictly")
{
  CHECK(dc::earlier({1, 999'999'999}, {2, 0}));
  CHECK(dc::earlier({2, 1}, {2, 2}));
  CHECK_FALSE(dc::earlier({2, 2}, {2, 2}));
  CHECK_FALSE(dc::earlier({3, 0}, {2, 999'999'999}));
}
