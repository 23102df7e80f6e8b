#include "master/fanout.hpp"

// Theory of operation
// -------------------
// pdsh's bounded thread pool, without threads: min(fanout, nodes) drain() coroutines share one
// queue of node indexes; each takes the next node and runs its NodeSession to the end (connect,
// upload, commands, BYE), so at most `fanout` nodes are in flight and a slow or dead node only
// occupies its own slot, bounded by the connect timeout and the idle limit. A NodeSession never
// throws: every failure becomes that node's NodeResult. The sessions share one MsgRouter that
// passes node-to-node messages between them; a node whose session ends is "ended" for it.
// interrupt() reaches every active session (CANCEL to the worker) and empties the queue; a second
// interrupt closes connections.

#include "master/node_session.hpp"

namespace dc::master {

Fanout::Fanout(const RunPlan& plan, OutputView& view)
    : m_plan(plan), m_view(view), m_router(plan.peers.size()), m_results(plan.peers.size())
{
  for (std::size_t i = 0; i < plan.peers.size(); ++i) {
    m_pending.push_back(i);
  }
}

awaitable<void> Fanout::run()
{
  const auto ex = co_await asio::this_coro::executor;
  const std::size_t lanes = std::min(m_plan.options.fanout, m_plan.peers.size());
  std::size_t running = lanes;
  Event lane_done(ex);
  std::exception_ptr failure;
  for (std::size_t i = 0; i < lanes; ++i) {
    asio::co_spawn(ex, drain(), [&](std::exception_ptr e) {
      if (e && !failure) {
        failure = e;
      }
      --running;
      lane_done.notify();
    });
  }
  while (running > 0) {
    co_await lane_done.wait();
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
  for (std::size_t index : m_never_started) {
    co_await m_view.node_done(index, m_results[index]);
  }
}

awaitable<void> Fanout::drain()
{
  while (!m_pending.empty()) {
    const std::size_t index = m_pending.front();
    m_pending.pop_front();
    NodeSession session(m_plan, m_plan.peers[index], m_view, m_router);
    m_active.insert(&session);
    m_results[index] = co_await session.run();
    m_active.erase(&session);
    co_await m_view.node_done(index, m_results[index]);
  }
}

void Fanout::interrupt()
{
  ++m_interrupts;
  for (std::size_t index : m_pending) {
    m_results[index].state = NodeState::cancelled;
    m_results[index].detail = "not started";
    m_never_started.push_back(index);
    m_router.node_ended(std::uint32_t(index)); // its messages' senders and receivers fail
  }
  m_pending.clear();
  for (NodeSession* session : m_active) {
    if (m_interrupts == 1) {
      session->cancel();
    } else {
      session->abort();
    }
  }
}

} // namespace dc::master
