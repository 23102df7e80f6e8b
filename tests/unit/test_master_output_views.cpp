// The output views (--blocks, --gather, --outdir, --json) fed events directly, written through a
// real Printer into temporary files; and the pieces they are made of.

#include "master/line_splitter.hpp"
#include "master/options.hpp"
#include "master/output_capture.hpp"
#include "master/output_view.hpp"
#include "master/safe_file_name.hpp"

#include <asio.hpp>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <sodium.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace dc::master;
using dc::Clock;
using namespace std::chrono_literals;

namespace {

std::string read_all(std::FILE* f)
{
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[65536];
  while (const std::size_t n = std::fread(buf, 1, sizeof buf, f)) {
    out.append(buf, n);
  }
  return out;
}

// A view over `labels` writing to two temporary files through a real Printer.
struct Harness {
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  asio::io_context ctx;
  std::unique_ptr<Printer> printer;
  std::unique_ptr<OutputView> view;

  Harness(Options options, const std::vector<std::string>& labels)
  {
    REQUIRE(out);
    REQUIRE(err);
    options.color = ColorMode::never;
    printer = std::make_unique<Printer>(ctx.get_executor(), ::fileno(out), ::fileno(err));
    view = make_output_view(options, *printer, labels);
  }
  ~Harness()
  {
    view.reset();
    printer.reset();
    std::fclose(out);
    std::fclose(err);
  }
  void output(std::size_t node, bool is_stderr, std::string_view text)
  {
    view->output(node, is_stderr, dc::as_bytes(text));
  }
  void await(asio::awaitable<void> a)
  {
    bool done = false;
    asio::co_spawn(ctx, std::move(a), [&](std::exception_ptr e) {
      done = true;
      if (e) {
        std::rethrow_exception(e);
      }
    });
    ctx.restart();
    ctx.run();
    REQUIRE(done);
  }
  void done(std::size_t node, NodeResult r) { await(view->node_done(node, r)); }
  void run_done(const std::vector<NodeResult>& results, int status = 0)
  {
    await(view->run_done(results, 1500ms, status));
  }
  std::string out_text()
  {
    printer->flush();
    return read_all(out);
  }
  std::string err_text()
  {
    printer->flush();
    return read_all(err);
  }
};

NodeResult exited(int code, Clock::duration total = 1200ms)
{
  NodeResult r;
  r.state = code == 0 ? NodeState::ok : NodeState::failed;
  r.exit_code = code;
  r.total = total;
  r.run = total;
  return r;
}

Options view_options(ViewKind kind)
{
  Options o;
  o.view = kind;
  return o;
}

} // namespace

TEST_CASE("master: LineSplitter cuts chunks cut anywhere into lines and splits long ones")
{
  LineSplitter splitter(8);
  std::vector<std::pair<std::string, LineEnd>> lines;
  const auto collect = [&](std::string_view text, LineEnd end) {
    lines.emplace_back(std::string(text), end);
  };
  splitter.feed("ab", collect);
  splitter.feed("c\nde\n\nf", collect);
  splitter.feed("ghijklmnop", collect); // "fghijklmnop" > 8 bytes: split
  splitter.feed("q", collect);
  splitter.finish(collect);
  splitter.finish(collect); // nothing held: no second line
  const std::vector<std::pair<std::string, LineEnd>> expected = {{"abc", LineEnd::newline},
                                                                 {"de", LineEnd::newline},
                                                                 {"", LineEnd::newline},
                                                                 {"fghijklmnop", LineEnd::split},
                                                                 {"q", LineEnd::none}};
  CHECK(lines == expected);
}

TEST_CASE("master: OutputCapture spools beyond its memory budget and reads back every byte")
{
  OutputCapture capture;
  std::string all;
  for (int i = 0; all.size() < 3 * k_capture_memory; ++i) {
    const std::string piece =
        "line " + std::to_string(i) + std::string(std::size_t(i % 97), 'x') + "\n";
    capture.append(piece);
    all += piece;
  }
  CHECK(capture.size() == all.size());
  CHECK(capture.ends_with_newline());
  std::string back;
  std::vector<char> buf(300000);
  while (const std::size_t n = capture.read(back.size(), buf.data(), buf.size())) {
    back.append(buf.data(), n);
  }
  CHECK(back == all);
  std::array<std::uint8_t, 32> expected{};
  crypto_generichash(expected.data(), expected.size(),
                     reinterpret_cast<const unsigned char*>(all.data()), all.size(), nullptr, 0);
  CHECK(capture.digest() == expected);
  capture.clear();
  CHECK(capture.size() == 0);
}

TEST_CASE("master: safe_file_name keeps labels readable, one-to-one and inside the directory")
{
  CHECK(safe_file_name("lab01") == "lab01");
  CHECK(safe_file_name("127.0.0.1:7000") == "127.0.0.1:7000");
  CHECK(safe_file_name("[::1]:7000") == "[::1]:7000");
  CHECK(safe_file_name("a/b") == "a%2Fb");
  CHECK(safe_file_name("a%2Fb") == "a%252Fb"); // never the same as "a/b"
  CHECK(safe_file_name("..") == "%2E.");
  CHECK(safe_file_name(".hidden") == "%2Ehidden");
  CHECK(safe_file_name("x\ny") == "x%0Ay");
}

TEST_CASE("master: straggler_line names nodes slower than twice the median run time")
{
  std::vector<NodeResult> results = {exited(0, 1s), exited(0, 1100ms), exited(1, 900ms),
                                     exited(0, 3s)};
  NodeResult unreachable;
  unreachable.state = NodeState::unreachable;
  unreachable.total = 5s; // not a straggler: it never ran
  results.push_back(unreachable);
  const std::vector<std::string> labels = {"a", "b", "c", "d", "e"};
  CHECK(straggler_line(labels, results) ==
        "stragglers (over 2x the median run time 1.10 s): d 3.00 s");
  results[3] = exited(0, 2s);
  CHECK(straggler_line(labels, results).empty()); // 2.00 s is not over 2 x 1.00 s
  CHECK(straggler_line({"a", "b"}, {exited(0, 1s), exited(0, 9s)}).empty()); // too few to tell
}

TEST_CASE("master: --blocks prints each node's stdout as one headed block in the order nodes end")
{
  Harness h(view_options(ViewKind::blocks), {"lab01", "lab02", "lab03"});
  h.output(0, false, "a1\na");
  h.output(1, false, "b1\n");
  h.output(0, true, "warn\n");
  h.output(0, false, "2");
  h.output(1, false, "b2\n");
  h.done(1, exited(0));
  NodeResult killed = exited(0, 2500ms);
  killed.state = NodeState::failed;
  killed.exit_code.reset();
  killed.exit_signal = 9;
  h.done(0, killed);
  NodeResult never;
  never.state = NodeState::unreachable;
  never.total = 5s;
  h.done(2, never); // a node with no output still gets its header
  CHECK(h.out_text() == "----- lab02 (exit 0, 1.20 s) -----\nb1\nb2\n"
                        "----- lab01 (signal 9 (SIGKILL), 2.50 s) -----\na1\na2\n"
                        "----- lab03 (unreachable, 5.00 s) -----\n");
  CHECK(h.err_text() == "lab01 | warn\n");
}

TEST_CASE("master: --json writes one valid JSON event per line, base64 for bytes that are not "
          "UTF-8")
{
  Harness h(view_options(ViewKind::json), {"lab01", "lab02"});
  h.view->node_connected(0);
  h.output(0, false, "hello\n\xff\xfe\n");
  h.output(0, true, "oops");
  NodeResult r = exited(3);
  r.detail = "bad \xc3 byte";
  h.done(0, r);
  NodeResult lost;
  lost.state = NodeState::lost;
  h.done(1, lost);
  h.run_done({r, lost}, 3);
  std::vector<nlohmann::json> events;
  std::istringstream lines(h.out_text());
  for (std::string line; std::getline(lines, line);) {
    events.push_back(nlohmann::json::parse(line)); // throws on anything that is not JSON
  }
  REQUIRE(events.size() == 7);
  CHECK(events[0] == nlohmann::json{{"event", "connected"}, {"node", "lab01"}, {"id", 0}});
  CHECK(events[1]["line"] == "hello");
  CHECK(events[1]["stream"] == "stdout");
  CHECK(events[2]["line_base64"] == "//4=");
  CHECK_FALSE(events[2].contains("line"));
  CHECK(events[3]["stream"] == "stderr");
  CHECK(events[3]["line"] == "oops");
  CHECK(events[3]["end"] == "none");
  CHECK(events[4]["event"] == "exit");
  CHECK(events[4]["exit_code"] == 3);
  CHECK(events[4]["state"] == "failed");
  CHECK(events[4]["total_s"] == doctest::Approx(1.2));
  CHECK(events[5]["state"] == "lost");
  CHECK_FALSE(events[5].contains("exit_code"));
  CHECK(events[6]["event"] == "summary");
  CHECK(events[6]["exit_status"] == 3);
  CHECK(events[6]["states"] == nlohmann::json{{"failed", 1}, {"lost", 1}});
  CHECK(h.err_text().empty());
}

TEST_CASE("master: --outdir writes raw bytes to <node>.out and <node>.err, files for every node")
{
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dc-outdir-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  Options o = view_options(ViewKind::outdir);
  o.outdir = (dir / "sub").string(); // parents are created
  {
    Harness h(o, {"lab01", "a/b"});
    h.output(0, false, "raw\xff no newline");
    h.output(0, true, "e\n");
    h.done(0, exited(0));
    h.done(1, exited(0));
    h.run_done({exited(0), exited(0)});
    CHECK(h.out_text().empty());
    CHECK(h.err_text().find("output of 2 nodes in") != std::string::npos);
  }
  const auto slurp = [](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  CHECK(slurp(dir / "sub" / "lab01.out") == "raw\xff no newline");
  CHECK(slurp(dir / "sub" / "lab01.err") == "e\n");
  CHECK(std::filesystem::exists(dir / "sub" / "a%2Fb.out"));
  CHECK(std::filesystem::file_size(dir / "sub" / "a%2Fb.err") == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("master: --gather prints identical outputs once under a hostlist, the majority first")
{
  Harness h(view_options(ViewKind::gather), {"lab1", "lab2", "lab3", "lab4", "lab5"});
  for (std::size_t node : {0, 1, 3}) {
    h.output(node, false, "same\n");
    h.output(node, false, "end");
  }
  h.output(2, false, "other\n");
  h.output(2, true, "why\n");
  for (std::size_t node = 0; node < 5; ++node) {
    h.done(node, exited(0));
  }
  h.run_done(std::vector<NodeResult>(5, exited(0)));
  CHECK(h.out_text() == "----- lab[1-2,4] (3 nodes) -----\nsame\nend\n"
                        "----- lab3 (1 node) -----\nother\n"
                        "----- lab5 (1 node, no output) -----\n");
  CHECK(h.err_text() == "lab3 | why\n");
}

TEST_CASE("master: --gather --live merges row by row once every running node has printed it")
{
  Options o = view_options(ViewKind::gather);
  o.gather_live = true;
  Harness h(o, {"n1", "n2", "n3"});
  h.output(0, false, "hello\nfrom 1\n");
  h.output(1, false, "hello\n");
  CHECK(h.out_text().empty()); // n3 has not printed its first line yet
  h.output(2, false, "hello\nfrom 3\n");
  CHECK(h.out_text() == "n[1-3] | hello\n");
  h.output(1, false, "from 1\ntail");
  h.done(2, exited(0));
  h.done(0, exited(0));
  h.done(1, exited(0));
  CHECK(h.out_text() == "n[1-3] | hello\n"
                        "n[1-2] | from 1\n"
                        "n3 | from 3\n"
                        "n2 | tail [no newline]\n");
}
