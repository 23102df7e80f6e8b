#include "common/msg_wire.hpp"

#include "common/error.hpp"

namespace dc {

Bytes encode_msg_chunk(std::uint32_t node, std::optional<std::uint64_t> total, ByteView data)
{
  Bytes out;
  out.reserve(13 + data.size());
  put_be<std::uint32_t>(out, node);
  put_be<std::uint8_t>(out, total ? k_msg_flag_first : 0);
  if (total) {
    put_be<std::uint64_t>(out, *total);
  }
  put_bytes(out, data);
  return out;
}

Bytes encode_msg_abort(std::uint32_t node)
{
  Bytes out;
  put_be<std::uint32_t>(out, node);
  put_be<std::uint8_t>(out, k_msg_flag_abort);
  return out;
}

MsgChunk decode_msg_chunk(ByteView body)
{
  ByteReader r(body);
  MsgChunk c;
  c.node = r.get_be<std::uint32_t>();
  const auto flags = r.get_be<std::uint8_t>();
  if (flags != 0 && flags != k_msg_flag_first && flags != k_msg_flag_abort) {
    throw ProtocolError("MSG_DATA: unknown flags");
  }
  c.first = (flags & k_msg_flag_first) != 0;
  c.abort = (flags & k_msg_flag_abort) != 0;
  if (c.first) {
    c.total = r.get_be<std::uint64_t>();
    if (c.total > k_max_msg_size) {
      throw ProtocolError("MSG_DATA: message larger than " + std::to_string(k_max_msg_size) +
                          " bytes");
    }
  }
  c.data = r.take(r.remaining());
  if (c.abort && !c.data.empty()) {
    throw ProtocolError("MSG_DATA: an abort carries no bytes");
  }
  return c;
}

Bytes readdress_msg_chunk(ByteView body, std::uint32_t node)
{
  if (body.size() < 4) {
    throw ProtocolError("MSG_DATA: truncated");
  }
  Bytes out(body.begin(), body.end());
  out[0] = static_cast<std::uint8_t>(node >> 24);
  out[1] = static_cast<std::uint8_t>(node >> 16);
  out[2] = static_cast<std::uint8_t>(node >> 8);
  out[3] = static_cast<std::uint8_t>(node);
  return out;
}

Bytes encode_msg_end(std::span<const std::uint32_t> nodes)
{
  Bytes out;
  out.reserve(4 * nodes.size());
  for (std::uint32_t n : nodes) {
    put_be<std::uint32_t>(out, n);
  }
  return out;
}

std::vector<std::uint32_t> decode_msg_end(ByteView body)
{
  if (body.empty() || body.size() % 4 != 0) {
    throw ProtocolError("MSG_END: body is not a list of node numbers");
  }
  ByteReader r(body);
  std::vector<std::uint32_t> out;
  while (r.remaining() > 0) {
    out.push_back(r.get_be<std::uint32_t>());
  }
  return out;
}

Bytes encode_barrier_enter(std::uint32_t seq)
{
  Bytes out;
  put_be<std::uint32_t>(out, seq);
  return out;
}

std::uint32_t decode_barrier_enter(ByteView body)
{
  if (body.size() != 4) {
    throw ProtocolError("MSG_BARRIER: body must be 4 bytes");
  }
  ByteReader r(body);
  const auto seq = r.get_be<std::uint32_t>();
  if (seq == 0) {
    throw ProtocolError("MSG_BARRIER: barriers count from 1");
  }
  return seq;
}

Bytes encode_barrier_result(const BarrierResult& result)
{
  Bytes out;
  put_be<std::uint32_t>(out, result.seq);
  put_be<std::uint8_t>(out, result.ok ? 0 : 1);
  put_be<std::uint32_t>(out, result.node);
  return out;
}

BarrierResult decode_barrier_result(ByteView body)
{
  if (body.size() != 9) {
    throw ProtocolError("MSG_BARRIER: result must be 9 bytes");
  }
  ByteReader r(body);
  BarrierResult result;
  result.seq = r.get_be<std::uint32_t>();
  const auto status = r.get_be<std::uint8_t>();
  result.node = r.get_be<std::uint32_t>();
  if (result.seq == 0 || status > 1) {
    throw ProtocolError("MSG_BARRIER: bad result");
  }
  result.ok = status == 0;
  return result;
}

bool MsgFraming::accept(const MsgChunk& chunk)
{
  if (chunk.abort) {
    if (!m_open) {
      throw ProtocolError("MSG_DATA: abort without a message");
    }
    m_open = false;
    m_remaining = 0;
    return false;
  }
  if (chunk.first == m_open) {
    throw ProtocolError(chunk.first ? "MSG_DATA: a message starts inside another"
                                    : "MSG_DATA: continuation without a message");
  }
  if (chunk.first) {
    m_remaining = chunk.total;
  }
  if (chunk.data.size() > m_remaining) {
    throw ProtocolError("MSG_DATA: more bytes than the message's length");
  }
  m_remaining -= chunk.data.size();
  m_open = m_remaining > 0;
  return !m_open;
}

std::array<std::uint8_t, k_msg_socket_header_size> encode_socket_header(const MsgSocketHeader& h)
{
  Bytes b;
  put_be<std::uint8_t>(b, h.code);
  put_be<std::uint8_t>(b, 0);
  put_be<std::uint16_t>(b, 0);
  put_be<std::uint32_t>(b, h.peer);
  put_be<std::uint64_t>(b, h.length);
  std::array<std::uint8_t, k_msg_socket_header_size> out{};
  std::copy(b.begin(), b.end(), out.begin());
  return out;
}

MsgSocketHeader decode_socket_header(ByteView bytes16)
{
  ByteReader r(bytes16);
  MsgSocketHeader h;
  h.code = r.get_be<std::uint8_t>();
  if (r.get_be<std::uint8_t>() != 0 || r.get_be<std::uint16_t>() != 0) {
    throw ProtocolError("message socket: header padding is not zero");
  }
  h.peer = r.get_be<std::uint32_t>();
  h.length = r.get_be<std::uint64_t>();
  if (r.remaining() != 0) {
    throw ProtocolError("message socket: header is 16 bytes");
  }
  return h;
}

} // namespace dc
