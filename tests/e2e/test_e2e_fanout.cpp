// End-to-end: --fanout bounds the nodes connecting, authenticating or uploading at once, never a
// job that has been uploaded, and an interrupt reports the nodes it kept from starting.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <csignal>

using namespace dc::test;
using namespace std::chrono_literals;

namespace {

// Where the --json event `event` of node `label` starts on stdout (npos if absent).
std::size_t event_at(const MasterRun& run, const std::string& event, const std::string& label)
{
  return run.out.find("{\"event\":\"" + event + "\",\"node\":\"" + label + "\"");
}

} // namespace

TEST_CASE("e2e: fanout: with --fanout 1 a node's job starts once its upload is done, while the "
          "node before it still runs")
{
  Cluster c(2);
  TempDir meet;
  write_file(meet / "payload.txt", "shipped\n");
  // Whichever job starts first waits (up to 20 s) for the other one to start. If a --fanout slot
  // were held for a node's whole run, the second node could not start until the first ended.
  const std::string rendezvous =
      "cat payload.txt; R='" + meet.path() +
      "'; if mkdir \"$R/first\" 2>/dev/null; then i=0; "
      "while [ ! -e \"$R/second\" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; "
      "if [ -e \"$R/second\" ]; then echo met; else echo alone; exit 1; fi; "
      "else touch \"$R/second\"; echo second; fi";
  const MasterRun run =
      c.run({"--fanout", "1", "--send", meet / "payload.txt", "--cmd", rendezvous}, 60s);
  CAPTURE(run.out);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  const std::string out = run.out;
  CHECK(contains(out, " | met\n"));
  CHECK(contains(out, " | second\n"));
  CHECK(!contains(out, "alone"));
  for (std::size_t i = 0; i < c.size(); ++i) {
    CHECK(run.has_stdout_line(c[i].address() + " | shipped"));
  }
}

TEST_CASE("e2e: fanout: --fanout 1 connects one node at a time, --fanout 2 two")
{
  Cluster c(1);
  SilentListener silent; // holds its slot until the connect timeout
  const std::string peers = write_peers(c.dir, {silent.address(), c[0].address()}, "silent.txt");
  const auto run_with = [&](const std::string& fanout) {
    return run_master({"--peers", peers, "--key", c.key, "--connect-timeout", "1", "--fanout",
                       fanout, "--json", "--cmd", "true"},
                      60s);
  };

  const MasterRun one = run_with("1");
  CAPTURE(one.out);
  CHECK(one.exit_code == 3);
  const std::size_t silent_gave_up = event_at(one, "exit", silent.address());
  const std::size_t worker_connected = event_at(one, "connected", c[0].address());
  REQUIRE(silent_gave_up != std::string::npos);
  REQUIRE(worker_connected != std::string::npos);
  CHECK(silent_gave_up < worker_connected);

  const MasterRun two = run_with("2");
  CAPTURE(two.out);
  CHECK(two.exit_code == 3);
  REQUIRE(event_at(two, "connected", c[0].address()) != std::string::npos);
  CHECK(event_at(two, "connected", c[0].address()) < event_at(two, "exit", silent.address()));
}

TEST_CASE("e2e: fanout: Ctrl-C while a node waits for a --fanout slot reports it as not started")
{
  Cluster c(2);
  SilentListener silent;
  const std::string peers =
      write_peers(c.dir, {c[0].address(), silent.address(), c[1].address()}, "three.txt");
  MasterProcess master({"--peers", peers, "--key", c.key, "--connect-timeout", "30", "--fanout",
                        "1", "--cmd", "echo started; sleep 300"});
  // The first node runs its job; its slot went on to the silent node; the last one waits.
  REQUIRE(master.wait_stdout(c[0].address() + " | started\n", 20s));
  master.signal(SIGINT);
  const MasterRun run = master.wait(30s);
  CAPTURE(run.err);
  CHECK(run.exit_code == 130);
  CHECK(contains(run.summary_of(c[0].address()), "cancelled"));
  CHECK(contains(run.summary_of(silent.address()), "cancelled"));
  const std::string waiting = run.summary_of(c[1].address());
  CHECK(contains(waiting, "cancelled"));
  CHECK(contains(waiting, "not started"));
  CHECK(!contains(run.out, c[1].address() + " | started"));
}
