#include "worker/server.hpp"

// Theory of operation
// -------------------
// One io_context on one thread. accept_loop() takes connections and applies the limits that
// hold before anyone is authenticated (PROTOCOL.md §6): at most max_pending unauthenticated
// connections in total and max_pending_per_ip per source, a per-source token bucket on
// handshakes, and a penalty box for sources that keep failing the key. Each admitted connection
// gets a coroutine, connection(), that runs the handshake under a deadline and then a Session,
// which owns everything after HELLO. Signals: SIGINT/SIGTERM stop accepting and ask every
// session to cancel its commands and say goodbye; SIGCHLD reaps orphans re-parented to us
// (we are a child subreaper, so background processes that escape their group are still ours).

#include "common/handshake.hpp"
#include "common/log.hpp"
#include "worker/host_facts.hpp"
#include "worker/process.hpp"
#include "worker/session.hpp"
#include "worker/workdir.hpp"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <unistd.h>

namespace dc::worker {
namespace {

// Per source address bookkeeping for the pre-authentication limits.
struct Source {
  std::size_t pending = 0;
  double tokens = 0;
  Clock::time_point refilled{};
  std::deque<Clock::time_point> key_rejects;
  Clock::time_point penalty_until{};
};

std::string address_key(const asio::ip::address& a)
{
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  }
  return a.to_string();
}

std::string endpoint_string(const tcp::endpoint& e)
{
  const std::string a = address_key(e.address());
  return (a.find(':') != std::string::npos ? "[" + a + "]" : a) + ":" + std::to_string(e.port());
}

class Server {
public:
  Server(asio::io_context& ctx, const Options& options, std::vector<ClusterKey> keys,
         Workdir& workdir, BlobCache* cache)
      : m_ctx(ctx), m_options(options), m_keys(std::move(keys)),
        m_acceptor(ctx), m_state{options, workdir, to_json(read_static_facts()), {}, 0, false, {}}
  {
    for (const auto& k : m_keys) {
      m_key_ptrs.push_back(&k);
    }
    m_state.cache = cache;
  }

  void listen()
  {
    std::error_code ec;
    const auto address = asio::ip::make_address(m_options.bind, ec);
    if (ec) {
      throw ConfigError("--bind " + m_options.bind + ": not an IP address");
    }
    const tcp::endpoint endpoint(address, m_options.port);
    m_acceptor.open(endpoint.protocol(), ec);
    if (!ec && address.is_v6()) {
      m_acceptor.set_option(asio::ip::v6_only(false), ec);
    }
    if (!ec) {
      m_acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
      m_acceptor.bind(endpoint, ec);
    }
    if (!ec) {
      m_acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      throw ConfigError("cannot listen on " + endpoint_string(endpoint) + ": " + ec.message());
    }
    log_info("listening on %s", endpoint_string(m_acceptor.local_endpoint()).c_str());
  }

  awaitable<void> accept_loop()
  {
    for (;;) {
      auto [ec, socket] = co_await m_acceptor.async_accept(as_tuple(use_awaitable));
      if (ec == asio::error::operation_aborted || m_state.stopping) {
        co_return;
      }
      if (ec) {
        log_warn("accept: %s", ec.message().c_str());
        co_await sleep_for(100ms); // back off instead of spinning on EMFILE
        continue;
      }
      std::error_code peer_ec;
      const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
      if (peer_ec) {
        continue;
      }
      const std::string ip = address_key(peer.address());
      if (!admit(ip)) {
        std::error_code ignored;
        socket.close(ignored); // excess: closed at accept, nothing read
        continue;
      }
      asio::co_spawn(m_ctx, connection(std::move(socket), ip, endpoint_string(peer)),
                     [](std::exception_ptr e) {
                       if (e) {
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& ex) {
                           log_error("connection: %s", ex.what());
                         }
                       }
                     });
    }
  }

  void stop()
  {
    if (m_state.stopping) {
      return;
    }
    m_state.stopping = true;
    log_info("stopping: cancelling %zu session(s)", m_state.sessions.size());
    std::error_code ignored;
    m_acceptor.close(ignored);
    for (Session* s : std::vector<Session*>(m_state.sessions.begin(), m_state.sessions.end())) {
      s->stop();
    }
    for (Channel* c : m_pending) {
      c->close();
    }
    check_idle();
  }

  void reap() { reap_orphans(); }

  // Runs `callback` once stop() was called and no connection is left.
  void on_idle_after_stop(std::function<void()> callback) { m_on_idle = std::move(callback); }

private:
  bool admit(const std::string& ip)
  {
    const auto now = Clock::now();
    const Limits& l = m_options.limits;
    Source& s = m_sources[ip];
    if (now < s.penalty_until) {
      return false;
    }
    if (m_pending_total >= l.max_pending || s.pending >= l.max_pending_per_ip) {
      if (m_state.preauth_log.allow()) {
        log_warn("%s: too many pending connections; closed at accept", ip.c_str());
      }
      return false;
    }
    // Token bucket: honest masters re-run often, so the burst is generous.
    if (s.refilled == Clock::time_point{}) {
      s.tokens = l.handshake_burst;
    } else {
      const double dt = std::chrono::duration<double>(now - s.refilled).count();
      s.tokens = std::min(l.handshake_burst, s.tokens + dt * l.handshake_rate);
    }
    s.refilled = now;
    if (s.tokens < 1) {
      if (m_state.preauth_log.allow()) {
        log_warn("%s: handshake rate limit; closed at accept", ip.c_str());
      }
      return false;
    }
    s.tokens -= 1;
    ++s.pending;
    ++m_pending_total;
    return true;
  }

  void check_idle()
  {
    if (m_state.stopping && m_connections == 0 && m_on_idle) {
      auto callback = std::move(m_on_idle);
      m_on_idle = nullptr;
      callback();
    }
  }

  void release(const std::string& ip)
  {
    auto it = m_sources.find(ip);
    --m_pending_total;
    if (it != m_sources.end()) {
      --it->second.pending;
      forget_if_idle(it);
    }
  }

  void forget_if_idle(std::map<std::string, Source>::iterator it)
  {
    const auto now = Clock::now();
    Source& s = it->second;
    const bool full_bucket =
        s.refilled == Clock::time_point{} ||
        std::chrono::duration<double>(now - s.refilled).count() * m_options.limits.handshake_rate >=
            m_options.limits.handshake_burst;
    if (s.pending == 0 && s.key_rejects.empty() && now >= s.penalty_until && full_bucket) {
      m_sources.erase(it); // memory stays bounded by the sources that are active
    }
  }

  void note_key_reject(const std::string& ip)
  {
    const auto now = Clock::now();
    Source& s = m_sources[ip];
    s.key_rejects.push_back(now);
    while (!s.key_rejects.empty() && now - s.key_rejects.front() > m_options.limits.reject_window) {
      s.key_rejects.pop_front();
    }
    if (s.key_rejects.size() >= static_cast<std::size_t>(m_options.limits.reject_limit)) {
      s.penalty_until = now + m_options.limits.reject_penalty;
      s.key_rejects.clear();
      log_warn("%s: %d key rejections within %.0f s; refusing it for %.0f s", ip.c_str(),
               m_options.limits.reject_limit,
               std::chrono::duration<double>(m_options.limits.reject_window).count(),
               std::chrono::duration<double>(m_options.limits.reject_penalty).count());
    }
  }

  awaitable<void> connection(tcp::socket socket, std::string ip, std::string peer)
  {
    ++m_connections;
    struct Done {
      Server& server;
      ~Done()
      {
        --server.m_connections;
        server.check_idle();
      }
    } done{*this};
    Channel channel(std::move(socket));
    m_pending.insert(&channel);
    bool pending = true;
    const auto end_pending = [&] {
      if (pending) {
        pending = false;
        m_pending.erase(&channel);
        release(ip);
      }
    };
    Deadline preamble(channel.socket(), m_options.limits.preamble_timeout);
    Deadline handshake(channel.socket(), m_options.limits.handshake_timeout);
    const ServerHandshakeOutcome outcome =
        co_await server_handshake(channel, m_key_ptrs, &preamble);
    if (!outcome.ok) {
      end_pending();
      if (outcome.rejected && outcome.reason == RejectReason::key) {
        note_key_reject(ip);
      }
      const bool timed_out = preamble.expired() || handshake.expired();
      if (m_state.preauth_log.allow() &&
          (outcome.rejected || timed_out || log_enabled(LogLevel::debug))) {
        std::string ours;
        for (const auto* k : m_key_ptrs) {
          ours += (ours.empty() ? "" : ",") + key_id_hex(k->key_id);
        }
        log_warn("%s: %s%s (our key id %s)", peer.c_str(),
                 outcome.rejected ? ("rejected (" + to_string(outcome.reason) + "): ").c_str() : "",
                 timed_out ? "handshake timeout" : outcome.detail.c_str(), ours.c_str());
      }
      channel.close();
      co_return;
    }
    Session session(channel, m_state, peer, [&] {
      handshake.disarm();
      end_pending();
    });
    co_await session.run();
    end_pending();
  }

  asio::io_context& m_ctx;
  const Options& m_options;
  std::vector<ClusterKey> m_keys;
  std::vector<const ClusterKey*> m_key_ptrs;
  tcp::acceptor m_acceptor;
  WorkerState m_state;
  std::map<std::string, Source> m_sources;
  std::size_t m_pending_total = 0;
  std::set<Channel*> m_pending;
  std::size_t m_connections = 0; // connection() coroutines alive
  std::function<void()> m_on_idle;
};

awaitable<void> reap_on_sigchld(asio::signal_set& signals, Server& server)
{
  for (;;) {
    auto [ec, sig] = co_await signals.async_wait(as_tuple(use_awaitable));
    if (ec) {
      co_return;
    }
    server.reap();
  }
}

} // namespace

int run(const Options& options)
{
  set_log_level(options.verbose ? LogLevel::debug : LogLevel::info);
  init_sodium();
  if (geteuid() == 0) {
    log_warn("*** running as root: every holder of the cluster key can run anything as root on "
             "this machine. Run the worker as a dedicated unprivileged user. ***");
  }
  std::vector<ClusterKey> keys;
  if (options.key_paths.empty()) {
    keys.push_back(load_cluster_key(std::nullopt, options.force_permissions));
  }
  for (const auto& path : options.key_paths) {
    keys.push_back(load_cluster_key(path, options.force_permissions));
  }
  for (const auto& k : keys) {
    log_info("key %s (key id %s)", k.path.c_str(), key_id_hex(k.key_id).c_str());
  }
  Workdir workdir(options.workdir);
  std::unique_ptr<BlobCache> cache;
  if (!options.no_cache) {
    cache = std::make_unique<BlobCache>(options.cache_dir.empty() ? workdir.path() + "/cache"
                                                                  : options.cache_dir,
                                        options.cache_size);
  }
  if (!become_subreaper()) {
    log_warn("cannot become a child subreaper: escaped background processes may survive jobs");
  }

  asio::io_context ctx(1);
  // Signal handling exists before "listening on" is printed, so an early SIGTERM is orderly.
  asio::signal_set stop_signals(ctx, SIGINT, SIGTERM);
  asio::signal_set child_signals(ctx, SIGCHLD);
  Server server(ctx, options, std::move(keys), workdir, cache.get());
  server.listen();

  asio::steady_timer hard_stop(ctx);
  stop_signals.async_wait([&](std::error_code ec, int sig) {
    if (ec) {
      return;
    }
    log_info("%s received", sig == SIGINT ? "SIGINT" : "SIGTERM");
    child_signals.cancel();
    // Sessions end after their commands got SIGTERM and, after the grace, SIGKILL.
    hard_stop.expires_after(options.limits.kill_grace + 5s);
    hard_stop.async_wait([&](std::error_code timer_ec) {
      if (!timer_ec) {
        log_warn("sessions did not end in time; exiting anyway");
        ctx.stop();
      }
    });
    stop_signals.async_wait([&](std::error_code second_ec, int) {
      if (!second_ec) {
        ctx.stop(); // a second signal: leave now
      }
    });
    server.stop(); // last: when nothing is running it disarms the two waits above at once
  });
  server.on_idle_after_stop([&] {
    // Every session and pending connection has ended: nothing is left to wait for.
    hard_stop.cancel();
    stop_signals.cancel();
  });
  asio::co_spawn(ctx, reap_on_sigchld(child_signals, server), asio::detached);
  asio::co_spawn(ctx, server.accept_loop(), [&](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log_error("accept loop: %s", ex.what());
      }
      server.stop();
    }
  });
  ctx.run();
  log_info("stopped");
  return 0;
}

} // namespace dc::worker
