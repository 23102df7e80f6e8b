#include "master/terminal_style.hpp"

#include "common/error.hpp"

#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace dc::master {

ColorMode parse_color_mode(const std::string& text)
{
  if (text == "auto") {
    return ColorMode::auto_;
  }
  if (text == "always") {
    return ColorMode::always;
  }
  if (text == "never") {
    return ColorMode::never;
  }
  throw ConfigError("--color: expected auto, always or never, not '" + text + "'");
}

bool use_color(ColorMode mode, int fd)
{
  if (mode != ColorMode::auto_) {
    return mode == ColorMode::always;
  }
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  return (no_color == nullptr || *no_color == '\0') &&
         (term == nullptr || std::strcmp(term, "dumb") != 0) && ::isatty(fd) == 1;
}

std::string colored_label(const std::string& label, std::size_t index)
{
  // Red is left out: it reads as an error. Bold variants double the palette.
  static constexpr const char* k_colors[] = {"32",   "33",   "34",   "35",   "36",
                                             "1;32", "1;33", "1;34", "1;35", "1;36"};
  constexpr std::size_t n = sizeof k_colors / sizeof k_colors[0];
  return std::string("\x1b[") + k_colors[index % n] + "m" + label + "\x1b[0m";
}

} // namespace dc::master
