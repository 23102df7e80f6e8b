// master: runs commands on every worker of a peers file. Parses options and calls run(); all
// logic is in dc_master.

#include "common/error.hpp"
#include "common/log.hpp"
#include "master/options.hpp"
#include "master/run.hpp"

#include <csignal>

int main(int argc, char** argv)
{
  dc::set_log_prefix("master: ");
  std::signal(SIGPIPE, SIG_IGN); // EPIPE on stdout is handled by the Printer
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
