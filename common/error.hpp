#pragma once
// Error types, chosen by who is at fault (STYLE.md §4). OS failures stay std::system_error.

#include <stdexcept>
#include <string>

namespace dc {

// The peer sent bytes that break the protocol: the session closes, the daemon lives on.
class ProtocolError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// A record failed to decrypt: forged, replayed, reordered or damaged. Never answered.
class AuthenticationError : public ProtocolError {
public:
  using ProtocolError::ProtocolError;
};

// The user gave us something unusable (flag, peers file, key file): exit status 2.
class ConfigError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// A bundle was refused. `code` is the stable wire code (bad_bundle, bad_path, bundle_too_large,
// no_space); `ref` the manifest entry index it concerns, or -1.
class BundleError : public std::runtime_error {
public:
  BundleError(std::string code, const std::string& msg, long long ref = -1)
      : std::runtime_error(msg), m_code(std::move(code)), m_ref(ref)
  {
  }
  const std::string& code() const { return m_code; }
  long long ref() const { return m_ref; }

private:
  std::string m_code;
  long long m_ref;
};

} // namespace dc
