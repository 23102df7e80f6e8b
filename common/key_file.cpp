#include "common/key_file.hpp"

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/unique_fd.hpp"

#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <pwd.h>
#include <stdexcept>
#include <string_view>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

namespace dc {

namespace {

constexpr std::string_view k_header = "distcomp-key-v1 ";
constexpr std::size_t k_hex_size = 2 * k_cluster_key_size;        // 64
constexpr std::size_t k_line_size = k_header.size() + k_hex_size; // 80, then '\n'
constexpr std::size_t k_max_read = 128; // a valid file has 81 bytes; more is bad format anyway
constexpr const char* k_system_key_path = "/etc/distcomp/cluster.key";
constexpr const char* k_bad_format = "bad format (expected 'distcomp-key-v1 <64 hex digits>')";

static_assert(crypto_kdf_CONTEXTBYTES == 8 && crypto_kdf_KEYBYTES == k_cluster_key_size);

[[noreturn]] void fail(const std::string& path, const std::string& problem)
{
  throw ConfigError("key file " + escape_for_log(path) + ": " + problem);
}

std::string errno_text(int e)
{
  return std::generic_category().message(e);
}

std::string parent_dir_of(const std::string& path)
{
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    return ".";
  }
  if (slash == 0) {
    return "/";
  }
  return path.substr(0, slash);
}

std::string base_of(const std::string& path)
{
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string octal_mode(mode_t mode)
{
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// Zeroes a buffer that held key text when the scope ends, however it ends.
class WipeOnExit {
public:
  WipeOnExit(void* p, std::size_t n) : m_p(p), m_n(n) {}
  ~WipeOnExit() { sodium_memzero(m_p, m_n); }
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;

private:
  void* m_p;
  std::size_t m_n;
};

void check_type(const std::string& path, mode_t mode)
{
  if (S_ISLNK(mode)) {
    fail(path, "is a symbolic link");
  }
  if (S_ISDIR(mode)) {
    fail(path, "is a directory");
  }
  if (!S_ISREG(mode)) {
    fail(path, "is not a regular file");
  }
}

void check_permissions(const std::string& path, const struct stat& st)
{
  if (st.st_uid != geteuid()) {
    fail(path, "owned by uid " + std::to_string(st.st_uid) + ", not by us (uid " +
                   std::to_string(geteuid()) + ")");
  }
  if ((st.st_mode & 077) != 0) {
    fail(path,
         "mode " + octal_mode(st.st_mode) + " is too open; run chmod 600 " + escape_for_log(path));
  }
  const std::string parent = parent_dir_of(path);
  struct stat pst {};
  if (::stat(parent.c_str(), &pst) != 0) {
    fail(path,
         "cannot inspect parent directory " + escape_for_log(parent) + ": " + errno_text(errno));
  }
  if ((pst.st_mode & 022) != 0) {
    fail(path, "parent directory " + escape_for_log(parent) + " is group/world-writable");
  }
}

// Accepts exactly the header, 64 lowercase hex digits and an optional final newline.
bool well_formed(const char* text, std::size_t size)
{
  if (size != k_line_size && !(size == k_line_size + 1 && text[k_line_size] == '\n')) {
    return false;
  }
  if (std::memcmp(text, k_header.data(), k_header.size()) != 0) {
    return false;
  }
  for (std::size_t i = k_header.size(); i < k_line_size; ++i) {
    const char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

ClusterKey load_from(const std::string& path, bool force_permissions)
{
  struct stat lst {};
  if (::lstat(path.c_str(), &lst) != 0) {
    const int e = errno;
    fail(path, e == ENOENT ? std::string("does not exist") : "cannot access: " + errno_text(e));
  }
  check_type(path, lst.st_mode); // before open(): never open a FIFO or device at all

  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) {
    const int e = errno;
    fail(path, e == ELOOP ? std::string("is a symbolic link") : "cannot open: " + errno_text(e));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    fail(path, "cannot inspect: " + errno_text(errno));
  }
  check_type(path, st.st_mode); // the file we opened, in case it was swapped after lstat()
  if (!force_permissions) {
    check_permissions(path, st);
  }

  char text[k_max_read];
  const WipeOnExit wipe_text(text, sizeof text);
  std::size_t size = 0;
  while (size < sizeof text) {
    const ssize_t n = ::read(fd.get(), text + size, sizeof text - size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      fail(path, "cannot read: " + errno_text(errno));
    }
    if (n == 0) {
      break;
    }
    size += static_cast<std::size_t>(n);
  }
  if (!well_formed(text, size)) {
    fail(path, k_bad_format);
  }
  SecureBuffer raw(k_cluster_key_size);
  std::size_t raw_size = 0;
  if (sodium_hex2bin(raw.data(), raw.size(), text + k_header.size(), k_hex_size, nullptr, &raw_size,
                     nullptr) != 0 ||
      raw_size != k_cluster_key_size) {
    fail(path, k_bad_format);
  }
  ClusterKey key = derive_cluster_key(raw.view());
  key.path = path;
  return key;
}

} // namespace

std::string home_dir()
{
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return home;
  }
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
  struct passwd pw {};
  struct passwd* result = nullptr;
  if (::getpwuid_r(geteuid(), &pw, buf.data(), buf.size(), &result) == 0 && result != nullptr &&
      pw.pw_dir != nullptr && pw.pw_dir[0] != '\0') {
    return pw.pw_dir;
  }
  return {};
}

namespace {

// mkdir -p with mode 0700 for every directory it creates; existing ones are left alone.
void make_dirs(const std::string& key_path, const std::string& dir)
{
  struct stat st {};
  if (dir.empty() || dir == "." || dir == "/" || ::stat(dir.c_str(), &st) == 0) {
    return;
  }
  make_dirs(key_path, parent_dir_of(dir));
  if (::mkdir(dir.c_str(), 0700) != 0) {
    const int e = errno;
    if (e == EEXIST) {
      return;
    }
    fail(key_path, "cannot create directory " + escape_for_log(dir) + ": " + errno_text(e));
  }
  (void)::chmod(dir.c_str(), 0700); // exactly 0700 whatever the umask
}

void write_all(int fd, const std::uint8_t* data, std::size_t size)
{
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      throw std::system_error(errno, std::generic_category(), "write");
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Writes the key line to a freshly created file; fsyncs and closes it. Throws ConfigError.
void write_key(const std::string& path, const std::string& file, UniqueFd fd, ByteView line)
{
  try {
    write_all(fd.get(), line.data(), line.size());
    if (::fchmod(fd.get(), 0600) != 0) {
      throw std::system_error(errno, std::generic_category(), "fchmod");
    }
    if (::fsync(fd.get()) != 0) {
      throw std::system_error(errno, std::generic_category(), "fsync");
    }
    if (::close(fd.release()) != 0) {
      throw std::system_error(errno, std::generic_category(), "close");
    }
  } catch (const std::system_error& e) {
    ::unlink(file.c_str());
    fail(path, "cannot write " + escape_for_log(file) + ": " + e.code().message());
  }
}

void sync_dir(const std::string& dir)
{
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) {
    (void)::fsync(fd.get()); // best effort: makes the new directory entry durable
  }
}

} // namespace

ClusterKey derive_cluster_key(ByteView raw_key32)
{
  if (raw_key32.size() != k_cluster_key_size) {
    throw std::invalid_argument("cluster key must be 32 bytes");
  }
  init_sodium();
  ClusterKey key;
  crypto_kdf_derive_from_key(key.psk.data(), key.psk.size(), 1, "DCMP-psk", raw_key32.data());
  std::uint8_t kid[16];
  crypto_kdf_derive_from_key(kid, sizeof kid, 2, "DCMP-kid", raw_key32.data());
  std::memcpy(key.key_id.data(), kid, key.key_id.size());
  sodium_memzero(kid, sizeof kid);
  return key;
}

std::string key_id_hex(const KeyId& id)
{
  return to_hex(id);
}

std::vector<std::string> key_search_path()
{
  std::vector<std::string> paths;
  if (const std::string home = home_dir(); !home.empty()) {
    paths.push_back(home + "/.config/distcomp/cluster.key");
  }
  paths.emplace_back(k_system_key_path);
  return paths;
}

std::string default_keygen_path()
{
  const std::string home = home_dir();
  if (home.empty()) {
    throw ConfigError("no home directory known for the key file; pass a path");
  }
  return home + "/.config/distcomp/cluster.key";
}

ClusterKey load_cluster_key(const std::optional<std::string>& explicit_path, bool force_permissions)
{
  if (explicit_path) {
    return load_from(*explicit_path, force_permissions);
  }
  const std::vector<std::string> paths = key_search_path();
  for (const std::string& path : paths) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) {
      return load_from(path, force_permissions); // exists (or is unreadable): judge this one
    }
  }
  std::string tried;
  for (const std::string& path : paths) {
    tried += (tried.empty() ? "" : ", ") + escape_for_log(path);
  }
  throw ConfigError("no key file: tried " + tried + "; run 'master --keygen'");
}

ClusterKey generate_key_file(const std::string& path, bool force)
{
  init_sodium();
  const std::string dir = parent_dir_of(path);
  make_dirs(path, dir);

  SecureBuffer raw(k_cluster_key_size);
  randombytes_buf(raw.data(), raw.size());
  SecureBuffer line(k_line_size + 1); // header, hex, '\n'
  std::memcpy(line.data(), k_header.data(), k_header.size());
  char hex[k_hex_size + 1];
  sodium_bin2hex(hex, sizeof hex, raw.data(), raw.size());
  std::memcpy(line.data() + k_header.size(), hex, k_hex_size);
  sodium_memzero(hex, sizeof hex);
  line.data()[k_line_size] = '\n';

  constexpr int k_create_flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  if (!force) {
    const int fd = ::open(path.c_str(), k_create_flags, 0600);
    if (fd < 0) {
      const int e = errno;
      fail(path, e == EEXIST ? std::string("already exists (use --force to replace it)")
                             : "cannot create: " + errno_text(e));
    }
    write_key(path, path, UniqueFd(fd), line.view());
  } else {
    std::uint8_t suffix[4];
    randombytes_buf(suffix, sizeof suffix);
    const std::string temp =
        (dir == "/" ? "" : dir) + "/." + base_of(path) + ".tmp-" + to_hex(suffix);
    const int fd = ::open(temp.c_str(), k_create_flags, 0600);
    if (fd < 0) {
      fail(path, "cannot create " + escape_for_log(temp) + ": " + errno_text(errno));
    }
    write_key(path, temp, UniqueFd(fd), line.view());
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      const int e = errno;
      ::unlink(temp.c_str());
      fail(path, "cannot replace: " + errno_text(e));
    }
  }
  sync_dir(dir);

  struct stat pst {};
  if (::stat(dir.c_str(), &pst) == 0 && (pst.st_mode & 022) != 0) {
    log_warn("key file %s: parent directory %s is group/world-writable; loading will refuse it",
             escape_for_log(path).c_str(), escape_for_log(dir).c_str());
  }
  ClusterKey key = derive_cluster_key(raw.view());
  key.path = path;
  return key;
}

} // namespace dc
