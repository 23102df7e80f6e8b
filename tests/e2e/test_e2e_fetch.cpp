// End-to-end: --fetch brings results back over the session into --results-dir DIR/<node>/ —
// files, directories and globs, also after a failed command, unchanged files not sent again, a
// pattern that matched nothing as a per-node error, symlinks on the worker skipped — and a hostile
// worker (tests/support/fake_worker.hpp) cannot write outside DIR/<node>/ or leave anything
// half-written.

#include "common/messages.hpp"
#include "tests/support/fake_worker.hpp"
#include "tests/support/processes.hpp"
#include "tests/support/raw_client.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

using namespace dc::test;
namespace fs = std::filesystem;

namespace {

// Every path beneath `dir`, relative and sorted, hidden ones included ("" if `dir` is missing).
std::vector<std::string> tree(const std::string& dir)
{
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    out.push_back(fs::relative(it->path(), dir).string() + (it->is_symlink() ? "@" : ""));
  }
  std::sort(out.begin(), out.end());
  return out;
}

using Paths = std::vector<std::string>;

// The "fetch" object of the JSON exit event of node `label`.
nlohmann::json fetch_event(const MasterRun& run, const std::string& label)
{
  for (const auto& line : run.stdout_lines()) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("event", "") == "exit" && j.value("node", "") == label) {
      return j.value("fetch", nlohmann::json());
    }
  }
  return nullptr;
}

} // namespace

TEST_CASE("e2e: fetch: files, directories and globs come back into DIR/<node>/ from every node")
{
  Cluster c(2);
  const std::string results = c.dir / "res";
  const MasterRun run = c.run({"--cmd",
                               "mkdir -p out/sub && echo $DISTCOMP_NODE_ID > out/sub/id.txt && "
                               "echo r1 > run-1.csv && echo r2 > run-2.csv && echo no > x.log",
                               "--fetch", "out", "--fetch", "*.csv", "--results-dir", results});
  CHECK(run.exit_code == 0);
  for (std::size_t i = 0; i < 2; ++i) {
    const std::string node = results + "/" + c[i].address();
    CHECK(tree(node) == Paths{"out", "out/sub", "out/sub/id.txt", "run-1.csv", "run-2.csv"});
    CHECK(read_file(node + "/out/sub/id.txt") == std::to_string(i) + "\n");
    CHECK(read_file(node + "/run-2.csv") == "r2\n");
    CHECK(contains(run.summary_of(c[i].address()), "fetched 3 files, 8 B into " + node));
  }
  CHECK(tree(results).size() == 2 * 6); // two node dirs, nothing else (no partial dirs)
}

TEST_CASE("e2e: fetch: results come back after a failed command, unchanged ones are not resent")
{
  Cluster c(1);
  const std::string results = c.dir / "res";
  const std::string node = results + "/" + c[0].address();
  MasterRun run = c.run({"--cmd", "echo same > a.txt; echo one > b.txt; echo stale > c.txt; exit 3",
                         "--fetch", "*.txt", "--results-dir", results});
  CHECK(run.exit_code == 1);
  CHECK(tree(node) == Paths{"a.txt", "b.txt", "c.txt"});
  CHECK(contains(run.summary_of(c[0].address()), "exit 3"));
  CHECK(contains(run.summary_of(c[0].address()), "fetched 3 files"));

  // Each run replaces the node's dir: c.txt is gone, a.txt came from the previous results.
  run = c.run({"--cmd", "echo same > a.txt; echo two > b.txt", "--fetch", "*.txt", "--results-dir",
               results, "--json"});
  CHECK(run.exit_code == 0);
  CHECK(tree(node) == Paths{"a.txt", "b.txt"});
  CHECK(read_file(node + "/a.txt") == "same\n");
  CHECK(read_file(node + "/b.txt") == "two\n");
  const auto fetch = fetch_event(run, c[0].address());
  REQUIRE(fetch.is_object());
  CHECK(fetch["files"] == 2);
  CHECK(fetch["bytes"] == 9);
  CHECK(fetch["unchanged_files"] == 1);
  CHECK(fetch["dir"] == node);
}

TEST_CASE("e2e: fetch: a path that matched nothing is a per-node error and a non-zero exit")
{
  Cluster c(1);
  const std::string results = c.dir / "res";
  const MasterRun run = c.run({"--cmd", "echo a > a.txt", "--fetch", "a.txt", "--fetch",
                               "missing.txt", "--fetch", "logs/*.log", "--results-dir", results});
  CHECK(run.exit_code == 1);
  const std::string summary = run.summary_of(c[0].address());
  CHECK(contains(summary, "failed"));
  CHECK(contains(summary, "--fetch: no match for 'missing.txt', 'logs/*.log'"));
  CHECK(tree(results + "/" + c[0].address()) == Paths{"a.txt"}); // what matched came back
}

TEST_CASE("e2e: fetch: symlinks and fifos on the worker are skipped, never followed")
{
  Cluster c(1);
  const std::string results = c.dir / "res";
  write_file(c.dir / "secret", "not for the master\n");
  const MasterRun run = c.run({"--cmd",
                               "ln -s " + (c.dir / "secret") +
                                   " pw && ln -s / root && "
                                   "mkfifo pipe && echo ok > ok.txt",
                               "--fetch", ".", "--fetch", "root/etc", "--results-dir", results});
  CHECK(run.exit_code == 1); // root/etc: not followed, so no match
  const std::string summary = run.summary_of(c[0].address());
  CHECK(contains(summary, "fetched 1 file"));
  CHECK(contains(summary, "3 skipped: pipe (fifo), pw (symbolic link), root (symbolic link)"));
  CHECK(contains(summary, "--fetch: no match for 'root/etc'"));
  CHECK(tree(results + "/" + c[0].address()) == Paths{"ok.txt"});
}

TEST_CASE("e2e: fetch: a bad --fetch path or option is refused before any node is contacted")
{
  Cluster c(1);
  for (const auto& [args, message] : std::vector<std::pair<Paths, std::string>>{
           {{"--fetch", "../x"}, "--fetch '../x': '..' would leave the job dir"},
           {{"--fetch", "/etc"}, "--fetch '/etc': must be relative to the job dir"},
           {{"--results-dir", "r"}, "--results-dir only goes with --fetch"},
           {{"--fetch", "a", "--fetch-limit", "lots"}, "fetch-limit"}}) {
    Paths all = {"--cmd", "touch ran"};
    all.insert(all.end(), args.begin(), args.end());
    const MasterRun run = c.run(all);
    CHECK(run.exit_code == 2);
    REQUIRE(run.stderr_lines().size() == 1);
    CHECK(contains(run.stderr_lines()[0], message));
  }
  CHECK_FALSE(contains(c[0].log(), "authenticated")); // nothing connected
}

// A hostile worker's results: the master refuses them, writes nothing outside DIR/<node>/, leaves
// no partial directory, keeps the node's previous results, and never confirms with BUNDLE_OK.
TEST_CASE("e2e: fetch: hostile results are rejected and nothing is written outside DIR/<node>")
{
  TempDir dir;
  const std::string key = make_key(dir);
  const std::string results = dir / "res";
  struct Case {
    const char* name;
    FakeResults bundle;
    const char* message;
  };
  const auto manifest = [](const std::vector<RawEntry>& entries) {
    FakeResults r;
    r.manifest = encode_raw_manifest(entries);
    for (const auto& e : entries) {
      r.entries += 1;
      r.files += e.kind == 2 ? 1 : 0;
      r.bytes += e.kind == 2 ? e.size : 0;
    }
    return r;
  };
  const auto frame = [](std::string_view s) {
    return zstd_frame(dc::ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
  };
  std::vector<Case> cases;
  cases.push_back({"parent escape", manifest({file_entry("../escaped", "x")}), "bad path"});
  cases.push_back({"absolute path", manifest({file_entry("/tmp/escaped", "x")}), "bad path"});
  RawEntry link = file_entry("link", "x");
  link.kind = 3; // no such kind: a symlink or device cannot be expressed
  cases.push_back({"unknown kind", manifest({link}), "kind"});
  Case big{"over --fetch-limit", manifest({file_entry("big", std::string(2048, 'b'))}),
           "over the limit"};
  big.bundle.blobs = {frame(std::string(2048, 'b'))};
  cases.push_back(big);
  Case lie{"blob larger than its entry", manifest({file_entry("small", "tiny")}), ""};
  lie.bundle.blobs = {frame(std::string(100000, 'z'))};
  cases.push_back(lie);
  Case wrong{"blob with another hash", manifest({file_entry("f", "good")}), ""};
  wrong.bundle.blobs = {frame("evil")};
  cases.push_back(wrong);

  for (const auto& test : cases) {
    CAPTURE(test.name);
    FakeWorker worker(key, test.bundle);
    const std::string node = results + "/" + worker.address();
    write_file(node + "/previous.txt", "from the last run\n");
    const MasterRun run =
        run_master({"-w", worker.address(), "--key", key, "--cmd", "true", "--fetch", ".",
                    "--results-dir", results, "--fetch-limit", "1K"});
    CHECK(run.exit_code != 0);
    const std::string summary = run.summary_of(worker.address());
    CHECK(contains(summary, "results rejected: "));
    CHECK(contains(summary, test.message));
    CHECK_FALSE(worker.results_accepted());
    CHECK(tree(results) == Paths{worker.address(), worker.address() + "/previous.txt"});
    CHECK(tree(dir.path()) == Paths{"cluster.key", "res", "res/" + worker.address(),
                                    "res/" + worker.address() + "/previous.txt"});
    fs::remove_all(node);
  }
}

// The worker's side: a key holder's FETCH cannot name anything outside the job dir.
TEST_CASE("e2e: fetch: the worker refuses FETCH paths that leave the job dir")
{
  WorkerProcess worker;
  for (const std::string path : {"../../etc/passwd", "/etc/passwd", "a/../../x"}) {
    CAPTURE(path);
    RawClient client(worker.address(), worker.key());
    client.handshake();
    client.hello();
    client.send_json(dc::RecordType::fetch, dc::to_json(dc::FetchBody{{path}}));
    const UntilClosed seen = client.until_closed();
    CHECK(seen.closed);
    CHECK(seen.first_error_code() == "bad_request");
    for (const auto& r : seen.records) {
      CHECK(r.type != dc::RecordType::bundle_begin);
    }
  }
}
