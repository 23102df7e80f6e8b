#include "common/wire.hpp"

#include <algorithm>
#include <cstring>

namespace dc {
namespace {
constexpr std::uint8_t k_magic[4] = {'D', 'C', 'M', 'P'};
}

Bytes encode_preamble(const Preamble& p)
{
  Bytes out(k_magic, k_magic + 4);
  out.push_back(p.ver_used);
  out.push_back(p.ver_max);
  put_be<std::uint16_t>(out, p.flags);
  put_bytes(out, p.key_id);
  return out;
}

std::optional<Preamble> decode_preamble(ByteView bytes)
{
  ByteReader r(bytes);
  if (bytes.size() != k_preamble_size || !std::equal(k_magic, k_magic + 4, r.take(4).begin())) {
    return std::nullopt;
  }
  Preamble p;
  p.ver_used = r.get_be<std::uint8_t>();
  p.ver_max = r.get_be<std::uint8_t>();
  p.flags = r.get_be<std::uint16_t>();
  const ByteView id = r.take(k_key_id_size);
  std::copy(id.begin(), id.end(), p.key_id.begin());
  return p;
}

std::string to_string(RejectReason r)
{
  switch (r) {
  case RejectReason::version:
    return "version";
  case RejectReason::key:
    return "key";
  case RejectReason::busy:
    return "busy";
  case RejectReason::malformed:
    return "malformed";
  }
  return "unknown(" + std::to_string(int(r)) + ")";
}

Bytes encode_reject(const Reject& r)
{
  Bytes out(k_magic, k_magic + 4);
  out.push_back(0);
  out.push_back(static_cast<std::uint8_t>(r.reason));
  out.push_back(r.ver_min);
  out.push_back(r.ver_max);
  return out;
}

Reject decode_reject(ByteView bytes)
{
  if (bytes.size() != k_reject_size || !std::equal(k_magic, k_magic + 4, bytes.begin()) ||
      bytes[4] != 0) {
    throw ProtocolError("malformed REJECT");
  }
  return Reject{static_cast<RejectReason>(bytes[5]), bytes[6], bytes[7]};
}

std::optional<RecordType> record_type_from(std::uint8_t raw)
{
  switch (raw) {
  case 0x01:
  case 0x02:
  case 0x10:
  case 0x11:
  case 0x12:
  case 0x13:
  case 0x14:
  case 0x15:
  case 0x16:
  case 0x17:
  case 0x18:
  case 0x20:
  case 0x21:
  case 0x22:
  case 0x23:
  case 0x24:
  case 0x25:
  case 0x26:
  case 0x27:
  case 0x30:
  case 0x31:
  case 0x3e:
  case 0x3f:
  case 0x40:
  case 0x41:
  case 0x42:
  case 0x43:
  case 0x50:
  case 0x51:
    return static_cast<RecordType>(raw);
  default:
    return std::nullopt;
  }
}

const char* to_string(RecordType t)
{
  switch (t) {
  case RecordType::hello:
    return "HELLO";
  case RecordType::welcome:
    return "WELCOME";
  case RecordType::bundle_begin:
    return "BUNDLE_BEGIN";
  case RecordType::blob_data:
    return "BLOB_DATA";
  case RecordType::bundle_end:
    return "BUNDLE_END";
  case RecordType::bundle_ok:
    return "BUNDLE_OK";
  case RecordType::fetch:
    return "FETCH";
  case RecordType::fetch_reply:
    return "FETCH_REPLY";
  case RecordType::manifest:
    return "MANIFEST";
  case RecordType::manifest_end:
    return "MANIFEST_END";
  case RecordType::want:
    return "WANT";
  case RecordType::run:
    return "RUN";
  case RecordType::stdout_data:
    return "STDOUT";
  case RecordType::stderr_data:
    return "STDERR";
  case RecordType::exit:
    return "EXIT";
  case RecordType::cancel:
    return "CANCEL";
  case RecordType::stdin_data:
    return "STDIN";
  case RecordType::stdin_eof:
    return "STDIN_EOF";
  case RecordType::window:
    return "WINDOW";
  case RecordType::ping:
    return "PING";
  case RecordType::pong:
    return "PONG";
  case RecordType::error:
    return "ERROR";
  case RecordType::bye:
    return "BYE";
  case RecordType::msg_data:
    return "MSG_DATA";
  case RecordType::msg_end:
    return "MSG_END";
  case RecordType::msg_barrier:
    return "MSG_BARRIER";
  case RecordType::msg_active:
    return "MSG_ACTIVE";
  case RecordType::status:
    return "STATUS";
  case RecordType::status_reply:
    return "STATUS_REPLY";
  }
  return "?";
}

void encode_plaintext(RecordType type, ByteView body, Bytes& out)
{
  if (body.size() > k_max_body_size) {
    throw ProtocolError("record body too large");
  }
  out.clear();
  out.reserve(1 + body.size());
  out.push_back(static_cast<std::uint8_t>(type));
  put_bytes(out, body);
}

Record decode_plaintext(ByteView plaintext)
{
  if (plaintext.empty()) {
    throw ProtocolError("empty record");
  }
  const auto type = record_type_from(plaintext[0]);
  if (!type) {
    throw ProtocolError("unknown record type 0x" + to_hex(plaintext.first(1)));
  }
  return Record{*type, Bytes(plaintext.begin() + 1, plaintext.end())};
}

Bytes encode_output(std::uint32_t id, ByteView data)
{
  Bytes out;
  out.reserve(4 + data.size());
  put_be<std::uint32_t>(out, id);
  put_bytes(out, data);
  return out;
}

std::pair<std::uint32_t, ByteView> decode_output(ByteView body)
{
  ByteReader r(body);
  const auto id = r.get_be<std::uint32_t>();
  return {id, r.rest()};
}

} // namespace dc
