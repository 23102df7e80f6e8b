// End-to-end: `master --status` against real workers (facts in WELCOME, load in STATUS_REPLY),
// a dead address, a silent listener, a busy worker and a wrong key; the table, the JSON lines,
// the exit status, and the running-job count while another master runs a command.

#include "common/messages.hpp"
#include "common/wire.hpp"
#include "tests/support/processes.hpp"
#include "tests/support/raw_client.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <map>

using namespace dc::test;
using namespace std::chrono_literals;

namespace {

// The table on stdout as rows of named cells, cut at the columns of the header line.
struct Table {
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
  const std::map<std::string, std::string>& row(const std::string& node) const
  {
    for (const auto& r : rows) {
      if (r.at("NODE") == node) {
        return r;
      }
    }
    FAIL("no row for " << node);
    return rows.front();
  }
};

std::string trimmed(std::string s)
{
  s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

Table parse_table(const MasterRun& run)
{
  Table t;
  const auto lines = run.stdout_lines();
  REQUIRE(!lines.empty());
  const std::string& head = lines[0];
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < head.size(); ++i) {
    if (head[i] != ' ' && (i == 0 || (i >= 2 && head[i - 1] == ' ' && head[i - 2] == ' '))) {
      starts.push_back(i);
    }
  }
  for (std::size_t c = 0; c < starts.size(); ++c) {
    t.header.push_back(trimmed(head.substr(
        starts[c], c + 1 < starts.size() ? starts[c + 1] - starts[c] : std::string::npos)));
  }
  for (std::size_t l = 1; l < lines.size(); ++l) {
    std::map<std::string, std::string> row;
    for (std::size_t c = 0; c < starts.size(); ++c) {
      const std::string& line = lines[l];
      const std::size_t end = c + 1 < starts.size() ? starts[c + 1] : line.size();
      row[t.header[c]] =
          starts[c] < line.size()
              ? trimmed(line.substr(starts[c], std::min(end, line.size()) - starts[c]))
              : "";
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}

std::vector<dc::Json> parse_json_lines(const MasterRun& run)
{
  std::vector<dc::Json> out;
  for (const auto& line : run.stdout_lines()) {
    CAPTURE(line);
    dc::Json j;
    CHECK_NOTHROW(j = dc::Json::parse(line));
    REQUIRE(j.is_object());
    out.push_back(std::move(j));
  }
  return out;
}

// A row of a live, idle worker: every column filled.
void check_up_row(const std::map<std::string, std::string>& row, const std::string& jobs)
{
  CHECK(row.at("STATE") == "up");
  CHECK(row.at("VERSION") == DC_VERSION);
  CHECK(std::stoi(row.at("CORES")) > 0);
  CHECK(std::stod(row.at("LOAD")) >= 0);
  CHECK(row.at("UPTIME") != "-");
  CHECK(contains(row.at("MEMORY (avail / total)"), " / "));
  CHECK(contains(row.at("MEMORY (avail / total)"), "iB"));
  CHECK(row.at("GPUS") != "-"); // "none" or a count of models, machine-dependent
  CHECK(row.at("JOBS") == jobs);
}

} // namespace

TEST_CASE("e2e: status: two live workers and a dead address: a row each in peers order, exit 3")
{
  Cluster c(2);
  const std::string dead = "127.0.0.1:" + std::to_string(unused_port());
  const std::string peers =
      write_peers(c.dir, {c[0].address(), dead, c[1].address()}, "with-dead.txt");
  const auto started = std::chrono::steady_clock::now();
  const MasterRun run =
      run_master({"--peers", peers, "--key", c.key, "--connect-timeout", "20", "--status"});
  CHECK(std::chrono::steady_clock::now() - started < 15s); // refused at once, not timed out
  CAPTURE(run.out);
  CAPTURE(run.err);
  CHECK(run.exit_code == 3);
  const Table t = parse_table(run);
  CHECK(t.header == std::vector<std::string>{"NODE", "STATE", "VERSION", "UPTIME", "CORES", "LOAD",
                                             "MEMORY (avail / total)", "GPUS", "JOBS"});
  REQUIRE(t.rows.size() == 3);
  CHECK(t.rows[0].at("NODE") == c[0].address());
  CHECK(t.rows[1].at("NODE") == dead);
  CHECK(t.rows[2].at("NODE") == c[1].address());
  check_up_row(t.rows[0], "0");
  check_up_row(t.rows[2], "0");
  CHECK(t.rows[1].at("STATE").rfind("unreachable: ", 0) == 0);
  CHECK(contains(t.rows[1].at("STATE"), "refused"));
  CHECK(t.rows[1].at("VERSION") == "-");
  CHECK(t.rows[1].at("JOBS") == "-");
  CHECK(contains(run.err, "2 up · 1 unreachable"));
}

TEST_CASE("e2e: status: all workers up is exit 0, --json gives one valid object per node and a "
          "summary")
{
  Cluster c(2);
  const MasterRun table = c.run({"--status"});
  CAPTURE(table.err);
  CHECK(table.exit_code == 0);
  CHECK(parse_table(table).rows.size() == 2);

  const std::string dead = "127.0.0.1:" + std::to_string(unused_port());
  const std::string peers = write_peers(c.dir, {c[0].address(), c[1].address(), dead}, "j.txt");
  const MasterRun run = run_master({"--peers", peers, "--key", c.key, "--status", "--json"});
  CAPTURE(run.out);
  CAPTURE(run.err);
  CHECK(run.exit_code == 3);
  CHECK(run.err.empty()); // stdout carries everything, stderr stays quiet
  const auto objects = parse_json_lines(run);
  REQUIRE(objects.size() == 4);
  for (std::size_t i = 0; i < 2; ++i) {
    const dc::Json& j = objects[i];
    CAPTURE(j.dump());
    CHECK(j["type"] == "node");
    CHECK(j["index"] == i);
    CHECK(j["node"] == c[i].address());
    CHECK(j["state"] == "up");
    CHECK(j["reason"].is_null());
    CHECK(j["version"] == DC_VERSION);
    CHECK(j["hostname"].is_string());
    CHECK(!j["hostname"].get<std::string>().empty());
    CHECK(j["os"].is_string());
    CHECK(j["kernel"].get<std::string>().rfind("Linux ", 0) == 0);
    CHECK(j["cores"].get<int>() > 0);
    CHECK(j["mem_total_bytes"].get<std::uint64_t>() > 0);
    CHECK(j["mem_available_bytes"].get<std::uint64_t>() > 0);
    CHECK(j["mem_available_bytes"].get<std::uint64_t>() <=
          j["mem_total_bytes"].get<std::uint64_t>());
    CHECK(j["gpus"].is_array());
    REQUIRE(j["load"].is_array());
    CHECK(j["load"].size() == 3);
    CHECK(j["uptime_s"].is_number_unsigned());
    CHECK(j["started_at"].get<std::int64_t>() > 1600000000);
    CHECK(j["running_jobs"] == 0);
    CHECK(j["sessions"] == 0);
  }
  CHECK(objects[2]["type"] == "node");
  CHECK(objects[2]["node"] == dead);
  CHECK(objects[2]["state"] == "unreachable");
  CHECK(objects[2]["reason"].is_string());
  CHECK(objects[2]["cores"].is_null());
  const dc::Json& summary = objects[3];
  CHECK(summary["type"] == "summary");
  CHECK(summary["nodes"] == 3);
  CHECK(summary["up"] == 2);
  CHECK(summary["unreachable"] == 1);
  CHECK(summary["rejected"] == 0);
  CHECK(summary["elapsed_ms"].is_number_unsigned());
}

TEST_CASE("e2e: status: a running job is counted on its node, and is gone once its master was "
          "interrupted")
{
  Cluster c(2);
  const std::string one = write_peers(c.dir, {c[0].address()}, "one.txt");
  MasterProcess busy({"--peers", one, "--key", c.key, "--cmd", "echo ready; sleep 300"});
  REQUIRE(busy.wait_stdout(c[0].address() + " | ready\n", 20s));

  const MasterRun run = c.run({"--status"});
  CAPTURE(run.out);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  const Table t = parse_table(run);
  REQUIRE(t.rows.size() == 2);
  check_up_row(t.row(c[0].address()), "1");
  check_up_row(t.row(c[1].address()), "0");
  const auto objects = parse_json_lines(c.run({"--status", "--json"}));
  REQUIRE(objects.size() == 3);
  CHECK(objects[0]["running_jobs"] == 1);
  CHECK(objects[0]["sessions"] == 1); // the busy master's session; the asking one not counted
  CHECK(objects[1]["running_jobs"] == 0);

  busy.signal(SIGINT);
  CHECK(busy.wait().exit_code == 130);
  // The worker answered the interrupted master's BYE only after its job had ended.
  const Table after = parse_table(c.run({"--status"}));
  check_up_row(after.row(c[0].address()), "0");
}

TEST_CASE("e2e: status: a silent node is unreachable after the connect timeout and does not delay "
          "the others")
{
  Cluster c(1);
  SilentListener silent;
  const std::string peers = write_peers(c.dir, {silent.address(), c[0].address()}, "silent.txt");
  const auto started = std::chrono::steady_clock::now();
  const MasterRun run =
      run_master({"--peers", peers, "--key", c.key, "--connect-timeout", "1", "--status"});
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  CAPTURE(run.out);
  CHECK(run.exit_code == 3);
  const Table t = parse_table(run);
  REQUIRE(t.rows.size() == 2);
  CHECK(t.rows[0].at("STATE") == "unreachable: connect timeout (1.00 s)");
  check_up_row(t.rows[1], "0");
}

TEST_CASE("e2e: status: a worker at its session limit and a wrong key are 'rejected', exit 3")
{
  WorkerConfig config;
  config.extra = {"--max-sessions", "1"};
  Cluster c(1, config);
  const std::string one = write_peers(c.dir, {c[0].address()}, "one.txt");
  {
    MasterProcess holder({"--peers", one, "--key", c.key, "--cmd", "echo ready; sleep 300"});
    REQUIRE(holder.wait_stdout(c[0].address() + " | ready\n", 20s));
    const MasterRun run = c.run({"--status"});
    CAPTURE(run.out);
    CHECK(run.exit_code == 3);
    const std::string state = parse_table(run).row(c[0].address()).at("STATE");
    CHECK(state.rfind("rejected: ", 0) == 0);
    CHECK(contains(state, "busy"));
    holder.signal(SIGINT);
    CHECK(holder.wait().exit_code == 130);
  }
  const std::string other = make_key(c.dir, "other.key");
  const MasterRun wrong = run_master({"--peers", one, "--key", other, "--status"});
  CAPTURE(wrong.out);
  CHECK(wrong.exit_code == 3);
  CHECK(contains(parse_table(wrong).row(c[0].address()).at("STATE"), "rejected: "));
  CHECK(c.run({"--status"}).exit_code == 0); // and the worker serves the right key as before
}

TEST_CASE("e2e: status: usage errors are one line and exit 2")
{
  Cluster c(1);
  for (const auto& extra : std::vector<std::vector<std::string>>{{"--status", "--cmd", "true"},
                                                                 {"--status", "--", "uptime"},
                                                                 {"--status", "--send", "."},
                                                                 {"--status", "--blocks"}}) {
    const MasterRun run = c.run(extra);
    CAPTURE(run.err);
    CHECK(run.exit_code == 2);
    CHECK(run.out.empty());
    CHECK(run.stderr_lines().size() == 1);
  }
}

TEST_CASE("e2e: status: the worker answers STATUS at any time after WELCOME, even mid-command, a "
          "bad body is a request error, not the end of the session")
{
  TempDir dir;
  const std::string key = make_key(dir);
  WorkerProcess worker(WorkerConfig{key, {}, "127.0.0.1", {}, "", ""});
  RawClient client(worker.address(), key);
  client.handshake();
  const dc::Welcome welcome = client.hello();
  CHECK(std::find(welcome.features.begin(), welcome.features.end(), "status") !=
        welcome.features.end());
  const dc::WorkerFacts facts = dc::facts_from(welcome.facts);
  CHECK(facts.cores > 0);
  CHECK(facts.version == DC_VERSION);

  client.send(dc::RecordType::status, std::string_view("[1]"));
  const Received refused = client.receive();
  REQUIRE(refused.is(dc::RecordType::error));
  const dc::ErrorBody e = dc::error_from(dc::parse_body(refused.record.body));
  CHECK(e.code == "bad_request");
  CHECK_FALSE(e.fatal);

  dc::RunBody run;
  run.id = 1;
  run.sh = "echo started; exec sleep 300";
  client.send_json(dc::RecordType::run, dc::to_json(run));
  const Received out = client.receive();
  REQUIRE(out.is(dc::RecordType::stdout_data)); // the command runs
  client.send_json(dc::RecordType::status, dc::Json::object());
  const Received reply = client.receive();
  REQUIRE(reply.is(dc::RecordType::status_reply));
  const dc::StatusReplyBody status = dc::status_reply_from(dc::parse_body(reply.record.body));
  CHECK(status.running_jobs == 1);
  CHECK(status.sessions == 0);
  CHECK(status.load.has_value());
  CHECK(status.mem_available_bytes.value_or(0) > 0);
}

TEST_CASE("e2e: status: STATUS before HELLO is a protocol error and the session closes")
{
  TempDir dir;
  const std::string key = make_key(dir);
  WorkerProcess worker(WorkerConfig{key, {}, "127.0.0.1", {}, "", ""});
  RawClient client(worker.address(), key);
  client.handshake();
  client.send_json(dc::RecordType::status, dc::Json::object());
  const UntilClosed rest = client.until_closed(5s);
  CHECK(rest.closed);
  CHECK(rest.first_error_code() == "protocol");
  for (const auto& r : rest.records) {
    CHECK(r.type != dc::RecordType::status_reply);
  }
}
