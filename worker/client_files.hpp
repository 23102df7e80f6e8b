#pragma once
// Where the messaging clients are (the C++ header, the Python module and the distcomp-msg
// command), so every job can use them without an install step on the node.

#include <string>

namespace dc::worker {

struct ClientFiles {
  std::string include_dir; // holds distcomp/msg.hpp (for CPATH); empty when not found
  std::string python_dir;  // holds distcomp_msg.py (for PYTHONPATH)
  std::string bin_dir;     // holds distcomp-msg (for PATH)
};

// Looks next to the running worker first (an installed tree: bin/, include/,
// share/distcomp/python/), then in the build tree the worker was built in. Never throws.
ClientFiles find_client_files();

} // namespace dc::worker
