#pragma once
// Routes node-to-node messages of one run (PROTOCOL.md "Messages"). Each node's worker carries
// its job's messages over the node's session; the router passes each chunk on to the session of
// its destination, passes credit (WINDOW) back from receivers to senders, and runs barriers.
// It never delivers outside the run: node numbers index this run's nodes only.
//
// A node is pending until its session sends the first RUN with messaging, open until its last
// command ended (or the session failed), then ended; a node that never starts ends too. Chunks for
// a pending node wait here, at most the stream's window (k_msg_window) per (source, destination).
// Ends go only to nodes whose job connected to its endpoint (MSG_ACTIVE).
// Sans-I/O: records leave through the Send function each open node registers.

#include "common/msg_wire.hpp"
#include "common/wire.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace dc::master {

class MsgRouter {
public:
  // Queues one record to a node's worker; throws std::system_error once its connection failed.
  using Send = std::function<void(RecordType, ByteView)>;

  explicit MsgRouter(std::size_t nodes);

  // The node's job starts messaging (its first RUN with msg is on the wire): chunks held for it
  // go out.
  void open(std::uint32_t node, Send send);
  // MSG_ACTIVE: the node's job connected to its endpoint. It gets the nodes that already ended,
  // then MSG_ACTIVE, and from now on every end. Jobs that never use messaging cost no MSG_END
  // records (a run of `true` on 256 nodes would otherwise send 256 x 256 of them).
  void on_active(std::uint32_t from, ByteView body);
  // Records from an open node's worker. Each throws ProtocolError on a violation: a node number
  // out of range, bytes beyond the window, broken framing, a barrier out of sequence.
  void on_data(std::uint32_t from, ByteView body);
  void on_window(std::uint32_t from, std::uint32_t source, std::uint64_t bytes);
  void on_barrier(std::uint32_t from, ByteView body);
  // The node's job is over (or never started): every open node hears MSG_END after the last of
  // its chunks, and barriers it can no longer enter fail everywhere. Idempotent.
  void node_ended(std::uint32_t node);

  bool is_open(std::uint32_t node) const { return m_nodes.at(node).state == State::open; }
  // Bytes held for nodes that have not started yet (for tests and the bench).
  std::uint64_t held_bytes() const { return m_held_bytes; }

private:
  enum class State : std::uint8_t { pending, open, ended };
  struct Node {
    State state = State::pending;
    Send send;
    std::uint32_t barriers_entered = 0;
    std::uint32_t barriers_told = 0; // highest completed barrier this node was told of
    bool barrier_failure_told = false;
    bool active = false; // sent MSG_ACTIVE: wants MSG_END records
  };
  struct Stream {
    std::uint64_t in_flight = 0; // bytes the sender sent and the receiver has not credited back
    MsgFraming framing;
    std::deque<Bytes> held; // readdressed chunks waiting for a pending destination
  };

  Stream& stream(std::uint32_t from, std::uint32_t to);
  void post(std::uint32_t node, RecordType type, ByteView body);
  void check_open(std::uint32_t node, const char* what) const;
  void settle_barriers();

  std::vector<Node> m_nodes;
  std::unordered_map<std::uint64_t, Stream> m_streams; // key: from * nodes + to
  std::unordered_map<std::uint32_t, std::vector<std::uint32_t>>
      m_held_for; // to -> from with held chunks
  std::vector<std::uint32_t> m_ended;
  std::uint64_t m_held_bytes = 0;
  std::uint32_t m_barriers_done = 0;
  std::uint32_t m_barriers_dead_from = 0; // 0: none; else barriers >= this can never complete
  std::uint32_t m_dead_node = 0;
};

} // namespace dc::master
