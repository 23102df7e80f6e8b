#pragma once
// One node of a run: connect, authenticate, HELLO, upload the bundle, run the commands in order
// while passing their output to the OutputView, BYE. Every failure becomes a NodeResult.

#include "common/channel.hpp"
#include "common/messages.hpp"
#include "master/msg_router.hpp"
#include "master/node_result.hpp"
#include "master/output_view.hpp"
#include "master/run_plan.hpp"

#include <functional>
#include <memory>

namespace dc::master {

class NodeSession {
public:
  NodeSession(const RunPlan& plan, const Peer& peer, OutputView& view, MsgRouter& router);
  ~NodeSession();
  NodeSession(const NodeSession&) = delete;
  NodeSession& operator=(const NodeSession&) = delete;

  // Runs the node to its end. Never throws. `uploaded` is called once, as soon as the node no
  // longer needs a --fanout slot: its upload is done (or it failed before that).
  awaitable<NodeResult> run(std::function<void()> uploaded = {});
  // Ctrl-C: remote commands get CANCEL (SIGTERM, then SIGKILL on the worker); a node still
  // connecting or uploading is abandoned.
  void cancel();
  // A second Ctrl-C: close the connection now.
  void abort();

private:
  enum class Phase { connecting, uploading, running, fetching, closing };
  struct Pinger;

  // Returns once the --send scan is done (at once without --send).
  awaitable<void> wait_for_scan();
  awaitable<void> connect();
  awaitable<void> upload();
  awaitable<bool> run_command(std::uint32_t id, const std::string& command); // false: stop
  // --fetch: FETCH, then the results bundle into the results dir (results_dir.hpp).
  awaitable<void> fetch();
  awaitable<void> say_bye();
  // Next record that is not a PING/PONG; output records go to the OutputView. Throws on EOF, a
  // fatal ERROR and protocol violations.
  awaitable<Record> next();
  // Hands the body of every `data` record to `feed` until an empty `end` record (--fetch's
  // MANIFEST…MANIFEST_END, BLOB_DATA…BUNDLE_END); anything else is a ProtocolError.
  awaitable<void> receive_stream(RecordType data, RecordType end,
                                 const std::function<void(ByteView)>& feed);
  RunBody make_run(std::uint32_t id, const std::string& command) const;
  // --stdin: sends as much of the run's stdin as the worker's credit allows, then STDIN_EOF.
  void send_stdin();
  void arm(Clock::duration limit); // (re)starts the connection's deadline
  void upload_ended();             // tells the progress bar, once

  const RunPlan& m_plan;
  const Peer& m_peer;
  OutputView& m_view;
  MsgRouter& m_router;
  std::shared_ptr<Channel> m_channel;
  std::unique_ptr<Deadline> m_deadline;
  Clock::duration m_limit{}; // what m_deadline currently allows
  std::shared_ptr<Pinger> m_pinger;
  Phase m_phase = Phase::connecting;
  bool m_cancelled = false;
  std::optional<std::uint32_t> m_running_id;
  bool m_worker_has_stdin = false;  // WELCOME announced the "stdin" feature
  std::size_t m_stdin_sent = 0;     // bytes of the plan's stdin sent for the running command
  std::uint64_t m_stdin_credit = 0; // bytes the worker still accepts (WINDOW)
  bool m_stdin_eof_sent = false;
  bool m_worker_has_msg = false;   // WELCOME announced the "msg" feature
  bool m_worker_has_fetch = false; // WELCOME announced the "fetch" feature
  bool m_msg_open = false;         // the router routes this node's messages
  bool m_upload_reported = false;  // to the progress bar
  NodeResult m_result;
};

} // namespace dc::master
