#pragma once
// Byte buffers and big-endian integer codecs shared by every wire format.

#include "common/error.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace dc {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// An allocator whose value-less construct leaves the bytes as they are: resize() of a buffer
// that is always written before it is read need not zero-fill (that showed as ~9% of a master's
// CPU in the send queue).
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept
  {
  }
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>)
  {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args)
  {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using RawBuffer = std::vector<std::uint8_t, DefaultInitAllocator<std::uint8_t>>;

inline ByteView as_bytes(std::string_view s)
{
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

inline std::string_view as_chars(ByteView b)
{
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Appends `value` to `out` in big-endian order.
template <typename T>
void put_be(Bytes& out, T value)
{
  static_assert(std::is_integral_v<T>);
  using U = std::make_unsigned_t<T>;
  const auto u = static_cast<U>(value);
  for (int shift = int(sizeof(T) * 8) - 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>(u >> shift));
  }
}

inline void put_bytes(Bytes& out, ByteView b)
{
  out.insert(out.end(), b.begin(), b.end());
}

// Reads big-endian integers and byte runs from a buffer; every read is bounds-checked and
// throws ProtocolError when the buffer is too short.
class ByteReader {
public:
  explicit ByteReader(ByteView data) : m_data(data) {}

  template <typename T>
  T get_be()
  {
    static_assert(std::is_integral_v<T>);
    using U = std::make_unsigned_t<T>;
    const ByteView b = take(sizeof(T));
    U u = 0;
    for (std::uint8_t byte : b) {
      u = static_cast<U>((u << 8) | byte);
    }
    return static_cast<T>(u);
  }

  // Returns the next `n` bytes as a view into the buffer. Throws ProtocolError if fewer remain.
  ByteView take(std::size_t n)
  {
    if (n > remaining()) {
      throw ProtocolError("truncated input: need " + std::to_string(n) + " bytes, have " +
                          std::to_string(remaining()));
    }
    const ByteView out = m_data.subspan(m_pos, n);
    m_pos += n;
    return out;
  }

  std::size_t remaining() const { return m_data.size() - m_pos; }
  std::size_t position() const { return m_pos; }
  bool empty() const { return remaining() == 0; }
  ByteView rest() const { return m_data.subspan(m_pos); }

private:
  ByteView m_data;
  std::size_t m_pos = 0;
};

// Renders bytes as lowercase hex.
std::string to_hex(ByteView b);

// Renders attacker-controlled text safely for logs: printable ASCII kept, everything else \xNN.
std::string escape_for_log(std::string_view s);

} // namespace dc
