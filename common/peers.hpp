#pragma once
// Peers file parsing (sans-I/O): one hostlist of "host", "host:port", "[v6]:port" or "[v6]" per
// line with optional attributes, '#' comments, blank lines ignored; or the INI layout of older
// Python cluster scripts. Addresses are checked for form only; nothing is resolved here.

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
  std::size_t index = 0;           // 0-based position in the peers file (DISTCOMP_NODE_ID)
  unsigned slots = 1;              // slots=: jobs the node is meant to run at once
  unsigned gpus = 0;               // gpus=
  std::vector<std::string> groups; // group=a,b: what -g selects by
};

// Parses the text of a peers file. Each line is a hostlist (see expand_hostlist) of endpoints (see
// parse_endpoint) and optional attributes "port=P slots=N gpus=N group=a,b" given to every
// endpoint of the line; the label is the expanded endpoint as written, port= does not change it.
// '#' starts a comment at the beginning of a line or after whitespace; blank lines are skipped.
// A file whose first line that is not blank or a '#'/';' comment is a "[name]" header without ':'
// and that has a "key = value" line is read as INI instead: one node per section, labelled with the
// section name, from the keys host=, port= (or scheduler_port=) and gpus=; other keys are ignored;
// [DEFAULT] supplies missing keys. Throws ConfigError with one line naming `file_name` and the line
// number on a bad entry or attribute, a section without host=, a duplicate (same host and port
// after normalisation: "lab01" == "LAB01:6969", "::1" == "[0::1]", naming both lines), more than
// k_max_hostlist_hosts peers, and when no peer is listed.
std::vector<Peer> parse_peers(std::string_view text, const std::string& file_name);

// Reads and parses the peers file at `path`; throws ConfigError "PATH: cannot read: <reason>" when
// it cannot be read, and whatever parse_peers throws.
std::vector<Peer> load_peers_file(const std::string& path);

// Parses one "host", "host:port", "[v6]", "[v6]:port" or bare IPv6 ("fe80::1", 2+ colons, no
// port) spec, trimmed of surrounding whitespace; ports are 1..65535. Throws ConfigError
// "WHAT: <problem> '<text>'" when the spec is malformed.
Peer parse_endpoint(std::string_view spec, std::string_view what);

// Whether an endpoint spec that parse_endpoint accepts names its port ("lab01:7000", "[::1]:7000";
// not "lab01", "[::1]" or "fe80::1"). Does not throw.
bool endpoint_has_port(std::string_view spec);

// The host in one spelling for comparisons: DNS names lowercased, IPv6 literals in their canonical
// text form (zone kept). Does not throw (beyond std::bad_alloc).
std::string normalised_host(const std::string& host);

} // namespace dc
