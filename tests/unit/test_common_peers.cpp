#include "common/error.hpp"
#include "common/hostlist.hpp"
#include "common/peers.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

namespace {

// The message of the ConfigError that parsing `text` as "peers.txt" throws ("" if none).
std::string peers_error(std::string_view text)
{
  try {
    dc::parse_peers(text, "peers.txt");
  } catch (const dc::ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string endpoint_error(std::string_view spec)
{
  try {
    dc::parse_endpoint(spec, "--bind");
  } catch (const dc::ConfigError& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST_CASE("peers: every accepted form gives host, port, label and index")
{
  const auto peers = dc::parse_peers("lab01\n"
                                     "lab02:7000\n"
                                     "10.0.0.3\n"
                                     "10.0.0.4:1\n"
                                     "[::1]:6970\n"
                                     "[fe80::1%eth0]\n"
                                     "fe80::2\n"
                                     "::ffff:10.0.0.9\n"
                                     "node_7.lab-b.example.org:65535\n",
                                     "peers.txt");
  REQUIRE(peers.size() == 9);
  CHECK(peers[0].host == "lab01");
  CHECK(peers[0].port == dc::k_default_port);
  CHECK(peers[0].label == "lab01");
  CHECK(peers[1].host == "lab02");
  CHECK(peers[1].port == 7000);
  CHECK(peers[1].label == "lab02:7000");
  CHECK(peers[2].host == "10.0.0.3");
  CHECK(peers[3].port == 1);
  CHECK(peers[4].host == "::1");
  CHECK(peers[4].port == 6970);
  CHECK(peers[4].label == "[::1]:6970");
  CHECK(peers[5].host == "fe80::1%eth0");
  CHECK(peers[5].port == 6969);
  CHECK(peers[6].host == "fe80::2");
  CHECK(peers[6].port == 6969);
  CHECK(peers[7].host == "::ffff:10.0.0.9");
  CHECK(peers[8].port == 65535);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    CHECK(peers[i].index == i);
  }
}

TEST_CASE("peers: comments, blank lines, whitespace and CRLF are ignored")
{
  const auto peers = dc::parse_peers("\xef\xbb\xbf# the lab\n"
                                     "\n"
                                     "   \t\n"
                                     "  lab01  \t# rack 1\n"
                                     "\tlab02:7000\r\n"
                                     "   # lab03 is down\n"
                                     "[::1]:7001 #v6",
                                     "peers.txt");
  REQUIRE(peers.size() == 3);
  CHECK(peers[0].label == "lab01");
  CHECK(peers[1].label == "lab02:7000");
  CHECK(peers[1].port == 7000);
  CHECK(peers[2].label == "[::1]:7001");
  CHECK(peers[2].host == "::1");
  CHECK(peers[2].index == 2);
  // '#' glued to a name is not a comment: it makes the name invalid, on the right line.
  CHECK(peers_error("lab01\n\nlab05#x\n") == "peers.txt:3: bad host 'lab05#x'");
}

TEST_CASE("peers: the last line needs no newline")
{
  const auto peers = dc::parse_peers("a\nb", "peers.txt");
  REQUIRE(peers.size() == 2);
  CHECK(peers[1].host == "b");
}

TEST_CASE("peers: bad ports name file, line and the port")
{
  CHECK(peers_error("lab01\nlab02\nlab03:99999\n") == "peers.txt:3: bad port '99999'");
  CHECK(peers_error("lab01:0") == "peers.txt:1: bad port '0'");
  CHECK(peers_error("lab01:65536") == "peers.txt:1: bad port '65536'");
  CHECK(peers_error("# x\nlab01:abc") == "peers.txt:2: bad port 'abc'");
  CHECK(peers_error("lab01:") == "peers.txt:1: bad port ''");
  CHECK(peers_error("lab01:-1") == "peers.txt:1: bad port '-1'");
  CHECK(peers_error("lab01:+80") == "peers.txt:1: bad port '+80'");
  CHECK(peers_error("lab01:00000000080") == "peers.txt:1: bad port '00000000080'");
  CHECK(peers_error("[::1]:70000") == "peers.txt:1: bad port '70000'");
  CHECK(peers_error("[::1]:") == "peers.txt:1: bad port ''");
  CHECK(dc::parse_peers("lab01:08080", "p")[0].port == 8080);
}

TEST_CASE("peers: bad hosts and IPv6 forms name file and line")
{
  CHECK(peers_error("lab 01") == "peers.txt:1: bad host 'lab 01'");
  CHECK(peers_error("a\nb\nlab/01") == "peers.txt:3: bad host 'lab/01'");
  CHECK(peers_error(":6969") == "peers.txt:1: missing host");
  CHECK(peers_error("user@lab01") == "peers.txt:1: bad host 'user@lab01'");
  CHECK(peers_error(std::string(254, 'a')) ==
        "peers.txt:1: bad host '" + std::string(254, 'a') + "'");
  CHECK(peers_error("[::1") == "peers.txt:1: missing ']' in '[::1'");
  CHECK(peers_error("[]:80") == "peers.txt:1: bad IPv6 address ''");
  CHECK(peers_error("[10.0.0.1]:80") == "peers.txt:1: bad IPv6 address '10.0.0.1'");
  CHECK(peers_error("[lab01]") == "peers.txt:1: bad IPv6 address 'lab01'");
  CHECK(peers_error("[::1]x") == "peers.txt:1: unexpected 'x' after ']' in '[::1]x'");
  CHECK(peers_error("[fe80::1%]") == "peers.txt:1: bad IPv6 address 'fe80::1%'");
  CHECK(peers_error("[fe80::1%a/b]") == "peers.txt:1: bad IPv6 address 'fe80::1%a/b'");
  CHECK(peers_error("1:2:3:4:5:6:7:8:9") ==
        "peers.txt:1: bad IPv6 address '1:2:3:4:5:6:7:8:9' (write [address]:port to give a port)");
  CHECK(peers_error("lab01:80:90") ==
        "peers.txt:1: bad IPv6 address 'lab01:80:90' (write [address]:port to give a port)");
  // Control bytes are escaped so the message stays one printable line.
  CHECK(peers_error("lab\x01") == "peers.txt:1: bad host 'lab\\x01'");
}

TEST_CASE("peers: duplicates after normalisation name both lines")
{
  CHECK(peers_error("lab00\nlab01\nlab02\n\nlab01\n") ==
        "peers.txt:5: duplicate peer 'lab01' (first on line 2)");
  CHECK(peers_error("lab01\nlab01:6969") ==
        "peers.txt:2: duplicate peer 'lab01:6969' (first on line 1)");
  CHECK(peers_error("LAB01:7000\nlab01:7000") ==
        "peers.txt:2: duplicate peer 'lab01:7000' (first on line 1)");
  CHECK(peers_error("::1\n[0:0::1]:6969") ==
        "peers.txt:2: duplicate peer '[0:0::1]:6969' (first on line 1)");
  CHECK(peers_error("[FE80::1%eth0]\nfe80::1%eth0") ==
        "peers.txt:2: duplicate peer 'fe80::1%eth0' (first on line 1)");
  // Same host on another port, or another zone, is another worker.
  CHECK(dc::parse_peers("lab01\nlab01:7000\nfe80::1%eth0\nfe80::1%eth1", "p").size() == 4);
}

TEST_CASE("peers: a file without peers is an error")
{
  CHECK(peers_error("") == "peers.txt: no peers");
  CHECK(peers_error("\n\n# nobody\n   \n") == "peers.txt: no peers");
}

TEST_CASE("peers: load_peers_file reads a file and reports unreadable paths")
{
  char path[] = "/tmp/dc_peers_XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "lab01\nlab02:7000\n";
  REQUIRE(::write(fd, text.data(), text.size()) == ssize_t(text.size()));
  ::close(fd);
  const auto peers = dc::load_peers_file(path);
  REQUIRE(peers.size() == 2);
  CHECK(peers[1].port == 7000);

  REQUIRE(::truncate(path, 0) == 0);
  try {
    dc::load_peers_file(path);
    FAIL("no exception");
  } catch (const dc::ConfigError& e) {
    CHECK(std::string(e.what()) == std::string(path) + ": no peers");
  }
  ::unlink(path);

  try {
    dc::load_peers_file("/nonexistent/peers.txt");
    FAIL("no exception");
  } catch (const dc::ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "/nonexistent/peers.txt: cannot read: No such file or directory");
  }
  try {
    dc::load_peers_file("/tmp");
    FAIL("no exception");
  } catch (const dc::ConfigError& e) {
    CHECK(std::string(e.what()) == "/tmp: cannot read: Is a directory");
  }
}

TEST_CASE("peers: parse_endpoint accepts one spec and names `what` in errors")
{
  const dc::Peer p = dc::parse_endpoint("  [::]:7000 ", "--bind");
  CHECK(p.host == "::");
  CHECK(p.port == 7000);
  CHECK(p.label == "[::]:7000");
  CHECK(dc::parse_endpoint("0.0.0.0", "--bind").port == dc::k_default_port);
  CHECK(endpoint_error("") == "--bind: empty address");
  CHECK(endpoint_error("host:x") == "--bind: bad port 'x'");
  CHECK(endpoint_error("[::1]:99999") == "--bind: bad port '99999'");
}

TEST_CASE("peers: a line is a hostlist whose attributes go to every host of it")
{
  const auto peers = dc::parse_peers("lab[01-03] port=7000 slots=8 gpus=4 group=cpu,fast\n"
                                     "gpu[1-2]:7100,lab04   # two GPU boxes and one more\n"
                                     "  [::1]:7200\tgroup=v6 gpus=0\n",
                                     "peers.txt");
  REQUIRE(peers.size() == 7);
  CHECK(peers[0].label == "lab01"); // port= does not change the label
  CHECK(peers[0].host == "lab01");
  CHECK(peers[0].port == 7000);
  CHECK(peers[0].slots == 8);
  CHECK(peers[0].gpus == 4);
  CHECK(peers[0].groups == std::vector<std::string>{"cpu", "fast"});
  CHECK(peers[2].label == "lab03");
  CHECK(peers[2].groups == peers[0].groups);
  CHECK(peers[3].label == "gpu1:7100"); // a port written in the host part is in the label
  CHECK(peers[3].port == 7100);
  CHECK(peers[3].slots == 1);
  CHECK(peers[3].gpus == 0);
  CHECK(peers[3].groups.empty());
  CHECK(peers[5].label == "lab04");
  CHECK(peers[5].port == dc::k_default_port);
  CHECK(peers[6].label == "[::1]:7200");
  CHECK(peers[6].host == "::1");
  CHECK(peers[6].groups == std::vector<std::string>{"v6"});
  for (std::size_t i = 0; i < peers.size(); ++i) {
    CHECK(peers[i].index == i);
  }
  // The same host on two ports is two workers.
  CHECK(dc::parse_peers("lab01 port=7000\nlab01 port=7001", "p").size() == 2);
}

TEST_CASE("peers: bad attributes and hostlists name file and line")
{
  CHECK(peers_error("lab01\nlab02 color=red") ==
        "peers.txt:2: unknown attribute 'color' (expected port, slots, gpus or group)");
  CHECK(peers_error("lab01 slots=0") == "peers.txt:1: bad slots value '0'");
  CHECK(peers_error("lab01 slots=abc") == "peers.txt:1: bad slots value 'abc'");
  CHECK(peers_error("lab01 slots=") == "peers.txt:1: bad slots value ''");
  CHECK(peers_error("lab01 gpus=-1") == "peers.txt:1: bad gpus value '-1'");
  CHECK(peers_error("lab01 gpus=99999999") == "peers.txt:1: bad gpus value '99999999'");
  CHECK(peers_error("lab01 port=0") == "peers.txt:1: bad port '0'");
  CHECK(peers_error("lab01 group=") == "peers.txt:1: bad group list ''");
  CHECK(peers_error("lab01 group=a,,b") == "peers.txt:1: bad group list 'a,,b'");
  CHECK(peers_error("lab01 group=a/b") == "peers.txt:1: bad group list 'a/b'");
  CHECK(peers_error("lab01 port=7000 port=7001") == "peers.txt:1: attribute 'port' given twice");
  CHECK(peers_error("lab01 port=7000 junk") ==
        "peers.txt:1: expected key=value after the hosts, got 'junk'");
  CHECK(peers_error("lab01:7000 port=7001") ==
        "peers.txt:1: port given twice: 'lab01:7000' and port=7001");
  CHECK(peers_error("x\nlab[01-") == "peers.txt:2: column 4: unclosed '['");
  CHECK(peers_error("  lab[3-1] slots=2") == "peers.txt:1: column 7: reversed range '3-1'");
  CHECK(peers_error("port=7000") == "peers.txt:1: column 1: empty host name");
  CHECK(peers_error("lab[1-2],bad/host") == "peers.txt:1: bad host 'bad/host'");
}

TEST_CASE("peers: duplicates from hostlists name both lines, and the total is capped")
{
  CHECK(peers_error("lab[01-03]\n\nlab02") ==
        "peers.txt:3: duplicate peer 'lab02' (first on line 1)");
  CHECK(peers_error("lab[1-2],LAB1") == "peers.txt:1: duplicate peer 'LAB1' (first on line 1)");
  CHECK(peers_error("lab01 port=7000\nlab01:7000") ==
        "peers.txt:2: duplicate peer 'lab01:7000' (first on line 1)");
  CHECK(peers_error("a[1-60000]\nb[1-60000]") == "peers.txt:2: more than 100000 peers");
  CHECK(dc::parse_peers("a[1-100000]", "p").size() == dc::k_max_hostlist_hosts);
}

TEST_CASE("peers: the INI layout of Python cluster scripts maps sections to nodes")
{
  const auto peers = dc::parse_peers("; cluster for the sweep script\n"
                                     "# written by hand\n"
                                     "[server1]\n"
                                     "host = 10.0.0.1\n"
                                     "scheduler_port = 8786\n"
                                     "gpus = 2\n"
                                     "workdir = /scratch/sweep\n"
                                     "\n"
                                     "[server2]\n"
                                     "Host: lab02.example.org\n"
                                     "port=7000\n"
                                     "scheduler_port=8786\n"
                                     "notes = first line of a long note\n"
                                     "   that continues here\n"
                                     "[server3]\n"
                                     "  host = ::1\n"
                                     "[DEFAULT]\n"
                                     "gpus = 1\n"
                                     "python = /usr/bin/python3\n",
                                     "cluster.ini");
  REQUIRE(peers.size() == 3);
  CHECK(peers[0].label == "server1");
  CHECK(peers[0].host == "10.0.0.1");
  CHECK(peers[0].port == 8786); // scheduler_port when there is no port
  CHECK(peers[0].gpus == 2);
  CHECK(peers[1].label == "server2");
  CHECK(peers[1].host == "lab02.example.org");
  CHECK(peers[1].port == 7000); // port wins over scheduler_port
  CHECK(peers[1].gpus == 1);    // from [DEFAULT], wherever it stands
  CHECK(peers[2].label == "server3");
  CHECK(peers[2].host == "::1");
  CHECK(peers[2].port == dc::k_default_port);
  CHECK(peers[2].index == 2);
  CHECK(peers[2].slots == 1);

  // A first line that is an IPv6 peer is not a section header.
  CHECK(dc::parse_peers("# c\n[::1]:7000\nlab01", "p").size() == 2);
  CHECK(dc::parse_peers("[fe80::1]", "p")[0].host == "fe80::1");
}

TEST_CASE("peers: INI errors name file and line, while other keys are never an error")
{
  const auto ini_error = [](std::string_view text) {
    try {
      dc::parse_peers(text, "c.ini");
    } catch (const dc::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(ini_error("[s1]\nport=7000\nanything = at all\n") ==
        "c.ini:1: section '[s1]' has no host=");
  CHECK(ini_error("[s1]\nhost=a\n\n[s1]\nhost=b") ==
        "c.ini:4: duplicate section '[s1]' (first on line 1)");
  CHECK(ini_error("[s1]\nhost=a\n[s2]\nhost=A") ==
        "c.ini:3: duplicate peer 's2' (first on line 1)");
  CHECK(ini_error("[s1]\nhost=a\nport=99999") == "c.ini:3: bad port '99999'");
  CHECK(ini_error("[s1]\nhost=a\nscheduler_port=x") == "c.ini:3: bad port 'x'");
  CHECK(ini_error("[s1]\nhost=a\ngpus=x") == "c.ini:3: bad gpus value 'x'");
  CHECK(ini_error("[s1]\nhost=a b") == "c.ini:2: bad host 'a b'");
  CHECK(ini_error("[s1]\nhost=") == "c.ini:2: empty address");
  CHECK(ini_error("[s1]\nhost=a\n  b") == "c.ini:3: host= cannot continue on another line");
  CHECK(ini_error("[s1]\nhost=a\nHOST=b") == "c.ini:3: duplicate key 'host' (first on line 2)");
  CHECK(ini_error("[s1]\nhost=a\njunk line") ==
        "c.ini:3: expected [section] or key = value, got 'junk line'");
  CHECK(ini_error("[s1]\nhost=a:7000\nport=7001") ==
        "c.ini:3: port given twice: host=a:7000 and port=7001");
  CHECK(ini_error("[DEFAULT]\nport=1\n") == "c.ini: no peers");
  CHECK(ini_error("[s1]\nhost=a\nextra = 1\n  2\nmode: fast\n").empty());
  std::string many;
  for (std::size_t i = 0; i <= dc::k_max_hostlist_hosts; ++i) {
    many += "[s" + std::to_string(i) + "]\nhost=h" + std::to_string(i) + "\n";
  }
  CHECK(ini_error(many) == "c.ini:200001: more than 100000 peers");
}

TEST_CASE("peers: peers.txt.example stays valid and shows attributes")
{
  const auto peers = dc::load_peers_file(DC_SOURCE_DIR "/peers.txt.example");
  REQUIRE(peers.size() > 4);
  bool has_attributes = false;
  for (const auto& p : peers) {
    has_attributes = has_attributes || !p.groups.empty();
  }
  CHECK(has_attributes);
}
