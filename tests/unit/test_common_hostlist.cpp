#include "common/error.hpp"
#include "common/hostlist.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using Names = std::vector<std::string>;

Names expand(std::string_view expression)
{
  return dc::expand_hostlist(expression, "-w");
}

// The message of the ConfigError that expanding `expression` throws ("" if none).
std::string expand_error(std::string_view expression)
{
  try {
    dc::expand_hostlist(expression, "-w");
  } catch (const dc::ConfigError& e) {
    return e.what();
  }
  return "";
}

std::set<std::string> as_set(const Names& names)
{
  return {names.begin(), names.end()};
}

// compress, then expand: the same set of names, each once.
void check_round_trip(const Names& names)
{
  const std::string folded = dc::compress_hostlist(names);
  INFO("folded: ", folded);
  const Names back = expand(folded);
  CHECK(as_set(back) == as_set(names));
  CHECK(back.size() == as_set(names).size());
}

} // namespace

TEST_CASE("hostlist: ranges, lists, padding and plain names expand in the order written")
{
  CHECK(expand("lab01") == Names{"lab01"});
  CHECK(expand("lab[1-3]") == Names{"lab1", "lab2", "lab3"});
  CHECK(expand("lab[08-11]") == Names{"lab08", "lab09", "lab10", "lab11"});
  CHECK(expand("lab[9-11]") == Names{"lab9", "lab10", "lab11"});
  CHECK(expand("lab[1-3,7],gpu[1-2]:7000") ==
        Names{"lab1", "lab2", "lab3", "lab7", "gpu1:7000", "gpu2:7000"});
  CHECK(expand("n[007]") == Names{"n007"});
  CHECK(expand("n[0-2]x") == Names{"n0x", "n1x", "n2x"});
  CHECK(expand("10.0.0.[1-3]") == Names{"10.0.0.1", "10.0.0.2", "10.0.0.3"});
  CHECK(expand("h:[7000,7002]") == Names{"h:7000", "h:7002"}); // textual: ports too
  CHECK(expand("[1-2]") == Names{"1", "2"});
  CHECK(expand(" a , b ") == Names{"a", "b"});
  CHECK(expand("a,a") == Names{"a", "a"}); // duplicates are the caller's business
  CHECK(expand("n[1,01,001]") == Names{"n1", "n01", "n001"});
}

TEST_CASE("hostlist: several groups in one name give the cartesian product, last fastest")
{
  CHECK(expand("r[1-2]n[1-3]") == Names{"r1n1", "r1n2", "r1n3", "r2n1", "r2n2", "r2n3"});
  CHECK(expand("a[1-2]b[01-02]c[5]") == Names{"a1b01c5", "a1b02c5", "a2b01c5", "a2b02c5"});
}

TEST_CASE("hostlist: a leading [v6] is an address, and the port after it belongs to its part")
{
  CHECK(expand("[::1]:7000") == Names{"[::1]:7000"});
  CHECK(expand("[::1]") == Names{"[::1]"});
  CHECK(expand("[fe80::1%eth0]:7000,lab[1-2]") == Names{"[fe80::1%eth0]:7000", "lab1", "lab2"});
  CHECK(expand("[::1]:[7000-7001]") == Names{"[::1]:7000", "[::1]:7001"});
  CHECK(expand("fe80::1,::2") == Names{"fe80::1", "::2"});
  // Commas inside brackets do not split parts; the port belongs to the b part only.
  CHECK(expand("a[1-2],b[1-2]:7000") == Names{"a1", "a2", "b1:7000", "b2:7000"});
  // Not a range list: left to the endpoint parser, which names the bad address.
  CHECK(expand("[10.0.0.1]:80") == Names{"[10.0.0.1]:80"});
  CHECK(expand("[]:80") == Names{"[]:80"});
  CHECK(expand("[::1") == Names{"[::1"});
}

TEST_CASE("hostlist: bad syntax is one line naming what and the column")
{
  CHECK(expand_error("lab0[1-") == "-w: column 5: unclosed '['");
  CHECK(expand_error("a,lab[1-2") == "-w: column 6: unclosed '['");
  CHECK(expand_error("lab]1") == "-w: column 4: unexpected ']'");
  CHECK(expand_error("lab[1-[2]]") == "-w: column 7: '[' inside '[...]'");
  CHECK(expand_error("lab[]") == "-w: column 5: empty range");
  CHECK(expand_error("lab[1,,3]") == "-w: column 7: empty range");
  CHECK(expand_error("lab[1,]") == "-w: column 7: empty range");
  CHECK(expand_error("lab[5-3]") == "-w: column 5: reversed range '5-3'");
  CHECK(expand_error("lab[a-c]") == "-w: column 5: bad range 'a-c' (expected N or N-M)");
  CHECK(expand_error("lab[1-]") == "-w: column 5: bad range '1-' (expected N or N-M)");
  CHECK(expand_error("lab[-1]") == "-w: column 5: bad range '-1' (expected N or N-M)");
  CHECK(expand_error("lab[1-2-3]") == "-w: column 5: bad range '1-2-3' (expected N or N-M)");
  CHECK(expand_error("lab[ 1]") == "-w: column 5: bad range ' 1' (expected N or N-M)");
  CHECK(expand_error("lab[1-010]") ==
        "-w: column 5: zero padding differs between the ends of '1-010'");
  CHECK(expand_error("lab[08-9]") ==
        "-w: column 5: zero padding differs between the ends of '08-9'");
  CHECK(expand_error("n[1234567890123456789]") ==
        "-w: column 3: number too long in '1234567890123456789'");
  CHECK(expand_error("") == "-w: column 1: empty host name");
  CHECK(expand_error("a,,b") == "-w: column 3: empty host name");
  CHECK(expand_error("a,") == "-w: column 3: empty host name");
  CHECK(expand_error("a, ") == "-w: column 4: empty host name");
  CHECK(expand_error("lab[\x01]") == "-w: column 5: bad range '\\x01' (expected N or N-M)");
  // Columns can be made relative to a longer line.
  try {
    dc::expand_hostlist("x[", "peers.txt:4", 3);
    FAIL("no exception");
  } catch (const dc::ConfigError& e) {
    CHECK(std::string(e.what()) == "peers.txt:4: column 4: unclosed '['");
  }
}

TEST_CASE("hostlist: expansion is capped before any name is built")
{
  CHECK(expand_error("x[1-999999999]") == "-w: column 2: expands to more than 100000 hosts");
  CHECK(expand_error("x[1-999999999999999999]") ==
        "-w: column 2: expands to more than 100000 hosts");
  CHECK(expand_error("x[1-1000]y[1-1000]") == "-w: column 1: expands to more than 100000 hosts");
  CHECK(expand_error("a[1-60000],b[1-60000]") ==
        "-w: column 12: expands to more than 100000 hosts");
  CHECK(expand("x[1-100000]").size() == dc::k_max_hostlist_hosts);
  CHECK(expand("x[1-50000],y[1-50000]").size() == dc::k_max_hostlist_hosts);
  CHECK(expand_error("x[1-100000],y") == "-w: column 13: expands to more than 100000 hosts");
}

TEST_CASE("hostlist: compress folds runs, keeps padding and first-seen group order")
{
  Names lab;
  for (int i = 1; i <= 38; ++i) {
    lab.push_back((i < 10 ? "lab0" : "lab") + std::to_string(i));
  }
  lab.push_back("lab40");
  CHECK(dc::compress_hostlist(lab) == "lab[01-38,40]");
  CHECK(dc::compress_hostlist({"lab9", "lab10", "lab11"}) == "lab[9-11]");
  CHECK(dc::compress_hostlist({"lab08", "lab09", "lab10"}) == "lab[08-10]");
  CHECK(dc::compress_hostlist({"lab1", "lab01", "lab2", "lab02"}) == "lab[1-2,01-02]");
  CHECK(dc::compress_hostlist({"gpu2", "lab1", "gpu1", "lab2"}) == "gpu[1-2],lab[1-2]");
  CHECK(dc::compress_hostlist({"alpha", "beta", "alpha"}) == "alpha,beta");
  CHECK(dc::compress_hostlist({"lab3", "lab1", "lab2", "lab3"}) == "lab[1-3]");
  CHECK(dc::compress_hostlist({"lab5"}) == "lab5");
  CHECK(dc::compress_hostlist({}).empty());
  CHECK(dc::compress_hostlist({"r1n1", "r1n2", "r1n3", "r2n1", "r2n2", "r2n3"}) == "r[1-2]n[1-3]");
  CHECK(dc::compress_hostlist({"r1n1", "r1n2", "r2n1"}) == "r1n[1-2],r2n1");
  CHECK(dc::compress_hostlist({"lab01:7000", "lab02:7000", "lab03:7001"}) ==
        "lab[01-02]:7000,lab03:7001");
  CHECK(dc::compress_hostlist({"h:7000", "h:7001"}) == "h:[7000-7001]");
  CHECK(dc::compress_hostlist({"10.0.0.1", "10.0.0.2", "10.0.1.1"}) == "10.0.0.[1-2],10.0.1.1");
  CHECK(dc::compress_hostlist({"[::1]:7000", "[::1]:7001", "[::2]:7000"}) ==
        "[::1]:[7000-7001],[::2]:7000");
  CHECK(dc::compress_hostlist({"fe80::1", "fe80::2"}) == "fe80::1,fe80::2");
  CHECK(dc::compress_hostlist({"n1234567890123456789", "n1234567890123456790"}) ==
        "n1234567890123456789,n1234567890123456790");
}

TEST_CASE("hostlist: expand(compress(x)) is x as a set")
{
  check_round_trip({"lab01", "lab02", "lab10", "lab9", "lab010", "lab1", "lab001", "lab0"});
  check_round_trip({"a", "b", "c1", "c01", "c001", "c2", "c10", "c100", "c099", "c0100"});
  check_round_trip({"r1n1", "r1n2", "r2n1", "r2n2", "r3n1", "x", "r3n02"});
  check_round_trip({"lab01:7000", "lab01:7001", "lab02:7000", "h", "h:1", "10.1.2.3:80"});
  check_round_trip({"[::1]:7000", "[::1]:7001", "[::1]", "[fe80::1%eth0]:7000", "::1", "fe80::2"});
  check_round_trip({"1", "2", "3", "05", "06"});
  check_round_trip({"node-a-1", "node-b-1", "node-a-2", "a.b.c", "x_9"});

  // Random sets of names with up to three numbers, some zero-padded.
  std::mt19937 random(12345);
  for (int round = 0; round < 200; ++round) {
    Names names;
    const int n = 1 + int(random() % 60);
    for (int i = 0; i < n; ++i) {
      std::string name = random() % 2 ? "lab" : "gpu";
      const int numbers = int(random() % 4);
      for (int k = 0; k < numbers; ++k) {
        const unsigned value = random() % 120;
        std::string digits = std::to_string(value);
        if (random() % 3 == 0) {
          digits.insert(0, 1 + random() % 2, '0');
        }
        name += digits + (k + 1 < numbers ? (random() % 2 ? "n" : "-") : "");
      }
      if (random() % 4 == 0) {
        name += ":" + std::to_string(7000 + random() % 3);
      }
      names.push_back(name);
    }
    check_round_trip(names);
  }
}

TEST_CASE("hostlist: compressing the largest expansion is fast and exact")
{
  const Names names = expand("node[000001-100000]");
  CHECK(dc::compress_hostlist(names) == "node[000001-100000]");
}
