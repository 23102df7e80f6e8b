// SecureBuffer: ownership of sodium_malloc'd secret memory, wiped before it is reused.

#include "common/secure_buffer.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <utility>

TEST_CASE("secure_buffer: holds n writable bytes and moves ownership")
{
  dc::SecureBuffer a(32);
  REQUIRE(a.data() != nullptr);
  CHECK(a.size() == 32);
  std::memset(a.data(), 0x5a, a.size());
  CHECK(a.view().size() == 32);
  CHECK(a.view()[31] == 0x5a);

  const std::uint8_t* where = a.data();
  dc::SecureBuffer b(std::move(a));
  CHECK(b.data() == where);
  CHECK(b.size() == 32);
  CHECK(a.data() == nullptr); // NOLINT(bugprone-use-after-move): moved-from state is specified
  CHECK(a.size() == 0);

  dc::SecureBuffer c(8);
  c = std::move(b); // frees c's old memory, takes b's
  CHECK(c.data() == where);
  CHECK(c.view()[0] == 0x5a);
  CHECK(b.data() == nullptr); // NOLINT(bugprone-use-after-move)

  dc::SecureBuffer empty(0);
  CHECK(empty.data() == nullptr);
  CHECK(empty.view().empty());
  CHECK_NOTHROW(dc::init_sodium());
}

TEST_CASE("secure_buffer: a released buffer is reused only after its secret was wiped")
{
  const std::uint8_t* where = nullptr;
  {
    dc::SecureBuffer secret(48);
    std::memset(secret.data(), 0xab, secret.size());
    where = secret.data();
  }
  dc::SecureBuffer next(48); // one thread: the pool hands back the buffer just released
  REQUIRE(next.data() == where);
  for (std::size_t i = 0; i < next.size(); ++i) {
    CHECK(next.data()[i] == 0);
  }
  next = dc::SecureBuffer(0);      // released to the pool again
  dc::SecureBuffer other_size(47); // never a pooled buffer of another size
  CHECK(other_size.data() != where);
}
