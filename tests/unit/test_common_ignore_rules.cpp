#include "common/error.hpp"
#include "common/ignore_rules.hpp"

#include <doctest/doctest.h>

using dc::glob_match;
using dc::IgnoreRules;

TEST_CASE("ignore rules: glob_match stars stop at slashes and double stars cross them")
{
  CHECK(glob_match("*.o", "main.o"));
  CHECK_FALSE(glob_match("*.o", "main.c"));
  CHECK_FALSE(glob_match("*.o", "dir/main.o"));
  CHECK(glob_match("a?c", "abc"));
  CHECK_FALSE(glob_match("a?c", "a/c"));
  CHECK(glob_match("[ab]x", "bx"));
  CHECK(glob_match("[a-c]x", "cx"));
  CHECK_FALSE(glob_match("[!a-c]x", "cx"));
  CHECK(glob_match("[^a-c]x", "dx"));
  CHECK(glob_match("[]]", "]"));
  CHECK(glob_match("[x", "[x")); // unclosed: literal
  CHECK(glob_match("\\*", "*"));
  CHECK_FALSE(glob_match("\\*", "a"));
  CHECK(glob_match("**/tmp", "tmp"));
  CHECK(glob_match("**/tmp", "a/b/tmp"));
  CHECK_FALSE(glob_match("**/tmp", "a/btmp"));
  CHECK(glob_match("logs/**", "logs/a/b.txt"));
  CHECK_FALSE(glob_match("logs/**", "other/a"));
  CHECK(glob_match("a/**/b", "a/b"));
  CHECK(glob_match("a/**/b", "a/x/y/b"));
  CHECK(glob_match("", ""));
  CHECK_FALSE(glob_match("", "x"));
  CHECK(glob_match("*", ""));
}

TEST_CASE("ignore rules: names anywhere, anchored paths, directories only and re-includes")
{
  IgnoreRules r;
  for (const char* line : {"# build outputs", "", "*.o", "build/", "/out", "docs/*.pdf", "!keep.o",
                           "trailing   ", "\\#hash", "\\!bang"}) {
    r.add_file_line(line, "");
  }
  CHECK(r.ignored("main.o", false));
  CHECK(r.ignored("src/deep/main.o", false));
  CHECK_FALSE(r.ignored("keep.o", false));
  CHECK_FALSE(r.ignored("src/keep.o", false));
  CHECK(r.ignored("build", true));
  CHECK(r.ignored("src/build", true));
  CHECK_FALSE(r.ignored("build", false)); // a file named build stays
  CHECK(r.ignored("out", true));
  CHECK(r.ignored("out", false));
  CHECK_FALSE(r.ignored("src/out", false)); // anchored to the top
  CHECK(r.ignored("docs/a.pdf", false));
  CHECK_FALSE(r.ignored("docs/sub/a.pdf", false));
  CHECK_FALSE(r.ignored("other/docs/a.pdf", false));
  CHECK(r.ignored("trailing", false));
  CHECK(r.ignored("#hash", false));
  CHECK(r.ignored("!bang", false));
  CHECK_FALSE(r.ignored("# build outputs", false));
  CHECK_FALSE(r.ignored("main.c", false));
}

TEST_CASE("ignore rules: a nested file's rules apply below its directory and end with it")
{
  IgnoreRules r;
  r.add_file_line("*.log", "");
  const std::size_t mark = r.size();
  r.add_file_line("/data", "sub");
  r.add_file_line("!debug.log", "sub");
  CHECK(r.ignored("sub/data", true));
  CHECK_FALSE(r.ignored("data", true));
  CHECK_FALSE(r.ignored("sub/x/data", true));
  CHECK(r.ignored("a.log", false));
  CHECK_FALSE(r.ignored("sub/debug.log", false));
  CHECK(r.ignored("debug.log", false)); // the re-include lives in sub/ only
  CHECK_FALSE(r.ignored("subway/data", true));
  r.truncate(mark);
  CHECK_FALSE(r.ignored("sub/data", true));
  CHECK(r.ignored("sub/debug.log", false));
}

TEST_CASE("ignore rules: --ignore patterns win over every file and must not be empty")
{
  IgnoreRules r;
  r.add_option_pattern("*.o");
  r.add_file_line("!main.o", "");
  CHECK(r.ignored("main.o", false));
  CHECK(r.empty() == false);
  CHECK_THROWS_AS(r.add_option_pattern(""), dc::ConfigError);
  CHECK_THROWS_AS(r.add_option_pattern("   "), dc::ConfigError);
  CHECK_THROWS_AS(r.add_option_pattern("#"), dc::ConfigError);
  IgnoreRules none;
  CHECK(none.empty());
  CHECK_FALSE(none.ignored("anything", false));
}
