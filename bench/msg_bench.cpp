// bench/msg_bench.cpp: the job side of bench/msg.sh (compiled once locally and shipped).
//   msg_bench latency ROUNDS      node 0 ping-pongs 1 byte with nodes 1..n-1 in turn
//   msg_bench throughput MIB N    node 0 sends N messages of MIB MiB to node 1
//   msg_bench barrier N           every node runs N barriers
// Node 0 prints one result line; the others print nothing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <distcomp/msg.hpp>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double since_us(Clock::time_point t)
{
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

int latency(distcomp::Msg& msg, int rounds)
{
  const int n = msg.n_nodes();
  if (msg.node_id() != 0) {
    for (;;) {
      const std::string m = msg.recv(0);
      if (m.empty()) {
        return 0;
      }
      msg.send(0, m);
    }
  }
  std::vector<double> rtt;
  const int warmup = 100;
  for (int r = 0; r < warmup + rounds; ++r) {
    const int peer = 1 + r % (n - 1);
    const auto t = Clock::now();
    msg.send(peer, "x");
    msg.recv(peer);
    if (r >= warmup) {
      rtt.push_back(since_us(t));
    }
  }
  for (int peer = 1; peer < n; ++peer) {
    msg.send(peer, "");
  }
  std::sort(rtt.begin(), rtt.end());
  std::printf("latency 1-byte round trip over %d nodes: median %.0f us, p99 %.0f us (%d rounds)\n",
              n, rtt[rtt.size() / 2], rtt[rtt.size() * 99 / 100], rounds);
  return 0;
}

int throughput(distcomp::Msg& msg, int mib, int count)
{
  const std::size_t size = std::size_t(mib) << 20;
  const std::string data(msg.node_id() == 0 ? size : 0, 'z');
  msg.barrier(); // every node is up and connected before the clock starts
  if (msg.node_id() == 1) {
    for (int k = 0; k < count; ++k) {
      if (msg.recv(0).size() != size) {
        std::fprintf(stderr, "short message\n");
        return 1;
      }
    }
    msg.send(0, "done");
    return 0;
  }
  if (msg.node_id() != 0) {
    return 0;
  }
  const auto t = Clock::now();
  for (int k = 0; k < count; ++k) {
    msg.send(1, data);
  }
  msg.recv(1);
  const double s = since_us(t) / 1e6;
  std::printf("throughput %d x %d MiB node 0 -> node 1: %.2f s, %.0f MiB/s\n", count, mib, s,
              double(count) * mib / s);
  return 0;
}

int barriers(distcomp::Msg& msg, int count)
{
  msg.barrier();
  const auto t = Clock::now();
  for (int k = 0; k < count; ++k) {
    msg.barrier();
  }
  const double us = since_us(t) / count;
  if (msg.node_id() == 0) {
    std::printf("barrier on %d nodes: %.0f us per barrier (%d barriers)\n", msg.n_nodes(), us,
                count);
  }
  return 0;
}

} // namespace

int main(int argc, char** argv)
{
  try {
    distcomp::Msg msg;
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "latency" && argc == 3) {
      return latency(msg, std::atoi(argv[2]));
    }
    if (mode == "throughput" && argc == 4) {
      return throughput(msg, std::atoi(argv[2]), std::atoi(argv[3]));
    }
    if (mode == "barrier" && argc == 3) {
      return barriers(msg, std::atoi(argv[2]));
    }
    std::fprintf(stderr, "usage: msg_bench latency ROUNDS | throughput MIB N | barrier N\n");
    return 2;
  } catch (const distcomp::MsgError& e) {
    std::fprintf(stderr, "msg_bench: %s\n", e.what());
    return 1;
  }
}
