#pragma once
// Runs every node of a plan with bounded concurrency and collects their results.

#include "master/node_result.hpp"
#include "master/printer.hpp"
#include "master/run_plan.hpp"

#include <deque>
#include <set>
#include <vector>

namespace dc::master {

class NodeSession;

class Fanout {
public:
  Fanout(const RunPlan& plan, Printer& printer);

  // Runs all nodes; returns when every node has a result. Never throws.
  awaitable<void> run();
  // First Ctrl-C: cancel remote commands, start no new node. Later ones: close everything.
  void interrupt();
  bool interrupted() const { return m_interrupts > 0; }
  const std::vector<NodeResult>& results() const { return m_results; }

private:
  awaitable<void> drain();

  const RunPlan& m_plan;
  Printer& m_printer;
  std::deque<std::size_t> m_pending;
  std::set<NodeSession*> m_active;
  std::vector<NodeResult> m_results;
  int m_interrupts = 0;
};

} // namespace dc::master
