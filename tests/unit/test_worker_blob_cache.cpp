#include "common/error.hpp"
#include "common/size_option.hpp"
#include "worker/blob_cache.hpp"

#include <doctest/doctest.h>
#include <sodium.h>

#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using dc::worker::BlobCache;

namespace {

class TempBase {
public:
  TempBase()
  {
    std::string tmpl = (fs::temp_directory_path() / "dc-cache-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempBase()
  {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string path;
};

dc::Hash hash_of(const std::string& content)
{
  dc::Hash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(content.data()),
                     content.size(), nullptr, 0);
  return h;
}

// A file holding `content`, open for reading and writing (as BundleWriter hands blobs over).
int file_with(const std::string& path, const std::string& content)
{
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  return fd;
}

std::string fd_content(int fd)
{
  std::string out;
  char buf[4096];
  ssize_t n;
  off_t at = 0;
  while ((n = ::pread(fd, buf, sizeof buf, at)) > 0) {
    out.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  return out;
}

// Adds `content` to `cache` the way a verified bundle blob is added.
void add(BlobCache& cache, const TempBase& base, const std::string& content)
{
  const int fd = file_with(base.path + "/incoming", content);
  cache.add(fd, hash_of(content), content.size());
  ::close(fd);
}

// Asks `cache` to fill a fresh file; returns what it wrote, or nullopt on a miss.
std::optional<std::string> fill(BlobCache& cache, const TempBase& base, const std::string& content)
{
  const int fd = file_with(base.path + "/job-file", "");
  const bool hit = cache.fill(fd, hash_of(content), content.size(), "f");
  const std::string got = fd_content(fd);
  ::close(fd);
  if (!hit) {
    CHECK(got.empty()); // a miss leaves the file empty
    return std::nullopt;
  }
  return got;
}

void overwrite(const std::string& path, const std::string& content)
{
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

} // namespace

TEST_CASE("blob cache: a miss, then a verified blob is added by rename and served as a copy")
{
  TempBase base;
  BlobCache cache(base.path + "/cache", 1 << 20);
  CHECK_FALSE(fill(cache, base, "hello\n").has_value());
  add(cache, base, "hello\n");
  CHECK(cache.contains(hash_of("hello\n")));
  CHECK(cache.bytes() == 6);
  CHECK(fs::is_empty(base.path + "/cache/tmp")); // renamed into place, nothing left behind
  const std::string blob = cache.blob_path(hash_of("hello\n"));
  struct stat st {};
  REQUIRE(::lstat(blob.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0444);
  CHECK(fill(cache, base, "hello\n") == std::optional<std::string>("hello\n"));
  // Never a hard link: the job file is a file of its own.
  REQUIRE(::lstat(blob.c_str(), &st) == 0);
  CHECK(st.st_nlink == 1);
  // The empty blob works like any other.
  add(cache, base, "");
  CHECK(fill(cache, base, "") == std::optional<std::string>(""));
}

TEST_CASE("blob cache: a job that changes its copy cannot change the cache")
{
  TempBase base;
  BlobCache cache(base.path + "/cache", 1 << 20);
  add(cache, base, "original");
  const int fd = file_with(base.path + "/job-file", "");
  REQUIRE(cache.fill(fd, hash_of("original"), 8, "f"));
  REQUIRE(::pwrite(fd, "MODIFIED", 8, 0) == 8);
  ::close(fd);
  CHECK(fill(cache, base, "original") == std::optional<std::string>("original"));
}

TEST_CASE("blob cache: a blob whose content does not match its hash is never added")
{
  TempBase base;
  BlobCache cache(base.path + "/cache", 1 << 20);
  const int fd = file_with(base.path + "/incoming", "changed after it verified");
  cache.add(fd, hash_of("what was verified"), 25);
  ::close(fd);
  CHECK(cache.count() == 0);
  CHECK(fs::is_empty(base.path + "/cache/blobs"));
  CHECK(fs::is_empty(base.path + "/cache/tmp"));
}

TEST_CASE("blob cache: a corrupted or truncated blob is detected, removed and wanted again")
{
  TempBase base;
  BlobCache cache(base.path + "/cache", 1 << 20);
  add(cache, base, "same size A");
  add(cache, base, "will be cut");
  add(cache, base, "will be gone");
  overwrite(cache.blob_path(hash_of("same size A")), "same size B"); // bit rot, same size
  overwrite(cache.blob_path(hash_of("will be cut")), "will");        // truncated
  fs::remove(cache.blob_path(hash_of("will be gone")));
  CHECK_FALSE(fill(cache, base, "same size A").has_value());
  CHECK_FALSE(fill(cache, base, "will be cut").has_value());
  CHECK_FALSE(fill(cache, base, "will be gone").has_value());
  CHECK(cache.count() == 0);
  CHECK(cache.bytes() == 0);
  CHECK_FALSE(fs::exists(cache.blob_path(hash_of("same size A"))));
  CHECK_FALSE(fs::exists(cache.blob_path(hash_of("will be cut"))));
  // Sent again, it is cached again.
  add(cache, base, "same size A");
  CHECK(fill(cache, base, "same size A") == std::optional<std::string>("same size A"));
}

TEST_CASE("blob cache: least recently used blobs are evicted to stay within the capacity")
{
  TempBase base;
  BlobCache cache(base.path + "/cache", 10);
  add(cache, base, "aaaa");
  add(cache, base, "bbbb");
  CHECK(fill(cache, base, "aaaa").has_value()); // a is now more recent than b
  add(cache, base, "cccc");                     // 12 bytes > 10: b goes
  CHECK(cache.contains(hash_of("aaaa")));
  CHECK_FALSE(cache.contains(hash_of("bbbb")));
  CHECK(cache.contains(hash_of("cccc")));
  CHECK(cache.bytes() == 8);
  CHECK_FALSE(fs::exists(cache.blob_path(hash_of("bbbb"))));
  add(cache, base, "a blob larger than the whole cache");
  CHECK(cache.count() == 2);
  CHECK(cache.bytes() <= cache.capacity());
}

TEST_CASE("blob cache: reopened, it keeps its blobs, drops debris and shrinks to a new capacity")
{
  TempBase base;
  const std::string dir = base.path + "/cache";
  {
    BlobCache cache(dir, 1 << 20);
    add(cache, base, "old");
    add(cache, base, "new");
    // LRU order survives through the mtime: make "old" clearly older.
    const timespec old_times[2] = {{0, UTIME_OMIT}, {1000, 0}};
    REQUIRE(::utimensat(AT_FDCWD, cache.blob_path(hash_of("old")).c_str(), old_times, 0) == 0);
  }
  std::ofstream(dir + "/tmp/deadbeef.0123") << "interrupted copy";
  std::ofstream(dir + "/blobs/not-a-hash") << "junk";
  {
    BlobCache cache(dir, 1 << 20);
    CHECK(cache.count() == 2);
    CHECK(fill(cache, base, "new") == std::optional<std::string>("new"));
    CHECK(fs::is_empty(dir + "/tmp"));
    CHECK_FALSE(fs::exists(dir + "/blobs/not-a-hash"));
  }
  BlobCache smaller(dir, 3);
  CHECK(smaller.count() == 1);
  CHECK(smaller.contains(hash_of("new")));
}

TEST_CASE("blob cache: one worker per cache directory")
{
  TempBase base;
  BlobCache first(base.path + "/cache", 1 << 20);
  CHECK_THROWS_AS(BlobCache(base.path + "/cache", 1 << 20), dc::ConfigError);
}

TEST_CASE("blob cache: parse_size takes bytes and K, M, G, T suffixes")
{
  using dc::parse_size;
  CHECK(parse_size("0", "cache-size") == 0);
  CHECK(parse_size("12345", "cache-size") == 12345);
  CHECK(parse_size("100k", "cache-size") == 100 << 10);
  CHECK(parse_size("512M", "cache-size") == std::uint64_t{512} << 20);
  CHECK(parse_size("4G", "cache-size") == std::uint64_t{4} << 30);
  CHECK(parse_size("2T", "cache-size") == std::uint64_t{2} << 40);
  CHECK_THROWS_AS(parse_size("", "cache-size"), dc::ConfigError);
  CHECK_THROWS_AS(parse_size("4X", "cache-size"), dc::ConfigError);
  CHECK_THROWS_AS(parse_size("-1", "cache-size"), dc::ConfigError);
  CHECK_THROWS_AS(parse_size("G", "cache-size"), dc::ConfigError);
  CHECK_THROWS_AS(parse_size("99999999999999T", "cache-size"), dc::ConfigError);
}
