#include "worker/options.hpp"

#include "common/error.hpp"
#include "common/size_option.hpp"
#include "worker/blob_cache.hpp"
#include "worker/workdir.hpp"

// Vector options are repeated flags, never comma lists: `--cmd "echo a,b"` is one command.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace dc::worker {
namespace {

Clock::duration seconds_option(const cxxopts::ParseResult& r, const char* name,
                               Clock::duration fallback)
{
  if (r.count(name) == 0) {
    return fallback;
  }
  const double s = r[name].as<double>();
  if (!(s > 0) || !std::isfinite(s) || s > 1e6) {
    throw ConfigError(std::string("--") + name + ": must be a positive number of seconds");
  }
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

template <typename T>
T count_option(const cxxopts::ParseResult& r, const char* name, T fallback)
{
  if (r.count(name) == 0) {
    return fallback;
  }
  const auto v = r[name].as<long long>();
  if (v <= 0) {
    throw ConfigError(std::string("--") + name + ": must be a positive number");
  }
  return static_cast<T>(v);
}

} // namespace

Options parse_options(int argc, char** argv)
{
  cxxopts::Options spec("worker", "distcomp worker: runs the commands of masters that hold the "
                                  "cluster key, in a fresh directory per job.");
  // clang-format off
  spec.add_options()
    ("p,port", "TCP port to listen on (0 = any free port)", cxxopts::value<int>()->default_value("6969"))
    ("b,bind", "address to listen on (:: = all, IPv4 and IPv6)", cxxopts::value<std::string>()->default_value("::"))
    ("k,key", "cluster key file (repeatable during a key rotation); default ~/.config/distcomp/cluster.key, then /etc/distcomp/cluster.key", cxxopts::value<std::vector<std::string>>())
    ("force", "accept a key file with loose permissions (never a malformed one)")
    ("w,workdir", "base directory for job directories (locked: one worker per directory)", cxxopts::value<std::string>())
    ("cache-dir", "content cache of received files, by hash (default WORKDIR/cache; locked: one worker per directory)", cxxopts::value<std::string>())
    ("cache-size", "cache capacity, e.g. 4G, 512M; least recently used files are evicted (4G)", cxxopts::value<std::string>())
    ("no-cache", "keep no cache: every file is sent on every run")
    ("v,verbose", "log debug details")
    ("h,help", "print this help")
    ("version", "print the version");
  spec.add_options("limits (PROTOCOL.md §6)")
    ("preamble-timeout", "seconds for a new connection to send its preamble (5)", cxxopts::value<double>())
    ("handshake-timeout", "seconds for handshake and HELLO (10)", cxxopts::value<double>())
    ("max-pending", "unauthenticated connections in total (64)", cxxopts::value<long long>())
    ("max-pending-per-ip", "unauthenticated connections per source address (8)", cxxopts::value<long long>())
    ("handshake-rate", "handshakes per second per source address (500)", cxxopts::value<double>())
    ("handshake-burst", "burst of handshakes per source address (100)", cxxopts::value<double>())
    ("reject-limit", "key rejections from one address within --reject-window before a penalty (10)", cxxopts::value<long long>())
    ("reject-window", "seconds (10)", cxxopts::value<double>())
    ("reject-penalty", "seconds an address is refused after too many key rejections (30)", cxxopts::value<double>())
    ("max-sessions", "authenticated sessions at once (16)", cxxopts::value<long long>())
    ("max-runs", "commands per session (64)", cxxopts::value<long long>())
    ("max-processes", "commands running at once on this worker (64)", cxxopts::value<long long>())
    ("idle-timeout", "seconds without a record from the master before closing (60)", cxxopts::value<double>())
    ("send-timeout", "seconds a send may make no progress before closing (60)", cxxopts::value<double>())
    ("kill-grace", "seconds between SIGTERM and SIGKILL (5)", cxxopts::value<double>())
    ("max-bundle-bytes", "expanded bundle size cap in bytes (64 GiB; also free disk - 1 GiB)", cxxopts::value<long long>())
    ("max-bundle-entries", "entries per bundle (1000000)", cxxopts::value<long long>())
    ("disk-reserve", "bytes of free disk a bundle must leave (1 GiB)", cxxopts::value<long long>());
  // clang-format on
  cxxopts::ParseResult r;
  try {
    r = spec.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError(e.what());
  }
  if (r.count("help")) {
    std::printf("%s\n", spec.help({"", "limits (PROTOCOL.md §6)"}).c_str());
    std::exit(0);
  }
  if (r.count("version")) {
    std::printf("distcomp worker %s (protocol v1)\n", DC_VERSION);
    std::exit(0);
  }
  if (!r.unmatched().empty()) {
    throw ConfigError("unexpected argument '" + r.unmatched().front() + "'");
  }
  Options o;
  const int port = r["port"].as<int>();
  if (port < 0 || port > 65535) {
    throw ConfigError("--port: must be 0-65535");
  }
  o.port = static_cast<std::uint16_t>(port);
  o.bind = r["bind"].as<std::string>();
  if (r.count("key")) {
    o.key_paths = r["key"].as<std::vector<std::string>>();
  }
  o.force_permissions = r.count("force") > 0;
  o.workdir = r.count("workdir") ? r["workdir"].as<std::string>() : Workdir::default_path();
  o.verbose = r.count("verbose") > 0;
  o.no_cache = r.count("no-cache") > 0;
  if (o.no_cache && (r.count("cache-dir") || r.count("cache-size"))) {
    throw ConfigError("--no-cache cannot be combined with --cache-dir or --cache-size");
  }
  if (r.count("cache-dir")) {
    o.cache_dir = r["cache-dir"].as<std::string>();
    if (o.cache_dir.empty()) {
      throw ConfigError("--cache-dir: empty path");
    }
  }
  if (r.count("cache-size")) {
    o.cache_size = parse_size(r["cache-size"].as<std::string>(), "cache-size");
  }
  Limits& l = o.limits;
  l.preamble_timeout = seconds_option(r, "preamble-timeout", l.preamble_timeout);
  l.handshake_timeout = seconds_option(r, "handshake-timeout", l.handshake_timeout);
  l.max_pending = count_option(r, "max-pending", l.max_pending);
  l.max_pending_per_ip = count_option(r, "max-pending-per-ip", l.max_pending_per_ip);
  if (r.count("handshake-rate")) {
    l.handshake_rate = r["handshake-rate"].as<double>();
  }
  if (r.count("handshake-burst")) {
    l.handshake_burst = r["handshake-burst"].as<double>();
  }
  if (!(l.handshake_rate > 0) || !(l.handshake_burst >= 1)) {
    throw ConfigError("--handshake-rate and --handshake-burst must be positive");
  }
  l.reject_limit = count_option(r, "reject-limit", l.reject_limit);
  l.reject_window = seconds_option(r, "reject-window", l.reject_window);
  l.reject_penalty = seconds_option(r, "reject-penalty", l.reject_penalty);
  l.max_sessions = count_option(r, "max-sessions", l.max_sessions);
  l.max_runs_per_session = count_option(r, "max-runs", l.max_runs_per_session);
  l.max_processes = count_option(r, "max-processes", l.max_processes);
  l.idle_timeout = seconds_option(r, "idle-timeout", l.idle_timeout);
  l.send_timeout = seconds_option(r, "send-timeout", l.send_timeout);
  l.kill_grace = seconds_option(r, "kill-grace", l.kill_grace);
  l.bundle.max_bytes = count_option(r, "max-bundle-bytes", l.bundle.max_bytes);
  l.bundle.max_entries = count_option(r, "max-bundle-entries", l.bundle.max_entries);
  if (r.count("disk-reserve")) {
    const auto v = r["disk-reserve"].as<long long>();
    if (v < 0) {
      throw ConfigError("--disk-reserve: must not be negative");
    }
    l.disk_reserve = static_cast<std::uint64_t>(v);
  }
  return o;
}

} // namespace dc::worker
