#pragma once
// The messaging endpoint of one job (PROTOCOL.md "Messages"): a Unix socket the job's processes
// connect to (DISTCOMP_MSG_SOCKET), served here and carried over the session to the master, which
// routes each message to its destination node's worker.
//
// Sending: a SEND request's bytes are read from the job only within the credit of the stream to
// that destination (k_msg_window, returned by the receiving side as its job reads), so a slow
// receiver blocks only the senders that write to it. Receiving: chunks from the master are held
// per source, at most k_msg_window bytes each, and streamed to the job when it asks for them.

#include "common/channel.hpp"
#include "common/messages.hpp"
#include "common/msg_wire.hpp"

#include <deque>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace dc::worker {

class MsgEndpoint : public std::enable_shared_from_this<MsgEndpoint> {
public:
  using local_socket = asio::local::stream_protocol::socket;

  // Creates the listening socket, an abstract one with a random name. Throws std::system_error.
  MsgEndpoint(Channel& channel, std::uint32_t rank, std::uint32_t size, std::string label);
  MsgEndpoint(const MsgEndpoint&) = delete;
  MsgEndpoint& operator=(const MsgEndpoint&) = delete;

  std::uint32_t rank() const { return m_rank; }
  std::uint32_t size() const { return m_size; }
  // For DISTCOMP_MSG_SOCKET: `@` then the abstract name (the clients turn `@` into a NUL).
  std::string socket_address() const { return "@" + m_name; }

  // Starts accepting the job's connections.
  void start();
  // Records from the master. Each throws ProtocolError on a violation (bad node number, bytes
  // beyond the window, broken framing); the session then answers ERROR(protocol) and closes.
  void on_data(ByteView body);
  void on_window(const WindowBody& window);
  void on_end(ByteView body);
  void on_barrier(ByteView body);
  void on_active(ByteView body);
  // Session end: stops accepting (the abstract name is gone with the socket), closes every
  // connection of the job and waits for their coroutines.
  awaitable<void> close();

private:
  struct Incoming {
    std::uint64_t total = 0;
    std::uint64_t arrived = 0;
    std::uint64_t seq = 0; // arrival order of first chunks, for recv_any
    std::deque<Bytes> chunks;
    bool claimed = false; // a connection is streaming it to the job
    bool aborted = false; // its sender ended before the last chunk
  };
  struct Source {
    std::deque<std::shared_ptr<Incoming>> messages; // complete or arriving, not yet claimed
    std::shared_ptr<Incoming> current;              // the one whose chunks are arriving
    MsgFraming framing;
    std::uint64_t outstanding = 0; // received and not yet credited back to the master
    std::uint64_t unreported = 0;  // given to the job, credit not yet sent
  };
  struct Destination {
    std::uint64_t credit = k_msg_window;
    bool busy = false; // a connection is sending a message on this stream
  };

  awaitable<void> accept_loop(std::shared_ptr<MsgEndpoint> self);
  awaitable<void> serve(std::shared_ptr<MsgEndpoint> self, std::shared_ptr<local_socket> socket);
  // Each returns false when the connection must close.
  awaitable<bool> do_send(local_socket& socket, const MsgSocketHeader& request);
  awaitable<bool> do_recv(local_socket& socket, std::optional<std::uint32_t> from);
  awaitable<bool> do_barrier(local_socket& socket);
  awaitable<bool> reply(local_socket& socket, std::uint8_t status, std::uint32_t peer,
                        std::string_view payload);
  awaitable<bool> discard(local_socket& socket, std::uint64_t n);
  // Returns credit for `n` bytes from `from` that left our buffer: at once with `flush`, else
  // once a quarter window has gathered.
  void give_credit(std::uint32_t from, std::uint64_t n, bool flush);
  void drop(std::uint32_t from, Incoming& message); // frees an abandoned message's bytes
  std::shared_ptr<Incoming> next_message(std::optional<std::uint32_t> from, std::uint32_t& source);
  bool all_others_ended() const;
  awaitable<void> wait_change();
  // The first connection of the job asks the master for the ends so far (MSG_ACTIVE) and every
  // connection waits for its answer, so a send to a node that ended long ago fails. Returns
  // false when the endpoint closed meanwhile.
  awaitable<bool> activate();
  void changed() { m_changed.notify(); }

  Channel& m_channel;
  std::uint32_t m_rank;
  std::uint32_t m_size;
  std::string m_label;
  std::string m_name; // the abstract socket's name (without the leading NUL)
  asio::local::stream_protocol::acceptor m_acceptor;
  std::set<std::shared_ptr<local_socket>> m_clients;
  std::unordered_map<std::uint32_t, Source> m_sources;
  std::unordered_map<std::uint32_t, Destination> m_destinations;
  std::unordered_set<std::uint32_t> m_ended;
  std::uint64_t m_next_seq = 0;
  std::uint32_t m_barriers_entered = 0;
  std::uint32_t m_barriers_done = 0;
  std::uint32_t m_barriers_fail_from = 0; // 0: none failed
  std::uint32_t m_barrier_dead_node = 0;
  enum class Activation { idle, asked, ready } m_activation = Activation::idle;
  Event m_changed;
  std::size_t m_coroutines = 0;
  bool m_closed = false;
};

} // namespace dc::worker
