#include "common/ignore_rules.hpp"

#include "common/error.hpp"

namespace dc {
namespace {

// Matches one character class at the start of `pattern` (which starts with '[') against `c`.
// Sets `length` to the class's length; returns false with length 0 if the class is unclosed
// (the '[' is then a literal).
bool match_class(std::string_view pattern, char c, std::size_t& length)
{
  std::size_t i = 1;
  bool negate = false;
  if (i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^')) {
    negate = true;
    ++i;
  }
  bool matched = false;
  bool first = true;
  while (i < pattern.size() && (pattern[i] != ']' || first)) {
    first = false;
    char lo = pattern[i];
    if (lo == '\\' && i + 1 < pattern.size()) {
      lo = pattern[++i];
    }
    char hi = lo;
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      hi = pattern[i + 2];
      i += 2;
    }
    if (c >= lo && c <= hi) {
      matched = true;
    }
    ++i;
  }
  if (i >= pattern.size()) {
    length = 0;
    return false;
  }
  length = i + 1;
  return matched != negate && c != '/';
}

} // namespace

bool glob_match(std::string_view p, std::string_view t)
{
  while (!p.empty()) {
    if (p.substr(0, 2) == "**") {
      std::string_view rest = p.substr(2);
      if (rest.empty()) {
        return true; // everything, '/' included
      }
      if (rest[0] == '/') {
        rest.remove_prefix(1); // "**/": zero or more whole directories
        if (glob_match(rest, t)) {
          return true;
        }
        for (std::size_t i = 0; i < t.size(); ++i) {
          if (t[i] == '/' && glob_match(rest, t.substr(i + 1))) {
            return true;
          }
        }
        return false;
      }
      for (std::size_t i = 0; i <= t.size(); ++i) { // "**x": anything, then x
        if (glob_match(rest, t.substr(i))) {
          return true;
        }
      }
      return false;
    }
    const char c = p[0];
    if (c == '*') {
      const std::string_view rest = p.substr(1);
      for (std::size_t i = 0; i <= t.size(); ++i) {
        if (glob_match(rest, t.substr(i))) {
          return true;
        }
        if (i < t.size() && t[i] == '/') {
          return false;
        }
      }
      return false;
    }
    if (t.empty()) {
      return false;
    }
    if (c == '?') {
      if (t[0] == '/') {
        return false;
      }
    } else if (c == '[') {
      std::size_t length = 0;
      const bool ok = match_class(p, t[0], length);
      if (length > 0) {
        if (!ok) {
          return false;
        }
        p.remove_prefix(length);
        t.remove_prefix(1);
        continue;
      }
      if (t[0] != '[') { // unclosed: a literal '['
        return false;
      }
    } else if (c == '\\' && p.size() > 1) {
      if (t[0] != p[1]) {
        return false;
      }
      p.remove_prefix(2);
      t.remove_prefix(1);
      continue;
    } else if (c != t[0]) {
      return false;
    }
    p.remove_prefix(1);
    t.remove_prefix(1);
  }
  return t.empty();
}

bool IgnoreRules::parse(std::string_view line, const std::string& dir, Rule& out)
{
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  while (!line.empty() && line.back() == ' ' &&
         !(line.size() >= 2 && line[line.size() - 2] == '\\')) {
    line.remove_suffix(1);
  }
  if (line.empty() || line[0] == '#') {
    return false;
  }
  Rule r;
  r.dir = dir;
  if (line[0] == '!') {
    r.negated = true;
    line.remove_prefix(1);
  }
  if (!line.empty() && line.back() == '/') {
    r.dir_only = true;
    while (!line.empty() && line.back() == '/') {
      line.remove_suffix(1);
    }
  }
  if (!line.empty() && line[0] == '/') {
    r.anchored = true;
    line.remove_prefix(1);
  }
  if (line.find('/') != std::string_view::npos) {
    r.anchored = true;
  }
  if (line.empty()) {
    return false; // "/", "!" or "!/": nothing to match
  }
  r.glob = std::string(line);
  out = std::move(r);
  return true;
}

void IgnoreRules::add_file_line(std::string_view line, const std::string& dir)
{
  Rule r;
  if (parse(line, dir, r)) {
    m_file_rules.push_back(std::move(r));
  }
}

void IgnoreRules::add_option_pattern(std::string_view pattern)
{
  Rule r;
  if (!parse(pattern, "", r)) {
    throw ConfigError("--ignore: empty pattern");
  }
  m_option_rules.push_back(std::move(r));
}

bool IgnoreRules::matches(const Rule& rule, std::string_view path, bool is_dir)
{
  if (rule.dir_only && !is_dir) {
    return false;
  }
  if (!rule.dir.empty()) {
    if (path.size() <= rule.dir.size() || path.substr(0, rule.dir.size()) != rule.dir ||
        path[rule.dir.size()] != '/') {
      return false;
    }
    path.remove_prefix(rule.dir.size() + 1);
  }
  if (!rule.anchored) {
    const auto slash = path.rfind('/');
    if (slash != std::string_view::npos) {
      path.remove_prefix(slash + 1);
    }
  }
  return glob_match(rule.glob, path);
}

bool IgnoreRules::ignored(std::string_view path, bool is_dir) const
{
  bool out = false;
  for (const auto* rules : {&m_file_rules, &m_option_rules}) {
    for (const Rule& r : *rules) {
      if (r.negated ? out : !out) { // only a rule that would change the answer needs a match
        if (matches(r, path, is_dir)) {
          out = !r.negated;
        }
      }
    }
  }
  return out;
}

} // namespace dc
