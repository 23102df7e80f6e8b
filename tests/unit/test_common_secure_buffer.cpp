// SecureBuffer: ownership of sodium_malloc'd secret memory.

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
