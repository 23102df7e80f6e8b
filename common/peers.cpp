#include "common/peers.hpp"

#include "common/bytes.hpp"
#include "common/error.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>
#include <unordered_map>

namespace dc {
namespace {

// RFC 1035 limit on a full domain name; also far above any IPv6 text with a zone.
constexpr std::size_t k_max_host_length = 253;
// A peers file lists tens to hundreds of hosts; this only stops us from slurping a wrong path
// such as /dev/zero or a disk image.
constexpr std::size_t k_max_peers_file_size = 16 << 20;

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

// The identity of a peer for duplicate detection: DNS names are case-insensitive and IPv6 has many
// spellings of one address, so both are brought to one form.
std::string normalised_key(const Peer& peer)
{
  std::string host = peer.host;
  const auto percent = host.find('%');
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.substr(0, percent).c_str(), &v6) == 1) {
    char text[INET6_ADDRSTRLEN];
    ::inet_ntop(AF_INET6, &v6, text, sizeof text);
    host = percent == std::string::npos ? std::string(text) : text + host.substr(percent);
  } else {
    std::transform(host.begin(), host.end(), host.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; });
  }
  return host + " " + std::to_string(peer.port);
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

std::vector<Peer> parse_peers(std::string_view text, const std::string& file_name)
{
  if (text.starts_with("\xef\xbb\xbf")) {
    text.remove_prefix(3); // UTF-8 byte order mark from Windows editors
  }
  std::vector<Peer> peers;
  std::unordered_map<std::string, std::size_t> first_line; // normalised key -> line number
  std::size_t line_number = 0;
  while (!text.empty()) {
    const auto newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    ++line_number;

    const std::string_view entry = trim(strip_comment(line));
    if (entry.empty()) {
      continue;
    }
    const std::string where = file_name + ":" + std::to_string(line_number);
    Peer peer = parse_endpoint(entry, where);
    const auto [it, inserted] = first_line.emplace(normalised_key(peer), line_number);
    if (!inserted) {
      fail(where, "duplicate peer " + quote_text(peer.label) + " (first on line " +
                      std::to_string(it->second) + ")");
    }
    peer.index = peers.size();
    peers.push_back(std::move(peer));
  }
  if (peers.empty()) {
    fail(file_name, "no peers");
  }
  return peers;
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
