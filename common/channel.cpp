#include "common/channel.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace dc {

Channel::Outbox::Outbox(tcp::socket& s)
    : socket(&s), progress(s.get_executor(), Clock::time_point::max())
{
}

Channel::Channel(tcp::socket socket)
    : m_socket(std::move(socket)), m_out(std::make_shared<Outbox>(m_socket))
{
  std::error_code ignored;
  m_socket.set_option(tcp::no_delay(true), ignored);
}

Channel::~Channel()
{
  m_out->socket = nullptr;
  m_out->progress.cancel();
}

void Channel::set_transport(noise::TransportState transport)
{
  m_send = std::move(transport.send);
  m_receive = std::move(transport.receive);
  m_session_id = to_hex(ByteView(transport.handshake_hash).first(8));
}

awaitable<bool> Channel::fill(std::size_t need)
{
  while (m_inbox.size() - m_inbox_pos < need) {
    if (m_inbox_pos > 0) {
      m_inbox.erase(m_inbox.begin(), m_inbox.begin() + static_cast<std::ptrdiff_t>(m_inbox_pos));
      m_inbox_pos = 0;
    }
    const std::size_t have = m_inbox.size();
    // Read at most what this record still needs plus a little read-ahead, never more than one
    // maximal record: memory per connection stays bounded before and after authentication.
    const std::size_t want = std::max<std::size_t>(need - have, 4096);
    const std::size_t room = std::min(want, k_max_record_size + 2);
    m_inbox.resize(have + room);
    auto [ec, n] = co_await m_socket.async_read_some(asio::buffer(m_inbox.data() + have, room),
                                                     as_tuple(use_awaitable));
    m_inbox.resize(have + n);
    if (ec == asio::error::eof && m_inbox.size() == 0) {
      co_return false;
    }
    if (ec) {
      throw std::system_error(ec);
    }
  }
  co_return true;
}

awaitable<Bytes> Channel::read_raw(std::size_t n)
{
  if (!co_await fill(n)) {
    throw std::system_error(asio::error::eof);
  }
  Bytes out(m_inbox.begin() + static_cast<std::ptrdiff_t>(m_inbox_pos),
            m_inbox.begin() + static_cast<std::ptrdiff_t>(m_inbox_pos + n));
  m_inbox_pos += n;
  co_return out;
}

awaitable<void> Channel::write_raw(ByteView data)
{
  co_await asio::async_write(m_socket, asio::buffer(data.data(), data.size()), use_awaitable);
  m_out->bytes_sent += data.size();
}

awaitable<void> Channel::send(RecordType type, ByteView body)
{
  const auto out = m_out;
  while (!out->error && out->queued_len > k_max_queued) {
    co_await out->progress.async_wait(as_tuple(use_awaitable));
  }
  post(type, body);
}

void Channel::post(RecordType type, ByteView body)
{
  const auto& out = m_out;
  if (out->error) {
    throw std::system_error(out->error);
  }
  encode_plaintext(type, body, m_plaintext);
  const std::size_t at = out->queued_len;
  const std::size_t end = at + 2 + m_plaintext.size() + noise::k_tag_size;
  if (out->queued.size() < end) {
    out->queued.resize(std::max(end, 2 * out->queued.size()));
  }
  const std::size_t len = m_send.encrypt_into({}, m_plaintext, out->queued.data() + at + 2);
  out->queued[at] = static_cast<std::uint8_t>(len >> 8);
  out->queued[at + 1] = static_cast<std::uint8_t>(len);
  out->queued_len = at + 2 + len;
  if (!out->writing) {
    out->writing = true;
    // Detached on purpose: the writer reports failures through out->error to every sender.
    asio::co_spawn(m_socket.get_executor(), write_loop(out), asio::detached);
  }
}

awaitable<void> Channel::write_loop(std::shared_ptr<Outbox> out)
{
  RawBuffer& writing = out->spare;
  out->last_progress = Clock::now();
  while (out->socket != nullptr && out->queued_len > 0 && !out->error) {
    writing.swap(out->queued); // records queued meanwhile go out in the next, batched, write
    const std::size_t size = std::exchange(out->queued_len, 0);
    std::size_t done = 0;
    while (done < size && out->socket != nullptr) {
      // write_some, not write: each partial write is progress that the stall check can see.
      auto [ec, n] = co_await out->socket->async_write_some(
          asio::buffer(writing.data() + done, size - done), as_tuple(use_awaitable));
      done += n;
      out->bytes_sent += n;
      out->last_progress = Clock::now();
      if (ec) {
        out->error = ec;
        break;
      }
    }
    out->progress.cancel();
    if (out->error) {
      break;
    }
  }
  // The queue ran dry: a burst does not pin its buffers for the rest of the session.
  constexpr std::size_t k_keep_capacity = 1u << 20;
  for (RawBuffer* b : {&out->queued, &out->spare}) {
    if (b->size() > k_keep_capacity && out->queued_len == 0) {
      RawBuffer().swap(*b);
    }
  }
  if (out->socket == nullptr && !out->error) {
    out->error = asio::error::operation_aborted;
  }
  out->writing = false;
  out->progress.cancel();
}

Clock::duration Channel::send_stalled_for() const
{
  return m_out->writing ? Clock::now() - m_out->last_progress : Clock::duration::zero();
}

awaitable<void> Channel::drain()
{
  const auto out = m_out;
  while (!out->error && (out->writing || out->queued_len > 0)) {
    co_await out->progress.async_wait(as_tuple(use_awaitable));
  }
  if (out->error) {
    throw std::system_error(out->error);
  }
}
awaitable<std::optional<Record>> Channel::receive()
{
  if (!co_await fill(2)) {
    co_return std::nullopt;
  }
  const std::size_t len = (std::size_t(m_inbox[m_inbox_pos]) << 8) | m_inbox[m_inbox_pos + 1];
  if (len < k_min_record_size) {
    throw ProtocolError("record length " + std::to_string(len) + " below minimum");
  }
  if (!co_await fill(2 + len)) {
    throw std::system_error(asio::error::eof);
  }
  const ByteView sealed(m_inbox.data() + m_inbox_pos + 2, len);
  Bytes plaintext;
  try {
    plaintext = m_receive.decrypt({}, sealed);
  } catch (const ProtocolError& e) {
    throw AuthenticationError(e.what());
  }
  m_inbox_pos += 2 + len;
  co_return decode_plaintext(plaintext);
}

void Channel::shutdown_send()
{
  std::error_code ignored;
  m_socket.shutdown(tcp::socket::shutdown_send, ignored);
}

void Channel::close()
{
  std::error_code ignored;
  m_socket.close(ignored);
  m_out->progress.cancel();
}

} // namespace dc
