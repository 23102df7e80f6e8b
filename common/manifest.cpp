#include "common/manifest.hpp"

#include <algorithm>
#include <cassert>

namespace dc {
namespace {

constexpr std::uint32_t k_nanos_per_second = 1'000'000'000;
constexpr std::size_t k_max_logged_name = 256; // bytes of a bad name quoted in an error message

std::string quote_name(std::string_view path)
{
  if (path.size() <= k_max_logged_name) {
    return escape_for_log(path);
  }
  return escape_for_log(path.substr(0, k_max_logged_name)) + "... (" + std::to_string(path.size()) +
         " bytes)";
}

[[noreturn]] void bad_path(std::string_view why, std::string_view path, long long ref)
{
  throw BundleError("bad_path", "bad path (" + std::string(why) + "): " + quote_name(path), ref);
}

// Returns the length of the well-formed UTF-8 sequence starting at s[i] (Unicode Table 3-7:
// no overlongs, no surrogates, nothing above U+10FFFF), or 0 if it is ill-formed.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i)
{
  const auto at = [&](std::size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0x100;
  };
  const auto in = [](unsigned c, unsigned lo, unsigned hi) { return c >= lo && c <= hi; };
  const unsigned c0 = at(0);
  if (c0 < 0x80) {
    return 1;
  }
  if (in(c0, 0xc2, 0xdf)) {
    return in(at(1), 0x80, 0xbf) ? 2 : 0;
  }
  if (in(c0, 0xe0, 0xef)) {
    const unsigned lo = c0 == 0xe0 ? 0xa0 : 0x80;
    const unsigned hi = c0 == 0xed ? 0x9f : 0xbf;
    return in(at(1), lo, hi) && in(at(2), 0x80, 0xbf) ? 3 : 0;
  }
  if (in(c0, 0xf0, 0xf4)) {
    const unsigned lo = c0 == 0xf0 ? 0x90 : 0x80;
    const unsigned hi = c0 == 0xf4 ? 0x8f : 0xbf;
    return in(at(1), lo, hi) && in(at(2), 0x80, 0xbf) && in(at(3), 0x80, 0xbf) ? 4 : 0;
  }
  return 0; // continuation byte, C0/C1 (overlong), F5..FF
}

} // namespace

std::string_view bundle_parent(std::string_view path)
{
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view{} : path.substr(0, slash);
}

std::uint32_t Manifest::file_count() const
{
  return static_cast<std::uint32_t>(std::count_if(
      entries.begin(), entries.end(), [](auto& e) { return e.kind == EntryKind::file; }));
}

std::uint64_t Manifest::total_bytes() const
{
  std::uint64_t total = 0;
  for (const auto& e : entries) {
    if (e.kind == EntryKind::file) {
      total += e.size;
    }
  }
  return total;
}

const char* bundle_path_problem(std::string_view path)
{
  if (path.empty()) {
    return "empty name";
  }
  if (path.size() > k_max_path_bytes) {
    return "longer than 4096 bytes";
  }
  if (path.front() == '/') {
    return "absolute";
  }
  for (std::size_t i = 0; i < path.size();) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c < 0x20 || c == 0x7f) {
      return "control character";
    }
    if (c == '\\') {
      return "backslash";
    }
    const std::size_t n = utf8_sequence_length(path, i);
    if (n == 0) {
      return "invalid UTF-8";
    }
    i += n;
  }
  std::size_t depth = 0;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = path.find('/', start);
    const std::string_view component = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (component.empty()) {
      return "empty component";
    }
    if (component == "." || component == "..") {
      return "'.' or '..' component";
    }
    if (component.size() > k_max_component_bytes) {
      return "component longer than 255 bytes";
    }
    if (++depth > k_max_path_depth) {
      return "deeper than 64 components";
    }
    if (slash == std::string_view::npos) {
      return nullptr;
    }
    start = slash + 1;
  }
}

void validate_bundle_path(std::string_view path, long long ref)
{
  if (const char* problem = bundle_path_problem(path)) {
    bad_path(problem, path, ref);
  }
}

Bytes encode_manifest(const Manifest& m)
{
  Bytes out;
  put_bytes(out, as_bytes(k_manifest_magic));
  put_be<std::uint32_t>(out, static_cast<std::uint32_t>(m.entries.size()));
  put_be<std::uint32_t>(out, m.file_count());
  [[maybe_unused]] const std::string* previous = nullptr;
  for (const auto& e : m.entries) {
    assert(previous == nullptr || *previous < e.path); // sorted bytewise, no duplicates
    assert(e.path.size() <= k_max_path_bytes);
    assert(e.mtime_ns < k_nanos_per_second);
    previous = &e.path;
    put_be<std::uint8_t>(out, static_cast<std::uint8_t>(e.kind));
    put_be<std::uint8_t>(out, e.kind == EntryKind::file && e.executable ? 1 : 0);
    put_be<std::int64_t>(out, e.mtime_s);
    put_be<std::uint32_t>(out, e.mtime_ns);
    put_be<std::uint16_t>(out, static_cast<std::uint16_t>(e.path.size()));
    put_bytes(out, as_bytes(e.path));
    if (e.kind == EntryKind::file) {
      put_be<std::uint64_t>(out, e.size);
      put_bytes(out, e.hash);
    }
  }
  return out;
}

Manifest decode_manifest(ByteView raw, const BundleLimits& limits)
{
  if (raw.size() > limits.max_manifest_bytes) {
    throw BundleError("bundle_too_large", "manifest of " + std::to_string(raw.size()) +
                                              " bytes exceeds the limit of " +
                                              std::to_string(limits.max_manifest_bytes));
  }
  Manifest m;
  long long ref = -1;
  try {
    ByteReader r(raw);
    if (as_chars(r.take(k_manifest_magic.size())) != k_manifest_magic) {
      throw BundleError("bad_bundle", "manifest: bad magic");
    }
    const auto entries = r.get_be<std::uint32_t>();
    const auto files = r.get_be<std::uint32_t>();
    if (entries > limits.max_entries) {
      throw BundleError("bundle_too_large", "manifest: " + std::to_string(entries) +
                                                " entries exceed the limit of " +
                                                std::to_string(limits.max_entries));
    }
    if (files > entries) {
      throw BundleError("bad_bundle", "manifest: more files than entries");
    }
    // Every entry holds at least its fixed part and a 1-byte path: bound before reserving.
    if (std::uint64_t{entries} * (k_manifest_entry_fixed_size + 1) > r.remaining()) {
      throw BundleError("bad_bundle", "manifest: truncated (too short for its entry count)");
    }
    m.entries.reserve(entries);
    // The parent directory most recently found (an entry of m.entries, which does not move
    // while reserved): SIZE_MAX for none.
    std::size_t last_parent_index = SIZE_MAX;
    std::uint64_t file_index = 0;
    std::uint64_t total = 0;
    for (std::uint32_t i = 0; i < entries; ++i) {
      ref = i;
      ManifestEntry e;
      const auto kind = r.get_be<std::uint8_t>();
      if (kind != static_cast<std::uint8_t>(EntryKind::dir) &&
          kind != static_cast<std::uint8_t>(EntryKind::file)) {
        throw BundleError("bad_bundle", "manifest: unknown entry kind " + std::to_string(kind),
                          ref);
      }
      e.kind = static_cast<EntryKind>(kind);
      const auto mode = r.get_be<std::uint8_t>();
      if (mode > 1 || (e.kind == EntryKind::dir && mode != 0)) {
        throw BundleError("bad_bundle", "manifest: bad mode byte " + std::to_string(mode), ref);
      }
      e.executable = mode == 1;
      e.mtime_s = r.get_be<std::int64_t>();
      e.mtime_ns = r.get_be<std::uint32_t>();
      if (e.mtime_ns >= k_nanos_per_second) {
        throw BundleError("bad_bundle", "manifest: mtime nanoseconds out of range", ref);
      }
      const auto path_len = r.get_be<std::uint16_t>();
      e.path = std::string(as_chars(r.take(path_len)));
      validate_bundle_path(e.path, ref);
      const std::string_view last_parent =
          last_parent_index == SIZE_MAX ? std::string_view()
                                        : std::string_view(m.entries[last_parent_index].path);
      if (!m.entries.empty()) {
        const std::string& previous = m.entries.back().path;
        if (previous == e.path) {
          bad_path("duplicate", e.path, ref);
        }
        if (!(previous < e.path)) { // std::string compares bytes as unsigned char
          throw BundleError("bad_bundle", "manifest: not sorted at " + quote_name(e.path), ref);
        }
      }
      const std::string_view parent = bundle_parent(e.path);
      if (!parent.empty() && parent != last_parent) {
        // The entries so far are sorted and the parent sorts before its child: binary search,
        // O(log n) with no extra memory and no hash table an attacker could flood. Siblings
        // mostly follow each other: the last parent found is checked first.
        const auto it = std::lower_bound(m.entries.begin(), m.entries.end(), parent,
                                         [](const ManifestEntry& a, std::string_view b) {
                                           return std::string_view(a.path) < b;
                                         });
        if (it == m.entries.end() || it->path != parent) {
          throw BundleError("bad_bundle",
                            "manifest: parent directory missing for " + quote_name(e.path), ref);
        }
        if (it->kind != EntryKind::dir) {
          bad_path("parent is a file", e.path, ref);
        }
        last_parent_index = static_cast<std::size_t>(it - m.entries.begin());
      }
      if (e.kind == EntryKind::file) {
        if (++file_index > files) {
          throw BundleError("bad_bundle", "manifest: more file entries than declared", ref);
        }
        e.size = r.get_be<std::uint64_t>();
        const ByteView hash = r.take(k_hash_size);
        std::copy(hash.begin(), hash.end(), e.hash.begin());
        if (e.size > limits.max_bytes - total) {
          throw BundleError("bundle_too_large",
                            "manifest: expanded size exceeds the limit of " +
                                std::to_string(limits.max_bytes) + " bytes",
                            ref);
        }
        total += e.size;
      }
      m.entries.push_back(std::move(e));
    }
    ref = -1;
    if (file_index != files) {
      throw BundleError("bad_bundle", "manifest: fewer file entries than declared");
    }
    if (!r.empty()) {
      throw BundleError("bad_bundle", "manifest: " + std::to_string(r.remaining()) +
                                          " trailing bytes after the last entry");
    }
  } catch (const ProtocolError&) {
    throw BundleError("bad_bundle", "manifest: truncated", ref);
  }
  return m;
}

} // namespace dc
