#pragma once
// Wire grammar before and after the handshake (content: PROTOCOL.md §3-4). Integers big-endian.
// <preamble>  ::= "DCMP" <ver_used: u8> <ver_max: u8> <flags: u16> <key_id: 8 bytes>
// <hs_msg>    ::= <len: u16 = 48> <e.pub: 32> <aead tag: 16>
// <reject>    ::= "DCMP" 0x00 <reason: u8> <ver_min: u8> <ver_max: u8>
// <record>    ::= <len: u16> <ciphertext>      ; k_min_record_size <= len; nonce implicit, per
// direction <plaintext> ::= <type: u8> <body> <body>      ::= JSON for control types; stdout/stderr
// = <id: u32> <bytes>; bundle slices = raw zstd

#include "common/bytes.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace dc {

inline constexpr std::uint8_t k_protocol_version = 1;
inline constexpr std::size_t k_preamble_size = 16;
inline constexpr std::size_t k_key_id_size = 8;
inline constexpr std::size_t k_hs_message_size = 48; // e.pub (32) + tag of the empty payload (16)
inline constexpr std::size_t k_reject_size = 8;
inline constexpr std::size_t k_aead_tag_size = 16;
inline constexpr std::size_t k_min_record_size = 17;    // type byte + 16-byte AEAD tag
inline constexpr std::size_t k_max_record_size = 65535; // u16 length field (Noise message limit)
inline constexpr std::size_t k_max_body_size = k_max_record_size - k_aead_tag_size - 1; // 65518

using KeyId = std::array<std::uint8_t, k_key_id_size>;

struct Preamble {
  std::uint8_t ver_used = k_protocol_version;
  std::uint8_t ver_max = k_protocol_version;
  std::uint16_t flags = 0;
  KeyId key_id{};
};

Bytes encode_preamble(const Preamble& p);
// Returns nullopt when the magic is wrong (the worker closes silently); the other fields are
// returned as sent, for the caller to judge.
std::optional<Preamble> decode_preamble(ByteView bytes16);

enum class RejectReason : std::uint8_t { version = 1, key = 2, busy = 3, malformed = 4 };
std::string to_string(RejectReason r);

struct Reject {
  RejectReason reason;
  std::uint8_t ver_min = k_protocol_version;
  std::uint8_t ver_max = k_protocol_version;
};

Bytes encode_reject(const Reject& r);
// Throws ProtocolError if the 8 bytes are not a REJECT.
Reject decode_reject(ByteView bytes8);

enum class RecordType : std::uint8_t {
  hello = 0x01,
  welcome = 0x02,
  bundle_begin = 0x10,
  blob_data = 0x11,
  bundle_end = 0x12,
  bundle_ok = 0x13,
  fetch = 0x14,       // feature "fetch": M->W JSON {paths}: send these results back as a bundle
  fetch_reply = 0x15, // feature "fetch": W->M JSON {missing, skipped}, then the results bundle
  manifest = 0x16,
  manifest_end = 0x17,
  want = 0x18,
  run = 0x20,
  stdout_data = 0x21,
  stderr_data = 0x22,
  exit = 0x23,
  cancel = 0x24,
  stdin_data = 0x25, // M->W <id u32> <bytes>, within the credit WINDOW granted
  stdin_eof = 0x26,  // M->W <id u32>: no more stdin for that command
  window = 0x27,     // JSON {id, stream:"stdin"|"msg", bytes}: credit for that many more bytes
  ping = 0x30,
  pong = 0x31,
  error = 0x3e,
  bye = 0x3f,
  msg_data = 0x40,     // feature "msg": one chunk of a node-to-node message (common/msg_wire.hpp)
  msg_end = 0x41,      // feature "msg": M->W these nodes' jobs have ended
  msg_barrier = 0x42,  // feature "msg": W->M entering a barrier, M->W its release or failure
  msg_active = 0x43,   // feature "msg": W->M the job uses messaging, M->W all ends so far were sent
  status = 0x50,       // feature "status"
  status_reply = 0x51, // feature "status"
};

// Returns the type if `raw` names a v1 record type.
std::optional<RecordType> record_type_from(std::uint8_t raw);
const char* to_string(RecordType t);

// A decrypted record: type plus body.
struct Record {
  RecordType type;
  Bytes body;
};

// Plaintext of a record: type byte then body, written over `out` (a buffer the caller reuses).
// decode_plaintext throws ProtocolError on an unknown type or an empty plaintext.
void encode_plaintext(RecordType type, ByteView body, Bytes& out);
Record decode_plaintext(ByteView plaintext);

// STDOUT/STDERR/STDIN bodies: <id: u32> <bytes> (STDIN_EOF: the id alone). decode_output throws
// ProtocolError on a body shorter than 4 bytes.
Bytes encode_output(std::uint32_t id, ByteView data);
std::pair<std::uint32_t, ByteView> decode_output(ByteView body);

} // namespace dc
