// worker: the distcomp daemon. Parses options and runs the server; all logic is in dc_worker.

#include "common/error.hpp"
#include "common/log.hpp"
#include "worker/options.hpp"
#include "worker/server.hpp"

#include <csignal>
#include <cstdio>
#include <sys/prctl.h>

int main(int argc, char** argv)
{
  dc::set_log_prefix("worker: ");
  // No core dumps or ptrace of a process holding the key (jobs do not inherit this).
  prctl(PR_SET_DUMPABLE, 0);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return dc::worker::run(dc::worker::parse_options(argc, argv));
  } catch (const dc::ConfigError& e) {
    dc::log_write(dc::LogLevel::error, "%s", e.what());
    return 2;
  } catch (const std::exception& e) {
    dc::log_write(dc::LogLevel::error, "%s", e.what());
    return 1;
  }
}
