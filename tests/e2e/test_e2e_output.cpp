// End-to-end: how job output reaches the master's stdout/stderr (whole lines, tagged, complete),
// peers-file labels, `| head`, and a large volume of output.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <csignal>

using namespace dc::test;
using namespace std::chrono_literals;

namespace {

std::string lowercase(std::string s)
{
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

} // namespace

TEST_CASE("e2e: output: two nodes printing at once never mix inside a line and stay in order with "
          "stderr tagged and a partial last line printed once")
{
  Cluster c(2);
  const MasterRun run = c.run({"--cmd", R"sh(for i in $(seq 1 2000); do
  echo "line $i of $DISTCOMP_NODE_ID"
  if [ $((i % 500)) -eq 0 ]; then echo "err $i of $DISTCOMP_NODE_ID" >&2; fi
done
printf partial)sh"});
  REQUIRE(run.exit_code == 0);
  const std::string labels[2] = {c[0].address(), c[1].address()};
  int next[2] = {1, 1};
  int partial[2] = {0, 0};
  std::vector<std::string> bad;
  for (const auto& line : run.stdout_lines()) {
    bool matched = false;
    for (int node = 0; node < 2; ++node) {
      const std::string prefix = labels[node] + " | ";
      if (line.rfind(prefix, 0) != 0) {
        continue;
      }
      const std::string text = line.substr(prefix.size());
      if (text == "partial [no newline]") {
        ++partial[node];
        matched = partial[node] == 1 && next[node] == 2001;
      } else if (text == "line " + std::to_string(next[node]) + " of " + std::to_string(node)) {
        ++next[node];
        matched = true;
      }
    }
    if (!matched && bad.size() < 5) {
      bad.push_back(line);
    }
  }
  std::string first_bad_lines;
  for (const auto& b : bad) {
    first_bad_lines += b + "\n";
  }
  CAPTURE(first_bad_lines);
  CHECK(bad.empty());
  for (int node = 0; node < 2; ++node) {
    CAPTURE(node);
    CHECK(next[node] == 2001);
    CHECK(partial[node] == 1);
    for (int i = 500; i <= 2000; i += 500) {
      CHECK(run.has_stderr_line(labels[node] + " | err " + std::to_string(i) + " of " +
                                std::to_string(node)));
    }
    CHECK(run.summary_of(labels[node]).find("ok") != std::string::npos);
  }
  CHECK(run.err.find(" | line ") == std::string::npos); // stdout never leaks into stderr
  CHECK(run.out.find(" | err ") == std::string::npos);
}

TEST_CASE(
    "e2e: output: labels are the peers lines as written and comments and blank lines are skipped")
{
  Cluster c(2);
  const std::string peers = write_peers(c.dir,
                                        {"# lab machines", "", c[0].address() + "   # first", "   ",
                                         "# " + c[1].address(), c[1].address(), ""},
                                        "commented.txt");
  const MasterRun run = run_master({"--peers", peers, "--key", c.key, "--cmd",
                                    "echo \"node $DISTCOMP_NODE_ID is $DISTCOMP_NODE_NAME\""});
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(c[0].address() + " | node 0 is " + c[0].address()));
  CHECK(run.has_stdout_line(c[1].address() + " | node 1 is " + c[1].address()));
  CHECK(run.stdout_lines().size() == 2);
}

TEST_CASE("e2e: output: a duplicate or malformed peers line is exit 2 naming file:line")
{
  Cluster c(1);
  const std::string dup =
      write_peers(c.dir, {"# one worker", c[0].address(), c[0].address()}, "dup.txt");
  MasterRun run = run_master({"--peers", dup, "--key", c.key, "--cmd", "echo ran"});
  CHECK(run.exit_code == 2);
  CHECK(run.err.find(dup + ":3") != std::string::npos);
  CHECK(lowercase(run.err).find("duplicate") != std::string::npos);
  CHECK(run.out.empty());

  for (const std::string port : {"99999", "12ab", ""}) {
    CAPTURE(port);
    const std::string bad =
        write_peers(c.dir, {c[0].address(), "", "127.0.0.1:" + port}, "bad-port.txt");
    run = run_master({"--peers", bad, "--key", c.key, "--cmd", "echo ran"});
    CHECK(run.exit_code == 2);
    CHECK(run.err.find(bad + ":3") != std::string::npos);
    CHECK(run.out.empty());
  }
  CHECK(c[0].log().find("authenticated") == std::string::npos); // nothing ever ran
}

TEST_CASE("e2e: output: stdout closed early (`| head -n 1`) ends the master quietly with 141")
{
  Cluster c(1);
  const auto started = std::chrono::steady_clock::now();
  const MasterRun run =
      run_master_head(c.args({"--cmd", "echo id=$DISTCOMP_JOB_ID >&2; seq 1 100000"}), 1, 30s);
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(run.exit_code == 141);
  CHECK(run.out == c[0].address() + " | 1\n");
  CHECK(took < 15s);
  CAPTURE(run.err);
  CHECK(lowercase(run.err).find("error") == std::string::npos);
  CHECK(lowercase(run.err).find("broken pipe") == std::string::npos);
  CHECK(run.err.find("EPIPE") == std::string::npos);
  // The job was cancelled with the run, not left printing into the void.
  const std::string id = line_value(run.err, c[0].address() + " | id=");
  if (!id.empty()) {
    CHECK(wait_until([&] { return processes_with_env("DISTCOMP_JOB_ID=" + id).empty(); }));
  }
}

TEST_CASE("e2e: output: 8 MiB of output from one node arrives intact and in order")
{
  Cluster c(1);
  constexpr int k_lines = 131072; // 64 bytes each: 8 MiB
  const std::string zeros(56, '0');
  const MasterRun run = c.run(
      {"--cmd", "seq -f '%06g' 1 " + std::to_string(k_lines) + " | sed 's/$/ " + zeros + "/'"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  const std::string prefix = c[0].address() + " | ";
  const auto lines = run.stdout_lines();
  CHECK(lines.size() == k_lines);
  std::size_t payload = 0;
  int bad = 0;
  char number[32];
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::snprintf(number, sizeof number, "%06zu ", i + 1);
    const std::string expected = prefix + number + zeros;
    if (lines[i] != expected) {
      if (++bad <= 3) {
        CHECK(lines[i] == expected);
      }
    } else {
      payload += lines[i].size() - prefix.size() + 1;
    }
  }
  CHECK(bad == 0);
  CHECK(payload == 8u << 20);
}
