#pragma once
// The worker daemon: listening socket, limits before authentication, the sessions, signals.

#include "common/key_file.hpp"
#include "worker/options.hpp"

namespace dc::worker {

// Runs the worker until SIGINT/SIGTERM. Returns the process exit status; throws ConfigError
// for unusable options (bind failure, workdir in use, key problems).
int run(const Options& options);

} // namespace dc::worker
