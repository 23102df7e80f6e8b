#include "master/status_table.hpp"

#include "master/node_result.hpp"
#include "master/options.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <utility>

namespace dc::master {
namespace {

// A worker's strings go to a terminal: control characters (and a lone DEL) become '?'.
std::string printable(std::string_view s)
{
  std::string out(s);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      c = '?';
    }
  }
  return out;
}

// Display width: UTF-8 code points (continuation bytes do not count).
std::size_t width(std::string_view s)
{
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

std::string short_gpu_name(std::string name)
{
  name.erase(name.find_last_not_of(' ') + 1);
  for (const char* prefix : {"NVIDIA ", "GeForce "}) {
    const std::string_view p(prefix);
    if (name.size() > p.size() && name.compare(0, p.size(), p) == 0) {
      name.erase(0, p.size());
    }
  }
  return name;
}

std::string format_load(double v)
{
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// JSON lines keep their keys in the order written ("type", "index", "node" first), for people
// reading them; consumers do not care.
using OrderedJson = nlohmann::ordered_json;

std::string dump_line(const OrderedJson& j)
{
  return j.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

OrderedJson optional_json(const auto& v)
{
  return v ? OrderedJson(*v) : OrderedJson(nullptr);
}

struct Counts {
  std::size_t up = 0, no_status = 0, unreachable = 0, rejected = 0, error = 0;
};

Counts count(const std::vector<NodeStatus>& nodes)
{
  Counts c;
  for (const auto& n : nodes) {
    switch (n.state) {
    case StatusState::up:
      ++c.up;
      break;
    case StatusState::no_status:
      ++c.no_status;
      break;
    case StatusState::unreachable:
      ++c.unreachable;
      break;
    case StatusState::rejected:
      ++c.rejected;
      break;
    case StatusState::error:
      ++c.error;
      break;
    }
  }
  return c;
}

std::uint64_t elapsed_ms(Clock::duration d)
{
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

} // namespace

const char* to_string(StatusState s)
{
  switch (s) {
  case StatusState::up:
    return "up";
  case StatusState::no_status:
    return "no_status";
  case StatusState::unreachable:
    return "unreachable";
  case StatusState::rejected:
    return "rejected";
  case StatusState::error:
    return "error";
  }
  return "?";
}

std::string format_bytes(std::uint64_t bytes)
{
  static constexpr std::array<const char*, 7> k_units = {"B",   "KiB", "MiB", "GiB",
                                                         "TiB", "PiB", "EiB"};
  if (bytes < 1024) {
    return std::to_string(bytes) + " B";
  }
  double v = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (v >= 1024 && unit + 1 < k_units.size()) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 100 ? "%.1f %s" : "%.0f %s", v, k_units[unit]);
  return buf;
}

std::string format_uptime(std::uint64_t s)
{
  char buf[48];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%llum %02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lluh %02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llud %02lluh", static_cast<unsigned long long>(s / 86400),
                  static_cast<unsigned long long>(s % 86400 / 3600));
  }
  return buf;
}

std::string summarize_gpus(const std::vector<GpuFact>& gpus)
{
  if (gpus.empty()) {
    return "none";
  }
  std::vector<std::pair<std::string, std::size_t>> groups; // name, count; first appearance first
  for (const auto& g : gpus) {
    const std::string name = short_gpu_name(g.name.empty() ? "unknown" : g.name);
    const auto it = std::find_if(groups.begin(), groups.end(),
                                 [&](const auto& group) { return group.first == name; });
    if (it == groups.end()) {
      groups.emplace_back(name, 1);
    } else {
      ++it->second;
    }
  }
  std::string out;
  for (const auto& [name, n] : groups) {
    out += (out.empty() ? "" : ", ") + std::to_string(n) + "x " + name;
  }
  return out;
}

std::string state_text(const NodeStatus& s)
{
  switch (s.state) {
  case StatusState::up:
    return "up";
  case StatusState::no_status:
    return "no status support";
  default:
    return std::string(to_string(s.state)) + (s.reason.empty() ? "" : ": " + s.reason);
  }
}

std::string format_status_table(const std::vector<NodeStatus>& nodes)
{
  using Row = std::array<std::string, 9>;
  std::vector<Row> rows;
  rows.push_back({"NODE", "STATE", "VERSION", "UPTIME", "CORES", "LOAD", "MEMORY (avail / total)",
                  "GPUS", "JOBS"});
  for (const auto& n : nodes) {
    Row row;
    row.fill("-");
    row[0] = n.label;
    row[1] = state_text(n);
    if (!n.version.empty()) {
      row[2] = n.version;
    }
    if (n.facts) {
      if (n.facts->cores > 0) {
        row[4] = std::to_string(n.facts->cores);
      }
      row[7] = summarize_gpus(n.facts->gpus);
    }
    const std::string total =
        n.facts && n.facts->mem_total_bytes > 0 ? format_bytes(n.facts->mem_total_bytes) : "-";
    if (n.reply) {
      row[3] = format_uptime(n.reply->uptime_s);
      if (n.reply->load) {
        row[5] = format_load((*n.reply->load)[0]);
      }
      const std::string available =
          n.reply->mem_available_bytes ? format_bytes(*n.reply->mem_available_bytes) : "-";
      row[6] = available + " / " + total;
      row[8] = std::to_string(n.reply->running_jobs);
    } else if (total != "-") {
      row[6] = "- / " + total;
    }
    for (auto& cell : row) {
      cell = printable(cell);
    }
    rows.push_back(std::move(row));
  }
  std::array<std::size_t, 9> widths{};
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], width(row[i]));
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line.append(widths[i] - width(row[i]) + 2, ' ');
      }
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + "\n";
  }
  return out;
}

std::string status_json_line(const NodeStatus& n, std::size_t index)
{
  const bool welcomed = n.state == StatusState::up || n.state == StatusState::no_status;
  OrderedJson j = {{"type", "node"},
                   {"index", index},
                   {"node", n.label},
                   {"state", to_string(n.state)},
                   {"reason", n.reason.empty() ? OrderedJson(nullptr) : OrderedJson(n.reason)},
                   {"version", welcomed ? OrderedJson(n.version) : OrderedJson(nullptr)}};
  for (const char* key :
       {"hostname", "os", "kernel", "arch", "cores", "mem_total_bytes", "gpus", "started_at",
        "uptime_s", "load", "mem_available_bytes", "running_jobs", "sessions"}) {
    j[key] = nullptr; // unknown until said otherwise below
  }
  if (n.facts) {
    const WorkerFacts& f = *n.facts;
    j["hostname"] = f.hostname;
    j["os"] = f.os;
    j["kernel"] = f.kernel;
    j["arch"] = f.arch;
    j["cores"] = f.cores;
    j["mem_total_bytes"] = f.mem_total_bytes;
    j["gpus"] = OrderedJson::array();
    for (const auto& g : f.gpus) {
      j["gpus"].push_back(OrderedJson(to_json(g)));
    }
    j["started_at"] = f.started_at;
  }
  if (n.reply) {
    const StatusReplyBody& r = *n.reply;
    j["uptime_s"] = r.uptime_s;
    j["load"] = optional_json(r.load);
    j["mem_available_bytes"] = optional_json(r.mem_available_bytes);
    j["running_jobs"] = r.running_jobs;
    j["sessions"] = r.sessions;
  }
  return dump_line(j);
}

std::string status_summary_json(const std::vector<NodeStatus>& nodes, Clock::duration elapsed)
{
  const Counts c = count(nodes);
  const OrderedJson j = {{"type", "summary"},
                         {"nodes", nodes.size()},
                         {"up", c.up},
                         {"no_status", c.no_status},
                         {"unreachable", c.unreachable},
                         {"rejected", c.rejected},
                         {"error", c.error},
                         {"elapsed_ms", elapsed_ms(elapsed)}};
  return dump_line(j);
}

std::string status_total_line(const std::vector<NodeStatus>& nodes, Clock::duration elapsed)
{
  const Counts c = count(nodes);
  std::string out;
  for (const auto& [n, what] : {std::pair{c.up, "up"},
                                {c.no_status, "without status support"},
                                {c.unreachable, "unreachable"},
                                {c.rejected, "rejected"},
                                {c.error, "failed"}}) {
    if (n > 0 || (out.empty() && std::string_view(what) == "up")) {
      out += (out.empty() ? "" : " · ") + std::to_string(n) + " " + what;
    }
  }
  return out + " — " + format_duration(elapsed);
}

int status_exit_code(const std::vector<NodeStatus>& nodes)
{
  const Counts c = count(nodes);
  return c.unreachable + c.rejected + c.error > 0 ? k_exit_unreachable : k_exit_ok;
}

} // namespace dc::master
