#include "common/bundle_source.hpp"
#include "common/bundle_writer.hpp"

#include <doctest/doctest.h>
#include <sodium.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace {

// base/ src (what we send), dst (the fresh job root), outside (canary: must stay empty).
class Sandbox {
public:
  Sandbox()
  {
    std::string tmpl = (fs::temp_directory_path() / "dc-writer-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    m_base = tmpl;
    for (const char* d : {"src", "dst", "outside"}) {
      REQUIRE(::mkdir((m_base + "/" + d).c_str(), 0700) == 0);
    }
    m_root_fd = ::open(dst().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(m_root_fd >= 0);
  }
  ~Sandbox()
  {
    ::close(m_root_fd);
    std::error_code ec;
    fs::remove_all(m_base, ec);
  }
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  std::string src(const std::string& rel = "") const { return m_base + "/src" + sub(rel); }
  std::string dst(const std::string& rel = "") const { return m_base + "/dst" + sub(rel); }
  std::string outside() const { return m_base + "/outside"; }
  int root_fd() const { return m_root_fd; }

  // I1 for these tests: nothing appeared outside the job root.
  void check_outside_untouched() const
  {
    CHECK(fs::is_empty(outside()));
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(m_base)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"dst", "outside", "src"});
  }

private:
  static std::string sub(const std::string& rel) { return rel.empty() ? "" : "/" + rel; }
  std::string m_base;
  int m_root_fd = -1;
};

void write_file(const std::string& path, const std::string& content, mode_t mode = 0644)
{
  std::ofstream(path, std::ios::binary) << content;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string read_file(const std::string& path)
{
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

dc::BundleBegin begin_of(const dc::BundleSource& s)
{
  return {s.manifest.entries.size(), s.manifest.file_count(), s.manifest.total_bytes(),
          s.compressed_manifest.size()};
}

void feed_in_slices(const std::function<void(dc::ByteView)>& feed, dc::ByteView data,
                    std::size_t slice)
{
  for (const dc::ByteView v : dc::split_slices(data, slice)) {
    feed(v);
  }
}

bool wanted(const dc::Bytes& want, std::size_t i)
{
  return (want[i / 8] >> (i % 8)) & 1;
}

// The sender's side of one transfer: manifest, WANT, wanted blobs, end.
dc::BundleStats transfer(dc::BundleWriter& writer, const dc::BundleSource& s,
                         std::size_t slice = dc::k_max_bundle_slice, dc::Bytes* want_out = nullptr)
{
  dc::BlobCompressor compressor(s);
  feed_in_slices([&](dc::ByteView v) { writer.feed_manifest(v); }, s.compressed_manifest, slice);
  const dc::Bytes want = writer.end_manifest();
  REQUIRE(want.size() == (s.manifest.file_count() + 7) / 8);
  dc::Bytes stream; // the concatenated wanted frames, then sliced like BLOB_DATA records
  for (std::size_t i = 0; i < s.file_paths.size(); ++i) {
    if (wanted(want, i)) {
      dc::put_bytes(stream, *compressor.blob(i));
    }
  }
  feed_in_slices([&](dc::ByteView v) { writer.feed_blobs(v); }, stream, slice);
  if (want_out != nullptr) {
    *want_out = want;
  }
  return writer.finish();
}

dc::Bytes zstd_frame(const dc::Bytes& content, bool pin_size = true, int window_log = 0)
{
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (window_log != 0) {
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log);
  }
  dc::Bytes out(ZSTD_compressBound(content.size()) + 64);
  ZSTD_outBuffer zout{out.data(), out.size(), 0};
  ZSTD_inBuffer zin{content.data(), content.size(), 0};
  if (pin_size) {
    ZSTD_CCtx_setPledgedSrcSize(cctx, content.size());
  } else {
    REQUIRE(!ZSTD_isError(ZSTD_compressStream2(cctx, &zout, &zin, ZSTD_e_continue)));
  }
  const std::size_t left = ZSTD_compressStream2(cctx, &zout, &zin, ZSTD_e_end);
  REQUIRE(left == 0);
  ZSTD_freeCCtx(cctx);
  out.resize(zout.pos);
  return out;
}

dc::Bytes zstd_frame(const std::string& s, bool pin_size = true, int window_log = 0)
{
  return zstd_frame(dc::Bytes(s.begin(), s.end()), pin_size, window_log);
}

// A hand-made frame: `blocks` RLE blocks of `block_size` zero bytes (4 bytes each), window
// 2^window_log, optional frame content size. Many GiB of output from a few hundred KiB.
dc::Bytes rle_bomb(unsigned window_log, std::uint64_t blocks, std::uint32_t block_size = 128 << 10,
                   std::int64_t content_size = -1)
{
  dc::Bytes f = {0x28, 0xb5, 0x2f, 0xfd};                         // magic, little-endian
  f.push_back(content_size >= 0 ? 0xc0 : 0x00);                   // FCS 8 bytes or none
  f.push_back(static_cast<std::uint8_t>((window_log - 10) << 3)); // window descriptor
  for (int i = 0; content_size >= 0 && i < 8; ++i) {
    f.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(content_size) >> (8 * i)));
  }
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint32_t header = (b + 1 == blocks ? 1u : 0u) | (1u << 1) | (block_size << 3);
    f.push_back(static_cast<std::uint8_t>(header));
    f.push_back(static_cast<std::uint8_t>(header >> 8));
    f.push_back(static_cast<std::uint8_t>(header >> 16));
    f.push_back(0x00);
  }
  return f;
}

dc::Hash blake2b(const dc::Bytes& content)
{
  dc::Hash h{};
  crypto_generichash(h.data(), h.size(), content.data(), content.size(), nullptr, 0);
  return h;
}

// A hostile sender: any manifest (encoded without checks), declared counts taken from it unless
// overridden, then raw blob bytes.
struct Hostile {
  dc::Bytes manifest;
  dc::BundleBegin begin;
};

struct RawEntry {
  std::uint8_t kind = 2;
  std::string path;
  std::uint64_t size = 0;
  dc::Hash hash{};
};

Hostile hostile(const std::vector<RawEntry>& entries)
{
  Hostile h;
  dc::put_bytes(h.manifest, dc::as_bytes("DCMPMANI"));
  std::uint32_t files = 0;
  std::uint64_t bytes = 0;
  for (const auto& e : entries) {
    files += e.kind == 2 ? 1 : 0;
    bytes += e.kind == 2 ? e.size : 0;
  }
  dc::put_be<std::uint32_t>(h.manifest, static_cast<std::uint32_t>(entries.size()));
  dc::put_be<std::uint32_t>(h.manifest, files);
  for (const auto& e : entries) {
    dc::put_be<std::uint8_t>(h.manifest, e.kind);
    dc::put_be<std::uint8_t>(h.manifest, 0);
    dc::put_be<std::int64_t>(h.manifest, 1'000'000'000);
    dc::put_be<std::uint32_t>(h.manifest, 0);
    dc::put_be<std::uint16_t>(h.manifest, static_cast<std::uint16_t>(e.path.size()));
    dc::put_bytes(h.manifest, dc::as_bytes(e.path));
    if (e.kind == 2) {
      dc::put_be<std::uint64_t>(h.manifest, e.size);
      dc::put_bytes(h.manifest, e.hash);
    }
  }
  h.manifest = zstd_frame(h.manifest);
  h.begin = {entries.size(), files, bytes, h.manifest.size()};
  return h;
}

RawEntry file_of(std::string path, const std::string& content)
{
  const dc::Bytes b(content.begin(), content.end());
  return {2, std::move(path), b.size(), blake2b(b)};
}

RawEntry dir_of(std::string path)
{
  return {1, std::move(path), 0, {}};
}

template <typename F>
dc::BundleError error_of(F&& f)
{
  try {
    f();
  } catch (const dc::BundleError& e) {
    return e;
  }
  FAIL("no BundleError");
  return dc::BundleError("", "");
}

long max_rss_kib()
{
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// src: a.txt, bin/run.sh (0755), bin/empty, docs/deep/er/note, docs/copy (same as a.txt), big
void make_tree(const Sandbox& box)
{
  for (const char* d : {"bin", "docs", "docs/deep", "docs/deep/er"}) {
    REQUIRE(::mkdir(box.src(d).c_str(), 0700) == 0);
  }
  write_file(box.src("a.txt"), "hello\n");
  write_file(box.src("bin/run.sh"), "#!/bin/sh\necho run\n", 0750);
  write_file(box.src("bin/empty"), "", 0600);
  write_file(box.src("docs/deep/er/note"), "deep");
  write_file(box.src("docs/copy"), "hello\n", 0700);
  std::string big(5 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  write_file(box.src("big"), big);
  const timespec t[2] = {{0, UTIME_OMIT}, {1'234'567'890, 987'654'321}};
  REQUIRE(::utimensat(AT_FDCWD, box.src("docs/deep").c_str(), t, 0) == 0);
  REQUIRE(::utimensat(AT_FDCWD, box.src("a.txt").c_str(), t, 0) == 0);
}

} // namespace

TEST_CASE("bundle_writer: scan, compress, write: contents, exact modes and mtimes")
{
  for (const std::size_t slice :
       {std::size_t{dc::k_max_bundle_slice}, std::size_t{1000}, std::size_t{1}}) {
    CAPTURE(slice);
    Sandbox box;
    make_tree(box);
    const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    std::vector<std::size_t> created;
    writer.set_test_hook([&](std::size_t i) { created.push_back(i); });
    dc::Bytes want;
    const dc::BundleStats stats = transfer(writer, s, slice, &want);

    CHECK(stats.files == 6);
    CHECK(stats.bytes == s.manifest.total_bytes());
    CHECK(stats.from_cache == 0);
    CHECK(created.size() == s.manifest.entries.size());
    // files: a.txt big bin/empty bin/run.sh docs/copy docs/deep/er/note; docs/copy = a.txt
    CHECK(want == dc::Bytes{0b0010'1111});
    for (std::size_t i = 0; i < s.manifest.entries.size(); ++i) {
      const dc::ManifestEntry& e = s.manifest.entries[i];
      CAPTURE(e.path);
      struct stat st {};
      REQUIRE(::lstat(box.dst(e.path).c_str(), &st) == 0);
      CHECK(st.st_mtim.tv_sec == e.mtime_s);
      CHECK(st.st_mtim.tv_nsec == e.mtime_ns);
      if (e.kind == dc::EntryKind::dir) {
        CHECK(S_ISDIR(st.st_mode));
        CHECK((st.st_mode & 07777) == 0755);
      } else {
        CHECK(S_ISREG(st.st_mode));
        CHECK((st.st_mode & 07777) == (e.executable ? 0755 : 0644));
        CHECK(read_file(box.dst(e.path)) == read_file(box.src(e.path)));
      }
    }
    box.check_outside_untouched();
    CHECK_THROWS_AS(writer.finish(), dc::BundleError); // once only
  }
}

TEST_CASE("bundle_writer: identical content is wanted once and copied from its twin")
{
  Sandbox box;
  write_file(box.src("a"), "same");
  write_file(box.src("b"), "other");
  write_file(box.src("c"), "same", 0755);
  write_file(box.src("d"), "");
  write_file(box.src("e"), "");
  const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
  dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
  dc::Bytes want;
  const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
  CHECK(want == dc::Bytes{0b0000'1011}); // a, b, d (empty files are wanted: one empty frame)
  CHECK(stats.files == 5);
  CHECK(read_file(box.dst("c")) == "same");
  struct stat st {};
  REQUIRE(::stat(box.dst("c").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(st.st_mtim.tv_sec == s.manifest.entries[2].mtime_s);
  CHECK(fs::file_size(box.dst("e")) == 0);
}

TEST_CASE("bundle_writer: empty bundle")
{
  Sandbox box;
  const dc::BundleSource s = dc::scan_sources({});
  dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
  const dc::BundleStats stats = transfer(writer, s);
  CHECK(stats.files == 0);
  CHECK(fs::is_empty(box.dst()));
}

TEST_CASE("bundle_writer: D1/D7/D12 hostile manifests are refused before anything is created")
{
  const std::vector<std::pair<std::vector<RawEntry>, std::pair<std::string, long long>>> cases = {
      {{file_of("../x", "x")}, {"bad_path", 0}},
      {{dir_of("a"), file_of("a/../../x", "x")}, {"bad_path", 1}},
      {{file_of("/etc/x", "x")}, {"bad_path", 0}},
      {{file_of("a\\b", "x")}, {"bad_path", 0}},
      {{file_of("\xc0\xaf", "x")}, {"bad_path", 0}},
      {{file_of("a", "x"), file_of("a", "y")}, {"bad_path", 1}},
      {{file_of("a", "x"), file_of("a/b", "y")}, {"bad_path", 1}},
      {{dir_of("a"), file_of("a", "y")}, {"bad_path", 1}},
      {{file_of("b", "x"), file_of("a", "y")}, {"bad_bundle", 1}},
      {{file_of("a/b", "x")}, {"bad_bundle", 0}},
      {{{3, "link", 0, {}}, file_of("link/f", "x")}, {"bad_bundle", 0}}, // D4/D5 symlink kind
  };
  for (const auto& [entries, expected] : cases) {
    CAPTURE(dc::escape_for_log(entries.back().path));
    Sandbox box;
    const Hostile h = hostile(entries);
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    const dc::BundleError e = error_of([&] { writer.end_manifest(); });
    CHECK(e.code() == expected.first);
    CHECK(e.ref() == expected.second);
    CHECK(fs::is_empty(box.dst()));
    box.check_outside_untouched();
    CHECK_THROWS_AS(writer.feed_blobs({}), dc::BundleError); // unusable after a failure
  }
}

TEST_CASE("bundle_writer: D4 a symlink planted between entries is never followed")
{
  SUBCASE("directory replaced by a symlink before a file inside it")
  {
    Sandbox box;
    REQUIRE(::mkdir(box.src("a").c_str(), 0755) == 0);
    write_file(box.src("a/f"), "payload");
    const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    writer.set_test_hook([&](std::size_t i) {
      if (i == 0) { // dir "a" was just created
        REQUIRE(::rmdir(box.dst("a").c_str()) == 0);
        REQUIRE(::symlink(box.outside().c_str(), box.dst("a").c_str()) == 0);
      }
    });
    const dc::BundleError e = error_of([&] { transfer(writer, s); });
    CHECK(e.code() == "bad_path");
    CHECK(e.ref() == 1);
    box.check_outside_untouched();
  }
  SUBCASE("directory replaced by a symlink before a subdirectory")
  {
    Sandbox box;
    REQUIRE(::mkdir(box.src("a").c_str(), 0755) == 0);
    REQUIRE(::mkdir(box.src("a/b").c_str(), 0755) == 0);
    const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    writer.set_test_hook([&](std::size_t i) {
      if (i == 0) {
        REQUIRE(::rmdir(box.dst("a").c_str()) == 0);
        REQUIRE(::symlink(box.outside().c_str(), box.dst("a").c_str()) == 0);
      }
    });
    const dc::BundleError e = error_of([&] { transfer(writer, s); });
    CHECK(e.code() == "bad_path");
    CHECK(e.ref() == 1);
    box.check_outside_untouched();
  }
  SUBCASE("symlink planted where the next file goes, and where a duplicate goes")
  {
    for (const char* victim : {"b", "c"}) {
      CAPTURE(victim);
      Sandbox box;
      write_file(box.src("a"), "one");
      write_file(box.src("b"), "two");
      write_file(box.src("c"), "one"); // a duplicate of a: copied at finish()
      const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
      dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
      writer.set_test_hook([&](std::size_t i) {
        if (i == 0) {
          REQUIRE(::symlink((box.outside() + "/planted").c_str(), box.dst(victim).c_str()) == 0);
        }
      });
      const dc::BundleError e = error_of([&] { transfer(writer, s); });
      CHECK(e.code() == "bad_path");
      CHECK(e.ref() == (victim == std::string("b") ? 1 : 2));
      box.check_outside_untouched();
    }
  }
  SUBCASE("the twin of a duplicate replaced by a symlink")
  {
    Sandbox box;
    write_file(box.outside() + "/../secret", "one"); // outside the job root, same content
    write_file(box.src("a"), "one");
    write_file(box.src("c"), "one");
    const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    dc::BlobCompressor compressor(s);
    writer.feed_manifest(s.compressed_manifest);
    CHECK(writer.end_manifest() == dc::Bytes{0b01});
    writer.feed_blobs(*compressor.blob(0));
    REQUIRE(::unlink(box.dst("a").c_str()) == 0);
    REQUIRE(::symlink("../secret", box.dst("a").c_str()) == 0);
    const dc::BundleError e = error_of([&] { writer.finish(); });
    CHECK(e.code() == "bad_path");
    CHECK(e.ref() == 1);
    CHECK_FALSE(fs::exists(box.dst("c")));
    ::unlink((box.outside() + "/../secret").c_str());
    box.check_outside_untouched();
  }
}

TEST_CASE("bundle_writer: D8 decompression bombs stop early with bounded memory")
{
  const long rss_before = max_rss_kib();
  const auto started = std::chrono::steady_clock::now();
  SUBCASE("4 GiB of zeros in a blob declared as a 1 KiB file in a 1 KiB bundle")
  {
    Sandbox box;
    const Hostile h = hostile({file_of("f", std::string(1024, '\0'))});
    const dc::Bytes bomb = rle_bomb(17, 32768); // 4 GiB of output, 128 KiB of frame
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    const dc::BundleError e = error_of(
        [&] { feed_in_slices([&](dc::ByteView v) { writer.feed_blobs(v); }, bomb, 65518); });
    CHECK(e.code() == "bundle_too_large");
    CHECK(e.ref() == 0);
    CHECK(fs::file_size(box.dst("f")) <= 1024);
    box.check_outside_untouched();
  }
  SUBCASE("a 1 KiB file in a bundle that allows more still stops at the file's size")
  {
    Sandbox box;
    Hostile h =
        hostile({file_of("a", std::string(1024, '\0')), file_of("b", std::string(1 << 20, 'b'))});
    const dc::Bytes bomb = rle_bomb(17, 32768);
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    const dc::BundleError e = error_of([&] { writer.feed_blobs(bomb); });
    CHECK(e.code() == "bad_bundle");
    CHECK(e.ref() == 0);
    box.check_outside_untouched();
  }
  SUBCASE("a bomb whose header pins the 1 KiB size")
  {
    Sandbox box;
    const Hostile h = hostile({file_of("f", std::string(1024, '\0'))});
    const dc::Bytes bomb = rle_bomb(17, 32768, 128 << 10, 1024);
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    const dc::BundleError e = error_of([&] { writer.feed_blobs(bomb); });
    CHECK((e.code() == "bundle_too_large" || e.code() == "bad_bundle"));
    box.check_outside_untouched();
  }
  SUBCASE("a manifest bomb: one declared entry, 4 GiB of manifest")
  {
    Sandbox box;
    const dc::Bytes bomb = rle_bomb(17, 32768);
    // One declared entry allows a manifest of ~4 KiB: 128 KiB of compressed manifest is refused
    // at BUNDLE_BEGIN already. 1000 entries allow ~4 MiB, so the bomb must be stopped while
    // it decodes.
    CHECK(error_of([&] {
            dc::BundleWriter w(box.root_fd(), {1, 1, 0, bomb.size()}, {});
          }).code() == "bundle_too_large");
    dc::BundleWriter writer(box.root_fd(), {1000, 0, 0, bomb.size()}, {});
    const dc::BundleError e = error_of(
        [&] { feed_in_slices([&](dc::ByteView v) { writer.feed_manifest(v); }, bomb, 65518); });
    CHECK(e.code() == "bundle_too_large");
    CHECK(fs::is_empty(box.dst()));
    box.check_outside_untouched();
  }
  SUBCASE("the expanded-bytes limit of the worker binds even when the declaration is honest")
  {
    Sandbox box;
    const Hostile h = hostile({file_of("f", std::string(4096, 'x'))});
    dc::BundleLimits limits;
    limits.max_bytes = 1024;
    CHECK(error_of([&] { dc::BundleWriter w(box.root_fd(), h.begin, limits); }).code() ==
          "bundle_too_large");
    CHECK(fs::is_empty(box.dst()));
  }
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
  CHECK(max_rss_kib() - rss_before < 64 * 1024);
}

TEST_CASE("bundle_writer: D9 frames needing a window over 2^27, skippable frames, no dictionaries")
{
  SUBCASE("crafted window 2^28 and 2^31 descriptors")
  {
    for (const unsigned log : {28u, 31u}) {
      Sandbox box;
      const Hostile h = hostile({{2, "f", std::uint64_t{1} << 32, {}}});
      dc::BundleWriter writer(box.root_fd(), h.begin, {});
      writer.feed_manifest(h.manifest);
      writer.end_manifest();
      const dc::BundleError e = error_of([&] { writer.feed_blobs(rle_bomb(log, 2)); });
      CHECK(e.code() == "bad_bundle");
      CHECK(std::string(e.what()).find("window") != std::string::npos);
      box.check_outside_untouched();
    }
  }
  SUBCASE("real zstd frame with windowLog 28 and no pinned size")
  {
    Sandbox box;
    const std::string content(1 << 20, 'z');
    const Hostile h = hostile({file_of("f", content)});
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    const dc::BundleError e = error_of([&] { writer.feed_blobs(zstd_frame(content, false, 28)); });
    CHECK(e.code() == "bad_bundle");
  }
  SUBCASE("a window far larger than a small file needs (16 MiB for 1 KiB)")
  {
    Sandbox box;
    const Hostile h = hostile({file_of("f", std::string(1024, '\0'))});
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    CHECK(error_of([&] { writer.feed_blobs(rle_bomb(24, 1, 1024)); }).code() == "bad_bundle");
  }
  SUBCASE("a small window for the same file is fine (no pinned size, RLE block)")
  {
    Sandbox box;
    const Hostile h = hostile({file_of("f", std::string(1024, '\0'))});
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    writer.feed_blobs(rle_bomb(17, 1, 1024));
    CHECK(writer.finish().bytes == 1024);
    CHECK(read_file(box.dst("f")) == std::string(1024, '\0'));
  }
  SUBCASE("skippable frame before the blob, and as the manifest")
  {
    const dc::Bytes skippable = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4};
    Sandbox box;
    const Hostile h = hostile({file_of("f", "x")});
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    CHECK(error_of([&] { writer.feed_blobs(skippable); }).code() == "bad_bundle");

    dc::BundleWriter w2(box.root_fd(), {0, 0, 0, skippable.size()}, {});
    CHECK(error_of([&] { w2.feed_manifest(skippable); }).code() == "bad_bundle");
  }
  SUBCASE("garbage instead of a frame")
  {
    Sandbox box;
    const Hostile h = hostile({file_of("f", "x")});
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    writer.end_manifest();
    CHECK(error_of([&] { writer.feed_blobs(dc::as_bytes("GET / HTTP/1.1\r\n")); }).code() ==
          "bad_bundle");
  }
}

TEST_CASE("bundle_writer: D9/D11 size lies, hash mismatch, trailing bytes, early BUNDLE_END")
{
  const std::string content = "0123456789";
  const auto writer_for = [&](Sandbox& box, const Hostile& h) {
    auto w = std::make_unique<dc::BundleWriter>(box.root_fd(), h.begin, dc::BundleLimits{});
    w->feed_manifest(h.manifest);
    CHECK(w->end_manifest() == dc::Bytes{0b1});
    return w;
  };
  const Hostile h = hostile({file_of("f", content)});
  SUBCASE("pinned frame size disagrees with the manifest: rejected at the header")
  {
    Sandbox box;
    auto w = writer_for(box, h);
    CHECK(error_of([&] { w->feed_blobs(zstd_frame("012345678")); }).code() == "bad_bundle");
    CHECK(error_of([&] { w->finish(); }).code() == "bad_bundle");
  }
  SUBCASE("unpinned frame decodes to fewer bytes")
  {
    Sandbox box;
    auto w = writer_for(box, h);
    CHECK(error_of([&] { w->feed_blobs(zstd_frame("012345678", false)); }).code() == "bad_bundle");
  }
  SUBCASE("unpinned frame decodes to more bytes")
  {
    Sandbox box;
    auto w = writer_for(box, h);
    const auto e = error_of([&] { w->feed_blobs(zstd_frame("0123456789a", false)); });
    CHECK(e.code() == "bad_bundle");
    CHECK(e.ref() == 0);
  }
  SUBCASE("right size, wrong content")
  {
    Sandbox box;
    auto w = writer_for(box, h);
    const auto e = error_of([&] { w->feed_blobs(zstd_frame("0123456780")); });
    CHECK(e.code() == "bad_bundle");
    CHECK(std::string(e.what()).find("hash") != std::string::npos);
  }
  SUBCASE("bytes after the last wanted frame, in the same slice or the next")
  {
    Sandbox box;
    auto w = writer_for(box, h);
    dc::Bytes stream = zstd_frame(content);
    stream.push_back(0);
    CHECK(error_of([&] { w->feed_blobs(stream); }).code() == "bad_bundle");

    Sandbox box2;
    auto w2 = writer_for(box2, h);
    w2->feed_blobs(zstd_frame(content));
    CHECK(error_of([&] { w2->feed_blobs(zstd_frame(content)); }).code() == "bad_bundle");
  }
  SUBCASE("BUNDLE_END before any blob, and in the middle of a frame")
  {
    Sandbox box;
    auto w = writer_for(box, h);
    const auto e = error_of([&] { w->finish(); });
    CHECK(e.code() == "bad_bundle");
    CHECK(e.ref() == 0);

    Sandbox box2;
    auto w2 = writer_for(box2, h);
    const dc::Bytes frame = zstd_frame(content);
    w2->feed_blobs(dc::ByteView(frame).first(frame.size() - 1));
    CHECK(error_of([&] { w2->finish(); }).code() == "bad_bundle");
  }
  SUBCASE("the same frame fed whole succeeds (control)")
  {
    Sandbox box;
    auto w = writer_for(box, h);
    w->feed_blobs(zstd_frame(content));
    CHECK(w->finish().bytes == 10);
    CHECK(read_file(box.dst("f")) == content);
  }
}

TEST_CASE("bundle_writer: declared counts and the manifest stream are checked")
{
  SUBCASE("D10: 10^6 + 1 declared entries are refused before anything is created")
  {
    Sandbox box;
    const auto e = error_of([&] { dc::BundleWriter w(box.root_fd(), {1'000'001, 0, 0, 100}, {}); });
    CHECK(e.code() == "bundle_too_large");
    CHECK(fs::is_empty(box.dst()));
    CHECK(error_of([&] {
            dc::BundleWriter w(box.root_fd(), {10, 0, 0, 1ull << 40}, {});
          }).code() == "bundle_too_large");
    CHECK(error_of([&] {
            dc::BundleWriter w(box.root_fd(), {1, 2, 0, 10}, {});
          }).code() == "bad_bundle");
    CHECK(error_of([&] {
            dc::BundleWriter w(box.root_fd(), {1, 1, 1ull << 40, 10}, {});
          }).code() == "bundle_too_large");
  }
  SUBCASE("D10: a header that declares fewer entries than the manifest holds")
  {
    Sandbox box;
    Hostile h = hostile({file_of("a", "1"), file_of("b", "2"), file_of("c", "3")});
    h.begin.entries = 2;
    h.begin.files = 2;
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    // Rejected as the entry count passes the declared value.
    writer.feed_manifest(h.manifest);
    CHECK(error_of([&] { writer.end_manifest(); }).code() == "bundle_too_large");
    CHECK(fs::is_empty(box.dst()));
  }
  SUBCASE("declared bytes lower than the manifest's total")
  {
    Sandbox box;
    Hostile h = hostile({file_of("a", "12345")});
    h.begin.bytes = 4;
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    CHECK(error_of([&] { writer.end_manifest(); }).code() == "bundle_too_large");
  }
  SUBCASE("declaration larger than the manifest")
  {
    Sandbox box;
    Hostile h = hostile({file_of("a", "12345")});
    h.begin.entries = 2;
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    writer.feed_manifest(h.manifest);
    CHECK(error_of([&] { writer.end_manifest(); }).code() == "bad_bundle");
  }
  SUBCASE("more or fewer compressed manifest bytes than declared, trailing bytes, truncation")
  {
    const Hostile h = hostile({file_of("a", "12345")});
    {
      Sandbox box;
      dc::BundleWriter writer(box.root_fd(), {1, 1, 5, h.manifest.size() - 1}, {});
      CHECK(error_of([&] { writer.feed_manifest(h.manifest); }).code() == "bad_bundle");
    }
    {
      Sandbox box;
      dc::Bytes longer = h.manifest;
      longer.push_back(0);
      dc::BundleWriter writer(box.root_fd(), {1, 1, 5, longer.size()}, {});
      CHECK(error_of([&] { writer.feed_manifest(longer); }).code() == "bad_bundle");
    }
    {
      Sandbox box;
      dc::BundleWriter writer(box.root_fd(), {1, 1, 5, h.manifest.size() + 1}, {});
      writer.feed_manifest(h.manifest);
      CHECK(error_of([&] { writer.end_manifest(); }).code() == "bad_bundle");
    }
    {
      Sandbox box;
      dc::BundleWriter writer(box.root_fd(), h.begin, {});
      writer.feed_manifest(dc::ByteView(h.manifest).first(h.manifest.size() - 1));
      CHECK(error_of([&] { writer.end_manifest(); }).code() == "bad_bundle");
    }
  }
  SUBCASE("calls out of order")
  {
    Sandbox box;
    const Hostile h = hostile({file_of("a", "12345")});
    dc::BundleWriter writer(box.root_fd(), h.begin, {});
    CHECK(error_of([&] { writer.feed_blobs(zstd_frame("12345")); }).code() == "bad_bundle");
    dc::BundleWriter w2(box.root_fd(), h.begin, {});
    CHECK(error_of([&] { w2.finish(); }).code() == "bad_bundle");
    dc::BundleWriter w3(box.root_fd(), h.begin, {});
    w3.feed_manifest(h.manifest);
    w3.end_manifest();
    CHECK(error_of([&] { w3.feed_manifest(h.manifest); }).code() == "bad_bundle");
  }
}

TEST_CASE("bundle_writer: truncated or bit-flipped blob streams never crash and never escape")
{
  Sandbox src_box;
  write_file(src_box.src("a"), std::string(5000, 'a') + "tail");
  write_file(src_box.src("b"), "bee");
  const dc::BundleSource s = dc::scan_sources({src_box.src() + "/"});
  dc::BlobCompressor compressor(s);
  dc::Bytes stream = *compressor.blob(0);
  dc::put_bytes(stream, *compressor.blob(1));
  for (std::size_t pos = 0; pos < stream.size(); pos += 3) {
    CAPTURE(pos);
    Sandbox box;
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    writer.feed_manifest(s.compressed_manifest);
    writer.end_manifest();
    dc::Bytes evil = stream;
    evil[pos] ^= 0x20;
    bool ok = false;
    try {
      writer.feed_blobs(evil);
      writer.finish();
      ok = true;
    } catch (const dc::BundleError& e) {
      CHECK((e.code() == "bad_bundle" || e.code() == "bundle_too_large"));
    }
    if (ok) { // a flip zstd cannot see must still leave exactly the right bytes
      CHECK(read_file(box.dst("a")) == read_file(src_box.src("a")));
      CHECK(read_file(box.dst("b")) == "bee");
    }
    box.check_outside_untouched();
  }
}

TEST_CASE("bundle_writer: a thousand small files in nested directories, half of them twins")
{
  Sandbox box;
  for (int d = 0; d < 10; ++d) {
    const std::string dir = box.src("d" + std::to_string(d));
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    REQUIRE(::mkdir((dir + "/x").c_str(), 0755) == 0);
    for (int f = 0; f < 100; ++f) {
      write_file(dir + "/x/f" + std::to_string(f), std::to_string(d * 1000 + f % 50));
    }
  }
  const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
  dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
  dc::Bytes want;
  const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
  CHECK(stats.files == 1000);
  std::size_t wanted_count = 0;
  for (std::size_t i = 0; i < 1000; ++i) {
    wanted_count += wanted(want, i) ? 1 : 0;
  }
  CHECK(wanted_count == 500); // f0..f49 and f50..f99 share content per directory
  CHECK(read_file(box.dst("d7/x/f73")) == "7023");
  box.check_outside_untouched();
}

namespace {

// A BlobStore in memory: what it holds, what it was offered; `corrupt` serves wrong bytes.
class MemoryStore final : public dc::BlobStore {
public:
  bool fill(int fd, const dc::Hash& hash, std::uint64_t size, std::string_view) override
  {
    ++asked;
    const auto it = blobs.find(hash);
    if (it == blobs.end() || it->second.size() != size) {
      return false;
    }
    if (corrupt) {
      return false; // a real store notices the bad hash and leaves fd empty
    }
    REQUIRE(::write(fd, it->second.data(), it->second.size()) ==
            static_cast<ssize_t>(it->second.size()));
    return true;
  }
  void add(int fd, const dc::Hash& hash, std::uint64_t size) noexcept override
  {
    std::string content(size, '\0');
    if (::pread(fd, content.data(), size, 0) == static_cast<ssize_t>(size)) {
      blobs[hash] = content;
      ++added;
    }
  }
  std::map<dc::Hash, std::string> blobs;
  bool corrupt = false;
  int asked = 0, added = 0;
};

} // namespace

TEST_CASE("bundle writer: a store fills what it holds before WANT and receives what verified")
{
  Sandbox box;
  write_file(box.src("a.txt"), "alpha\n");
  write_file(box.src("b.txt"), "beta\n");
  write_file(box.src("twin.txt"), "alpha\n");
  write_file(box.src("run.sh"), "#!/bin/sh\n", 0755);
  const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
  MemoryStore store;

  { // first transfer: nothing held, every distinct blob wanted and offered to the store
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {}, &store);
    dc::Bytes want;
    const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
    CHECK(stats.from_cache == 0);
    CHECK(store.added == 3); // a.txt, b.txt, run.sh; twin.txt is a copy of a.txt
    CHECK(store.blobs.size() == 3);
  }
  fs::remove_all(box.dst());
  REQUIRE(::mkdir(box.dst().c_str(), 0700) == 0);
  const int root = ::open(box.dst().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(root >= 0);

  // b.txt changes: only it is wanted, the rest comes from the store with modes and mtimes.
  write_file(box.src("b.txt"), "beta, edited\n");
  const dc::BundleSource s2 = dc::scan_sources({box.src() + "/"});
  dc::BundleWriter writer(root, begin_of(s2), {}, &store);
  dc::Bytes want;
  const dc::BundleStats stats = transfer(writer, s2, dc::k_max_bundle_slice, &want);
  // files in manifest order: a.txt, b.txt, run.sh, twin.txt
  CHECK_FALSE(wanted(want, 0));
  CHECK(wanted(want, 1));
  CHECK_FALSE(wanted(want, 2));
  CHECK_FALSE(wanted(want, 3));
  CHECK(stats.files == 4);
  CHECK(stats.from_cache == 3); // a.txt, run.sh and a.txt's twin
  CHECK(read_file(box.dst("a.txt")) == "alpha\n");
  CHECK(read_file(box.dst("twin.txt")) == "alpha\n");
  CHECK(read_file(box.dst("b.txt")) == "beta, edited\n");
  struct stat st {};
  REQUIRE(::stat(box.dst("run.sh").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(st.st_mtim.tv_sec == s2.manifest.entries[2].mtime_s);
  ::close(root);
  box.check_outside_untouched();
}

TEST_CASE("bundle writer: a file the store cannot verify is wanted and written from its blob")
{
  Sandbox box;
  write_file(box.src("a.txt"), "alpha\n");
  const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
  MemoryStore store;
  store.blobs[s.manifest.entries[0].hash] = "alpha\n";
  store.corrupt = true;
  dc::BundleWriter writer(box.root_fd(), begin_of(s), {}, &store);
  dc::Bytes want;
  const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
  CHECK(store.asked == 1);
  CHECK(wanted(want, 0));
  CHECK(stats.from_cache == 0);
  CHECK(read_file(box.dst("a.txt")) == "alpha\n");
}

namespace {

// Every entry beneath `root` but the top-level names in `skip`, as "path kind mode content" lines
// in path order: two trees with equal listings hold the same files, modes and bytes.
std::vector<std::string> listing(const std::string& root, const std::vector<std::string>& skip = {})
{
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    const std::string rel = fs::relative(it->path(), root).string();
    if (it.depth() == 0 && std::find(skip.begin(), skip.end(), rel) != skip.end()) {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    REQUIRE(::lstat(it->path().c_str(), &st) == 0);
    const char* kind = S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : "other";
    out.push_back(rel + " " + kind + " " + std::to_string(st.st_mode & 07777) + " mtime " +
                  std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) +
                  " " + (S_ISREG(st.st_mode) ? read_file(it->path()) : ""));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A directory on the same filesystem as the sandbox for what reconcile_tree moves out.
struct Trash {
  Trash()
  {
    std::string tmpl = (fs::temp_directory_path() / "dc-trash-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
    fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(fd >= 0);
  }
  ~Trash()
  {
    ::close(fd);
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string path;
  int fd = -1;
};

// The reuse tests' source: 8 files in 3 directories, one twin, one executable.
void make_reuse_tree(const Sandbox& box)
{
  REQUIRE(::mkdir(box.src("sub").c_str(), 0700) == 0);
  REQUIRE(::mkdir(box.src("sub/deep").c_str(), 0700) == 0);
  for (const char* name : {"a.txt", "b.txt", "c.txt", "d.txt"}) {
    write_file(box.src(name), std::string("content of ") + name + "\n");
  }
  write_file(box.src("twin.txt"), "content of a.txt\n");
  write_file(box.src("run.sh"), "#!/bin/sh\n", 0755);
  write_file(box.src("sub/e.txt"), "echo\n");
  write_file(box.src("sub/deep/f.txt"), "foxtrot\n");
}

// Writes `s` fresh into the sandbox's job root and returns what a later bundle may reuse.
dc::ReusableTree write_reusable(const Sandbox& box, const dc::BundleSource& s)
{
  dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
  transfer(writer, s);
  // Past the timestamp tick of the last write, so the files count as older than the seal.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return writer.written_tree(dc::seal_tree(box.root_fd()));
}

} // namespace

TEST_CASE("bundle writer: reuse: unchanged files stay, everything a job did to the tree is undone")
{
  Sandbox box;
  make_reuse_tree(box);
  const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
  Sandbox fresh; // the same bundle written into an empty root: what the reused tree must equal
  {
    dc::BundleWriter writer(fresh.root_fd(), begin_of(s), {});
    transfer(writer, s);
  }
  const dc::ReusableTree tree = write_reusable(box, s);
  REQUIRE(tree.files.size() == 8);
  CHECK(listing(box.dst()) == listing(fresh.dst()));

  // What a job may do. a.txt: new bytes of the same size, mtime put back (only ctime tells).
  struct stat a_before {};
  REQUIRE(::stat(box.dst("a.txt").c_str(), &a_before) == 0);
  write_file(box.dst("a.txt"), "CONTENT OF A.TXT\n");
  const timespec a_times[2] = {a_before.st_atim, a_before.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, box.dst("a.txt").c_str(), a_times, 0) == 0);
  // b.txt renamed away and back (same inode, same bytes); c.txt replaced by a symlink out of the
  // tree; d.txt hard-linked from outside; run.sh's mode changed; sub made world-writable with
  // files and dirs added; sub/deep renamed; a file in the job's TMPDIR, which is left alone.
  REQUIRE(::rename(box.dst("b.txt").c_str(), box.dst("b.moved").c_str()) == 0);
  REQUIRE(::rename(box.dst("b.moved").c_str(), box.dst("b.txt").c_str()) == 0);
  REQUIRE(::unlink(box.dst("c.txt").c_str()) == 0);
  REQUIRE(::symlink(box.outside().c_str(), box.dst("c.txt").c_str()) == 0);
  REQUIRE(::link(box.dst("d.txt").c_str(), (box.outside() + "/link").c_str()) == 0);
  REQUIRE(::chmod(box.dst("run.sh").c_str(), 0644) == 0);
  REQUIRE(::chmod(box.dst("sub").c_str(), 0777) == 0);
  write_file(box.dst("sub/extra.txt"), "made by the job\n");
  REQUIRE(::mkdir(box.dst("new").c_str(), 0700) == 0);
  write_file(box.dst("new/out.bin"), "result\n");
  REQUIRE(::rename(box.dst("sub/deep").c_str(), box.dst("sub/deep2").c_str()) == 0);
  REQUIRE(::mkdir(box.dst(".tmp").c_str(), 0700) == 0);
  write_file(box.dst(".tmp/scratch"), "scratch\n");

  Trash trash;
  dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
  writer.reuse_tree(tree, trash.fd, {".tmp"});
  SUBCASE("stats taken by the reconcile") {}
  SUBCASE("stats from a snapshot taken before the manifest arrived")
  {
    std::optional<dc::TreeSnapshot> snapshot = dc::snapshot_tree(box.root_fd(), {".tmp"}, 1000);
    REQUIRE(snapshot);
    writer.use_snapshot(std::move(*snapshot));
  }
  dc::Bytes want;
  const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
  // files in manifest order: a.txt b.txt c.txt d.txt run.sh sub/deep/f.txt sub/e.txt twin.txt
  CHECK(want == dc::Bytes{0b0011'1111}); // all but sub/e.txt (kept) and twin.txt (a twin)
  CHECK(stats.files == 8);
  CHECK(stats.kept == 2); // sub/e.txt and twin.txt
  CHECK(stats.from_cache == 2);
  CHECK(listing(box.dst(), {".tmp"}) == listing(fresh.dst()));
  CHECK(read_file(box.dst(".tmp/scratch")) == "scratch\n");
  // Nothing was written through the symlink or the hard link.
  CHECK(std::distance(fs::directory_iterator(box.outside()), fs::directory_iterator()) == 1);
  CHECK(read_file(box.outside() + "/link") == "content of d.txt\n");
  CHECK(listing(trash.path).size() >= 5); // c.txt's link, sub/extra.txt, new/, sub/deep2/

  // The tree just written is reusable in turn: an unchanged re-send wants nothing at all.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const dc::ReusableTree again = writer.written_tree(dc::seal_tree(box.root_fd()));
  dc::BundleWriter third(box.root_fd(), begin_of(s), {});
  third.reuse_tree(again, trash.fd, {".tmp"});
  const dc::BundleStats third_stats = transfer(third, s, dc::k_max_bundle_slice, &want);
  CHECK(want == dc::Bytes{0});
  CHECK(third_stats.kept == 8);
  CHECK(listing(box.dst(), {".tmp"}) == listing(fresh.dst()));
  // Nothing changed in any directory: none had its mode or mtime set again (no new ctime).
  for (const char* dir : {"sub", "sub/deep"}) {
    struct stat st {};
    REQUIRE(::lstat(box.dst(dir).c_str(), &st) == 0);
    CHECK(dc::earlier(st.st_ctim, again.sealed));
  }

  // A directory whose mtime alone a job changed gets the manifest's mtime back.
  REQUIRE(::utimensat(AT_FDCWD, box.dst("sub/deep").c_str(), nullptr, 0) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const dc::ReusableTree fourth_tree = third.written_tree(dc::seal_tree(box.root_fd()));
  dc::BundleWriter fourth(box.root_fd(), begin_of(s), {});
  fourth.reuse_tree(fourth_tree, trash.fd, {".tmp"});
  CHECK(transfer(fourth, s, dc::k_max_bundle_slice, &want).kept == 8);
  CHECK(listing(box.dst(), {".tmp"}) == listing(fresh.dst()));
}

TEST_CASE("bundle writer: reuse: files not older than the seal and files with another hash are "
          "written again")
{
  Sandbox box;
  make_reuse_tree(box);
  const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
  dc::ReusableTree tree = write_reusable(box, s);
  Trash trash;
  SUBCASE("racy: a change within the seal's timestamp tick would be invisible")
  {
    tree.sealed = tree.files.front().stamp.ctime; // as if sealed in the same tick
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    writer.reuse_tree(tree, trash.fd, {});
    dc::Bytes want;
    const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
    CHECK(want == dc::Bytes{0b0111'1111}); // every file but twin.txt (a twin)
    CHECK(stats.kept == 0);
  }
  SUBCASE("a new bundle wants other content at the same paths")
  {
    write_file(box.src("sub/e.txt"), "ECHO\n"); // same size, another hash
    const dc::BundleSource s2 = dc::scan_sources({box.src() + "/"});
    dc::BundleWriter writer(box.root_fd(), begin_of(s2), {});
    writer.reuse_tree(tree, trash.fd, {});
    dc::Bytes want;
    const dc::BundleStats stats = transfer(writer, s2, dc::k_max_bundle_slice, &want);
    CHECK(want == dc::Bytes{0b0100'0000}); // only sub/e.txt
    CHECK(stats.kept == 7);
    CHECK(read_file(box.dst("sub/e.txt")) == "ECHO\n");
  }
  box.check_outside_untouched();
}

TEST_CASE("bundle writer: reuse: a snapshot lists the tree without following links, and what it "
          "lacks is stat'ed at the reconcile")
{
  Sandbox box;
  make_reuse_tree(box);
  const dc::BundleSource s = dc::scan_sources({box.src() + "/"});
  const dc::ReusableTree tree = write_reusable(box, s);
  REQUIRE(::mkdir(box.dst(".tmp").c_str(), 0700) == 0);
  write_file(box.dst(".tmp/scratch"), "scratch\n");
  REQUIRE(::symlink(box.outside().c_str(), box.dst("sub/out").c_str()) == 0);

  std::optional<dc::TreeSnapshot> snapshot = dc::snapshot_tree(box.root_fd(), {".tmp"}, 1000);
  REQUIRE(snapshot);
  std::vector<std::string> paths;
  for (const auto& [path, stamp] : snapshot->entries) {
    paths.push_back(path);
  }
  CHECK(paths == std::vector<std::string>{"a.txt", "b.txt", "c.txt", "d.txt", "run.sh", "sub",
                                          "sub/deep", "sub/deep/f.txt", "sub/e.txt", "sub/out",
                                          "twin.txt"});
  CHECK(S_ISLNK(snapshot->entries[9].second.mode)); // the link itself, not what it points to
  CHECK(snapshot->listed_dirs == std::vector<std::string>{"", "sub", "sub/deep"});
  CHECK_FALSE(dc::snapshot_tree(box.root_fd(), {".tmp"}, 10).has_value()); // over the cap

  SUBCASE("a whole snapshot: nothing is listed or stat'ed again")
  {
    Trash trash;
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    writer.reuse_tree(tree, trash.fd, {".tmp"});
    writer.use_snapshot(std::move(*snapshot));
    dc::Bytes want;
    const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
    CHECK(want == dc::Bytes{0});
    CHECK(stats.kept == 8);
    CHECK_FALSE(fs::is_symlink(box.dst("sub/out")));
  }
  SUBCASE("a snapshot stopped at once: the reconcile lists and stats everything itself")
  {
    // a.txt replaced by the same bytes: another inode than the one recorded.
    REQUIRE(::unlink(box.dst("a.txt").c_str()) == 0);
    write_file(box.dst("a.txt"), "content of a.txt\n");
    const std::atomic<bool> stop(true);
    std::optional<dc::TreeSnapshot> partial =
        dc::snapshot_tree(box.root_fd(), {".tmp"}, 1000, &stop);
    REQUIRE(partial);
    CHECK(partial->entries.empty());
    CHECK(partial->listed_dirs.empty());
    Trash trash;
    dc::BundleWriter writer(box.root_fd(), begin_of(s), {});
    writer.reuse_tree(tree, trash.fd, {".tmp"});
    writer.use_snapshot(std::move(*partial));
    dc::Bytes want;
    const dc::BundleStats stats = transfer(writer, s, dc::k_max_bundle_slice, &want);
    CHECK(want == dc::Bytes{0b0000'0001}); // a.txt only
    CHECK(stats.kept == 7);
    CHECK_FALSE(fs::exists(box.dst("sub/out")));
    CHECK(read_file(box.dst(".tmp/scratch")) == "scratch\n");
  }
}
