#pragma once
// --gather: nodes whose stdout is identical are printed once, under a compressed hostlist
// ("----- lab[01-38,40] (39 nodes) -----"), the largest group first and the nodes that differ
// after it, like `dshbak -c` / `clush -b` but with the outliers easy to spot. Nodes are compared
// by a BLAKE2b digest of their captured output (OutputCapture spools big outputs to disk).
//
// --gather --live: the same line by line while the nodes run. Row k is printed once every node
// still running has printed its line k (or one node is k_max_behind lines ahead: a stuck node
// must not make the master hold everything): "lab[01-40] | text", the majority first, then each
// different line under its own nodes.
//
// Job stderr stays live and tagged on stderr in both modes.

#include "master/line_splitter.hpp"
#include "master/output_capture.hpp"
#include "master/output_view.hpp"

#include <deque>

namespace dc::master {

class GatherView : public OutputView {
public:
  // Throws only std::bad_alloc.
  GatherView(Printer& printer, std::vector<std::string> labels, bool live);
  void output(std::size_t node, bool is_stderr, ByteView data) override;
  asio::awaitable<void> node_done(std::size_t node, const NodeResult& result) override;
  asio::awaitable<void> run_done(const std::vector<NodeResult>& results, Clock::duration total,
                                 int exit_status) override;

  // Lines a node may be ahead of the slowest running node in --live mode before rows are printed
  // without the slow one.
  static constexpr std::size_t k_max_behind = 10000;

private:
  struct LiveNode {
    LineSplitter splitter;
    std::deque<std::string> lines; // complete lines not printed yet, with their '\n'
    bool done = false;
  };
  void print_ready_rows();

  std::vector<std::string> m_labels;
  bool m_live;
  std::vector<OutputCapture> m_captures; // whole mode
  std::vector<LiveNode> m_nodes;         // live mode
};

} // namespace dc::master
