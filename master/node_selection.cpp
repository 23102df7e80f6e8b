#include "master/node_selection.hpp"

#include "common/bytes.hpp"
#include "common/error.hpp"
#include "common/hostlist.hpp"
#include "common/key_file.hpp"

#include <algorithm>
#include <cstdlib>
#include <sys/stat.h>
#include <unordered_map>
#include <unordered_set>

namespace dc::master {
namespace {

std::string identity(const std::string& host, std::uint16_t port)
{
  return normalised_host(host) + " " + std::to_string(port);
}

// $DISTCOMP_PEERS, else ~/.config/distcomp/peers if it exists, else "".
std::string default_peers_file(const SelectionEnvironment& environment)
{
  if (const auto variable = environment.variable("DISTCOMP_PEERS");
      variable && !variable->empty()) {
    return *variable;
  }
  const std::string home = environment.home();
  if (home.empty()) {
    return {};
  }
  const std::string path = home + "/.config/distcomp/peers";
  return environment.file_exists(path) ? path : std::string();
}

// The peers file's nodes in one of `groups`; every group must have a node.
std::vector<Peer> in_groups(std::vector<Peer> peers, const std::vector<std::string>& groups,
                            const std::string& path)
{
  const auto in = [](const Peer& p, const std::string& group) {
    return std::find(p.groups.begin(), p.groups.end(), group) != p.groups.end();
  };
  for (const std::string& group : groups) {
    if (std::none_of(peers.begin(), peers.end(), [&](const Peer& p) { return in(p, group); })) {
      throw ConfigError("-g: no node in " + path + " has group '" + escape_for_log(group) + "'");
    }
  }
  std::erase_if(peers, [&](const Peer& p) {
    return std::none_of(groups.begin(), groups.end(),
                        [&](const std::string& g) { return in(p, g); });
  });
  return peers;
}

// What the -x entries name: labels, hosts on every port, and host:port pairs.
class Exclusions {
public:
  Exclusions(const std::vector<std::string>& expressions, const std::vector<Peer>& nodes)
  {
    std::unordered_set<std::string> labels;
    for (const Peer& n : nodes) {
      labels.insert(n.label);
    }
    for (const std::string& expression : expressions) {
      for (const std::string& name : expand_hostlist(expression, "-x")) {
        m_labels.insert(name);
        if (labels.count(name) > 0) {
          continue; // a label such as an INI section name need not be an address
        }
        const Peer peer = parse_endpoint(name, "-x");
        if (endpoint_has_port(name)) {
          m_endpoints.insert(identity(peer.host, peer.port));
        } else {
          m_hosts.insert(normalised_host(peer.host));
        }
      }
    }
  }

  bool excludes(const Peer& node) const
  {
    return m_labels.count(node.label) > 0 || m_hosts.count(normalised_host(node.host)) > 0 ||
           m_endpoints.count(identity(node.host, node.port)) > 0;
  }

private:
  std::unordered_set<std::string> m_labels;
  std::unordered_set<std::string> m_hosts;
  std::unordered_set<std::string> m_endpoints;
};

// "lab03" -> "lab03:7000"; a bare IPv6 label gets brackets so the port stays readable.
std::string label_with_port(const Peer& node)
{
  const bool bare_ipv6 =
      !node.label.starts_with('[') && std::count(node.label.begin(), node.label.end(), ':') >= 2;
  const std::string base = bare_ipv6 ? "[" + node.label + "]" : node.label;
  return base + ":" + std::to_string(node.port);
}

} // namespace

SelectionEnvironment system_environment()
{
  SelectionEnvironment environment;
  environment.variable = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    return value == nullptr ? std::nullopt : std::optional<std::string>(value);
  };
  environment.home = home_dir;
  environment.file_exists = [](const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
  };
  return environment;
}

std::vector<Peer> select_nodes(const Options& options, const SelectionEnvironment& environment)
{
  std::string path = options.peers_file;
  if (path.empty() && (options.hosts.empty() || !options.groups.empty())) {
    path = default_peers_file(environment);
    if (path.empty() && !options.groups.empty()) {
      throw ConfigError("-g: no peers file to take groups from: use --peers FILE");
    }
    if (path.empty()) {
      throw ConfigError("no peers: use --peers FILE or -w HOSTS");
    }
  }

  std::vector<Peer> nodes;
  std::unordered_set<std::string> listed;
  if (!path.empty()) {
    std::vector<Peer> file = load_peers_file(path);
    if (!options.groups.empty()) {
      file = in_groups(std::move(file), options.groups, path);
    }
    for (Peer& p : file) {
      listed.insert(identity(p.host, p.port));
      nodes.push_back(std::move(p));
    }
  }
  for (const std::string& expression : options.hosts) {
    for (const std::string& name : expand_hostlist(expression, "-w")) {
      Peer peer = parse_endpoint(name, "-w");
      if (listed.insert(identity(peer.host, peer.port)).second) {
        nodes.push_back(std::move(peer));
      }
    }
    if (nodes.size() > k_max_hostlist_hosts) {
      throw ConfigError("-w: more than " + std::to_string(k_max_hostlist_hosts) + " nodes");
    }
  }

  if (!options.excluded.empty()) {
    const Exclusions exclusions(options.excluded, nodes);
    std::erase_if(nodes, [&](const Peer& n) { return exclusions.excludes(n); });
    if (nodes.empty()) {
      throw ConfigError("-x: every selected node is excluded; nothing to run on");
    }
  }

  // Two workers on one machine ("lab03 port=7000", "lab03 port=7001") must not share an output tag.
  std::unordered_map<std::string, std::size_t> label_count;
  for (const Peer& n : nodes) {
    ++label_count[n.label];
  }
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].index = i;
    if (label_count[nodes[i].label] > 1) {
      nodes[i].label = label_with_port(nodes[i]);
    }
  }
  return nodes;
}

std::vector<Peer> select_nodes(const Options& options)
{
  return select_nodes(options, system_environment());
}

} // namespace dc::master
