#include "worker/msg_endpoint.hpp"

#include "common/error.hpp"
#include "common/log.hpp"

#include <sodium.h>

#include <sys/socket.h>
#include <unistd.h>

namespace dc::worker {
namespace {

std::string node_text(std::uint32_t node)
{
  return "node " + std::to_string(node);
}

} // namespace

MsgEndpoint::MsgEndpoint(Channel& channel, std::uint32_t rank, std::uint32_t size,
                         std::string label)
    : m_channel(channel), m_rank(rank), m_size(size), m_label(std::move(label)),
      m_acceptor(channel.socket().get_executor()), m_changed(channel.socket().get_executor())
{
  // An abstract socket (Linux): no inode to create and unlink per job, which on ext4 cost ~0.5 ms
  // of CPU per job, and no path length limit. The name holds 128 random bits, so nobody can bind
  // it first; other uids are refused at accept (SO_PEERCRED), as the job dir's 0700 kept them out.
  std::uint8_t id[16];
  randombytes_buf(id, sizeof id);
  m_name = "distcomp-msg-" + to_hex(ByteView(id, sizeof id));
  m_acceptor.open();
  m_acceptor.bind(asio::local::stream_protocol::endpoint(std::string(1, '\0') + m_name));
  m_acceptor.listen();
}

void MsgEndpoint::start()
{
  ++m_coroutines;
  asio::co_spawn(m_acceptor.get_executor(), accept_loop(shared_from_this()), asio::detached);
}

awaitable<void> MsgEndpoint::accept_loop(std::shared_ptr<MsgEndpoint> self)
{
  while (!m_closed) {
    auto [ec, socket] = co_await m_acceptor.async_accept(as_tuple(use_awaitable));
    if (m_closed || ec == asio::error::operation_aborted) {
      break;
    }
    if (ec) {
      log_warn("%s: message socket: accept: %s", m_label.c_str(), ec.message().c_str());
      co_await sleep_for(100ms); // EMFILE: back off instead of spinning
      continue;
    }
    // Only our own uid's processes (the job's) may talk to this job's endpoint.
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        cred.uid != geteuid()) {
      continue;
    }
    auto client = std::make_shared<local_socket>(std::move(socket));
    m_clients.insert(client);
    ++m_coroutines;
    asio::co_spawn(m_acceptor.get_executor(), serve(self, client), asio::detached);
  }
  --m_coroutines;
  changed();
}

awaitable<void> MsgEndpoint::close()
{
  m_closed = true;
  std::error_code ignored;
  m_acceptor.close(ignored);
  for (const auto& client : m_clients) {
    client->close(ignored);
  }
  changed();
  while (m_coroutines > 0) {
    co_await wait_change();
  }
}

awaitable<void> MsgEndpoint::wait_change()
{
  co_await m_changed.wait();
}

awaitable<bool> MsgEndpoint::activate()
{
  if (m_activation == Activation::idle) {
    m_activation = Activation::asked;
    try {
      co_await m_channel.send(RecordType::msg_active, ByteView{});
    } catch (const std::exception&) {
      co_return false; // the session is gone
    }
  }
  while (m_activation != Activation::ready && !m_closed) {
    co_await wait_change();
  }
  co_return !m_closed;
}

awaitable<void> MsgEndpoint::serve(std::shared_ptr<MsgEndpoint> self,
                                   std::shared_ptr<local_socket> socket)
{
  try {
    bool open = co_await activate();
    while (open && !m_closed) {
      std::array<std::uint8_t, k_msg_socket_header_size> raw{};
      auto [ec, n] = co_await asio::async_read(*socket, asio::buffer(raw), as_tuple(use_awaitable));
      if (ec || m_closed) {
        break;
      }
      MsgSocketHeader request;
      bool bad = false;
      try {
        request = decode_socket_header(raw);
      } catch (const ProtocolError&) {
        bad = true;
      }
      if (bad) {
        co_await reply(*socket, k_msg_status_error, 0, "bad request header");
        break;
      }
      switch (static_cast<MsgOp>(request.code)) {
      case MsgOp::send:
        open = co_await do_send(*socket, request);
        break;
      case MsgOp::recv:
        open = co_await do_recv(*socket, request.peer);
        break;
      case MsgOp::recv_any:
        open = co_await do_recv(*socket, std::nullopt);
        break;
      case MsgOp::barrier:
        open = co_await do_barrier(*socket);
        break;
      default:
        co_await reply(*socket, k_msg_status_error, 0,
                       "unknown operation " + std::to_string(request.code));
        open = false;
      }
    }
  } catch (const std::exception& e) {
    log_debug("%s: message socket: %s", m_label.c_str(), e.what());
  }
  std::error_code ignored;
  socket->close(ignored);
  m_clients.erase(socket);
  (void)self;
  --m_coroutines;
  changed();
}

awaitable<bool> MsgEndpoint::reply(local_socket& socket, std::uint8_t status, std::uint32_t peer,
                                   std::string_view payload)
{
  const auto header = encode_socket_header({status, peer, payload.size()});
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(header), asio::buffer(payload)};
  auto [ec, n] = co_await asio::async_write(socket, buffers, as_tuple(use_awaitable));
  co_return !ec;
}

awaitable<bool> MsgEndpoint::discard(local_socket& socket, std::uint64_t n)
{
  Bytes sink(std::min<std::uint64_t>(n, 65536));
  while (n > 0) {
    const std::size_t take = std::size_t(std::min<std::uint64_t>(n, sink.size()));
    auto [ec, got] =
        co_await asio::async_read(socket, asio::buffer(sink.data(), take), as_tuple(use_awaitable));
    if (ec) {
      co_return false;
    }
    n -= got;
  }
  co_return true;
}

awaitable<bool> MsgEndpoint::do_send(local_socket& socket, const MsgSocketHeader& request)
{
  const std::uint32_t dst = request.peer;
  if (request.length > k_max_msg_size) {
    co_await reply(socket, k_msg_status_error, dst,
                   "send: message of " + std::to_string(request.length) +
                       " bytes is larger than the limit of " + std::to_string(k_max_msg_size));
    co_return false;
  }
  std::string refusal;
  if (dst >= m_size) {
    refusal = "send: no " + node_text(dst) + " (the run has " + std::to_string(m_size) + " nodes)";
  } else if (m_ended.count(dst) != 0) {
    refusal = "send to " + node_text(dst) + ": its job has ended";
  }
  if (!refusal.empty()) {
    if (!co_await discard(socket, request.length)) {
      co_return false;
    }
    co_return co_await reply(socket, k_msg_status_error, dst, refusal);
  }
  Destination& stream = m_destinations[dst];
  while (stream.busy && !m_closed) {
    co_await wait_change(); // one message at a time per stream, whole
  }
  if (m_closed) {
    co_return false;
  }
  stream.busy = true;
  std::uint64_t left = request.length;
  bool first = true;
  Bytes chunk;
  bool ok = true;
  while (ok && (first || left > 0)) {
    while (!m_closed && m_ended.count(dst) == 0 && stream.credit == 0 && left > 0) {
      co_await wait_change();
    }
    if (m_closed) {
      ok = false;
      break;
    }
    if (m_ended.count(dst) != 0) {
      refusal = "send to " + node_text(dst) + ": its job ended during the send";
      break;
    }
    const std::size_t n =
        std::size_t(std::min<std::uint64_t>({left, stream.credit, k_max_msg_chunk}));
    chunk.resize(n);
    if (n > 0) {
      auto [ec, got] =
          co_await asio::async_read(socket, asio::buffer(chunk), as_tuple(use_awaitable));
      if (ec) {
        ok = false;
        break;
      }
    }
    stream.credit -= n;
    left -= n;
    const Bytes body = encode_msg_chunk(
        dst, first ? std::optional<std::uint64_t>(request.length) : std::nullopt, chunk);
    first = false;
    try {
      co_await m_channel.send(RecordType::msg_data, body);
    } catch (const std::exception&) {
      ok = false; // the session is gone
      first = true;
    }
  }
  if (!first && left > 0) {
    // The job went away mid-message (or the destination ended): the stream drops what was sent.
    try {
      const Bytes abort = encode_msg_abort(dst);
      co_await m_channel.send(RecordType::msg_data, abort);
    } catch (const std::exception&) {
      ok = false;
    }
  }
  stream.busy = false;
  changed();
  if (!ok) {
    co_return false;
  }
  if (!refusal.empty()) {
    if (!co_await discard(socket, left)) {
      co_return false;
    }
    co_return co_await reply(socket, k_msg_status_error, dst, refusal);
  }
  co_return co_await reply(socket, k_msg_status_ok, dst, {});
}

std::shared_ptr<MsgEndpoint::Incoming> MsgEndpoint::next_message(std::optional<std::uint32_t> from,
                                                                 std::uint32_t& source)
{
  Source* best = nullptr;
  if (from) {
    const auto it = m_sources.find(*from);
    if (it != m_sources.end() && !it->second.messages.empty()) {
      best = &it->second;
      source = *from;
    }
  } else {
    for (auto& [id, s] : m_sources) {
      if (!s.messages.empty() &&
          (best == nullptr || s.messages.front()->seq < best->messages.front()->seq)) {
        best = &s;
        source = id;
      }
    }
  }
  if (best == nullptr) {
    return nullptr;
  }
  std::shared_ptr<Incoming> message = best->messages.front();
  best->messages.pop_front();
  message->claimed = true;
  return message;
}

bool MsgEndpoint::all_others_ended() const
{
  return m_ended.size() + (m_ended.count(m_rank) != 0 ? 0 : 1) >= m_size;
}

awaitable<bool> MsgEndpoint::do_recv(local_socket& socket, std::optional<std::uint32_t> from)
{
  if (from && *from >= m_size) {
    co_return co_await reply(socket, k_msg_status_error, *from,
                             "recv: no " + node_text(*from) + " (the run has " +
                                 std::to_string(m_size) + " nodes)");
  }
  std::uint32_t source = 0;
  std::shared_ptr<Incoming> message;
  for (;;) {
    if (m_closed) {
      co_return false;
    }
    message = next_message(from, source);
    if (message) {
      break;
    }
    if (from && m_ended.count(*from) != 0) {
      co_return co_await reply(socket, k_msg_status_error, *from,
                               "recv from " + node_text(*from) +
                                   ": its job has ended and sent nothing more");
    }
    if (!from && all_others_ended()) {
      co_return co_await reply(socket, k_msg_status_error, 0,
                               "recv_any: every other node's job has ended and nothing is left");
    }
    co_await wait_change();
  }
  const auto header = encode_socket_header({k_msg_status_ok, source, message->total});
  auto [hec, hn] =
      co_await asio::async_write(socket, asio::buffer(header), as_tuple(use_awaitable));
  bool broken = static_cast<bool>(hec);
  std::uint64_t written = 0;
  while (written < message->total) {
    while (message->chunks.empty() && !message->aborted && !m_closed) {
      co_await wait_change();
    }
    if (m_closed) {
      co_return false;
    }
    if (message->chunks.empty()) {
      break; // aborted: its sender went away
    }
    const Bytes chunk = std::move(message->chunks.front());
    message->chunks.pop_front();
    if (!broken && !message->aborted) {
      auto [ec, n] =
          co_await asio::async_write(socket, asio::buffer(chunk), as_tuple(use_awaitable));
      broken = static_cast<bool>(ec);
    }
    written += chunk.size();
    give_credit(source, chunk.size(), message->chunks.empty());
  }
  // A message cut short cannot be reported inside its own body: the connection closes.
  co_return !broken && !message->aborted && written == message->total;
}

awaitable<bool> MsgEndpoint::do_barrier(local_socket& socket)
{
  const std::uint32_t seq = ++m_barriers_entered;
  try {
    const Bytes body = encode_barrier_enter(seq);
    co_await m_channel.send(RecordType::msg_barrier, body);
  } catch (const std::exception&) {
    co_return false;
  }
  for (;;) {
    if (m_closed) {
      co_return false;
    }
    if (m_barriers_done >= seq) {
      co_return co_await reply(socket, k_msg_status_ok, 0, {});
    }
    if (m_barriers_fail_from != 0 && m_barriers_fail_from <= seq) {
      co_return co_await reply(socket, k_msg_status_error, m_barrier_dead_node,
                               "barrier: " + node_text(m_barrier_dead_node) +
                                   " ended before reaching it");
    }
    co_await wait_change();
  }
}

void MsgEndpoint::give_credit(std::uint32_t from, std::uint64_t n, bool flush)
{
  Source& s = m_sources[from];
  s.unreported += n;
  if (s.unreported == 0 || (!flush && s.unreported < k_msg_window / 4)) {
    return;
  }
  const std::uint64_t bytes = s.unreported;
  s.outstanding -= std::min(s.outstanding, bytes);
  s.unreported = 0;
  try {
    m_channel.post(RecordType::window,
                   as_bytes(dump_body(to_json(WindowBody{from, "msg", bytes}))));
  } catch (const std::exception&) {
    // The session is gone; its end closes us.
  }
}

void MsgEndpoint::drop(std::uint32_t from, Incoming& message)
{
  message.aborted = true;
  std::uint64_t held = 0;
  for (const Bytes& chunk : message.chunks) {
    held += chunk.size();
  }
  message.chunks.clear();
  Source& s = m_sources[from];
  std::erase_if(s.messages, [&](const auto& m) { return m.get() == &message; });
  give_credit(from, held, true);
}

void MsgEndpoint::on_data(ByteView body)
{
  const MsgChunk chunk = decode_msg_chunk(body);
  if (chunk.node >= m_size) {
    throw ProtocolError("MSG_DATA from " + node_text(chunk.node) + " of " + std::to_string(m_size));
  }
  if (m_ended.count(chunk.node) != 0) {
    throw ProtocolError("MSG_DATA from " + node_text(chunk.node) + " after its end");
  }
  Source& s = m_sources[chunk.node];
  const bool complete = s.framing.accept(chunk);
  s.outstanding += chunk.data.size();
  if (s.outstanding > k_msg_window) {
    throw ProtocolError("MSG_DATA beyond the window of " + node_text(chunk.node));
  }
  if (chunk.abort) {
    std::shared_ptr<Incoming> message = std::move(s.current);
    message->aborted = true;
    if (!message->claimed) {
      drop(chunk.node, *message);
    }
    changed();
    return;
  }
  if (chunk.first) {
    s.current = std::make_shared<Incoming>();
    s.current->total = chunk.total;
    s.current->seq = m_next_seq++;
    s.messages.push_back(s.current);
  }
  if (!chunk.data.empty()) {
    s.current->chunks.emplace_back(chunk.data.begin(), chunk.data.end());
    s.current->arrived += chunk.data.size();
  }
  if (complete) {
    s.current.reset();
  }
  changed();
}

void MsgEndpoint::on_window(const WindowBody& window)
{
  if (window.id >= m_size) {
    throw ProtocolError("WINDOW for " + node_text(window.id) + " of " + std::to_string(m_size));
  }
  Destination& d = m_destinations[window.id];
  if (window.bytes > k_msg_window - d.credit) {
    throw ProtocolError("WINDOW beyond the message window");
  }
  d.credit += window.bytes;
  changed();
}

void MsgEndpoint::on_end(ByteView body)
{
  for (const std::uint32_t node : decode_msg_end(body)) {
    if (node >= m_size) {
      throw ProtocolError("MSG_END for " + node_text(node) + " of " + std::to_string(m_size));
    }
    m_ended.insert(node);
    const auto it = m_sources.find(node);
    if (it != m_sources.end() && it->second.current) {
      // Its sender ended before the last chunk: the message is never delivered.
      std::shared_ptr<Incoming> message = std::move(it->second.current);
      message->aborted = true;
      if (!message->claimed) {
        drop(node, *message);
      }
    }
  }
  changed();
}

void MsgEndpoint::on_active(ByteView body)
{
  if (!body.empty() || m_activation != Activation::asked) {
    throw ProtocolError("MSG_ACTIVE that was not asked for");
  }
  m_activation = Activation::ready;
  changed();
}

void MsgEndpoint::on_barrier(ByteView body)
{
  const BarrierResult result = decode_barrier_result(body);
  if (result.seq > m_barriers_entered) {
    throw ProtocolError("MSG_BARRIER for a barrier we did not enter");
  }
  if (result.ok) {
    m_barriers_done = std::max(m_barriers_done, result.seq);
  } else if (m_barriers_fail_from == 0 || result.seq < m_barriers_fail_from) {
    m_barriers_fail_from = result.seq;
    m_barrier_dead_node = result.node;
  }
  changed();
}

} // namespace dc::worker
