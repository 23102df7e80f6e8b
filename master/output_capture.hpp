#pragma once
// OutputCapture: one node's stdout kept until the node ends (--blocks, --gather). Small outputs
// stay in memory; beyond k_capture_memory the bytes spool to an unlinked temporary file, so 30
// nodes printing gigabytes cost disk, not RAM. Also keeps a running BLAKE2b digest, so --gather
// compares nodes by 32 bytes instead of by content.

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace dc::master {

// Bytes per node held in memory before spooling: a screenful of lines many times over.
inline constexpr std::size_t k_capture_memory = 1 << 20;

class OutputCapture {
public:
  OutputCapture();
  ~OutputCapture();
  OutputCapture(OutputCapture&& other) noexcept;
  OutputCapture& operator=(OutputCapture&&) = delete;
  OutputCapture(const OutputCapture&) = delete;
  OutputCapture& operator=(const OutputCapture&) = delete;

  // Appends bytes; throws std::system_error if the spool file cannot be created or written.
  void append(std::string_view bytes);
  std::uint64_t size() const { return m_size; }
  // Whether the last byte appended was '\n' (or nothing was appended).
  bool ends_with_newline() const { return m_last == '\n' || m_size == 0; }
  // The BLAKE2b-256 digest of everything appended; call once, after the last append.
  std::array<std::uint8_t, 32> digest();
  // Copies up to `size` bytes from `offset` into `out` and returns how many (0 at the end);
  // throws std::system_error if the spool file cannot be read back.
  std::size_t read(std::uint64_t offset, char* out, std::size_t size) const;
  // Frees memory and the spool file.
  void clear();

private:
  std::string m_memory;
  std::FILE* m_spool = nullptr;
  std::uint64_t m_size = 0;
  char m_last = '\0';
  crypto_generichash_state m_hash{};
};

} // namespace dc::master
