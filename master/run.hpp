#pragma once
// The master's top level: keygen, or one run over all peers with summary and exit status.

#include "master/options.hpp"

namespace dc::master {

// Returns the exit status. Throws ConfigError for unusable input (exit status 2).
int run(const Options& options);

} // namespace dc::master
