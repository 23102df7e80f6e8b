#pragma once
// Minimal printf-style logging to stderr with a program prefix ("worker: ", "master: ").

#include <cstdio>

namespace dc {

enum class LogLevel { debug, info, warn, error };

void set_log_prefix(const char* prefix);
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);

void log_write(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define DC_LOG(level, ...)                                                                         \
  do {                                                                                             \
    if (::dc::log_enabled(level))                                                                  \
      ::dc::log_write(level, __VA_ARGS__);                                                         \
  } while (0)
#define log_debug(...) DC_LOG(::dc::LogLevel::debug, __VA_ARGS__)
#define log_info(...) DC_LOG(::dc::LogLevel::info, __VA_ARGS__)
#define log_warn(...) DC_LOG(::dc::LogLevel::warn, __VA_ARGS__)
#define log_error(...) DC_LOG(::dc::LogLevel::error, __VA_ARGS__)

} // namespace dc
