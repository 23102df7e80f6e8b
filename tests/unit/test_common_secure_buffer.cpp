// SecureBuffer: ownership of sodium_malloc'd secret memory, wiped before it is reused.

#include "common/secure_buffer.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

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

TEST_CASE("secure_buffer: a released slot is reused only after its secret was wiped")
{
  const std::uint8_t* where = nullptr;
  {
    dc::SecureBuffer secret(48);
    std::memset(secret.data(), 0xab, secret.size());
    where = secret.data();
  }
  dc::SecureBuffer next(dc::k_secret_slot_size); // one thread: the slot just released comes back
  REQUIRE(next.data() == where);
  for (std::size_t i = 0; i < next.size(); ++i) {
    CHECK(next.data()[i] == 0);
  }
}

TEST_CASE("secure_buffer: many live secrets get distinct, non-overlapping memory")
{
  // More than one arena's worth, all alive at once (a master's sessions in flight).
  std::vector<dc::SecureBuffer> live;
  for (std::size_t i = 0; i < 1000; ++i) {
    live.emplace_back(i % 2 == 0 ? 32 : dc::k_secret_slot_size);
    std::memset(live.back().data(), int(i % 251), live.back().size());
  }
  live.emplace_back(dc::k_secret_slot_size + 1); // larger: a sodium_malloc of its own
  std::memset(live.back().data(), 0xee, live.back().size());
  std::vector<std::pair<const std::uint8_t*, std::size_t>> ranges;
  for (std::size_t i = 0; i < live.size(); ++i) {
    const auto& b = live[i];
    const int fill = i < 1000 ? int(i % 251) : 0xee;
    for (std::size_t j = 0; j < b.size(); ++j) {
      REQUIRE(b.data()[j] == fill); // nobody else wrote into this secret
    }
    ranges.emplace_back(b.data(), b.size());
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    CHECK(ranges[i - 1].first + ranges[i - 1].second <= ranges[i].first);
  }
}
