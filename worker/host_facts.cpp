#include "worker/host_facts.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fcntl.h>
#include <filesystem>
#include <limits>
#include <sched.h>
#include <sys/utsname.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace dc::worker {
namespace {

constexpr std::size_t k_max_file_size = 64 * 1024; // every file read here is a few hundred bytes

// The whole of a small file, or nullopt if it cannot be read. /proc files report size 0, so
// this reads until EOF (at most k_max_file_size bytes).
std::optional<std::string> read_small_file(const std::string& path)
{
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  while (out.size() < k_max_file_size) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      close(fd);
      return std::nullopt;
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

// Calls `f(line)` for every line of `text` (without its '\n').
template <typename F>
void for_each_line(std::string_view text, F f)
{
  while (!text.empty()) {
    const auto nl = text.find('\n');
    f(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  }
}

std::string_view trim(std::string_view s)
{
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) {
    return {};
  }
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

// Cuts `s` to k_max_fact_size bytes without splitting a UTF-8 sequence.
std::string cut(std::string s)
{
  if (s.size() > k_max_fact_size) {
    std::size_t n = k_max_fact_size;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) {
      --n;
    }
    s.resize(n);
  }
  return s;
}

// Undoes os-release's shell-style quoting: "…" (with \" \\ \$ \` escapes), '…', bare words.
std::string unquote(std::string_view v)
{
  std::string out;
  char quote = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (quote == 0 && (c == '"' || c == '\'')) {
      quote = c;
    } else if (quote != 0 && c == quote) {
      quote = 0;
    } else if (c == '\\' && quote != '\'' && i + 1 < v.size() &&
               (quote == 0 ||
                std::string_view("\"\\$`").find(v[i + 1]) != std::string_view::npos)) {
      out.push_back(v[++i]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::uint32_t usable_cores()
{
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
    return static_cast<std::uint32_t>(CPU_COUNT(&set)); // what a job started by us may use
  }
  return std::thread::hardware_concurrency(); // more than 1024 CPUs, or no affinity support
}

} // namespace

MemInfo parse_meminfo(std::string_view text)
{
  std::optional<std::uint64_t> total, available, free, buffers, cached;
  for_each_line(text, [&](std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return;
    }
    const std::string_view key = line.substr(0, colon);
    std::optional<std::uint64_t>* slot = key == "MemTotal"       ? &total
                                         : key == "MemAvailable" ? &available
                                         : key == "MemFree"      ? &free
                                         : key == "Buffers"      ? &buffers
                                         : key == "Cached"       ? &cached
                                                                 : nullptr;
    if (slot == nullptr) {
      return;
    }
    const std::string_view rest = trim(line.substr(colon + 1));
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
    if (ec != std::errc{} || end == rest.data()) {
      return;
    }
    const std::string_view unit = trim(rest.substr(static_cast<std::size_t>(end - rest.data())));
    if (unit == "kB") { // the kernel's "kB" is KiB
      if (value > std::numeric_limits<std::uint64_t>::max() / 1024) {
        return;
      }
      value *= 1024;
    } else if (!unit.empty()) {
      return;
    }
    *slot = value;
  });
  MemInfo m;
  m.total_bytes = total;
  m.available_bytes = available;
  if (!available && free && buffers && cached) {
    m.available_bytes = *free + *buffers + *cached; // kernels before 3.14 have no MemAvailable
  }
  return m;
}

std::optional<std::array<double, 3>> parse_loadavg(std::string_view text)
{
  std::array<double, 3> load{};
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (double& v : load) {
    while (p < end && *p == ' ') {
      ++p;
    }
    const auto [next, ec] = std::from_chars(p, end, v, std::chars_format::fixed);
    if (ec != std::errc{} || next == p || !std::isfinite(v) || v < 0 ||
        (next < end && *next != ' ' && *next != '\n')) {
      return std::nullopt;
    }
    p = next;
  }
  return load;
}

std::string parse_os_release(std::string_view text)
{
  std::optional<std::string> pretty, name;
  for_each_line(text, [&](std::string_view line) {
    line = trim(line);
    if (line.empty() || line.front() == '#') {
      return;
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      return;
    }
    const std::string_view key = line.substr(0, eq);
    if (key == "PRETTY_NAME") {
      pretty = unquote(line.substr(eq + 1));
    } else if (key == "NAME") {
      name = unquote(line.substr(eq + 1));
    }
  });
  if (pretty && !pretty->empty()) {
    return *pretty;
  }
  if (name && !name->empty()) {
    return *name;
  }
  return "Linux"; // os-release(5)'s default for PRETTY_NAME
}

std::optional<std::string> parse_nvidia_model(std::string_view text)
{
  std::optional<std::string> model;
  for_each_line(text, [&](std::string_view line) {
    if (!model && line.substr(0, 6) == "Model:") {
      const std::string_view v = trim(line.substr(6));
      if (!v.empty()) {
        model = std::string(v);
      }
    }
  });
  return model;
}

std::vector<GpuFact> read_nvidia_gpus(const std::string& root)
{
  // One directory per GPU, named by its PCI address: sorted, that is PCI bus order, the order
  // nvidia-smi numbers them in (and CUDA with CUDA_DEVICE_ORDER=PCI_BUS_ID).
  std::vector<std::string> buses;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(root + "/proc/driver/nvidia/gpus", ec)) {
    buses.push_back(entry.path().filename().string());
  }
  std::sort(buses.begin(), buses.end());
  std::vector<GpuFact> gpus;
  for (std::size_t i = 0; i < buses.size() && gpus.size() < k_max_gpus; ++i) {
    const auto info =
        read_small_file(root + "/proc/driver/nvidia/gpus/" + buses[i] + "/information");
    const auto model = info ? parse_nvidia_model(*info) : std::nullopt;
    if (!model) {
      continue;
    }
    GpuFact gpu;
    gpu.index = static_cast<std::uint32_t>(i);
    gpu.name = cut(*model);
    gpu.bus = cut(buses[i]);
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

WorkerFacts read_static_facts(const std::string& root)
{
  WorkerFacts f;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) {
    f.hostname = cut(host);
  }
  utsname u{};
  if (uname(&u) == 0) {
    f.kernel = cut(std::string(u.sysname) + " " + u.release);
    f.arch = cut(u.machine);
  }
  auto os_release = read_small_file(root + "/etc/os-release");
  if (!os_release) {
    os_release = read_small_file(root + "/usr/lib/os-release");
  }
  f.os = cut(parse_os_release(os_release.value_or("")));
  f.cores = usable_cores();
  const auto meminfo = read_small_file(root + "/proc/meminfo");
  if (const auto total = meminfo ? parse_meminfo(*meminfo).total_bytes : std::nullopt) {
    f.mem_total_bytes = *total;
  } else {
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page_size = sysconf(_SC_PAGE_SIZE);
    f.mem_total_bytes = pages > 0 && page_size > 0 ? std::uint64_t(pages) * page_size : 0;
  }
  f.gpus = read_nvidia_gpus(root);
  f.version = DC_VERSION;
  f.started_at = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  return f;
}

HostLoad read_host_load(const std::string& root)
{
  HostLoad h;
  if (const auto loadavg = read_small_file(root + "/proc/loadavg")) {
    h.load = parse_loadavg(*loadavg);
  }
  if (const auto meminfo = read_small_file(root + "/proc/meminfo")) {
    h.mem_available_bytes = parse_meminfo(*meminfo).available_bytes;
  }
  return h;
}

} // namespace dc::worker
