#pragma once
// JSON bodies of the control records (PROTOCOL.md §4). Parsing is strict about the types of known
// fields, ignores unknown ones (forward compatibility) and bounds nesting depth.

#include "common/bytes.hpp"

#include <nlohmann/json.hpp>

#include <array>
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
  bool keep = false;   // keep the job dir after the session
  bool bundle = false; // a bundle follows (the worker may prepare its job dir meanwhile)
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

// FETCH: result paths relative to the job dir (files, directories or globs; fetch_pattern.hpp).
struct FetchBody {
  std::vector<std::string> paths;
};

// FETCH_REPLY: which paths matched nothing, and how many entries were left out (symlinks,
// sockets, devices, names no bundle may carry) with a few of their paths as examples.
struct FetchReplyBody {
  std::vector<std::string> missing;
  std::uint64_t skipped = 0;
  std::vector<std::string> skipped_examples;
};

struct RunBody {
  std::uint32_t id = 0;
  std::string sh;
  std::map<std::string, std::string> env;
  double timeout_s = 0; // seconds; 0 = none
  bool stdin = false;   // the master sends STDIN records (feature "stdin"); else /dev/null
  // Feature "msg": the job's place among the nodes of the run; the worker opens a messaging
  // endpoint for the session at the first RUN that carries it.
  struct Msg {
    std::uint32_t rank = 0;
    std::uint32_t size = 0;
  };
  std::optional<Msg> msg;
};

// WINDOW: credit for `bytes` more bytes of a stream: a command's stdin ("stdin", W->M, id = the
// command) or node-to-node messages ("msg", id = the other node; common/msg_wire.hpp).
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
Json to_json(const FetchBody& m);
FetchBody fetch_from(const Json& j);
Json to_json(const FetchReplyBody& m);
FetchReplyBody fetch_reply_from(const Json& j);
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

// WELCOME `facts` (PROTOCOL.md §5): what a worker learnt about its machine at start-up. Every
// field is optional on the wire (older workers send fewer); a present one is type-checked.
struct GpuFact {
  std::uint32_t index = 0;                   // position in PCI bus order (nvidia-smi's default)
  std::string name;                          // "NVIDIA GeForce RTX 3090"
  std::optional<std::uint64_t> memory_bytes; // null: not known without running a vendor tool
  std::string bus;                           // PCI address, "0000:01:00.0"
};

struct WorkerFacts {
  std::string hostname;
  std::string os;          // os-release PRETTY_NAME, "Debian GNU/Linux 12 (bookworm)"
  std::string kernel;      // uname: "Linux 6.1.0-18-amd64"
  std::string arch;        // uname machine, "x86_64"
  std::uint32_t cores = 0; // logical CPUs the worker (and so every job) may use
  std::uint64_t mem_total_bytes = 0;
  std::vector<GpuFact> gpus;
  std::string version;         // worker version
  std::int64_t started_at = 0; // unix seconds
};

// Bounds a worker applies to its facts, so WELCOME stays below one record: at the limits (64 GPUs
// with 256-byte names and bus ids, 256-byte strings) the facts are under 40 KB of JSON.
inline constexpr std::size_t k_max_gpus = 64;
inline constexpr std::size_t k_max_fact_size = 256; // bytes per string fact

// STATUS_REPLY (0x51): the dynamic facts. STATUS (0x50) itself is the empty object.
struct StatusReplyBody {
  std::uint64_t uptime_s = 0;                       // since the worker started
  std::optional<std::array<double, 3>> load;        // 1, 5, 15 min (/proc/loadavg)
  std::optional<std::uint64_t> mem_available_bytes; // /proc/meminfo MemAvailable
  std::uint32_t running_jobs = 0;                   // commands running now, all sessions
  std::uint32_t sessions = 0; // other authenticated sessions (the asking one not counted)
};

Json to_json(const GpuFact& m);
Json to_json(const WorkerFacts& m);
WorkerFacts facts_from(const Json& j);
Json to_json(const StatusReplyBody& m);
StatusReplyBody status_reply_from(const Json& j);

} // namespace dc
