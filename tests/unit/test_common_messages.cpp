#include "common/messages.hpp"

#include <doctest/doctest.h>

using namespace dc;

namespace {
Json parse(std::string_view s)
{
  return parse_body(as_bytes(s));
}
} // namespace

TEST_CASE("messages: RUN round trip and strict types")
{
  RunBody run;
  run.id = 7;
  run.sh = "echo hi";
  run.env = {{"A", "1"}};
  run.timeout_s = 2.5;
  const RunBody back = run_from(parse(dump_body(to_json(run))));
  CHECK(back.id == 7);
  CHECK(back.sh == "echo hi");
  CHECK(back.env.at("A") == "1");
  CHECK(back.timeout_s == 2.5);
  CHECK_THROWS_AS(run_from(parse(R"({"id":"7","sh":"x"})")), ProtocolError);
  CHECK_THROWS_AS(run_from(parse(R"({"sh":"x"})")), ProtocolError);
  CHECK_THROWS_AS(run_from(parse(R"({"id":1,"sh":"x","env":{"A":1}})")), ProtocolError);
  CHECK_THROWS_AS(run_from(parse(R"({"id":1,"sh":"x","timeout_s":-1})")), ProtocolError);
  CHECK_THROWS_AS(run_from(parse(R"({"id":-1,"sh":"x"})")), ProtocolError);
  // Unknown fields are ignored (forward compatibility).
  CHECK(run_from(parse(R"({"id":1,"sh":"x","future":[1,2]})")).id == 1);
  // "stdin" is sent only when true, so an older worker never sees it.
  CHECK_FALSE(to_json(run).contains("stdin"));
  CHECK_FALSE(back.stdin);
  run.stdin = true;
  CHECK(run_from(parse(dump_body(to_json(run)))).stdin);
  CHECK_THROWS_AS(run_from(parse(R"({"id":1,"sh":"x","stdin":1})")), ProtocolError);
}

TEST_CASE("messages: WINDOW round trip and strict types")
{
  const WindowBody w = window_from(parse(dump_body(to_json(WindowBody{3, "stdin", 262144}))));
  CHECK(w.id == 3);
  CHECK(w.stream == "stdin");
  CHECK(w.bytes == 262144);
  CHECK_THROWS_AS(window_from(parse(R"({"id":3,"stream":"stdin","bytes":-1})")), ProtocolError);
  CHECK_THROWS_AS(window_from(parse(R"({"id":3,"bytes":5})")), ProtocolError);
}

TEST_CASE("messages: bodies must be JSON objects no deeper than 8")
{
  CHECK_THROWS_AS(parse("[1,2]"), ProtocolError);
  CHECK_THROWS_AS(parse("not json"), ProtocolError);
  CHECK_THROWS_AS(parse(""), ProtocolError);
  CHECK_THROWS_AS(parse(R"({"a":1} trailing)"), ProtocolError);
  CHECK_NOTHROW(parse(R"({"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}})"));
  CHECK_THROWS_AS(parse(R"({"a":[[[[[[[[[[1]]]]]]]]]]})"), ProtocolError);
  std::string deep;
  for (int i = 0; i < 10000; ++i) {
    deep += "[";
  }
  CHECK_THROWS_AS(parse("{\"a\":" + deep), ProtocolError); // no stack exhaustion
}

TEST_CASE("messages: EXIT needs a code or a signal, ERROR and CANCEL forms")
{
  ExitBody e;
  e.id = 3;
  e.signal = 15;
  e.reason = "cancelled";
  const ExitBody back = exit_from(parse(dump_body(to_json(e))));
  CHECK(back.signal == 15);
  CHECK_FALSE(back.code.has_value());
  CHECK_THROWS_AS(exit_from(parse(R"({"id":1})")), ProtocolError);

  const ErrorBody err = error_from(parse(dump_body(to_json(ErrorBody{"bad_path", "m", 4, true}))));
  CHECK(err.code == "bad_path");
  CHECK(err.ref == 4);
  CHECK(err.fatal);

  CHECK_FALSE(cancel_from(parse(dump_body(to_json(CancelBody{})))).id.has_value());
  CHECK(cancel_from(parse(R"({"id":2})")).id == 2u);
  CHECK_THROWS_AS(cancel_from(parse("{}")), ProtocolError);
}

TEST_CASE("messages: HELLO/WELCOME/BUNDLE bodies round trip")
{
  Hello h;
  h.client = "c";
  h.name = "lab01";
  h.keep = true;
  const Hello hb = hello_from(parse(dump_body(to_json(h))));
  CHECK(hb.name == "lab01");
  CHECK(hb.keep);

  Welcome w;
  w.worker = "host";
  w.features = {"bundle"};
  w.job_dir = "/x";
  const Welcome wb = welcome_from(parse(dump_body(to_json(w))));
  CHECK(wb.features == std::vector<std::string>{"bundle"});
  CHECK(wb.job_dir == "/x");

  const BundleBeginBody bb =
      bundle_begin_from(parse(dump_body(to_json(BundleBeginBody{1, 2, 3, 4}))));
  CHECK(bb.manifest_zbytes == 4);
  CHECK_THROWS_AS(bundle_begin_from(parse(R"({"entries":1})")), ProtocolError);
  CHECK(bundle_ok_from(parse(dump_body(to_json(BundleOkBody{5, 6, 0, 7})))).bytes == 6);
}

TEST_CASE("messages: invalid UTF-8 in a string never breaks dumping")
{
  ErrorBody e{"x", std::string("bad \xff\xfe name"), std::nullopt, false};
  CHECK_NOTHROW(parse(dump_body(to_json(e))));
}

TEST_CASE("messages: WELCOME facts round trip, old workers' facts still parse, types checked")
{
  WorkerFacts f;
  f.hostname = "lab01";
  f.os = "Debian GNU/Linux 12 (bookworm)";
  f.kernel = "Linux 6.1.0-18-amd64";
  f.arch = "x86_64";
  f.cores = 16;
  f.mem_total_bytes = 1ull << 36;
  f.gpus = {{0, "NVIDIA GeForce RTX 3090", std::nullopt, "0000:01:00.0"},
            {1, "NVIDIA A100", 80ull << 30, "0000:41:00.0"}};
  f.version = "0.1.0";
  f.started_at = 1700000000;
  const Json j = parse(dump_body(to_json(f)));
  CHECK(j["gpus"][0]["memory_bytes"].is_null()); // unknown is null, not 0
  const WorkerFacts back = facts_from(j);
  CHECK(back.hostname == "lab01");
  CHECK(back.os == f.os);
  CHECK(back.kernel == f.kernel);
  CHECK(back.arch == "x86_64");
  CHECK(back.cores == 16);
  CHECK(back.mem_total_bytes == 1ull << 36);
  REQUIRE(back.gpus.size() == 2);
  CHECK(back.gpus[0].name == "NVIDIA GeForce RTX 3090");
  CHECK_FALSE(back.gpus[0].memory_bytes.has_value());
  CHECK(back.gpus[1].memory_bytes == 80ull << 30);
  CHECK(back.gpus[1].index == 1);
  CHECK(back.gpus[1].bus == "0000:41:00.0");
  CHECK(back.version == "0.1.0");
  CHECK(back.started_at == 1700000000);
  // What workers before "status" sent: no GPUs, no version.
  const WorkerFacts old =
      facts_from(parse(R"({"hostname":"h","cores":4,"os":"Linux 6.1 x86_64","memory_bytes":1})"));
  CHECK(old.cores == 4);
  CHECK(old.gpus.empty());
  CHECK(facts_from(Json::object()).cores == 0);
  CHECK_THROWS_AS(facts_from(parse(R"({"cores":-1})")), ProtocolError);
  CHECK_THROWS_AS(facts_from(parse(R"({"cores":"4"})")), ProtocolError);
  CHECK_THROWS_AS(facts_from(parse(R"({"gpus":{}})")), ProtocolError);
  CHECK_THROWS_AS(facts_from(parse(R"({"gpus":[1]})")), ProtocolError);
  CHECK_THROWS_AS(facts_from(parse(R"({"gpus":[{"name":"x"}]})")), ProtocolError); // no index
  CHECK_THROWS_AS(facts_from(parse(R"({"gpus":[{"index":0,"memory_bytes":-5}]})")), ProtocolError);
  CHECK_THROWS_AS(facts_from(Json::array()), ProtocolError);
}

TEST_CASE("messages: STATUS_REPLY round trip and strict types")
{
  StatusReplyBody r;
  r.uptime_s = 3600;
  r.load = std::array<double, 3>{0.5, 0.25, 0.125};
  r.mem_available_bytes = 1ull << 33;
  r.running_jobs = 2;
  r.sessions = 1;
  const StatusReplyBody back = status_reply_from(parse(dump_body(to_json(r))));
  CHECK(back.uptime_s == 3600);
  REQUIRE(back.load.has_value());
  CHECK((*back.load)[2] == 0.125);
  CHECK(back.mem_available_bytes == 1ull << 33);
  CHECK(back.running_jobs == 2);
  CHECK(back.sessions == 1);
  StatusReplyBody unknown;
  const Json j = parse(dump_body(to_json(unknown)));
  CHECK(j["load"].is_null());
  CHECK(j["mem_available_bytes"].is_null());
  CHECK_FALSE(status_reply_from(j).load.has_value());
  CHECK_THROWS_AS(status_reply_from(parse(R"({"running_jobs":0})")), ProtocolError); // no uptime
  CHECK_THROWS_AS(status_reply_from(parse(R"({"uptime_s":1})")), ProtocolError);     // no jobs
  CHECK_THROWS_AS(status_reply_from(parse(R"({"uptime_s":1,"running_jobs":-1})")), ProtocolError);
  CHECK_THROWS_AS(status_reply_from(parse(R"({"uptime_s":1,"running_jobs":0,"load":[1,2]})")),
                  ProtocolError);
  CHECK_THROWS_AS(status_reply_from(parse(R"({"uptime_s":1,"running_jobs":0,"load":[1,"2",3]})")),
                  ProtocolError);
  CHECK_THROWS_AS(status_reply_from(parse(R"({"uptime_s":1,"running_jobs":0,"load":[1,-2,3]})")),
                  ProtocolError);
  CHECK_THROWS_AS(
      status_reply_from(parse(R"({"uptime_s":1,"running_jobs":0,"mem_available_bytes":1.5})")),
      ProtocolError);
}

TEST_CASE("messages: FETCH and FETCH_REPLY round trip and strict types")
{
  const FetchBody fetch = fetch_from(parse(dump_body(to_json(FetchBody{{"out", "*.csv"}}))));
  CHECK(fetch.paths == std::vector<std::string>{"out", "*.csv"});
  CHECK_THROWS_AS(fetch_from(parse(R"({})")), ProtocolError);
  CHECK_THROWS_AS(fetch_from(parse(R"({"paths":"out"})")), ProtocolError);
  CHECK_THROWS_AS(fetch_from(parse(R"({"paths":[1]})")), ProtocolError);

  const FetchReplyBody reply{{"missing.txt"}, 3, {"pw (symbolic link)"}};
  const FetchReplyBody back = fetch_reply_from(parse(dump_body(to_json(reply))));
  CHECK(back.missing == reply.missing);
  CHECK(back.skipped == 3);
  CHECK(back.skipped_examples == reply.skipped_examples);
  const FetchReplyBody minimal = fetch_reply_from(parse(R"({"missing":[]})"));
  CHECK(minimal.skipped == 0);
  CHECK(minimal.skipped_examples.empty());
  CHECK_THROWS_AS(fetch_reply_from(parse(R"({"missing":[],"skipped":-1})")), ProtocolError);
}
