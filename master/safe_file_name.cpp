#include "master/safe_file_name.hpp"

#include <cstdio>

namespace dc::master {

std::string safe_file_name(const std::string& label)
{
  std::string out;
  out.reserve(label.size());
  for (std::size_t i = 0; i < label.size(); ++i) {
    const auto c = static_cast<unsigned char>(label[i]);
    if (c == '/' || c == '%' || c < 0x20 || c == 0x7f || (i == 0 && c == '.')) {
      char escaped[4];
      std::snprintf(escaped, sizeof escaped, "%%%02X", c);
      out += escaped;
    } else {
      out += char(c);
    }
  }
  return out.empty() ? "%" : out; // an empty label cannot exist, but never return ""
}

} // namespace dc::master
