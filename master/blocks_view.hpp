#pragma once
// --blocks: each node's stdout as one block when the node ends, headed
// "----- lab03 (exit 0, 1.20 s) -----" on stdout (the look DistrComp users know). Job stderr stays
// live and tagged on stderr, so errors show while a node runs and stdout stays pipeable.

#include "master/output_capture.hpp"
#include "master/output_view.hpp"

#include <deque>

namespace dc::master {

class BlocksView : public OutputView {
public:
  // Throws only std::bad_alloc.
  BlocksView(Printer& printer, std::vector<std::string> labels, bool color);
  void output(std::size_t node, bool is_stderr, ByteView data) override;
  asio::awaitable<void> node_done(std::size_t node, const NodeResult& result) override;

private:
  std::vector<std::string> m_labels;
  std::vector<OutputCapture> m_captures;
  // Nodes that ended, printed in this order by whichever node_done() is already printing, so
  // two blocks never interleave while one waits for the terminal.
  std::deque<std::pair<std::size_t, std::string>> m_finished; // node, header
  bool m_printing = false;
  bool m_color;
};

} // namespace dc::master
