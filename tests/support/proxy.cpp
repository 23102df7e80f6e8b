#include "tests/support/proxy.hpp"

#include "tests/support/raw_client.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

namespace dc::test {
namespace {

[[noreturn]] void fail(const std::string& what)
{
  throw std::runtime_error("proxy: " + what + ": " + std::strerror(errno));
}

sockaddr_in loopback(std::uint16_t port, const std::string& host = "127.0.0.1")
{
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  return a;
}

} // namespace

Proxy::Proxy(const std::string& target, Tamper tamper) : m_tamper(tamper)
{
  const auto [host, port] = split_address(target);
  m_target_host = host;
  m_target_port = port;
  if (pipe2(m_wake, O_CLOEXEC) != 0) {
    fail("pipe2");
  }
  m_listen = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  if (m_listen < 0 || bind(m_listen, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(m_listen, 128) != 0 ||
      getsockname(m_listen, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    fail("listen");
  }
  m_port = ntohs(a.sin_port);
  m_acceptor = std::thread([this] { accept_loop(); });
}

Proxy::~Proxy()
{
  m_stopping = true;
  const char one = 1;
  (void)!write(m_wake[1], &one, 1);
  m_acceptor.join();
  for (auto& c : m_connections) {
    if (c->thread.joinable()) {
      c->thread.join();
    }
  }
  close(m_listen);
  close(m_wake[0]);
  close(m_wake[1]);
}

void Proxy::set_tamper(const Tamper& tamper)
{
  std::lock_guard lock(m_mutex);
  m_tamper = tamper;
}

std::size_t Proxy::connections() const
{
  std::lock_guard lock(m_mutex);
  return m_connections.size();
}

Bytes Proxy::recorded(std::size_t index, Direction d) const
{
  std::lock_guard lock(m_mutex);
  if (index >= m_connections.size()) {
    return {};
  }
  return m_connections[index]->recorded[static_cast<int>(d)];
}

bool Proxy::wait_done(std::size_t index, std::chrono::milliseconds timeout) const
{
  std::unique_lock lock(m_mutex);
  return m_changed.wait_for(
      lock, timeout, [&] { return index < m_connections.size() && m_connections[index]->done; });
}

void Proxy::accept_loop()
{
  while (!m_stopping) {
    pollfd fds[2] = {{m_listen, POLLIN, 0}, {m_wake[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    if (fds[1].revents != 0) {
      return;
    }
    const int client = accept4(m_listen, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      continue;
    }
    const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in target = loopback(m_target_port, m_target_host);
    if (server < 0 ||
        connect(server, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
      close(client);
      if (server >= 0) {
        close(server);
      }
      continue;
    }
    const int on = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    std::lock_guard lock(m_mutex);
    auto c = std::make_unique<Connection>();
    c->client = client;
    c->server = server;
    c->tamper = m_tamper;
    Connection& ref = *c;
    m_connections.push_back(std::move(c));
    ref.thread = std::thread([this, &ref] { forward(ref); });
    m_changed.notify_all();
  }
}

bool Proxy::write_all(int fd, const std::uint8_t* data, std::size_t n) const
{
  while (n > 0) {
    const ssize_t w = send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      data += w;
      n -= static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      return false;
    }
    pollfd fds[2] = {{fd, POLLOUT, 0}, {m_wake[0], POLLIN, 0}};
    poll(fds, 2, -1);
    if (fds[1].revents != 0) {
      return false;
    }
  }
  return true;
}

void Proxy::forward(Connection& c)
{
  const int fd[2] = {c.client, c.server}; // index = the direction whose source it is
  const std::optional<std::size_t> flip[2] = {c.tamper.flip_c2s, c.tamper.flip_s2c};
  const std::optional<std::size_t> cut[2] = {c.tamper.truncate_c2s, c.tamper.truncate_s2c};
  std::size_t offset[2] = {0, 0};
  bool open[2] = {true, true}; // still reading from that source
  std::vector<std::uint8_t> buf(65536);
  bool broken = false;
  while (!m_stopping && !broken && (open[0] || open[1])) {
    // A side we no longer read from is left out (fd -1): its POLLHUP would spin the loop.
    pollfd fds[3] = {{open[0] ? fd[0] : -1, POLLIN, 0},
                     {open[1] ? fd[1] : -1, POLLIN, 0},
                     {m_wake[0], POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    if (fds[2].revents != 0) {
      break;
    }
    for (int d = 0; d < 2 && !broken; ++d) {
      if (!open[d] || fds[d].revents == 0) {
        continue;
      }
      const ssize_t n = recv(fd[d], buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      }
      if (n <= 0) {
        open[d] = false;
        if (n < 0) {
          broken = true; // reset: cut the other side too
        } else {
          shutdown(fd[1 - d], SHUT_WR); // pass the FIN on
        }
        continue;
      }
      auto size = static_cast<std::size_t>(n);
      {
        std::lock_guard lock(m_mutex);
        c.recorded[d].insert(c.recorded[d].end(), buf.begin(), buf.begin() + n);
      }
      bool cut_now = false;
      if (cut[d] && offset[d] + size >= *cut[d]) {
        size = *cut[d] - offset[d];
        cut_now = true;
      }
      if (flip[d] && *flip[d] >= offset[d] && *flip[d] < offset[d] + size) {
        buf[*flip[d] - offset[d]] ^= c.tamper.mask;
      }
      offset[d] += size;
      if (!write_all(fd[1 - d], buf.data(), size) || cut_now) {
        broken = true;
      }
    }
  }
  close(c.client);
  close(c.server);
  std::lock_guard lock(m_mutex);
  c.done = true;
  m_changed.notify_all();
}

} // namespace dc::test
