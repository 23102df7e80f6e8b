// Cluster key file: load refusals (SECURITY-TESTS A11), keygen (A12), derivation (PROTOCOL.md §2).

#include "common/error.hpp"
#include "common/key_file.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace {

const std::string k_valid_hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const std::string k_valid = "distcomp-key-v1 " + k_valid_hex + "\n";
constexpr const char* k_format_problem = "bad format (expected 'distcomp-key-v1 <64 hex digits>')";

dc::Bytes valid_raw()
{
  dc::Bytes raw;
  for (std::uint8_t b = 0; b < 32; ++b) {
    raw.push_back(b);
  }
  return raw;
}

// A fresh mkdtemp directory (mode 0700), removed with everything in it.
class ScratchDir {
public:
  ScratchDir()
  {
    char pattern[] = "/tmp/dc_key_file_test.XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    m_path = pattern;
    REQUIRE(::chmod(m_path.c_str(), 0700) == 0);
  }
  ~ScratchDir()
  {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return m_path; }
  std::string file(const std::string& name) const { return m_path + "/" + name; }

private:
  std::string m_path;
};

void write_file(const std::string& path, const std::string& content, mode_t mode = 0600)
{
  ::unlink(path.c_str()); // a previous 0400 file could not be truncated by a non-root user
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  REQUIRE(::fchmod(fd, mode) == 0);
  ::close(fd);
}

std::string read_file(const std::string& path)
{
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

mode_t mode_of(const std::string& path)
{
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// The ConfigError message load_cluster_key gives for `path`, or "" if it loaded.
std::string refusal(const std::string& path, bool force_permissions = false)
{
  try {
    (void)dc::load_cluster_key(path, force_permissions);
  } catch (const dc::ConfigError& e) {
    return e.what();
  }
  return "";
}

// Checks the one-line message "key file PATH: PROBLEM", with and without force when `format`.
void check_refused(const std::string& path, const std::string& problem, bool also_with_force)
{
  CAPTURE(path);
  const std::string message = refusal(path);
  CHECK(message == "key file " + path + ": " + problem);
  CHECK(message.find('\n') == std::string::npos);
  if (also_with_force) {
    CHECK(refusal(path, true) == message);
  } else {
    CHECK(refusal(path, true).empty()); // --force skips permission checks
  }
}

bool well_formed_key_text(const std::string& text)
{
  if (text.size() != 81 || text.rfind("distcomp-key-v1 ", 0) != 0 || text.back() != '\n') {
    return false;
  }
  for (std::size_t i = 16; i < 80; ++i) {
    const char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// Sets $HOME for one scope.
class HomeOverride {
public:
  explicit HomeOverride(const std::string& home)
  {
    if (const char* old = std::getenv("HOME")) {
      m_old = old;
    }
    ::setenv("HOME", home.c_str(), 1);
  }
  ~HomeOverride()
  {
    if (m_old) {
      ::setenv("HOME", m_old->c_str(), 1);
    } else {
      ::unsetenv("HOME");
    }
  }
  HomeOverride(const HomeOverride&) = delete;
  HomeOverride& operator=(const HomeOverride&) = delete;

private:
  std::optional<std::string> m_old;
};

} // namespace

TEST_CASE("key_file: derive_cluster_key is deterministic and never exposes the key")
{
  const dc::Bytes raw = valid_raw();
  const dc::ClusterKey a = dc::derive_cluster_key(raw);
  const dc::ClusterKey b = dc::derive_cluster_key(raw);
  CHECK(dc::Bytes(a.psk.view().begin(), a.psk.view().end()) ==
        dc::Bytes(b.psk.view().begin(), b.psk.view().end()));
  CHECK(a.key_id == b.key_id);
  CHECK(a.psk.size() == 32);
  CHECK(dc::Bytes(a.psk.view().begin(), a.psk.view().end()) != raw);
  CHECK(dc::Bytes(raw.begin(), raw.begin() + 8) != dc::Bytes(a.key_id.begin(), a.key_id.end()));
  CHECK(a.path.empty());

  dc::Bytes other = raw;
  other[31] ^= 1;
  const dc::ClusterKey c = dc::derive_cluster_key(other);
  CHECK(c.key_id != a.key_id);
  CHECK(dc::Bytes(c.psk.view().begin(), c.psk.view().end()) !=
        dc::Bytes(a.psk.view().begin(), a.psk.view().end()));

  const std::string hex = dc::key_id_hex(a.key_id);
  CHECK(hex.size() == 16);
  CHECK(hex.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK_THROWS_AS(dc::derive_cluster_key(dc::Bytes(31, 0)), std::invalid_argument);
  CHECK_THROWS_AS(dc::derive_cluster_key(dc::Bytes(33, 0)), std::invalid_argument);
}

TEST_CASE("key_file: a well-formed private key file loads")
{
  ScratchDir dir;
  const std::string path = dir.file("cluster.key");
  write_file(path, k_valid);
  const dc::ClusterKey expected = dc::derive_cluster_key(valid_raw());
  dc::ClusterKey key = dc::load_cluster_key(path, false);
  CHECK(key.key_id == expected.key_id);
  CHECK(dc::Bytes(key.psk.view().begin(), key.psk.view().end()) ==
        dc::Bytes(expected.psk.view().begin(), expected.psk.view().end()));
  CHECK(key.path == path);

  write_file(path, k_valid, 0400); // read-only is fine too
  CHECK(dc::load_cluster_key(path, false).key_id == expected.key_id);
  write_file(path, k_valid.substr(0, 80)); // a missing final newline is accepted
  CHECK(dc::load_cluster_key(path, false).key_id == expected.key_id);
}

TEST_CASE("key_file: every format problem is refused, with or without force (A11)")
{
  ScratchDir dir;
  const std::string path = dir.file("cluster.key");
  std::string upper_hex = k_valid_hex;
  upper_hex[20] = 'A';
  std::string non_hex = k_valid_hex;
  non_hex[5] = 'g';
  const std::string bad[] = {
      "",                                                             // empty
      "\n",                                                           // blank line
      "distcomp-key-v1 " + k_valid_hex.substr(0, 62) + "\n",          // wrong length (31 bytes)
      "distcomp-key-v1 " + k_valid_hex + "00\n",                      // wrong length (33 bytes)
      "distcomp-key-v1 " + non_hex + "\n",                            // non-hex
      "distcomp-key-v1 " + upper_hex + "\n",                          // uppercase
      k_valid + "x",                                                  // trailing garbage
      k_valid + "\n",                                                 // extra line
      k_valid + k_valid,                                              // two keys
      "distcomp-key-v1 " + k_valid_hex + " \n",                       // trailing space
      "distcomp-key-v1 " + k_valid_hex + "\r\n",                      // CRLF
      "distcomp-key-v2 " + k_valid_hex + "\n",                        // other version
      "distcomp-key-v1  " + k_valid_hex.substr(1) + "\n",             // two spaces
      " distcomp-key-v1 " + k_valid_hex.substr(1) + "\n",             // leading space
      k_valid_hex + "\n",                                             // no header
      std::string(200, 'a'),                                          // long
      std::string("distcomp-key-v1 ") + std::string(64, '\0') + "\n", // NULs
  };
  for (const std::string& content : bad) {
    CAPTURE(content);
    write_file(path, content);
    check_refused(path, k_format_problem, true);
  }
  // A bad format is refused even when the permissions are bad too and force is given.
  write_file(path, "distcomp-key-v1 " + upper_hex + "\n", 0644);
  CHECK(refusal(path, true) == "key file " + path + ": " + k_format_problem);
}

TEST_CASE("key_file: missing files, symlinks, directories and FIFOs are refused (A11)")
{
  ScratchDir dir;
  check_refused(dir.file("missing.key"), "does not exist", true);

  const std::string target = dir.file("real.key");
  write_file(target, k_valid);
  const std::string link = dir.file("link.key");
  REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
  check_refused(link, "is a symbolic link", true);
  const std::string dangling = dir.file("dangling.key");
  REQUIRE(::symlink(dir.file("nowhere").c_str(), dangling.c_str()) == 0);
  check_refused(dangling, "is a symbolic link", true);

  const std::string subdir = dir.file("dir.key");
  REQUIRE(::mkdir(subdir.c_str(), 0700) == 0);
  check_refused(subdir, "is a directory", true);

  const std::string fifo = dir.file("fifo.key");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check_refused(fifo, "is not a regular file", true); // and does not block

  CHECK(dc::load_cluster_key(target, false).key_id == dc::derive_cluster_key(valid_raw()).key_id);
}

TEST_CASE("key_file: group/other mode bits are refused unless forced (A11)")
{
  ScratchDir dir;
  const std::string path = dir.file("cluster.key");
  for (const mode_t mode : {0644, 0640, 0620, 0604, 0602, 0601, 0660, 0666}) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode));
    write_file(path, k_valid, mode);
    check_refused(path, std::string("mode ") + text + " is too open; run chmod 600 " + path, false);
  }
}

TEST_CASE("key_file: a file owned by another uid is refused unless forced (A11)")
{
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to chown the key file to another uid");
    return;
  }
  ScratchDir dir;
  const std::string path = dir.file("cluster.key");
  write_file(path, k_valid);
  REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
  check_refused(path, "owned by uid 65534, not by us (uid 0)", false);
}

TEST_CASE("key_file: a group/world-writable parent directory is refused unless forced (A11)")
{
  ScratchDir dir;
  for (const mode_t mode : {0770, 0702, 0777, 01777, 0720}) {
    CAPTURE(mode);
    const std::string sub = dir.file("sub" + std::to_string(mode));
    REQUIRE(::mkdir(sub.c_str(), 0700) == 0);
    REQUIRE(::chmod(sub.c_str(), mode) == 0);
    const std::string path = sub + "/cluster.key";
    write_file(path, k_valid);
    check_refused(path, "parent directory " + sub + " is group/world-writable", false);
  }
  const std::string ok = dir.file("ok");
  REQUIRE(::mkdir(ok.c_str(), 0755) == 0);
  REQUIRE(::chmod(ok.c_str(), 0755) == 0);
  write_file(ok + "/cluster.key", k_valid);
  CHECK(refusal(ok + "/cluster.key").empty());
}

TEST_CASE("key_file: keygen writes a 0600 key file in the exact format (A12)")
{
  ScratchDir dir;
  const std::string path = dir.file("cluster.key");
  const dc::ClusterKey made = dc::generate_key_file(path, false);
  CHECK(made.path == path);
  CHECK(mode_of(path) == 0600);
  const std::string text = read_file(path);
  CHECK(well_formed_key_text(text));
  dc::ClusterKey loaded = dc::load_cluster_key(path, false);
  CHECK(loaded.key_id == made.key_id);
  CHECK(dc::Bytes(loaded.psk.view().begin(), loaded.psk.view().end()) ==
        dc::Bytes(made.psk.view().begin(), made.psk.view().end()));

  // Without force an existing file is left alone.
  CHECK_THROWS_WITH_AS(
      dc::generate_key_file(path, false),
      ("key file " + path + ": already exists (use --force to replace it)").c_str(),
      dc::ConfigError);
  CHECK(read_file(path) == text);

  // Two keygens give different keys and key ids.
  const std::string second = dir.file("second.key");
  const dc::ClusterKey other = dc::generate_key_file(second, false);
  CHECK(read_file(second) != text);
  CHECK(other.key_id != made.key_id);

  // Force replaces the file atomically, still 0600, and leaves no temporary behind.
  const dc::ClusterKey replaced = dc::generate_key_file(path, true);
  CHECK(replaced.key_id != made.key_id);
  CHECK(mode_of(path) == 0600);
  CHECK(well_formed_key_text(read_file(path)));
  CHECK(read_file(path) != text);
  CHECK(dc::load_cluster_key(path, false).key_id == replaced.key_id);
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
  }
  CHECK(entries == 2);
}

TEST_CASE("key_file: keygen never writes through a symlink and creates missing dirs 0700 (A12)")
{
  ScratchDir dir;
  const std::string target = dir.file("target");
  write_file(target, "do not touch\n");
  const std::string link = dir.file("link.key");
  REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
  CHECK_THROWS_AS(dc::generate_key_file(link, false), dc::ConfigError);
  CHECK(read_file(target) == "do not touch\n");
  dc::generate_key_file(link, true); // replaces the link itself, not its target
  CHECK(read_file(target) == "do not touch\n");
  CHECK(mode_of(link) == 0600);
  CHECK(refusal(link).empty());

  const std::string nested = dir.file("a/b/cluster.key");
  dc::generate_key_file(nested, false);
  CHECK(mode_of(dir.file("a")) == 0700);
  CHECK(mode_of(dir.file("a/b")) == 0700);
  CHECK(refusal(nested).empty());

  const std::string subdir = dir.file("isdir");
  REQUIRE(::mkdir(subdir.c_str(), 0700) == 0);
  CHECK_THROWS_AS(dc::generate_key_file(subdir, false), dc::ConfigError);
  CHECK_THROWS_AS(dc::generate_key_file(subdir, true), dc::ConfigError);
}

TEST_CASE("key_file: the search path starts in $HOME and names what it tried")
{
  ScratchDir dir;
  const HomeOverride home(dir.path());
  const std::string user_path = dir.path() + "/.config/distcomp/cluster.key";
  const std::vector<std::string> paths = dc::key_search_path();
  REQUIRE(paths.size() == 2);
  CHECK(paths[0] == user_path);
  CHECK(paths[1] == "/etc/distcomp/cluster.key");
  CHECK(dc::default_keygen_path() == user_path);

  struct stat st {};
  if (::lstat("/etc/distcomp/cluster.key", &st) == 0) {
    MESSAGE("skipped the 'no key file' check: /etc/distcomp/cluster.key exists");
  } else {
    CHECK_THROWS_WITH_AS(
        dc::load_cluster_key(std::nullopt, false),
        ("no key file: tried " + user_path + ", /etc/distcomp/cluster.key; run 'master --keygen'")
            .c_str(),
        dc::ConfigError);
  }

  const dc::ClusterKey made = dc::generate_key_file(dc::default_keygen_path(), false);
  CHECK(mode_of(dir.path() + "/.config") == 0700);
  CHECK(mode_of(dir.path() + "/.config/distcomp") == 0700);
  const dc::ClusterKey found = dc::load_cluster_key(std::nullopt, false);
  CHECK(found.path == user_path);
  CHECK(found.key_id == made.key_id);

  // The first existing file is judged, not skipped: a bad one is an error, not a fallback.
  REQUIRE(::chmod(user_path.c_str(), 0644) == 0);
  CHECK_THROWS_AS(dc::load_cluster_key(std::nullopt, false), dc::ConfigError);
}
