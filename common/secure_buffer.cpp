#include "common/secure_buffer.hpp"

#include <sodium.h>

#include <mutex>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

namespace dc {
namespace {

// Secrets of up to k_secret_slot_size bytes (keys, chaining keys, hashes: all but a key file's
// text) live in fixed slots carved out of arenas. Each arena is one sodium_malloc'd block, so
// it has guard pages around it, is mlocked (kept out of swap) and left out of core dumps. A
// session holds ~10 secrets at once; with a sodium_malloc each (an mmap, three mprotects and an
// mlock, and at release a munmap whose TLB shootdown interrupts every core) a master running
// `true` on 64 nodes spent ~40% of its CPU in those calls. One guarded, locked region carved
// into pieces is also how OpenSSL's secure heap is laid out. Arenas are kept for the process's
// life (peak use: 64 bytes per live secret); a released slot is zeroed before it is reused.
class SlotArenas {
public:
  std::uint8_t* take()
  {
    const std::lock_guard lock(m_mutex);
    if (m_free.empty()) {
      auto* arena = static_cast<std::uint8_t*>(sodium_malloc(k_arena_size));
      if (arena == nullptr) {
        return nullptr;
      }
      m_free.reserve(m_free.size() + k_slots_per_arena);
      for (std::size_t i = k_slots_per_arena; i-- > 0;) {
        m_free.push_back(arena + i * k_secret_slot_size); // lowest address taken first
      }
    }
    std::uint8_t* p = m_free.back();
    m_free.pop_back();
    return p;
  }
  // Takes back a slot from take(), already zeroed.
  void give(std::uint8_t* p)
  {
    const std::lock_guard lock(m_mutex);
    m_free.push_back(p);
  }

private:
  static constexpr std::size_t k_slots_per_arena = 256;
  static constexpr std::size_t k_arena_size = k_slots_per_arena * k_secret_slot_size; // 16 KiB
  std::mutex m_mutex;
  std::vector<std::uint8_t*> m_free;
};

SlotArenas& slot_arenas()
{
  static auto* a = new SlotArenas; // never destroyed: buffers may be released during teardown
  return *a;
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
  // sodium_malloc also mlocks (best effort: RLIMIT_MEMLOCK may be small).
  m_data =
      n <= k_secret_slot_size ? slot_arenas().take() : static_cast<std::uint8_t*>(sodium_malloc(n));
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
    if (m_size <= k_secret_slot_size) {
      sodium_memzero(m_data, k_secret_slot_size); // the whole slot: no stale bytes past m_size
      slot_arenas().give(m_data);
    } else {
      sodium_free(m_data); // zeroes, unlocks and unmaps
    }
    m_data = nullptr;
    m_size = 0;
  }
}

} // namespace dc
