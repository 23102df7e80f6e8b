#pragma once
// Colors for node labels: on terminals only, per https://no-color.org and --color.

#include <cstddef>
#include <string>

namespace dc::master {

enum class ColorMode { auto_, always, never };

// Parses "auto", "always" or "never"; throws ConfigError naming --color otherwise.
ColorMode parse_color_mode(const std::string& text);

// Whether text written to `fd` gets colors: `always`/`never` as said; `auto` only when fd is a
// terminal, TERM is not "dumb" and NO_COLOR is unset or empty. Does not throw.
bool use_color(ColorMode mode, int fd);

// `label` wrapped in the ANSI color of node `index` (ten colors, cycling, so neighbours in the
// peers list differ). Throws only std::bad_alloc.
std::string colored_label(const std::string& label, std::size_t index);

} // namespace dc::master
