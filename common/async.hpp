#pragma once
// Asio vocabulary shared by both programs: one io_context, one thread, C++20 coroutines.

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <chrono>
#include <memory>

namespace dc {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Suspends the calling coroutine for `d`.
inline awaitable<void> sleep_for(Clock::duration d)
{
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(as_tuple(use_awaitable));
}

// Closes a socket when a time limit passes, so whatever operation is pending on it fails.
// Do NOT race an operation against a timer with `||` in Asio 1.22 (see STYLE.md §5).
class Deadline {
public:
  Deadline(tcp::socket& socket, Clock::duration limit);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // Restarts the countdown with a new limit (e.g. after the handshake, or on every record).
  void extend(Clock::duration limit);
  // Stops the countdown for good.
  void disarm();
  // True once the limit passed and the socket was closed by us; turn the error into "timed out".
  bool expired() const { return m_state->expired; }

private:
  struct State {
    tcp::socket* socket;
    std::uint64_t generation = 0;
    bool expired = false;
  };
  asio::steady_timer m_timer;
  std::shared_ptr<State> m_state;
};

} // namespace dc

namespace dc {

// A level-free wake-up for coroutines on one thread: wait() suspends until the next notify().
// Waiters re-check their condition in a loop (`while (!ready) co_await event.wait();`).
class Event {
public:
  explicit Event(const asio::any_io_executor& ex) : m_timer(ex, Clock::time_point::max()) {}
  void notify() { m_timer.cancel(); }
  awaitable<void> wait() { co_await m_timer.async_wait(as_tuple(use_awaitable)); }

private:
  asio::steady_timer m_timer;
};

} // namespace dc
