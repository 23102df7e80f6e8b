#pragma once
// Node labels as file names (--outdir, and later --fetch's results dir).

#include <string>

namespace dc::master {

// `label` made a single safe path component, one-to-one so two nodes never share a file: '/',
// '%', control bytes and a leading '.' are percent-encoded ("a/b" -> "a%2Fb", ".." -> "%2E.").
// Throws only std::bad_alloc.
std::string safe_file_name(const std::string& label);

} // namespace dc::master
