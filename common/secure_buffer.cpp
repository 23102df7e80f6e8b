#include "common/secure_buffer.hpp"

#include <sodium.h>

#include <mutex>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

namespace dc {
namespace {

// Released buffers, zeroed, kept for reuse. Each sodium_malloc costs an mmap, three mprotects
// and an mlock, and each sodium_free a munmap whose TLB shootdown interrupts every core: with
// ~10 secrets per session that was a large share of a short session's CPU on both sides. A
// pooled buffer keeps its guard pages and its lock; only its contents are gone.
class Pool {
public:
  std::uint8_t* take(std::size_t n)
  {
    const std::lock_guard lock(m_mutex);
    for (auto it = m_free.begin(); it != m_free.end(); ++it) {
      if (it->second == n) {
        std::uint8_t* p = it->first;
        *it = m_free.back();
        m_free.pop_back();
        return p;
      }
    }
    return nullptr;
  }
  // Takes a zeroed buffer; false if the pool is full (the caller frees it).
  bool give(std::uint8_t* p, std::size_t n)
  {
    const std::lock_guard lock(m_mutex);
    if (m_free.size() >= k_max_buffers || n > k_max_size) {
      return false;
    }
    m_free.emplace_back(p, n);
    return true;
  }

private:
  static constexpr std::size_t k_max_buffers = 64;
  static constexpr std::size_t k_max_size = 4096;
  std::mutex m_mutex;
  std::vector<std::pair<std::uint8_t*, std::size_t>> m_free;
};

Pool& pool()
{
  static auto* p = new Pool; // never destroyed: buffers may be released during static teardown
  return *p;
}

} // namespace

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
  m_data = pool().take(n);
  if (m_data == nullptr) {
    // sodium_malloc also mlocks (best effort: RLIMIT_MEMLOCK may be small).
    m_data = static_cast<std::uint8_t*>(sodium_malloc(n));
  }
  if (m_data == nullptr) {
    throw std::bad_alloc();
  }
  m_size = n;
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
    sodium_memzero(m_data, m_size);
    if (!pool().give(m_data, m_size)) {
      sodium_free(m_data); // zeroes again, unlocks and unmaps
    }
    m_data = nullptr;
    m_size = 0;
  }
}

} // namespace dc
