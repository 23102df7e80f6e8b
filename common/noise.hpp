#pragma once
// Noise_NNpsk0_25519_ChaChaPoly_SHA512 (Noise spec rev. 34, psk0 modifier), sans-I/O: bytes in,
// bytes out. PROTOCOL.md §3 gives the byte-level flow; the cacophony vectors pin it (A14).
//   -> psk, e            (message 1, initiator = master)
//   <- e, ee             (message 2, responder = worker)
// HASH = SHA-512 (HASHLEN 64, cipher keys are the first 32 bytes of HKDF outputs),
// AEAD = ChaCha20-Poly1305 IETF with nonce 00 00 00 00 || LE64(n), DH = X25519.

#include "common/bytes.hpp"
#include "common/secure_buffer.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>

namespace dc::noise {

inline constexpr std::uint64_t k_max_nonce = UINT64_MAX; // Noise reserves 2^64-1
inline constexpr std::size_t k_hash_size = 64;           // SHA-512
inline constexpr std::size_t k_key_size = 32;            // ChaCha20-Poly1305 key, X25519 keys
inline constexpr std::size_t k_tag_size = 16;            // Poly1305 tag
inline constexpr std::size_t k_max_message_size = 65535; // Noise §3: every message fits a u16

using Hash = std::array<std::uint8_t, k_hash_size>;

// One direction's AEAD key and implicit nonce counter (Noise §5.1).
class CipherState {
public:
  CipherState() = default; // no key: encrypt/decrypt pass plaintext through (Noise semantics)
  // Takes a copy of the 32-byte key. Throws std::invalid_argument if key32 is not 32 bytes.
  explicit CipherState(ByteView key32);

  bool has_key() const { return m_key.has_value(); }

  // Encrypts with the implicit nonce and increments it. Throws ProtocolError("nonce exhausted")
  // when n would reach 2^64-1 (so the last nonce used is 2^64-3).
  Bytes encrypt(ByteView ad, ByteView plaintext);
  // Decrypts with the implicit nonce and increments it. Throws ProtocolError("nonce exhausted")
  // like encrypt, and ProtocolError("record authentication failed") on a bad tag or input
  // shorter than a tag (the nonce is not incremented then).
  Bytes decrypt(ByteView ad, ByteView ciphertext);
  // Appends the ciphertext of `plaintext` to `out` (no temporary); `plaintext` must not point
  // into `out`. Throws like encrypt.
  void encrypt_append(ByteView ad, ByteView plaintext, Bytes& out);
  // Writes the ciphertext (plaintext.size() + k_tag_size bytes) to `out`, which must not overlap
  // `plaintext`; returns its size. Throws like encrypt.
  std::size_t encrypt_into(ByteView ad, ByteView plaintext, std::uint8_t* out);

  std::uint64_t nonce() const { return m_nonce; }
  void set_nonce_for_test(std::uint64_t n) { m_nonce = n; }

private:
  void check_nonce() const;

  std::optional<SecureBuffer> m_key;
  std::uint64_t m_nonce = 0;
};

enum class Role { initiator, responder };

// The result of a completed handshake, from this side's point of view.
struct TransportState {
  CipherState send;
  CipherState receive;
  std::array<std::uint8_t, 64> handshake_hash{};
};

// The two-message NNpsk0 handshake. Once any call has thrown ProtocolError the object is dead:
// every later call throws std::logic_error.
class HandshakeState {
public:
  // Initialises the symmetric state and mixes in `prologue`. Throws std::invalid_argument if
  // psk32 is not 32 bytes.
  HandshakeState(Role role, ByteView prologue, ByteView psk32);

  // Test hook (cacophony vectors): use this X25519 private key instead of a random one for the
  // message this side writes next. Throws std::invalid_argument if not 32 bytes.
  void set_ephemeral_for_test(ByteView private_key32);

  // Writes this side's message (initiator: message 1, responder: message 2) carrying `payload`.
  // Throws std::logic_error out of turn, std::invalid_argument if the message would exceed
  // k_max_message_size, and (responder only) ProtocolError("bad ephemeral key") if the
  // initiator's ephemeral key was a low-order point.
  Bytes write_message(ByteView payload);
  // Reads the peer's message and returns its payload. Throws std::logic_error out of turn and
  // ProtocolError on short or oversized input, a failed decrypt or a bad ephemeral key.
  Bytes read_message(ByteView message);

  bool is_complete() const;
  // Derives the transport keys (initiator: send = c1, receive = c2; responder the reverse) and
  // wipes the handshake secrets. Throws std::logic_error unless complete, or if called twice.
  TransportState split();

private:
  void check_turn(bool writing) const;
  void mix_hash(ByteView data);
  void mix_key(ByteView ikm);
  void mix_key_and_hash(ByteView ikm);
  void mix_dh();
  void encrypt_and_hash(ByteView plaintext, Bytes& out);
  Bytes decrypt_and_hash(ByteView ciphertext);
  void write_ephemeral(Bytes& out);
  Bytes write_impl(ByteView payload);
  Bytes read_impl(ByteView message);

  Role m_role;
  int m_message = 0; // messages done: 0, 1, 2
  bool m_failed = false;
  bool m_split = false;
  SecureBuffer m_ck{k_hash_size};
  Hash m_h{};
  CipherState m_k;
  SecureBuffer m_psk{k_key_size};
  SecureBuffer m_e_private{k_key_size};
  std::array<std::uint8_t, k_key_size> m_e_public{};
  bool m_e_injected = false;
  std::array<std::uint8_t, k_key_size> m_re{}; // the peer's ephemeral public key
};

namespace detail {

// HMAC-SHA512 under `key` (any length) of the concatenation of `parts` (RFC 2104 / RFC 4231).
// Does not throw.
Hash hmac_sha512(ByteView key, std::initializer_list<ByteView> parts);

// Noise HKDF (§4.3) with HMAC-SHA512: fills out[0..out.size()) with 2 or 3 64-byte outputs.
// The caller wipes them. Throws std::invalid_argument unless out.size() is 2 or 3.
void hkdf(ByteView chaining_key, ByteView ikm, std::span<Hash> out);

// X25519 of `private_key32` and `public_key32` into out32. Throws ProtocolError("bad ephemeral
// key") if libsodium refuses the point or the shared secret is all zero (Noise §12.1), and
// std::invalid_argument if a key is not 32 bytes.
void dh(ByteView private_key32, ByteView public_key32, std::uint8_t* out32);

} // namespace detail

} // namespace dc::noise
