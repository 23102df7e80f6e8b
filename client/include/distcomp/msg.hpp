// distcomp/msg.hpp: node-to-node messages for jobs run by distcomp (header-only, C++17, POSIX).
//
//   #include <distcomp/msg.hpp>
//   distcomp::Msg msg;                        // connects to $DISTCOMP_MSG_SOCKET
//   msg.send((msg.node_id() + 1) % msg.n_nodes(), "hello");
//   std::string text = msg.recv(msg.node_id() == 0 ? msg.n_nodes() - 1 : msg.node_id() - 1);
//   auto [from, bytes] = msg.recv_any();
//   msg.barrier();
//   std::string all = msg.broadcast(0, msg.node_id() == 0 ? "data" : "");
//
// Every failure (no endpoint, a peer whose job ended, a barrier a node never reached) throws
// distcomp::MsgError with a one-line message. One Msg is one connection to the local worker: use
// one per thread. The worker sets CPATH so that this header is found without an install step.
//
// Socket protocol (PROTOCOL.md "Messages"): request = op u8, 0 0 0, peer u32, length u64 (big
// endian), payload; reply = status u8 (0 ok, 1 error), 0 0 0, peer u32, length u64, payload
// (the message, or the error text). Ops: 1 send, 2 recv, 3 recv_any, 4 barrier.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

namespace distcomp {

class MsgError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

class Msg {
public:
  // Connects to the job's endpoint. Throws MsgError outside a distcomp job.
  Msg()
  {
    m_rank = env_int("DISTCOMP_RANK", env_int("DISTCOMP_NODE_ID", -1));
    m_size = env_int("DISTCOMP_SIZE", env_int("DISTCOMP_N_NODES", -1));
    const char* path = std::getenv("DISTCOMP_MSG_SOCKET");
    if (path == nullptr || *path == '\0' || m_rank < 0 || m_size <= 0) {
      throw MsgError("distcomp messages: DISTCOMP_MSG_SOCKET is not set (not run by a distcomp "
                     "worker with messaging?)");
    }
    // `@name` is an abstract socket (what the worker uses): a NUL, then the name, no terminator.
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::size_t n = std::strlen(path);
    if (n >= sizeof addr.sun_path) {
      throw MsgError("distcomp messages: socket address too long");
    }
    std::memcpy(addr.sun_path, path, n);
    socklen_t addr_len = sizeof addr;
    if (path[0] == '@') {
      addr.sun_path[0] = '\0';
      addr_len = socklen_t(offsetof(sockaddr_un, sun_path) + n);
    }
    m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m_fd < 0 || ::connect(m_fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
      const int e = errno;
      close_fd();
      throw MsgError(std::string("distcomp messages: cannot connect to ") + path + ": " +
                     std::strerror(e));
    }
  }
  ~Msg() { close_fd(); }
  Msg(const Msg&) = delete;
  Msg& operator=(const Msg&) = delete;

  int node_id() const { return m_rank; }
  int n_nodes() const { return m_size; }
  int rank() const { return m_rank; }
  int size() const { return m_size; }

  // Returns once the local worker accepted the message (it blocks only while the stream to
  // `dst` is full). Messages from one node to another arrive in the order they were sent.
  void send(int dst, const void* data, std::size_t n)
  {
    check_node(dst, "send");
    request(1, dst, data, n);
    expect_empty_reply("send");
  }
  void send(int dst, std::string_view data) { send(dst, data.data(), data.size()); }

  // The next message from `src` (blocks until it arrives).
  std::string recv(int src)
  {
    check_node(src, "recv");
    request(2, src, nullptr, 0);
    return read_reply("recv").second;
  }

  // The next message from any node, with its source.
  std::pair<int, std::string> recv_any()
  {
    request(3, 0, nullptr, 0);
    return read_reply("recv_any");
  }

  // Returns when every node of the run has entered the barrier; throws if one ended first.
  void barrier()
  {
    request(4, 0, nullptr, 0);
    expect_empty_reply("barrier");
  }

  // Root sends `data` to every other node; every node returns root's data.
  std::string broadcast(int root, std::string_view data = {})
  {
    check_node(root, "broadcast");
    if (m_rank == root) {
      for (int node = 0; node < m_size; ++node) {
        if (node != root) {
          send(node, data);
        }
      }
      return std::string(data);
    }
    return recv(root);
  }

private:
  static int env_int(const char* name, int fallback)
  {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
      return fallback;
    }
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    return (*end == '\0' && x >= 0 && x < (1L << 30)) ? int(x) : fallback;
  }

  void check_node(int node, const char* what) const
  {
    if (node < 0 || node >= m_size) {
      throw MsgError(std::string(what) + ": no node " + std::to_string(node) + " (the run has " +
                     std::to_string(m_size) + " nodes)");
    }
  }

  void close_fd()
  {
    if (m_fd >= 0) {
      ::close(m_fd);
      m_fd = -1;
    }
  }

  void write_all(const void* data, std::size_t n)
  {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::send(m_fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        throw MsgError(std::string("distcomp messages: connection to the worker lost: ") +
                       std::strerror(errno));
      }
      p += w;
      n -= std::size_t(w);
    }
  }

  void read_all(void* data, std::size_t n)
  {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      const ssize_t r = ::recv(m_fd, p, n, 0);
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r <= 0) {
        throw MsgError("distcomp messages: connection to the worker lost (the worker ended the "
                       "job, or a message was cut short because its sender ended)");
      }
      p += r;
      n -= std::size_t(r);
    }
  }

  void request(std::uint8_t op, int peer, const void* data, std::size_t n)
  {
    unsigned char h[16] = {op, 0, 0, 0};
    const auto p = static_cast<std::uint32_t>(peer);
    for (int i = 0; i < 4; ++i) {
      h[4 + i] = static_cast<unsigned char>(p >> (24 - 8 * i));
    }
    const auto len = static_cast<std::uint64_t>(n);
    for (int i = 0; i < 8; ++i) {
      h[8 + i] = static_cast<unsigned char>(len >> (56 - 8 * i));
    }
    write_all(h, sizeof h);
    if (n > 0) {
      write_all(data, n);
    }
  }

  std::pair<int, std::string> read_reply(const char* what)
  {
    unsigned char h[16];
    read_all(h, sizeof h);
    std::uint32_t peer = 0;
    for (int i = 0; i < 4; ++i) {
      peer = (peer << 8) | h[4 + i];
    }
    std::uint64_t len = 0;
    for (int i = 0; i < 8; ++i) {
      len = (len << 8) | h[8 + i];
    }
    if (len > (std::uint64_t(1) << 30)) {
      throw MsgError(std::string(what) + ": reply of impossible length");
    }
    std::string payload(static_cast<std::size_t>(len), '\0');
    if (len > 0) {
      read_all(payload.data(), payload.size());
    }
    if (h[0] != 0) {
      throw MsgError(payload);
    }
    return {static_cast<int>(peer), std::move(payload)};
  }

  void expect_empty_reply(const char* what) { read_reply(what); }

  int m_fd = -1;
  int m_rank = -1;
  int m_size = -1;
};

} // namespace distcomp
