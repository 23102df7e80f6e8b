#pragma once
// Removing a directory tree that someone else filled (a job, a worker's results).

#include <string>

namespace dc {

// Removes `path` and everything beneath it without following symlinks (a job may plant them),
// making read-only directories writable first; ignores a missing path, logs any other failure.
// Never throws.
void remove_tree(const std::string& path) noexcept;

} // namespace dc
