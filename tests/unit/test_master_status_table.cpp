#include "master/status_table.hpp"

#include <doctest/doctest.h>

#include <sstream>

using namespace dc::master;

namespace {

std::vector<std::string> lines_of(const std::string& text)
{
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

NodeStatus up_node()
{
  NodeStatus n;
  n.label = "lab01";
  n.state = StatusState::up;
  n.version = "0.1.0";
  dc::WorkerFacts f;
  f.hostname = "lab01.example";
  f.cores = 24;
  f.mem_total_bytes = 64ull << 30;
  f.gpus = {{0, "NVIDIA GeForce RTX 3090", std::nullopt, "0000:01:00.0"},
            {1, "NVIDIA GeForce RTX 3090", std::nullopt, "0000:02:00.0"}};
  n.facts = f;
  dc::StatusReplyBody r;
  r.uptime_s = 3 * 3600 + 12 * 60 + 5;
  r.load = std::array<double, 3>{1.5, 1.25, 1.0};
  r.mem_available_bytes = 48ull << 30;
  r.running_jobs = 1;
  n.reply = r;
  return n;
}

} // namespace

TEST_CASE("status table: human units for bytes and uptime")
{
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1536) == "1.5 KiB");
  CHECK(format_bytes(32657184ull * 1024) == "31.1 GiB");
  CHECK(format_bytes(512ull << 30) == "512 GiB");
  CHECK(format_bytes(~0ull) == "16.0 EiB");
  CHECK(format_uptime(0) == "0s");
  CHECK(format_uptime(59) == "59s");
  CHECK(format_uptime(12 * 60 + 5) == "12m 05s");
  CHECK(format_uptime(3 * 3600 + 12 * 60 + 59) == "3h 12m");
  CHECK(format_uptime(5 * 86400 + 3 * 3600) == "5d 03h");
}

TEST_CASE("status table: GPUs are counted per model, vendor prefixes dropped")
{
  using dc::GpuFact;
  CHECK(summarize_gpus({}) == "none");
  CHECK(summarize_gpus({{0, "NVIDIA GeForce RTX 3090", std::nullopt, ""},
                        {1, "NVIDIA GeForce RTX 3090", std::nullopt, ""}}) == "2x RTX 3090");
  CHECK(summarize_gpus({{0, "NVIDIA A100-SXM4-80GB", std::nullopt, ""},
                        {1, "Tesla V100-SXM2-16GB", std::nullopt, ""},
                        {2, "NVIDIA A100-SXM4-80GB", std::nullopt, ""}}) ==
        "2x A100-SXM4-80GB, 1x Tesla V100-SXM2-16GB");
  CHECK(summarize_gpus({{0, "", std::nullopt, ""}}) == "1x unknown");
  CHECK(summarize_gpus({{0, "NVIDIA ", std::nullopt, ""}}) == "1x NVIDIA"); // nothing left: kept
}

TEST_CASE("status table: one aligned row per node in order, unknown values are '-'")
{
  NodeStatus dead;
  dead.label = "127.0.0.1:9";
  dead.state = StatusState::unreachable;
  dead.reason = "Connection refused";
  NodeStatus old_worker;
  old_worker.label = "lab02";
  old_worker.state = StatusState::no_status;
  old_worker.version = "0.0.9";
  old_worker.facts = dc::WorkerFacts{};
  old_worker.facts->cores = 4;
  NodeStatus refused;
  refused.label = "lab03";
  refused.state = StatusState::rejected;
  refused.reason = "rejected our key (key id 0011)";

  const std::string table = format_status_table({up_node(), dead, old_worker, refused});
  const auto lines = lines_of(table);
  REQUIRE(lines.size() == 5);
  CHECK(table.back() == '\n');
  CHECK(lines[1].rfind("lab01 ", 0) == 0);
  CHECK(lines[2].rfind("127.0.0.1:9 ", 0) == 0);
  CHECK(lines[3].rfind("lab02 ", 0) == 0);
  CHECK(lines[4].rfind("lab03 ", 0) == 0);
  // Every cell starts where its header does, after at least two spaces; no trailing blanks.
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < lines[0].size(); ++i) {
    if (lines[0][i] != ' ' && (i == 0 || (lines[0][i - 1] == ' ' && lines[0][i - 2] == ' '))) {
      starts.push_back(i);
    }
  }
  REQUIRE(starts.size() == 9);
  for (const auto& line : lines) {
    CAPTURE(line);
    CHECK(line.back() != ' ');
    for (std::size_t at : starts) {
      REQUIRE(line.size() > at);
      CHECK(line[at] != ' ');
      if (at > 0) {
        CHECK(line.substr(at - 2, 2) == "  ");
      }
    }
  }
  CHECK(lines[3].find("  no status support  ") != std::string::npos);
  CHECK(lines[3].find("  none  ") != std::string::npos);
  CHECK(lines[4].find("  rejected: rejected our key (key id 0011)  ") != std::string::npos);

  // The golden form of a small table.
  const std::string golden =
      "NODE         STATE                            VERSION  UPTIME  CORES  LOAD  "
      "MEMORY (avail / total)  GPUS         JOBS\n"
      "lab01        up                               0.1.0    3h 12m  24     1.50  "
      "48.0 GiB / 64.0 GiB     2x RTX 3090  1\n"
      "127.0.0.1:9  unreachable: Connection refused  -        -       -      -     "
      "-                       -            -\n";
  CHECK(format_status_table({up_node(), dead}) == golden);
}

TEST_CASE("status table: control characters from a worker never reach the terminal, UTF-8 "
          "counts as one column per character")
{
  NodeStatus n = up_node();
  n.version = "1.0\x1b[31m";
  n.facts->gpus = {{0, "Ünïcode GPU", std::nullopt, ""}};
  const auto lines = lines_of(format_status_table({n}));
  REQUIRE(lines.size() == 2);
  CHECK(lines[1].find('\x1b') == std::string::npos);
  CHECK(lines[1].find("1.0?[31m") != std::string::npos);
  CHECK(lines[1].find("1x Ünïcode GPU  1") != std::string::npos);
}

TEST_CASE("status table: JSON lines carry every key, null when unknown, and a summary")
{
  const std::string up_line = status_json_line(up_node(), 0);
  CHECK(up_line.rfind(R"({"type":"node","index":0,"node":"lab01","state":"up",)", 0) == 0);
  const dc::Json up = dc::Json::parse(up_line);
  CHECK(up["type"] == "node");
  CHECK(up["index"] == 0);
  CHECK(up["node"] == "lab01");
  CHECK(up["state"] == "up");
  CHECK(up["reason"].is_null());
  CHECK(up["version"] == "0.1.0");
  CHECK(up["cores"] == 24);
  CHECK(up["mem_total_bytes"] == 64ull << 30);
  CHECK(up["mem_available_bytes"] == 48ull << 30);
  CHECK(up["load"] == dc::Json::array({1.5, 1.25, 1.0}));
  CHECK(up["running_jobs"] == 1);
  CHECK(up["uptime_s"] == 3 * 3600 + 12 * 60 + 5);
  REQUIRE(up["gpus"].size() == 2);
  CHECK(up["gpus"][1]["name"] == "NVIDIA GeForce RTX 3090");
  CHECK(up["gpus"][1]["memory_bytes"].is_null());

  NodeStatus dead;
  dead.label = "x";
  dead.reason = "connect timeout (5.00 s)";
  const std::string line = status_json_line(dead, 3);
  CHECK(line.find('\n') == std::string::npos);
  const dc::Json j = dc::Json::parse(line);
  CHECK(j["state"] == "unreachable");
  CHECK(j["reason"] == "connect timeout (5.00 s)");
  for (const char* key : {"version", "hostname", "cores", "gpus", "load", "running_jobs"}) {
    CAPTURE(key);
    CHECK(j.contains(key));
    CHECK(j[key].is_null());
  }
  CHECK(j.size() == up.size()); // same keys either way

  const dc::Json summary =
      dc::Json::parse(status_summary_json({up_node(), dead}, std::chrono::milliseconds(42)));
  CHECK(summary["type"] == "summary");
  CHECK(summary["nodes"] == 2);
  CHECK(summary["up"] == 1);
  CHECK(summary["unreachable"] == 1);
  CHECK(summary["rejected"] == 0);
  CHECK(summary["elapsed_ms"] == 42);
}

TEST_CASE("status table: exit status 0 when every node answered, 3 otherwise, the total line")
{
  NodeStatus old_worker = up_node();
  old_worker.state = StatusState::no_status;
  old_worker.reply.reset();
  CHECK(status_exit_code({}) == 0);
  CHECK(status_exit_code({up_node(), old_worker}) == 0);
  for (StatusState bad : {StatusState::unreachable, StatusState::rejected, StatusState::error}) {
    NodeStatus n;
    n.state = bad;
    CHECK(status_exit_code({up_node(), n}) == 3);
  }
  NodeStatus dead;
  CHECK(status_total_line({up_node(), up_node(), dead}, std::chrono::milliseconds(12)) ==
        "2 up · 1 unreachable — 12 ms");
  CHECK(status_total_line({dead}, std::chrono::milliseconds(12)) == "0 up · 1 unreachable — 12 ms");
}
