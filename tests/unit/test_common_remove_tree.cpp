#include "common/remove_tree.hpp"
#include "tests/support/temp_files.hpp"

#include <doctest/doctest.h>

#include <string>
#include <sys/stat.h>
#include <unistd.h>

using namespace dc::test;

TEST_CASE("remove tree: read-only directories go too, symlinks inside are not followed")
{
  TempDir base;
  write_file(base / "outside/keep.txt", "keep");
  write_file(base / "tree/ro/file", "x");
  REQUIRE(::symlink((base / "outside").c_str(), (base / "tree/link").c_str()) == 0);
  REQUIRE(::chmod((base / "tree/ro").c_str(), 0555) == 0);
  dc::remove_tree(base / "tree");
  CHECK_FALSE(exists(base / "tree"));
  CHECK(read_file(base / "outside/keep.txt") == "keep");
  dc::remove_tree(base / "missing"); // nothing to do, nothing thrown
}

TEST_CASE("remove tree: a symlink at the top is unlinked, its target neither walked nor changed")
{
  TempDir base;
  write_file(base / "target/sub/keep.txt", "keep");
  REQUIRE(::chmod((base / "target/sub").c_str(), 0555) == 0);
  REQUIRE(::symlink((base / "target").c_str(), (base / "link").c_str()) == 0);
  dc::remove_tree(base / "link");
  CHECK_FALSE(exists(base / "link"));
  CHECK(read_file(base / "target/sub/keep.txt") == "keep");
  struct stat st {};
  REQUIRE(::stat((base / "target/sub").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0555); // not made writable through the link
  ::chmod((base / "target/sub").c_str(), 0755);
}
