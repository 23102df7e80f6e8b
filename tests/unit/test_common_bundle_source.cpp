#include "common/bundle_source.hpp"

#define ZSTD_STATIC_LINKING_ONLY // ZSTD_getFrameHeader: check the checksum flag
#include <doctest/doctest.h>
#include <sodium.h>
#include <zstd.h>

#include <algorithm>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace {

class ScratchDir {
public:
  ScratchDir()
  {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dc-source-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    m_path = tmpl;
  }
  ~ScratchDir()
  {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string operator/(const std::string& rel) const { return m_path + "/" + rel; }
  const std::string& path() const { return m_path; }

private:
  std::string m_path;
};

void write_file(const std::string& path, const std::string& content, mode_t mode = 0644)
{
  std::ofstream(path, std::ios::binary) << content;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

void set_mtime(const std::string& path, std::int64_t s, long ns)
{
  const timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(s), ns}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

dc::Hash blake2b(const std::string& content)
{
  dc::Hash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(content.data()),
                     content.size(), nullptr, 0);
  return h;
}

std::vector<std::string> paths_of(const dc::Manifest& m)
{
  std::vector<std::string> out;
  for (const auto& e : m.entries) {
    out.push_back(e.path);
  }
  return out;
}

dc::Bytes decompress(const dc::Bytes& frame)
{
  const auto size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  REQUIRE(size != ZSTD_CONTENTSIZE_UNKNOWN);
  REQUIRE(size != ZSTD_CONTENTSIZE_ERROR);
  dc::Bytes out(size);
  const auto n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  REQUIRE(!ZSTD_isError(n));
  REQUIRE(n == size);
  return out;
}

std::string config_error(const std::vector<std::string>& args)
{
  try {
    dc::scan_sources(args);
  } catch (const dc::ConfigError& e) {
    return e.what();
  }
  FAIL("scan_sources accepted the arguments");
  return {};
}

// src/ a.txt, run.sh (executable), sub/ b, sub/deeper/ c
void make_tree(const ScratchDir& dir)
{
  REQUIRE(::mkdir((dir / "src").c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir / "src/sub").c_str(), 0700) == 0);
  REQUIRE(::mkdir((dir / "src/sub/deeper").c_str(), 0755) == 0);
  write_file(dir / "src/a.txt", "alpha\n");
  write_file(dir / "src/run.sh", "#!/bin/sh\necho hi\n", 0700);
  write_file(dir / "src/sub/b", "");
  write_file(dir / "src/sub/deeper/c", std::string(3 << 20, 'c')); // several hash chunks
  set_mtime(dir / "src/a.txt", 1'600'000'000, 123'456'789);
  set_mtime(dir / "src/sub", 1'500'000'000, 5);
}

} // namespace

TEST_CASE("bundle_source: 'src/' sends the contents at the job root")
{
  ScratchDir dir;
  make_tree(dir);
  const dc::BundleSource s = dc::scan_sources({dir / "src/"});
  CHECK(paths_of(s.manifest) ==
        std::vector<std::string>{"a.txt", "run.sh", "sub", "sub/b", "sub/deeper", "sub/deeper/c"});
  CHECK(s.file_paths == std::vector<std::string>{dir / "src/a.txt", dir / "src/run.sh",
                                                 dir / "src/sub/b", dir / "src/sub/deeper/c"});
  const auto& e = s.manifest.entries;
  CHECK(e[0].kind == dc::EntryKind::file);
  CHECK_FALSE(e[0].executable);
  CHECK(e[0].size == 6);
  CHECK(e[0].hash == blake2b("alpha\n"));
  CHECK(e[0].mtime_s == 1'600'000'000);
  CHECK(e[0].mtime_ns == 123'456'789);
  CHECK(e[1].executable); // 0700: any x bit
  CHECK(e[2].kind == dc::EntryKind::dir);
  CHECK_FALSE(e[2].executable);
  CHECK(e[2].mtime_s == 1'500'000'000);
  CHECK(e[2].mtime_ns == 5);
  CHECK(e[3].size == 0);
  CHECK(e[3].hash == blake2b(""));
  CHECK(e[5].size == (3u << 20));
  CHECK(e[5].hash == blake2b(std::string(3 << 20, 'c')));
  CHECK(s.manifest.total_bytes() == 6 + 18 + (3u << 20));

  // The compressed manifest is one frame of exactly the encoded manifest, and decodes validly.
  CHECK(decompress(s.compressed_manifest) == dc::encode_manifest(s.manifest));
  CHECK(ZSTD_findFrameCompressedSize(s.compressed_manifest.data(), s.compressed_manifest.size()) ==
        s.compressed_manifest.size());
  CHECK(dc::decode_manifest(decompress(s.compressed_manifest), {}).entries.size() == 6);

  // "src/." and "src//" mean the same as "src/".
  CHECK(paths_of(dc::scan_sources({dir / "src/."}).manifest) == paths_of(s.manifest));
  CHECK(paths_of(dc::scan_sources({dir / "src//"}).manifest) == paths_of(s.manifest));
}

TEST_CASE("bundle_source: 'src' sends the directory itself, a file goes under its base name")
{
  ScratchDir dir;
  make_tree(dir);
  write_file(dir / "notes.md", "n");
  const dc::BundleSource s = dc::scan_sources({dir / "src", dir / "notes.md"});
  CHECK(paths_of(s.manifest) == std::vector<std::string>{"notes.md", "src", "src/a.txt",
                                                         "src/run.sh", "src/sub", "src/sub/b",
                                                         "src/sub/deeper", "src/sub/deeper/c"});
  CHECK(s.file_paths.front() == dir / "notes.md");

  // "../x": only the base name counts.
  const dc::BundleSource up = dc::scan_sources({dir / "src/sub/../a.txt"});
  CHECK(paths_of(up.manifest) == std::vector<std::string>{"a.txt"});
  CHECK(up.file_paths == std::vector<std::string>{dir / "src/sub/../a.txt"});

  // A relative argument works from the current directory.
  const std::string cwd = std::filesystem::current_path().string();
  REQUIRE(::chdir((dir / "src").c_str()) == 0);
  const dc::BundleSource rel = dc::scan_sources({"sub", "a.txt"});
  REQUIRE(::chdir(cwd.c_str()) == 0);
  CHECK(paths_of(rel.manifest) ==
        std::vector<std::string>{"a.txt", "sub", "sub/b", "sub/deeper", "sub/deeper/c"});
  CHECK(rel.file_paths.front() == "a.txt");
  CHECK(rel.file_paths.back() == "sub/deeper/c");
}

TEST_CASE("bundle_source: no arguments give an empty manifest")
{
  const dc::BundleSource s = dc::scan_sources({});
  CHECK(s.manifest.entries.empty());
  CHECK(s.file_paths.empty());
  CHECK(decompress(s.compressed_manifest) == dc::encode_manifest({}));
}

TEST_CASE("bundle_source: D15 symlinks, FIFOs and sockets are refused with their paths listed")
{
  ScratchDir dir;
  make_tree(dir);
  REQUIRE(::symlink("/etc/passwd", (dir / "src/link").c_str()) == 0);
  REQUIRE(::mkfifo((dir / "src/sub/fifo").c_str(), 0644) == 0);
  const int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(sock >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string sock_path = dir / "src/sock";
  REQUIRE(sock_path.size() < sizeof addr.sun_path);
  std::copy(sock_path.begin(), sock_path.end(), addr.sun_path);
  REQUIRE(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(sock);

  const std::string msg = config_error({dir / "src/"});
  CHECK(msg.rfind("cannot send: ", 0) == 0);
  CHECK(msg.find(dir / "src/link (symbolic link)") != std::string::npos);
  CHECK(msg.find(dir / "src/sub/fifo (fifo)") != std::string::npos);
  CHECK(msg.find(dir / "src/sock (socket)") != std::string::npos);

  // A symlink given as the argument itself is refused too; "link/" would follow it like rsync.
  REQUIRE(::symlink((dir / "src/sub/deeper").c_str(), (dir / "dirlink").c_str()) == 0);
  CHECK(config_error({dir / "dirlink"}).find("dirlink (symbolic link)") != std::string::npos);
  CHECK(paths_of(dc::scan_sources({dir / "dirlink/"}).manifest) == std::vector<std::string>{"c"});
  CHECK(config_error({"/dev/null"}) == "cannot send: /dev/null (character device)");
}

TEST_CASE("bundle_source: duplicates, missing paths and unsendable names are refused")
{
  ScratchDir dir;
  REQUIRE(::mkdir((dir / "a").c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir / "b").c_str(), 0755) == 0);
  write_file(dir / "a/x", "1");
  write_file(dir / "b/x", "2");

  const std::string twice = config_error({dir / "a/x", dir / "b/x"});
  CHECK(twice.find("x (sent twice: " + (dir / "a/x") + " and " + (dir / "b/x") + ")") !=
        std::string::npos);
  CHECK(config_error({dir / "a/", dir / "b/"}).find("x (sent twice") != std::string::npos);
  CHECK(config_error({dir / "a/x", dir / "a/x"}).find("sent twice") != std::string::npos);

  CHECK(config_error({dir / "missing"}) ==
        "cannot send: " + (dir / "missing") + ": No such file or directory");
  CHECK(config_error({dir / "a/x/"}).find("Not a directory") != std::string::npos);

  write_file(dir / "a/back\\slash", "");
  write_file(dir / "a/ctl\x01", "");
  const std::string names = config_error({dir / "a/"});
  CHECK(names.find("back\\x5cslash (name not sendable: backslash)") != std::string::npos);
  CHECK(names.find("ctl\\x01 (name not sendable: control character)") != std::string::npos);
}

TEST_CASE("bundle_source: at most 20 offenders are listed")
{
  ScratchDir dir;
  REQUIRE(::mkdir((dir / "d").c_str(), 0755) == 0);
  for (int i = 0; i < 25; ++i) {
    REQUIRE(::symlink("x", (dir / ("d/l" + std::to_string(i))).c_str()) == 0);
  }
  const std::string msg = config_error({dir / "d"});
  CHECK(std::count(msg.begin(), msg.end(), '(') == 20);
  CHECK(msg.find(", and 5 more") != std::string::npos);
}

TEST_CASE("bundle_source: a wide tree walked by several threads gives one answer every time")
{
  // 30 directories of 3 levels, each with files; ignore files at several depths; refusals
  // spread over the tree. Whichever thread walks which directory, the result is the same.
  ScratchDir dir;
  std::vector<std::string> want;
  REQUIRE(::mkdir((dir / "t").c_str(), 0755) == 0);
  for (int a = 0; a < 3; ++a) {
    const std::string da = "a" + std::to_string(a);
    REQUIRE(::mkdir((dir / ("t/" + da)).c_str(), 0755) == 0);
    want.push_back(da);
    for (int b = 0; b < 10; ++b) {
      const std::string db = da + "/b" + std::to_string(b);
      REQUIRE(::mkdir((dir / ("t/" + db)).c_str(), 0755) == 0);
      want.push_back(db);
      for (int f = 0; f < 5; ++f) {
        const std::string file = db + "/f" + std::to_string(f) + (f == 4 ? ".o" : ".c");
        write_file(dir / ("t/" + file), file);
        // a1/.distcompignore leaves *.o out beneath a1 only; b3 leaves f0.c out beneath it.
        if (!(a == 1 && f == 4) && !(b == 3 && f == 0)) {
          want.push_back(file);
        }
      }
      if (b == 3) {
        write_file(dir / ("t/" + db + "/.distcompignore"), "f0.c\n");
        want.push_back(db + "/.distcompignore");
      }
    }
  }
  write_file(dir / "t/a1/.distcompignore", "*.o\n");
  want.push_back("a1/.distcompignore");
  std::sort(want.begin(), want.end());
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    CHECK(paths_of(dc::scan_sources({dir / "t/"}).manifest) == want);
  }

  // 25 links in 25 directories: the 20 listed are the first 20 in order, every time.
  for (int i = 0; i < 25; ++i) {
    const std::string link =
        "t/a" + std::to_string(i % 3) + "/b" + std::to_string(i % 10) + "/l" + std::to_string(i);
    REQUIRE(::symlink("x", (dir / link).c_str()) == 0);
  }
  const std::string first = config_error({dir / "t/"});
  CHECK(first.find(", and 5 more") != std::string::npos);
  CHECK(std::count(first.begin(), first.end(), '(') == 20);
  for (int round = 0; round < 3; ++round) {
    CHECK(config_error({dir / "t/"}) == first);
  }
}

TEST_CASE("bundle_source: BlobCompressor frames pin the size, skip the checksum, are shared")
{
  ScratchDir dir;
  make_tree(dir);
  write_file(dir / "src/twin.txt", "alpha\n");
  const dc::BundleSource s = dc::scan_sources({dir / "src/"});
  dc::BlobCompressor compressor(s, 3);
  REQUIRE(s.file_paths.size() == 5);
  for (std::size_t i = 0; i < s.file_paths.size(); ++i) {
    const auto blob = compressor.blob(i);
    std::ifstream in(s.file_paths[i], std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)), {});
    CHECK(decompress(*blob) == dc::Bytes(content.begin(), content.end()));
    ZSTD_frameHeader h{};
    REQUIRE(ZSTD_getFrameHeader(&h, blob->data(), blob->size()) == 0);
    CHECK(h.frameContentSize == content.size());
    CHECK(h.checksumFlag == 0);
    CHECK(h.windowSize <= std::max<std::uint64_t>(content.size(), 1024));
    CHECK(ZSTD_findFrameCompressedSize(blob->data(), blob->size()) == blob->size());
    CHECK(compressor.blob(i) == blob); // cached
  }
  CHECK(compressor.blob(0) == compressor.blob(4)); // a.txt and twin.txt: same content, one blob
  CHECK_THROWS_AS(compressor.blob(5), std::out_of_range);
}

TEST_CASE("bundle_source: BlobCompressor refuses files changed or removed since the scan")
{
  ScratchDir dir;
  write_file(dir / "a", "1234");
  write_file(dir / "b", "1234");
  write_file(dir / "c", "1234");
  write_file(dir / "d", "1234");
  const dc::BundleSource s = dc::scan_sources({dir / "a", dir / "b", dir / "c", dir / "d"});
  write_file(dir / "a", "12345"); // grew
  write_file(dir / "b", "123");   // shrank
  write_file(dir / "c", "abcd");  // same size, other content
  REQUIRE(::unlink((dir / "d").c_str()) == 0);
  dc::BlobCompressor compressor(s);
  for (std::size_t i = 0; i < 3; ++i) {
    try {
      compressor.blob(i);
      FAIL("changed file accepted");
    } catch (const dc::BundleError& e) {
      CHECK(e.code() == "bad_bundle");
      CHECK(e.ref() == static_cast<long long>(i));
    }
  }
  CHECK_THROWS_AS(compressor.blob(3), std::system_error);
}

TEST_CASE("bundle_source: split_slices cuts at the record body limit")
{
  CHECK(dc::split_slices({}).empty());
  const dc::Bytes data(2 * dc::k_max_bundle_slice + 1, 7);
  const auto slices = dc::split_slices(data);
  REQUIRE(slices.size() == 3);
  CHECK(slices[0].size() == 65518);
  CHECK(slices[1].size() == 65518);
  CHECK(slices[2].size() == 1);
  CHECK(slices[2].data() == data.data() + data.size() - 1);
  CHECK(dc::split_slices(data, 1).size() == data.size());
  CHECK_THROWS_AS(dc::split_slices(data, 0), std::invalid_argument);
}

namespace {

std::vector<std::string> manifest_paths(const dc::BundleSource& s)
{
  std::vector<std::string> out;
  for (const auto& e : s.manifest.entries) {
    out.push_back(e.path);
  }
  return out;
}

} // namespace

TEST_CASE("bundle source: .distcompignore files and --ignore patterns leave entries out")
{
  ScratchDir d;
  const std::string src = d / "src";
  std::filesystem::create_directories(src + "/.git/objects");
  std::filesystem::create_directories(src + "/build");
  std::filesystem::create_directories(src + "/lib/data");
  write_file(src + "/.git/objects/x", "git object");
  write_file(src + "/build/app", "binary");
  write_file(src + "/main.c", "int main;");
  write_file(src + "/main.o", "object");
  write_file(src + "/keep.o", "kept object");
  write_file(src + "/notes.tmp", "scratch");
  write_file(src + "/lib/data/big.bin", "big");
  write_file(src + "/lib/util.c", "util");
  write_file(src + "/.distcompignore", "# ours\n.git/\nbuild/\n*.o\n!keep.o\n");
  write_file(src + "/lib/.distcompignore", "/data\n");
  // An ignored symlink or socket is no reason to refuse the send.
  REQUIRE(::symlink("/etc/passwd", (src + "/build/link").c_str()) == 0);

  dc::BundleSource s = dc::scan_sources({src + "/"}, {"*.tmp"});
  CHECK(manifest_paths(s) == std::vector<std::string>{".distcompignore", "keep.o", "lib",
                                                      "lib/.distcompignore", "lib/util.c",
                                                      "main.c"});
  CHECK(s.ignored == 5); // .git, build, main.o, notes.tmp, lib/data

  // Sending the directory itself: rules stay relative to it.
  s = dc::scan_sources({src}, {"/lib/util.c"});
  CHECK(manifest_paths(s) == std::vector<std::string>{"src", "src/.distcompignore", "src/keep.o",
                                                      "src/lib", "src/lib/.distcompignore",
                                                      "src/main.c", "src/notes.tmp"});

  // What is named on the command line is sent even if a pattern matches it.
  s = dc::scan_sources({src + "/main.o"}, {"*.o"});
  CHECK(manifest_paths(s) == std::vector<std::string>{"main.o"});

  // Without rules the symlink is refused as before.
  std::filesystem::remove(src + "/.distcompignore");
  CHECK_THROWS_AS(dc::scan_sources({src + "/"}), dc::ConfigError);
}

TEST_CASE("bundle_source: BlobCompressor spools blobs past its memory budget and reads them back")
{
  ScratchDir dir;
  // Three files of poorly compressible bytes, 200 KiB each, and a budget of 256 KiB: the first
  // stays in memory, the others spool.
  std::vector<std::string> contents;
  for (int f = 0; f < 3; ++f) {
    std::string content(200 << 10, '\0');
    randombytes_buf(content.data(), content.size());
    contents.push_back(content);
    write_file(dir / ("f" + std::to_string(f)), content);
  }
  const dc::BundleSource s = dc::scan_sources({dir / "f0", dir / "f1", dir / "f2"});
  dc::BlobCompressor compressor(s, 3, 256 << 10);
  dc::Bytes scratch;
  for (std::size_t i = 0; i < 3; ++i) {
    const dc::BlobRef ref = compressor.frame(i);
    CHECK((ref.memory != nullptr) == (i == 0));
    // Read back in record-sized slices, as a node session does.
    dc::Bytes whole;
    for (std::uint64_t at = 0; at < ref.size; at += dc::k_max_bundle_slice) {
      dc::put_bytes(whole, compressor.read(ref, at, dc::k_max_bundle_slice, scratch));
    }
    CHECK(whole.size() == ref.size);
    CHECK(decompress(whole) == dc::Bytes(contents[i].begin(), contents[i].end()));
    CHECK(*compressor.blob(i) == whole);
    CHECK(compressor.frame(i).offset == ref.offset); // compressed once
  }
  CHECK(compressor.memory_bytes() <= 256 << 10);
  CHECK(compressor.spooled_bytes() > 400 << 10);
  CHECK(compressor.read(compressor.frame(1), compressor.frame(1).size, 10, scratch).empty());
}

TEST_CASE("bundle_source: a blob that failed while spooling leaves the spool usable")
{
  ScratchDir dir;
  std::string big(100 << 10, '\0');
  randombytes_buf(big.data(), big.size());
  write_file(dir / "a", big);
  write_file(dir / "b", big + "b");
  const dc::BundleSource s = dc::scan_sources({dir / "a", dir / "b"});
  write_file(dir / "a", big.substr(1) + "!"); // same size, other content: detected at the end
  dc::BlobCompressor compressor(s, 3, 0);     // everything spools
  CHECK_THROWS_AS(compressor.frame(0), dc::BundleError);
  CHECK(compressor.spooled_bytes() == 0);
  const dc::BlobRef b = compressor.frame(1);
  CHECK(b.memory == nullptr);
  CHECK(b.offset == 0);
  const std::string expected = big + "b";
  CHECK(decompress(*compressor.blob(1)) == dc::Bytes(expected.begin(), expected.end()));
}
