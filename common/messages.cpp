#include "common/messages.hpp"

#include "common/msg_wire.hpp"

#include <cmath>
#include <limits>
#include <type_traits>

namespace dc {
namespace {

template <typename T>
T field(const Json& j, const char* name)
{
  const auto it = j.find(name);
  if (it == j.end()) {
    throw ProtocolError(std::string("missing field '") + name + "'");
  }
  const auto wrong = [name] {
    return ProtocolError(std::string("field '") + name + "' has the wrong type or range");
  };
  // nlohmann converts numbers silently (-1 to 4294967295, 1.5 to 1): integers are checked here.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (std::is_unsigned_v<T> ? !it->is_number_unsigned() : !it->is_number_integer()) {
      throw wrong();
    }
    if constexpr (std::is_unsigned_v<T>) {
      const auto v = it->get<std::uint64_t>();
      if (v > std::numeric_limits<T>::max()) {
        throw wrong();
      }
      return static_cast<T>(v);
    } else {
      const auto v = it->get<std::int64_t>();
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
        throw wrong();
      }
      return static_cast<T>(v);
    }
  } else {
    try {
      return it->get<T>();
    } catch (const Json::exception&) {
      throw wrong();
    }
  }
}

template <typename T>
T optional_field(const Json& j, const char* name, T fallback)
{
  return j.contains(name) ? field<T>(j, name) : fallback;
}

} // namespace

Json parse_body(ByteView body)
{
  const auto depth_guard = [](int depth, Json::parse_event_t, Json&) {
    if (depth > k_max_json_depth) {
      throw ProtocolError("JSON nested deeper than " + std::to_string(k_max_json_depth));
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(body.begin(), body.end(), depth_guard);
  } catch (const Json::exception& e) {
    throw ProtocolError(std::string("bad JSON body: ") + e.what());
  }
  if (!j.is_object()) {
    throw ProtocolError("JSON body is not an object");
  }
  return j;
}

std::string dump_body(const Json& j)
{
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json to_json(const Hello& m)
{
  return {{"client", m.client},
          {"name", m.name},
          {"kill_on_disconnect", m.kill_on_disconnect},
          {"keep", m.keep},
          {"bundle", m.bundle}};
}

Hello hello_from(const Json& j)
{
  Hello m;
  m.client = optional_field<std::string>(j, "client", "");
  m.name = optional_field<std::string>(j, "name", "");
  m.kill_on_disconnect = optional_field<bool>(j, "kill_on_disconnect", true);
  m.keep = optional_field<bool>(j, "keep", false);
  m.bundle = optional_field<bool>(j, "bundle", false);
  return m;
}

Json to_json(const Welcome& m)
{
  Json j = {{"worker", m.worker},     {"version", m.version}, {"session", m.session},
            {"features", m.features}, {"facts", m.facts},     {"limits", m.limits}};
  if (!m.job_dir.empty()) {
    j["job_dir"] = m.job_dir;
  }
  return j;
}

Welcome welcome_from(const Json& j)
{
  Welcome m;
  m.worker = optional_field<std::string>(j, "worker", "");
  m.version = optional_field<std::string>(j, "version", "");
  m.session = optional_field<std::string>(j, "session", "");
  m.features = optional_field<std::vector<std::string>>(j, "features", {});
  m.facts = optional_field<Json>(j, "facts", Json::object());
  m.limits = optional_field<Json>(j, "limits", Json::object());
  m.job_dir = optional_field<std::string>(j, "job_dir", "");
  return m;
}

Json to_json(const BundleBeginBody& m)
{
  return {{"entries", m.entries},
          {"files", m.files},
          {"bytes", m.bytes},
          {"manifest_zbytes", m.manifest_zbytes}};
}

BundleBeginBody bundle_begin_from(const Json& j)
{
  return BundleBeginBody{field<std::uint64_t>(j, "entries"), field<std::uint64_t>(j, "files"),
                         field<std::uint64_t>(j, "bytes"),
                         field<std::uint64_t>(j, "manifest_zbytes")};
}

Json to_json(const BundleOkBody& m)
{
  return {{"files", m.files}, {"bytes", m.bytes}, {"from_cache", m.from_cache}, {"ms", m.ms}};
}

BundleOkBody bundle_ok_from(const Json& j)
{
  return BundleOkBody{field<std::uint64_t>(j, "files"), field<std::uint64_t>(j, "bytes"),
                      optional_field<std::uint64_t>(j, "from_cache", 0),
                      optional_field<std::uint64_t>(j, "ms", 0)};
}

Json to_json(const FetchBody& m)
{
  return {{"paths", m.paths}};
}

FetchBody fetch_from(const Json& j)
{
  return FetchBody{field<std::vector<std::string>>(j, "paths")};
}

Json to_json(const FetchReplyBody& m)
{
  return {{"missing", m.missing}, {"skipped", m.skipped}, {"skipped_examples", m.skipped_examples}};
}

FetchReplyBody fetch_reply_from(const Json& j)
{
  return FetchReplyBody{field<std::vector<std::string>>(j, "missing"),
                        optional_field<std::uint64_t>(j, "skipped", 0),
                        optional_field<std::vector<std::string>>(j, "skipped_examples", {})};
}

Json to_json(const RunBody& m)
{
  Json j = {{"id", m.id}, {"sh", m.sh}, {"env", m.env}, {"timeout_s", m.timeout_s}};
  if (m.stdin) {
    j["stdin"] = true; // absent when false: an older worker never sees a field it ignores
  }
  if (m.msg) {
    j["msg"] = {{"rank", m.msg->rank}, {"size", m.msg->size}};
  }
  return j;
}

RunBody run_from(const Json& j)
{
  RunBody m;
  m.id = field<std::uint32_t>(j, "id");
  m.sh = field<std::string>(j, "sh");
  m.env = optional_field<std::map<std::string, std::string>>(j, "env", {});
  m.timeout_s = optional_field<double>(j, "timeout_s", 0);
  if (!(m.timeout_s >= 0) || m.timeout_s > 1e9) {
    throw ProtocolError("field 'timeout_s' out of range");
  }
  m.stdin = optional_field<bool>(j, "stdin", false);
  if (j.contains("msg")) {
    const Json& msg = j["msg"];
    if (!msg.is_object()) {
      throw ProtocolError("field 'msg' must be an object");
    }
    RunBody::Msg spec{field<std::uint32_t>(msg, "rank"), field<std::uint32_t>(msg, "size")};
    if (spec.size == 0 || spec.size > k_max_msg_nodes || spec.rank >= spec.size) {
      throw ProtocolError("field 'msg' out of range");
    }
    m.msg = spec;
  }
  return m;
}

Json to_json(const WindowBody& m)
{
  return {{"id", m.id}, {"stream", m.stream}, {"bytes", m.bytes}};
}

WindowBody window_from(const Json& j)
{
  WindowBody m;
  m.id = field<std::uint32_t>(j, "id");
  m.stream = field<std::string>(j, "stream");
  m.bytes = field<std::uint64_t>(j, "bytes");
  return m;
}

Json to_json(const ExitBody& m)
{
  Json j = {{"id", m.id}, {"reason", m.reason}, {"wall_ms", m.wall_ms}};
  if (m.code) {
    j["code"] = *m.code;
  }
  if (m.signal) {
    j["signal"] = *m.signal;
  }
  return j;
}

ExitBody exit_from(const Json& j)
{
  ExitBody m;
  m.id = field<std::uint32_t>(j, "id");
  if (j.contains("code")) {
    m.code = field<int>(j, "code");
  }
  if (j.contains("signal")) {
    m.signal = field<int>(j, "signal");
  }
  if (!m.code && !m.signal) {
    throw ProtocolError("EXIT carries neither code nor signal");
  }
  m.reason = optional_field<std::string>(j, "reason", "");
  m.wall_ms = optional_field<std::uint64_t>(j, "wall_ms", 0);
  return m;
}

Json to_json(const CancelBody& m)
{
  if (m.id) {
    return {{"id", *m.id}};
  }
  return {{"all", true}};
}

CancelBody cancel_from(const Json& j)
{
  CancelBody m;
  if (j.contains("id")) {
    m.id = field<std::uint32_t>(j, "id");
  } else if (!optional_field<bool>(j, "all", false)) {
    throw ProtocolError("CANCEL names neither an id nor all");
  }
  return m;
}

Json to_json(const ErrorBody& m)
{
  Json j = {{"code", m.code}, {"msg", m.msg}, {"fatal", m.fatal}};
  if (m.ref) {
    j["ref"] = *m.ref;
  }
  return j;
}

ErrorBody error_from(const Json& j)
{
  ErrorBody m;
  m.code = field<std::string>(j, "code");
  m.msg = optional_field<std::string>(j, "msg", "");
  if (j.contains("ref")) {
    m.ref = field<long long>(j, "ref");
  }
  m.fatal = optional_field<bool>(j, "fatal", false);
  return m;
}

Json to_json(const GpuFact& m)
{
  return {{"index", m.index},
          {"name", m.name},
          {"memory_bytes", m.memory_bytes ? Json(*m.memory_bytes) : Json(nullptr)},
          {"bus", m.bus}};
}

Json to_json(const WorkerFacts& m)
{
  Json gpus = Json::array();
  for (const auto& g : m.gpus) {
    gpus.push_back(to_json(g));
  }
  return {{"hostname", m.hostname},  {"os", m.os},           {"kernel", m.kernel},
          {"arch", m.arch},          {"cores", m.cores},     {"mem_total_bytes", m.mem_total_bytes},
          {"gpus", std::move(gpus)}, {"version", m.version}, {"started_at", m.started_at}};
}

WorkerFacts facts_from(const Json& j)
{
  if (!j.is_object()) {
    throw ProtocolError("facts is not an object");
  }
  WorkerFacts m;
  m.hostname = optional_field<std::string>(j, "hostname", "");
  m.os = optional_field<std::string>(j, "os", "");
  m.kernel = optional_field<std::string>(j, "kernel", "");
  m.arch = optional_field<std::string>(j, "arch", "");
  m.cores = optional_field<std::uint32_t>(j, "cores", 0);
  m.mem_total_bytes = optional_field<std::uint64_t>(j, "mem_total_bytes", 0);
  m.version = optional_field<std::string>(j, "version", "");
  m.started_at = optional_field<std::int64_t>(j, "started_at", 0);
  if (j.contains("gpus")) {
    const Json& gpus = j.at("gpus");
    if (!gpus.is_array()) {
      throw ProtocolError("field 'gpus' has the wrong type or range");
    }
    for (const Json& g : gpus) {
      if (!g.is_object()) {
        throw ProtocolError("a GPU fact is not an object");
      }
      GpuFact gpu;
      gpu.index = field<std::uint32_t>(g, "index");
      gpu.name = optional_field<std::string>(g, "name", "");
      if (g.contains("memory_bytes") && !g.at("memory_bytes").is_null()) {
        gpu.memory_bytes = field<std::uint64_t>(g, "memory_bytes");
      }
      gpu.bus = optional_field<std::string>(g, "bus", "");
      m.gpus.push_back(std::move(gpu));
    }
  }
  return m;
}

Json to_json(const StatusReplyBody& m)
{
  Json j = {{"uptime_s", m.uptime_s},
            {"running_jobs", m.running_jobs},
            {"sessions", m.sessions},
            {"load", m.load ? Json(*m.load) : Json(nullptr)},
            {"mem_available_bytes",
             m.mem_available_bytes ? Json(*m.mem_available_bytes) : Json(nullptr)}};
  return j;
}

StatusReplyBody status_reply_from(const Json& j)
{
  StatusReplyBody m;
  m.uptime_s = field<std::uint64_t>(j, "uptime_s");
  m.running_jobs = field<std::uint32_t>(j, "running_jobs");
  m.sessions = optional_field<std::uint32_t>(j, "sessions", 0);
  if (j.contains("load") && !j.at("load").is_null()) {
    const auto load = field<std::vector<double>>(j, "load");
    if (load.size() != 3) {
      throw ProtocolError("field 'load' must hold 3 numbers");
    }
    for (double v : load) {
      if (!std::isfinite(v) || v < 0) {
        throw ProtocolError("field 'load' out of range");
      }
    }
    m.load = std::array<double, 3>{load[0], load[1], load[2]};
  }
  if (j.contains("mem_available_bytes") && !j.at("mem_available_bytes").is_null()) {
    m.mem_available_bytes = field<std::uint64_t>(j, "mem_available_bytes");
  }
  return m;
}

} // namespace dc
