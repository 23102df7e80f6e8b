// End-to-end: the output views (--blocks, --gather [--live], --outdir, --json), colors and the
// straggler line, with real workers and the real master.

#include "common/hostlist.hpp"
#include "tests/support/processes.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

using namespace dc::test;
using namespace std::chrono_literals;

namespace {

std::set<std::string> labels_of(Cluster& c)
{
  std::set<std::string> out;
  for (std::size_t i = 0; i < c.size(); ++i) {
    out.insert(c[i].address());
  }
  return out;
}

// The hostlists of the "----- HOSTLIST (N nodes...) -----" headers in `out`, expanded.
std::vector<std::set<std::string>> gather_groups(const std::string& out)
{
  std::vector<std::set<std::string>> groups;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("----- ", 0) == 0) {
      const std::string hosts = line.substr(6, line.find(" (") - 6);
      const auto names = dc::expand_hostlist(hosts, "header");
      groups.emplace_back(names.begin(), names.end());
    }
  }
  return groups;
}

} // namespace

TEST_CASE("e2e: views: --blocks prints each node's stdout as one block after a header, stderr "
          "live and tagged")
{
  Cluster c(2);
  const MasterRun run = c.run({"--blocks", "--cmd",
                               "for i in 1 2 3; do echo \"n$DISTCOMP_NODE_ID line $i\"; done; "
                               "echo \"problem $DISTCOMP_NODE_ID\" >&2; exit $DISTCOMP_NODE_ID"});
  CAPTURE(run.out);
  CHECK(run.exit_code == 1);
  for (std::size_t node = 0; node < 2; ++node) {
    const std::string header =
        "----- " + c[node].address() + " (exit " + std::to_string(node) + ", ";
    const auto at = run.out.find(header);
    REQUIRE(at != std::string::npos);
    const std::string n = "n" + std::to_string(node);
    const std::string block = n + " line 1\n" + n + " line 2\n" + n + " line 3\n";
    CHECK(run.out.compare(run.out.find('\n', at) + 1, block.size(), block) == 0);
    CHECK(run.has_stderr_line(c[node].address() + " | problem " + std::to_string(node)));
  }
  CHECK(run.stdout_lines().size() == 8); // two headers, six lines, nothing else on stdout
}

TEST_CASE("e2e: views: --gather merges identical outputs under a hostlist, the majority first")
{
  Cluster c(4);
  const MasterRun run = c.run(
      {"--gather", "--cmd",
       "echo same; if [ \"$DISTCOMP_NODE_ID\" = 2 ]; then echo different; else echo same; fi"});
  CAPTURE(run.out);
  CHECK(run.exit_code == 0);
  const auto groups = gather_groups(run.out);
  REQUIRE(groups.size() == 2);
  std::set<std::string> majority = labels_of(c);
  majority.erase(c[2].address());
  CHECK(groups[0] == majority);
  CHECK(groups[1] == std::set<std::string>{c[2].address()});
  CHECK(run.out.find("(3 nodes) -----\nsame\nsame\n-----") != std::string::npos);
  CHECK(run.out.find("(1 node) -----\nsame\ndifferent\n") != std::string::npos);
}

TEST_CASE("e2e: views: --gather --live merges line by line")
{
  Cluster c(3);
  const MasterRun run = c.run(
      {"--gather", "--live", "--cmd", "echo first; echo \"node $DISTCOMP_NODE_ID\"; echo last"});
  CAPTURE(run.out);
  CHECK(run.exit_code == 0);
  const auto lines = run.stdout_lines();
  REQUIRE(lines.size() == 5); // first, three different lines, last
  const auto all = labels_of(c);
  for (std::size_t k : {std::size_t(0), std::size_t(4)}) {
    const std::string hosts = lines[k].substr(0, lines[k].find(" | "));
    const auto names = dc::expand_hostlist(hosts, "line");
    CHECK(std::set<std::string>(names.begin(), names.end()) == all);
  }
  CHECK(lines[0].ends_with(" | first"));
  CHECK(lines[4].ends_with(" | last"));
  for (std::size_t node = 0; node < 3; ++node) {
    CHECK(std::count(lines.begin(), lines.end(),
                     c[node].address() + " | node " + std::to_string(node)) == 1);
  }
}

TEST_CASE("e2e: views: --outdir writes each node's raw stdout and stderr to its own files")
{
  Cluster c(2);
  const std::string dir = c.dir.path() + "/out";
  const MasterRun run =
      c.run({"--outdir", dir, "--cmd", "printf 'a\\nno newline %s' $DISTCOMP_NODE_ID; echo e >&2"});
  CHECK(run.exit_code == 0);
  CHECK(run.out.empty());
  for (std::size_t node = 0; node < 2; ++node) {
    const std::string base = dir + "/" + c[node].address();
    CHECK(read_file(base + ".out") == "a\nno newline " + std::to_string(node));
    CHECK(read_file(base + ".err") == "e\n");
  }
  const MasterRun bad = c.run({"--outdir", "/proc/no/such/dir", "--cmd", "true"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("--outdir /proc/no/such/dir") != std::string::npos);
}

TEST_CASE("e2e: views: --json puts one valid JSON event per line on stdout, jq reads it")
{
  Cluster c(2);
  const std::string out_file = c.dir.path() + "/events.json";
  const MasterRun run = c.run({"--json", "--cmd",
                               "echo \"hi $DISTCOMP_NODE_ID\"; printf '\\377\\n'; echo err >&2; "
                               "exit $DISTCOMP_NODE_ID"});
  CHECK(run.exit_code == 1);
  write_file(out_file, run.out);
  std::map<std::string, int> events;
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    const auto event = nlohmann::json::parse(line);
    ++events[event.at("event").get<std::string>()];
    if (event["event"] == "output" && event["stream"] == "stdout" && !event.contains("line")) {
      CHECK(event["line_base64"] == "/w==");
    }
  }
  CHECK(events["connected"] == 2);
  CHECK(events["output"] == 6);
  CHECK(events["exit"] == 2);
  CHECK(events["summary"] == 1);
  // The same through jq, as users will read it.
  const std::string jq = "jq -r 'select(.event==\"exit\") | \"\\(.node) \\(.exit_code)\"' " +
                         out_file + " > " + out_file + ".txt";
  REQUIRE(std::system(jq.c_str()) == 0);
  const std::string exits = read_file(out_file + ".txt");
  CHECK(exits.find(c[0].address() + " 0\n") != std::string::npos);
  CHECK(exits.find(c[1].address() + " 1\n") != std::string::npos);
}

TEST_CASE("e2e: views: labels are colored only when asked, and stragglers are named")
{
  Cluster c(3);
  const MasterRun plain = c.run({"--cmd", "echo x"});
  CHECK(plain.out.find('\x1b') == std::string::npos); // a pipe is not a terminal
  const MasterRun colored = c.run({"--color", "always", "--cmd", "echo x"});
  CHECK(colored.out.find("\x1b[") != std::string::npos);
  CHECK(colored.out.find(c[0].address() + "\x1b[0m | x\n") != std::string::npos);
  const MasterRun slow =
      c.run({"--cmd", "if [ \"$DISTCOMP_NODE_ID\" = 1 ]; then sleep 1; fi; echo done"});
  CHECK(slow.exit_code == 0);
  const std::string line = line_value(slow.err, "stragglers (over 2x the median run time ");
  CAPTURE(slow.err);
  CHECK(line.find(c[1].address()) != std::string::npos); // which others count is unit-tested
}
