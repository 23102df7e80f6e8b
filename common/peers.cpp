#include "common/peers.hpp"

#include "common/bytes.hpp"
#include "common/error.hpp"
#include "common/hostlist.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <netinet/in.h>
#include <optional>
#include <unistd.h>
#include <unordered_map>

namespace dc {
namespace {

// RFC 1035 limit on a full domain name; also far above any IPv6 text with a zone.
constexpr std::size_t k_max_host_length = 253;
// A peers file lists tens to hundreds of hosts; this only stops us from slurping a wrong path
// such as /dev/zero or a disk image.
constexpr std::size_t k_max_peers_file_size = 16 << 20;
// slots= and gpus= are small counts; a million is beyond any machine and catches typos that would
// otherwise wrap around.
constexpr unsigned k_max_count_attribute = 1000000;

bool is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

bool is_alnum(char c)
{
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_hex(char c)
{
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_name_char(char c)
{
  return is_alnum(c) || c == '-' || c == '.' || c == '_';
}

std::string_view trim(std::string_view s)
{
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string quote_text(std::string_view s)
{
  return "'" + escape_for_log(s) + "'";
}

[[noreturn]] void fail(std::string_view where, const std::string& problem)
{
  throw ConfigError(std::string(where) + ": " + problem);
}

std::uint16_t parse_port(std::string_view text, std::string_view where)
{
  bool ok = !text.empty() && text.size() <= 5; // "65535"; longer spellings are typos
  unsigned value = 0;
  for (char c : text) {
    ok = ok && c >= '0' && c <= '9';
    value = value * 10 + unsigned(c - '0');
  }
  if (!ok || value == 0 || value > 65535) {
    fail(where, "bad port " + quote_text(text));
  }
  return static_cast<std::uint16_t>(value);
}

void check_hostname(std::string_view host, std::string_view where)
{
  if (host.empty()) {
    fail(where, "missing host");
  }
  if (host.size() > k_max_host_length || !std::all_of(host.begin(), host.end(), is_name_char)) {
    fail(where, "bad host " + quote_text(host));
  }
}

// Checks an IPv6 literal with an optional "%zone"; `hint` is appended to the error message.
void check_ipv6(std::string_view text, std::string_view where, std::string_view hint = {})
{
  const auto percent = text.find('%');
  const std::string_view address = text.substr(0, percent);
  const std::string_view zone =
      percent == std::string_view::npos ? std::string_view() : text.substr(percent + 1);
  const bool chars_ok = std::all_of(address.begin(), address.end(),
                                    [](char c) { return is_hex(c) || c == ':' || c == '.'; }) &&
                        std::all_of(zone.begin(), zone.end(), is_name_char);
  in6_addr parsed{};
  const bool ok = chars_ok && text.size() <= k_max_host_length &&
                  (percent == std::string_view::npos || !zone.empty()) &&
                  ::inet_pton(AF_INET6, std::string(address).c_str(), &parsed) == 1;
  if (!ok) {
    fail(where, "bad IPv6 address " + quote_text(text) + std::string(hint));
  }
}

// The identity of a peer for duplicate detection.
std::string normalised_key(const Peer& peer)
{
  return normalised_host(peer.host) + " " + std::to_string(peer.port);
}

// The part of a line before its comment: '#' at the start or after whitespace ("a#b" is a host).
std::string_view strip_comment(std::string_view line)
{
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || is_space(line[i - 1]))) {
      return line.substr(0, i);
    }
  }
  return line;
}

// Splits text into lines, counting them from 1; a last line without '\n' counts.
class Lines {
public:
  explicit Lines(std::string_view text) : m_text(text) {}
  bool next(std::string_view& line)
  {
    if (m_text.empty()) {
      return false;
    }
    const auto newline = m_text.find('\n');
    line = m_text.substr(0, newline);
    m_text.remove_prefix(newline == std::string_view::npos ? m_text.size() : newline + 1);
    ++m_number;
    return true;
  }
  std::size_t number() const { return m_number; }

private:
  std::string_view m_text;
  std::size_t m_number = 0;
};

unsigned parse_count(std::string_view text, std::string_view name, unsigned minimum,
                     std::string_view where)
{
  bool ok = !text.empty() && text.size() <= 7; // k_max_count_attribute has 7 digits
  unsigned value = 0;
  for (char c : text) {
    ok = ok && c >= '0' && c <= '9';
    value = value * 10 + unsigned(c - '0');
  }
  if (!ok || value < minimum || value > k_max_count_attribute) {
    fail(where, "bad " + std::string(name) + " value " + quote_text(text));
  }
  return value;
}

// The attributes of one peers-file line, given to every endpoint of its hostlist.
struct Attributes {
  std::optional<std::uint16_t> port;
  unsigned slots = 1;
  unsigned gpus = 0;
  std::vector<std::string> groups;
};

std::vector<std::string> parse_groups(std::string_view list, std::string_view where)
{
  std::vector<std::string> groups;
  std::string_view rest = list;
  for (;;) {
    const auto comma = rest.find(',');
    const std::string_view name = rest.substr(0, comma);
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_name_char)) {
      fail(where, "bad group list " + quote_text(list));
    }
    groups.emplace_back(name);
    if (comma == std::string_view::npos) {
      return groups;
    }
    rest.remove_prefix(comma + 1);
  }
}

// Parses "key=value" words separated by whitespace.
Attributes parse_attributes(std::string_view words, std::string_view where)
{
  Attributes a;
  std::vector<std::string_view> seen;
  while (!(words = trim(words)).empty()) {
    std::size_t end = 0;
    while (end < words.size() && !is_space(words[end])) {
      ++end;
    }
    const std::string_view word = words.substr(0, end);
    words.remove_prefix(end);
    const auto eq = word.find('=');
    if (eq == std::string_view::npos) {
      fail(where, "expected key=value after the hosts, got " + quote_text(word));
    }
    const std::string_view key = word.substr(0, eq);
    const std::string_view value = word.substr(eq + 1);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      fail(where, "attribute " + quote_text(key) + " given twice");
    }
    seen.push_back(key);
    if (key == "port") {
      a.port = parse_port(value, where);
    } else if (key == "slots") {
      a.slots = parse_count(value, "slots", 1, where);
    } else if (key == "gpus") {
      a.gpus = parse_count(value, "gpus", 0, where);
    } else if (key == "group") {
      a.groups = parse_groups(value, where);
    } else {
      fail(where,
           "unknown attribute " + quote_text(key) + " (expected port, slots, gpus or group)");
    }
  }
  return a;
}

// Adds peers one by one: numbers them and refuses duplicates and too many.
class PeerList {
public:
  explicit PeerList(const std::string& file_name) : m_file_name(file_name) {}

  void add(Peer peer, std::size_t line_number)
  {
    const std::string where = m_file_name + ":" + std::to_string(line_number);
    const auto [it, inserted] = m_first_line.emplace(normalised_key(peer), line_number);
    if (!inserted) {
      fail(where, "duplicate peer " + quote_text(peer.label) + " (first on line " +
                      std::to_string(it->second) + ")");
    }
    if (m_peers.size() == k_max_hostlist_hosts) {
      fail(where, "more than " + std::to_string(k_max_hostlist_hosts) + " peers");
    }
    peer.index = m_peers.size();
    m_peers.push_back(std::move(peer));
  }

  std::vector<Peer> take()
  {
    if (m_peers.empty()) {
      fail(m_file_name, "no peers");
    }
    return std::move(m_peers);
  }

private:
  const std::string& m_file_name;
  std::vector<Peer> m_peers;
  std::unordered_map<std::string, std::size_t> m_first_line; // normalised key -> line number
};

// The older layout of Python cluster scripts: the first line that is not blank or a comment is a
// "[name]" header ("[::1]:7000" and "[fe80::1]" are peer lines), and a "key = value" or
// "key: value" line follows somewhere. A lone "[lab01]" is thus a (bad) peer line, as it always
// was.
bool is_ini(std::string_view text)
{
  Lines lines(text);
  std::string_view line;
  bool header = false;
  while (lines.next(line)) {
    const std::string_view t = trim(line);
    if (t.empty() || t.front() == '#' || t.front() == ';') {
      continue;
    }
    const bool is_header = t.size() > 2 && t.front() == '[' && t.back() == ']';
    if (!header) {
      if (!is_header || t.find(':') != std::string_view::npos) {
        return false;
      }
      header = true;
    } else if (!is_header && t.find_first_of("=:") != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

struct IniValue {
  std::string text;
  std::size_t line = 0;
};

struct IniSection {
  std::string name;
  std::size_t line = 0;
  std::map<std::string, IniValue> keys; // only the keys we read
};

// The keys we read; every other key belongs to the scripts that share the file and is ignored.
bool is_known_ini_key(const std::string& key)
{
  return key == "host" || key == "port" || key == "scheduler_port" || key == "gpus";
}

// Reads the file the way Python's configparser does (keys case-insensitive, '=' or ':' between key
// and value, whole-line '#'/';' comments, indented lines continuing a value, [DEFAULT] supplying
// missing keys to every section) and makes one peer per section.
std::vector<Peer> parse_ini_peers(std::string_view text, const std::string& file_name)
{
  std::vector<IniSection> sections;
  std::unordered_map<std::string, std::size_t> section_lines; // name -> line of its header
  IniSection defaults;
  IniSection* current = nullptr;
  std::string current_key; // the key whose value an indented line would continue
  std::size_t key_indent = 0;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    const std::string where = file_name + ":" + std::to_string(lines.number());
    const std::string_view t = trim(line);
    const std::size_t indent = std::size_t(t.empty() ? 0 : t.data() - line.data());
    if (t.empty() || t.front() == '#' || t.front() == ';') {
      continue;
    }
    if (current != nullptr && !current_key.empty() && indent > key_indent) {
      if (is_known_ini_key(current_key)) {
        fail(where, current_key + "= cannot continue on another line");
      }
      continue;
    }
    current_key.clear();
    if (t.front() == '[' && t.back() == ']' && t.size() > 2) {
      const std::string name(t.substr(1, t.size() - 2));
      if (name == "DEFAULT") {
        current = &defaults;
        continue;
      }
      const auto [first, inserted] = section_lines.emplace(name, lines.number());
      if (!inserted) {
        fail(where, "duplicate section " + quote_text("[" + name + "]") + " (first on line " +
                        std::to_string(first->second) + ")");
      }
      if (sections.size() == k_max_hostlist_hosts) {
        fail(where, "more than " + std::to_string(k_max_hostlist_hosts) + " peers");
      }
      sections.push_back({name, lines.number(), {}});
      current = &sections.back();
      continue;
    }
    const auto delimiter = t.find_first_of("=:");
    if (current == nullptr || delimiter == std::string_view::npos) {
      fail(where, "expected [section] or key = value, got " + quote_text(t));
    }
    std::string key(trim(t.substr(0, delimiter)));
    std::transform(key.begin(), key.end(), key.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; });
    if (key.empty()) {
      fail(where, "missing key before " + quote_text(t.substr(delimiter, 1)));
    }
    current_key = key;
    key_indent = indent;
    if (!is_known_ini_key(key)) {
      continue;
    }
    if (const auto it = current->keys.find(key); it != current->keys.end()) {
      fail(where, "duplicate key " + quote_text(key) + " (first on line " +
                      std::to_string(it->second.line) + ")");
    }
    current->keys[key] = {std::string(trim(t.substr(delimiter + 1))), lines.number()};
  }

  PeerList peers(file_name);
  for (const IniSection& s : sections) {
    const auto lookup = [&](const std::string& key) -> const IniValue* {
      const IniSection* scopes[] = {&s, &defaults};
      for (const IniSection* in : scopes) {
        if (const auto it = in->keys.find(key); it != in->keys.end()) {
          return &it->second;
        }
      }
      return nullptr;
    };
    const auto where = [&](const IniValue& v) { return file_name + ":" + std::to_string(v.line); };
    const IniValue* host = lookup("host");
    if (host == nullptr) {
      fail(file_name + ":" + std::to_string(s.line),
           "section " + quote_text("[" + s.name + "]") + " has no host=");
    }
    Peer peer = parse_endpoint(host->text, where(*host));
    peer.label = s.name;
    const IniValue* port = lookup("port");
    if (port == nullptr) {
      port = lookup("scheduler_port");
    }
    if (port != nullptr) {
      if (endpoint_has_port(host->text)) {
        fail(where(*port), "port given twice: host=" + escape_for_log(host->text) + " and " +
                               (lookup("port") == port ? "port=" : "scheduler_port=") +
                               escape_for_log(port->text));
      }
      peer.port = parse_port(port->text, where(*port));
    }
    if (const IniValue* gpus = lookup("gpus")) {
      peer.gpus = parse_count(gpus->text, "gpus", 0, where(*gpus));
    }
    peers.add(std::move(peer), s.line);
  }
  return peers.take();
}

} // namespace

Peer parse_endpoint(std::string_view spec, std::string_view what)
{
  spec = trim(spec);
  if (spec.empty()) {
    fail(what, "empty address");
  }
  Peer peer;
  peer.label = std::string(spec);
  if (spec.front() == '[') {
    const auto close = spec.find(']');
    if (close == std::string_view::npos) {
      fail(what, "missing ']' in " + quote_text(spec));
    }
    const std::string_view host = spec.substr(1, close - 1);
    check_ipv6(host, what);
    peer.host = std::string(host);
    const std::string_view rest = spec.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        fail(what, "unexpected " + quote_text(rest) + " after ']' in " + quote_text(spec));
      }
      peer.port = parse_port(rest.substr(1), what);
    }
    return peer;
  }
  const auto colons = std::count(spec.begin(), spec.end(), ':');
  if (colons >= 2) {
    check_ipv6(spec, what, " (write [address]:port to give a port)");
    peer.host = std::string(spec);
    return peer;
  }
  const auto colon = spec.find(':');
  const std::string_view host = spec.substr(0, colon);
  check_hostname(host, what);
  peer.host = std::string(host);
  if (colon != std::string_view::npos) {
    peer.port = parse_port(spec.substr(colon + 1), what);
  }
  return peer;
}

bool endpoint_has_port(std::string_view spec)
{
  spec = trim(spec);
  if (!spec.empty() && spec.front() == '[') {
    return spec.find("]:") != std::string_view::npos;
  }
  return std::count(spec.begin(), spec.end(), ':') == 1;
}

std::string normalised_host(const std::string& host)
{
  const auto percent = host.find('%');
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.substr(0, percent).c_str(), &v6) == 1) {
    char text[INET6_ADDRSTRLEN];
    ::inet_ntop(AF_INET6, &v6, text, sizeof text);
    return percent == std::string::npos ? std::string(text) : text + host.substr(percent);
  }
  std::string lower = host;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; });
  return lower;
}

std::vector<Peer> parse_peers(std::string_view text, const std::string& file_name)
{
  if (text.starts_with("\xef\xbb\xbf")) {
    text.remove_prefix(3); // UTF-8 byte order mark from Windows editors
  }
  if (is_ini(text)) {
    return parse_ini_peers(text, file_name);
  }
  PeerList peers(file_name);
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    const std::string_view entry = trim(strip_comment(line));
    if (entry.empty()) {
      continue;
    }
    const std::string where = file_name + ":" + std::to_string(lines.number());
    // The hosts run up to the first word with '=': "lab 01" stays one (bad) host, as written.
    std::size_t hosts_end = 0;
    while (hosts_end < entry.size()) {
      std::size_t word_end = hosts_end;
      while (word_end < entry.size() && !is_space(entry[word_end])) {
        ++word_end;
      }
      if (entry.substr(hosts_end, word_end - hosts_end).find('=') != std::string_view::npos) {
        break;
      }
      hosts_end = word_end;
      while (hosts_end < entry.size() && is_space(entry[hosts_end])) {
        ++hosts_end;
      }
    }
    const Attributes attributes = parse_attributes(entry.substr(hosts_end), where);
    const std::size_t column = std::size_t(entry.data() - line.data()) + 1;
    for (const std::string& name :
         expand_hostlist(trim(entry.substr(0, hosts_end)), where, column)) {
      Peer peer = parse_endpoint(name, where);
      if (attributes.port) {
        if (endpoint_has_port(name)) {
          fail(where, "port given twice: " + quote_text(name) +
                          " and port=" + std::to_string(*attributes.port));
        }
        peer.port = *attributes.port;
      }
      peer.slots = attributes.slots;
      peer.gpus = attributes.gpus;
      peer.groups = attributes.groups;
      peers.add(std::move(peer), lines.number());
    }
  }
  return peers.take();
}

std::vector<Peer> load_peers_file(const std::string& path)
{
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(path, std::string("cannot read: ") + std::strerror(errno));
  }
  std::string text;
  char buffer[16384];
  int error = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      error = errno;
      break;
    }
    if (n == 0) {
      break;
    }
    if (text.size() + std::size_t(n) > k_max_peers_file_size) {
      ::close(fd);
      fail(path,
           "cannot read: larger than " + std::to_string(k_max_peers_file_size >> 20) + " MiB");
    }
    text.append(buffer, std::size_t(n));
  }
  ::close(fd);
  if (error != 0) {
    fail(path, std::string("cannot read: ") + std::strerror(error));
  }
  return parse_peers(text, path);
}

} // namespace dc
