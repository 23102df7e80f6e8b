#include "master/blocks_view.hpp"

#include "master/terminal_style.hpp"

namespace dc::master {

BlocksView::BlocksView(Printer& printer, std::vector<std::string> labels, bool color)
    : OutputView(printer), m_labels(std::move(labels)), m_captures(m_labels.size()), m_color(color)
{
}

void BlocksView::output(std::size_t node, bool is_stderr, ByteView data)
{
  if (is_stderr) {
    m_printer.output(node, true, data);
  } else {
    m_captures.at(node).append(as_chars(data));
  }
}

asio::awaitable<void> BlocksView::node_done(std::size_t node, const NodeResult& result)
{
  m_printer.finish_node(node); // a held partial stderr line
  const std::string label = m_color ? colored_label(m_labels[node], node) : m_labels[node];
  const std::string outcome = outcome_text(result);
  m_finished.emplace_back(node, "----- " + label + " (" + (outcome.empty() ? "" : outcome + ", ") +
                                    format_duration(result.total) + ") -----\n");
  if (m_printing) {
    co_return; // the node_done() that is printing will print this block too
  }
  m_printing = true;
  try {
    while (!m_finished.empty()) {
      const auto [next, header] = std::move(m_finished.front());
      m_finished.pop_front();
      m_printer.write(false, header);
      co_await write_capture(m_captures[next]);
      m_captures[next].clear();
    }
  } catch (...) {
    m_printing = false;
    throw;
  }
  m_printing = false;
}

} // namespace dc::master
