#include "common/messages.hpp"

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
          {"keep", m.keep}};
}

Hello hello_from(const Json& j)
{
  Hello m;
  m.client = optional_field<std::string>(j, "client", "");
  m.name = optional_field<std::string>(j, "name", "");
  m.kill_on_disconnect = optional_field<bool>(j, "kill_on_disconnect", true);
  m.keep = optional_field<bool>(j, "keep", false);
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

Json to_json(const RunBody& m)
{
  Json j = {{"id", m.id}, {"sh", m.sh}, {"env", m.env}, {"timeout_s", m.timeout_s}};
  if (m.stdin) {
    j["stdin"] = true; // absent when false: an older worker never sees a field it ignores
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

} // namespace dc
