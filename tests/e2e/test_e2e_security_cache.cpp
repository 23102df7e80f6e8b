// Adversarial tests of the worker's content cache (issue 3): an authenticated key holder sending
// hostile bundles cannot poison the cache, a cache file changed or replaced by a symlink behind
// the worker's back is never served, and nothing outside the worker's directories is touched.

#include "common/messages.hpp"
#include "common/wire.hpp"
#include "tests/support/processes.hpp"
#include "tests/support/raw_client.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

namespace {

namespace t = dc::test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using dc::Bytes;
using dc::RecordType;

// One bundle step by step: returns the WANT bitmap (empty if none came) and what ended it.
struct Outcome {
  Bytes want;
  t::Received end;
  std::string error_code() const
  {
    if (!end.is(RecordType::error)) {
      return "";
    }
    return dc::error_from(dc::parse_body(end.record.body)).code;
  }
};

Outcome bundle(const t::WorkerProcess& worker, const std::string& key,
               const std::vector<t::RawEntry>& entries, const Bytes& blobs_if_wanted)
{
  t::RawClient client(worker.address(), key);
  client.handshake();
  client.hello("cache-attacker");
  Outcome out;
  const Bytes zmanifest = t::zstd_frame(t::encode_raw_manifest(entries));
  dc::BundleBeginBody begin;
  begin.entries = entries.size();
  for (const auto& e : entries) {
    begin.files += e.kind == 2 ? 1 : 0;
    begin.bytes += e.kind == 2 ? e.size : 0;
  }
  begin.manifest_zbytes = zmanifest.size();
  client.send_json(RecordType::bundle_begin, dc::to_json(begin));
  client.send(RecordType::manifest, zmanifest);
  client.send(RecordType::manifest_end, dc::ByteView{});
  t::Received r = client.receive();
  if (r.is(RecordType::want)) {
    out.want = r.record.body;
    try {
      if (!blobs_if_wanted.empty() && out.want.at(0) != 0) {
        client.send(RecordType::blob_data, blobs_if_wanted);
      }
      client.send(RecordType::bundle_end, dc::ByteView{});
    } catch (const std::system_error&) {
      // refused part-way: the ERROR is still to be read
    }
    r = client.receive();
  }
  out.end = r;
  if (r.is(RecordType::bundle_ok)) {
    client.send(RecordType::bye, dc::ByteView{});
  }
  client.until_closed(5s);
  return out;
}

std::vector<std::string> blobs_in(const std::string& cache)
{
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cache + "/blobs", ec)) {
    out.push_back(e.path().filename().string());
  }
  return out;
}

} // namespace

TEST_CASE("e2e: security: hostile bundles cannot poison the worker's content cache")
{
  t::TempDir dir;
  const std::string key = t::make_key(dir);
  t::WorkerConfig config;
  config.key = key;
  t::WorkerProcess worker(config);
  const std::string cache = worker.workdir() + "/cache";
  const std::string hello_hex = dc::to_hex(t::content_hash("hello"));

  // A blob that does not match its declared hash is refused and never cached.
  Outcome o =
      bundle(worker, key, {t::file_entry("x", "hello")}, t::zstd_frame(dc::as_bytes("jello")));
  CHECK(o.error_code() == "bad_bundle");
  CHECK(blobs_in(cache).empty());
  CHECK(fs::is_empty(cache + "/tmp"));

  // The honest blob is wanted (nothing was cached under its hash), then kept.
  o = bundle(worker, key, {t::file_entry("x", "hello")}, t::zstd_frame(dc::as_bytes("hello")));
  CHECK(o.want == Bytes{1});
  CHECK(o.end.is(RecordType::bundle_ok));
  CHECK(blobs_in(cache) == std::vector<std::string>{hello_hex});

  // The same hash with another size is not served from the cache: wanted, and a lying blob is
  // refused without touching the cached one.
  t::RawEntry liar = t::file_entry("x", "hello");
  liar.size = 10;
  o = bundle(worker, key, {liar}, t::zstd_frame(dc::as_bytes("0123456789")));
  CHECK(o.want == Bytes{1});
  CHECK(o.error_code() == "bad_bundle");
  CHECK(blobs_in(cache) == std::vector<std::string>{hello_hex});

  // Now cached: not wanted, and BUNDLE_OK says it came from the cache.
  o = bundle(worker, key, {t::file_entry("y", "hello")}, {});
  CHECK(o.want == Bytes{0});
  REQUIRE(o.end.is(RecordType::bundle_ok));
  CHECK(dc::bundle_ok_from(dc::parse_body(o.end.record.body)).from_cache == 1);
  CHECK(worker.running());
}

TEST_CASE("e2e: security: a cache blob replaced by a symlink is never followed or served")
{
  t::TempDir dir;
  const std::string key = t::make_key(dir);
  t::WorkerConfig config;
  config.key = key;
  t::WorkerProcess worker(config);
  const std::string cache = worker.workdir() + "/cache";
  Outcome o =
      bundle(worker, key, {t::file_entry("x", "hello")}, t::zstd_frame(dc::as_bytes("hello")));
  REQUIRE(o.end.is(RecordType::bundle_ok));
  const std::string blob = cache + "/blobs/" + dc::to_hex(t::content_hash("hello"));
  REQUIRE(t::exists(blob));

  // What a job running as the worker's user could do: point the blob at a file elsewhere that
  // holds the same bytes.
  const std::string outside = dir / "outside-hello";
  t::write_file(outside, "hello");
  REQUIRE(::unlink(blob.c_str()) == 0);
  REQUIRE(::symlink(outside.c_str(), blob.c_str()) == 0);
  // Another name for the same bytes, so the first job's file (kept for reuse) cannot serve it.
  o = bundle(worker, key, {t::file_entry("y", "hello")}, t::zstd_frame(dc::as_bytes("hello")));
  CHECK(o.want == Bytes{1}); // not served through the link
  REQUIRE(o.end.is(RecordType::bundle_ok));
  struct stat st {};
  REQUIRE(::lstat(blob.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode)); // the link is gone, the verified blob is back
  CHECK(t::read_file(outside) == "hello");
  CHECK(worker.log().find("removed, it will be sent again") != std::string::npos);
}
