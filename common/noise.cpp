#include "common/noise.hpp"

#include "common/error.hpp"

#include <sodium.h>

#include <cstring>
#include <stdexcept>
#include <string_view>

namespace dc::noise {

namespace {

constexpr std::string_view k_protocol_name = "Noise_NNpsk0_25519_ChaChaPoly_SHA512";
static_assert(k_protocol_name.size() <= k_hash_size); // so h = name padded with zeros (§5.2)
static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == k_key_size);
static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == k_tag_size);
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12);
static_assert(crypto_scalarmult_BYTES == k_key_size && crypto_scalarmult_SCALARBYTES == k_key_size);
static_assert(crypto_hash_sha512_BYTES == k_hash_size);
static_assert(crypto_auth_hmacsha512_BYTES == k_hash_size);

// Noise §5.1 for ChaChaPoly: 32 bits of zeros followed by the little-endian 64-bit counter.
std::array<std::uint8_t, 12> make_nonce(std::uint64_t n)
{
  std::array<std::uint8_t, 12> nonce{};
  for (std::size_t i = 0; i < 8; ++i) {
    nonce[4 + i] = static_cast<std::uint8_t>(n >> (8 * i));
  }
  return nonce;
}

ByteView key_part(const Hash& h)
{
  return ByteView(h).first(k_key_size);
}

void require_size(ByteView b, std::size_t n, const char* what)
{
  if (b.size() != n) {
    throw std::invalid_argument(std::string(what) + " must be " + std::to_string(n) + " bytes");
  }
}

} // namespace

// ---- CipherState ------------------------------------------------------------------------------

CipherState::CipherState(ByteView key32)
{
  require_size(key32, k_key_size, "cipher key");
  m_key.emplace(k_key_size);
  std::memcpy(m_key->data(), key32.data(), k_key_size);
}

void CipherState::check_nonce() const
{
  if (m_nonce >= k_max_nonce - 1) {
    throw ProtocolError("nonce exhausted");
  }
}

Bytes CipherState::encrypt(ByteView ad, ByteView plaintext)
{
  Bytes out;
  encrypt_append(ad, plaintext, out);
  return out;
}

void CipherState::encrypt_append(ByteView ad, ByteView plaintext, Bytes& out)
{
  const std::size_t offset = out.size();
  out.resize(offset + plaintext.size() + (has_key() ? k_tag_size : 0));
  encrypt_into(ad, plaintext, out.data() + offset);
}

std::size_t CipherState::encrypt_into(ByteView ad, ByteView plaintext, std::uint8_t* out)
{
  if (!has_key()) {
    if (!plaintext.empty()) {
      std::memcpy(out, plaintext.data(), plaintext.size());
    }
    return plaintext.size();
  }
  check_nonce();
  const auto nonce = make_nonce(m_nonce);
  unsigned long long written = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out, &written, plaintext.data(), plaintext.size(),
                                            ad.data(), ad.size(), nullptr, nonce.data(),
                                            m_key->data());
  ++m_nonce;
  return static_cast<std::size_t>(written);
}

Bytes CipherState::decrypt(ByteView ad, ByteView ciphertext)
{
  if (!has_key()) {
    return Bytes(ciphertext.begin(), ciphertext.end());
  }
  check_nonce();
  if (ciphertext.size() < k_tag_size) {
    throw ProtocolError("record authentication failed");
  }
  const auto nonce = make_nonce(m_nonce);
  Bytes plaintext(ciphertext.size() - k_tag_size);
  unsigned long long written = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(plaintext.data(), &written, nullptr,
                                                ciphertext.data(), ciphertext.size(), ad.data(),
                                                ad.size(), nonce.data(), m_key->data()) != 0) {
    throw ProtocolError("record authentication failed");
  }
  ++m_nonce;
  return plaintext;
}

// ---- HandshakeState ---------------------------------------------------------------------------

HandshakeState::HandshakeState(Role role, ByteView prologue, ByteView psk32) : m_role(role)
{
  require_size(psk32, k_key_size, "psk");
  std::memcpy(m_psk.data(), psk32.data(), k_key_size);
  // InitializeSymmetric: h = protocol name padded with zeros; ck = h; no cipher key.
  std::memcpy(m_h.data(), k_protocol_name.data(), k_protocol_name.size());
  std::memcpy(m_ck.data(), m_h.data(), k_hash_size);
  mix_hash(prologue);
}

void HandshakeState::set_ephemeral_for_test(ByteView private_key32)
{
  require_size(private_key32, k_key_size, "ephemeral private key");
  std::memcpy(m_e_private.data(), private_key32.data(), k_key_size);
  m_e_injected = true;
}

bool HandshakeState::is_complete() const
{
  return m_message == 2 && !m_failed;
}

void HandshakeState::check_turn(bool writing) const
{
  if (m_failed) {
    throw std::logic_error("noise: handshake already failed");
  }
  if (m_message >= 2) {
    throw std::logic_error("noise: handshake already complete");
  }
  const bool my_turn_to_write = (m_role == Role::initiator) == (m_message == 0);
  if (writing != my_turn_to_write) {
    throw std::logic_error(writing ? "noise: write_message out of turn"
                                   : "noise: read_message out of turn");
  }
}

Bytes HandshakeState::write_message(ByteView payload)
{
  check_turn(true);
  if (payload.size() > k_max_message_size - k_key_size - k_tag_size) {
    throw std::invalid_argument("noise: handshake payload too large");
  }
  try {
    Bytes out = write_impl(payload);
    ++m_message;
    return out;
  } catch (...) {
    m_failed = true;
    throw;
  }
}

Bytes HandshakeState::read_message(ByteView message)
{
  check_turn(false);
  try {
    Bytes payload = read_impl(message);
    ++m_message;
    return payload;
  } catch (...) {
    m_failed = true;
    throw;
  }
}

Bytes HandshakeState::write_impl(ByteView payload)
{
  Bytes out;
  out.reserve(k_key_size + payload.size() + k_tag_size);
  if (m_message == 0) { // initiator: psk, e
    mix_key_and_hash(m_psk.view());
    sodium_memzero(m_psk.data(), m_psk.size());
    write_ephemeral(out);
  } else { // responder: e, ee
    write_ephemeral(out);
    mix_dh();
  }
  encrypt_and_hash(payload, out);
  return out;
}

Bytes HandshakeState::read_impl(ByteView message)
{
  if (message.size() < k_key_size + k_tag_size) {
    throw ProtocolError("handshake message too short");
  }
  if (message.size() > k_max_message_size) {
    throw ProtocolError("handshake message too long");
  }
  if (m_message == 0) { // responder reads: psk, e
    mix_key_and_hash(m_psk.view());
    sodium_memzero(m_psk.data(), m_psk.size());
  }
  std::memcpy(m_re.data(), message.data(), k_key_size);
  mix_hash(m_re);
  mix_key(m_re);        // psk modifier (Noise §9.2): e also calls MixKey
  if (m_message == 1) { // initiator reads: e, ee
    mix_dh();
  }
  return decrypt_and_hash(message.subspan(k_key_size));
}

void HandshakeState::write_ephemeral(Bytes& out)
{
  if (!m_e_injected) {
    randombytes_buf(m_e_private.data(), k_key_size);
  }
  if (crypto_scalarmult_base(m_e_public.data(), m_e_private.data()) != 0) {
    throw ProtocolError("bad ephemeral key"); // unreachable for a clamped scalar
  }
  out.insert(out.end(), m_e_public.begin(), m_e_public.end());
  mix_hash(m_e_public);
  mix_key(m_e_public); // psk modifier (Noise §9.2)
}

void HandshakeState::mix_dh()
{
  SecureBuffer shared(k_key_size);
  detail::dh(m_e_private.view(), m_re, shared.data());
  sodium_memzero(m_e_private.data(), m_e_private.size()); // NN uses each ephemeral once
  mix_key(shared.view());
}

void HandshakeState::mix_hash(ByteView data)
{
  crypto_hash_sha512_state state;
  crypto_hash_sha512_init(&state);
  crypto_hash_sha512_update(&state, m_h.data(), m_h.size());
  if (!data.empty()) {
    crypto_hash_sha512_update(&state, data.data(), data.size());
  }
  crypto_hash_sha512_final(&state, m_h.data());
  sodium_memzero(&state, sizeof state);
}

void HandshakeState::mix_key(ByteView ikm)
{
  std::array<Hash, 2> out;
  detail::hkdf(m_ck.view(), ikm, out);
  std::memcpy(m_ck.data(), out[0].data(), k_hash_size);
  m_k = CipherState(key_part(out[1]));
  sodium_memzero(out.data(), sizeof out);
}

void HandshakeState::mix_key_and_hash(ByteView ikm)
{
  std::array<Hash, 3> out;
  detail::hkdf(m_ck.view(), ikm, out);
  std::memcpy(m_ck.data(), out[0].data(), k_hash_size);
  mix_hash(out[1]);
  m_k = CipherState(key_part(out[2]));
  sodium_memzero(out.data(), sizeof out);
}

void HandshakeState::encrypt_and_hash(ByteView plaintext, Bytes& out)
{
  const std::size_t offset = out.size();
  m_k.encrypt_append(m_h, plaintext, out);
  mix_hash(ByteView(out).subspan(offset));
}

Bytes HandshakeState::decrypt_and_hash(ByteView ciphertext)
{
  Bytes plaintext;
  try {
    plaintext = m_k.decrypt(m_h, ciphertext);
  } catch (const ProtocolError&) {
    throw ProtocolError("handshake authentication failed");
  }
  mix_hash(ciphertext);
  return plaintext;
}

TransportState HandshakeState::split()
{
  if (!is_complete()) {
    throw std::logic_error("noise: split before the handshake is complete");
  }
  if (m_split) {
    throw std::logic_error("noise: split called twice");
  }
  std::array<Hash, 2> out;
  detail::hkdf(m_ck.view(), {}, out);
  CipherState c1(key_part(out[0]));
  CipherState c2(key_part(out[1]));
  sodium_memzero(out.data(), sizeof out);
  sodium_memzero(m_ck.data(), m_ck.size());
  sodium_memzero(m_e_private.data(), m_e_private.size());
  m_k = CipherState();
  m_split = true;

  TransportState ts;
  if (m_role == Role::initiator) {
    ts.send = std::move(c1);
    ts.receive = std::move(c2);
  } else {
    ts.send = std::move(c2);
    ts.receive = std::move(c1);
  }
  ts.handshake_hash = m_h;
  return ts;
}

// ---- primitives -------------------------------------------------------------------------------

namespace detail {

Hash hmac_sha512(ByteView key, std::initializer_list<ByteView> parts)
{
  crypto_auth_hmacsha512_state state;
  crypto_auth_hmacsha512_init(&state, key.data(), key.size());
  for (ByteView part : parts) {
    if (!part.empty()) {
      crypto_auth_hmacsha512_update(&state, part.data(), part.size());
    }
  }
  Hash mac;
  crypto_auth_hmacsha512_final(&state, mac.data());
  sodium_memzero(&state, sizeof state);
  return mac;
}

void hkdf(ByteView chaining_key, ByteView ikm, std::span<Hash> out)
{
  if (out.size() != 2 && out.size() != 3) {
    throw std::invalid_argument("noise: HKDF yields 2 or 3 outputs");
  }
  Hash temp_key = hmac_sha512(chaining_key, {ikm});
  const std::uint8_t one = 0x01;
  out[0] = hmac_sha512(temp_key, {ByteView(&one, 1)});
  for (std::size_t i = 1; i < out.size(); ++i) {
    const auto counter = static_cast<std::uint8_t>(i + 1);
    out[i] = hmac_sha512(temp_key, {out[i - 1], ByteView(&counter, 1)});
  }
  sodium_memzero(temp_key.data(), temp_key.size());
}

void dh(ByteView private_key32, ByteView public_key32, std::uint8_t* out32)
{
  require_size(private_key32, k_key_size, "X25519 private key");
  require_size(public_key32, k_key_size, "X25519 public key");
  if (crypto_scalarmult(out32, private_key32.data(), public_key32.data()) != 0 ||
      sodium_is_zero(out32, k_key_size)) {
    sodium_memzero(out32, k_key_size);
    throw ProtocolError("bad ephemeral key");
  }
}

} // namespace detail

} // namespace dc::noise
