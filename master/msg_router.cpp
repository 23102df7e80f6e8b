#include "master/msg_router.hpp"

#include "common/error.hpp"
#include "common/messages.hpp"

#include <algorithm>
#include <limits>

namespace dc::master {

MsgRouter::MsgRouter(std::size_t nodes) : m_nodes(nodes) {}

MsgRouter::Stream& MsgRouter::stream(std::uint32_t from, std::uint32_t to)
{
  return m_streams[std::uint64_t(from) * m_nodes.size() + to];
}

void MsgRouter::post(std::uint32_t node, RecordType type, ByteView body)
{
  Node& n = m_nodes[node];
  if (n.state != State::open || !n.send) {
    return;
  }
  try {
    n.send(type, body);
  } catch (const std::exception&) {
    // That node's connection failed; its session ends and calls node_ended().
  }
}

void MsgRouter::check_open(std::uint32_t node, const char* what) const
{
  if (node >= m_nodes.size() || m_nodes[node].state != State::open) {
    throw ProtocolError(std::string(what) + " from a node that is not messaging");
  }
}

void MsgRouter::open(std::uint32_t node, Send send)
{
  Node& n = m_nodes.at(node);
  if (n.state != State::pending) {
    return;
  }
  n.state = State::open;
  n.send = std::move(send);
  // Chunks first, then the ends: a node that ended after sending is heard after its messages.
  if (const auto it = m_held_for.find(node); it != m_held_for.end()) {
    for (const std::uint32_t from : it->second) {
      Stream& s = stream(from, node);
      for (const Bytes& chunk : s.held) {
        m_held_bytes -= chunk.size();
        post(node, RecordType::msg_data, chunk);
      }
      s.held.clear();
    }
    m_held_for.erase(it);
  }
}

void MsgRouter::on_active(std::uint32_t from, ByteView body)
{
  check_open(from, "MSG_ACTIVE");
  Node& n = m_nodes[from];
  if (!body.empty() || n.active) {
    throw ProtocolError("MSG_ACTIVE twice, or with a body");
  }
  n.active = true;
  constexpr std::size_t per_record = k_max_body_size / 4;
  for (std::size_t at = 0; at < m_ended.size(); at += per_record) {
    const std::size_t n_ids = std::min(per_record, m_ended.size() - at);
    post(from, RecordType::msg_end,
         encode_msg_end(std::span<const std::uint32_t>(m_ended).subspan(at, n_ids)));
  }
  post(from, RecordType::msg_active, ByteView{});
}

void MsgRouter::on_data(std::uint32_t from, ByteView body)
{
  check_open(from, "MSG_DATA");
  const MsgChunk chunk = decode_msg_chunk(body);
  if (chunk.node >= m_nodes.size()) {
    throw ProtocolError("MSG_DATA for node " + std::to_string(chunk.node) + " of " +
                        std::to_string(m_nodes.size()));
  }
  const std::uint32_t to = chunk.node;
  Stream& s = stream(from, to);
  s.framing.accept(chunk);
  s.in_flight += chunk.data.size();
  if (s.in_flight > k_msg_window) {
    throw ProtocolError("MSG_DATA beyond the window to node " + std::to_string(to));
  }
  switch (m_nodes[to].state) {
  case State::open:
    post(to, RecordType::msg_data, readdress_msg_chunk(body, from));
    break;
  case State::pending:
    if (s.held.empty()) {
      m_held_for[to].push_back(from);
    }
    s.held.push_back(readdress_msg_chunk(body, from));
    m_held_bytes += s.held.back().size();
    break;
  case State::ended:
    break; // its worker already told the sender; a send racing the end is dropped
  }
}

void MsgRouter::on_window(std::uint32_t from, std::uint32_t source, std::uint64_t bytes)
{
  check_open(from, "WINDOW");
  if (source >= m_nodes.size()) {
    throw ProtocolError("WINDOW for node " + std::to_string(source) + " of " +
                        std::to_string(m_nodes.size()));
  }
  Stream& s = stream(source, from);
  if (bytes > s.in_flight) {
    throw ProtocolError("WINDOW returns more than node " + std::to_string(source) + " sent");
  }
  s.in_flight -= bytes;
  const std::string body = dump_body(to_json(WindowBody{from, "msg", bytes}));
  post(source, RecordType::window, as_bytes(body));
}

void MsgRouter::on_barrier(std::uint32_t from, ByteView body)
{
  check_open(from, "MSG_BARRIER");
  const std::uint32_t seq = decode_barrier_enter(body);
  Node& n = m_nodes[from];
  if (seq != n.barriers_entered + 1) {
    throw ProtocolError("MSG_BARRIER out of sequence");
  }
  n.barriers_entered = seq;
  settle_barriers();
}

void MsgRouter::settle_barriers()
{
  // Completed: every node entered at least this many barriers.
  std::uint32_t done = std::numeric_limits<std::uint32_t>::max();
  for (const Node& n : m_nodes) {
    done = std::min(done, n.barriers_entered);
  }
  if (m_barriers_dead_from != 0) {
    done = std::min(done, m_barriers_dead_from - 1);
  }
  m_barriers_done = std::max(m_barriers_done, done);
  for (std::uint32_t i = 0; i < m_nodes.size(); ++i) {
    Node& n = m_nodes[i];
    if (n.state != State::open) {
      continue;
    }
    if (n.barriers_told < m_barriers_done && n.barriers_entered > n.barriers_told) {
      n.barriers_told = std::min(m_barriers_done, n.barriers_entered);
      post(i, RecordType::msg_barrier, encode_barrier_result({n.barriers_told, true, 0}));
    }
    if (m_barriers_dead_from != 0 && !n.barrier_failure_told &&
        n.barriers_entered >= m_barriers_dead_from) {
      n.barrier_failure_told = true;
      post(i, RecordType::msg_barrier,
           encode_barrier_result({m_barriers_dead_from, false, m_dead_node}));
    }
  }
}

void MsgRouter::node_ended(std::uint32_t node)
{
  Node& n = m_nodes.at(node);
  if (n.state == State::ended) {
    return;
  }
  n.state = State::ended;
  n.send = nullptr;
  m_ended.push_back(node);
  // What waited for it is dropped: nobody will read it.
  if (const auto it = m_held_for.find(node); it != m_held_for.end()) {
    for (const std::uint32_t from : it->second) {
      Stream& s = stream(from, node);
      for (const Bytes& chunk : s.held) {
        m_held_bytes -= chunk.size();
      }
      s.held.clear();
    }
    m_held_for.erase(it);
  }
  const Bytes end = encode_msg_end(std::span<const std::uint32_t>(&node, 1));
  for (std::uint32_t i = 0; i < m_nodes.size(); ++i) {
    if (m_nodes[i].active) {
      post(i, RecordType::msg_end, end);
    }
  }
  const std::uint32_t dead_from = n.barriers_entered + 1;
  if (m_barriers_dead_from == 0 || dead_from < m_barriers_dead_from) {
    m_barriers_dead_from = dead_from;
    m_dead_node = node;
  }
  settle_barriers();
}

} // namespace dc::master
