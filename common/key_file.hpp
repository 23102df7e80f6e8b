#pragma once
// The cluster key file (PROTOCOL.md §2): one line "distcomp-key-v1 <64 lowercase hex>\n" holding
// 32 random bytes K. Only values derived from K are kept (Noise §14 asks not to use K directly).
// init_sodium() is declared in common/secure_buffer.hpp, included here.

#include "common/bytes.hpp"
#include "common/secure_buffer.hpp"
#include "common/wire.hpp"

#include <optional>
#include <string>
#include <vector>

namespace dc {

inline constexpr std::size_t k_cluster_key_size = 32;

// What a process needs from the key; the raw key is never kept.
struct ClusterKey {
  SecureBuffer psk{32}; // crypto_kdf_derive_from_key(32, 1, "DCMP-psk", K)
  KeyId key_id{};       // crypto_kdf_derive_from_key(16, 2, "DCMP-kid", K)[0..8), public
  std::string path;     // where it was loaded from ("" for derive_cluster_key)
};

// Derives psk and key id from the raw 32-byte key. Throws std::invalid_argument if the size is
// not 32.
ClusterKey derive_cluster_key(ByteView raw_key32);

// Renders a key id as 16 lowercase hex digits. Does not throw (beyond std::bad_alloc).
std::string key_id_hex(const KeyId& id);

// The user's home directory: $HOME, else the passwd entry of the effective uid; "" if neither is
// known. Does not throw (beyond std::bad_alloc).
std::string home_dir();

// The default search order: ~/.config/distcomp/cluster.key (home from $HOME, else the passwd
// entry of the effective uid; left out if neither is known), then /etc/distcomp/cluster.key.
// Does not throw (beyond std::bad_alloc).
std::vector<std::string> key_search_path();

// Where keygen writes by default: ~/.config/distcomp/cluster.key. Throws ConfigError if no home
// directory is known.
std::string default_keygen_path();

// Loads `explicit_path` if given, else the first existing file of key_search_path(), refusing a
// file that is not a regular file, is owned by another uid, has group/other mode bits, sits in a
// group/world-writable directory (these three are skipped with force_permissions) or is not
// exactly in the key format. Throws ConfigError with one line: "key file PATH: <problem>", or
// "no key file: tried A, B; run 'master --keygen'".
ClusterKey load_cluster_key(const std::optional<std::string>& explicit_path,
                            bool force_permissions);

// Creates a new key file at `path` (mode 0600, O_EXCL, fsync'd; a missing parent directory is
// created with mode 0700) and returns its derived values. An existing file is replaced (through a
// temporary file and rename) only with `force`. Throws ConfigError ("key file PATH: <problem>").
ClusterKey generate_key_file(const std::string& path, bool force);

} // namespace dc
