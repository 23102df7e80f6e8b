#include "common/error.hpp"
#include "master/node_selection.hpp"
#include "master/options.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace dc::master;

namespace {

// A file under /tmp holding `text`, removed at the end of the test.
class TempFile {
public:
  explicit TempFile(const std::string& text)
  {
    char path[] = "/tmp/dc_selection_XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == ssize_t(text.size()));
    ::close(fd);
    m_path = path;
  }
  ~TempFile() { ::unlink(m_path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return m_path; }

private:
  std::string m_path;
};

// An environment made of a variable map, a home directory and a set of existing files.
struct FakeEnvironment {
  std::map<std::string, std::string> variables;
  std::string home;
  std::set<std::string> files;
  mutable std::vector<std::string> probed; // paths file_exists was asked about

  SelectionEnvironment get() const
  {
    SelectionEnvironment e;
    e.variable = [this](const std::string& name) -> std::optional<std::string> {
      const auto it = variables.find(name);
      return it == variables.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    e.home = [this] { return home; };
    e.file_exists = [this](const std::string& path) {
      probed.push_back(path);
      return files.count(path) > 0;
    };
    return e;
  }
};

std::vector<std::string> labels(const std::vector<dc::Peer>& nodes)
{
  std::vector<std::string> out;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    CHECK(nodes[i].index == i);
    out.push_back(nodes[i].label);
  }
  return out;
}

std::string selection_error(const Options& o, const FakeEnvironment& env = {})
{
  try {
    select_nodes(o, env.get());
  } catch (const dc::ConfigError& e) {
    return e.what();
  }
  return "";
}

using Labels = std::vector<std::string>;

} // namespace

TEST_CASE("master: node selection: -w alone lists its hosts, duplicates dropped, no peers file")
{
  TempFile peers("never-used\n");
  FakeEnvironment env;
  env.variables["DISTCOMP_PEERS"] = peers.path(); // -w without --peers ignores the default
  Options o;
  o.hosts = {"lab[1-2]", "gpu1:7000,LAB1,lab1:6969", "[::1]:7000,[0::1]:7000"};
  const auto nodes = select_nodes(o, env.get());
  CHECK(labels(nodes) == Labels{"lab1", "lab2", "gpu1:7000", "[::1]:7000"});
  CHECK(nodes[2].port == 7000);
  CHECK(env.probed.empty());
}

TEST_CASE("master: node selection: --peers comes first, -w adds what it does not list")
{
  TempFile peers("lab1 group=cpu slots=4\nlab2 port=7000\n");
  Options o;
  o.peers_file = peers.path();
  o.hosts = {"LAB1,lab3", "lab2:7000", "lab2"};
  const auto nodes = select_nodes(o, FakeEnvironment{}.get());
  CHECK(labels(nodes) == Labels{"lab1", "lab2:7000", "lab3", "lab2:6969"});
  CHECK(nodes[0].slots == 4); // the peers file's entry, attributes and all
  CHECK(nodes[1].port == 7000);
  CHECK(nodes[3].port == 6969);
}

TEST_CASE("master: node selection: the default peers file is $DISTCOMP_PEERS, then ~/.config")
{
  char home[] = "/tmp/dc_home_XXXXXX";
  REQUIRE(::mkdtemp(home) != nullptr);
  const std::string config = std::string(home) + "/.config";
  const std::string home_peers = config + "/distcomp/peers";
  REQUIRE(::mkdir(config.c_str(), 0700) == 0);
  REQUIRE(::mkdir((config + "/distcomp").c_str(), 0700) == 0);
  {
    std::ofstream(home_peers) << "h1\nh2\n";
  }
  TempFile from_variable("a1\na2\n");
  TempFile from_option("o1\n");
  Options o;
  FakeEnvironment env;
  env.home = home;
  env.files = {home_peers};
  env.variables["DISTCOMP_PEERS"] = from_variable.path();
  CHECK(labels(select_nodes(o, env.get())) == Labels{"a1", "a2"});
  env.variables["DISTCOMP_PEERS"] = ""; // set but empty counts as unset
  CHECK(labels(select_nodes(o, env.get())) == Labels{"h1", "h2"});
  env.variables.clear();
  CHECK(labels(select_nodes(o, env.get())) == Labels{"h1", "h2"});
  CHECK(env.probed.back() == home_peers);

  // Only an existing ~/.config/distcomp/peers is read; otherwise there are no peers.
  env.files.clear();
  CHECK(selection_error(o, env) == "no peers: use --peers FILE or -w HOSTS");
  env.home = "";
  CHECK(selection_error(o, env) == "no peers: use --peers FILE or -w HOSTS");

  // --peers wins over both.
  env.home = home;
  env.files = {home_peers};
  env.variables["DISTCOMP_PEERS"] = from_variable.path();
  o.peers_file = from_option.path();
  CHECK(labels(select_nodes(o, env.get())) == Labels{"o1"});
  // A variable naming a missing file is an error, not a fallback.
  o.peers_file.clear();
  env.variables["DISTCOMP_PEERS"] = "/nonexistent/peers";
  CHECK(selection_error(o, env) == "/nonexistent/peers: cannot read: No such file or directory");

  ::unlink(home_peers.c_str());
  ::rmdir((config + "/distcomp").c_str());
  ::rmdir(config.c_str());
  ::rmdir(home);
}

TEST_CASE("master: node selection: -x by host on every port, by host:port, or by label")
{
  TempFile peers("lab[1-3]\nlab2 port=7000\n");
  Options o;
  o.peers_file = peers.path();
  // Two workers on lab2: their labels get the port so the output tells them apart.
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) ==
        Labels{"lab1", "lab2:6969", "lab3", "lab2:7000"});
  o.excluded = {"lab2"};
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) == Labels{"lab1", "lab3"});
  o.excluded = {"LAB2:7000"};
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) == Labels{"lab1", "lab2", "lab3"});
  o.excluded = {"lab[1,3]", "nothere"};
  const auto nodes = select_nodes(o, FakeEnvironment{}.get());
  CHECK(labels(nodes) == Labels{"lab2:6969", "lab2:7000"});
  o.excluded = {"lab[1-2]", "lab3"};
  CHECK(selection_error(o) == "-x: every selected node is excluded; nothing to run on");
  o.excluded = {"lab[1-"};
  CHECK(selection_error(o) == "-x: column 4: unclosed '['");
  o.excluded = {"bad host"};
  CHECK(selection_error(o) == "-x: bad host 'bad host'");

  // A label that is no address, such as an INI section name, is excluded by its name.
  TempFile ini("[gpu box 1]\nhost=10.0.0.1\n[gpu box 2]\nhost=10.0.0.2\n");
  o.peers_file = ini.path();
  o.excluded = {"gpu box 1"};
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) == Labels{"gpu box 2"});
  o.excluded = {"10.0.0.2:6969"};
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) == Labels{"gpu box 1"});
}

TEST_CASE("master: node selection: -g picks the peers file's nodes in any of its groups")
{
  TempFile peers("a[1-2] group=cpu\nb1 group=gpu,fast\nb2 group=fast\nc1\n");
  Options o;
  o.peers_file = peers.path();
  o.groups = {"fast"};
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) == Labels{"b1", "b2"});
  o.groups = {"gpu", "cpu"};
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) == Labels{"a1", "a2", "b1"});
  o.excluded = {"a2"};
  o.hosts = {"z1"};
  CHECK(labels(select_nodes(o, FakeEnvironment{}.get())) == Labels{"a1", "b1", "z1"});
  o.groups = {"fast", "nosuch"};
  CHECK(selection_error(o) == "-g: no node in " + peers.path() + " has group 'nosuch'");

  // With -w and no --peers, -g takes its groups from the default peers file.
  o = Options{};
  o.groups = {"cpu"};
  o.hosts = {"z1"};
  FakeEnvironment env;
  env.variables["DISTCOMP_PEERS"] = peers.path();
  CHECK(labels(select_nodes(o, env.get())) == Labels{"a1", "a2", "z1"});
  CHECK(selection_error(o) == "-g: no peers file to take groups from: use --peers FILE");
}

TEST_CASE("master: node selection: bad -w hostlists and too many nodes are one-line errors")
{
  Options o;
  o.hosts = {"lab0[1-"};
  CHECK(selection_error(o) == "-w: column 5: unclosed '['");
  o.hosts = {"x[1-999999999]"};
  CHECK(selection_error(o) == "-w: column 2: expands to more than 100000 hosts");
  o.hosts = {"a[1-60000]", "b[1-60000]"};
  CHECK(selection_error(o) == "-w: more than 100000 nodes");
  o.hosts = {"lab01:99999"};
  CHECK(selection_error(o) == "-w: bad port '99999'");
}

TEST_CASE("master: options take -w, -x and -g as repeated flags, commas inside one value")
{
  std::vector<std::string> args = {"master",  "-w",        "lab[1-3,7],gpu[1-2]:7000",
                                   "--nodes", "z1",        "-x",
                                   "lab2",    "--exclude", "gpu1",
                                   "-g",      "fast",      "--group",
                                   "cpu",     "--cmd",     "true"};
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  const Options o = parse_options(static_cast<int>(argv.size()), argv.data());
  CHECK(o.peers_file.empty());
  CHECK(o.hosts == std::vector<std::string>{"lab[1-3,7],gpu[1-2]:7000", "z1"});
  CHECK(o.excluded == std::vector<std::string>{"lab2", "gpu1"});
  CHECK(o.groups == std::vector<std::string>{"fast", "cpu"});
}
