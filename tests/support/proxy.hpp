#pragma once
// A man-in-the-middle TCP proxy for tests (an OpenSSH `modpipe` analogue): listens on
// 127.0.0.1:0, forwards every connection to a target on a thread of its own, records both
// directions, and can XOR one byte at a stream offset or cut the connection after N bytes.

#include "common/bytes.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace dc::test {

enum class Direction { client_to_server = 0, server_to_client = 1 };

// What the proxy does to the connections it accepts (per direction, offsets in that stream).
struct Tamper {
  std::optional<std::size_t> flip_c2s, flip_s2c; // XOR `mask` into the byte at this offset
  std::uint8_t mask = 0x01;
  std::optional<std::size_t> truncate_c2s, truncate_s2c; // forward only N bytes, then cut both
};

class Proxy {
public:
  // Starts listening and forwarding to `target` ("127.0.0.1:port"). Throws std::runtime_error.
  explicit Proxy(const std::string& target, Tamper tamper = {});
  ~Proxy(); // closes every connection and joins every thread
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(m_port); }
  // Applies to connections accepted from now on.
  void set_tamper(const Tamper& tamper);
  std::size_t connections() const;
  // The bytes connection `index` received from that side (before any tampering).
  Bytes recorded(std::size_t index, Direction d) const;
  // Waits until connection `index` exists and both of its sides are closed.
  bool wait_done(std::size_t index, std::chrono::milliseconds timeout) const;

private:
  struct Connection {
    int client = -1;
    int server = -1;
    Tamper tamper;
    Bytes recorded[2];
    bool done = false;
    std::thread thread;
  };

  void accept_loop();
  void forward(Connection& c);
  bool write_all(int fd, const std::uint8_t* data, std::size_t n) const;

  std::string m_target_host;
  std::uint16_t m_target_port = 0;
  int m_listen = -1;
  int m_wake[2] = {-1, -1}; // a pipe: written once at destruction, wakes every poll()
  std::uint16_t m_port = 0;
  std::atomic<bool> m_stopping{false};
  mutable std::mutex m_mutex;
  mutable std::condition_variable m_changed;
  Tamper m_tamper;
  std::vector<std::unique_ptr<Connection>> m_connections;
  std::thread m_acceptor;
};

} // namespace dc::test
