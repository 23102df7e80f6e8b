#include "common/handshake.hpp"

#include "common/log.hpp"

namespace dc {
namespace {

constexpr std::string_view k_prologue_label = "distcomp prologue v1";

Bytes with_length(ByteView message)
{
  Bytes out;
  put_be<std::uint16_t>(out, static_cast<std::uint16_t>(message.size()));
  put_bytes(out, message);
  return out;
}

// Sends the fixed 8-byte REJECT, half-closes, and drains a little so a TCP RST does not eat it.
awaitable<void> send_reject(Channel& channel, RejectReason reason)
{
  const Bytes reject = encode_reject(Reject{reason, k_protocol_version, k_protocol_version});
  auto [ec, n] =
      co_await asio::async_write(channel.socket(), asio::buffer(reject), as_tuple(use_awaitable));
  if (ec) {
    co_return;
  }
  channel.shutdown_send();
  asio::steady_timer limit(channel.socket().get_executor(), 1s);
  limit.async_wait([&channel](std::error_code timer_ec) {
    if (!timer_ec) {
      std::error_code ignored;
      channel.socket().cancel(ignored);
    }
  });
  std::array<std::uint8_t, 64> sink;
  co_await channel.socket().async_read_some(asio::buffer(sink), as_tuple(use_awaitable));
  limit.cancel();
}

} // namespace

Bytes handshake_prologue(ByteView preamble)
{
  Bytes prologue(k_prologue_label.begin(), k_prologue_label.end());
  put_bytes(prologue, preamble);
  return prologue;
}

awaitable<void> client_handshake(Channel& channel, const ClusterKey& key)
{
  Preamble preamble;
  preamble.key_id = key.key_id;
  const Bytes preamble_bytes = encode_preamble(preamble);
  noise::HandshakeState hs(noise::Role::initiator, handshake_prologue(preamble_bytes),
                           key.psk.view());
  Bytes first = preamble_bytes;
  put_bytes(first, with_length(hs.write_message({})));
  co_await channel.write_raw(first);

  const Bytes head = co_await channel.read_raw(2);
  if (head[0] == 'D' && head[1] == 'C') {
    Bytes reject = head;
    put_bytes(reject, co_await channel.read_raw(k_reject_size - 2));
    const Reject r = decode_reject(reject); // throws ProtocolError on a malformed one
    switch (r.reason) {
    case RejectReason::key:
      throw HandshakeError(HandshakeError::Kind::rejected_key,
                           "rejected our cluster key (our key id " + key_id_hex(key.key_id) +
                               "): install the same key file on both sides");
    case RejectReason::version:
      throw HandshakeError(HandshakeError::Kind::version,
                           "version mismatch (worker speaks " + std::to_string(r.ver_min) + "-" +
                               std::to_string(r.ver_max) + ", we speak " +
                               std::to_string(k_protocol_version) + ")");
    case RejectReason::busy:
      throw HandshakeError(HandshakeError::Kind::busy, "worker busy (too many connections)");
    case RejectReason::malformed:
      throw HandshakeError(HandshakeError::Kind::malformed, "worker rejected our handshake");
    }
    throw HandshakeError(HandshakeError::Kind::protocol, "worker sent an unknown REJECT reason");
  }
  const std::size_t len = (std::size_t(head[0]) << 8) | head[1];
  if (len != k_hs_message_size) {
    throw HandshakeError(HandshakeError::Kind::impostor,
                         "worker failed to prove the key (bad handshake length; nothing sent)");
  }
  const Bytes second = co_await channel.read_raw(len);
  try {
    hs.read_message(second);
  } catch (const ProtocolError&) {
    throw HandshakeError(HandshakeError::Kind::impostor,
                         "worker failed to prove the key (wrong key or impostor; nothing sent)");
  }
  channel.set_transport(hs.split());
}

awaitable<ServerHandshakeOutcome> server_handshake(Channel& channel,
                                                   const std::vector<const ClusterKey*>& keys,
                                                   Deadline* preamble_deadline)
{
  ServerHandshakeOutcome out;
  auto reject = [&](RejectReason reason, std::string detail) {
    out.rejected = true;
    out.reason = reason;
    out.detail = std::move(detail);
  };
  try {
    const Bytes preamble_bytes = co_await channel.read_raw(k_preamble_size);
    if (preamble_deadline != nullptr) {
      preamble_deadline->disarm();
    }
    const auto preamble = decode_preamble(preamble_bytes);
    if (!preamble) {
      out.detail = "bad magic " + escape_for_log(as_chars(ByteView(preamble_bytes).first(4)));
      co_return out; // silent close: not a distcomp client
    }
    const std::uint8_t expected = std::min(preamble->ver_max, k_protocol_version);
    if (preamble->ver_used != expected || preamble->ver_used < k_protocol_version ||
        preamble->flags != 0) {
      reject(RejectReason::version, "version " + std::to_string(preamble->ver_used) + " (max " +
                                        std::to_string(preamble->ver_max) + ", flags " +
                                        std::to_string(preamble->flags) + ")");
    } else {
      const ClusterKey* key = nullptr;
      for (const ClusterKey* k : keys) {
        if (k->key_id == preamble->key_id) {
          key = k;
        }
      }
      if (key == nullptr) {
        reject(RejectReason::key, "unknown key id " + key_id_hex(preamble->key_id));
      } else {
        const Bytes head = co_await channel.read_raw(2);
        const std::size_t len = (std::size_t(head[0]) << 8) | head[1];
        if (len != k_hs_message_size) {
          // Bound before read: anything but 48 is refused without reading the body.
          reject(RejectReason::malformed, "handshake length " + std::to_string(len));
        } else {
          const Bytes first = co_await channel.read_raw(len);
          noise::HandshakeState hs(noise::Role::responder, handshake_prologue(preamble_bytes),
                                   key->psk.view());
          bool proven = true;
          try {
            hs.read_message(first);
          } catch (const ProtocolError&) {
            proven = false;
          }
          if (!proven) {
            reject(RejectReason::key,
                   "message 1 failed to authenticate (key id " + key_id_hex(key->key_id) + ")");
          } else {
            const Bytes second = with_length(hs.write_message({}));
            co_await channel.write_raw(second);
            channel.set_transport(hs.split());
            out.ok = true;
            out.key = key;
            co_return out;
          }
        }
      }
    }
  } catch (const std::system_error& e) {
    out.detail = e.code() == asio::error::eof ? "closed during handshake"
                                              : "handshake: " + e.code().message();
    co_return out;
  } catch (const ProtocolError& e) {
    out.detail = e.what();
    co_return out;
  }
  co_await send_reject(channel, out.reason);
  co_return out;
}

} // namespace dc
