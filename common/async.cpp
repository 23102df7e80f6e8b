#include "common/async.hpp"

namespace dc {

Deadline::Deadline(tcp::socket& socket, Clock::duration limit)
    : m_timer(socket.get_executor()), m_state(std::make_shared<State>(State{&socket}))
{
  extend(limit);
}

Deadline::~Deadline()
{
  disarm();
}

void Deadline::extend(Clock::duration limit)
{
  const std::uint64_t generation = ++m_state->generation;
  m_timer.expires_after(limit);
  // The handler may run after a newer extend() or after destruction: the generation tells.
  m_timer.async_wait([state = m_state, generation](std::error_code ec) {
    if (ec || state->generation != generation || state->socket == nullptr) {
      return;
    }
    state->expired = true;
    std::error_code ignored;
    state->socket->shutdown(tcp::socket::shutdown_both, ignored);
    state->socket->close(ignored);
  });
}

void Deadline::disarm()
{
  ++m_state->generation;
  m_state->socket = nullptr;
  m_timer.cancel();
}

} // namespace dc
