#pragma once
// One node of a run: connect, authenticate, HELLO, upload the bundle, run the commands in order
// while passing their output to the Printer, BYE. Every failure becomes a NodeResult.

#include "common/channel.hpp"
#include "common/messages.hpp"
#include "master/node_result.hpp"
#include "master/printer.hpp"
#include "master/run_plan.hpp"

#include <memory>

namespace dc::master {

class NodeSession {
public:
  NodeSession(const RunPlan& plan, const Peer& peer, Printer& printer);
  ~NodeSession();
  NodeSession(const NodeSession&) = delete;
  NodeSession& operator=(const NodeSession&) = delete;

  // Runs the node to its end. Never throws.
  awaitable<NodeResult> run();
  // Ctrl-C: remote commands get CANCEL (SIGTERM, then SIGKILL on the worker); a node still
  // connecting or uploading is abandoned.
  void cancel();
  // A second Ctrl-C: close the connection now.
  void abort();

private:
  enum class Phase { connecting, uploading, running, closing };
  struct Pinger;

  awaitable<void> connect();
  awaitable<void> upload();
  awaitable<bool> run_command(std::uint32_t id, const std::string& command); // false: stop
  awaitable<void> say_bye();
  // Next record that is not a PING/PONG; output records go to the Printer. Throws on EOF, a
  // fatal ERROR and protocol violations.
  awaitable<Record> next();
  RunBody make_run(std::uint32_t id, const std::string& command) const;
  void arm(Clock::duration limit); // (re)starts the connection's deadline

  const RunPlan& m_plan;
  const Peer& m_peer;
  Printer& m_printer;
  std::shared_ptr<Channel> m_channel;
  std::unique_ptr<Deadline> m_deadline;
  Clock::duration m_limit{}; // what m_deadline currently allows
  std::shared_ptr<Pinger> m_pinger;
  Phase m_phase = Phase::connecting;
  bool m_cancelled = false;
  std::optional<std::uint32_t> m_running_id;
  NodeResult m_result;
};

} // namespace dc::master
