#include "common/error.hpp"
#include "master/options.hpp"

#include <doctest/doctest.h>

using namespace dc::master;

TEST_CASE("master: options parse --cmd, the -- form, --env and reject bad usage")
{
  const auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), "master");
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    return parse_options(static_cast<int>(argv.size()), argv.data());
  };
  const Options o = parse({"--peers", "p.txt", "--cmd", "a", "--cmd", "b", "--env", "K=V=W", "--",
                           "echo", "hi", "there"});
  CHECK(o.peers_file == "p.txt");
  CHECK(o.commands == std::vector<std::string>{"a", "b", "echo hi there"});
  CHECK(o.env.at("K") == "V=W");
  CHECK_FALSE(o.largest_remote_status);
  CHECK(parse({"--peers", "p", "-S", "--timeout", "1.5", "--cmd", "x"}).command_timeout_s == 1.5);
  CHECK_THROWS_AS(parse({"--cmd", "x"}), dc::ConfigError);                 // no peers
  CHECK_THROWS_AS(parse({"--peers", "p"}), dc::ConfigError);               // no command
  CHECK_THROWS_AS(parse({"--peers", "p", "--"}), dc::ConfigError);         // empty --
  CHECK_THROWS_AS(parse({"--peers", "p", "--cmd", " "}), dc::ConfigError); // blank
  CHECK_THROWS_AS(parse({"--peers", "p", "--cmd", "x", "--env", "1A=2"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--cmd", "x", "--env", "DISTCOMP_NODE_ID=2"}),
                  dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--cmd", "x", "--timeout", "0"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--cmd", "x", "--fanout", "0"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--cmd", "x", "--bogus"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "stray"}), dc::ConfigError);
  CHECK(parse({"--keygen"}).keygen);
}

TEST_CASE("master: options: --status needs no command, takes --json, and refuses run options")
{
  const auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), "master");
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    return parse_options(static_cast<int>(argv.size()), argv.data());
  };
  const Options o = parse({"--peers", "p", "--status", "--connect-timeout", "2"});
  CHECK(o.status);
  CHECK_FALSE(o.status_json);
  CHECK(o.commands.empty());
  CHECK(o.connect_timeout == std::chrono::seconds(2));
  CHECK(parse({"--peers", "p", "--status", "--json", "--fanout", "3"}).status_json);
  CHECK_FALSE(parse({"--peers", "p", "--cmd", "x"}).status);
  CHECK_THROWS_AS(parse({"--status"}), dc::ConfigError); // no peers
  CHECK_THROWS_AS(parse({"--peers", "p", "--status", "--cmd", "x"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--status", "--", "uptime"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--status", "--send", "x"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--status", "--env", "A=1"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--status", "--timeout", "3"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--status", "--keep"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--status", "-S"}), dc::ConfigError);
  CHECK_THROWS_AS(parse({"--peers", "p", "--json", "--cmd", "x"}), dc::ConfigError);
}
