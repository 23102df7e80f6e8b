#pragma once
// --fetch patterns: which results a worker sends back (PROTOCOL.md §5, results). A pattern names
// files or directories relative to the job dir, '/'-separated. A component may hold shell glob
// characters (* ? [...]): it is matched against the entries of one directory, never across '/',
// and a leading '.' must be matched literally, as in the shell. "." is the whole job dir.
// Shared by the master (checks the command line) and the worker (walks the job dir).

#include <string>
#include <string_view>
#include <vector>

namespace dc {

inline constexpr std::size_t k_max_fetch_patterns = 256;

// Splits and checks `pattern`: not empty, relative, no ".." component, no NUL byte, at most
// k_max_path_bytes bytes. "." and empty components are dropped, so "./out//" is {"out"} and "."
// is {} (the whole job dir). Throws ConfigError("--fetch 'PATTERN': <reason>").
std::vector<std::string> split_fetch_pattern(std::string_view pattern);

// Whether `component` holds a glob character (*, ? or [).
bool has_glob(std::string_view component);

// Whether directory entry `name` matches pattern component `component` (fnmatch with
// FNM_PERIOD: "*" does not match ".hidden"; no FNM_PATHNAME needed, names hold no '/').
bool component_matches(const std::string& component, const std::string& name);

} // namespace dc
