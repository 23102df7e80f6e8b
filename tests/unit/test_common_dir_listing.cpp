#include "common/dir_listing.hpp"
#include "tests/support/temp_files.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <string>
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
