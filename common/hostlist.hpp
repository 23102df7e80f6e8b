#pragma once
// Hostlist expressions (sans-I/O), in the syntax pdsh, ClusterShell and Slurm share. Expansion is
// textual: a bracket group may stand anywhere in a name, so "10.0.0.[1-9]" and "h:[7000-7001]"
// work as well as "lab[01-40]". Grammar:
//
// <hostlist> ::= <part> ("," <part>)*           ; a comma inside [...] does not split parts
// <part>     ::= [<address>] (<text> | "[" <ranges> "]")*
//                                                ; several groups: cartesian product, last fastest
// <address>  ::= "[" <not a range list> "]"      ; only first in a part: "[::1]:7000" stays as is
// <ranges>   ::= <range> ("," <range>)*
// <range>    ::= <digits> ["-" <digits>]         ; "08-11" -> 08 09 10 11 (start's padding kept)
//
// Whitespace around a part is ignored; an empty part is an error.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace dc {

// Far beyond any lab (the largest clusters have tens of thousands of nodes), small enough that a
// typo such as "x[1-999999999]" is an error instead of gigabytes of names.
inline constexpr std::size_t k_max_hostlist_hosts = 100000;

// Expands `expression` into names, in the order written, duplicates kept. Throws ConfigError with
// one line "WHAT: column N: <problem>" on bad syntax, a reversed, empty or non-numeric range, a
// zero padding that differs between the ends of a range, or more than k_max_hostlist_hosts names
// (checked before any is built); columns count from `first_column` so that a caller can report
// positions in a longer line.
std::vector<std::string> expand_hostlist(std::string_view expression, std::string_view what,
                                         std::size_t first_column = 1);

// Folds names into hostlist form ("lab01", "lab02", "lab03", "lab05" -> "lab[01-03,05]"), keeping
// zero padding and grouping names that differ in one number at a time, so "r1n1".."r2n3" becomes
// "r[1-2]n[1-3]"; groups appear in the order their first name was given, duplicates are dropped.
// IPv6 addresses are not folded (a port after "[v6]" is). For names without ',' '[' ']' or
// surrounding whitespace (a leading "[v6]" aside), expand_hostlist of the result gives the same
// set of names. Does not throw (beyond std::bad_alloc).
std::string compress_hostlist(const std::vector<std::string>& names);

} // namespace dc
