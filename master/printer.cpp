#include "master/printer.hpp"

#include "common/log.hpp"
#include "common/signals_blocked.hpp"
#include "master/terminal_style.hpp"

#include <asio/experimental/as_tuple.hpp>

#include <algorithm>
#include <cerrno>
#include <poll.h>
#include <system_error>
#include <unistd.h>

namespace dc::master {
namespace {

// A queued buffer stops taking more lines at this size: large enough that 16M short lines cost a
// few thousand write(2) calls, small enough that the writer starts on fresh output quickly.
constexpr std::size_t k_chunk_target = 256 << 10;
constexpr std::string_view k_erase_line = "\r\x1b[K"; // carriage return, erase to end of line
// Written buffers kept for reuse, so a steady stream of output does not allocate.
constexpr std::size_t k_max_spare_buffers = 4;
// A held tail that grew beyond this (a long line) gives its memory back once printed.
constexpr std::size_t k_keep_held_capacity = 64 << 10;

// Writes all of `bytes` to `fd`, waiting in poll() if the fd is non-blocking; returns 0 or errno.
int write_all(int fd, std::string_view bytes)
{
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(std::size_t(n));
    } else if (n == 0) {
      return EIO; // only for a zero-length write, which we never ask for
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, -1); // POLLERR/POLLHUP: the next write reports the error
    } else if (errno != EINTR) {
      return errno;
    }
  }
  return 0;
}

} // namespace

Printer::Printer(asio::any_io_executor ex, int out_fd, int err_fd)
    : m_executor(ex), m_writable(ex, asio::steady_timer::time_point::max()),
      m_alive(std::make_shared<bool>(true)), m_out_fd(out_fd), m_err_fd(err_fd)
{
  const SignalsBlocked in_writer; // never a signal in the middle of a write(2)
  m_writer = std::thread(&Printer::write_loop, this);
}

Printer::~Printer()
{
  {
    std::lock_guard lock(m_mutex);
    m_stopping = true;
  }
  m_work_ready.notify_one();
  if (m_writer.joinable()) {
    m_writer.join(); // the writer leaves only once the queue is empty
  }
  *m_alive = false;
}

void Printer::set_limits(const PrinterLimits& limits)
{
  std::lock_guard lock(m_mutex);
  m_limits = limits;
}

void Printer::set_labels(const std::vector<std::string>& labels, bool color_stdout,
                         bool color_stderr)
{
  const bool color[2] = {color_stdout, color_stderr};
  for (int stream = 0; stream < 2; ++stream) {
    m_prefixes[stream].clear();
    m_prefixes[stream].reserve(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) {
      m_prefixes[stream].push_back(color[stream] ? colored_label(labels[i], i) + " | "
                                                 : labels[i] + " | ");
    }
  }
  if (m_held.size() < labels.size()) {
    m_held.resize(labels.size());
  }
}

const std::string& Printer::prefix(std::size_t node, bool is_stderr)
{
  std::vector<std::string>& prefixes = m_prefixes[is_stderr ? 1 : 0];
  while (prefixes.size() <= node) {
    prefixes.push_back(std::to_string(prefixes.size()) + " | ");
  }
  return prefixes[node];
}

std::string& Printer::held(std::size_t node, bool is_stderr)
{
  if (m_held.size() <= node) {
    m_held.resize(node + 1);
  }
  return is_stderr ? m_held[node].err : m_held[node].out;
}

bool Printer::closed(bool is_stderr) const
{
  return (is_stderr ? m_stderr_closed : m_stdout_closed).load(std::memory_order_relaxed);
}

// Appends to the last queued buffer of that stream (or a new one) under the lock: `fill` copies
// the bytes straight into the buffer the writer thread will hand to write(2).
std::string& Printer::tail_locked(bool is_stderr)
{
  if (m_queue.empty() || m_queue.back().is_stderr != is_stderr ||
      m_queue.back().bytes.size() >= k_chunk_target) {
    Chunk chunk;
    chunk.is_stderr = is_stderr;
    if (!m_spare.empty()) {
      chunk.bytes = std::move(m_spare.back());
      m_spare.pop_back();
    }
    m_queue.push_back(std::move(chunk));
  }
  return m_queue.back().bytes;
}

template <typename Fill>
void Printer::enqueue(bool is_stderr, std::size_t size_hint, Fill&& fill)
{
  {
    std::lock_guard lock(m_mutex);
    if (m_bar_shown) {
      // Any output, on either stream, first erases the progress bar (queued in order).
      m_bar_shown = false;
      tail_locked(true) += k_erase_line;
      m_queued_bytes += k_erase_line.size();
    }
    std::string& bytes = tail_locked(is_stderr);
    const std::size_t before = bytes.size();
    try {
      bytes.reserve(before + size_hint); // libstdc++ at least doubles, so growth stays amortised
      fill(bytes);
    } catch (...) {
      bytes.resize(before); // keep m_queued_bytes exact
      throw;
    }
    m_queued_bytes += bytes.size() - before;
  }
  m_work_ready.notify_one();
}

void Printer::output(std::size_t node, bool is_stderr, ByteView data)
{
  if (closed(is_stderr)) {
    held(node, is_stderr).clear();
    return;
  }
  const std::string_view text = as_chars(data);
  const auto last_newline = text.rfind('\n');
  if (last_newline == std::string_view::npos) {
    hold(node, is_stderr, text);
    return;
  }
  const std::string_view lines = text.substr(0, last_newline + 1);
  std::string& tail = held(node, is_stderr);
  const std::string& tag = prefix(node, is_stderr);
  const auto count = std::size_t(std::count(lines.begin(), lines.end(), '\n'));
  enqueue(is_stderr, tail.size() + lines.size() + count * tag.size(), [&](std::string& out) {
    std::size_t start = 0;
    while (start < lines.size()) {
      const std::size_t end = lines.find('\n', start) + 1;
      out += tag;
      if (start == 0) {
        out += tail; // the held beginning of the first line
      }
      out.append(lines.data() + start, end - start);
      start = end;
    }
  });
  tail.clear();
  hold(node, is_stderr, text.substr(last_newline + 1));
}

void Printer::hold(std::size_t node, bool is_stderr, std::string_view text)
{
  if (text.empty()) {
    return;
  }
  std::string& tail = held(node, is_stderr);
  tail.append(text);
  if (tail.size() > m_limits.max_held_line) {
    print_held(node, is_stderr, " [line split]");
  }
}

void Printer::print_held(std::size_t node, bool is_stderr, std::string_view marker)
{
  std::string& tail = held(node, is_stderr);
  if (tail.empty()) {
    return;
  }
  if (!closed(is_stderr)) {
    const std::string& tag = prefix(node, is_stderr);
    enqueue(is_stderr, tag.size() + tail.size() + marker.size() + 1, [&](std::string& out) {
      out += tag;
      out += tail;
      out += marker;
      out += '\n';
    });
  }
  tail.clear();
  if (tail.capacity() > k_keep_held_capacity) {
    tail.shrink_to_fit();
  }
}

void Printer::finish_node(std::size_t node)
{
  print_held(node, false, " [no newline]");
  print_held(node, true, " [no newline]");
}

void Printer::status(std::string_view line)
{
  if (closed(true)) {
    return;
  }
  enqueue(true, line.size() + 1, [&](std::string& out) {
    out += line;
    out += '\n';
  });
}

void Printer::write(bool is_stderr, std::string_view bytes)
{
  if (bytes.empty() || closed(is_stderr)) {
    return;
  }
  enqueue(is_stderr, bytes.size(), [&](std::string& out) { out += bytes; });
}

void Printer::show_bar(std::string_view line)
{
  if (closed(true)) {
    return;
  }
  enqueue(true, k_erase_line.size() + line.size(), [&](std::string& out) {
    out += k_erase_line;
    out += line;
  });
  m_bar_shown = true;
}

void Printer::clear_bar()
{
  if (m_bar_shown && !closed(true)) {
    enqueue(true, 0, [](std::string&) {}); // enqueue erases it first
  }
}

asio::awaitable<void> Printer::wait_writable()
{
  for (;;) {
    {
      std::lock_guard lock(m_mutex);
      if (m_queued_bytes <= m_limits.high_water) {
        break;
      }
      m_waiters = true;
    }
    // The writer's wake-up is posted to this (single) thread, so it cannot run before this wait
    // is registered; cancel() wakes every waiter, each re-checks the level.
    co_await m_writable.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

void Printer::flush()
{
  std::unique_lock lock(m_mutex);
  m_idle.wait(lock, [this] { return m_queue.empty() && !m_writing; });
}

void Printer::write_loop()
{
  std::unique_lock lock(m_mutex);
  for (;;) {
    m_work_ready.wait(lock, [this] { return !m_queue.empty() || m_stopping; });
    if (m_queue.empty()) {
      return; // stopping, and everything is written
    }
    Chunk chunk = std::move(m_queue.front());
    m_queue.pop_front();
    m_writing = true;
    lock.unlock();

    std::atomic<bool>& stream_closed = chunk.is_stderr ? m_stderr_closed : m_stdout_closed;
    if (!stream_closed.load(std::memory_order_relaxed)) {
      const int error = write_all(chunk.is_stderr ? m_err_fd : m_out_fd, chunk.bytes);
      if (error != 0) {
        stream_closed.store(true, std::memory_order_relaxed);
        if (!chunk.is_stderr) {
          asio::post(m_executor, [this, alive = m_alive] {
            if (*alive && m_on_stdout_closed) {
              m_on_stdout_closed();
            }
          });
        }
        if (error != EPIPE && !chunk.is_stderr) { // EPIPE is `| head`: end quietly
          log_warn("stdout: %s; dropping further output",
                   std::error_code(error, std::generic_category()).message().c_str());
        }
      }
    }

    lock.lock();
    m_writing = false;
    m_queued_bytes -= chunk.bytes.size();
    if (m_spare.size() < k_max_spare_buffers && chunk.bytes.capacity() <= 4 * k_chunk_target) {
      chunk.bytes.clear();
      m_spare.push_back(std::move(chunk.bytes));
    }
    if (m_queue.empty()) {
      m_idle.notify_all();
    }
    if (m_waiters && m_queued_bytes < m_limits.low_water) {
      m_waiters = false;
      asio::post(m_executor, [this, alive = m_alive] {
        if (*alive) {
          m_writable.cancel();
        }
      });
    }
  }
}

} // namespace dc::master
