#pragma once
// The connection opening of PROTOCOL.md §3 on top of a Channel: PREAMBLE, the two Noise
// NNpsk0 messages (or a REJECT), then the transport keys are installed on the Channel.

#include "common/channel.hpp"
#include "common/key_file.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace dc {

// The master could not open a session; what() is the message for the user.
class HandshakeError : public std::runtime_error {
public:
  enum class Kind { rejected_key, impostor, version, busy, malformed, protocol };
  HandshakeError(Kind kind, const std::string& msg) : std::runtime_error(msg), m_kind(kind) {}
  Kind kind() const { return m_kind; }

private:
  Kind m_kind;
};

// Master side. Sends PREAMBLE + message 1, reads message 2 or a REJECT, installs keys.
// Throws HandshakeError (rejection, failed proof of the key) and std::system_error (socket).
awaitable<void> client_handshake(Channel& channel, const ClusterKey& key);

// Worker side, before anything is authenticated: reads at most 16 + 2 + 48 bytes.
struct ServerHandshakeOutcome {
  bool ok = false;
  const ClusterKey* key = nullptr; // the key the master proved, when ok
  bool rejected = false;           // a REJECT was sent (false: closed silently or socket error)
  RejectReason reason = RejectReason::malformed;
  std::string detail; // for the worker's log; attacker bytes already escaped
};
// Never throws on peer input; socket errors and timeouts come back as !ok with a detail.
// `preamble_deadline`, if given, is disarmed once the 16-byte preamble has arrived.
awaitable<ServerHandshakeOutcome> server_handshake(Channel& channel,
                                                   const std::vector<const ClusterKey*>& keys,
                                                   Deadline* preamble_deadline = nullptr);

// The Noise prologue: "distcomp prologue v1" ‖ PREAMBLE (binds magic, versions, flags, key id).
Bytes handshake_prologue(ByteView preamble);

} // namespace dc
