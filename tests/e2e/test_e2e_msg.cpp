// End-to-end: node-to-node messages (send / recv / recv_any / barrier / broadcast) between jobs
// on real workers, routed through the real master; the three clients (C++ header, Python module,
// distcomp-msg), errors on ended nodes, isolation between runs, and hostile records.

#include "common/msg_wire.hpp"
#include "tests/support/processes.hpp"
#include "tests/support/raw_client.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <unistd.h>

using namespace dc::test;
using namespace std::chrono_literals;
using dc::RecordType;

namespace {

// A directory of job files to --send (its contents land at the job dir's root).
std::string job_files(const TempDir& dir, const std::map<std::string, std::string>& files)
{
  const std::string root = dir / "job";
  std::filesystem::create_directories(root);
  for (const auto& [name, content] : files) {
    write_file(root + "/" + name, content);
  }
  return root + "/";
}

std::string tag(Cluster& c, std::size_t node)
{
  return c[node].address() + " | ";
}

std::string ring_line(std::size_t node, std::size_t n)
{
  return "Next to " + std::to_string((node + n - 1) % n) + " is " + std::to_string(node);
}

} // namespace

TEST_CASE("e2e: msg: the ring in Python and in shell, every node prints its left neighbour's line")
{
  Cluster c(4);
  const std::string ring = std::string(DC_SOURCE_DIR) + "/examples/ring/";
  const MasterRun py = c.run({"--send", ring, "--cmd", "python3 ring.py"});
  CAPTURE(py.err);
  CHECK(py.exit_code == 0);
  const MasterRun sh = c.run({"--send", ring, "--cmd", "sh ring.sh"});
  CAPTURE(sh.err);
  CHECK(sh.exit_code == 0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    CHECK(py.has_stdout_line(tag(c, i) + ring_line(i, c.size())));
    CHECK(sh.has_stdout_line(tag(c, i) + ring_line(i, c.size())));
  }
}

TEST_CASE("e2e: msg: the C++ ring compiles against <distcomp/msg.hpp> with no install step")
{
  Cluster c(3);
  const MasterRun run = c.run({"--send", std::string(DC_SOURCE_DIR) + "/examples/ring/", "--cmd",
                               "g++ -O0 -o ring ring.cpp", "--cmd", "./ring"},
                              120s);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    CHECK(run.has_stdout_line(tag(c, i) + ring_line(i, c.size())));
  }
}

TEST_CASE("e2e: msg: FIFO order of 3000 messages and a 64 MiB message arrive intact")
{
  Cluster c(2);
  const std::string job = job_files(c.dir, {{"order.py", R"(
import hashlib, os
import distcomp_msg as dm
if dm.node_id == 0:
    for k in range(3000):
        dm.send(1, "m%d" % k)
    big = os.urandom(64 << 20)
    dm.send(1, big)
    dm.send(1, hashlib.sha256(big).hexdigest())
else:
    for k in range(3000):
        got = dm.recv(0).decode()
        if got != "m%d" % k:
            raise SystemExit("out of order: %s at %d" % (got, k))
    print("order ok")
    big = dm.recv(0)
    digest = dm.recv(0).decode()
    print("big %d %s" % (len(big), "ok" if hashlib.sha256(big).hexdigest() == digest else "BAD"))
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "python3 order.py"}, 120s);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(tag(c, 1) + "order ok"));
  CHECK(run.has_stdout_line(tag(c, 1) + "big 67108864 ok"));
}

TEST_CASE("e2e: msg: broadcast, recv_any and barrier")
{
  Cluster c(4);
  const std::string job = job_files(c.dir, {{"coll.py", R"(
import distcomp_msg as dm
cfg = dm.broadcast(2, "config from 2" if dm.node_id == 2 else None)
print("got " + cfg.decode())
if dm.node_id == 0:
    seen = sorted(dm.recv_any() for _ in range(dm.n_node - 1))
    print("from " + " ".join("%d:%s" % (s, d.decode()) for s, d in seen))
else:
    dm.send(0, "n%d" % dm.node_id)
dm.barrier()
dm.barrier()
print("after barriers")
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "python3 coll.py"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    CHECK(run.has_stdout_line(tag(c, i) + "got config from 2"));
    CHECK(run.has_stdout_line(tag(c, i) + "after barriers"));
  }
  CHECK(run.has_stdout_line(tag(c, 0) + "from 1:n1 2:n2 3:n3"));
}

TEST_CASE("e2e: msg: an early-exiting sender's messages are all delivered, then recv and send "
          "fail clearly")
{
  Cluster c(3);
  // Node 0 sends three messages and exits. Node 2 learns that node 0 ended (its recv fails)
  // and only then tells node 1 to start reading: node 1 reads after node 0 is gone.
  const std::string job = job_files(c.dir, {{"early.sh", R"(
case $DISTCOMP_NODE_ID in
0) distcomp-msg send 1 one && distcomp-msg send 1 two && distcomp-msg send 1 three ;;
1) distcomp-msg recv 2 >/dev/null
   for k in 1 2 3; do distcomp-msg recv 0; echo; done
   distcomp-msg recv 0; echo "recv status $?"
   distcomp-msg send 0 late; echo "send status $?" ;;
2) distcomp-msg recv 0; echo "probe status $?"; distcomp-msg send 1 go ;;
esac
exit 0
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "sh early.sh"});
  CAPTURE(run.out);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  const auto lines = run.stdout_lines();
  std::vector<std::string> node1;
  for (const auto& line : lines) {
    if (line.rfind(tag(c, 1), 0) == 0) {
      node1.push_back(line.substr(tag(c, 1).size()));
    }
  }
  CHECK(node1 == std::vector<std::string>{"one", "two", "three", "recv status 1", "send status 1"});
  CHECK(run.has_stderr_line(tag(c, 1) +
                            "distcomp-msg: error: recv from node 0: its job has ended and sent "
                            "nothing more"));
  CHECK(run.has_stderr_line(tag(c, 1) + "distcomp-msg: error: send to node 0: its job has ended"));
  CHECK(run.has_stdout_line(tag(c, 2) + "probe status 1"));
}

TEST_CASE("e2e: msg: a barrier with a dead node fails on every survivor, a node that never "
          "started counts as ended")
{
  Cluster c(3);
  const std::string job = job_files(c.dir, {{"dead.sh", R"(
[ "$DISTCOMP_NODE_ID" = 2 ] && exit 0
distcomp-msg barrier; echo "barrier status $?"
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "sh dead.sh"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(run.has_stdout_line(tag(c, i) + "barrier status 1"));
    CHECK(run.has_stderr_line(tag(c, i) +
                              "distcomp-msg: error: barrier: node 2 ended before reaching it"));
  }
  // An unreachable third node: sends to it and barriers fail instead of hanging.
  const std::string unreachable = "127.0.0.1:" + std::to_string(unused_port());
  const std::string peers =
      write_peers(c.dir, {c[0].address(), c[1].address(), unreachable}, "with-dead.txt");
  const std::string job2 = job_files(c.dir, {{"never.sh", R"(
distcomp-msg send 2 hello; echo "send status $?"
distcomp-msg barrier; echo "barrier status $?"
)"}});
  const MasterRun never = run_master({"--peers", peers, "--key", c.key, "--connect-timeout", "5",
                                      "--send", job2, "--cmd", "sh never.sh"});
  CAPTURE(never.err);
  CHECK(never.exit_code == 3);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(never.has_stdout_line(tag(c, i) + "send status 1"));
    CHECK(never.has_stdout_line(tag(c, i) + "barrier status 1"));
  }
}

TEST_CASE("e2e: msg: a receiver that does not read stalls only the stream to it")
{
  Cluster c(3);
  // Node 0 sends 6 MB to node 1 (far beyond the window) in the background; while that send is
  // stuck, its small message to node 2 and node 2's output go through, then node 1 reads.
  const std::string job = job_files(c.dir, {{"stall.sh", R"(
case $DISTCOMP_NODE_ID in
0) head -c 6000000 /dev/zero | distcomp-msg send 1 &
   distcomp-msg send 2 small; wait ;;
1) distcomp-msg recv 2; echo; distcomp-msg recv 0 | wc -c ;;
2) distcomp-msg recv 0; echo; echo "output flows"; distcomp-msg send 1 go ;;
esac
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "sh stall.sh"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(tag(c, 2) + "small"));
  CHECK(run.has_stdout_line(tag(c, 2) + "output flows"));
  CHECK(run.has_stdout_line(tag(c, 1) + "go"));
  CHECK(run.has_stdout_line(tag(c, 1) + "6000000"));
}

TEST_CASE("e2e: msg: send returns once the local worker took the message, and blocks while the "
          "stream's window is full")
{
  Cluster c(3);
  // Node 1 reads nothing until node 2 passes on node 0's "go". Meanwhile node 0's small sends
  // return, and a 4 MB send (8 windows) is still blocked half a second later: a buffer without
  // a bound would have taken it at once.
  const std::string job = job_files(c.dir, {{"block.py", R"(
import threading
import distcomp_msg as dm
if dm.node_id == 0:
    for k in range(10):
        dm.send(1, "small %d" % k)
    print("small sends returned")
    big = dm.Client()  # its own connection, so this thread goes on while the big send blocks
    sender = threading.Thread(target=big.send, args=(1, b"x" * (4 << 20)))
    sender.start()
    sender.join(0.5)
    print("big send blocked" if sender.is_alive() else "big send returned early")
    dm.send(2, "go")
    sender.join()
    print("big send done")
elif dm.node_id == 1:
    dm.recv(2)
    smalls = [dm.recv(0).decode() for _ in range(10)]
    print("smalls in order" if smalls == ["small %d" % k for k in range(10)] else smalls)
    print("big %d" % len(dm.recv(0)))
else:
    dm.send(1, dm.recv(0))
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "python3 block.py"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(tag(c, 0) + "small sends returned"));
  CHECK(run.has_stdout_line(tag(c, 0) + "big send blocked"));
  CHECK(run.has_stdout_line(tag(c, 0) + "big send done"));
  CHECK(run.has_stdout_line(tag(c, 1) + "smalls in order"));
  CHECK(run.has_stdout_line(tag(c, 1) + "big 4194304"));
}

TEST_CASE("e2e: msg: two runs at once on the same workers never see each other's messages")
{
  Cluster c(3);
  const std::string job = job_files(c.dir, {{"iso.sh", R"(
i=$DISTCOMP_NODE_ID; n=$DISTCOMP_N_NODES
distcomp-msg barrier
for k in 1 2 3 4 5; do distcomp-msg send $(( (i + 1) % n )) "$TOKEN-$i-$k"; done
for k in 1 2 3 4 5; do distcomp-msg recv $(( (i + n - 1) % n )); echo; done
distcomp-msg barrier
)"}});
  MasterProcess a(c.args({"--send", job, "--env", "TOKEN=alpha", "--cmd", "sh iso.sh"}));
  MasterProcess b(c.args({"--send", job, "--env", "TOKEN=beta", "--cmd", "sh iso.sh"}));
  const MasterRun ra = a.wait(60s);
  const MasterRun rb = b.wait(60s);
  CAPTURE(ra.err);
  CAPTURE(rb.err);
  CHECK(ra.exit_code == 0);
  CHECK(rb.exit_code == 0);
  CHECK(ra.out.find("beta") == std::string::npos);
  CHECK(rb.out.find("alpha") == std::string::npos);
  for (std::size_t i = 0; i < c.size(); ++i) {
    const std::string left = std::to_string((i + c.size() - 1) % c.size());
    CHECK(ra.has_stdout_line(tag(c, i) + "alpha-" + left + "-5"));
    CHECK(rb.has_stdout_line(tag(c, i) + "beta-" + left + "-5"));
  }
}

TEST_CASE("e2e: msg: jobs see DISTCOMP_MSG_SOCKET, the clients on their paths, and clear errors "
          "for bad use")
{
  Cluster c(2);
  const std::string job = job_files(c.dir, {{"env.sh", R"(
case "$DISTCOMP_MSG_SOCKET" in
@distcomp-msg-*) grep -q " $DISTCOMP_MSG_SOCKET\$" /proc/net/unix && echo "abstract socket ok" ;;
esac
test -e .msg || echo "nothing in the job dir"
command -v distcomp-msg >/dev/null && echo "cli ok"
python3 -c 'import distcomp_msg' && echo "python ok"
distcomp-msg send 7 x; echo "status $?"
distcomp-msg frobnicate; echo "usage status $?"
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "sh env.sh"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    CHECK(run.has_stdout_line(tag(c, i) + "cli ok"));
    CHECK(run.has_stdout_line(tag(c, i) + "python ok"));
    CHECK(run.has_stdout_line(tag(c, i) + "status 1"));
    CHECK(run.has_stdout_line(tag(c, i) + "usage status 2"));
    CHECK(run.has_stderr_line(tag(c, i) + "distcomp-msg: error: send: no node 7 (the run has 2 "
                                          "nodes)"));
    CHECK(run.has_stdout_line(tag(c, i) + "abstract socket ok"));
    CHECK(run.has_stdout_line(tag(c, i) + "nothing in the job dir"));
  }
}

TEST_CASE("e2e: msg: the endpoint refuses processes of another uid")
{
  // The endpoint is an abstract socket that any local process can reach; SO_PEERCRED keeps out
  // every uid but the worker's. Needs root to run a client as another user (CI runs as root).
  if (geteuid() != 0) {
    FAIL("this test needs root (setpriv to another uid)");
  }
  Cluster c(2);
  const std::string job = job_files(c.dir, {{"uid.sh", R"(
setpriv --reuid=65534 --regid=65534 --clear-groups distcomp-msg barrier; echo "other uid $?"
distcomp-msg barrier; echo "own uid $?"
)"}});
  const MasterRun run = c.run({"--send", job, "--cmd", "sh uid.sh"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    // Without the check both nodes' other-uid barriers would meet and succeed.
    CHECK(run.has_stdout_line(tag(c, i) + "other uid 1"));
    // EOF or ECONNRESET, depending on whether the refused client's bytes were still unread.
    CHECK(run.err.find(tag(c, i) + "distcomp-msg: error: distcomp messages: connection to the "
                                   "worker lost") != std::string::npos);
    CHECK(run.has_stdout_line(tag(c, i) + "own uid 0"));
  }
}

namespace {

dc::Json msg_run(std::uint32_t id, const std::string& sh, std::uint32_t rank, std::uint32_t size)
{
  return {{"id", id},
          {"sh", sh},
          {"env", dc::Json::object()},
          {"timeout_s", 0},
          {"msg", {{"rank", rank}, {"size", size}}}};
}

// Sends `records` after a RUN with messaging and checks the worker answers ERROR(protocol) and
// closes, and stays up.
void expect_cut_off(const std::vector<std::pair<RecordType, dc::Bytes>>& records)
{
  TempDir dir;
  const std::string key = make_key(dir);
  WorkerConfig config;
  config.key = key;
  WorkerProcess worker(config);
  {
    RawClient client(worker.address(), key);
    client.handshake();
    const dc::Welcome welcome = client.hello();
    CHECK(std::find(welcome.features.begin(), welcome.features.end(), "msg") !=
          welcome.features.end());
    client.send_json(RecordType::run, msg_run(1, "sleep 30", 0, 2));
    try {
      for (const auto& [type, body] : records) {
        client.send(type, body);
      }
    } catch (const std::system_error&) {
      // Closed while we were still sending: what this test wants.
    }
    const UntilClosed rest = client.until_closed(10s);
    CHECK(rest.closed);
    CHECK(rest.first_error_code() == "protocol");
  }
  CHECK(worker.running());
  const std::string peers = write_peers(dir, {worker.address()});
  const MasterRun alive = run_master({"--peers", peers, "--key", key, "--cmd", "echo alive"});
  CHECK(alive.exit_code == 0);
}

} // namespace

TEST_CASE("e2e: msg: a master that sends chunks beyond the window, from a node outside the run or "
          "out of frame is cut off")
{
  const dc::Bytes chunk(60000, 'x');
  std::vector<std::pair<RecordType, dc::Bytes>> flood;
  flood.emplace_back(RecordType::msg_data, dc::encode_msg_chunk(1, 8u << 20, chunk));
  for (int i = 0; i < 40; ++i) { // 2.4 MB, far beyond the 512 KiB window
    flood.emplace_back(RecordType::msg_data, dc::encode_msg_chunk(1, std::nullopt, chunk));
  }
  SUBCASE("beyond the window")
  {
    expect_cut_off(flood);
  }
  SUBCASE("from a node outside the run")
  {
    expect_cut_off({{RecordType::msg_data, dc::encode_msg_chunk(5, 1, dc::Bytes{'x'})}});
  }
  SUBCASE("a continuation without a message")
  {
    expect_cut_off({{RecordType::msg_data, dc::encode_msg_chunk(1, std::nullopt, dc::Bytes{'x'})}});
  }
  SUBCASE("MSG_ACTIVE that the worker did not ask for")
  {
    expect_cut_off({{RecordType::msg_active, dc::Bytes{}}});
  }
  SUBCASE("a barrier result for a barrier never entered")
  {
    expect_cut_off({{RecordType::msg_barrier, dc::encode_barrier_result({1, true, 0})}});
  }
}
