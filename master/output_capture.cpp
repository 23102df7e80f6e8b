#include "master/output_capture.hpp"

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace dc::master {
namespace {

[[noreturn]] void fail(const char* what)
{
  throw std::system_error(errno, std::generic_category(), what);
}

} // namespace

OutputCapture::OutputCapture()
{
  crypto_generichash_init(&m_hash, nullptr, 0, 32);
}

OutputCapture::~OutputCapture()
{
  clear();
}

OutputCapture::OutputCapture(OutputCapture&& other) noexcept
    : m_memory(std::move(other.m_memory)), m_spool(std::exchange(other.m_spool, nullptr)),
      m_size(std::exchange(other.m_size, 0)), m_last(other.m_last), m_hash(other.m_hash)
{
}

void OutputCapture::append(std::string_view bytes)
{
  if (bytes.empty()) {
    return;
  }
  crypto_generichash_update(&m_hash, reinterpret_cast<const unsigned char*>(bytes.data()),
                            bytes.size());
  m_size += bytes.size();
  m_last = bytes.back();
  if (!m_spool && m_memory.size() + bytes.size() <= k_capture_memory) {
    m_memory.append(bytes);
    return;
  }
  if (!m_spool) {
    m_spool = std::tmpfile(); // unlinked at once: nothing is left behind, even on a crash
    if (!m_spool) {
      fail("cannot create a temporary file for node output");
    }
    if (std::fwrite(m_memory.data(), 1, m_memory.size(), m_spool) != m_memory.size()) {
      fail("cannot write node output to a temporary file");
    }
    std::string().swap(m_memory);
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), m_spool) != bytes.size()) {
    fail("cannot write node output to a temporary file");
  }
}

std::array<std::uint8_t, 32> OutputCapture::digest()
{
  std::array<std::uint8_t, 32> out{};
  crypto_generichash_final(&m_hash, out.data(), out.size());
  return out;
}

std::size_t OutputCapture::read(std::uint64_t offset, char* out, std::size_t size) const
{
  if (offset >= m_size || size == 0) {
    return 0;
  }
  size = std::size_t(std::min<std::uint64_t>(size, m_size - offset));
  if (!m_spool) {
    m_memory.copy(out, size, std::size_t(offset));
    return size;
  }
  if (std::fflush(m_spool) != 0) {
    fail("cannot read node output back");
  }
  // pread leaves the FILE's own position alone, so appends and reads do not interfere.
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(::fileno(m_spool), out + done, size - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      fail("cannot read node output back");
    }
    done += std::size_t(n);
  }
  return done;
}

void OutputCapture::clear()
{
  std::string().swap(m_memory);
  if (m_spool) {
    std::fclose(m_spool);
    m_spool = nullptr;
  }
  m_size = 0;
}

} // namespace dc::master
