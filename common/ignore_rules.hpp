#pragma once
// What --send leaves out of a directory: `--ignore PATTERN` on the command line and
// `.distcompignore` files in the sent directories, in a subset of gitignore's syntax. Pure: the
// scanner reads the files and asks about each entry it walks.
//
//   # comment, blank line      ignored
//   *.o                        a name anywhere below the file's directory (no '/' in the pattern)
//   build/                     trailing '/': directories only
//   /out, docs/*.pdf           a '/' at the start or inside: relative to the file's directory
//   **/tmp, logs/**, a/**/b    '**' spans directories
//   !keep.o                    re-includes what an earlier pattern excluded (not inside an
//                              excluded directory: that is never walked)
//   \#file, \!file             a backslash makes the next character literal
//
// '*' and '?' never match '/'; [abc], [a-z] and [!a-z] are character classes. Trailing spaces
// are dropped. The last matching rule decides; rules of deeper .distcompignore files come later
// than their parents', and --ignore patterns are checked after every file's, so they win.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace dc {

inline constexpr std::string_view k_ignore_file_name = ".distcompignore";

// Returns whether `pattern` matches all of `text`: '*' and '?' stop at '/', '**' crosses it
// ("**/" = zero or more directories), [..] classes ('!' or '^' negates), '\' escapes. Throws
// nothing.
bool glob_match(std::string_view pattern, std::string_view text);

class IgnoreRules {
public:
  // Adds one line of a .distcompignore file found in `dir` ("" = the sent directory itself,
  // else its '/'-separated path below it). Blank and comment lines add nothing.
  void add_file_line(std::string_view line, const std::string& dir);
  // Adds a --ignore pattern (same syntax, relative to every sent directory). Throws ConfigError
  // for an empty pattern.
  void add_option_pattern(std::string_view pattern);

  // Whether the entry at `path` (relative to the sent directory) is left out.
  bool ignored(std::string_view path, bool is_dir) const;

  // File rules are a stack: remember size() on entering a directory, truncate() on leaving it.
  std::size_t size() const { return m_file_rules.size(); }
  void truncate(std::size_t n) { m_file_rules.resize(n); }
  bool empty() const { return m_file_rules.empty() && m_option_rules.empty(); }

private:
  struct Rule {
    std::string dir; // where the rule lives, relative to the sent directory ("" = there)
    std::string glob;
    bool negated = false;
    bool dir_only = false;
    bool anchored = false; // matched against the path below `dir`, else against the base name
  };
  static bool parse(std::string_view line, const std::string& dir, Rule& out);
  static bool matches(const Rule& rule, std::string_view path, bool is_dir);

  std::vector<Rule> m_file_rules;
  std::vector<Rule> m_option_rules;
};

} // namespace dc
