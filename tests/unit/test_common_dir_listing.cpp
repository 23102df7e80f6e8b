#include "common/dir_listing.hpp"
#include "tests/support/temp_files.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

std::vector<std::string> names_of(int dir_fd)
{
  dc::DirListing listing(dir_fd);
  REQUIRE(listing.ok());
  std::vector<std::string> names;
  while (const auto name = listing.next()) {
    names.emplace_back(*name);
  }
  CHECK(errno == 0); // the end, not an error
  std::sort(names.begin(), names.end());
  return names;
}

} // namespace

TEST_CASE("dir listing: every name but . and .., as often as asked, the caller's fd untouched")
{
  dc::test::TempDir dir;
  dc::test::write_file(dir / "a", "");
  dc::test::write_file(dir / "sub/b", "");
  const int fd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  const std::vector<std::string> want = {"a", "sub"};
  CHECK(names_of(fd) == want);
  CHECK(names_of(fd) == want); // rewound: a second listing of the same fd sees everything again
  CHECK(::fcntl(fd, F_GETFD) != -1); // still open
  ::close(fd);

  dc::DirListing bad(-1);
  CHECK_FALSE(bad.ok());
  CHECK(errno == EBADF);
  CHECK_FALSE(bad.next().has_value());
}

TEST_CASE("dir listing: an owned directory is listed and closed with the listing")
{
  dc::test::TempDir dir;
  dc::test::write_file(dir / "a", "");
  dc::test::write_file(dir / "b", "");
  int fd = -1;
  std::vector<std::string> names;
  {
    dc::DirListing listing(dc::UniqueFd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY)));
    REQUIRE(listing.ok());
    fd = listing.fd();
    CHECK(fd >= 0);
    while (const auto name = listing.next()) {
      names.emplace_back(*name);
    }
    struct stat st {};
    CHECK(::fstatat(listing.fd(), "a", &st, 0) == 0); // usable for *at() calls
  }
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"a", "b"});
  CHECK(::fcntl(fd, F_GETFD) == -1); // closed by the listing

  errno = 0;
  dc::DirListing missing(dc::UniqueFd(::open((dir / "none").c_str(), O_RDONLY | O_DIRECTORY)));
  CHECK_FALSE(missing.ok());
  CHECK(errno == ENOENT); // the open's reason is kept
  CHECK(missing.fd() == -1);
}
