#pragma once
// JSON bodies of the control records (PROTOCOL.md §4). Parsing is strict about the types of known
// fields, ignores unknown ones (forward compatibility) and bounds nesting depth.

#include "common/bytes.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dc {

using Json = nlohmann::json;

inline constexpr int k_max_json_depth = 8; // control bodies are flat; deeper input is hostile

// Parses a control body. Throws ProtocolError on invalid JSON, a non-object, or depth > 8.
Json parse_body(ByteView body);
std::string dump_body(const Json& j);

struct Hello {
  std::string client;
  std::string name; // the node's label at the master, for the worker's log
  bool kill_on_disconnect = true;
  bool keep = false; // keep the job dir after the session
};

struct Welcome {
  std::string worker; // host name
  std::string version;
  std::string session; // session id, hex
  std::vector<std::string> features;
  Json facts = Json::object();
  Json limits = Json::object();
  std::string job_dir; // set when the master asked to keep the job dir
};

struct BundleBeginBody {
  std::uint64_t entries = 0, files = 0, bytes = 0, manifest_zbytes = 0;
};

struct BundleOkBody {
  std::uint64_t files = 0, bytes = 0, from_cache = 0, ms = 0;
};

struct RunBody {
  std::uint32_t id = 0;
  std::string sh;
  std::map<std::string, std::string> env;
  double timeout_s = 0; // seconds; 0 = none
  bool stdin = false;   // the master sends STDIN records (feature "stdin"); else /dev/null
};

// WINDOW: the worker grants credit for `bytes` more bytes of a command's stdin.
struct WindowBody {
  std::uint32_t id = 0;
  std::string stream = "stdin";
  std::uint64_t bytes = 0;
};

struct ExitBody {
  std::uint32_t id = 0;
  std::optional<int> code;
  std::optional<int> signal;
  std::string reason; // "exited", "signaled", "timeout", "cancelled", "spawn_failed"
  std::uint64_t wall_ms = 0;
};

struct CancelBody {
  std::optional<std::uint32_t> id; // absent = all
};

struct ErrorBody {
  std::string code;
  std::string msg;
  std::optional<long long> ref;
  bool fatal = false;
};

// Each throws ProtocolError when a known field has the wrong type or a required one is missing.
Json to_json(const Hello& m);
Hello hello_from(const Json& j);
Json to_json(const Welcome& m);
Welcome welcome_from(const Json& j);
Json to_json(const BundleBeginBody& m);
BundleBeginBody bundle_begin_from(const Json& j);
Json to_json(const BundleOkBody& m);
BundleOkBody bundle_ok_from(const Json& j);
Json to_json(const RunBody& m);
RunBody run_from(const Json& j);
Json to_json(const WindowBody& m);
WindowBody window_from(const Json& j);
Json to_json(const ExitBody& m);
ExitBody exit_from(const Json& j);
Json to_json(const CancelBody& m);
CancelBody cancel_from(const Json& j);
Json to_json(const ErrorBody& m);
ErrorBody error_from(const Json& j);

} // namespace dc
