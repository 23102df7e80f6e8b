#include "common/bytes.hpp"

namespace dc {

std::string to_hex(ByteView b)
{
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(b.size() * 2);
  for (std::uint8_t byte : b) {
    out.push_back(k_digits[byte >> 4]);
    out.push_back(k_digits[byte & 0xf]);
  }
  return out;
}

std::string escape_for_log(std::string_view s)
{
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(k_digits[c >> 4]);
      out.push_back(k_digits[c & 0xf]);
    }
  }
  return out;
}

} // namespace dc
