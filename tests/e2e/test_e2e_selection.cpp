// End-to-end: choosing nodes with -w hostlists, -x, -g groups from a peers file with attributes,
// and $DISTCOMP_PEERS or ~/.config/distcomp/peers as the default peers file.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

using namespace dc::test;

namespace {

// Every node prints its id and the node count; the output is "LABEL | id=I n=N".
const std::string k_print_id = "echo id=$DISTCOMP_NODE_ID n=$DISTCOMP_N_NODES";

// The master's arguments for cluster `c` without --peers, then `more`.
std::vector<std::string> without_peers(const Cluster& c, const std::vector<std::string>& more)
{
  std::vector<std::string> out = {"--key", c.key, "--connect-timeout", "5"};
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

// The master with an environment that offers no default peers file except what `env` adds.
MasterRun run_isolated(const Cluster& c, const std::vector<std::string>& args,
                       std::vector<std::string> env = {})
{
  for (const std::string& fallback : {"HOME=" + c.dir.path(), std::string("DISTCOMP_PEERS=")}) {
    const std::string name = fallback.substr(0, fallback.find('=') + 1);
    if (std::none_of(env.begin(), env.end(),
                     [&](const auto& kv) { return kv.starts_with(name); })) {
      env.push_back(fallback);
    }
  }
  return run_master(args, std::chrono::seconds(60), "", env);
}

// Stdout lines, sorted: nodes print concurrently, so their order is not fixed.
std::vector<std::string> sorted_stdout(const MasterRun& run)
{
  auto lines = run.stdout_lines();
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::vector<std::string> sorted(std::vector<std::string> lines)
{
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::string port(const WorkerProcess& w)
{
  return std::to_string(w.port());
}

bool one_error_line(const MasterRun& r, const std::string& message)
{
  return r.exit_code == 2 && r.out.empty() && r.err == "master: error: " + message + "\n";
}

} // namespace

TEST_CASE("e2e: selection: -w hostlists choose the workers, in order, without a peers file")
{
  Cluster c(3);
  // A comma list, then a second -w with a bracket list of ports that repeats both; the default
  // peers file (all three workers) is not read when -w is given.
  const MasterRun run = run_isolated(
      c,
      without_peers(c, {"-w", c[2].address() + "," + c[0].address(), "-w",
                        "127.0.0.1:[" + port(c[0]) + "," + port(c[2]) + "]", "--cmd", k_print_id}),
      {"DISTCOMP_PEERS=" + c.peers});
  CHECK(run.exit_code == 0);
  CHECK(sorted_stdout(run) ==
        sorted({c[2].address() + " | id=0 n=2", c[0].address() + " | id=1 n=2"}));
  CHECK(run.err.find(c[1].address()) == std::string::npos);
}

TEST_CASE("e2e: selection: -x leaves out one worker and the others are renumbered")
{
  Cluster c(3);
  MasterRun run = c.run({"-x", c[1].address(), "--cmd", k_print_id});
  CHECK(run.exit_code == 0);
  CHECK(sorted_stdout(run) ==
        sorted({c[0].address() + " | id=0 n=2", c[2].address() + " | id=1 n=2"}));
  CHECK(run.err.find(c[1].address()) == std::string::npos);

  // A host without a port names it on every port: here, every worker.
  run = c.run({"-x", "127.0.0.1", "--cmd", k_print_id});
  CHECK(one_error_line(run, "-x: every selected node is excluded; nothing to run on"));
}

TEST_CASE("e2e: selection: -g picks a peers file's nodes by their group= attribute")
{
  Cluster c(3);
  const std::string peers = c.dir / "groups.txt";
  write_file(peers, "# lab with groups\n" + c[0].address() + " group=cpu\n" +
                        "127.0.0.1 port=" + port(c[1]) + " group=gpu,fast slots=4 gpus=2\n" +
                        c[2].address() + "  group=cpu,fast\n");
  MasterRun run =
      run_isolated(c, without_peers(c, {"--peers", peers, "-g", "fast", "--cmd", k_print_id}));
  CHECK(run.exit_code == 0);
  // port= sets the port and leaves the label as written.
  CHECK(sorted_stdout(run) == sorted({"127.0.0.1 | id=0 n=2", c[2].address() + " | id=1 n=2"}));

  run = run_isolated(c, without_peers(c, {"--peers", peers, "-g", "cpu", "-x", c[0].address(),
                                          "--cmd", k_print_id}));
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() == std::vector<std::string>{c[2].address() + " | id=0 n=1"});

  run = run_isolated(c, without_peers(c, {"--peers", peers, "-g", "nosuch", "--cmd", "true"}));
  CHECK(one_error_line(run, "-g: no node in " + peers + " has group 'nosuch'"));
}

TEST_CASE("e2e: selection: without --peers or -w, $DISTCOMP_PEERS then ~/.config/distcomp/peers")
{
  Cluster c(3);
  MasterRun run =
      run_isolated(c, without_peers(c, {"--cmd", k_print_id}), {"DISTCOMP_PEERS=" + c.peers});
  CHECK(run.exit_code == 0);
  CHECK(sorted_stdout(run) ==
        sorted({c[0].address() + " | id=0 n=3", c[1].address() + " | id=1 n=3",
                c[2].address() + " | id=2 n=3"}));

  run = run_isolated(c, without_peers(c, {"--cmd", k_print_id}));
  CHECK(one_error_line(run, "no peers: use --peers FILE or -w HOSTS"));

  std::filesystem::create_directories(c.dir / ".config/distcomp");
  write_file(c.dir / ".config/distcomp/peers", c[1].address() + "\n");
  run = run_isolated(c, without_peers(c, {"--cmd", k_print_id}));
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() == std::vector<std::string>{c[1].address() + " | id=0 n=1"});
}

TEST_CASE("e2e: selection: a bad hostlist or attribute is one error line and exit 2")
{
  Cluster c(1);
  MasterRun run = c.run({"-w", "127.0.0.[1-", "--cmd", "true"});
  CHECK(one_error_line(run, "-w: column 9: unclosed '['"));
  run = c.run({"-x", "127.0.0.[3-1]", "--cmd", "true"});
  CHECK(one_error_line(run, "-x: column 10: reversed range '3-1'"));

  const std::string peers = c.dir / "bad.txt";
  write_file(peers, c[0].address() + "\nlab[01-03] colour=red\n");
  run = run_isolated(c, without_peers(c, {"--peers", peers, "--cmd", "true"}));
  CHECK(one_error_line(run, peers + ":2: unknown attribute 'colour' (expected port, slots, gpus or "
                                    "group)"));
}
