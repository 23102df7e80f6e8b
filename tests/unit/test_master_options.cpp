#include "common/error.hpp"
#include "master/options.hpp"

#include <doctest/doctest.h>

using namespace dc::master;

namespace {

// parse_options over `args` as if typed after "master".
Options parse_cli(std::vector<std::string> args)
{
  args.insert(args.begin(), "master");
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

} // namespace

TEST_CASE("master: options parse --cmd, the -- form, --env and reject bad usage")
{
  const Options o = parse_cli({"--peers", "p.txt", "--cmd", "a", "--cmd", "b", "--env", "K=V=W",
                               "--", "echo", "hi", "there"});
  CHECK(o.peers_file == "p.txt");
  CHECK(o.commands == std::vector<std::string>{"a", "b", "echo hi there"});
  CHECK(o.env.at("K") == "V=W");
  CHECK_FALSE(o.largest_remote_status);
  CHECK(parse_cli({"--peers", "p", "-S", "--timeout", "1.5", "--cmd", "x"}).command_timeout_s ==
        1.5);
  CHECK(parse_cli({"--cmd", "x"}).peers_file.empty()); // select_nodes finds a default or throws
  CHECK_THROWS_AS(parse_cli({"--peers", "p"}), dc::ConfigError);               // no command
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--"}), dc::ConfigError);         // empty --
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--cmd", " "}), dc::ConfigError); // blank
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--cmd", "x", "--env", "1A=2"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--cmd", "x", "--env", "DISTCOMP_NODE_ID=2"}),
                  dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--cmd", "x", "--timeout", "0"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--cmd", "x", "--fanout", "0"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--cmd", "x", "--bogus"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "stray"}), dc::ConfigError);
  CHECK(parse_cli({"--keygen"}).keygen);
}

TEST_CASE("master: options pick one output view and a color mode")
{
  // Every case here is a run: peers and a command, then the view options under test.
  const auto parse = [](std::vector<std::string> args) {
    args.insert(args.end(), {"--peers", "p", "--cmd", "x"});
    return parse_cli(std::move(args));
  };
  CHECK(parse({}).view == ViewKind::live);
  CHECK(parse({"--blocks"}).view == ViewKind::blocks);
  CHECK(parse({"--json"}).view == ViewKind::json);
  const Options gather = parse({"--gather", "--live"});
  CHECK(gather.view == ViewKind::gather);
  CHECK(gather.gather_live);
  const Options outdir = parse({"--outdir", "out"});
  CHECK(outdir.view == ViewKind::outdir);
  CHECK(outdir.outdir == "out");
  CHECK(parse({"--color", "never"}).color == ColorMode::never);
  CHECK(parse({"--color", "always"}).color == ColorMode::always);
  CHECK_THROWS_AS(parse({"--blocks", "--json"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--gather", "--outdir", "d"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--live"}), dc::ConfigError); // only with --gather
  CHECK_THROWS_AS(parse({"--color", "sometimes"}), dc::ConfigError);
}

TEST_CASE("master: options: --status needs no command, takes --json, and refuses run options")
{
  const Options o = parse_cli({"--peers", "p", "--status", "--connect-timeout", "2"});
  CHECK(o.status);
  CHECK_FALSE(o.status_json);
  CHECK(o.commands.empty());
  CHECK(o.connect_timeout == std::chrono::seconds(2));
  CHECK(parse_cli({"--peers", "p", "--status", "--json", "--fanout", "3"}).status_json);
  CHECK_FALSE(parse_cli({"--peers", "p", "--cmd", "x"}).status);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--cmd", "x"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--", "uptime"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--send", "x"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--env", "A=1"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--timeout", "3"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--keep"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "-S"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--blocks"}), dc::ConfigError);
  CHECK_THROWS_AS(parse_cli({"--peers", "p", "--status", "--stdin"}), dc::ConfigError);
}

TEST_CASE("master: options: --fetch, --results-dir and --fetch-limit")
{
  const Options f = parse_cli({"--fetch", "out", "--fetch", "*.csv", "--results-dir", "r",
                               "--fetch-limit", "10M", "--cmd", "x"});
  CHECK(f.fetch == std::vector<std::string>{"out", "*.csv"});
  CHECK(f.results_dir == "r");
  CHECK(f.fetch_limit == 10u << 20);
  const Options d = parse_cli({"--fetch", ".", "--cmd", "x"});
  CHECK(d.results_dir == "results");
  CHECK(d.fetch_limit == std::uint64_t{4} << 30);
  CHECK_THROWS_WITH_AS(parse_cli({"--fetch-limit", "1G", "--cmd", "x"}),
                       "--fetch-limit only goes with --fetch", dc::ConfigError);
  CHECK_THROWS_WITH_AS(parse_cli({"--status", "--fetch", "x"}),
                       "--status cannot be combined with --fetch", dc::ConfigError);
}
