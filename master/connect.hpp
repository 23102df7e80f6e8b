#pragma once
// Opening and closing one worker session, shared by a run (NodeSession) and `--status`: resolve
// the peer's name, connect, authenticate (PROTOCOL.md §3), HELLO/WELCOME, and the closing BYE.

#include "common/channel.hpp"
#include "common/key_file.hpp"
#include "common/messages.hpp"
#include "common/peers.hpp"

#include <stdexcept>
#include <string>

namespace dc::master {

// A worker-side failure with its stable code (an ERROR record).
class RemoteError : public std::runtime_error {
public:
  explicit RemoteError(ErrorBody e) : std::runtime_error(e.code + ": " + e.msg), body(std::move(e))
  {
  }
  ErrorBody body;
};

// The worker closed the connection (or said BYE) where we expected more.
class ConnectionLost : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Resolves `peer` within `limit`, one resolver per call, so the nodes' names resolve in
// parallel. Throws ConnectionLost("name lookup timed out") and std::system_error.
awaitable<tcp::resolver::results_type> resolve_peer(const Peer& peer, Clock::duration limit);

// Connects `channel` to one of `endpoints`, authenticates with `key`, sends `hello` and returns
// the worker's WELCOME. The caller bounds it with a Deadline on the channel's socket. Throws
// HandshakeError (REJECT, failed proof of the key), RemoteError (an ERROR instead of WELCOME:
// busy, shutdown), ConnectionLost (closed before WELCOME), ProtocolError and std::system_error.
// Reads records until one of type `wanted` and returns its body, answering PINGs on the way.
// Throws RemoteError on an ERROR record, ConnectionLost on EOF or BYE, ProtocolError on any
// other record, and std::system_error on socket errors.
awaitable<Bytes> receive_body(Channel& channel, RecordType wanted);

awaitable<Welcome> open_session(Channel& channel, const tcp::resolver::results_type& endpoints,
                                const ClusterKey& key, const Hello& hello);

// Says BYE and reads until the worker's BYE or EOF (the worker first kills leftovers and removes
// the job dir); ERROR records on the way are logged under `label`. Then half-closes. Throws
// std::system_error and the errors of Channel::receive.
awaitable<void> close_session(Channel& channel, const std::string& label);

} // namespace dc::master
