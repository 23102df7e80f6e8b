#pragma once
// Sizes on command lines (worker --cache-size, master --fetch-limit).

#include <cstdint>
#include <string>

namespace dc {

// Parses a size such as "4G", "512M", "100k", "12345" (bytes; K/M/G/T are powers of 1024).
// Throws ConfigError naming `option` on anything else.
std::uint64_t parse_size(const std::string& text, const char* option);

} // namespace dc
