#pragma once
// Peers file parsing (sans-I/O): one "host", "host:port", "[v6]:port" or "[v6]" per line, '#'
// comments, blank lines ignored. Addresses are checked for form only; nothing is resolved here.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dc {

inline constexpr std::uint16_t k_default_port = 6969;

// One worker to talk to. `host` is a hostname, an IPv4 literal or an IPv6 literal without brackets
// (possibly with a "%zone"); `label` is the entry as the user wrote it, used to tag its output.
struct Peer {
  std::string label;
  std::string host;
  std::uint16_t port = k_default_port;
  std::size_t index = 0; // 0-based position in the peers file (DISTCOMP_NODE_ID)
};

// Parses the text of a peers file: one endpoint per line (see parse_endpoint), '#' starting a
// comment at the beginning of a line or after whitespace, blank lines skipped. Throws ConfigError
// with one line naming `file_name` and the line number on a bad entry or a duplicate (same host
// and port after normalisation: "lab01" == "LAB01:6969", "::1" == "[0::1]"), and when no peer is
// listed.
std::vector<Peer> parse_peers(std::string_view text, const std::string& file_name);

// Reads and parses the peers file at `path`; throws ConfigError "PATH: cannot read: <reason>" when
// it cannot be read, and whatever parse_peers throws.
std::vector<Peer> load_peers_file(const std::string& path);

// Parses one "host", "host:port", "[v6]", "[v6]:port" or bare IPv6 ("fe80::1", 2+ colons, no
// port) spec, trimmed of surrounding whitespace; ports are 1..65535. Throws ConfigError
// "WHAT: <problem> '<text>'" when the spec is malformed.
Peer parse_endpoint(std::string_view spec, std::string_view what);

} // namespace dc
