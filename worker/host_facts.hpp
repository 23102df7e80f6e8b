#pragma once
// What a worker tells masters about its machine (PROTOCOL.md §5): static facts for WELCOME, read
// once at start-up, and the dynamic ones for STATUS_REPLY. Everything comes from files under
// /proc and /etc and from uname/sched_getaffinity; nothing is executed, so a hung GPU driver
// cannot stall the worker. GPUs: only NVIDIA's proprietary driver is recognised, through
// /proc/driver/nvidia/gpus/*/information (it names the model but not the memory size); other
// GPUs are not reported. The parsers are pure functions on a file's text.

#include "common/messages.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dc::worker {

struct MemInfo {
  std::optional<std::uint64_t> total_bytes;
  std::optional<std::uint64_t> available_bytes; // MemAvailable, or free + buffers + cached
};

// /proc/meminfo: "MemTotal:  16318480 kB" lines. Missing or malformed lines leave a field empty.
MemInfo parse_meminfo(std::string_view text);
// /proc/loadavg: "0.52 0.58 0.59 1/1234 5678". Returns nullopt unless three numbers lead.
std::optional<std::array<double, 3>> parse_loadavg(std::string_view text);
// os-release(5): PRETTY_NAME, else NAME, else "Linux"; shell-style quotes and escapes undone.
std::string parse_os_release(std::string_view text);
// /proc/driver/nvidia/gpus/<bus>/information: the "Model:" value, if any.
std::optional<std::string> parse_nvidia_model(std::string_view text);

// The static facts of this machine. `root` is prepended to every file path ("" on a real
// machine, a fake tree in tests); host name, kernel, cores and start time come from the running
// system. Strings are cut to k_max_fact_size bytes and GPUs to k_max_gpus. Never throws for a
// missing or unreadable file.
WorkerFacts read_static_facts(const std::string& root = "");

// The NVIDIA GPUs under `root`/proc/driver/nvidia/gpus, in PCI bus order.
std::vector<GpuFact> read_nvidia_gpus(const std::string& root = "");

// Load and available memory now (cheap: two small /proc reads, for every STATUS).
struct HostLoad {
  std::optional<std::array<double, 3>> load;
  std::optional<std::uint64_t> mem_available_bytes;
};
HostLoad read_host_load(const std::string& root = "");

} // namespace dc::worker
