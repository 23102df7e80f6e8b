// Noise NNpsk0 conformance (SECURITY-TESTS A14, A15): cacophony vectors in both roles, RFC 4231
// HMAC-SHA512, nonce limits, and the handshake's refusals.

#include "common/error.hpp"
#include "common/noise.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using dc::Bytes;
using dc::ByteView;
namespace noise = dc::noise;
using noise::HandshakeState;
using noise::Role;

Bytes from_hex(std::string_view hex)
{
  REQUIRE(hex.size() % 2 == 0);
  Bytes out(hex.size() / 2);
  std::size_t size = 0;
  REQUIRE(sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &size, nullptr) ==
          0);
  REQUIRE(size == out.size());
  return out;
}

Bytes hex_field(const nlohmann::json& j)
{
  return from_hex(j.get<std::string>());
}

nlohmann::json load_vector(std::string_view protocol_name)
{
  std::ifstream in(DC_VECTORS_DIR "/noise-nnpsk0.json");
  REQUIRE(in.good());
  const nlohmann::json all = nlohmann::json::parse(in);
  for (const auto& v : all.at("vectors")) {
    if (v.at("protocol_name") == protocol_name) {
      return v;
    }
  }
  FAIL("vector not found: " << protocol_name);
  return {};
}

const Bytes k_psk(32, 0x42);
const Bytes k_prologue = {'d', 'i', 's', 't', 'c', 'o', 'm', 'p'};

struct Session {
  noise::TransportState initiator;
  noise::TransportState responder;
};

// A complete v1 handshake (empty payloads) with random ephemerals.
Session handshake()
{
  HandshakeState i(Role::initiator, k_prologue, k_psk);
  HandshakeState r(Role::responder, k_prologue, k_psk);
  const Bytes m1 = i.write_message({});
  CHECK(m1.size() == 48);
  CHECK(r.read_message(m1).empty());
  const Bytes m2 = r.write_message({});
  CHECK(m2.size() == 48);
  CHECK(i.read_message(m2).empty());
  REQUIRE(i.is_complete());
  REQUIRE(r.is_complete());
  return {i.split(), r.split()};
}

} // namespace

TEST_CASE("noise: cacophony Noise_NNpsk0_25519_ChaChaPoly_SHA512 in both roles")
{
  const nlohmann::json v = load_vector("Noise_NNpsk0_25519_ChaChaPoly_SHA512");
  HandshakeState initiator(Role::initiator, hex_field(v.at("init_prologue")),
                           hex_field(v.at("init_psks").at(0)));
  initiator.set_ephemeral_for_test(hex_field(v.at("init_ephemeral")));
  HandshakeState responder(Role::responder, hex_field(v.at("resp_prologue")),
                           hex_field(v.at("resp_psks").at(0)));
  responder.set_ephemeral_for_test(hex_field(v.at("resp_ephemeral")));

  const auto& messages = v.at("messages");
  REQUIRE(messages.size() == 6); // 2 handshake messages, 4 transport messages
  const Bytes payload0 = hex_field(messages[0].at("payload"));
  const Bytes cipher0 = hex_field(messages[0].at("ciphertext"));
  const Bytes payload1 = hex_field(messages[1].at("payload"));
  const Bytes cipher1 = hex_field(messages[1].at("ciphertext"));

  CHECK(initiator.write_message(payload0) == cipher0);
  CHECK(responder.read_message(cipher0) == payload0);
  CHECK(responder.write_message(payload1) == cipher1);
  CHECK(initiator.read_message(cipher1) == payload1);
  REQUIRE(initiator.is_complete());
  REQUIRE(responder.is_complete());

  noise::TransportState i = initiator.split();
  noise::TransportState r = responder.split();
  const Bytes expected_hash = hex_field(v.at("handshake_hash"));
  CHECK(Bytes(i.handshake_hash.begin(), i.handshake_hash.end()) == expected_hash);
  CHECK(Bytes(r.handshake_hash.begin(), r.handshake_hash.end()) == expected_hash);

  // Transport messages alternate, initiator first (cacophony convention for two-way patterns).
  for (std::size_t n = 2; n < messages.size(); ++n) {
    CAPTURE(n);
    const Bytes payload = hex_field(messages[n].at("payload"));
    const Bytes cipher = hex_field(messages[n].at("ciphertext"));
    const bool from_initiator = n % 2 == 0;
    noise::CipherState& send = from_initiator ? i.send : r.send;
    noise::CipherState& receive = from_initiator ? r.receive : i.receive;
    CHECK(send.encrypt({}, payload) == cipher);
    CHECK(receive.decrypt({}, cipher) == payload);
  }
  CHECK(i.send.nonce() == 2);
  CHECK(r.receive.nonce() == 2);
}

TEST_CASE("noise: HMAC-SHA512 matches RFC 4231 test cases 1-4")
{
  struct Case {
    Bytes key;
    Bytes data;
    const char* mac;
  };
  Bytes key4;
  for (std::uint8_t b = 0x01; b <= 0x19; ++b) {
    key4.push_back(b);
  }
  const std::string jefe_data = "what do ya want for nothing?";
  const Case cases[] = {
      {Bytes(20, 0x0b), Bytes{'H', 'i', ' ', 'T', 'h', 'e', 'r', 'e'},
       "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
       "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
      {Bytes{'J', 'e', 'f', 'e'}, Bytes(jefe_data.begin(), jefe_data.end()),
       "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
       "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
      {Bytes(20, 0xaa), Bytes(50, 0xdd),
       "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
       "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"},
      {key4, Bytes(50, 0xcd),
       "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
       "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"},
  };
  for (const Case& c : cases) {
    const noise::Hash mac = noise::detail::hmac_sha512(c.key, {c.data});
    CHECK(dc::to_hex(mac) == c.mac);
    // Split input gives the same MAC (HKDF feeds output || counter as two parts).
    const ByteView data(c.data);
    CHECK(noise::detail::hmac_sha512(c.key, {data.first(3), data.subspan(3)}) == mac);
  }
}

TEST_CASE("noise: HKDF outputs chain as in Noise section 4.3")
{
  const Bytes ck(64, 0x11);
  const Bytes ikm(32, 0x22);
  std::array<noise::Hash, 3> three;
  std::array<noise::Hash, 2> two;
  noise::detail::hkdf(ck, ikm, three);
  noise::detail::hkdf(ck, ikm, two);
  CHECK(two[0] == three[0]);
  CHECK(two[1] == three[1]);
  const noise::Hash temp = noise::detail::hmac_sha512(ck, {ikm});
  const std::uint8_t one = 1, three_byte = 3;
  CHECK(three[0] == noise::detail::hmac_sha512(temp, {ByteView(&one, 1)}));
  CHECK(three[2] == noise::detail::hmac_sha512(temp, {three[1], ByteView(&three_byte, 1)}));
  std::array<noise::Hash, 1> bad;
  CHECK_THROWS_AS(noise::detail::hkdf(ck, ikm, bad), std::invalid_argument);
}

TEST_CASE("noise: v1 handshake gives 48-byte messages and matching transport keys")
{
  Session s = handshake();
  CHECK(s.initiator.handshake_hash == s.responder.handshake_hash);
  const Bytes hello = {1, 2, 3};
  CHECK(s.responder.receive.decrypt({}, s.initiator.send.encrypt({}, hello)) == hello);
  CHECK(s.initiator.receive.decrypt({}, s.responder.send.encrypt({}, hello)) == hello);

  // Reflection: a record sent back to its sender does not decrypt (separate direction keys).
  const Bytes record = s.initiator.send.encrypt({}, hello);
  CHECK_THROWS_AS(s.initiator.receive.decrypt({}, record), dc::ProtocolError);

  // Fresh ephemerals: two sessions with the same psk share no keys.
  Session t = handshake();
  CHECK(s.initiator.handshake_hash != t.initiator.handshake_hash);
}

TEST_CASE("noise: encrypt_append appends the same ciphertext encrypt would produce")
{
  const Bytes key(32, 7);
  noise::CipherState a(key);
  noise::CipherState b(key);
  Bytes out = {0x00, 0x13};
  const Bytes plaintext = {9, 8, 7};
  a.encrypt_append({}, plaintext, out);
  const Bytes expected = b.encrypt({}, plaintext);
  REQUIRE(out.size() == 2 + expected.size());
  CHECK(Bytes(out.begin() + 2, out.end()) == expected);
  CHECK(a.nonce() == 1);
}

TEST_CASE("noise: CipherState refuses the reserved nonce (A15)")
{
  const Bytes key(32, 7);
  noise::CipherState send(key);
  send.set_nonce_for_test(noise::k_max_nonce - 2);
  CHECK_NOTHROW(send.encrypt({}, Bytes{1}));
  CHECK(send.nonce() == noise::k_max_nonce - 1);
  CHECK_THROWS_WITH_AS(send.encrypt({}, Bytes{1}), "nonce exhausted", dc::ProtocolError);
  Bytes out;
  CHECK_THROWS_AS(send.encrypt_append({}, Bytes{1}, out), dc::ProtocolError);
  CHECK(send.nonce() == noise::k_max_nonce - 1);

  noise::CipherState receive(key);
  receive.set_nonce_for_test(noise::k_max_nonce - 1);
  CHECK_THROWS_WITH_AS(receive.decrypt({}, Bytes(17, 0)), "nonce exhausted", dc::ProtocolError);
}

TEST_CASE("noise: a flipped byte fails authentication and does not advance the nonce")
{
  const Bytes key(32, 7);
  noise::CipherState send(key);
  noise::CipherState receive(key);
  const Bytes record = send.encrypt({}, Bytes{'h', 'i'});
  for (std::size_t i = 0; i < record.size(); ++i) {
    Bytes bad = record;
    bad[i] ^= 0x01;
    CHECK_THROWS_WITH_AS(receive.decrypt({}, bad), "record authentication failed",
                         dc::ProtocolError);
    CHECK(receive.nonce() == 0);
  }
  CHECK_THROWS_AS(receive.decrypt({}, Bytes(15, 0)), dc::ProtocolError); // shorter than a tag
  CHECK_THROWS_AS(receive.decrypt(Bytes{1}, record), dc::ProtocolError); // other associated data
  CHECK(receive.nonce() == 0);
  CHECK(receive.decrypt({}, record) == Bytes{'h', 'i'});
  CHECK(receive.nonce() == 1);
  CHECK_THROWS_AS(receive.decrypt({}, record), dc::ProtocolError); // replay
}

TEST_CASE("noise: a CipherState without a key passes data through")
{
  noise::CipherState none;
  CHECK_FALSE(none.has_key());
  CHECK(none.encrypt({}, Bytes{1, 2}) == Bytes{1, 2});
  CHECK(none.decrypt({}, Bytes{3}) == Bytes{3});
  CHECK(none.nonce() == 0);
  CHECK_THROWS_AS(noise::CipherState(Bytes(31, 0)), std::invalid_argument);
}

TEST_CASE("noise: wrong psk fails when the responder reads message 1")
{
  HandshakeState i(Role::initiator, k_prologue, k_psk);
  HandshakeState r(Role::responder, k_prologue, Bytes(32, 0x43));
  const Bytes m1 = i.write_message({});
  CHECK_THROWS_AS(r.read_message(m1), dc::ProtocolError);
  CHECK_FALSE(r.is_complete());
  CHECK_THROWS_AS(r.write_message({}), std::logic_error); // dead after a failure
  CHECK_THROWS_AS(HandshakeState(Role::initiator, k_prologue, Bytes(31, 0)), std::invalid_argument);
}

TEST_CASE("noise: a prologue mismatch fails the handshake")
{
  HandshakeState i(Role::initiator, k_prologue, k_psk);
  HandshakeState r(Role::responder, Bytes{'o', 't', 'h', 'e', 'r'}, k_psk);
  CHECK_THROWS_AS(r.read_message(i.write_message({})), dc::ProtocolError);
}

TEST_CASE("noise: edited or truncated handshake messages fail")
{
  {
    HandshakeState i(Role::initiator, k_prologue, k_psk);
    HandshakeState r(Role::responder, k_prologue, k_psk);
    Bytes m1 = i.write_message({});
    m1[5] ^= 0x80; // e.pub is hashed and mixed into the key
    CHECK_THROWS_AS(r.read_message(m1), dc::ProtocolError);
  }
  {
    HandshakeState i(Role::initiator, k_prologue, k_psk);
    HandshakeState r(Role::responder, k_prologue, k_psk);
    const Bytes m1 = i.write_message({});
    CHECK_THROWS_AS(r.read_message(ByteView(m1).first(47)), dc::ProtocolError);
    CHECK_THROWS_AS(r.read_message(m1), std::logic_error);
  }
  {
    HandshakeState i(Role::initiator, k_prologue, k_psk);
    HandshakeState r(Role::responder, k_prologue, k_psk);
    r.read_message(i.write_message({}));
    Bytes m2 = r.write_message({});
    m2.back() ^= 0x01;
    CHECK_THROWS_WITH_AS(i.read_message(m2), "handshake authentication failed", dc::ProtocolError);
    CHECK_THROWS_AS(i.split(), std::logic_error);
  }
}

TEST_CASE("noise: calls out of turn are logic errors")
{
  HandshakeState i(Role::initiator, k_prologue, k_psk);
  HandshakeState r(Role::responder, k_prologue, k_psk);
  CHECK_THROWS_AS(i.read_message(Bytes(48, 0)), std::logic_error);
  CHECK_THROWS_AS(r.write_message({}), std::logic_error);
  CHECK_THROWS_AS(i.split(), std::logic_error);
  const Bytes m1 = i.write_message({});
  CHECK_THROWS_AS(i.write_message({}), std::logic_error);
  r.read_message(m1);
  i.read_message(r.write_message({}));
  CHECK_THROWS_AS(i.write_message({}), std::logic_error);
  CHECK_THROWS_AS(r.read_message(m1), std::logic_error);
  CHECK_NOTHROW(i.split());
  CHECK_THROWS_AS(i.split(), std::logic_error);
}

TEST_CASE("noise: a low-order ephemeral key in message 2 is refused by the initiator")
{
  const char* low_order_points[] = {
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  };
  for (const char* point : low_order_points) {
    CAPTURE(point);
    HandshakeState i(Role::initiator, k_prologue, k_psk);
    HandshakeState r(Role::responder, k_prologue, k_psk);
    r.read_message(i.write_message({}));
    Bytes m2 = r.write_message({});
    const Bytes pub = from_hex(point);
    std::memcpy(m2.data(), pub.data(), pub.size());
    CHECK_THROWS_WITH_AS(i.read_message(m2), "bad ephemeral key", dc::ProtocolError);
    CHECK_FALSE(i.is_complete());
  }
}

TEST_CASE("noise: a key holder's all-zero ephemeral in message 1 is refused by the responder")
{
  // Build message 1 by hand (PROTOCOL.md §3) with e.pub = 0: it authenticates, so only the
  // responder's ee DH can catch it.
  const std::string_view name = "Noise_NNpsk0_25519_ChaChaPoly_SHA512";
  noise::Hash h{};
  std::memcpy(h.data(), name.data(), name.size());
  noise::Hash ck = h;
  const auto mix_hash = [&h](ByteView data) {
    Bytes in(h.begin(), h.end());
    in.insert(in.end(), data.begin(), data.end());
    crypto_hash_sha512(h.data(), in.data(), in.size());
  };
  mix_hash(k_prologue);
  std::array<noise::Hash, 3> out3;
  noise::detail::hkdf(ck, k_psk, out3);
  ck = out3[0];
  mix_hash(out3[1]);
  const Bytes e_pub(32, 0);
  mix_hash(e_pub);
  std::array<noise::Hash, 2> out2;
  noise::detail::hkdf(ck, e_pub, out2);
  noise::CipherState k(ByteView(out2[1]).first(32));
  Bytes m1 = e_pub;
  k.encrypt_append(h, {}, m1);
  REQUIRE(m1.size() == 48);

  HandshakeState r(Role::responder, k_prologue, k_psk);
  CHECK(r.read_message(m1).empty()); // authenticates: the sender holds the psk
  CHECK_THROWS_WITH_AS(r.write_message({}), "bad ephemeral key", dc::ProtocolError);
  CHECK_FALSE(r.is_complete());
}

TEST_CASE("noise: handshake payloads travel encrypted")
{
  HandshakeState i(Role::initiator, k_prologue, k_psk);
  HandshakeState r(Role::responder, k_prologue, k_psk);
  const Bytes secret = {'s', 'e', 'c', 'r', 'e', 't'};
  const Bytes m1 = i.write_message(secret);
  CHECK(m1.size() == 48 + secret.size());
  CHECK(std::search(m1.begin(), m1.end(), secret.begin(), secret.end()) == m1.end());
  CHECK(r.read_message(m1) == secret);
  CHECK_THROWS_AS(i.write_message(Bytes(noise::k_max_message_size, 0)), std::logic_error);
  HandshakeState j(Role::initiator, k_prologue, k_psk);
  CHECK_THROWS_AS(j.write_message(Bytes(noise::k_max_message_size - 47, 0)), std::invalid_argument);
  CHECK_NOTHROW(j.write_message(Bytes(noise::k_max_message_size - 48, 0)));
}
