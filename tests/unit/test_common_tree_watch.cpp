#include "common/tree_watch.hpp"
#include "common/unique_fd.hpp"
#include "tests/support/temp_files.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

using dc::test::TempDir;
using dc::test::write_file;

// A sealed tree as the bundle writer leaves it: dirs "sub", "sub/deep", files a.txt,
// sub/b.txt, sub/deep/c.txt (their stamps taken once written), and the job's TMPDIR .tmp,
// which is not part of it.
struct Tree {
  TempDir dir;
  std::string root = dir / "job";
  dc::UniqueFd root_fd;
  dc::ReusableTree tree;

  Tree()
  {
    write_file(root + "/a.txt", "alpha\n");
    write_file(root + "/sub/b.txt", "bravo\n");
    write_file(root + "/sub/deep/c.txt", "charlie\n");
    REQUIRE(::mkdir((root + "/.tmp").c_str(), 0700) == 0);
    root_fd = dc::UniqueFd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(root_fd.get() >= 0);
    tree.dirs = {{"sub", false}, {"sub/deep", false}};
    for (const char* f : {"a.txt", "sub/b.txt", "sub/deep/c.txt"}) {
      tree.files.push_back(dc::WrittenFile{f, {}, stamp(f), false});
    }
  }

  dc::FileStamp stamp(const std::string& rel) const
  {
    struct stat st {};
    REQUIRE(::lstat((root + "/" + rel).c_str(), &st) == 0);
    return dc::FileStamp::of(st);
  }

  std::shared_ptr<dc::TreeWatch> watch(std::shared_ptr<dc::TreeWatch> previous = nullptr)
  {
    auto w = dc::TreeWatch::start(root_fd.get(), root, tree, std::move(previous), {".tmp"});
    REQUIRE(w != nullptr);
    return w;
  }
};

std::vector<std::string> paths(const dc::TreeSnapshot& s)
{
  std::vector<std::string> out;
  for (const auto& [path, stamp] : s.entries) {
    out.push_back(path);
  }
  return out;
}

using Paths = std::vector<std::string>;
const Paths k_all = {"a.txt", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.txt"};
const Paths k_all_dirs = {"", "sub", "sub/deep"};

} // namespace

TEST_CASE("tree watch: an untouched tree is vouched for whole, with the recorded stamps")
{
  Tree t;
  auto w = t.watch();
  // What the job does in its TMPDIR is not the tree's business.
  write_file(t.root + "/.tmp/scratch", "x");
  REQUIRE(::rename((t.root + "/.tmp").c_str(), (t.dir / "old-tmp").c_str()) == 0);
  REQUIRE(::mkdir((t.root + "/.tmp").c_str(), 0700) == 0);
  // Reading a directory changes nothing either.
  CHECK(::access((t.root + "/sub/deep").c_str(), R_OK) == 0);
  const auto s = w->snapshot();
  REQUIRE(s);
  CHECK(paths(*s) == k_all);
  CHECK(s->listed_dirs == k_all_dirs);
  for (const auto& [path, stamp] : s->entries) {
    CAPTURE(path);
    CHECK(stamp == t.stamp(path));
  }
}

TEST_CASE("tree watch: every kind of change leaves the entry, and its directory's listing, out")
{
  Tree t;
  auto w = t.watch();
  Paths want = k_all;
  Paths listed = k_all_dirs;
  const auto drop = [](Paths& from, const std::string& p) {
    from.erase(std::remove(from.begin(), from.end(), p), from.end());
  };
  SUBCASE("a write")
  {
    write_file(t.root + "/sub/b.txt", "BRAVO\n");
    drop(want, "sub/b.txt");
    drop(listed, "sub");
  }
  SUBCASE("a read: a write through a shared mapping shows only as the open")
  {
    const dc::UniqueFd fd(::open((t.root + "/a.txt").c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.get() >= 0);
    drop(want, "a.txt");
    drop(listed, "");
  }
  SUBCASE("a write through a shared mapping")
  {
    const dc::UniqueFd fd(::open((t.root + "/a.txt").c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(fd.get() >= 0);
    void* map = ::mmap(nullptr, 6, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    REQUIRE(map != MAP_FAILED);
    static_cast<char*>(map)[0] = 'A';
    ::munmap(map, 6);
    drop(want, "a.txt");
    drop(listed, "");
  }
  SUBCASE("a chmod")
  {
    REQUIRE(::chmod((t.root + "/sub/deep/c.txt").c_str(), 0600) == 0);
    drop(want, "sub/deep/c.txt");
    drop(listed, "sub/deep");
  }
  SUBCASE("a write through a hard link outside the tree, the link gone again")
  {
    const std::string link = t.dir / "link";
    REQUIRE(::link((t.root + "/sub/deep/c.txt").c_str(), link.c_str()) == 0);
    write_file(link, "CHARLIE\n");
    REQUIRE(::unlink(link.c_str()) == 0);
    drop(want, "sub/deep/c.txt");
    drop(listed, "sub/deep");
  }
  SUBCASE("a new name in a directory: its listing and its own stamp")
  {
    write_file(t.root + "/sub/new.txt", "new\n");
    drop(want, "sub");
    drop(listed, "sub");
    drop(listed, ""); // its own stamp is left out of the root's names
  }
  SUBCASE("a chmod of a directory: its stamp, not its listing")
  {
    REQUIRE(::chmod((t.root + "/sub/deep").c_str(), 0700) == 0);
    drop(want, "sub/deep");
    drop(listed, "sub");
  }
  SUBCASE("a directory moved away and back: everything beneath it")
  {
    REQUIRE(::rename((t.root + "/sub").c_str(), (t.dir / "elsewhere").c_str()) == 0);
    REQUIRE(::rename((t.dir / "elsewhere").c_str(), (t.root + "/sub").c_str()) == 0);
    want = {"a.txt"};
    listed = {}; // the root's name "sub" left and came back
  }
  SUBCASE("a file removed and made again under its name")
  {
    REQUIRE(::unlink((t.root + "/a.txt").c_str()) == 0);
    write_file(t.root + "/a.txt", "alpha\n");
    drop(want, "a.txt");
    drop(listed, "");
  }
  const auto s = w->snapshot();
  REQUIRE(s);
  CHECK(paths(*s) == want);
  CHECK(s->listed_dirs == listed);
}

TEST_CASE("tree watch: a full event queue trusts nothing")
{
  Tree t;
  auto w = t.watch();
  // Distinct names do not merge: more events than fs.inotify.max_queued_events (16384 default).
  int max_events = 16384;
  if (FILE* f = std::fopen("/proc/sys/fs/inotify/max_queued_events", "r")) {
    REQUIRE(std::fscanf(f, "%d", &max_events) == 1);
    std::fclose(f);
  }
  REQUIRE(max_events <= 200'000); // else this test would take too long
  for (int i = 0; i <= max_events / 2; ++i) {
    const std::string name = t.root + "/sub/n" + std::to_string(i);
    const dc::UniqueFd fd(::open(name.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    REQUIRE(fd.get() >= 0);
    REQUIRE(::unlink(name.c_str()) == 0);
  }
  CHECK_FALSE(w->snapshot());
}

TEST_CASE("tree watch: the next tree keeps watching what it kept and watches what is new")
{
  Tree t;
  auto first = t.watch();
  write_file(t.root + "/sub/b.txt", "BRAVO\n"); // changed: the next bundle writes it again
  REQUIRE(first->snapshot());
  // The next bundle: b.txt rewritten (a new inode), the rest kept in place, one file added.
  REQUIRE(::rename((t.root + "/sub/b.txt").c_str(), (t.dir / "trash-b").c_str()) == 0);
  write_file(t.root + "/sub/b.txt", "bravo 2\n");
  write_file(t.root + "/sub/deep/d.txt", "delta\n");
  t.tree.files = {{"a.txt", {}, t.stamp("a.txt"), true},
                  {"sub/b.txt", {}, t.stamp("sub/b.txt"), false},
                  {"sub/deep/c.txt", {}, t.stamp("sub/deep/c.txt"), true},
                  {"sub/deep/d.txt", {}, t.stamp("sub/deep/d.txt"), false}};
  t.tree.dirs = {{"sub", true}, {"sub/deep", true}};
  auto second = t.watch(first);
  // What the writer did before the seal is not a change; the old b.txt is no longer watched.
  write_file(t.dir / "trash-b", "gone\n");
  {
    const auto s = second->snapshot();
    REQUIRE(s);
    CHECK(paths(*s) ==
          Paths{"a.txt", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.txt", "sub/deep/d.txt"});
  }
  // Kept and new files alike are watched: the third tree sees a change to either.
  auto third = t.watch(second);
  write_file(t.root + "/a.txt", "ALPHA\n");
  write_file(t.root + "/sub/b.txt", "BRAVO 2\n");
  write_file(t.root + "/sub/deep/d.txt", "DELTA\n");
  const auto s = third->snapshot();
  REQUIRE(s);
  CHECK(paths(*s) == Paths{"sub", "sub/deep", "sub/deep/c.txt"});
  CHECK(s->listed_dirs == Paths{});
}

TEST_CASE("tree watch: a settled directory keeps the stamp the last snapshot vouched for")
{
  Tree t;
  auto first = t.watch();
  REQUIRE(first->snapshot());
  // The next bundle kept everything and changed nothing: no directory is stat'ed again, yet the
  // stamps handed on are what an lstat says.
  for (auto& f : t.tree.files) {
    f.kept = true;
  }
  t.tree.dirs = {{"sub", true, true}, {"sub/deep", true, true}};
  auto second = t.watch(first);
  const auto s = second->snapshot();
  REQUIRE(s);
  CHECK(paths(*s) == k_all);
  for (const auto& [path, stamp] : s->entries) {
    CAPTURE(path);
    CHECK(stamp == t.stamp(path));
  }
  // And they are still watched.
  auto third = t.watch(second);
  write_file(t.root + "/sub/deep/new.txt", "new\n");
  const auto after = third->snapshot();
  REQUIRE(after);
  CHECK(paths(*after) == Paths{"a.txt", "sub", "sub/b.txt", "sub/deep/c.txt"});
}

TEST_CASE("tree watch: a tree larger than the cap, or not on a local filesystem, is not watched")
{
  Tree t;
  SUBCASE("too large")
  {
    t.tree.files.resize(dc::TreeWatch::k_max_entries);
    CHECK(dc::TreeWatch::start(t.root_fd.get(), t.root, t.tree, nullptr, {".tmp"}) == nullptr);
  }
  SUBCASE("a filesystem whose changes may bypass this kernel's VFS (here: procfs)")
  {
    // Every watch could be added there (inotify accepts procfs), yet nothing would be seen.
    const std::string dir = "/proc/" + std::to_string(::getpid());
    const dc::UniqueFd proc(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(proc.get() >= 0);
    dc::ReusableTree tree;
    tree.files = {{"status", {}, {}, false}};
    CHECK(dc::TreeWatch::start(proc.get(), dir, tree, nullptr, {}) == nullptr);
  }
}
