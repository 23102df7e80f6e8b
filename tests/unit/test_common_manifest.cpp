#include "common/manifest.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

namespace {

// One entry written byte by byte, without the encoder's checks, so tests can build hostile input.
struct RawEntry {
  std::uint8_t kind = 2;
  std::uint8_t mode = 0;
  std::string path;
  std::uint64_t size = 0;
  std::uint32_t mtime_ns = 0;
};

dc::Bytes raw_manifest(const std::vector<RawEntry>& entries, long long files = -1)
{
  std::uint32_t file_entries = 0;
  for (const auto& e : entries) {
    file_entries += e.kind == 2 ? 1 : 0;
  }
  dc::Bytes out;
  dc::put_bytes(out, dc::as_bytes("DCMPMANI"));
  dc::put_be<std::uint32_t>(out, static_cast<std::uint32_t>(entries.size()));
  dc::put_be<std::uint32_t>(out, files >= 0 ? static_cast<std::uint32_t>(files) : file_entries);
  for (const auto& e : entries) {
    dc::put_be<std::uint8_t>(out, e.kind);
    dc::put_be<std::uint8_t>(out, e.mode);
    dc::put_be<std::int64_t>(out, 1'700'000'000);
    dc::put_be<std::uint32_t>(out, e.mtime_ns);
    dc::put_be<std::uint16_t>(out, static_cast<std::uint16_t>(e.path.size()));
    dc::put_bytes(out, dc::as_bytes(e.path));
    if (e.kind == 2) {
      dc::put_be<std::uint64_t>(out, e.size);
      dc::put_bytes(out, dc::Bytes(32, 0x5a));
    }
  }
  return out;
}

RawEntry dir(std::string path)
{
  return {1, 0, std::move(path), 0, 0};
}
RawEntry file(std::string path, std::uint64_t size = 0)
{
  return {2, 0, std::move(path), size, 0};
}

// Decodes and returns the BundleError, failing the test if there is none.
dc::BundleError decode_error(const dc::Bytes& raw, const dc::BundleLimits& limits = {})
{
  try {
    dc::decode_manifest(raw, limits);
  } catch (const dc::BundleError& e) {
    return e;
  }
  FAIL("decode_manifest accepted hostile input");
  return dc::BundleError("", "");
}

void check_rejected(const dc::Bytes& raw, const std::string& code, long long ref,
                    const dc::BundleLimits& limits = {})
{
  const dc::BundleError e = decode_error(raw, limits);
  CHECK(e.code() == code);
  CHECK(e.ref() == ref);
}

} // namespace

TEST_CASE("manifest: golden bytes for a dir and an executable file")
{
  dc::Manifest m;
  dc::ManifestEntry d;
  d.kind = dc::EntryKind::dir;
  d.mtime_s = 0x0102030405060708;
  d.mtime_ns = 0x11223344;
  d.path = "d";
  dc::ManifestEntry f;
  f.kind = dc::EntryKind::file;
  f.executable = true;
  f.mtime_s = -1;
  f.mtime_ns = 5;
  f.path = "d/x";
  f.size = 0x0a0b;
  for (std::size_t i = 0; i < f.hash.size(); ++i) {
    f.hash[i] = static_cast<std::uint8_t>(i);
  }
  m.entries = {d, f};

  const dc::Bytes expected = {'D', 'C', 'M', 'P', 'M', 'A', 'N', 'I', // magic
                              0, 0, 0, 2,                             // entries
                              0, 0, 0, 1,                             // files
                              // dir "d"
                              1, 0,                                           // kind dir, mode 0
                              0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // mtime_s
                              0x11, 0x22, 0x33, 0x44,                         // mtime_ns
                              0, 1, 'd',                                      // path_len, path
                              // file "d/x"
                              2, 1, // kind file, executable
                              0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // mtime_s = -1
                              0, 0, 0, 5,                                     // mtime_ns
                              0, 3, 'd', '/', 'x',                            // path_len, path
                              0, 0, 0, 0, 0, 0, 0x0a, 0x0b,                   // size
                              0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, // hash
                              16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
  CHECK(dc::encode_manifest(m) == expected);
  CHECK(m.file_count() == 1);
  CHECK(m.total_bytes() == 0x0a0b);

  const dc::Manifest back = dc::decode_manifest(expected, {});
  REQUIRE(back.entries.size() == 2);
  CHECK(back.entries[0].kind == dc::EntryKind::dir);
  CHECK(back.entries[0].mtime_s == 0x0102030405060708);
  CHECK(back.entries[0].mtime_ns == 0x11223344);
  CHECK(back.entries[1].executable);
  CHECK(back.entries[1].mtime_s == -1);
  CHECK(back.entries[1].size == 0x0a0b);
  CHECK(back.entries[1].hash == f.hash);
  CHECK(dc::encode_manifest(back) == expected);
}

TEST_CASE("manifest: round trips, empty manifest and bytewise order")
{
  CHECK(dc::decode_manifest(dc::encode_manifest({}), {}).entries.empty());
  CHECK(dc::encode_manifest({}).size() == dc::k_manifest_header_size);

  // Bytewise order: '-' (0x2d) < '/' (0x2f) < 'a' and UTF-8 lead bytes sort after ASCII.
  const auto raw = raw_manifest(
      {dir("a"), file("a-b", 7), file("a/c"), dir("b"), file("b/\xc3\xa9"), file("\xe6\x97\xa5")});
  const dc::Manifest m = dc::decode_manifest(raw, {});
  REQUIRE(m.entries.size() == 6);
  CHECK(m.entries[1].path == "a-b");
  CHECK(m.entries[1].size == 7);
  CHECK(m.file_count() == 4);
  CHECK(dc::encode_manifest(m) == raw);
}

TEST_CASE("manifest: D1-D3, D12, D13 path rules reject with bad_path and the entry index")
{
  const std::string component255(255, 'c');
  std::string path4097;
  while (path4097.size() < 4097) {
    path4097 += "abcdefg/";
  }
  path4097.resize(4097);
  std::string depth65 = "d";
  for (int i = 1; i < 65; ++i) {
    depth65 += "/d";
  }
  const std::vector<std::string> hostile = {
      "../x",
      "a/../../x",
      "a/..",
      "..",
      "x/../y", // D1 traversal
      "/etc/x",
      "//x",
      "/", // D2 absolute
      "a//b",
      "./a",
      "a/.",
      "a/",
      "",
      ".", // D3 non-canonical
      "\xc0\xaf",
      "\xe0\x80\xaf",
      "\xed\xa0\x80",
      "\xf4\x90\x80\x80",
      "\xff",
      "a\x80", // D12 UTF-8
      "\xe2\x82",
      "\xf0\x9f\x98", // truncated sequences
      std::string("a\0b", 3),
      "a\x01",
      "a\x1f",
      "a\x7f",
      "a\\b", // D12 controls, backslash
      component255 + "c",
      path4097,
      depth65, // D13 limits
  };
  for (const auto& p : hostile) {
    CAPTURE(dc::escape_for_log(p));
    CHECK_THROWS_AS(dc::validate_bundle_path(p, 7), dc::BundleError);
    CHECK(dc::bundle_path_problem(p) != nullptr);
    // In a manifest: entry 0 is fine, entry 1 is hostile (paths are checked before order).
    const dc::BundleError e = decode_error(raw_manifest({file("0"), file(p)}));
    CHECK(e.code() == "bad_path");
    CHECK(e.ref() == 1);
    CHECK(std::string(e.what()).find('\x01') == std::string::npos); // names are hex-escaped
  }
  try {
    dc::validate_bundle_path("a\x01/..", 3);
    FAIL("accepted");
  } catch (const dc::BundleError& e) {
    CHECK(e.code() == "bad_path");
    CHECK(e.ref() == 3);
    CHECK(std::string(e.what()).find("a\\x01/..") != std::string::npos);
  }
}

TEST_CASE("manifest: valid paths at the limits are accepted")
{
  std::string path4096 = std::string(240, 'p');
  for (int i = 1; i < 17; ++i) {
    path4096 += "/" + std::string(240, 'p'); // 17 * 240 + 16 slashes = 4096 bytes
  }
  REQUIRE(path4096.size() == 4096);
  std::string depth64 = "d";
  for (int i = 1; i < 64; ++i) {
    depth64 += "/d";
  }
  for (const std::string& p :
       {std::string("a"), std::string("a/b/c"), std::string(".a"), std::string("a.."),
        std::string("..a"), std::string("a b~!@#$%^&*()"), std::string("\xc3\xa9t\xc3\xa9"),
        std::string("\xef\xbf\xbd"), std::string("\xf0\x9f\x98\x80"),
        std::string("\xf4\x8f\xbf\xbf"), std::string(255, 'x'), path4096, depth64}) {
    CAPTURE(dc::escape_for_log(p));
    CHECK_NOTHROW(dc::validate_bundle_path(p, 0));
  }
}

TEST_CASE("manifest: structure errors carry the right code and entry index")
{
  SUBCASE("unsorted")
  {
    check_rejected(raw_manifest({file("b"), file("a")}), "bad_bundle", 1);
  }
  SUBCASE("unsorted bytewise: 0xc3 sorts after 'z'")
  {
    check_rejected(raw_manifest({file("\xc3\xa9"), file("z")}), "bad_bundle", 1);
  }
  SUBCASE("child before its parent")
  {
    check_rejected(raw_manifest({file("a/b"), dir("a")}), "bad_bundle", 0);
  }
  SUBCASE("parent missing")
  {
    check_rejected(raw_manifest({dir("a"), file("b/c")}), "bad_bundle", 1);
  }
  SUBCASE("grandparent missing")
  {
    check_rejected(raw_manifest({dir("a"), dir("a/b/c")}), "bad_bundle", 1);
  }
  SUBCASE("duplicate file")
  {
    check_rejected(raw_manifest({file("a"), file("a")}), "bad_path", 1);
  }
  SUBCASE("dir then file of the same name")
  {
    check_rejected(raw_manifest({dir("a"), file("a")}), "bad_path", 1);
  }
  SUBCASE("file then a child of it")
  {
    check_rejected(raw_manifest({file("a"), file("a/b")}), "bad_path", 1);
  }
  SUBCASE("unknown kind (symlink = 3) and kind 0")
  {
    check_rejected(raw_manifest({file("a"), {3, 0, "b", 0, 0}}), "bad_bundle", 1);
    check_rejected(raw_manifest({{0, 0, "a", 0, 0}}), "bad_bundle", 0);
  }
  SUBCASE("mode byte 2 (setuid and friends are not representable)")
  {
    check_rejected(raw_manifest({file("a"), {2, 2, "b", 0, 0}}), "bad_bundle", 1);
  }
  SUBCASE("dir with mode 1")
  {
    check_rejected(raw_manifest({{1, 1, "a", 0, 0}}), "bad_bundle", 0);
  }
  SUBCASE("mtime_ns out of range")
  {
    check_rejected(raw_manifest({{2, 0, "a", 0, 1'000'000'000}}), "bad_bundle", 0);
  }
  SUBCASE("trailing bytes")
  {
    auto raw = raw_manifest({file("a")});
    raw.push_back(0);
    check_rejected(raw, "bad_bundle", -1);
  }
  SUBCASE("bad magic")
  {
    auto raw = raw_manifest({file("a")});
    raw[0] = 'X';
    check_rejected(raw, "bad_bundle", -1);
  }
  SUBCASE("declared file count too high / too low / above entries")
  {
    check_rejected(raw_manifest({dir("a"), file("a/b")}, 2), "bad_bundle", -1);
    check_rejected(raw_manifest({file("a"), file("b")}, 1), "bad_bundle", 1);
    check_rejected(raw_manifest({file("a")}, 2), "bad_bundle", -1);
  }
  SUBCASE("entry count far above what the bytes can hold (no huge reserve)")
  {
    auto raw = raw_manifest({file("a")});
    raw[8] = 0x00;
    raw[9] = 0x0f; // 983 041 entries declared, one present
    check_rejected(raw, "bad_bundle", -1);
  }
}

TEST_CASE("manifest: truncation at every offset is bad_bundle, never a crash")
{
  const auto raw = raw_manifest({dir("a"), file("a/b", 3), file("c")});
  for (std::size_t n = 0; n < raw.size(); ++n) {
    CAPTURE(n);
    const dc::BundleError e = decode_error(dc::Bytes(raw.begin(), raw.begin() + long(n)));
    CHECK(e.code() == "bad_bundle");
  }
}

TEST_CASE("manifest: limits on entries, expanded bytes and manifest size")
{
  dc::BundleLimits limits;
  limits.max_entries = 2;
  check_rejected(raw_manifest({file("a"), file("b"), file("c")}), "bundle_too_large", -1, limits);
  CHECK_NOTHROW(dc::decode_manifest(raw_manifest({file("a"), file("b")}), limits));

  limits = {};
  limits.max_bytes = 100;
  CHECK_NOTHROW(dc::decode_manifest(raw_manifest({file("a", 60), file("b", 40)}), limits));
  check_rejected(raw_manifest({file("a", 60), file("b", 41)}), "bundle_too_large", 1, limits);
  check_rejected(raw_manifest({file("a", 60), file("b", ~std::uint64_t{0})}), "bundle_too_large", 1,
                 limits);

  limits = {};
  const auto raw = raw_manifest({file("a")});
  limits.max_manifest_bytes = raw.size() - 1;
  check_rejected(raw, "bundle_too_large", -1, limits);
}

TEST_CASE("manifest: random bytes and bit flips only ever throw BundleError")
{
  std::mt19937 rng(1234);
  const auto good = raw_manifest({dir("a"), file("a/b", 3), dir("a/c"), file("a/c/d", 9)});
  for (int round = 0; round < 2000; ++round) {
    dc::Bytes raw = good;
    const int flips = 1 + round % 3;
    for (int i = 0; i < flips; ++i) {
      raw[rng() % raw.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    }
    if (round % 5 == 0) {
      raw.resize(rng() % (raw.size() + 1));
    }
    try {
      const dc::Manifest m = dc::decode_manifest(raw, {});
      CHECK(dc::encode_manifest(m) == raw); // whatever is accepted re-encodes identically
    } catch (const dc::BundleError&) {
    }
  }
}
