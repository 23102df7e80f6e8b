#include "common/log.hpp"

#include <cstdarg>
#include <string>
#include <unistd.h>

namespace dc {
namespace {
const char* g_prefix = "";
LogLevel g_level = LogLevel::info;
} // namespace

void set_log_prefix(const char* prefix)
{
  g_prefix = prefix;
}
void set_log_level(LogLevel level)
{
  g_level = level;
}
bool log_enabled(LogLevel level)
{
  return level >= g_level;
}

void log_write(LogLevel level, const char* fmt, ...)
{
  static const char* const k_names[] = {"debug: ", "", "warning: ", "error: "};
  char body[2048];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(body, sizeof body, fmt, args);
  va_end(args);
  // One write per line so lines from concurrent processes sharing stderr never interleave.
  std::string line = std::string(g_prefix) + k_names[static_cast<int>(level)] + body + "\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

} // namespace dc
