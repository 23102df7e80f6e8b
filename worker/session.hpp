#pragma once
// One authenticated master connection: HELLO/WELCOME, at most one bundle into a fresh job dir,
// RUNs streamed back as STDOUT/STDERR/EXIT, and an end that always kills the job's processes and
// removes its directory (PROTOCOL.md §4-5).

#include "common/bundle_writer.hpp"
#include "common/channel.hpp"
#include "common/messages.hpp"
#include "worker/blob_cache.hpp"
#include "worker/client_files.hpp"
#include "worker/log_limiter.hpp"
#include "worker/options.hpp"
#include "worker/workdir.hpp"

#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace dc::worker {

class Session;
class MsgEndpoint;

// What all sessions of one worker share. Owned by the server; single-threaded.
struct WorkerState {
  const Options& options;
  Workdir& workdir;
  Json facts;                  // static facts for WELCOME
  std::set<Session*> sessions; // authenticated sessions
  std::size_t running_processes = 0;
  bool stopping = false;
  LogLimiter preauth_log; // what unauthenticated peers can make us log
  // When the worker started, for STATUS_REPLY's uptime.
  Clock::time_point started = Clock::now();
  // The messaging clients, put on every job's CPATH, PYTHONPATH and PATH.
  ClientFiles client_files = find_client_files();
  BlobCache* cache = nullptr; // the content cache; null with --no-cache
};

class Session {
public:
  // `on_authenticated` runs once HELLO decrypted and was accepted (ends the pre-auth limits).
  Session(Channel& channel, WorkerState& state, std::string peer,
          std::function<void()> on_authenticated);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves the session from the HELLO on (the handshake is done). Never throws: every ending is
  // logged; when it returns the job's processes are gone and its directory is being removed.
  awaitable<void> run();
  // Worker shutdown: cancel the commands, tell the master, end the session.
  void stop();

private:
  struct Command;
  struct Fetch;
  enum class BundleStage { none, manifest, blobs, done };

  awaitable<void> serve();
  // Next record; a grammar violation is answered with ERROR(protocol) before it throws.
  awaitable<std::optional<Record>> receive();
  awaitable<bool> handle(Record& record); // false: session over (BYE)
  awaitable<void> on_hello(const Record& record);
  awaitable<void> on_bundle_record(const Record& record);
  awaitable<void> on_run(const Record& record);
  // Feature "fetch": FETCH (select the results, send FETCH_REPLY and the manifest), WANT (send
  // the wanted blobs) and BUNDLE_OK (done) of the results bundle going back to the master.
  awaitable<void> on_fetch_record(const Record& record);
  void on_cancel(const Record& record);
  awaitable<void> on_status(const Record& record);
  // Feature "msg": MSG_DATA, MSG_END, MSG_BARRIER, MSG_ACTIVE and WINDOW(stream "msg") for the
  // endpoint.
  awaitable<void> on_msg_record(const Record& record);
  // Opens the job's message endpoint at its first RUN with `msg`; false when refused (answered).
  awaitable<bool> open_msg_endpoint(const RunBody& run);
  awaitable<void> run_command(std::shared_ptr<Command> cmd, RunBody run);
  awaitable<void> pump(std::shared_ptr<Command> cmd, bool is_stderr);
  awaitable<void> on_stdin(const Record& record);
  awaitable<void> feed_stdin(std::shared_ptr<Command> cmd);
  void terminate(const std::shared_ptr<Command>& cmd, const std::string& reason);
  awaitable<void> finish(const std::string& why);
  awaitable<void> kill_leftovers();
  awaitable<void> watch_sends(); // closes the session when the master stops reading
  awaitable<void> send_error(std::string code, std::string msg, bool fatal,
                             std::optional<long long> ref = std::nullopt);
  std::vector<std::string> job_environment(const RunBody& run) const;
  // Job dir reuse (common/reusable_tree.hpp): at BUNDLE_BEGIN the parked dir of an earlier job
  // takes the place of the fresh one; after the job, this one is parked in turn.
  void adopt_parked_dir();
  void take_snapshot(); // hands the snapshot, once taken, to the bundle writer
  void wait_snapshot(); // lets the snapshot thread finish
  void drop_trash();
  std::optional<Workdir::Parked> parkable();

  Channel& m_channel;
  WorkerState& m_state;
  std::string m_peer;
  std::function<void()> m_on_authenticated;
  std::string m_label; // peer address, session id, master's name for us
  bool m_authenticated = false;
  bool m_keep = false;
  std::string m_job_dir;
  int m_job_fd = -1;
  BundleStage m_bundle_stage = BundleStage::none;
  std::unique_ptr<BundleWriter> m_bundle;
  bool m_adopt_tried = false;             // one parked dir per session at most
  std::optional<ReusableTree> m_previous; // the adopted dir's files, until the manifest is in
  // The adopted dir's stats, taken on a thread of their own from HELLO on (see on_hello).
  std::future<std::optional<TreeSnapshot>> m_snapshot;
  std::shared_ptr<std::atomic<bool>> m_snapshot_stop; // set: the snapshot ends with what it has
  std::string m_trash; // where the writer moves what it does not keep
  int m_trash_fd = -1;
  // The adopted dir's watch, from MANIFEST_END until this job's tree takes it over at the seal.
  std::shared_ptr<TreeWatch> m_watch;
  std::optional<ReusableTree> m_written; // this job's bundle as written, to park afterwards
  Clock::time_point m_bundle_started;
  std::map<std::uint32_t, std::shared_ptr<Command>> m_commands;
  std::size_t m_runs = 0;
  std::size_t m_active = 0; // run_command coroutines not yet finished
  Event m_active_changed;
  asio::steady_timer m_watch_timer;
  bool m_watch_stop = false;
  std::vector<pid_t> m_groups; // process groups of every command of this job
  std::string m_job_marker;    // "DISTCOMP_JOB_ID=…" in every process of the job
  std::string m_stop_reason;
  bool m_bye_received = false;
  std::shared_ptr<MsgEndpoint> m_msg; // the job's messaging endpoint, once a RUN asked for it
  std::unique_ptr<Fetch> m_fetch;     // the results bundle being sent (--fetch)
  bool m_fetched = false;             // one FETCH per session
  Deadline* m_idle = nullptr;         // serve()'s idle deadline, extended while results go out
};

} // namespace dc::worker
