#include "common/hostlist.hpp"

#include "common/bytes.hpp"
#include "common/error.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <unordered_map>

namespace dc {
namespace {

// Up to 18 digits fit in a uint64 with room for the arithmetic below; a longer number in a range
// is a typo, and in a name it is simply not folded.
constexpr std::size_t k_max_number_digits = 18;

bool is_digit(char c)
{
  return c >= '0' && c <= '9';
}

bool is_space(char c)
{
  return c == ' ' || c == '\t';
}

bool all_digits(std::string_view s)
{
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

// "08" is zero-padded to two digits; "0" and "8" are not padded.
bool is_padded(std::string_view digits)
{
  return digits.size() > 1 && digits.front() == '0';
}

std::uint64_t to_number(std::string_view digits)
{
  std::uint64_t value = 0;
  for (char c : digits) {
    value = value * 10 + std::uint64_t(c - '0');
  }
  return value;
}

std::string format_number(std::uint64_t value, std::size_t width)
{
  std::string text = std::to_string(value);
  if (text.size() < width) {
    text.insert(0, width - text.size(), '0');
  }
  return text;
}

// The end of a leading "[...]" that is an address rather than a range list, such as "[::1]" or a
// malformed "[10.0.0.1]" that parse_endpoint will report; npos when `text` starts with a range
// group. Without its ']' the address runs to the next ',' and parse_endpoint reports it.
std::size_t address_end(std::string_view text, std::size_t start)
{
  if (start >= text.size() || text[start] != '[') {
    return std::string_view::npos;
  }
  std::size_t end = start + 1;
  while (end < text.size() && text[end] != ']' && text[end] != ',') {
    ++end;
  }
  const std::string_view content = text.substr(start + 1, end - start - 1);
  const bool range_like =
      !content.empty() &&
      std::all_of(content.begin(), content.end(), [](char c) { return is_digit(c) || c == '-'; });
  if (range_like) {
    return std::string_view::npos;
  }
  return end < text.size() && text[end] == ']' ? end + 1 : end;
}

// One piece of a part: literal text, or the names of a bracket group.
struct Segment {
  std::string text;
  std::vector<std::string> values;
  bool is_group = false;
};

class Expander {
public:
  Expander(std::string_view expression, std::string_view what, std::size_t first_column)
      : m_text(expression), m_what(what), m_first_column(first_column)
  {
  }

  std::vector<std::string> run()
  {
    std::vector<std::string> names;
    std::size_t pos = 0;
    for (;;) {
      const std::size_t start = skip_spaces(pos);
      std::vector<Segment> part = parse_part(pos);
      if (part.empty()) {
        fail_at(start, "empty host name");
      }
      expand_part(part, start, names);
      if (pos == m_text.size()) {
        return names;
      }
      ++pos; // the ',' that ended the part
    }
  }

private:
  [[noreturn]] void fail_at(std::size_t offset, const std::string& problem) const
  {
    throw ConfigError(std::string(m_what) + ": column " + std::to_string(m_first_column + offset) +
                      ": " + problem);
  }

  std::size_t skip_spaces(std::size_t pos) const
  {
    while (pos < m_text.size() && is_space(m_text[pos])) {
      ++pos;
    }
    return pos;
  }

  // Reads one part, from `pos` up to a ',' outside brackets or the end; leaves `pos` there.
  std::vector<Segment> parse_part(std::size_t& pos) const
  {
    std::vector<Segment> segments;
    std::string text;
    pos = skip_spaces(pos);
    if (const std::size_t end = address_end(m_text, pos); end != std::string_view::npos) {
      text = std::string(m_text.substr(pos, end - pos));
      pos = end;
    }
    while (pos < m_text.size() && m_text[pos] != ',') {
      const char c = m_text[pos];
      if (c == ']') {
        fail_at(pos, "unexpected ']'");
      }
      if (c != '[') {
        text += c;
        ++pos;
        continue;
      }
      std::size_t close = pos + 1;
      while (close < m_text.size() && m_text[close] != ']') {
        if (m_text[close] == '[') {
          fail_at(close, "'[' inside '[...]'");
        }
        ++close;
      }
      if (close == m_text.size()) {
        fail_at(pos, "unclosed '['");
      }
      if (!text.empty()) {
        segments.push_back({std::move(text), {}, false});
        text.clear();
      }
      segments.push_back({{}, parse_ranges(pos + 1, close), true});
      pos = close + 1;
    }
    while (!text.empty() && is_space(text.back())) {
      text.pop_back();
    }
    if (!text.empty()) {
      segments.push_back({std::move(text), {}, false});
    }
    return segments;
  }

  // The names of the group whose ranges lie in [begin, end) of the expression.
  std::vector<std::string> parse_ranges(std::size_t begin, std::size_t end) const
  {
    struct Range {
      std::uint64_t low, high;
      std::size_t width;
    };
    std::vector<Range> ranges;
    std::uint64_t count = 0;
    std::size_t item = begin;
    for (;;) {
      std::size_t item_end = item;
      while (item_end < end && m_text[item_end] != ',') {
        ++item_end;
      }
      const std::string_view spec = m_text.substr(item, item_end - item);
      if (spec.empty()) {
        fail_at(item, "empty range");
      }
      const auto dash = spec.find('-');
      const std::string_view low = spec.substr(0, dash);
      const std::string_view high = dash == std::string_view::npos ? low : spec.substr(dash + 1);
      const std::string quoted = "'" + escape_for_log(spec) + "'";
      if (!all_digits(low) || !all_digits(high)) {
        fail_at(item, "bad range " + quoted + " (expected N or N-M)");
      }
      if (low.size() > k_max_number_digits || high.size() > k_max_number_digits) {
        fail_at(item, "number too long in " + quoted);
      }
      if ((is_padded(low) || is_padded(high)) && low.size() != high.size()) {
        fail_at(item, "zero padding differs between the ends of " + quoted);
      }
      const Range range{to_number(low), to_number(high), is_padded(low) ? low.size() : 0};
      if (range.high < range.low) {
        fail_at(item, "reversed range " + quoted);
      }
      count += range.high - range.low + 1; // both below 10^18: no overflow
      if (count > k_max_hostlist_hosts) {
        fail_at(begin - 1,
                "expands to more than " + std::to_string(k_max_hostlist_hosts) + " hosts");
      }
      ranges.push_back(range);
      if (item_end == end) {
        break;
      }
      item = item_end + 1;
    }
    std::vector<std::string> values;
    values.reserve(count);
    for (const Range& r : ranges) {
      for (std::uint64_t v = r.low; v <= r.high; ++v) {
        values.push_back(format_number(v, r.width));
      }
    }
    return values;
  }

  // Appends the cartesian product of `part`'s groups (last group varying fastest) to `names`.
  void expand_part(const std::vector<Segment>& part, std::size_t start,
                   std::vector<std::string>& names) const
  {
    std::size_t count = 1;
    for (const Segment& s : part) {
      count *= s.is_group ? s.values.size() : 1; // each factor <= the limit, checked at once
      if (names.size() + count > k_max_hostlist_hosts) {
        fail_at(start, "expands to more than " + std::to_string(k_max_hostlist_hosts) + " hosts");
      }
    }
    std::vector<std::size_t> odometer(part.size(), 0);
    for (std::size_t n = 0; n < count; ++n) {
      std::string name;
      for (std::size_t i = 0; i < part.size(); ++i) {
        name += part[i].is_group ? part[i].values[odometer[i]] : part[i].text;
      }
      names.push_back(std::move(name));
      for (std::size_t i = part.size(); i-- > 0;) {
        if (part[i].is_group && ++odometer[i] < part[i].values.size()) {
          break;
        }
        odometer[i] = 0;
      }
    }
  }

  std::string_view m_text;
  std::string_view m_what;
  std::size_t m_first_column;
};

// ---- compression ----

struct Number {
  std::uint64_t value;
  std::string text;
};

bool operator<(const Number& a, const Number& b)
{
  return a.value != b.value ? a.value < b.value : a.text.size() < b.text.size();
}

bool operator==(const Number& a, const Number& b)
{
  return a.text == b.text;
}

// A set of names: texts[0] numbers[0] texts[1] … numbers[n-1] texts[n], every number set taken in
// turn (a cartesian product, which is what a hostlist part with n groups means).
struct Pattern {
  std::vector<std::string> texts;
  std::vector<std::vector<Number>> numbers; // each sorted and unique once a fold pass ends
  std::size_t first = 0;                    // input position of its first name: output order
};

Pattern split_name(const std::string& name, std::size_t position)
{
  Pattern p;
  p.first = position;
  p.texts.emplace_back();
  std::size_t i = 0;
  const bool bare_ipv6 = name.front() != '[' && std::count(name.begin(), name.end(), ':') >= 2;
  if (bare_ipv6) {
    p.texts.back() = name; // folding digits inside an address would be unreadable
    return p;
  }
  if (const std::size_t end = address_end(name, 0); end != std::string::npos) {
    p.texts.back() = name.substr(0, end);
    i = end;
  }
  while (i < name.size()) {
    std::size_t j = i;
    while (j < name.size() && is_digit(name[j])) {
      ++j;
    }
    if (j > i && j - i <= k_max_number_digits) {
      const std::string digits = name.substr(i, j - i);
      p.numbers.push_back({Number{to_number(digits), digits}});
      p.texts.emplace_back();
      i = j;
    } else if (j > i) {
      p.texts.back() += name.substr(i, j - i);
      i = j;
    } else {
      p.texts.back() += name[i++];
    }
  }
  return p;
}

// Identity of a pattern ignoring number set `skip`: patterns with equal keys fold along `skip`.
std::string fold_key(const Pattern& p, std::size_t skip)
{
  std::string key;
  const auto add = [&key](const std::string& s) { key += std::to_string(s.size()) + ":" + s; };
  for (std::size_t i = 0; i < p.texts.size(); ++i) {
    add(p.texts[i]);
    if (i < p.numbers.size()) {
      key += "{";
      if (i != skip) {
        for (const Number& n : p.numbers[i]) {
          add(n.text);
        }
      }
      key += "}";
    }
  }
  return key;
}

// "[01-03,05,9-10]", or the number itself when the set has one.
std::string render_numbers(const std::vector<Number>& set)
{
  if (set.size() == 1) {
    return set.front().text;
  }
  // A range keeps its start's padding, so "08" and "10" share a range of width 2 while "9" and
  // "10" share an unpadded one; every range's ends have the same length when either is padded.
  std::set<std::size_t> padded_widths;
  for (const Number& n : set) {
    if (is_padded(n.text)) {
      padded_widths.insert(n.text.size());
    }
  }
  std::map<std::size_t, std::vector<const Number*>> by_width; // 0: unpadded
  for (const Number& n : set) {
    const bool joins_padded = is_padded(n.text) || padded_widths.count(n.text.size()) > 0;
    by_width[joins_padded ? n.text.size() : 0].push_back(&n);
  }
  std::vector<std::pair<const Number*, const Number*>> ranges;
  for (const auto& [width, numbers] : by_width) {
    const std::size_t first_of_width = ranges.size();
    for (const Number* n : numbers) {
      if (ranges.size() > first_of_width && ranges.back().second->value + 1 == n->value) {
        ranges.back().second = n;
      } else {
        ranges.emplace_back(n, n);
      }
    }
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const auto& a, const auto& b) { return *a.first < *b.first; });
  std::string out = "[";
  for (const auto& [low, high] : ranges) {
    out += (out.size() > 1 ? "," : "") + low->text;
    if (high != low) {
      out += "-" + high->text;
    }
  }
  return out + "]";
}

} // namespace

std::vector<std::string> expand_hostlist(std::string_view expression, std::string_view what,
                                         std::size_t first_column)
{
  return Expander(expression, what, first_column).run();
}

std::string compress_hostlist(const std::vector<std::string>& names)
{
  std::vector<Pattern> patterns;
  std::unordered_map<std::string, bool> seen;
  for (const std::string& name : names) {
    if (!name.empty() && seen.emplace(name, true).second) {
      patterns.push_back(split_name(name, patterns.size()));
    }
  }
  // Fold along one number position at a time, the last first, and repeat while anything merges:
  // "r1n1".."r2n3" -> "r1n[1-3]", "r2n[1-3]" -> "r[1-2]n[1-3]".
  for (bool merged = true; merged;) {
    merged = false;
    std::size_t dimensions = 0;
    for (const Pattern& p : patterns) {
      dimensions = std::max(dimensions, p.numbers.size());
    }
    for (std::size_t k = dimensions; k-- > 0;) {
      std::vector<Pattern> folded;
      std::unordered_map<std::string, std::size_t> index;
      for (Pattern& p : patterns) {
        if (p.numbers.size() <= k) {
          folded.push_back(std::move(p));
          continue;
        }
        const auto [it, inserted] = index.emplace(fold_key(p, k), folded.size());
        if (inserted) {
          folded.push_back(std::move(p));
          continue;
        }
        Pattern& into = folded[it->second];
        into.numbers[k].insert(into.numbers[k].end(), p.numbers[k].begin(), p.numbers[k].end());
        into.first = std::min(into.first, p.first);
        merged = true;
      }
      for (Pattern& p : folded) {
        if (k < p.numbers.size()) { // sort once per pass: appending one by one stays linear
          auto& set = p.numbers[k];
          std::sort(set.begin(), set.end());
          set.erase(std::unique(set.begin(), set.end()), set.end());
        }
      }
      patterns = std::move(folded);
    }
  }
  std::sort(patterns.begin(), patterns.end(),
            [](const Pattern& a, const Pattern& b) { return a.first < b.first; });
  std::string out;
  for (const Pattern& p : patterns) {
    if (!out.empty()) {
      out += ',';
    }
    for (std::size_t i = 0; i < p.texts.size(); ++i) {
      out += p.texts[i];
      if (i < p.numbers.size()) {
        out += render_numbers(p.numbers[i]);
      }
    }
  }
  return out;
}

} // namespace dc
