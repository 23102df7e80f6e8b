#include "common/secure_buffer.hpp"

#include <sodium.h>

#include <new>
#include <stdexcept>
#include <utility>

namespace dc {

void init_sodium()
{
  // sodium_init() is itself idempotent and thread-safe; the static only saves the lock.
  static const bool k_ok = sodium_init() >= 0;
  if (!k_ok) {
    throw std::runtime_error("libsodium initialisation failed");
  }
}

SecureBuffer::SecureBuffer(std::size_t n)
{
  init_sodium(); // sodium_malloc needs the page size that sodium_init determines
  if (n == 0) {
    return;
  }
  m_data = static_cast<std::uint8_t*>(sodium_malloc(n));
  if (m_data == nullptr) {
    throw std::bad_alloc();
  }
  m_size = n;
  (void)sodium_mlock(m_data, m_size); // best effort: RLIMIT_MEMLOCK may be small
}

SecureBuffer::~SecureBuffer()
{
  release();
}

SecureBuffer::SecureBuffer(SecureBuffer&& other) noexcept
    : m_data(std::exchange(other.m_data, nullptr)), m_size(std::exchange(other.m_size, 0))
{
}

SecureBuffer& SecureBuffer::operator=(SecureBuffer&& other) noexcept
{
  if (this != &other) {
    release();
    m_data = std::exchange(other.m_data, nullptr);
    m_size = std::exchange(other.m_size, 0);
  }
  return *this;
}

void SecureBuffer::release() noexcept
{
  if (m_data != nullptr) {
    (void)sodium_munlock(m_data, m_size); // zeroes, then unlocks
    sodium_free(m_data);                  // zeroes again and unmaps
    m_data = nullptr;
    m_size = 0;
  }
}

} // namespace dc
