#include "common/error.hpp"
#include "common/messages.hpp"
#include "common/msg_wire.hpp"

#include <doctest/doctest.h>

using namespace dc;

TEST_CASE("msg_wire: MSG_DATA golden bytes for a first chunk, a continuation and an abort")
{
  const Bytes first = encode_msg_chunk(3, 5, as_bytes(std::string_view("hi")));
  CHECK(first == Bytes{0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 5, 'h', 'i'});
  const MsgChunk a = decode_msg_chunk(first);
  CHECK(a.node == 3);
  CHECK(a.first);
  CHECK_FALSE(a.abort);
  CHECK(a.total == 5);
  CHECK(Bytes(a.data.begin(), a.data.end()) == Bytes{'h', 'i'});
  const Bytes next = encode_msg_chunk(3, std::nullopt, as_bytes(std::string_view("abc")));
  CHECK(next == Bytes{0, 0, 0, 3, 0, 'a', 'b', 'c'});
  CHECK_FALSE(decode_msg_chunk(next).first);
  CHECK(encode_msg_abort(7) == Bytes{0, 0, 0, 7, 2});
  CHECK(decode_msg_chunk(encode_msg_abort(7)).abort);
  // The master turns the destination into the source.
  CHECK(readdress_msg_chunk(first, 0x01020304) ==
        Bytes{1, 2, 3, 4, 1, 0, 0, 0, 0, 0, 0, 0, 5, 'h', 'i'});
}

TEST_CASE("msg_wire: hostile MSG_DATA bodies throw ProtocolError")
{
  CHECK_THROWS_AS(decode_msg_chunk(Bytes{0, 0, 0}), ProtocolError);
  CHECK_THROWS_AS(decode_msg_chunk(Bytes{0, 0, 0, 1}), ProtocolError);
  CHECK_THROWS_AS(decode_msg_chunk(Bytes{0, 0, 0, 1, 4}), ProtocolError);         // unknown flag
  CHECK_THROWS_AS(decode_msg_chunk(Bytes{0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0}), // first|abort
                  ProtocolError);
  CHECK_THROWS_AS(decode_msg_chunk(Bytes{0, 0, 0, 1, 2, 'x'}), ProtocolError); // abort with data
  CHECK_THROWS_AS(decode_msg_chunk(Bytes{0, 0, 0, 1, 1, 0, 0, 0}), ProtocolError); // short total
  CHECK_THROWS_AS(decode_msg_chunk(encode_msg_chunk(1, k_max_msg_size + 1, {})), ProtocolError);
  CHECK_THROWS_AS(readdress_msg_chunk(Bytes{1, 2}, 0), ProtocolError);
}

TEST_CASE("msg_wire: framing accepts whole messages and refuses overlaps, overruns and orphans")
{
  MsgFraming f;
  const Bytes two = {'a', 'b'};
  CHECK(f.accept(decode_msg_chunk(encode_msg_chunk(0, 0, {})))); // empty message: done at once
  CHECK_FALSE(f.in_message());
  CHECK_FALSE(f.accept(decode_msg_chunk(encode_msg_chunk(0, 4, two))));
  CHECK(f.in_message());
  const Bytes first_again = encode_msg_chunk(0, 4, two);
  CHECK_THROWS_AS(f.accept(decode_msg_chunk(first_again)), ProtocolError);
  CHECK(f.accept(decode_msg_chunk(encode_msg_chunk(0, std::nullopt, two))));
  const Bytes orphan = encode_msg_chunk(0, std::nullopt, two);
  CHECK_THROWS_AS(f.accept(decode_msg_chunk(orphan)), ProtocolError);
  MsgFraming g;
  g.accept(decode_msg_chunk(encode_msg_chunk(0, 3, two)));
  const Bytes overrun = encode_msg_chunk(0, std::nullopt, two);
  CHECK_THROWS_AS(g.accept(decode_msg_chunk(overrun)), ProtocolError);
  MsgFraming h;
  CHECK_THROWS_AS(h.accept(decode_msg_chunk(encode_msg_abort(0))), ProtocolError);
  h.accept(decode_msg_chunk(encode_msg_chunk(0, 3, two)));
  CHECK_FALSE(h.accept(decode_msg_chunk(encode_msg_abort(0))));
  CHECK_FALSE(h.in_message());
}

TEST_CASE("msg_wire: MSG_END and MSG_BARRIER bodies")
{
  const std::uint32_t ids[] = {1, 0x0a0b0c0d};
  CHECK(encode_msg_end(ids) == Bytes{0, 0, 0, 1, 10, 11, 12, 13});
  CHECK(decode_msg_end(encode_msg_end(ids)) == std::vector<std::uint32_t>{1, 0x0a0b0c0d});
  CHECK_THROWS_AS(decode_msg_end(Bytes{}), ProtocolError);
  CHECK_THROWS_AS(decode_msg_end(Bytes{0, 0, 1}), ProtocolError);
  CHECK(encode_barrier_enter(2) == Bytes{0, 0, 0, 2});
  CHECK(decode_barrier_enter(Bytes{0, 0, 0, 2}) == 2);
  CHECK_THROWS_AS(decode_barrier_enter(Bytes{0, 0, 0, 0}), ProtocolError);
  CHECK_THROWS_AS(decode_barrier_enter(Bytes{0, 0, 2}), ProtocolError);
  const Bytes failed = encode_barrier_result({3, false, 9});
  CHECK(failed == Bytes{0, 0, 0, 3, 1, 0, 0, 0, 9});
  const BarrierResult r = decode_barrier_result(failed);
  CHECK(r.seq == 3);
  CHECK_FALSE(r.ok);
  CHECK(r.node == 9);
  CHECK(decode_barrier_result(encode_barrier_result({1, true, 0})).ok);
  CHECK_THROWS_AS(decode_barrier_result(Bytes{0, 0, 0, 3, 2, 0, 0, 0, 9}), ProtocolError);
  CHECK_THROWS_AS(decode_barrier_result(Bytes{0, 0, 0, 3, 1}), ProtocolError);
}

TEST_CASE("msg_wire: job socket header golden bytes, non-zero padding throws")
{
  const auto h = encode_socket_header({2, 5, 0x0102});
  CHECK(Bytes(h.begin(), h.end()) == Bytes{2, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 2});
  const MsgSocketHeader back = decode_socket_header(h);
  CHECK(back.code == 2);
  CHECK(back.peer == 5);
  CHECK(back.length == 0x0102);
  Bytes bad(h.begin(), h.end());
  bad[2] = 1;
  CHECK_THROWS_AS(decode_socket_header(bad), ProtocolError);
  CHECK_THROWS_AS(decode_socket_header(ByteView(bad).first(15)), ProtocolError);
}

TEST_CASE("msg_wire: RUN carries msg rank and size, checked against each other")
{
  RunBody run;
  run.sh = "true";
  run.msg = RunBody::Msg{2, 4};
  const RunBody back = run_from(to_json(run));
  REQUIRE(back.msg.has_value());
  CHECK(back.msg->rank == 2);
  CHECK(back.msg->size == 4);
  CHECK_FALSE(run_from(to_json(RunBody{})).msg.has_value());
  Json j = to_json(run);
  j["msg"]["rank"] = 4;
  CHECK_THROWS_AS(run_from(j), ProtocolError);
  j["msg"] = {{"rank", 0}, {"size", 0}};
  CHECK_THROWS_AS(run_from(j), ProtocolError);
  j["msg"] = "yes";
  CHECK_THROWS_AS(run_from(j), ProtocolError);
}
