#include "master/options.hpp"

#include "common/error.hpp"
#include "common/fetch_pattern.hpp"
#include "common/size_option.hpp"

// Vector options are repeated flags, never comma lists: `--cmd "echo a,b"` is one command.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace dc::master {
namespace {

constexpr const char* k_epilog = R"(
Commands run in order on every node, each through its own /bin/sh -c, in one fresh temporary
directory per node, stopping at the first failure. Output is tagged "node | line"; job stdout
goes to stdout, job stderr and the summary to stderr.

Exit status: 0 all ok; 1 a command failed on some node; 2 usage or configuration error;
3 a node was unreachable or rejected us; 4 a command timed out; 130 interrupted.
When several apply, the first of 130, 2, 3, 4, 1 wins. -S returns the largest remote exit code
instead (a remote signal N counts as 128+N).

Examples:
  master --keygen
  master --peers peers.txt --send src/ --cmd "g++ -O2 main.cpp -o main && ./main"
  master --peers peers.txt -- uptime
  master --peers peers.txt --status)";

std::string joined(int argc, char** argv, int from)
{
  std::string out;
  for (int i = from; i < argc; ++i) {
    out += (out.empty() ? "" : " ") + std::string(argv[i]);
  }
  return out;
}

double positive_seconds(const cxxopts::ParseResult& r, const char* name)
{
  const double s = r[name].as<double>();
  if (!(s > 0) || !std::isfinite(s) || s > 1e7) {
    throw ConfigError(std::string("--") + name + ": must be a positive number of seconds");
  }
  return s;
}

// --blocks, --gather [--live], --outdir DIR, --json: at most one; --color for all of them.
void parse_view(const cxxopts::ParseResult& r, Options& o)
{
  std::vector<std::string> chosen;
  for (const char* name : {"blocks", "gather", "outdir", "json"}) {
    if (r.count(name)) {
      chosen.push_back(std::string("--") + name);
    }
  }
  if (chosen.size() > 1) {
    throw ConfigError(chosen[0] + " and " + chosen[1] + " are different views: choose one");
  }
  if (r.count("blocks")) {
    o.view = ViewKind::blocks;
  } else if (r.count("gather")) {
    o.view = ViewKind::gather;
  } else if (r.count("outdir")) {
    o.view = ViewKind::outdir;
    o.outdir = r["outdir"].as<std::string>();
    if (o.outdir.empty()) {
      throw ConfigError("--outdir: empty path");
    }
  } else if (r.count("json")) {
    o.view = ViewKind::json;
  }
  o.gather_live = r.count("live") > 0;
  if (o.gather_live && o.view != ViewKind::gather) {
    throw ConfigError("--live only goes with --gather");
  }
  o.color = parse_color_mode(r["color"].as<std::string>());
}

// --status asks the workers about themselves: the options of a run would be silently ignored.
void check_status_usage(const cxxopts::ParseResult& r, const Options& o)
{
  if (!o.commands.empty()) {
    throw ConfigError("--status runs no command: drop --cmd and --");
  }
  for (const std::string name : {"send", "ignore", "env", "timeout", "keep", "S", "stdin", "blocks",
                                 "gather", "outdir", "fetch", "results-dir", "fetch-limit"}) {
    if (r.count(name)) {
      throw ConfigError(std::string("--status cannot be combined with ") +
                        (name == "S" ? "-" : "--") + name);
    }
  }
}

} // namespace

Options parse_options(int argc, char** argv)
{
  // Everything after a lone `--` is one command, as pdsh users type it.
  int dashdash = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      dashdash = i;
      break;
    }
  }
  cxxopts::Options spec("master", "distcomp master: ship files to every worker, run commands "
                                  "there, and show their output live.");
  spec.custom_help("[options] [-- command words...]");
  // clang-format off
  spec.add_options()
    ("p,peers", "peers file: a hostlist and attributes per line, or INI (default: $DISTCOMP_PEERS, then ~/.config/distcomp/peers, unless -w is given)", cxxopts::value<std::string>())
    ("w,nodes", "hosts to run on as a hostlist, e.g. lab[01-40],gpu[1-2]:7000 (repeatable; added to the peers file's)", cxxopts::value<std::vector<std::string>>())
    ("x,exclude", "hostlist of nodes to leave out; a host without :port on every port (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("g,group", "only the peers file's nodes with group=GROUP (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("s,send", "file or directory to ship (repeatable); 'dir/' sends its contents, 'dir' the directory itself", cxxopts::value<std::vector<std::string>>())
    ("progress", "show the upload progress bar on stderr even when it is not a terminal")
    ("no-progress", "never show the upload progress bar (default: only when stderr is a terminal)")
    ("no-hash-cache", "hash every sent file again instead of trusting the hash cache ($XDG_CACHE_HOME/distcomp/hashes) for unchanged ones")
    ("ignore", "leave out what PATTERN matches inside sent directories, as a .distcompignore line would (repeatable; e.g. '*.o', 'build/', '/data/**')", cxxopts::value<std::vector<std::string>>())
    ("c,cmd", "command to run on every node (repeatable; run in order)", cxxopts::value<std::vector<std::string>>())
    ("fetch", "after the commands (also when they failed) bring back PATH from each job dir: a file, a directory or a glob such as 'out/*.csv' (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("results-dir", "where --fetch puts each node's results, as DIR/<node>/PATH; each run replaces that node's directory", cxxopts::value<std::string>()->default_value("results"))
    ("fetch-limit", "most bytes --fetch accepts from one node (K, M, G, T suffixes)", cxxopts::value<std::string>()->default_value("4G"))
    ("e,env", "K=V added to every command's environment (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("k,key", "cluster key file (default ~/.config/distcomp/cluster.key, then /etc/distcomp/cluster.key)", cxxopts::value<std::string>())
    ("keygen", "create a new cluster key file (at --key or the default path) and exit")
    ("force", "with --keygen: replace an existing key; otherwise: accept loose key file permissions")
    ("connect-timeout", "seconds to connect and authenticate, per node", cxxopts::value<double>()->default_value("5"))
    ("t,timeout", "seconds each command may run (default: no limit)", cxxopts::value<double>())
    ("keep", "keep the job directory on every node and print where it is")
    ("stdin", "read stdin once (to EOF, up to 64 MiB) and give it to every command on every node")
    ("S", "exit with the largest remote exit code")
    ("fanout", "nodes connecting or uploading at once", cxxopts::value<long long>()->default_value("256"))
    ("blocks", "view: each node's stdout as one block when it ends, headed by its exit and time")
    ("gather", "view: identical stdout merged under one node list, outliers after it")
    ("live", "with --gather: merge line by line while the nodes run")
    ("outdir", "view: raw per-node files DIR/<node>.out and DIR/<node>.err", cxxopts::value<std::string>())
    ("json", "view: one JSON event per line on stdout (schema in the README); with --status: one JSON object per node")
    ("color", "color node names: auto (terminals, unless NO_COLOR is set), always, never", cxxopts::value<std::string>()->default_value("auto"))
    ("status", "instead of a run: a table of every worker (reachable or why not, version, uptime, cores, load, memory, GPUs, running jobs)")
    ("v,verbose", "log details")
    ("h,help", "print this help")
    ("version", "print the version");
  // clang-format on
  cxxopts::ParseResult r;
  try {
    r = spec.parse(dashdash, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError(e.what());
  }
  if (r.count("help")) {
    std::printf("%s%s\n", spec.help().c_str(), k_epilog);
    std::exit(0);
  }
  if (r.count("version")) {
    std::printf("distcomp master %s (protocol v1)\n", DC_VERSION);
    std::exit(0);
  }
  if (!r.unmatched().empty()) {
    throw ConfigError("unexpected argument '" + r.unmatched().front() +
                      "' (put a command after --, or use --cmd)");
  }
  Options o;
  o.keygen = r.count("keygen") > 0;
  o.force = r.count("force") > 0;
  if (r.count("key")) {
    o.key_path = r["key"].as<std::string>();
  }
  o.verbose = r.count("verbose") > 0;
  if (o.keygen) {
    return o;
  }
  if (r.count("peers")) {
    o.peers_file = r["peers"].as<std::string>();
  }
  if (r.count("nodes")) {
    o.hosts = r["nodes"].as<std::vector<std::string>>();
  }
  if (r.count("exclude")) {
    o.excluded = r["exclude"].as<std::vector<std::string>>();
  }
  if (r.count("group")) {
    o.groups = r["group"].as<std::vector<std::string>>();
  }
  if (r.count("send")) {
    o.send = r["send"].as<std::vector<std::string>>();
  }
  o.hash_cache = r.count("no-hash-cache") == 0;
  if (r.count("progress") && r.count("no-progress")) {
    throw ConfigError("--progress and --no-progress contradict each other: choose one");
  }
  if (r.count("progress") || r.count("no-progress")) {
    o.progress = r.count("progress") > 0;
  }
  if (r.count("ignore")) {
    o.ignore = r["ignore"].as<std::vector<std::string>>();
    if (o.send.empty()) {
      throw ConfigError("--ignore only goes with --send");
    }
    for (const auto& p : o.ignore) {
      if (p.find_first_not_of(' ') == std::string::npos) {
        throw ConfigError("--ignore: empty pattern");
      }
    }
  }
  if (r.count("cmd")) {
    o.commands = r["cmd"].as<std::vector<std::string>>();
  }
  if (dashdash < argc) {
    const std::string tail = joined(argc, argv, dashdash + 1);
    if (tail.empty()) {
      throw ConfigError("nothing after --");
    }
    o.commands.push_back(tail);
  }
  o.status = r.count("status") > 0;
  o.status_json = o.status && r.count("json") > 0;
  if (o.status) {
    check_status_usage(r, o);
  }
  if (o.commands.empty() && !o.status) {
    throw ConfigError("no command: use --cmd CMD or put one after --");
  }
  for (const auto& c : o.commands) {
    if (c.find_first_not_of(" \t\n") == std::string::npos) {
      throw ConfigError("empty command");
    }
  }
  if (r.count("env")) {
    for (const auto& kv : r["env"].as<std::vector<std::string>>()) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw ConfigError("--env " + kv + ": expected K=V");
      }
      const std::string name = kv.substr(0, eq);
      if (name.find_first_not_of(
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
              std::string::npos ||
          (name[0] >= '0' && name[0] <= '9')) {
        throw ConfigError("--env " + kv + ": bad variable name");
      }
      if (name.rfind("DISTCOMP_", 0) == 0) {
        throw ConfigError("--env " + kv + ": DISTCOMP_* variables are set by distcomp");
      }
      o.env[name] = kv.substr(eq + 1);
    }
  }
  o.connect_timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(positive_seconds(r, "connect-timeout")));
  if (r.count("timeout")) {
    o.command_timeout_s = positive_seconds(r, "timeout");
  }
  if (r.count("fetch")) {
    o.fetch = r["fetch"].as<std::vector<std::string>>();
    if (o.fetch.size() > k_max_fetch_patterns) {
      throw ConfigError("--fetch: at most " + std::to_string(k_max_fetch_patterns) + " paths");
    }
    for (const auto& p : o.fetch) {
      split_fetch_pattern(p); // throws ConfigError naming the path and the problem
    }
  } else if (r.count("results-dir") || r.count("fetch-limit")) {
    throw ConfigError(std::string("--") + (r.count("results-dir") ? "results-dir" : "fetch-limit") +
                      " only goes with --fetch");
  }
  o.results_dir = r["results-dir"].as<std::string>();
  if (o.results_dir.empty()) {
    throw ConfigError("--results-dir: empty path");
  }
  o.fetch_limit = parse_size(r["fetch-limit"].as<std::string>(), "fetch-limit");
  o.keep = r.count("keep") > 0;
  o.stdin = r.count("stdin") > 0;
  o.largest_remote_status = r.count("S") > 0;
  const long long fanout = r["fanout"].as<long long>();
  if (fanout < 1) {
    throw ConfigError("--fanout: must be at least 1");
  }
  o.fanout = static_cast<std::size_t>(fanout);
  parse_view(r, o);
  return o;
}

} // namespace dc::master
