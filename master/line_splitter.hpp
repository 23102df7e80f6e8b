#pragma once
// LineSplitter: cuts one output stream, arriving in chunks cut anywhere, into whole lines. The
// unterminated tail is held until its newline comes; a tail longer than `max_line` is passed on
// early as a split line, so a job that never prints '\n' cannot grow our memory.

#include <cstddef>
#include <string>
#include <string_view>

namespace dc::master {

enum class LineEnd { newline, split, none }; // none: the stream ended without a newline

class LineSplitter {
public:
  explicit LineSplitter(std::size_t max_line = 256 << 10) : m_max_line(max_line) {}

  // Calls on_line(std::string_view text, LineEnd end) for every line completed by `data`, text
  // without its '\n'. Throws what on_line throws, and std::bad_alloc.
  template <typename OnLine>
  void feed(std::string_view data, OnLine&& on_line)
  {
    while (!data.empty()) {
      const auto newline = data.find('\n');
      if (newline == std::string_view::npos) {
        m_held.append(data);
        if (m_held.size() > m_max_line) {
          on_line(std::string_view(m_held), LineEnd::split);
          m_held.clear();
        }
        return;
      }
      if (m_held.empty()) {
        on_line(data.substr(0, newline), LineEnd::newline);
      } else {
        m_held.append(data.substr(0, newline));
        on_line(std::string_view(m_held), LineEnd::newline);
        m_held.clear();
      }
      data.remove_prefix(newline + 1);
    }
  }

  // Passes on the held tail, if any, as LineEnd::none; throws what on_line throws.
  template <typename OnLine>
  void finish(OnLine&& on_line)
  {
    if (!m_held.empty()) {
      on_line(std::string_view(m_held), LineEnd::none);
      m_held.clear();
    }
  }

private:
  std::size_t m_max_line;
  std::string m_held;
};

} // namespace dc::master
