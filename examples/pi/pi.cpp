// examples/pi: Monte-Carlo pi. Every node draws its share of the samples; node 0 gathers the
// counts by messages and prints the estimate and the speed-up over one node doing all the work.
// Usage: ./pi [TOTAL_SAMPLES]   (default 200 000 000)
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <distcomp/msg.hpp>
#include <string>

namespace {

// splitmix64: fast, and every node gets its own stream from its id.
std::uint64_t next(std::uint64_t& state)
{
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t count_inside(std::uint64_t samples, std::uint64_t seed)
{
  std::uint64_t state = seed;
  std::uint64_t inside = 0;
  for (std::uint64_t k = 0; k < samples; ++k) {
    const double x = double(next(state) >> 11) * 0x1.0p-53;
    const double y = double(next(state) >> 11) * 0x1.0p-53;
    inside += x * x + y * y <= 1.0;
  }
  return inside;
}

double seconds_since(std::chrono::steady_clock::time_point t)
{
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

int main(int argc, char** argv)
{
  try {
    distcomp::Msg msg;
    const int id = msg.node_id();
    const int n = msg.n_nodes();
    const std::uint64_t total = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200000000ull;
    const std::uint64_t mine = total / n + (std::uint64_t(id) < total % n ? 1 : 0);

    msg.barrier(); // start together: the wall time below is the parallel time
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    const std::uint64_t inside = count_inside(mine, 0x5eed0000ull + std::uint64_t(id));
    // CPU time, not wall time: on a shared machine a node's wall time includes waiting for a core.
    const double busy = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    if (id != 0) {
      msg.send(0, std::to_string(inside) + " " + std::to_string(mine) + " " + std::to_string(busy));
      return 0;
    }
    std::uint64_t all_inside = inside;
    std::uint64_t all_samples = mine;
    double all_busy = busy;
    for (int k = 1; k < n; ++k) {
      const auto [from, text] = msg.recv_any();
      unsigned long long in = 0, samples = 0;
      double secs = 0;
      if (std::sscanf(text.c_str(), "%llu %llu %lf", &in, &samples, &secs) != 3) {
        std::fprintf(stderr, "pi: bad report from node %d\n", from);
        return 1;
      }
      all_inside += in;
      all_samples += samples;
      all_busy += secs;
    }
    const double wall = seconds_since(start);
    const double pi = 4.0 * double(all_inside) / double(all_samples);
    std::printf("pi = %.6f (error %.1e) from %llu samples on %d nodes in %.2f s\n", pi,
                std::fabs(pi - M_PI), static_cast<unsigned long long>(all_samples), n, wall);
    std::printf("one node would need %.2f s of CPU: speed-up %.1fx\n", all_busy, all_busy / wall);
  } catch (const distcomp::MsgError& e) {
    std::fprintf(stderr, "pi: %s\n", e.what());
    return 1;
  }
  return 0;
}
