#pragma once
// A test-only client that holds the cluster key and speaks the protocol through the real
// dc::Channel and dc::client_handshake (so it is an honest implementation), but lets a test send
// any record type and body in any order, raw bytes, hand-made manifests and zstd frames, and read
// whatever comes back. Every call is synchronous: it drives a private io_context until the
// operation ends or its time limit passes.

#include "common/channel.hpp"
#include "common/key_file.hpp"
#include "common/manifest.hpp"
#include "common/messages.hpp"
#include "common/wire.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dc::test {

// Splits "host:port" (the form WorkerProcess::address() returns). Throws std::invalid_argument.
std::pair<std::string, std::uint16_t> split_address(const std::string& address);

// What one receive() saw.
struct Received {
  enum class Kind { record, eof, timeout, error };
  Kind kind = Kind::timeout;
  Record record{RecordType::error, {}};
  std::string error; // for Kind::error: the exception's text ("record authentication failed", …)
  bool is(RecordType t) const { return kind == Kind::record && record.type == t; }
};

// Everything the peer sent until it closed (or the time limit passed).
struct UntilClosed {
  std::vector<Record> records;
  bool closed = false; // EOF or reset seen; false: still open at the time limit
  std::string how;     // "eof", or the error text
  // The code of the first ERROR record, or "" if none came.
  std::string first_error_code() const;
};

// Raw bytes read until the peer closed (or the time limit passed).
struct RawRead {
  Bytes bytes;
  bool closed = false;
};

class RawClient {
public:
  // Loads the key file (it must pass the product's permission checks) and connects to `address`.
  // Throws ConfigError for the key and std::system_error if the connection is refused.
  RawClient(const std::string& address, const std::string& key_path);
  // Same with a key built by the test (for example a forged key id in front of another psk).
  RawClient(const std::string& address, ClusterKey key);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  const ClusterKey& key() const { return m_key; }

  // PREAMBLE + message 1, then message 2 or a REJECT (dc::client_handshake). Throws
  // HandshakeError, std::system_error (socket, EOF) or std::runtime_error("timed out").
  void handshake(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Sends HELLO and waits for WELCOME. Throws std::runtime_error if anything else comes.
  Welcome hello(const std::string& name = "raw-client");
  // Same with a HELLO the test fills in (keep, bundle, ...).
  Welcome hello(const Hello& hello);

  // Encrypts and sends one record of any type byte (unknown ones included). Throws
  // std::system_error once the connection failed.
  void send(RecordType type, ByteView body);
  void send(RecordType type, std::string_view body) { send(type, as_bytes(body)); }
  void send_json(RecordType type, const Json& body) { send(type, dump_body(body)); }
  // Writes raw bytes on the socket (handshake bytes, truncated records). Returns false if the
  // peer had already closed (EPIPE, reset).
  bool send_raw(ByteView bytes);

  // Reads and decrypts the next record within `timeout`.
  Received receive(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Reads records until the peer closes; stops at `timeout` with closed = false.
  UntilClosed until_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Without a handshake: reads raw bytes until the peer closes or `timeout` passes.
  RawRead read_raw_until_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  void shutdown_send();
  void close();

private:
  template <typename T>
  T drive(asio::awaitable<T> op, std::chrono::milliseconds timeout, bool& timed_out);

  ClusterKey m_key;
  asio::io_context m_ctx;
  std::unique_ptr<Channel> m_channel;
};

// --- hand-made bundles ---------------------------------------------------------------------

// One manifest entry as raw values, so a test can write what encode_manifest refuses (unsorted,
// duplicate, unknown kind or mode).
struct RawEntry {
  std::uint8_t kind = 2; // 1 dir, 2 file, anything else is hostile
  std::uint8_t mode = 0;
  std::string path;
  std::uint64_t size = 0; // files (kind 2) only
  Hash hash{};            // files (kind 2) only
};

// BLAKE2b-256 of `content` (the manifest's hash).
Hash content_hash(std::string_view content);
// A file entry whose size and hash match `content`.
RawEntry file_entry(const std::string& path, std::string_view content);
// The manifest bytes of PROTOCOL.md §5 for `entries`, without any check. `files` defaults to the
// number of kind-2 entries.
Bytes encode_raw_manifest(const std::vector<RawEntry>& entries,
                          std::optional<std::uint32_t> files = std::nullopt);
// One zstd frame of `data` (content size in the header), as the master sends blobs.
Bytes zstd_frame(ByteView data, int level = 3);
// One zstd frame of `n` zero bytes without a content size in its header and with a 1 MiB window,
// compressed in a streaming fashion (never holds n bytes): a decompression bomb for large n.
Bytes zstd_zero_bomb(std::uint64_t n);

// Sends a whole bundle on an authenticated session: BUNDLE_BEGIN (declared from `entries` unless
// `declared` is given), MANIFEST slices, MANIFEST_END; if a WANT comes, the `blobs` stream as
// BLOB_DATA slices and BUNDLE_END. Returns the first record that is not WANT (BUNDLE_OK or ERROR),
// or what ended the session.
Received send_bundle(RawClient& client, const std::vector<RawEntry>& entries, ByteView blobs,
                     std::optional<BundleBeginBody> declared = std::nullopt);

} // namespace dc::test
