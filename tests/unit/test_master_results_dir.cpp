#include "master/results_dir.hpp"
#include "tests/support/temp_files.hpp"

#include <doctest/doctest.h>
#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using dc::master::ResultsDir;

namespace {

// A temporary directory; `path` as the tests below spell it.
class TempBase : public dc::test::TempDir {
public:
  const std::string& path = TempDir::path();
};

void write(const std::string& path, const std::string& content)
{
  dc::test::write_file(path, content);
}

dc::Hash hash_of(const std::string& content)
{
  dc::Hash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(content.data()),
                     content.size(), nullptr, 0);
  return h;
}

// Names in `dir` (hidden ones too), sorted.
std::vector<std::string> names(const std::string& dir)
{
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Asks `store` for `content` at bundle path `path`; returns what it wrote, or "<refused>".
std::string fill(dc::BlobStore& store, const std::string& path, const std::string& content,
                 const dc::Hash& hash)
{
  FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  const int fd = ::fileno(f);
  std::string got = "<refused>";
  if (store.fill(fd, hash, content.size(), path)) {
    got.assign(content.size(), '\0');
    REQUIRE(::pread(fd, got.data(), got.size(), 0) == static_cast<ssize_t>(got.size()));
  } else {
    CHECK(::lseek(fd, 0, SEEK_END) == 0); // handed back empty
  }
  std::fclose(f);
  return got;
}

} // namespace

TEST_CASE("results dir: results are written beside the old ones and swapped in on commit")
{
  TempBase base;
  const std::string dir = base.path + "/results/deep";
  {
    ResultsDir first(dir, "n1");
    write(dir + "/ignored", ""); // a neighbour, left alone
    REQUIRE(::close(::openat(first.fd(), "old.txt", O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) == 0);
    first.commit();
  }
  CHECK(names(dir) == std::vector<std::string>{"ignored", "n1"});
  CHECK(names(dir + "/n1") == std::vector<std::string>{"old.txt"});
  {
    ResultsDir second(dir, "n1");
    const int fd = ::openat(second.fd(), "new.txt", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "2", 1) == 1);
    ::close(fd);
    CHECK(names(dir + "/n1") == std::vector<std::string>{"old.txt"}); // untouched until commit
    second.commit();
  }
  CHECK(names(dir) == std::vector<std::string>{"ignored", "n1"}); // no partial or old tree left
  CHECK(names(dir + "/n1") == std::vector<std::string>{"new.txt"});
  CHECK(dc::test::read_file(dir + "/n1/new.txt") == "2");
}

TEST_CASE("results dir: a run that never commits leaves the previous results and no partial dir")
{
  TempBase base;
  write(base.path + "/n1/keep.txt", "previous");
  {
    ResultsDir failed(base.path, "n1");
    REQUIRE(::close(::openat(failed.fd(), "half", O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) == 0);
  }
  CHECK(names(base.path) == std::vector<std::string>{"n1"});
  CHECK(dc::test::read_file(base.path + "/n1/keep.txt") == "previous");
}

TEST_CASE("results dir: previous results serve a file only at the same path, size and hash")
{
  TempBase base;
  write(base.path + "/n1/out/a.txt", "alpha");
  write(base.path + "/n1/b.txt", "beta");
  write(base.path + "/elsewhere/secret", "alpha");
  REQUIRE(::symlink((base.path + "/elsewhere").c_str(), (base.path + "/n1/link").c_str()) == 0);
  REQUIRE(::symlink((base.path + "/elsewhere/secret").c_str(),
                    (base.path + "/n1/out/filelink").c_str()) == 0);
  ResultsDir next(base.path, "n1");
  dc::BlobStore& previous = next.previous();
  CHECK(fill(previous, "out/a.txt", "alpha", hash_of("alpha")) == "alpha");
  CHECK(fill(previous, "b.txt", "beta", hash_of("beta")) == "beta");
  // Changed content (same size, other hash), another path, a missing file: sent again.
  CHECK(fill(previous, "b.txt", "bet!", hash_of("bet!")) == "<refused>");
  CHECK(fill(previous, "a.txt", "alpha", hash_of("alpha")) == "<refused>");
  CHECK(fill(previous, "out/none", "alpha", hash_of("alpha")) == "<refused>");
  // A symlink on the way or at the end is never followed, even to the right content.
  CHECK(fill(previous, "link/secret", "alpha", hash_of("alpha")) == "<refused>");
  CHECK(fill(previous, "out/filelink", "alpha", hash_of("alpha")) == "<refused>");
}

TEST_CASE("results dir: without previous results nothing is served")
{
  TempBase base;
  ResultsDir first(base.path, "n1");
  CHECK(fill(first.previous(), "a.txt", "alpha", hash_of("alpha")) == "<refused>");
}
