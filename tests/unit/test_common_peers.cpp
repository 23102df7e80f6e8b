#include "common/error.hpp"
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
