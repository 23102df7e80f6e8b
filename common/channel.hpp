#pragma once
// Channel: one TCP connection carrying encrypted records (PROTOCOL.md §4) once a handshake set its
// keys. Sends are queued and written by one writer at a time, so any coroutine may send; the
// queue is bounded (senders wait), which is how backpressure reaches a child's output pipe.

#include "common/async.hpp"
#include "common/noise.hpp"
#include "common/wire.hpp"

#include <optional>
#include <system_error>

namespace dc {

class Channel {
public:
  explicit Channel(tcp::socket socket);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  tcp::socket& socket() { return m_socket; }
  bool has_keys() const { return m_send.has_key(); }
  // Installs the transport keys of a finished handshake; the session id is h[0..8) in hex.
  void set_transport(noise::TransportState transport);
  const std::string& session_id() const { return m_session_id; }

  // Reads exactly n raw bytes (handshake phase). Throws std::system_error on EOF or socket errors.
  awaitable<Bytes> read_raw(std::size_t n);
  // Writes raw bytes (handshake phase, nothing queued). Throws std::system_error.
  awaitable<void> write_raw(ByteView data);

  // Encrypts and queues one record; waits while more than k_max_queued bytes are queued.
  // Throws std::system_error once the connection failed, ProtocolError on an oversized body.
  awaitable<void> send(RecordType type, ByteView body);
  awaitable<void> send(RecordType type, std::string_view body)
  {
    return send(type, as_bytes(body));
  }
  // Encrypts and queues one small control record at once, ignoring the queue bound (PING,
  // CANCEL from timers and signal handlers). Throws std::system_error once the connection failed.
  void post(RecordType type, ByteView body);
  // Waits until every queued byte has been handed to the kernel. Throws std::system_error.
  awaitable<void> drain();

  // Reads and decrypts the next record. Returns nullopt on a clean EOF between records; throws
  // AuthenticationError on a failed decrypt, ProtocolError on a bad length or an unknown type,
  // and std::system_error on socket errors.
  awaitable<std::optional<Record>> receive();

  // Half-closes our side after BYE; errors are ignored.
  void shutdown_send();
  void close();

  std::uint64_t bytes_sent() const { return m_out->bytes_sent; }
  // How long queued output has been waiting without the kernel taking a single byte (zero when
  // nothing is queued): a peer that stops reading shows here.
  Clock::duration send_stalled_for() const;

  // Queued output (encrypted) above which senders wait (PROTOCOL.md §6). The kernel's socket
  // buffer holds more; this only has to keep one write call busy. It is per session, and a master
  // has one session per node: 8 MiB cost 8 nodes 145 MB of RSS for a 20 MB upload.
  static constexpr std::size_t k_max_queued = 256u << 10;

private:
  // Everything the detached writer touches lives here, so it outlives the Channel safely.
  struct Outbox {
    explicit Outbox(tcp::socket& s);
    tcp::socket* socket; // null once the Channel is gone
    // Records waiting for the writer: the first queued_len bytes of `queued`. Its size only grows
    // (no zero-fill per record); `spare` is the buffer being written, then reused as the next
    // queue, so streaming output allocates (and faults in fresh pages) only while it grows.
    RawBuffer queued;
    std::size_t queued_len = 0;
    RawBuffer spare;
    bool writing = false;
    std::error_code error;
    std::uint64_t bytes_sent = 0;
    Clock::time_point last_progress{}; // last time the kernel took bytes, or writing started
    asio::steady_timer progress;       // cancelled whenever a write completes; senders wait on it
  };
  static awaitable<void> write_loop(std::shared_ptr<Outbox> out);
  awaitable<bool> fill(std::size_t need); // false on clean EOF with nothing buffered

  tcp::socket m_socket;
  noise::CipherState m_send;
  noise::CipherState m_receive;
  std::shared_ptr<Outbox> m_out;
  Bytes m_plaintext; // scratch for the record being encrypted
  RawBuffer m_inbox;
  std::size_t m_inbox_pos = 0;
  std::string m_session_id;
};

} // namespace dc
