#include "common/size_option.hpp"

#include "common/error.hpp"

#include <cstdint>

namespace dc {

std::uint64_t parse_size(const std::string& text, const char* option)
{
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  const std::string suffix = text.substr(digits);
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else if (suffix == "K" || suffix == "k" || suffix == "KiB") {
    shift = 10;
  } else if (suffix == "M" || suffix == "MiB") {
    shift = 20;
  } else if (suffix == "G" || suffix == "GiB") {
    shift = 30;
  } else if (suffix == "T" || suffix == "TiB") {
    shift = 40;
  } else {
    digits = 0; // refused below
  }
  if (digits == 0 || digits > 15) {
    throw ConfigError(std::string("--") + option + ": expected a size such as 4G, 512M or 1000000");
  }
  const std::uint64_t value = std::stoull(text.substr(0, digits));
  if (value > (UINT64_MAX >> shift)) {
    throw ConfigError(std::string("--") + option + ": size too large");
  }
  return value << shift;
}

} // namespace dc
