#pragma once
// Node-to-node messages (content: PROTOCOL.md "Messages"). Integers big-endian.
// Records between worker and master (feature "msg"):
// <msg_data>    ::= <node: u32> <flags: u8> [<total: u64> if flags & first] <bytes>
//                   ; flags: 0x01 first, 0x02 abort (no bytes: the open message is dropped)
//                   ; W->M node = destination, M->W node = source; a message is one chunk with
//                   ; `first` and its total length, then chunks until `total` bytes were carried
// <msg_end>     ::= <node: u32>+                              ; M->W: these nodes' jobs ended
// <msg_active>  ::= empty               ; W->M: the job connected to its endpoint (send me ends);
//                                       ; M->W: every end so far was sent before this
// <msg_barrier> ::= <seq: u32>                                ; W->M: the node enters barrier seq
//                 | <seq: u32> <status: u8> <node: u32>       ; M->W: 0 = barriers <= seq done,
//                                                             ; 1 = barriers >= seq fail (node
//                                                             ended)
// WINDOW {id, stream:"msg", bytes}: W->M credit for more bytes from source id; M->W credit for
// more bytes to destination id. Every (source, destination) stream starts with k_msg_window.
//
// The job's Unix socket (client libraries; documented in PROTOCOL.md for other languages):
// <request>  ::= <op: u8> 0 0 0 <peer: u32> <length: u64> <payload: length bytes>
// <reply>    ::= <status: u8> 0 0 0 <peer: u32> <length: u64> <payload: length bytes>

#include "common/bytes.hpp"
#include "common/wire.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace dc {

// Credit of one (source, destination) stream: bytes in flight between the sending job's worker
// and the receiving job. Enough to keep a LAN busy; n nodes sending to one cost n times this on
// the receiving worker.
inline constexpr std::uint64_t k_msg_window = 512 << 10;
// Largest message: the receiving job holds it whole in memory.
inline constexpr std::uint64_t k_max_msg_size = 1ull << 30;
// Most nodes a run may have for messaging (as many as a hostlist may name).
inline constexpr std::uint32_t k_max_msg_nodes = 100000;
inline constexpr std::uint8_t k_msg_flag_first = 0x01;
inline constexpr std::uint8_t k_msg_flag_abort = 0x02; // ends the open message undelivered
// Payload bytes one MSG_DATA record carries at most (after a first chunk's 13-byte header).
inline constexpr std::size_t k_max_msg_chunk = k_max_body_size - 13;

struct MsgChunk {
  std::uint32_t node = 0;
  bool first = false;
  bool abort = false;      // the sender gave up on the open message (no data)
  std::uint64_t total = 0; // only with `first`
  ByteView data;
};

// MSG_DATA body. `total` is set for the first chunk of a message.
Bytes encode_msg_chunk(std::uint32_t node, std::optional<std::uint64_t> total, ByteView data);
// MSG_DATA body that abandons the open message of the stream (its sender went away mid-send).
Bytes encode_msg_abort(std::uint32_t node);
// Throws ProtocolError on a short body, unknown flags, an abort with data or a total above
// k_max_msg_size.
MsgChunk decode_msg_chunk(ByteView body);
// The same chunk with another node number (the master turns destinations into sources).
Bytes readdress_msg_chunk(ByteView body, std::uint32_t node);

// MSG_END body: one or more node numbers. decode throws ProtocolError on an empty or ragged body.
Bytes encode_msg_end(std::span<const std::uint32_t> nodes);
std::vector<std::uint32_t> decode_msg_end(ByteView body);

struct BarrierResult {
  std::uint32_t seq = 0;
  bool ok = true;
  std::uint32_t node = 0; // the node that ended, when !ok
};
Bytes encode_barrier_enter(std::uint32_t seq);
// Throws ProtocolError unless the body is exactly 4 bytes and seq >= 1.
std::uint32_t decode_barrier_enter(ByteView body);
Bytes encode_barrier_result(const BarrierResult& r);
// Throws ProtocolError unless the body is exactly 9 bytes with status 0 or 1 and seq >= 1.
BarrierResult decode_barrier_result(ByteView body);

// The framing of one stream: a first chunk opens a message, the following chunks fill it to its
// total and never beyond; a first chunk while a message is open is an error.
class MsgFraming {
public:
  // Returns true when `chunk` completes a message (an abort completes none). Throws
  // ProtocolError on a framing violation.
  bool accept(const MsgChunk& chunk);
  bool in_message() const { return m_open; }

private:
  bool m_open = false;
  std::uint64_t m_remaining = 0;
};

// The job's socket: operations and reply statuses.
enum class MsgOp : std::uint8_t { send = 1, recv = 2, recv_any = 3, barrier = 4 };
inline constexpr std::uint8_t k_msg_status_ok = 0;
inline constexpr std::uint8_t k_msg_status_error = 1;
inline constexpr std::size_t k_msg_socket_header_size = 16;

struct MsgSocketHeader {
  std::uint8_t code = 0; // op in a request, status in a reply
  std::uint32_t peer = 0;
  std::uint64_t length = 0;
};
std::array<std::uint8_t, k_msg_socket_header_size> encode_socket_header(const MsgSocketHeader& h);
// Throws ProtocolError when the padding bytes are not zero.
MsgSocketHeader decode_socket_header(ByteView bytes16);

} // namespace dc
