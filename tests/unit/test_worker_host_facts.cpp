#include "worker/host_facts.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace dc::worker;

namespace {

// A fake root: the files a worker reads, placed under a fresh directory.
class FakeRoot {
public:
  FakeRoot()
  {
    char pattern[] = "/tmp/dc_host_facts_test.XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    m_path = pattern;
  }
  ~FakeRoot()
  {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  FakeRoot(const FakeRoot&) = delete;
  FakeRoot& operator=(const FakeRoot&) = delete;

  const std::string& path() const { return m_path; }
  void write(const std::string& relative, const std::string& content) const
  {
    const std::filesystem::path p = m_path + "/" + relative;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }

private:
  std::string m_path;
};

// Abridged from a Debian 12 machine.
constexpr const char* k_meminfo = "MemTotal:       32657184 kB\n"
                                  "MemFree:         1223456 kB\n"
                                  "MemAvailable:   20971520 kB\n"
                                  "Buffers:          512000 kB\n"
                                  "Cached:         17000000 kB\n"
                                  "SwapCached:            0 kB\n"
                                  "HugePages_Total:       0\n"
                                  "Hugepagesize:       2048 kB\n";

// Abridged from a driver 535 machine.
constexpr const char* k_nvidia_3090 = "Model: \t\t NVIDIA GeForce RTX 3090\n"
                                      "IRQ:   \t\t 158\n"
                                      "GPU UUID: \t GPU-5a4f0c4e-0000-0000-0000-000000000000\n"
                                      "Video BIOS: \t 94.02.42.00.a9\n"
                                      "Bus Type: \t PCIe\n"
                                      "Bus Location: \t 0000:01:00.0\n"
                                      "Device Minor: \t 1\n"
                                      "GPU Excluded:\t No\n";

} // namespace

TEST_CASE("host facts: meminfo gives total and available in bytes")
{
  const MemInfo m = parse_meminfo(k_meminfo);
  REQUIRE(m.total_bytes.has_value());
  CHECK(*m.total_bytes == 32657184ull * 1024);
  REQUIRE(m.available_bytes.has_value());
  CHECK(*m.available_bytes == 20971520ull * 1024);
}

TEST_CASE("host facts: meminfo without MemAvailable (kernel < 3.14) adds free, buffers, cached")
{
  const MemInfo m = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\n"
                                  "Cached: 300 kB\n");
  CHECK(m.total_bytes == 1000u * 1024);
  CHECK(m.available_bytes == 420u * 1024);
}

TEST_CASE("host facts: malformed meminfo lines are skipped, never guessed")
{
  CHECK_FALSE(parse_meminfo("").total_bytes.has_value());
  CHECK_FALSE(parse_meminfo("MemTotal: lots kB\n").total_bytes.has_value());
  CHECK_FALSE(parse_meminfo("MemTotal: 12 MB\n").total_bytes.has_value()); // unknown unit
  CHECK_FALSE(parse_meminfo("MemTotal: 99999999999999999999 kB\n").total_bytes.has_value());
  CHECK_FALSE(parse_meminfo("MemTotal: 18014398509481984 kB\n").total_bytes.has_value());
  CHECK_FALSE(parse_meminfo("MemTotalX: 12 kB\nMemFree: 1 kB\n").available_bytes.has_value());
  CHECK(parse_meminfo("MemTotal:12 kB").total_bytes == 12u * 1024); // no space, no newline
  CHECK(parse_meminfo("MemTotal: 12\n").total_bytes == 12u);        // no unit: bytes
}

TEST_CASE("host facts: loadavg gives the 1, 5 and 15 minute averages")
{
  const auto load = parse_loadavg("0.52 1.58 12.00 3/1234 56789\n");
  REQUIRE(load.has_value());
  CHECK((*load)[0] == doctest::Approx(0.52));
  CHECK((*load)[1] == doctest::Approx(1.58));
  CHECK((*load)[2] == doctest::Approx(12.0));
  CHECK(parse_loadavg("0.00 0.00 0.00\n").has_value());
  CHECK_FALSE(parse_loadavg("").has_value());
  CHECK_FALSE(parse_loadavg("0.52 0.58\n").has_value());
  CHECK_FALSE(parse_loadavg("0.52 x 0.59 1/2 3\n").has_value());
  CHECK_FALSE(parse_loadavg("0.52abc 0.58 0.59 1/2 3\n").has_value());
  CHECK_FALSE(parse_loadavg("-1 0.58 0.59 1/2 3\n").has_value());
}

TEST_CASE("host facts: os-release PRETTY_NAME with quotes and escapes, then NAME, then Linux")
{
  CHECK(parse_os_release("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian\"\n") ==
        "Debian GNU/Linux 12 (bookworm)");
  CHECK(parse_os_release("NAME=Fedora\nPRETTY_NAME='Fedora Linux 39'\n") == "Fedora Linux 39");
  CHECK(parse_os_release("# comment\n\n  PRETTY_NAME=Arch\\ Linux\n") == "Arch Linux");
  CHECK(parse_os_release("PRETTY_NAME=\"A \\\"quoted\\\" \\\\ name\"\n") == "A \"quoted\" \\ name");
  CHECK(parse_os_release("PRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\r\n") == "Ubuntu 22.04.3 LTS");
  CHECK(parse_os_release("NAME=\"Alpine Linux\"\nID=alpine\n") == "Alpine Linux");
  CHECK(parse_os_release("PRETTY_NAME=\"\"\nNAME=Void\n") == "Void");
  CHECK(parse_os_release("") == "Linux");
  CHECK(parse_os_release("garbage without equals\n") == "Linux");
  CHECK(parse_os_release("XPRETTY_NAME=no\n") == "Linux");
}

TEST_CASE("host facts: the NVIDIA information file names the model")
{
  CHECK(parse_nvidia_model(k_nvidia_3090) == "NVIDIA GeForce RTX 3090");
  CHECK(parse_nvidia_model("IRQ: 1\nModel:\tTesla V100-SXM2-16GB  \n") == "Tesla V100-SXM2-16GB");
  CHECK_FALSE(parse_nvidia_model("").has_value());
  CHECK_FALSE(parse_nvidia_model("Model: \t \nIRQ: 1\n").has_value());
  CHECK_FALSE(parse_nvidia_model("GPU Model: X\n").has_value());
}

TEST_CASE("host facts: GPUs are listed in PCI bus order, unreadable ones skipped")
{
  FakeRoot root;
  CHECK(read_nvidia_gpus(root.path()).empty()); // no driver: no GPUs, no error
  root.write("proc/driver/nvidia/gpus/0000:41:00.0/information", "Model: NVIDIA A100-SXM4-80GB\n");
  root.write("proc/driver/nvidia/gpus/0000:01:00.0/information", k_nvidia_3090);
  root.write("proc/driver/nvidia/gpus/0000:21:00.0/information", "IRQ: 3\n"); // no model
  const auto gpus = read_nvidia_gpus(root.path());
  REQUIRE(gpus.size() == 2);
  CHECK(gpus[0].index == 0);
  CHECK(gpus[0].name == "NVIDIA GeForce RTX 3090");
  CHECK(gpus[0].bus == "0000:01:00.0");
  CHECK_FALSE(gpus[0].memory_bytes.has_value()); // the driver's /proc does not say
  CHECK(gpus[1].index == 2);
  CHECK(gpus[1].name == "NVIDIA A100-SXM4-80GB");
}

TEST_CASE("host facts: static facts from a fake root, with long strings cut")
{
  FakeRoot root;
  root.write("proc/meminfo", k_meminfo);
  root.write("etc/os-release", "PRETTY_NAME=\"" + std::string(1000, 'x') + "\"\n");
  root.write("proc/driver/nvidia/gpus/0000:01:00.0/information", k_nvidia_3090);
  const dc::WorkerFacts f = read_static_facts(root.path());
  CHECK(f.mem_total_bytes == 32657184ull * 1024);
  CHECK(f.os == std::string(dc::k_max_fact_size, 'x'));
  REQUIRE(f.gpus.size() == 1);
  CHECK(f.gpus[0].name == "NVIDIA GeForce RTX 3090");
  CHECK(f.cores > 0);
  CHECK(!f.hostname.empty());
  CHECK(f.kernel.rfind("Linux ", 0) == 0);
  CHECK(f.version == DC_VERSION);
  CHECK(f.started_at > 1600000000);
  // Even at the limits the facts leave most of a WELCOME record free (PROTOCOL.md §5).
  dc::WorkerFacts big = f;
  big.gpus.assign(dc::k_max_gpus, dc::GpuFact{63, std::string(dc::k_max_fact_size, 'g'), ~0ull,
                                              std::string(dc::k_max_fact_size, 'b')});
  CHECK(dc::dump_body(dc::to_json(big)).size() < 40 * 1024);
}

TEST_CASE("host facts: os-release falls back to /usr/lib, no files at all still gives facts")
{
  FakeRoot root;
  root.write("usr/lib/os-release", "NAME=Fallback\n");
  CHECK(read_static_facts(root.path()).os == "Fallback");
  FakeRoot empty;
  const dc::WorkerFacts f = read_static_facts(empty.path());
  CHECK(f.os == "Linux");
  CHECK(f.mem_total_bytes > 0); // from sysconf
  CHECK(f.gpus.empty());
}

TEST_CASE("host facts: load and available memory now")
{
  FakeRoot root;
  const HostLoad none = read_host_load(root.path());
  CHECK_FALSE(none.load.has_value());
  CHECK_FALSE(none.mem_available_bytes.has_value());
  root.write("proc/loadavg", "2.50 1.00 0.50 2/300 4000\n");
  root.write("proc/meminfo", k_meminfo);
  const HostLoad h = read_host_load(root.path());
  REQUIRE(h.load.has_value());
  CHECK((*h.load)[0] == doctest::Approx(2.5));
  CHECK(h.mem_available_bytes == 20971520ull * 1024);
  const HostLoad real = read_host_load(); // this machine's /proc
  CHECK(real.load.has_value());
  CHECK(real.mem_available_bytes.has_value());
}
