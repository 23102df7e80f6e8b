#include "common/error.hpp"
#include "common/messages.hpp"
#include "master/msg_router.hpp"

#include <doctest/doctest.h>

#include <map>

using namespace dc;
using dc::master::MsgRouter;

namespace {

// What the router sent to each node, in order.
struct Sent {
  RecordType type;
  Bytes body;
};

struct Harness {
  explicit Harness(std::size_t n) : router(n) {}
  void open(std::uint32_t node)
  {
    router.open(node, [this, node](RecordType t, ByteView b) {
      sent[node].push_back({t, Bytes(b.begin(), b.end())});
    });
  }
  // The node's job connects to its endpoint (MSG_ACTIVE); returns what the router answered.
  std::vector<Sent> activate(std::uint32_t node)
  {
    take(node);
    router.on_active(node, {});
    return take(node);
  }
  std::vector<Sent> take(std::uint32_t node) { return std::exchange(sent[node], {}); }
  MsgRouter router;
  std::map<std::uint32_t, std::vector<Sent>> sent;
};

Bytes chunk(std::uint32_t to, std::optional<std::uint64_t> total, const std::string& text)
{
  return encode_msg_chunk(to, total, as_bytes(text));
}

} // namespace

TEST_CASE("msg_router: a message goes to its destination with the source's number")
{
  Harness h(3);
  h.open(0);
  h.open(2);
  h.router.on_data(0, chunk(2, 3, "abc"));
  const auto to2 = h.take(2);
  REQUIRE(to2.size() == 1);
  CHECK(to2[0].type == RecordType::msg_data);
  const MsgChunk c = decode_msg_chunk(to2[0].body);
  CHECK(c.node == 0);
  CHECK(c.total == 3);
  CHECK(h.take(0).empty());
  // Credit from the receiver goes back to the sender, addressed by the receiver's number.
  h.router.on_window(2, 0, 3);
  const auto to0 = h.take(0);
  REQUIRE(to0.size() == 1);
  CHECK(to0[0].type == RecordType::window);
  const WindowBody w = window_from(parse_body(to0[0].body));
  CHECK(w.id == 2);
  CHECK(w.stream == "msg");
  CHECK(w.bytes == 3);
  CHECK_THROWS_AS(h.router.on_window(2, 0, 1), ProtocolError); // more than was sent
}

TEST_CASE("msg_router: chunks for a node that has not started wait for it, in order, then its "
          "sender's end")
{
  Harness h(2);
  h.open(0);
  h.router.on_data(0, chunk(1, 2, "x"));
  h.router.on_data(0, chunk(1, std::nullopt, "y"));
  CHECK(h.router.held_bytes() > 0);
  h.router.node_ended(0);
  h.open(1);
  CHECK(h.router.held_bytes() == 0);
  const auto to1 = h.take(1);
  REQUIRE(to1.size() == 2);
  CHECK(decode_msg_chunk(to1[0].body).data.size() == 1);
  CHECK(decode_msg_chunk(to1[1].body).data.size() == 1);
  // Its job connects to the endpoint: the ends so far, then the answer.
  h.router.on_active(1, {});
  const auto active = h.take(1);
  REQUIRE(active.size() == 2);
  CHECK(active[0].type == RecordType::msg_end);
  CHECK(decode_msg_end(active[0].body) == std::vector<std::uint32_t>{0});
  CHECK(active[1].type == RecordType::msg_active);
  CHECK(active[1].body.empty());
}

TEST_CASE("msg_router: ends go only to nodes whose job uses messaging")
{
  Harness h(3);
  h.open(0);
  h.open(1);
  h.activate(1);
  h.router.node_ended(2);
  CHECK(h.take(0).empty()); // a job that never connected to its endpoint (`true`) hears nothing
  const auto to1 = h.take(1);
  REQUIRE(to1.size() == 1);
  CHECK(decode_msg_end(to1[0].body) == std::vector<std::uint32_t>{2});
}

TEST_CASE("msg_router: hostile records from a worker are protocol errors")
{
  Harness h(2);
  CHECK_THROWS_AS(h.router.on_data(0, chunk(1, 1, "x")), ProtocolError); // not messaging yet
  h.open(0);
  CHECK_THROWS_AS(h.router.on_data(0, chunk(2, 1, "x")), ProtocolError);            // no node 2
  CHECK_THROWS_AS(h.router.on_data(0, chunk(1, std::nullopt, "x")), ProtocolError); // orphan
  CHECK_THROWS_AS(h.router.on_window(0, 5, 1), ProtocolError);
  CHECK_THROWS_AS(h.router.on_barrier(0, encode_barrier_enter(2)), ProtocolError); // skips 1
  CHECK_THROWS_AS(h.router.on_active(1, {}), ProtocolError); // not messaging yet
  h.router.on_active(0, {});
  CHECK_THROWS_AS(h.router.on_active(0, {}), ProtocolError); // twice
  // Beyond the stream's window.
  Harness w(2);
  w.open(0);
  const std::string big(k_max_msg_chunk, 'z');
  w.router.on_data(0, encode_msg_chunk(1, k_msg_window + 1, as_bytes(big)));
  std::uint64_t sent = big.size();
  CHECK_THROWS_AS(
      [&] {
        while (sent <= k_msg_window) {
          w.router.on_data(0, encode_msg_chunk(1, std::nullopt, as_bytes(big)));
          sent += big.size();
        }
      }(),
      ProtocolError);
}

TEST_CASE("msg_router: a barrier releases when every node entered, and fails everywhere once a "
          "node ended before it")
{
  Harness h(3);
  for (std::uint32_t i = 0; i < 3; ++i) {
    h.open(i);
    h.activate(i);
  }
  h.router.on_barrier(0, encode_barrier_enter(1));
  h.router.on_barrier(1, encode_barrier_enter(1));
  CHECK(h.take(0).empty());
  h.router.on_barrier(2, encode_barrier_enter(1));
  for (std::uint32_t i = 0; i < 3; ++i) {
    const auto got = h.take(i);
    REQUIRE(got.size() == 1);
    const BarrierResult r = decode_barrier_result(got[0].body);
    CHECK(r.ok);
    CHECK(r.seq == 1);
  }
  // Second barrier: node 1 ends instead of entering.
  h.router.on_barrier(0, encode_barrier_enter(2));
  h.router.node_ended(1);
  const auto to0 = h.take(0);
  REQUIRE(to0.size() == 2);
  CHECK(to0[0].type == RecordType::msg_end);
  const BarrierResult failed = decode_barrier_result(to0[1].body);
  CHECK_FALSE(failed.ok);
  CHECK(failed.seq == 2);
  CHECK(failed.node == 1);
  h.take(2);
  h.router.on_barrier(2, encode_barrier_enter(2)); // arriving late: fails at once
  const auto to2 = h.take(2);
  REQUIRE(to2.size() == 1);
  CHECK_FALSE(decode_barrier_result(to2[0].body).ok);
}

TEST_CASE("msg_router: a node that never started fails the first barrier, ends are told to late "
          "users")
{
  Harness h(3);
  h.open(0);
  h.activate(0);
  h.router.on_barrier(0, encode_barrier_enter(1));
  h.router.node_ended(2); // unreachable
  const auto to0 = h.take(0);
  REQUIRE(to0.size() == 2);
  CHECK_FALSE(decode_barrier_result(to0[1].body).ok);
  h.open(1);
  CHECK(h.take(1).empty());
  const auto to1 = h.activate(1);
  REQUIRE(to1.size() == 2);
  CHECK(to1[0].type == RecordType::msg_end);
  CHECK(decode_msg_end(to1[0].body) == std::vector<std::uint32_t>{2});
  // Chunks to an ended node are dropped; the sender's worker already heard of its end.
  h.router.on_data(0, chunk(2, 1, "x"));
  CHECK(h.take(2).empty());
}
