#include "master/upload_progress.hpp"

#include "master/node_result.hpp"
#include "master/printer.hpp"

#include <algorithm>
#include <cmath>

namespace dc::master {
namespace {

constexpr auto k_redraw_interval = std::chrono::milliseconds(200);
constexpr std::size_t k_bar_width = 20;

} // namespace

UploadProgress::UploadProgress(Printer& printer, std::size_t nodes)
    : m_printer(printer), m_nodes(nodes)
{
}

std::string UploadProgress::render(std::uint64_t done, std::uint64_t total, double rate,
                                   std::size_t nodes_done, std::size_t nodes)
{
  done = std::min(done, total);
  const std::size_t filled =
      total == 0 ? 0
                 : static_cast<std::size_t>(static_cast<double>(done) / static_cast<double>(total) *
                                            k_bar_width);
  std::string line = "upload [" + std::string(filled, '#') +
                     std::string(k_bar_width - filled, ' ') + "]  " + format_size(done) + " / " +
                     format_size(total);
  if (rate > 0) {
    line += "  " + format_size(static_cast<std::uint64_t>(rate)) + "/s";
    if (total > done) {
      const double eta = static_cast<double>(total - done) / rate;
      line += "  ETA " + format_duration(std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(std::min(eta, 1e7))));
    }
  }
  return line + "  " + std::to_string(nodes_done) + "/" + std::to_string(nodes) + " nodes";
}

void UploadProgress::wanted(std::uint64_t bytes)
{
  m_total += bytes;
  draw(false);
}

void UploadProgress::sent(std::uint64_t bytes)
{
  m_done += bytes;
  draw(false);
}

void UploadProgress::node_done()
{
  ++m_nodes_done;
  draw(true);
  if (m_nodes_done >= m_nodes) {
    finish();
  }
}

void UploadProgress::finish()
{
  if (!m_finished) {
    m_finished = true;
    m_printer.clear_bar();
  }
}

void UploadProgress::draw(bool force)
{
  const auto now = Clock::now();
  if (m_finished || (!force && now - m_last_draw < k_redraw_interval)) {
    return;
  }
  m_last_draw = now;
  const double seconds = std::chrono::duration<double>(now - m_started).count();
  const double rate = seconds > 0.05 ? static_cast<double>(m_done) / seconds : 0;
  m_printer.show_bar(render(m_done, m_total, rate, m_nodes_done, m_nodes));
}

} // namespace dc::master
