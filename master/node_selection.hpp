#pragma once
// Which workers a run talks to: the peers file (--peers; else $DISTCOMP_PEERS or
// ~/.config/distcomp/peers unless -w is given), narrowed to the -g groups, joined with the -w
// hostlists, minus what -x names.

#include "common/peers.hpp"
#include "master/options.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dc::master {

// What node selection reads from the outside world; tests pass their own.
struct SelectionEnvironment {
  std::function<std::optional<std::string>(const std::string& name)> variable; // nullopt: unset
  std::function<std::string()> home;                                           // "" when unknown
  std::function<bool(const std::string& path)> file_exists;
};

// The process environment, home_dir() and the file system. Does not throw.
SelectionEnvironment system_environment();

// Returns the nodes of the run, with index = position (DISTCOMP_NODE_ID): the peers file's nodes
// (only those in one of the -g groups when -g is given), then the -w hosts not listed yet (same
// host and port after normalisation), without every node that an -x entry names by label, by
// host (on any port) or by host:port. Nodes that would share a label get ":PORT" appended to it.
// Throws ConfigError with one line when there is no peers file and no -w, -g has no peers file or
// names a group no node has, a hostlist or the peers file is bad, more than k_max_hostlist_hosts
// nodes are selected, or -x leaves none.
std::vector<Peer> select_nodes(const Options& options, const SelectionEnvironment& environment);

// select_nodes in system_environment(); throws the same.
std::vector<Peer> select_nodes(const Options& options);

} // namespace dc::master
