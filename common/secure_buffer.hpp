#pragma once
// Memory for secrets: sodium_malloc'd (guard pages, mlock'd: kept out of swap, not in core
// dumps) and zeroed when released. Small secrets share guarded arenas (see secure_buffer.cpp).

#include "common/bytes.hpp"

#include <cstddef>
#include <cstdint>

namespace dc {

// Calls sodium_init() once per process; safe to call from anywhere, any number of times. Throws
// std::runtime_error if libsodium cannot initialise (no usable randomness source).
void init_sodium();

// Secrets up to this size take a slot of a shared arena; larger ones a sodium_malloc of their own.
inline constexpr std::size_t k_secret_slot_size = 64;

// Move-only owner of `size()` bytes of secret memory. A moved-from or zero-sized buffer holds
// no memory (data() is nullptr).
class SecureBuffer {
public:
  // Allocates `n` bytes (contents unspecified). Throws std::bad_alloc if sodium_malloc fails and
  // std::runtime_error if libsodium cannot initialise.
  explicit SecureBuffer(std::size_t n);
  ~SecureBuffer();

  SecureBuffer(SecureBuffer&& other) noexcept;
  SecureBuffer& operator=(SecureBuffer&& other) noexcept;
  SecureBuffer(const SecureBuffer&) = delete;
  SecureBuffer& operator=(const SecureBuffer&) = delete;

  std::uint8_t* data() { return m_data; }
  const std::uint8_t* data() const { return m_data; }
  std::size_t size() const { return m_size; }
  ByteView view() const { return {m_data, m_size}; }

private:
  void release() noexcept;

  std::uint8_t* m_data = nullptr;
  std::size_t m_size = 0;
};

} // namespace dc
