#include "common/blob_copy.hpp"

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <system_error>
#include <unistd.h>

namespace dc {
namespace {

constexpr std::size_t k_chunk = std::size_t{1} << 20; // bytes per read while copying and hashing

} // namespace

bool copy_verified(int in, int out, const Hash& hash, std::uint64_t size, Bytes& buffer)
{
  buffer.resize(k_chunk);
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, k_hash_size);
  const bool cloned = size > 0 && ::ioctl(out, FICLONE, in) == 0;
  const int source = cloned ? out : in;
  std::uint64_t done = 0;
  for (;;) {
    // One byte more than expected would be read from a longer file: that is a mismatch too.
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(k_chunk, size - done + 1));
    const ssize_t n = ::pread(source, buffer.data(), want, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (cloned) {
        throw WriteFailure{errno};
      }
      return false;
    }
    if (n == 0) {
      break;
    }
    done += static_cast<std::uint64_t>(n);
    if (done > size) {
      return false;
    }
    crypto_generichash_update(&state, buffer.data(), static_cast<std::size_t>(n));
    for (std::size_t at = 0; !cloned && at < static_cast<std::size_t>(n);) {
      const ssize_t w = ::write(out, buffer.data() + at, static_cast<std::size_t>(n) - at);
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        throw WriteFailure{errno};
      }
      at += static_cast<std::size_t>(w);
    }
  }
  if (done != size) {
    return false;
  }
  Hash got{};
  crypto_generichash_final(&state, got.data(), got.size());
  return got == hash;
}

bool fill_verified(int in, int out, const Hash& hash, std::uint64_t size, Bytes& buffer)
{
  bool ok = false;
  try {
    ok = copy_verified(in, out, hash, size, buffer);
  } catch (const WriteFailure& f) {
    throw std::system_error(f.err, std::generic_category(), "cannot write");
  }
  if (!ok) {
    reset_file(out);
  }
  return ok;
}

void reset_file(int fd)
{
  if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
    throw std::system_error(errno, std::generic_category(), "cannot reset a file");
  }
}

} // namespace dc
