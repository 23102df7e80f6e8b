#include "master/status.hpp"

// Theory of operation
// -------------------
// min(--fanout, nodes) lanes share one queue of node indexes, as in a run (fanout.cpp); each
// lane takes a node and asks it: resolve, connect, handshake, HELLO/WELCOME (open_session, the
// same code a run uses), then STATUS and its STATUS_REPLY if the worker announced "status", and
// BYE. One Deadline on the socket bounds each step by --connect-timeout, so a dead or silent
// node costs only its own lane that long. Every failure becomes the node's NodeStatus; the
// table is printed once every node has one.

#include "common/handshake.hpp"
#include "common/log.hpp"
#include "master/connect.hpp"
#include "master/node_result.hpp"
#include "master/status_table.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>

namespace dc::master {
namespace {

constexpr auto k_bye_limit = 5s;

class StatusQuery {
public:
  explicit StatusQuery(const RunPlan& plan) : m_plan(plan), m_results(plan.peers.size())
  {
    for (std::size_t i = 0; i < plan.peers.size(); ++i) {
      m_pending.push_back(i);
    }
  }

  // Asks every node; returns when each has a result. Never throws.
  awaitable<void> run()
  {
    const auto ex = co_await asio::this_coro::executor;
    const std::size_t lanes = std::min(m_plan.options.fanout, m_plan.peers.size());
    std::size_t running = lanes;
    Event lane_done(ex);
    for (std::size_t i = 0; i < lanes; ++i) {
      asio::co_spawn(ex, drain(), [&](std::exception_ptr) {
        --running;
        lane_done.notify();
      });
    }
    while (running > 0) {
      co_await lane_done.wait();
    }
  }

  const std::vector<NodeStatus>& results() const { return m_results; }

private:
  awaitable<void> drain()
  {
    while (!m_pending.empty()) {
      const std::size_t index = m_pending.front();
      m_pending.pop_front();
      m_results[index] = co_await query(m_plan.peers[index]);
    }
  }

  // One node, from name lookup to BYE. Never throws.
  awaitable<NodeStatus> query(const Peer& peer)
  {
    const Clock::duration limit = m_plan.options.connect_timeout;
    NodeStatus s;
    s.label = peer.label;
    std::shared_ptr<Channel> channel;
    std::unique_ptr<Deadline> deadline;
    bool welcomed = false;
    const auto failed = [&](StatusState before_welcome, std::string reason) {
      s.state = welcomed ? StatusState::error : before_welcome;
      s.reason = std::move(reason);
    };
    try {
      const auto ex = co_await asio::this_coro::executor;
      const auto endpoints = co_await resolve_peer(peer, limit);
      channel = std::make_shared<Channel>(tcp::socket(ex));
      deadline = std::make_unique<Deadline>(channel->socket(), limit);
      Hello hello;
      hello.client = std::string("distcomp master ") + DC_VERSION + " (status)";
      hello.name = peer.label;
      const Welcome welcome = co_await open_session(*channel, endpoints, m_plan.key, hello);
      welcomed = true;
      s.version = welcome.version;
      s.facts = facts_from(welcome.facts);
      s.state = StatusState::no_status;
      if (std::find(welcome.features.begin(), welcome.features.end(), "status") !=
          welcome.features.end()) {
        deadline->extend(limit);
        co_await channel->send(RecordType::status, std::string_view("{}"));
        const Bytes reply = co_await receive_body(*channel, RecordType::status_reply);
        s.reply = status_reply_from(parse_body(reply));
        s.state = StatusState::up;
      }
    } catch (const HandshakeError& e) {
      failed(StatusState::rejected, e.what());
    } catch (const RemoteError& e) {
      failed(StatusState::rejected, (welcomed ? "worker error: " : "") + e.body.msg);
    } catch (const ConnectionLost& e) {
      failed(StatusState::unreachable, e.what());
    } catch (const ProtocolError& e) {
      s.state = StatusState::error;
      s.reason = std::string("protocol error: ") + e.what();
    } catch (const std::system_error& e) {
      if (deadline && deadline->expired()) {
        failed(StatusState::unreachable,
               (welcomed ? "no STATUS_REPLY within " : "connect timeout (") +
                   format_duration(limit) + (welcomed ? "" : ")"));
      } else {
        // The code's text only, as in a run's summary: the row already names the host.
        failed(StatusState::unreachable, welcomed ? "connection lost" : e.code().message());
      }
    } catch (const std::exception& e) {
      s.state = StatusState::error;
      s.reason = e.what();
    }
    if (s.state == StatusState::up || s.state == StatusState::no_status) {
      // The answer is in; a BYE that goes wrong changes nothing about it.
      try {
        deadline->extend(k_bye_limit);
        co_await close_session(*channel, peer.label);
      } catch (const std::exception& e) {
        log_debug("%s: closing: %s", peer.label.c_str(), e.what());
      }
    }
    deadline.reset();
    if (channel) {
      channel->close();
    }
    co_return s;
  }

  const RunPlan& m_plan;
  std::deque<std::size_t> m_pending;
  std::vector<NodeStatus> m_results;
};

// Writes all of `text` to stdout. Returns the errno of a failed write, 0 on success.
int write_stdout(const std::string& text)
{
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    return errno;
  }
  return 0;
}

} // namespace

int run_status(const RunPlan& plan)
{
  const auto started = Clock::now();
  asio::io_context ctx(1);
  StatusQuery query(plan);
  bool interrupted = false;
  asio::signal_set signals(ctx, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int) {
    if (!ec) {
      interrupted = true;
      ctx.stop(); // nothing runs on the workers: just leave
    }
  });
  asio::co_spawn(ctx, query.run(), [&](std::exception_ptr) { signals.cancel(); });
  ctx.run();
  if (interrupted) {
    std::fprintf(stderr, "interrupted\n");
    return k_exit_interrupted;
  }
  const auto elapsed = Clock::now() - started;
  const std::vector<NodeStatus>& nodes = query.results();
  std::string out;
  if (plan.options.status_json) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      out += status_json_line(nodes[i], i) + "\n";
    }
    out += status_summary_json(nodes, elapsed) + "\n";
  } else {
    out = format_status_table(nodes);
  }
  if (const int err = write_stdout(out); err == EPIPE) {
    return 141; // `| head` closed stdout, as in a run
  } else if (err != 0) {
    log_error("stdout: %s", std::strerror(err));
  }
  if (!plan.options.status_json) {
    std::fprintf(stderr, "%s\n", status_total_line(nodes, elapsed).c_str());
  }
  return status_exit_code(nodes);
}

} // namespace dc::master
