#include "common/wire.hpp"

#include <doctest/doctest.h>

using namespace dc;

TEST_CASE("wire: preamble golden bytes and round trip")
{
  Preamble p;
  p.key_id = {1, 2, 3, 4, 5, 6, 7, 8};
  const Bytes b = encode_preamble(p);
  CHECK(b == Bytes{'D', 'C', 'M', 'P', 1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8});
  const auto back = decode_preamble(b);
  REQUIRE(back.has_value());
  CHECK(back->ver_used == 1);
  CHECK(back->ver_max == 1);
  CHECK(back->flags == 0);
  CHECK(back->key_id == p.key_id);
}

TEST_CASE("wire: preamble with bad magic or size is not a preamble")
{
  Bytes b = encode_preamble(Preamble{});
  b[0] = 'G';
  CHECK_FALSE(decode_preamble(b).has_value());
  CHECK_FALSE(decode_preamble(ByteView(b).first(15)).has_value());
  const Bytes http = {'G', 'E', 'T', ' ', '/', ' ', 'H',  'T',
                      'T', 'P', '/', '1', '.', '1', '\r', '\n'};
  CHECK_FALSE(decode_preamble(http).has_value());
}

TEST_CASE("wire: REJECT golden bytes, malformed REJECT throws")
{
  const Bytes b = encode_reject(Reject{RejectReason::key, 1, 1});
  CHECK(b == Bytes{'D', 'C', 'M', 'P', 0, 2, 1, 1});
  CHECK(decode_reject(b).reason == RejectReason::key);
  Bytes bad = b;
  bad[4] = 1;
  CHECK_THROWS_AS(decode_reject(bad), ProtocolError);
  CHECK_THROWS_AS(decode_reject(ByteView(b).first(7)), ProtocolError);
  CHECK(to_string(RejectReason::malformed) == "malformed");
}

TEST_CASE("wire: plaintext carries type then body, unknown types and empty input throw")
{
  const Bytes body = {9, 8, 7};
  Bytes p = {1, 2, 3, 4, 5, 6}; // a reused buffer: its old contents go
  encode_plaintext(RecordType::run, body, p);
  CHECK(p == Bytes{0x20, 9, 8, 7});
  const Record r = decode_plaintext(p);
  CHECK(r.type == RecordType::run);
  CHECK(r.body == body);
  CHECK_THROWS_AS(decode_plaintext(Bytes{0x7f, 1}), ProtocolError);
  CHECK_THROWS_AS(decode_plaintext(Bytes{}), ProtocolError);
  Bytes out;
  CHECK_THROWS_AS(encode_plaintext(RecordType::stdout_data, Bytes(k_max_body_size + 1), out),
                  ProtocolError);
  CHECK_NOTHROW(encode_plaintext(RecordType::stdout_data, Bytes(k_max_body_size), out));
}

TEST_CASE("wire: every v1 type maps back to itself, reserved numbers are unknown")
{
  int known = 0;
  for (int raw = 0; raw < 256; ++raw) {
    const auto t = record_type_from(static_cast<std::uint8_t>(raw));
    if (t) {
      ++known;
      CHECK(static_cast<int>(*t) == raw);
      CHECK(std::string(to_string(*t)) != "?");
    }
  }
  CHECK(known == 29);
  CHECK(record_type_from(0x14) == RecordType::fetch);
  CHECK(record_type_from(0x15) == RecordType::fetch_reply);
  CHECK(std::string(to_string(RecordType::fetch_reply)) == "FETCH_REPLY");
  CHECK_FALSE(record_type_from(0x19).has_value()); // between the bundle types and RUN: unused
  CHECK(record_type_from(0x25) == RecordType::stdin_data);
  CHECK(record_type_from(0x27) == RecordType::window);
  CHECK(record_type_from(0x50) == RecordType::status);
  CHECK(record_type_from(0x51) == RecordType::status_reply);
  CHECK(std::string(to_string(RecordType::status_reply)) == "STATUS_REPLY");
  CHECK(record_type_from(0x40) == RecordType::msg_data);
  CHECK(record_type_from(0x43) == RecordType::msg_active);
  CHECK_FALSE(record_type_from(0x44).has_value()); // reserved for messages, not in use
  CHECK(std::string(to_string(RecordType::msg_barrier)) == "MSG_BARRIER");
}

TEST_CASE("wire: output bodies are a u32 id then bytes")
{
  const Bytes data = {'h', 'i'};
  const Bytes b = encode_output(0x01020304, data);
  CHECK(b == Bytes{1, 2, 3, 4, 'h', 'i'});
  const auto [id, rest] = decode_output(b);
  CHECK(id == 0x01020304);
  CHECK(Bytes(rest.begin(), rest.end()) == data);
  CHECK_THROWS_AS(decode_output(Bytes{1, 2, 3}), ProtocolError);
}

TEST_CASE("wire: random plaintexts either decode or throw ProtocolError, never crash")
{
  std::uint32_t state = 12345;
  for (int i = 0; i < 5000; ++i) {
    Bytes b(state % 40);
    for (auto& byte : b) {
      state = state * 1664525 + 1013904223;
      byte = static_cast<std::uint8_t>(state >> 24);
    }
    try {
      decode_plaintext(b);
    } catch (const ProtocolError&) {
    }
  }
  CHECK(true);
}
