#include "common/bundle_source.hpp"
#include "common/hash_cache.hpp"

#include <doctest/doctest.h>
#include <sodium.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

class Scratch {
public:
  Scratch()
  {
    std::string tmpl = (fs::temp_directory_path() / "dc-hashes-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~Scratch()
  {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return path + "/" + rel; }
  std::string path;
};

dc::FileStamp lstat_of(const std::string& path)
{
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return dc::FileStamp::of(st);
}

dc::Hash some_hash(std::uint8_t fill)
{
  dc::Hash h{};
  h.fill(fill);
  return h;
}

} // namespace

TEST_CASE("hash cache: remembered entries survive a save and match only an unchanged file")
{
  Scratch d;
  std::ofstream(d / "a") << "alpha";
  const std::string db = d / "cache/distcomp/hashes";
  {
    dc::HashCache cache(db, std::chrono::seconds(0));
    CHECK_FALSE(cache.find(d / "a", lstat_of(d / "a")).has_value());
    cache.remember(d / "a", lstat_of(d / "a"), some_hash(7));
    CHECK(cache.save());
  }
  dc::HashCache cache(db, std::chrono::seconds(0));
  CHECK(cache.size() == 1);
  CHECK(cache.find(d / "a", lstat_of(d / "a")) == some_hash(7));
  CHECK_FALSE(cache.find(d / "b", lstat_of(d / "a")).has_value()); // another path
  // Any change, even one that restores the mtime, changes the ctime.
  const dc::FileStamp before = lstat_of(d / "a");
  std::ofstream(d / "a") << "ALPHA";
  const timespec times[2] = {before.mtime, before.mtime};
  REQUIRE(::utimensat(AT_FDCWD, (d / "a").c_str(), times, 0) == 0);
  CHECK_FALSE(cache.find(d / "a", lstat_of(d / "a")).has_value());
}

TEST_CASE("hash cache: a save that would write the same file leaves it alone, any change rewrites")
{
  Scratch d;
  std::ofstream(d / "a") << "alpha";
  std::ofstream(d / "b") << "beta";
  const std::string db = d / "hashes";
  {
    dc::HashCache cache(db, std::chrono::seconds(0));
    cache.remember(d / "a", lstat_of(d / "a"), some_hash(1));
    cache.remember(d / "b", lstat_of(d / "b"), some_hash(2));
    REQUIRE(cache.save());
  }
  const auto inode = [&] { return lstat_of(db).ino; };
  const std::uint64_t first = inode();
  {
    dc::HashCache cache(db, std::chrono::seconds(0)); // both used, nothing new: not rewritten
    CHECK(cache.find(d / "a", lstat_of(d / "a")) == some_hash(1));
    CHECK(cache.find(d / "b", lstat_of(d / "b")) == some_hash(2));
    CHECK(cache.save());
    CHECK(inode() == first);
  }
  {
    dc::HashCache cache(db, std::chrono::seconds(0)); // only b used: b goes first, rewritten
    CHECK(cache.find(d / "b", lstat_of(d / "b")) == some_hash(2));
    CHECK(cache.save());
    CHECK(inode() != first);
  }
  const std::uint64_t second = inode();
  {
    dc::HashCache cache(db, std::chrono::seconds(0)); // only b used again: the same file
    CHECK(cache.find(d / "b", lstat_of(d / "b")) == some_hash(2));
    CHECK(cache.save());
    CHECK(inode() == second);
  }
  {
    // Loaded out of path order (b first): even with both used, written again in order.
    dc::HashCache cache(db, std::chrono::seconds(0));
    CHECK(cache.find(d / "a", lstat_of(d / "a")) == some_hash(1));
    CHECK(cache.find(d / "b", lstat_of(d / "b")) == some_hash(2));
    CHECK(cache.save());
    CHECK(inode() != second);
  }
  const std::uint64_t third = inode();
  {
    dc::HashCache cache(db, std::chrono::seconds(0)); // a new entry: rewritten
    CHECK(cache.find(d / "a", lstat_of(d / "a")) == some_hash(1));
    CHECK(cache.find(d / "b", lstat_of(d / "b")) == some_hash(2));
    cache.remember(d / "c", lstat_of(d / "a"), some_hash(3));
    CHECK(cache.save());
    CHECK(inode() != third);
  }
  dc::HashCache cache(db, std::chrono::seconds(0));
  CHECK(cache.size() == 3);
}

TEST_CASE("hash cache: a damaged file is an empty cache and a fresh file is not remembered")
{
  Scratch d;
  std::ofstream(d / "hashes") << "DCMPHSH1 and then garbage";
  dc::HashCache damaged(d / "hashes");
  CHECK(damaged.size() == 0);
  std::ofstream(d / "new") << "just written";
  dc::HashCache racy(d / "hashes", std::chrono::seconds(60));
  racy.remember(d / "new", lstat_of(d / "new"), some_hash(1));
  CHECK(racy.size() == 0);
  dc::HashCache none("");
  none.remember(d / "new", lstat_of(d / "new"), some_hash(1));
  CHECK_FALSE(none.save());
}

TEST_CASE("hash cache: an unchanged tree is scanned again without reading its files")
{
  Scratch d;
  fs::create_directories(d / "src/sub");
  std::ofstream(d / "src/a.txt") << "alpha\n";
  std::ofstream(d / "src/sub/b.txt") << "beta\n";
  dc::HashCache cache(d / "hashes", std::chrono::seconds(0));
  const dc::BundleSource first = dc::scan_sources({d / "src/"}, {}, &cache);
  CHECK(first.files_read == 2);
  const dc::BundleSource second = dc::scan_sources({d / "src/"}, {}, &cache);
  CHECK(second.files_read == 0);
  CHECK(dc::encode_manifest(second.manifest) == dc::encode_manifest(first.manifest));
  std::ofstream(d / "src/a.txt") << "alpha, edited\n";
  const dc::BundleSource third = dc::scan_sources({d / "src/"}, {}, &cache);
  CHECK(third.files_read == 1);
  const dc::BundleSource plain = dc::scan_sources({d / "src/"});
  CHECK(dc::encode_manifest(third.manifest) == dc::encode_manifest(plain.manifest));
}
