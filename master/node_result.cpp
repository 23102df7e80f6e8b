#include "master/node_result.hpp"

#include "master/options.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace dc::master {

const char* to_string(NodeState s)
{
  switch (s) {
  case NodeState::pending:
    return "pending";
  case NodeState::ok:
    return "ok";
  case NodeState::failed:
    return "failed";
  case NodeState::unreachable:
    return "unreachable";
  case NodeState::rejected:
    return "rejected";
  case NodeState::timed_out:
    return "timeout";
  case NodeState::cancelled:
    return "cancelled";
  case NodeState::lost:
    return "lost";
  }
  return "?";
}

std::string format_duration(Clock::duration d)
{
  const double s = std::chrono::duration<double>(d).count();
  char buf[32];
  if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.0f ms", s * 1000);
  } else if (s < 100) {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f s", s);
  }
  return buf;
}

std::string format_size(std::uint64_t bytes)
{
  if (bytes < 1000) {
    return std::to_string(bytes) + " B";
  }
  static const char* const units[] = {"kB", "MB", "GB", "TB", "PB"};
  double value = static_cast<double>(bytes) / 1000;
  std::size_t unit = 0;
  while (value >= 999.95 && unit + 1 < std::size(units)) {
    value /= 1000;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, value < 9.95 ? "%.1f %s" : "%.0f %s", value, units[unit]);
  return buf;
}

std::string upload_text(const UploadStats& s)
{
  return "upload " + format_size(s.sent_bytes) + " of " + format_size(s.bytes) + ", " +
         std::to_string(s.cached_files) + " of " + std::to_string(s.files) + " files cached";
}

std::string fetch_text(const FetchStats& s)
{
  std::string text = "fetched " + std::to_string(s.files) +
                     (s.files == 1 ? " file, " : " files, ") + format_size(s.bytes) + " into " +
                     s.dir;
  if (s.reused_files > 0) {
    text += " (" + std::to_string(s.reused_files) + " unchanged)";
  }
  if (s.skipped > 0) {
    text += "; " + std::to_string(s.skipped) + " skipped:";
    for (std::size_t i = 0; i < s.skipped_examples.size(); ++i) {
      text += (i == 0 ? " " : ", ") + s.skipped_examples[i];
    }
    if (s.skipped > s.skipped_examples.size()) {
      text += ", ...";
    }
  }
  return text;
}

std::string exit_text(const NodeResult& r)
{
  if (r.exit_signal) {
    std::string text = "signal " + std::to_string(*r.exit_signal);
    if (const char* name = sigabbrev_np(*r.exit_signal)) {
      text += std::string(" (SIG") + name + ")";
    }
    return text;
  }
  return r.exit_code ? "exit " + std::to_string(*r.exit_code) : std::string();
}

std::string outcome_text(const NodeResult& r)
{
  const std::string exit = exit_text(r);
  if (r.state == NodeState::ok || (r.state == NodeState::failed && !exit.empty())) {
    return exit;
  }
  return exit.empty() ? to_string(r.state) : std::string(to_string(r.state)) + ", " + exit;
}

std::string straggler_line(const std::vector<std::string>& labels,
                           const std::vector<NodeResult>& results)
{
  // Only nodes whose commands ran to an end have a run time worth comparing.
  const auto ran = [](const NodeResult& r) {
    return r.state == NodeState::ok || r.state == NodeState::failed ||
           r.state == NodeState::timed_out;
  };
  std::vector<Clock::duration> runs;
  for (const auto& r : results) {
    if (ran(r)) {
      runs.push_back(r.run);
    }
  }
  if (runs.size() < 3) {
    return {};
  }
  std::nth_element(runs.begin(), runs.begin() + runs.size() / 2, runs.end());
  const Clock::duration median = runs[runs.size() / 2];
  // Below 50 ms a difference is scheduling noise: "2x" of 3 ms is not worth a line.
  const Clock::duration threshold = std::max<Clock::duration>(2 * median, 50ms);
  std::vector<std::size_t> slow;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (ran(results[i]) && results[i].run > threshold) {
      slow.push_back(i);
    }
  }
  if (slow.empty()) {
    return {};
  }
  std::stable_sort(slow.begin(), slow.end(),
                   [&](std::size_t a, std::size_t b) { return results[a].run > results[b].run; });
  std::string line = "stragglers (over 2x the median run time " + format_duration(median) + "):";
  for (std::size_t k = 0; k < slow.size(); ++k) {
    line += (k == 0 ? " " : ", ") + labels[slow[k]] + " " + format_duration(results[slow[k]].run);
  }
  return line;
}

std::string summary_line(const std::string& label, std::size_t label_width, const NodeResult& r)
{
  std::string line = label;
  line.append(label_width > label.size() ? label_width - label.size() : 0, ' ');
  std::string state = to_string(r.state);
  state.resize(std::max<std::size_t>(state.size(), 11), ' ');
  line += "   " + state + " ";
  std::string status = exit_text(r);
  if (!status.empty()) {
    status.resize(std::max<std::size_t>(status.size(), 8), ' ');
    line += status + " ";
  }
  const bool ran = r.state != NodeState::unreachable && r.state != NodeState::rejected;
  line += format_duration(r.total);
  if (ran) {
    line +=
        "   (connect " + format_duration(r.connect) + ", upload " + format_duration(r.upload) +
        ", run " + format_duration(r.run) +
        (r.fetch_stats || r.fetch != Clock::duration::zero() ? ", fetch " + format_duration(r.fetch)
                                                             : std::string()) +
        ")";
  }
  if (r.upload_stats) {
    line += "   " + upload_text(*r.upload_stats);
  }
  if (r.fetch_stats) {
    line += "   " + fetch_text(*r.fetch_stats);
  }
  if (!r.detail.empty()) {
    line += "   " + r.detail;
  }
  if (!r.kept_dir.empty()) {
    line += "   kept " + r.kept_dir;
  }
  return line;
}

std::string total_line(const std::vector<NodeResult>& results, Clock::duration total)
{
  std::size_t ok = 0, failed = 0, unreachable = 0, other = 0;
  for (const auto& r : results) {
    switch (r.state) {
    case NodeState::ok:
      ++ok;
      break;
    case NodeState::failed:
    case NodeState::timed_out:
    case NodeState::lost:
      ++failed;
      break;
    case NodeState::unreachable:
    case NodeState::rejected:
      ++unreachable;
      break;
    default:
      ++other;
    }
  }
  std::string line = std::to_string(ok) + " ok · " + std::to_string(failed) + " failed · " +
                     std::to_string(unreachable) + " unreachable";
  if (other > 0) {
    line += " · " + std::to_string(other) + " cancelled";
  }
  return line + " — total time " + format_duration(total);
}

int exit_status(const std::vector<NodeResult>& results, bool interrupted, bool largest_remote)
{
  if (interrupted) {
    return k_exit_interrupted;
  }
  bool unreachable = false, timed_out = false, failed = false;
  int largest = 0;
  for (const auto& r : results) {
    unreachable |= r.state == NodeState::unreachable || r.state == NodeState::rejected ||
                   r.state == NodeState::lost;
    timed_out |= r.state == NodeState::timed_out;
    failed |= r.state == NodeState::failed || r.state == NodeState::cancelled;
    if (r.exit_signal) {
      largest = std::max(largest, 128 + *r.exit_signal);
    } else if (r.exit_code) {
      largest = std::max(largest, *r.exit_code);
    }
  }
  if (unreachable) {
    return k_exit_unreachable;
  }
  // A node can fail with every command at exit 0 (a rejected bundle, a --fetch that matched
  // nothing): -S must not turn that into success.
  if (largest_remote && (largest != 0 || !(failed || timed_out))) {
    return largest;
  }
  if (timed_out) {
    return k_exit_timeout;
  }
  return failed ? k_exit_command_failed : k_exit_ok;
}

} // namespace dc::master
