// master: runs commands on every worker of a peers file. Parses options and calls run(); all
// logic is in dc_master.

#include "common/error.hpp"
#include "common/log.hpp"
#include "master/options.hpp"
#include "master/run.hpp"

#include <csignal>
#include <sys/resource.h>

int main(int argc, char** argv)
{
  dc::set_log_prefix("master: ");
  std::signal(SIGPIPE, SIG_IGN); // EPIPE on stdout is handled by the Printer
  // Every node whose upload is done keeps its connection while its job runs, so a run holds a
  // socket per node: allow as many as the hard limit does (the soft default is often 1024).
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  try {
    return dc::master::run(dc::master::parse_options(argc, argv));
  } catch (const dc::ConfigError& e) {
    dc::log_write(dc::LogLevel::error, "%s", e.what());
    return dc::master::k_exit_usage;
  } catch (const std::exception& e) {
    dc::log_write(dc::LogLevel::error, "%s", e.what());
    return dc::master::k_exit_usage;
  }
}
