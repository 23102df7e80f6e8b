#include "master/node_result.hpp"

#include <doctest/doctest.h>

using namespace dc::master;

namespace {
NodeResult node(NodeState s, std::optional<int> code = std::nullopt,
                std::optional<int> sig = std::nullopt)
{
  NodeResult r;
  r.state = s;
  r.exit_code = code;
  r.exit_signal = sig;
  return r;
}
} // namespace

TEST_CASE("master: exit status follows the documented priority 130, 3, 4, 1")
{
  CHECK(exit_status({node(NodeState::ok, 0), node(NodeState::ok, 0)}, false, false) == 0);
  CHECK(exit_status({node(NodeState::ok, 0), node(NodeState::failed, 2)}, false, false) == 1);
  CHECK(exit_status({node(NodeState::failed, 2), node(NodeState::timed_out, std::nullopt, 15)},
                    false, false) == 4);
  CHECK(exit_status({node(NodeState::timed_out), node(NodeState::unreachable)}, false, false) == 3);
  CHECK(exit_status({node(NodeState::rejected)}, false, false) == 3);
  CHECK(exit_status({node(NodeState::lost)}, false, false) == 3);
  CHECK(exit_status({node(NodeState::unreachable)}, true, false) == 130);
}

TEST_CASE("master: -S returns the largest remote code, signals as 128+N")
{
  CHECK(exit_status({node(NodeState::failed, 3), node(NodeState::failed, 7)}, false, true) == 7);
  CHECK(exit_status({node(NodeState::ok, 0), node(NodeState::failed, std::nullopt, 9)}, false,
                    true) == 137);
  CHECK(exit_status({node(NodeState::ok, 0)}, false, true) == 0);
  CHECK(exit_status({node(NodeState::failed, 7)}, true, true) == 130);
  // Failed with exit 0 (results that did not come back) or without any exit code: still 1.
  CHECK(exit_status({node(NodeState::ok, 0), node(NodeState::failed, 0)}, false, true) == 1);
  CHECK(exit_status({node(NodeState::failed)}, false, true) == 1);
}

TEST_CASE("master: the summary line reports what --fetch brought back")
{
  NodeResult r = node(NodeState::ok, 0);
  FetchStats f;
  f.dir = "results/lab01";
  f.files = 12;
  f.bytes = 38'000'000;
  f.reused_files = 10;
  r.fetch_stats = f;
  r.fetch = std::chrono::milliseconds(410);
  CHECK(summary_line("lab01", 5, r).find(", fetch 410 ms)") != std::string::npos);
  CHECK(summary_line("lab01", 5, r)
            .find("fetched 12 files, 38 MB into results/lab01 (10 unchanged)") !=
        std::string::npos);
  f.files = 1;
  f.reused_files = 0;
  f.skipped = 7;
  f.skipped_examples = {"pw (symbolic link)", "pipe (fifo)"};
  r.fetch_stats = f;
  CHECK(summary_line("lab01", 5, r)
            .find("fetched 1 file, 38 MB into results/lab01; 7 skipped: pw (symbolic link), pipe "
                  "(fifo), ...") != std::string::npos);
}

TEST_CASE("master: summary lines name state, exit and phases")
{
  NodeResult r = node(NodeState::ok, 0);
  r.connect = std::chrono::milliseconds(2);
  r.upload = std::chrono::milliseconds(31);
  r.run = std::chrono::milliseconds(1800);
  r.total = std::chrono::milliseconds(1840);
  const std::string line = summary_line("lab01", 8, r);
  CHECK(line.rfind("lab01      ok", 0) == 0);
  CHECK(line.find("exit 0") != std::string::npos);
  CHECK(line.find("1.84 s") != std::string::npos);
  CHECK(line.find("(connect 2 ms, upload 31 ms, run 1.80 s)") != std::string::npos);

  NodeResult u = node(NodeState::unreachable);
  u.detail = "Connection refused";
  const std::string ul = summary_line("lab02", 5, u);
  CHECK(ul.find("unreachable") != std::string::npos);
  CHECK(ul.find("Connection refused") != std::string::npos);
  CHECK(ul.find("connect") == std::string::npos);

  CHECK(summary_line("n", 1, node(NodeState::cancelled, std::nullopt, 15))
            .find("signal 15 (SIGTERM)") != std::string::npos);
  CHECK(total_line({node(NodeState::ok), node(NodeState::failed), node(NodeState::unreachable)},
                   std::chrono::milliseconds(1930)) ==
        "1 ok · 1 failed · 1 unreachable — total time 1.93 s");
}
