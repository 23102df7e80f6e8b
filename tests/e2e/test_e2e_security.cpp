// Adversarial end-to-end tests (SECURITY-TESTS.md §5): real worker processes on 127.0.0.1, the
// real master, a raw client that holds the key and a man-in-the-middle proxy. Every attack runs a
// command that would create a marker file; after it the marker must not exist, no job dir may be
// left, and the worker must still serve an honest master (invariants I1 and I4).

#include "common/handshake.hpp"
#include "common/key_file.hpp"
#include "common/messages.hpp"
#include "common/wire.hpp"
#include "tests/support/processes.hpp"
#include "tests/support/proxy.hpp"
#include "tests/support/raw_client.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <dirent.h>
#include <filesystem>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace {

namespace t = dc::test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using dc::Bytes;
using dc::RecordType;
using t::contains;
using t::Received;
using Clock = std::chrono::steady_clock;

std::size_t count(const std::string& haystack, const std::string& needle)
{
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

double seconds_since(Clock::time_point start)
{
  return std::chrono::duration<double>(Clock::now() - start).count();
}

dc::ClusterKey load_key(const std::string& path)
{
  dc::init_sodium();
  return dc::load_cluster_key(path, false);
}

std::string key_id_of(const std::string& path)
{
  return dc::key_id_hex(load_key(path).key_id);
}

t::WorkerConfig worker_config(const std::string& key, std::vector<std::string> extra = {})
{
  t::WorkerConfig config;
  config.key = key;
  config.extra = std::move(extra);
  return config;
}

// I4: the worker completes a control job from an honest master.
void check_alive(const t::WorkerProcess& worker, const std::string& key, const t::TempDir& dir)
{
  const auto peers = t::write_peers(dir, {worker.address()}, "alive-peers.txt");
  const auto run = t::run_master({"--peers", peers, "--key", key, "--cmd", "echo alive"}, 30s);
  INFO("control master stderr: " << run.err);
  INFO("worker log:\n" << worker.log());
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(worker.address() + " | alive"));
  CHECK(worker.running());
}

// Polls (with a deadline) until the worker's base dir holds no job dir but the empty spare.
bool no_job_dirs(const t::WorkerProcess& worker, std::chrono::milliseconds timeout = 5s)
{
  const auto until = Clock::now() + timeout;
  while (!t::used_job_dirs(worker.workdir()).empty()) {
    if (Clock::now() >= until) {
      return false;
    }
    std::this_thread::sleep_for(10ms); // poll with a deadline: removal has no event to wait on
  }
  return true;
}

// I1: every path beneath `root` with its type, and for files size and mtime. Job dirs (whose
// removal is checked by no_job_dirs) and directory mtimes (a job dir's coming and going touches
// its parent) are left out.
std::map<std::string, std::string> snapshot(const std::string& root)
{
  std::map<std::string, std::string> out;
  std::error_code ec;
  auto it = fs::recursive_directory_iterator(root, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string rel = fs::relative(it->path(), root).string();
    if (rel.rfind("workdir/job-", 0) == 0) {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    if (lstat(it->path().c_str(), &st) != 0) {
      continue;
    }
    std::string v = std::to_string(st.st_mode);
    if (!S_ISDIR(st.st_mode)) {
      v += ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec);
    }
    out[rel] = v;
  }
  return out;
}

std::string describe(const Received& r)
{
  switch (r.kind) {
  case Received::Kind::record:
    return std::string("record ") + dc::to_string(r.record.type) + " " +
           dc::escape_for_log(dc::as_chars(r.record.body));
  case Received::Kind::eof:
    return "eof";
  case Received::Kind::timeout:
    return "timeout";
  case Received::Kind::error:
    return "error: " + r.error;
  }
  return "?";
}

std::string error_code_of(const Received& r)
{
  if (!r.is(RecordType::error)) {
    return "<" + describe(r) + ">";
  }
  return dc::error_from(dc::parse_body(r.record.body)).code;
}

dc::Json run_json(std::uint32_t id, const std::string& sh)
{
  dc::RunBody run;
  run.id = id;
  run.sh = sh;
  return dc::to_json(run);
}

dc::Json hello_json(const std::string& name)
{
  dc::Hello h;
  h.client = "distcomp raw test client";
  h.name = name;
  return dc::to_json(h);
}

// The (offset, length) of each record after PREAMBLE and message 1 of a client→server stream.
std::vector<std::pair<std::size_t, std::size_t>> record_spans(const Bytes& c2s)
{
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::size_t at = dc::k_preamble_size + 2 + dc::k_hs_message_size;
  while (at + 2 <= c2s.size()) {
    const std::size_t len = (std::size_t(c2s[at]) << 8) | c2s[at + 1];
    if (at + 2 + len > c2s.size()) {
      break;
    }
    out.emplace_back(at, 2 + len);
    at += 2 + len;
  }
  return out;
}

Bytes preamble_bytes(const dc::KeyId& key_id, std::uint8_t ver_used = 1, std::uint8_t ver_max = 1,
                     std::uint16_t flags = 0)
{
  dc::Preamble p;
  p.ver_used = ver_used;
  p.ver_max = ver_max;
  p.flags = flags;
  p.key_id = key_id;
  return dc::encode_preamble(p);
}

Bytes reject_bytes(dc::RejectReason reason)
{
  return dc::encode_reject(dc::Reject{reason, 1, 1});
}

// A plain TCP connection from `source` (a 127/8 address) to the worker; -1 on failure.
int connect_from(const std::string& source, std::uint16_t port)
{
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0) {
    if (fd >= 0) {
      close(fd);
    }
    return -1;
  }
  return fd;
}

// Waits until each socket is closed by the peer (EOF or reset) or the deadline passes; returns
// the seconds after `start` at which each closed (negative: still open).
std::vector<double> close_times(const std::vector<int>& fds, Clock::time_point start,
                                std::chrono::milliseconds timeout)
{
  std::vector<double> out(fds.size(), -1);
  const auto until = start + timeout;
  for (;;) {
    std::vector<pollfd> p;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (out[i] < 0) {
        p.push_back({fds[i], POLLIN, 0});
        index.push_back(i);
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (p.empty() || left.count() <= 0) {
      return out;
    }
    if (poll(p.data(), p.size(), static_cast<int>(left.count())) <= 0) {
      continue;
    }
    for (std::size_t k = 0; k < p.size(); ++k) {
      if (p[k].revents != 0) {
        char buf[64];
        const ssize_t n = recv(p[k].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) {
          out[index[k]] = seconds_since(start);
        }
      }
    }
  }
}

} // namespace

// ------------------------------------------------------------------------------------------
// 1. Authentication
// ------------------------------------------------------------------------------------------

TEST_CASE("e2e: security: a master with another key is rejected and nothing runs (A1, A2)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  const auto wrong = t::make_key(dir, "wrong.key");
  t::WorkerProcess worker(worker_config(key));
  const auto marker = dir / "pwned";
  const auto peers = t::write_peers(dir, {worker.address()});

  const auto run = t::run_master({"--peers", peers, "--key", wrong, "--cmd", "touch " + marker});
  INFO("master stderr: " << run.err);
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, worker.address()));
  CHECK(contains(run.err, "rejected our cluster key (our key id " + key_id_of(wrong)));
  CHECK(worker.wait_log("unknown key id " + key_id_of(wrong), 5s));
  CHECK(contains(worker.log(), "(our key id " + key_id_of(key) + ")"));

  // A2: the worker's key id (sniffed from any preamble) in front of the wrong psk: message 1
  // fails to authenticate and the answer is the same REJECT(key).
  dc::ClusterKey forged = load_key(wrong);
  forged.key_id = load_key(key).key_id;
  bool rejected_key = false;
  {
    t::RawClient client(worker.address(), std::move(forged));
    try {
      client.handshake();
    } catch (const dc::HandshakeError& e) {
      rejected_key = e.kind() == dc::HandshakeError::Kind::rejected_key;
    }
  } // closing ends the worker's post-REJECT drain at once
  CHECK(rejected_key);
  CHECK(worker.wait_log("message 1 failed to authenticate", 5s));

  CHECK_FALSE(t::exists(marker));
  CHECK_MESSAGE(no_job_dirs(worker), "worker log:\n" << worker.log());
  check_alive(worker, key, dir);
}

TEST_CASE("e2e: security: a recorded session replayed to the worker runs nothing (A4)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  // Room for 20 parallel replays from one address, so each one reaches the crypto.
  t::WorkerProcess worker(worker_config(key, {"--max-pending-per-ip", "32"}));
  const auto marker = dir / "pwned";
  t::Proxy proxy(worker.address());
  const auto peers = t::write_peers(dir, {proxy.address()});

  const auto run = t::run_master({"--peers", peers, "--key", key, "--cmd", "touch " + marker});
  INFO("master stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  REQUIRE(t::exists(marker));
  REQUIRE(proxy.wait_done(0, 5s));
  const Bytes c2s = proxy.recorded(0, t::Direction::client_to_server);
  const Bytes s2c = proxy.recorded(0, t::Direction::server_to_client);
  REQUIRE(record_spans(c2s).size() >= 3); // HELLO, RUN, BYE
  REQUIRE(s2c.size() >= 50);
  fs::remove(marker);
  const std::size_t authenticated_before = count(worker.log(), ": authenticated");
  CHECK(authenticated_before == 1);

  const auto replay = [&] {
    t::RawClient client(worker.address(), key);
    client.send_raw(c2s);
    return client.read_raw_until_closed(5s);
  };
  const t::RawRead once = replay();
  CHECK(once.closed);
  // Only a fresh message 2 comes back: the first replayed record fails to decrypt.
  REQUIRE(once.bytes.size() == 2 + dc::k_hs_message_size);
  CHECK(once.bytes[0] == 0);
  CHECK(once.bytes[1] == dc::k_hs_message_size);
  CHECK(once.bytes != Bytes(s2c.begin(), s2c.begin() + 50)); // a fresh worker ephemeral

  std::atomic<int> closed{0}, only_message_2{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&] {
      const t::RawRead r = replay();
      closed += r.closed ? 1 : 0;
      only_message_2 += r.bytes.size() == 50 ? 1 : 0;
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  CHECK(closed == 20);
  CHECK(only_message_2 == 20);

  CHECK_FALSE(t::exists(marker));
  CHECK_MESSAGE(no_job_dirs(worker), "worker log:\n" << worker.log());
  CHECK(count(worker.log(), ": authenticated") == authenticated_before); // no replay got past HELLO
  check_alive(worker, key, dir);
}

// ------------------------------------------------------------------------------------------
// 3. Tampering
// ------------------------------------------------------------------------------------------

TEST_CASE("e2e: security: a byte flipped by a man in the middle stops the master's session (A6)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  // No content cache: every run must send the same records as the honest one (a cached blob
  // would leave BLOB_DATA out and move the offsets below).
  t::WorkerProcess worker(worker_config(key, {"--reject-limit", "1000", "--no-cache"}));
  const auto marker = dir / "pwned";
  t::write_file(dir / "payload/data.txt", std::string(3000, 'd'));
  t::Proxy proxy(worker.address());
  const auto peers = t::write_peers(dir, {proxy.address()});
  const std::vector<std::string> args = {
      "--peers", peers,    "--key",          key,     "--connect-timeout",
      "5",       "--send", dir / "payload/", "--cmd", "touch " + marker};

  // An honest run through the proxy pins the record boundaries of the client→server stream.
  const auto honest = t::run_master(args);
  INFO("honest master stderr: " << honest.err);
  REQUIRE(honest.exit_code == 0);
  REQUIRE(t::exists(marker));
  REQUIRE(proxy.wait_done(0, 5s));
  const Bytes c2s = proxy.recorded(0, t::Direction::client_to_server);
  const auto spans = record_spans(c2s);
  // HELLO, BUNDLE_BEGIN, MANIFEST, MANIFEST_END, BLOB_DATA, BUNDLE_END, RUN, BYE
  REQUIRE(spans.size() >= 8);
  fs::remove(marker);

  const auto middle = [&](std::size_t record) {
    return spans[record].first + spans[record].second / 2;
  };
  const std::vector<std::pair<std::string, std::size_t>> targets = {
      {"preamble magic", 1},
      {"preamble ver_used", 4},
      {"preamble ver_max", 5},
      {"preamble flags", 7},
      {"preamble key id", 12},
      {"message 1 length", 17},
      {"message 1 ephemeral", 16 + 2 + 5},
      {"message 1 tag", 16 + 2 + 40},
      {"HELLO length", spans[0].first + 1},
      {"HELLO", middle(0)},
      {"BUNDLE_BEGIN", middle(1)},
      {"MANIFEST", middle(2)},
      {"BLOB_DATA", middle(4)},
      {"RUN", middle(6)},
      {"RUN tag", spans[6].first + spans[6].second - 1},
  };
  std::size_t connection = 1;
  for (const auto& [what, offset] : targets) {
    CAPTURE(what);
    CAPTURE(offset);
    proxy.set_tamper(t::Tamper{offset, std::nullopt, 0x01, std::nullopt, std::nullopt});
    const auto run = t::run_master(args, 30s);
    INFO("master stderr: " << run.err);
    CHECK(run.exit_code != 0);
    CHECK(run.exit_code != -1); // ended by itself, not by our time limit
    CHECK_FALSE(t::exists(marker));
    CHECK(proxy.wait_done(connection++, 10s));
  }

  // Server→client flips inside message 2: the master refuses to go on and sends nothing more.
  for (const std::size_t offset : {std::size_t{2 + 10}, std::size_t{2 + 40}}) {
    CAPTURE(offset);
    proxy.set_tamper(t::Tamper{std::nullopt, offset, 0x01, std::nullopt, std::nullopt});
    const auto run = t::run_master(args, 30s);
    INFO("master stderr: " << run.err);
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "worker failed to prove the key"));
    CHECK(contains(run.err, "nothing sent"));
    REQUIRE(proxy.wait_done(connection, 10s));
    CHECK(proxy.recorded(connection, t::Direction::client_to_server).size() ==
          dc::k_preamble_size + 2 + dc::k_hs_message_size);
    ++connection;
  }

  CHECK_FALSE(t::exists(marker));
  CHECK_MESSAGE(no_job_dirs(worker), "worker log:\n" << worker.log());
  check_alive(worker, key, dir);
}

TEST_CASE("e2e: security: every single flipped byte of a session's opening fails (A6 sweep)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  // The sweep makes hundreds of connections from one address, each a forgery: lift the
  // per-address limits so every one reaches the crypto instead of being refused at accept.
  t::WorkerProcess worker(worker_config(key, {"--reject-limit", "100000", "--handshake-burst",
                                              "100000", "--max-pending-per-ip", "64"}));
  const auto marker = dir / "pwned";
  t::Proxy proxy(worker.address());

  // One live session of an honest key holder: handshake, then HELLO and RUN pipelined.
  const std::string name = "sweep";
  dc::Json run = run_json(7, "touch " + marker);
  run["env"]["PAD"] = std::string(40, 'p'); // makes HELLO + RUN end beyond offset 300
  enum class Outcome { ran, handshake_failed, closed, stalled };
  const auto session = [&](std::vector<Received>& seen) {
    t::RawClient client(proxy.address(), key);
    try {
      client.handshake(3s);
    } catch (const std::exception&) {
      return Outcome::handshake_failed;
    }
    try {
      client.send_json(RecordType::hello, hello_json(name));
      client.send_json(RecordType::run, run);
    } catch (const std::system_error&) {
      // the worker already closed: what it sent before is still read below
    }
    for (;;) {
      Received r = client.receive(700ms);
      if (r.kind == Received::Kind::timeout) {
        // A flipped length byte leaves the worker waiting for bytes that never come: end our
        // side; the worker must then close without having run anything.
        client.shutdown_send();
        const t::UntilClosed rest = client.until_closed(5s);
        for (const auto& rec : rest.records) {
          seen.push_back(Received{Received::Kind::record, rec, ""});
        }
        return rest.closed ? Outcome::stalled
                           : Outcome::ran /* never closed: counted as a failure */;
      }
      if (r.kind != Received::Kind::record) {
        return Outcome::closed;
      }
      seen.push_back(r);
      if (r.is(RecordType::exit)) {
        client.send(RecordType::bye, dc::ByteView{});
        client.until_closed(5s);
        return Outcome::ran;
      }
    }
  };

  // Control: unmodified, the stream runs the command (so the flips below are what stops it).
  std::vector<Received> control_seen;
  REQUIRE(session(control_seen) == Outcome::ran);
  REQUIRE(t::exists(marker));
  REQUIRE(proxy.wait_done(0, 5s));
  const Bytes stream = proxy.recorded(0, t::Direction::client_to_server);
  const auto spans = record_spans(stream);
  REQUIRE(spans.size() >= 2); // HELLO, RUN (then BYE)
  const std::size_t opening_end = dc::k_preamble_size + 2 + dc::k_hs_message_size;
  const std::size_t hello_end = spans[0].first + spans[0].second;
  const std::size_t run_end = spans[1].first + spans[1].second;
  fs::remove(marker);

  const std::size_t sweep_end = std::max<std::size_t>(run_end, 300);
  std::size_t failed = 0, stalls = 0;
  for (std::size_t offset = 0; offset < std::min(sweep_end, run_end); ++offset) {
    CAPTURE(offset);
    proxy.set_tamper(t::Tamper{offset, std::nullopt, 0x01, std::nullopt, std::nullopt});
    std::vector<Received> seen;
    const Outcome outcome = session(seen);
    bool welcomed = false, exited = false;
    for (const auto& r : seen) {
      welcomed = welcomed || r.is(RecordType::welcome);
      exited = exited || r.is(RecordType::exit) || r.is(RecordType::stdout_data);
    }
    CHECK(outcome != Outcome::ran);
    CHECK_FALSE(exited);
    if (offset < opening_end) {
      CHECK(outcome == Outcome::handshake_failed);
    } else if (offset < hello_end) {
      CHECK_FALSE(welcomed);
    }
    failed += outcome != Outcome::ran && !exited ? 1 : 0;
    stalls += outcome == Outcome::stalled ? 1 : 0;
    if (t::exists(marker)) {
      FAIL_CHECK("marker created with the byte at offset " << offset << " flipped");
      fs::remove(marker);
    }
  }
  MESSAGE("flipped " << run_end << " offsets (stream " << stream.size() << " bytes): " << failed
                     << " failed, " << stalls << " waited for a length that never came");
  CHECK(failed == run_end);
  CHECK(stalls <= 4); // only the length bytes of HELLO and RUN can leave the worker waiting

  // The same sweep as a replay of the recorded stream, one flipped byte per connection.
  for (std::size_t offset = 0; offset < std::min<std::size_t>(300, stream.size()); ++offset) {
    Bytes flipped = stream;
    flipped[offset] ^= 0x01;
    t::RawClient client(worker.address(), key);
    client.send_raw(flipped);
    client.shutdown_send(); // the replayer has nothing more; a flipped length waits for nothing
    const t::RawRead r = client.read_raw_until_closed(5s);
    CAPTURE(offset);
    CHECK(r.closed);
    CHECK(r.bytes.size() <= 2 + dc::k_hs_message_size);
  }

  CHECK_FALSE(t::exists(marker));
  CHECK_MESSAGE(no_job_dirs(worker), "worker log:\n" << worker.log());
  CHECK(worker.running());
  check_alive(worker, key, dir);
}

// ------------------------------------------------------------------------------------------
// 4. Before authentication
// ------------------------------------------------------------------------------------------

TEST_CASE("e2e: security: bad lengths, magic, versions and flags before authentication (A3, A8, "
          "B1)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(key));
  const dc::KeyId key_id = load_key(key).key_id;

  struct Exchange {
    t::RawRead read;
    double seconds = 0;
  };
  // `end_ours`: half-close after the bytes (for cases where the worker rightly waits for more).
  const auto exchange = [&](const Bytes& bytes, bool end_ours = false) {
    t::RawClient client(worker.address(), key);
    const auto start = Clock::now();
    client.send_raw(bytes);
    if (end_ours) {
      client.shutdown_send();
    }
    Exchange e;
    e.read = client.read_raw_until_closed(3s);
    e.seconds = seconds_since(start);
    return e;
  };

  // Message-1 lengths other than 48: REJECT(malformed) at once, without waiting for a body.
  for (const std::uint16_t len : {0xFFFF, 0x0400, 0x0000, 47, 49}) {
    CAPTURE(len);
    Bytes bytes = preamble_bytes(key_id);
    dc::put_be<std::uint16_t>(bytes, len);
    const Exchange e = exchange(bytes);
    CHECK(e.read.closed);
    CHECK(e.read.bytes == reject_bytes(dc::RejectReason::malformed));
    CHECK(e.seconds < 1.0);
  }

  // Not distcomp at all: silent close.
  const std::string tls_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03xxxxxxxxxxxxxxxx", 27);
  for (const std::string& text : {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), tls_hello}) {
    const Exchange e = exchange(Bytes(text.begin(), text.end()));
    CHECK(e.read.closed);
    CHECK(e.read.bytes.empty());
    CHECK(e.seconds < 1.0);
  }

  // Versions and flags (v1: ver_used must be 1, flags 0).
  const std::vector<Bytes> bad_versions = {
      preamble_bytes(key_id, 1, 1, 1), preamble_bytes(key_id, 1, 1, 0x8000),
      preamble_bytes(key_id, 2, 2), preamble_bytes(key_id, 0, 1),
      preamble_bytes(key_id, 1, 2) /* lying about ver_max is fine only if ver_used = min */};
  for (std::size_t i = 0; i < bad_versions.size(); ++i) {
    CAPTURE(i);
    const Exchange e = exchange(bad_versions[i], i == 4);
    if (i == 4) {
      // ver_max 2 with ver_used 1 is a v2-capable master speaking v1: accepted, and then the
      // missing message 1 times out or our close ends it. Here we only check it is not a REJECT.
      CHECK(e.read.bytes != reject_bytes(dc::RejectReason::version));
      continue;
    }
    CHECK(e.read.closed);
    CHECK(e.read.bytes == reject_bytes(dc::RejectReason::version));
  }

  // An unknown key id: REJECT(key) before message 1 is read.
  {
    dc::KeyId other = key_id;
    other[0] ^= 0xff;
    const Exchange e = exchange(preamble_bytes(other));
    CHECK(e.read.closed);
    CHECK(e.read.bytes == reject_bytes(dc::RejectReason::key));
  }
  // Connect and close at once, and connect and send a partial preamble then close.
  {
    t::RawClient client(worker.address(), key);
  }
  {
    const Exchange e = exchange(Bytes{'D', 'C', 'M'}, true);
    CHECK(e.read.closed);
    CHECK(e.read.bytes.empty());
  }

  CHECK_MESSAGE(no_job_dirs(worker), "worker log:\n" << worker.log());
  check_alive(worker, key, dir);
}

// ------------------------------------------------------------------------------------------
// 5. Hostile bundles from an authenticated key holder
// ------------------------------------------------------------------------------------------

TEST_CASE("e2e: security: hostile bundles are refused and nothing is written outside the job dir "
          "(D1-D11)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  // No content cache, so every case reaches the extraction it attacks (a cached "hello" would be
  // copied instead of decoded); test_e2e_security_cache.cpp attacks the cache itself.
  t::WorkerProcess worker(worker_config(key, {"--no-cache"}));
  const auto marker = dir / "pwned";
  const std::string abs_target = dir / "abs-target";

  const auto frame = [](std::string_view s) { return t::zstd_frame(dc::as_bytes(s)); };
  const auto cat = [](std::vector<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) {
      dc::put_bytes(out, p);
    }
    return out;
  };
  t::RawEntry dir_a;
  dir_a.kind = 1;
  dir_a.path = "a";

  struct Case {
    std::string name;
    std::vector<t::RawEntry> entries;
    Bytes blobs;
    std::string code; // expected ERROR code; "" = BUNDLE_OK (the control)
  };
  std::vector<Case> cases;
  cases.push_back(
      {"control: a valid bundle", {dir_a, t::file_entry("a/x", "hello")}, frame("hello"), ""});
  cases.push_back({"../x", {t::file_entry("../x", "pwned")}, frame("pwned"), "bad_path"});
  cases.push_back(
      {"a/../../x", {dir_a, t::file_entry("a/../../x", "pwned")}, frame("pwned"), "bad_path"});
  cases.push_back({"..", {t::file_entry("..", "pwned")}, frame("pwned"), "bad_path"});
  cases.push_back(
      {"absolute path", {t::file_entry(abs_target, "pwned")}, frame("pwned"), "bad_path"});
  cases.push_back(
      {"non-canonical a//x", {dir_a, t::file_entry("a//x", "p")}, frame("p"), "bad_path"});
  cases.push_back({"duplicate path",
                   {t::file_entry("x", "one"), t::file_entry("x", "two")},
                   cat({frame("one"), frame("two")}),
                   "bad_path"});
  cases.push_back({"file used as a directory",
                   {t::file_entry("a", "one"), t::file_entry("a/b", "two")},
                   cat({frame("one"), frame("two")}),
                   "bad_path"});
  {
    t::RawEntry link = t::file_entry("link", "/etc/passwd");
    link.kind = 3; // what a symlink kind would be: not representable
    cases.push_back({"unknown kind (symlink)", {link}, frame("/etc/passwd"), "bad_bundle"});
    t::RawEntry suid = t::file_entry("suid", "x");
    suid.mode = 4;
    cases.push_back({"mode other than 0/1", {suid}, frame("x"), "bad_bundle"});
  }
  {
    t::RawEntry shorter = t::file_entry("x", "0123456789");
    cases.push_back({"blob shorter than its size", {shorter}, frame("01234"), "bad_bundle"});
    t::RawEntry longer = t::file_entry("x", "01234");
    cases.push_back({"blob longer than its size", {longer}, frame("0123456789"), "bad_bundle"});
    t::RawEntry wrong_hash = t::file_entry("x", "hello");
    cases.push_back({"hash mismatch", {wrong_hash}, frame("jello"), "bad_bundle"});
    cases.push_back({"bytes after the last frame",
                     {t::file_entry("x", "hello")},
                     cat({frame("hello"), Bytes{'j', 'u', 'n', 'k'}}),
                     "bad_bundle"});
    cases.push_back({"a second frame after the last wanted blob",
                     {t::file_entry("x", "hello")},
                     cat({frame("hello"), frame("pwned")}),
                     "bad_bundle"});
    cases.push_back({"unsorted entries",
                     {t::file_entry("b", "1"), t::file_entry("a", "2")},
                     cat({frame("1"), frame("2")}),
                     "bad_bundle"});
  }
  {
    // Decompression bomb: declared 1 KiB, the frame expands to 1 GiB of zeros.
    const std::string kib(1024, '\0');
    cases.push_back({"decompression bomb (1 KiB declared, 1 GiB in the frame)",
                     {t::file_entry("bomb", kib)},
                     t::zstd_zero_bomb(std::uint64_t{1} << 30),
                     "bundle_too_large"});
  }

  for (const auto& c : cases) {
    CAPTURE(c.name);
    const auto before_test = snapshot(dir.path());
    const auto before_worker = snapshot(worker.dir().path());
    {
      t::RawClient client(worker.address(), key);
      client.handshake();
      client.hello("hostile-bundle");
      const Received r = t::send_bundle(client, c.entries, c.blobs);
      if (c.code.empty()) {
        CHECK_MESSAGE(r.is(RecordType::bundle_ok), describe(r));
        client.send(RecordType::bye, dc::ByteView{});
      } else {
        CHECK(error_code_of(r) == c.code);
        if (r.is(RecordType::bundle_ok)) {
          // The worker accepted it: show the harm instead of hiding it.
          client.send_json(RecordType::run, run_json(1, "touch " + marker));
        }
      }
      const t::UntilClosed rest = client.until_closed(5s);
      CHECK(rest.closed);
    }
    REQUIRE_MESSAGE(worker.running(), "worker log:\n" << worker.log());
    CHECK_MESSAGE(no_job_dirs(worker), "worker log:\n" << worker.log());
    CHECK(snapshot(dir.path()) == before_test);
    CHECK(snapshot(worker.dir().path()) == before_worker);
    CHECK_FALSE(t::exists(worker.workdir() + "/x"));
    CHECK_FALSE(t::exists(worker.dir() / "x"));
    CHECK_FALSE(t::exists(abs_target));
    CHECK_FALSE(t::exists(marker));
  }
  CHECK(worker.running());
  check_alive(worker, key, dir);
}

// ------------------------------------------------------------------------------------------
// 6. Records after the handshake
// ------------------------------------------------------------------------------------------

TEST_CASE("e2e: security: records in the wrong order, of unknown type or too deep are refused (C1, "
          "C2)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(key));
  const auto marker = dir / "pwned";
  const dc::Json touch = run_json(1, "touch " + marker);

  SUBCASE("RUN before HELLO: closed, nothing runs")
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.send_json(RecordType::run, touch);
    const t::UntilClosed rest = client.until_closed(5s);
    CHECK(rest.closed);
    for (const auto& r : rest.records) {
      CHECK(r.type == RecordType::error);
    }
    CHECK(rest.first_error_code() == "protocol");
  }
  SUBCASE("an unknown record type: closed, nothing after it is read")
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.hello();
    client.send(static_cast<RecordType>(0x77), std::string_view("{}"));
    client.send_json(RecordType::run, touch); // must never be read
    const t::UntilClosed rest = client.until_closed(5s);
    CHECK(rest.closed);
    for (const auto& r : rest.records) {
      CHECK(r.type == RecordType::error);
    }
  }
  SUBCASE("a second HELLO: ERROR(protocol), then closed")
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.hello();
    client.send_json(RecordType::hello, hello_json("again"));
    client.send_json(RecordType::run, touch); // must never be read
    const t::UntilClosed rest = client.until_closed(5s);
    CHECK(rest.closed);
    CHECK(rest.first_error_code() == "protocol");
  }
  SUBCASE("a reply type sent by the master (EXIT, WELCOME): ERROR(protocol), then closed")
  {
    for (const RecordType type : {RecordType::exit, RecordType::welcome, RecordType::want}) {
      t::RawClient client(worker.address(), key);
      client.handshake();
      client.hello();
      client.send(type, std::string_view("{}"));
      client.send_json(RecordType::run, touch);
      const t::UntilClosed rest = client.until_closed(5s);
      CHECK(rest.closed);
      CHECK(rest.first_error_code() == "protocol");
    }
  }
  SUBCASE("JSON nested deeper than 8: the RUN is refused, the session goes on")
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.hello();
    const std::string deep = "{\"id\":1,\"sh\":\"touch " + marker +
                             "\",\"x\":" + std::string(10, '[') + std::string(10, ']') + "}";
    client.send(RecordType::run, deep);
    const Received refusal = client.receive();
    CHECK(error_code_of(refusal) == "bad_request");
    client.send_json(RecordType::run, run_json(2, "echo still-here"));
    std::string out;
    for (;;) {
      const Received r = client.receive();
      if (r.is(RecordType::stdout_data)) {
        out += std::string(dc::as_chars(dc::decode_output(r.record.body).second));
        continue;
      }
      CHECK_MESSAGE(r.is(RecordType::exit), describe(r));
      break;
    }
    CHECK(out == "still-here\n");
    client.send(RecordType::bye, dc::ByteView{});
    CHECK(client.until_closed(5s).closed);
  }
  SUBCASE("JSON nested deeper than 8 in HELLO: no WELCOME, closed")
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.send(RecordType::hello,
                "{\"name\":" + std::string(10, '[') + std::string(10, ']') + "}");
    client.send_json(RecordType::run, touch);
    const t::UntilClosed rest = client.until_closed(5s);
    CHECK(rest.closed);
    for (const auto& r : rest.records) {
      CHECK(r.type != RecordType::welcome);
    }
  }
  SUBCASE("a truncated record closes that session only")
  {
    const std::string go = dir / "go";
    t::RawClient other(worker.address(), key);
    other.handshake();
    other.hello("bystander");
    other.send_json(RecordType::run,
                    run_json(1, "echo started; while [ ! -e " + go +
                                    " ]; do sleep 0.02; done; echo bystander-done"));
    const Received started = other.receive();
    REQUIRE_MESSAGE(started.is(RecordType::stdout_data), describe(started));

    t::RawClient client(worker.address(), key);
    client.handshake();
    client.hello("truncator");
    // The length of a 1000-byte record, then 10 bytes of it, then our side ends.
    client.send_raw(Bytes{0x03, 0xe8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    client.shutdown_send();
    CHECK(client.until_closed(5s).closed);
    CHECK(worker.wait_log("(truncator)", 5s));

    t::write_file(go, "");
    std::string out;
    Received r;
    for (;;) {
      r = other.receive();
      if (!r.is(RecordType::stdout_data)) {
        break;
      }
      out += std::string(dc::as_chars(dc::decode_output(r.record.body).second));
    }
    CHECK(out == "bystander-done\n");
    REQUIRE_MESSAGE(r.is(RecordType::exit), describe(r));
    const dc::ExitBody exit = dc::exit_from(dc::parse_body(r.record.body));
    CHECK(exit.code == 0);
    other.send(RecordType::bye, dc::ByteView{});
    CHECK(other.until_closed(5s).closed);
  }

  CHECK_FALSE(t::exists(marker));
  CHECK_MESSAGE(no_job_dirs(worker), "worker log:\n" << worker.log());
  check_alive(worker, key, dir);
}

TEST_CASE("e2e: security: stdin beyond the worker's WINDOW credit closes the session (bounded "
          "memory per command)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(key));
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.hello();
    dc::Json run = run_json(1, "sleep 30");
    run["stdin"] = true;
    client.send_json(RecordType::run, run);
    t::Received window = client.receive(5s);
    while (window.is(RecordType::ping)) {
      window = client.receive(5s);
    }
    REQUIRE(window.is(RecordType::window));
    const dc::WindowBody credit = dc::window_from(dc::parse_body(window.record.body));
    CHECK(credit.id == 1);
    CHECK(credit.bytes > 0);
    CHECK(credit.bytes <= 1u << 20);
    // Send far more than the credit plus what the pipe of a job that never reads can absorb
    // (64 KiB), never waiting for more credit: the worker must refuse, not buffer it.
    const Bytes chunk(60000, 'x');
    try {
      for (std::uint64_t sent = 0; sent <= credit.bytes + (2u << 20); sent += chunk.size()) {
        client.send(RecordType::stdin_data, dc::encode_output(1, chunk));
      }
    } catch (const std::system_error&) {
      // The worker closed while we were still sending: what this test wants.
    }
    const t::UntilClosed rest = client.until_closed(10s);
    CHECK(rest.closed);
    CHECK(rest.first_error_code() == "protocol");
  }
  CHECK(no_job_dirs(worker));
  CHECK_MESSAGE(worker.running(), "worker log:\n" << worker.log());
  check_alive(worker, key, dir);
}

// Regression: the worker used to abort ("free(): invalid pointer") right after sending any ERROR
// record (Session::send_error built an ErrorBody temporary inside its co_await expression).
TEST_CASE("e2e: security: the worker stays up after sending an ERROR record (fail closed, stay up)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(key));
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.hello();
    client.send_json(RecordType::hello, hello_json("again")); // wrong state: ERROR(protocol)
    const t::UntilClosed rest = client.until_closed(5s);
    CHECK(rest.closed);
    CHECK(rest.first_error_code() == "protocol");
  }
  CHECK(no_job_dirs(worker));
  CHECK_MESSAGE(worker.running(), "worker log:\n" << worker.log());
  check_alive(worker, key, dir);
}

TEST_CASE("e2e: security: an unknown record type is answered with ERROR(protocol) before the close "
          "(C2)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(key));
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    client.hello();
    client.send(static_cast<RecordType>(0x77), std::string_view("{}"));
    const t::UntilClosed rest = client.until_closed(5s);
    CHECK(rest.closed);
    CHECK(rest.first_error_code() == "protocol");
  }
  CHECK(worker.running());
}

// A record that fails to decrypt before HELLO (replay, tampering) closes the connection and is
// logged once (PROTOCOL.md §4).
TEST_CASE("e2e: security: a record that fails to authenticate is logged once (A4, A6)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(key));
  {
    t::RawClient client(worker.address(), key);
    client.handshake();
    Bytes forged = {0x00, 0x20};
    forged.resize(2 + 0x20, 0x5a); // a HELLO-sized record of garbage
    client.send_raw(forged);
    CHECK(client.until_closed(5s).closed);
  }
  CHECK_MESSAGE(worker.wait_log("record authentication failed", 2s), "worker log:\n"
                                                                         << worker.log());
  CHECK(no_job_dirs(worker));
}

// ------------------------------------------------------------------------------------------
// 7. Pre-authentication limits
// ------------------------------------------------------------------------------------------

TEST_CASE("e2e: security: idle connections are capped per address and closed at the deadline "
          "(B2)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(
      key, {"--max-pending-per-ip", "2", "--handshake-timeout", "1", "--preamble-timeout", "1"}));

  // Idle connections come from 127.0.0.2 so the honest master (127.0.0.1) is another source.
  const auto start = Clock::now();
  std::vector<int> idle;
  for (int i = 0; i < 5; ++i) {
    const int fd = connect_from("127.0.0.2", worker.port());
    REQUIRE(fd >= 0);
    idle.push_back(fd);
  }
  std::vector<double> closed = close_times(idle, start, 5s);
  for (const int fd : idle) {
    close(fd);
  }
  std::sort(closed.begin(), closed.end());
  INFO("close times (s): " << closed[0] << " " << closed[1] << " " << closed[2] << " " << closed[3]
                           << " " << closed[4]);
  for (const double s : closed) {
    CHECK(s >= 0); // every one closed by the worker
  }
  for (int i = 0; i < 3; ++i) {
    CHECK(closed[i] < 0.5); // over the limit: closed at accept
  }
  for (int i = 3; i < 5; ++i) {
    CHECK(closed[i] > 0.8); // admitted, then closed at the 1 s deadline
    CHECK(closed[i] < 3.0);
  }

  // An honest master during a slowloris from the other address (which keeps its 2 slots full).
  std::atomic<bool> stop{false};
  std::atomic<int> opened{0};
  std::thread attacker([&] {
    std::vector<int> fds;
    while (!stop) {
      while (fds.size() < 5) {
        const int fd = connect_from("127.0.0.2", worker.port());
        if (fd < 0) {
          break;
        }
        fds.push_back(fd);
        ++opened;
      }
      std::vector<pollfd> p;
      for (const int fd : fds) {
        p.push_back({fd, POLLIN, 0});
      }
      poll(p.data(), p.size(), 50);
      std::vector<int> still;
      for (std::size_t i = 0; i < p.size(); ++i) {
        char buf[16];
        if (p[i].revents != 0 && recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT) <= 0) {
          close(p[i].fd);
        } else {
          still.push_back(p[i].fd);
        }
      }
      fds = still;
    }
    for (const int fd : fds) {
      close(fd);
    }
  });
  check_alive(worker, key, dir);
  stop = true;
  attacker.join();
  CHECK(opened >= 5);
  CHECK(worker.wait_log("too many pending connections", 1s));
  check_alive(worker, key, dir);
}

TEST_CASE("e2e: security: repeated key rejections put the address in a penalty box (B5)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  const auto wrong = t::make_key(dir, "wrong.key");
  t::WorkerProcess worker(worker_config(
      key, {"--reject-limit", "3", "--reject-window", "10", "--reject-penalty", "2"}));
  const auto peers = t::write_peers(dir, {worker.address()});

  Clock::time_point third_started{};
  for (int i = 0; i < 3; ++i) {
    third_started = Clock::now();
    const auto run = t::run_master({"--peers", peers, "--key", wrong, "--cmd", "echo no"});
    INFO("master stderr: " << run.err);
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "rejected our cluster key"));
  }
  CHECK(worker.wait_log("refusing it for", 5s));

  // Now even the right key is refused for a moment: closed at accept, before any byte is read.
  const auto refused = t::run_master({"--peers", peers, "--key", key, "--cmd", "echo alive"});
  INFO("master stderr: " << refused.err);
  CHECK(refused.exit_code == 3);
  CHECK_FALSE(refused.has_stdout_line(worker.address() + " | alive"));

  // ... and served again once the penalty is over (poll with a deadline).
  bool served = false;
  while (!served && seconds_since(third_started) < 8) {
    t::RawClient client(worker.address(), key);
    try {
      client.handshake(2s);
      client.hello("after-penalty");
      served = true;
    } catch (const std::exception&) {
      std::this_thread::sleep_for(50ms); // poll with a deadline
    }
  }
  CHECK(served);
  CHECK(seconds_since(third_started) > 1.5);
  check_alive(worker, key, dir);
}

// ------------------------------------------------------------------------------------------
// 8. What a job inherits
// ------------------------------------------------------------------------------------------

TEST_CASE("e2e: security: a job inherits no fds, no ignored signals and no key material (C7)")
{
  t::TempDir dir;
  const auto key = t::make_key(dir);
  t::WorkerProcess worker(worker_config(key));
  const auto peers = t::write_peers(dir, {worker.address()});
  const auto run = t::run_master({"--peers", peers, "--key", key, "--cmd", "ls -l /proc/$$/fd",
                                  "--cmd", "grep -E '^Sig(Ign|Blk):' /proc/self/status", "--cmd",
                                  "tr '\\0' '\\n' < /proc/self/environ"});
  INFO("master stdout: " << run.out);
  INFO("master stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  const std::string label = worker.address() + " | ";
  // The shell's own descriptors (ls -l /proc/$$/fd lists "… N -> target"): exactly 0, 1, 2.
  std::vector<std::string> fds;
  for (const auto& line : run.stdout_lines()) {
    const auto arrow = line.find(" -> ");
    if (line.rfind(label, 0) == 0 && arrow != std::string::npos) {
      const std::string head = line.substr(0, arrow);
      fds.push_back(head.substr(head.rfind(' ') + 1));
    }
  }
  CHECK(fds == std::vector<std::string>{"0", "1", "2"});
  CHECK_FALSE(contains(run.out, "socket:"));
  CHECK(run.has_stdout_line(label + "SigIgn:\t0000000000000000"));
  CHECK(run.has_stdout_line(label + "SigBlk:\t0000000000000000"));
  // No key material in the environment (nor anywhere in the output).
  const std::string key_text = t::read_file(key);
  const std::string key_hex = key_text.substr(key_text.find(' ') + 1, 64);
  REQUIRE(key_hex.size() == 64);
  CHECK_FALSE(contains(run.out, key_hex));
  CHECK_FALSE(contains(run.out, dc::to_hex(load_key(key).psk.view())));
  CHECK(contains(run.out, label + "DISTCOMP_NODE_ID=0")); // the environ dump did run
}
