#include "common/error.hpp"
#include "common/fetch_pattern.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using dc::split_fetch_pattern;
using Parts = std::vector<std::string>;

TEST_CASE("fetch pattern: components are split at '/', with '.' and empty ones dropped")
{
  CHECK(split_fetch_pattern("out.txt") == Parts{"out.txt"});
  CHECK(split_fetch_pattern("./out//run-1/") == Parts{"out", "run-1"});
  CHECK(split_fetch_pattern("logs/*.log") == Parts{"logs", "*.log"});
  CHECK(split_fetch_pattern(".").empty()); // the whole job dir
  CHECK(split_fetch_pattern("a/./b") == Parts{"a", "b"});
  CHECK(split_fetch_pattern("..x/x..") == Parts{"..x", "x.."}); // only ".." itself leaves
}

TEST_CASE("fetch pattern: empty, absolute, '..', NUL and over-long paths are refused by name")
{
  const auto refusal = [](const std::string& p) {
    try {
      split_fetch_pattern(p);
    } catch (const dc::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refusal("") == "--fetch '': empty path");
  CHECK(refusal("/etc/passwd") == "--fetch '/etc/passwd': must be relative to the job dir");
  CHECK(refusal("..") == "--fetch '..': '..' would leave the job dir");
  CHECK(refusal("out/../../x") == "--fetch 'out/../../x': '..' would leave the job dir");
  CHECK(refusal(std::string("a\0b", 3)).find("NUL byte") != std::string::npos);
  CHECK(refusal(std::string(5000, 'a')).find("path too long") != std::string::npos);
}

TEST_CASE("fetch pattern: globs match one directory's names, and '*' skips hidden names")
{
  CHECK(dc::has_glob("*.csv"));
  CHECK(dc::has_glob("run-?"));
  CHECK(dc::has_glob("[ab].txt"));
  CHECK_FALSE(dc::has_glob("plain.txt"));
  CHECK(dc::component_matches("*.csv", "a.csv"));
  CHECK_FALSE(dc::component_matches("*.csv", "a.csv.bak"));
  CHECK_FALSE(dc::component_matches("*", ".hidden"));
  CHECK(dc::component_matches(".*", ".hidden"));
  CHECK(dc::component_matches("run-[0-9]", "run-7"));
  CHECK_FALSE(dc::component_matches("run-[0-9]", "run-x"));
}
