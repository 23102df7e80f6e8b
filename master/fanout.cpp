#include "master/fanout.hpp"

// Theory of operation
// -------------------
// pdsh's bounded pool, without threads, bounding only what costs the master: min(fanout, nodes)
// lane() coroutines share one queue of node indexes. A lane takes the next node, starts its
// NodeSession as a coroutine of its own and waits only until that node's upload is done (or it
// failed before that), then takes the next node. So at most `fanout` nodes connect, handshake or
// upload at once, while a node whose upload is done runs its commands at once, however many
// others are running; a slow or dead node holds a lane at most for the connect timeout or the
// idle limit. A NodeSession never throws: every failure becomes that node's NodeResult. The
// sessions share one MsgRouter that passes node-to-node messages between them; a node whose
// session ends is "ended" for it.
// interrupt() reaches every active session (CANCEL to the worker) and empties the queue; a
// second interrupt closes connections.

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
  Event ended(ex); // a lane or a session ended
  m_lanes_running = std::min(m_plan.options.fanout, m_plan.peers.size());
  for (std::size_t i = 0, lanes = m_lanes_running; i < lanes; ++i) {
    asio::co_spawn(ex, lane(ended), [this, &ended](std::exception_ptr e) {
      if (e && !m_failure) {
        m_failure = e;
      }
      --m_lanes_running;
      ended.notify();
    });
  }
  while (m_lanes_running > 0 || m_sessions_running > 0) {
    co_await ended.wait();
  }
  if (m_failure) {
    std::rethrow_exception(m_failure);
  }
  for (std::size_t index : m_never_started) {
    co_await m_view.node_done(index, m_results[index]);
  }
}

awaitable<void> Fanout::lane(Event& ended)
{
  const auto ex = co_await asio::this_coro::executor;
  Event slot_free(ex); // this lane's node finished uploading (or failed before)
  while (!m_pending.empty() && !m_failure) {
    const std::size_t index = m_pending.front();
    m_pending.pop_front();
    auto session = std::make_shared<NodeSession>(m_plan, m_plan.peers[index], m_view, m_router);
    m_active.insert(session.get());
    ++m_sessions_running;
    // NodeSession::run() calls `uploaded` exactly once, so this lane outlives the reference.
    bool uploaded = false;
    asio::co_spawn(ex,
                   node(session, index,
                        [&uploaded, &slot_free] {
                          uploaded = true;
                          slot_free.notify();
                        }),
                   [this, &ended](std::exception_ptr e) {
                     if (e && !m_failure) {
                       m_failure = e;
                     }
                     --m_sessions_running;
                     ended.notify();
                   });
    while (!uploaded) {
      co_await slot_free.wait();
    }
  }
}

awaitable<void> Fanout::node(std::shared_ptr<NodeSession> session, std::size_t index,
                             std::function<void()> uploaded)
{
  m_results[index] = co_await session->run(std::move(uploaded));
  m_active.erase(session.get());
  co_await m_view.node_done(index, m_results[index]);
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
