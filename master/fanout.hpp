#pragma once
// Runs every node of a plan, at most --fanout of them connecting or uploading at once, and
// collects their results.

#include "master/msg_router.hpp"
#include "master/node_result.hpp"
#include "master/output_view.hpp"
#include "master/run_plan.hpp"

#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <set>
#include <vector>

namespace dc::master {

class NodeSession;

class Fanout {
public:
  Fanout(const RunPlan& plan, OutputView& view);

  // Runs all nodes; returns when every node has a result and the view has been told of each
  // (also of nodes an interrupt kept from starting). Throws what the view throws.
  awaitable<void> run();
  // First Ctrl-C: cancel remote commands, start no new node. Later ones: close everything.
  void interrupt();
  bool interrupted() const { return m_interrupts > 0; }
  const std::vector<NodeResult>& results() const { return m_results; }

private:
  awaitable<void> lane(Event& ended);
  awaitable<void> node(std::shared_ptr<NodeSession> session, std::size_t index,
                       std::function<void()> uploaded);

  const RunPlan& m_plan;
  OutputView& m_view;
  MsgRouter m_router; // node-to-node messages of this run
  std::deque<std::size_t> m_pending;
  std::set<NodeSession*> m_active;
  std::vector<NodeResult> m_results;
  std::vector<std::size_t> m_never_started; // taken off m_pending by interrupt()
  std::size_t m_lanes_running = 0;
  std::size_t m_sessions_running = 0;
  std::exception_ptr m_failure; // the first exception of a lane or a session (the view's)
  int m_interrupts = 0;
};

} // namespace dc::master
