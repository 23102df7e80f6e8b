#include "common/fetch_pattern.hpp"

#include "common/bytes.hpp"
#include "common/error.hpp"
#include "common/manifest.hpp"

#include <fnmatch.h>

namespace dc {

std::vector<std::string> split_fetch_pattern(std::string_view pattern)
{
  const auto bad = [&](const char* why) {
    return ConfigError("--fetch '" + escape_for_log(pattern) + "': " + why);
  };
  if (pattern.empty()) {
    throw bad("empty path");
  }
  if (pattern.front() == '/') {
    throw bad("must be relative to the job dir");
  }
  if (pattern.size() > k_max_path_bytes) {
    throw bad("path too long");
  }
  if (pattern.find('\0') != std::string_view::npos) {
    throw bad("NUL byte in the path");
  }
  std::vector<std::string> components;
  std::size_t at = 0;
  while (at <= pattern.size()) {
    const std::size_t slash = std::min(pattern.find('/', at), pattern.size());
    const std::string_view c = pattern.substr(at, slash - at);
    if (c == "..") {
      throw bad("'..' would leave the job dir");
    }
    if (!c.empty() && c != ".") {
      components.emplace_back(c);
    }
    at = slash + 1;
  }
  return components;
}

bool has_glob(std::string_view component)
{
  return component.find_first_of("*?[") != std::string_view::npos;
}

bool component_matches(const std::string& component, const std::string& name)
{
  return ::fnmatch(component.c_str(), name.c_str(), FNM_PERIOD) == 0;
}

} // namespace dc
