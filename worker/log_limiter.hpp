#pragma once
// Rate limit for log lines that unauthenticated peers can trigger at will.

#include "common/async.hpp"
#include "common/log.hpp"

#include <cstddef>

namespace dc::worker {

// Logs at most k_burst pre-authentication events per window; counts the rest.
class LogLimiter {
public:
  bool allow()
  {
    const auto now = Clock::now();
    if (now - m_window_start > 10s) {
      if (m_suppressed > 0) {
        log_warn("%zu more pre-authentication events not logged", m_suppressed);
      }
      m_window_start = now;
      m_count = 0;
      m_suppressed = 0;
    }
    if (m_count < k_burst) {
      ++m_count;
      return true;
    }
    ++m_suppressed;
    return false;
  }

private:
  static constexpr std::size_t k_burst = 20;
  Clock::time_point m_window_start{};
  std::size_t m_count = 0;
  std::size_t m_suppressed = 0;
};

} // namespace dc::worker
