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
