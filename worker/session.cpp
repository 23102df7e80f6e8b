#include "worker/session.hpp"

#include "common/fetch_pattern.hpp"
#include "common/log.hpp"
#include "common/signals_blocked.hpp"
#include "common/tree_watch.hpp"
#include "common/unique_fd.hpp"
#include "worker/host_facts.hpp"
#include "worker/msg_endpoint.hpp"
#include "worker/process.hpp"
#include "worker/result_selection.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace dc::worker {

struct Session::Command {
  explicit Command(const asio::any_io_executor& ex)
      : kill_timer(ex), timeout_timer(ex), drain_timer(ex), pumps_changed(ex), stdin_changed(ex)
  {
  }
  std::uint32_t id = 0;
  std::unique_ptr<ChildProcess> child;
  std::string cancel_reason; // why we signalled it, if we did
  asio::steady_timer kill_timer;
  asio::steady_timer timeout_timer;
  asio::steady_timer drain_timer;
  Event pumps_changed;
  int pumps_running = 0;
  bool finished = false;
  // --stdin: bytes received and not yet written to the child, at most k_stdin_window (the
  // master sends only within the credit we grant in WINDOW records).
  bool wants_stdin = false;
  std::deque<Bytes> stdin_queue;
  std::uint64_t stdin_credit = 0; // granted and not yet used by the master
  bool stdin_eof = false;         // STDIN_EOF received
  bool stdin_done = false;        // the shell exited: stop writing
  Event stdin_changed;
};

struct Session::Fetch {
  enum class Stage { want, ok };
  ResultSelection selection;
  std::unique_ptr<BlobCompressor> blobs;
  Stage stage = Stage::want;
  Clock::time_point started = Clock::now();
};

namespace {

// Compressed result blobs a session keeps in memory before it spools them to a temporary file.
constexpr std::uint64_t k_fetch_blob_memory = std::uint64_t{8} << 20;

// Stdin bytes one command may have in flight (queued here or in the master's send): enough to
// keep a pipe busy over a LAN, small enough that 1000 jobs cost 256 MiB at worst.
constexpr std::uint64_t k_stdin_window = 256 << 10;

// A job dir of more files is not parked for reuse: its records would cost the worker over
// ~15 MB of memory while it waits (and a fresh dir is written at the same speed anyway).
constexpr std::size_t k_max_reused_files = 100'000;

std::uint64_t elapsed_ms(Clock::time_point since)
{
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count());
}

bool valid_env_name(const std::string& name)
{
  if (name.empty() || name.size() > 256 || (name[0] >= '0' && name[0] <= '9')) {
    return false;
  }
  for (char c : name) {
    if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      return false;
    }
  }
  return true;
}

} // namespace

Session::Session(Channel& channel, WorkerState& state, std::string peer,
                 std::function<void()> on_authenticated)
    : m_channel(channel), m_state(state), m_peer(std::move(peer)),
      m_on_authenticated(std::move(on_authenticated)),
      m_active_changed(channel.socket().get_executor()),
      m_watch_timer(channel.socket().get_executor())
{
  m_label = m_peer + " session " + channel.session_id();
}

Session::~Session()
{
  m_state.sessions.erase(this);
  if (m_job_fd >= 0) {
    close(m_job_fd);
  }
}

void Session::stop()
{
  if (m_stop_reason.empty()) {
    m_stop_reason = "worker shutting down";
  }
  // Wakes the receive loop with an EOF but leaves the sending side open, so the master still
  // hears the EXITs, the ERROR(shutdown) and the BYE.
  std::error_code ignored;
  m_channel.socket().shutdown(tcp::socket::shutdown_receive, ignored);
}

awaitable<void> Session::run()
{
  std::string why;
  try {
    co_await serve();
    why = m_bye_received ? "" : "ended";
  } catch (const ProtocolError& e) {
    why = std::string("protocol error: ") + e.what();
  } catch (const std::system_error& e) {
    why = e.code() == asio::error::timed_out ? "idle timeout" : "connection: " + e.code().message();
  } catch (const std::exception& e) {
    why = std::string("internal error: ") + e.what();
  }
  if (!m_stop_reason.empty()) {
    why = m_stop_reason;
  }
  if (!m_authenticated && !why.empty() && m_state.preauth_log.allow()) {
    // Before HELLO decrypted: a replayed or tampered session, logged once, rate-limited.
    log_warn("%s: %s", m_peer.c_str(), why == "ended" ? "closed before HELLO" : why.c_str());
  }
  co_await finish(why);
}

awaitable<void> Session::serve()
{
  // Until HELLO decrypts, the pre-authentication deadline of the server still runs.
  std::optional<Record> first = co_await receive();
  if (!first) {
    throw std::system_error(asio::error::eof);
  }
  if (first->type != RecordType::hello) {
    co_await send_error("protocol", std::string("expected HELLO, got ") + to_string(first->type),
                        true);
    throw ProtocolError("first record was not HELLO");
  }
  co_await on_hello(*first);
  if (!m_authenticated) {
    co_return;
  }
  Deadline idle(m_channel.socket(), m_state.options.limits.idle_timeout);
  m_idle = &idle;
  ++m_active; // finish() waits for the watchdog like for the commands
  asio::co_spawn(m_channel.socket().get_executor(), watch_sends(), [this](std::exception_ptr) {
    --m_active;
    m_active_changed.notify();
  });
  while (m_stop_reason.empty()) {
    std::optional<Record> record = co_await receive();
    if (!record) {
      if (idle.expired()) {
        throw std::system_error(asio::error::timed_out);
      }
      co_return; // EOF without BYE: finish() kills the job
    }
    idle.extend(m_state.options.limits.idle_timeout);
    if (!co_await handle(*record)) {
      co_return;
    }
  }
}

awaitable<std::optional<Record>> Session::receive()
{
  std::string violation;
  try {
    co_return co_await m_channel.receive();
  } catch (const AuthenticationError&) {
    throw; // the reply could not be trusted anyway: close without a word
  } catch (const ProtocolError& e) {
    violation = e.what();
  }
  // A record that decrypted but breaks the grammar (unknown type): say so, then close.
  co_await send_error("protocol", violation, true);
  throw ProtocolError(violation);
}

awaitable<void> Session::on_hello(const Record& record)
{
  const Hello hello = hello_from(parse_body(record.body));
  m_authenticated = true;
  m_on_authenticated();
  if (!hello.name.empty()) {
    m_label += " (" + escape_for_log(hello.name) + ")";
  }
  if (m_state.stopping) {
    co_await send_error("shutdown", "worker is shutting down", true);
    m_authenticated = false;
    co_return;
  }
  if (m_state.sessions.size() >= m_state.options.limits.max_sessions) {
    log_warn("%s: refused, %zu sessions already", m_label.c_str(), m_state.sessions.size());
    co_await send_error("busy",
                        "worker busy: " + std::to_string(m_state.sessions.size()) +
                            " sessions already (limit " +
                            std::to_string(m_state.options.limits.max_sessions) + ")",
                        true);
    m_authenticated = false;
    co_return;
  }
  m_state.sessions.insert(this);
  m_keep = hello.keep;
  m_job_dir = m_state.workdir.create_job_dir(m_keep);
  m_job_fd = open(m_job_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (m_job_fd < 0) {
    throw std::system_error(errno, std::generic_category(), "open job dir");
  }
  m_job_marker = "DISTCOMP_JOB_SESSION=" + m_channel.session_id();
  log_info("%s: authenticated", m_label.c_str());
  if (hello.bundle) {
    // The master is still scanning its files: take the last job dir now and stat it on another
    // thread meanwhile, so the reconcile at MANIFEST_END need not wait for thousands of lstats.
    // The dir has this job's fresh name already; a change made to it after the snapshot is one
    // a fresh dir would not show either.
    adopt_parked_dir();
    if (m_previous && m_previous->watch == nullptr) { // a watched dir needs no stats ahead
      UniqueFd dir(fcntl(m_job_fd, F_DUPFD_CLOEXEC, 0));
      if (dir.get() >= 0) {
        m_snapshot_stop = std::make_shared<std::atomic<bool>>(false);
        const SignalsBlocked in_snapshot;
        m_snapshot = std::async(std::launch::async, [dir = std::move(dir), stop = m_snapshot_stop] {
          // Only on otherwise idle CPU: the master's scan, or other jobs, come first. Whatever it
          // has not done when the manifest is in, the reconcile does.
          const sched_param idle{};
          pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
          return snapshot_tree(dir.get(), {".tmp"}, 2 * k_max_reused_files, stop.get());
        });
      }
    }
  }

  Welcome welcome;
  welcome.worker = m_state.facts.value("hostname", "");
  welcome.version = DC_VERSION;
  welcome.session = m_channel.session_id();
  welcome.features = {"bundle", "cancel", "ping", "stdin", "status", "msg", "fetch"};
  if (m_state.cache != nullptr) {
    welcome.features.push_back("cache");
  }
  welcome.facts = m_state.facts;
  const Limits& l = m_state.options.limits;
  welcome.limits = {{"max_runs", l.max_runs_per_session},
                    {"max_bundle_bytes", l.bundle.max_bytes},
                    {"max_bundle_entries", l.bundle.max_entries},
                    {"idle_timeout_s", std::chrono::duration<double>(l.idle_timeout).count()}};
  if (m_keep) {
    welcome.job_dir = m_job_dir; // the master prints it at the end
  }
  const std::string body = dump_body(to_json(welcome));
  co_await m_channel.send(RecordType::welcome, body);
}

awaitable<bool> Session::handle(Record& record)
{
  switch (record.type) {
  case RecordType::bundle_begin:
  case RecordType::manifest:
  case RecordType::manifest_end:
  case RecordType::blob_data:
  case RecordType::bundle_end:
    co_await on_bundle_record(record);
    co_return true;
  case RecordType::run:
    co_await on_run(record);
    co_return true;
  case RecordType::fetch:
  case RecordType::want:
  case RecordType::bundle_ok:
    co_await on_fetch_record(record);
    co_return true;
  case RecordType::cancel:
    on_cancel(record);
    co_return true;
  case RecordType::stdin_data:
  case RecordType::stdin_eof:
    co_await on_stdin(record);
    co_return true;
  case RecordType::status:
    co_await on_status(record);
    co_return true;
  case RecordType::msg_data:
  case RecordType::msg_end:
  case RecordType::msg_barrier:
  case RecordType::msg_active:
  case RecordType::window:
    co_await on_msg_record(record);
    co_return true;
  case RecordType::ping:
    co_await m_channel.send(RecordType::pong, record.body);
    co_return true;
  case RecordType::pong:
    co_return true;
  case RecordType::error: {
    const ErrorBody e = error_from(parse_body(record.body));
    log_warn("%s: master reports %s: %s", m_label.c_str(), escape_for_log(e.code).c_str(),
             escape_for_log(e.msg).c_str());
    if (e.fatal) {
      m_stop_reason = "master reported a fatal error";
      co_return false;
    }
    co_return true;
  }
  case RecordType::bye:
    m_bye_received = true;
    co_return false;
  default:
    co_await send_error("protocol", std::string("unexpected ") + to_string(record.type), true);
    throw ProtocolError(std::string("unexpected ") + to_string(record.type));
  }
}

awaitable<void> Session::on_bundle_record(const Record& record)
{
  const auto wrong_state = [&]() -> ProtocolError {
    return ProtocolError(std::string(to_string(record.type)) + " out of order");
  };
  std::optional<ErrorBody> refusal; // co_await is not allowed inside a catch handler
  try {
    switch (record.type) {
    case RecordType::bundle_begin: {
      if (m_bundle_stage != BundleStage::none || m_runs > 0) {
        throw wrong_state();
      }
      const BundleBeginBody b = bundle_begin_from(parse_body(record.body));
      adopt_parked_dir();
      BundleLimits limits = m_state.options.limits.bundle;
      limits.max_bytes =
          cap_to_free_space(m_job_fd, limits.max_bytes, m_state.options.limits.disk_reserve);
      m_bundle = std::make_unique<BundleWriter>(
          m_job_fd, BundleBegin{b.entries, b.files, b.bytes, b.manifest_zbytes}, limits,
          m_state.cache);
      if (m_previous) {
        m_bundle->reuse_tree(*m_previous, m_trash_fd, {".tmp"});
      }
      m_bundle_stage = BundleStage::manifest;
      m_bundle_started = Clock::now();
      break;
    }
    case RecordType::manifest:
      if (m_bundle_stage != BundleStage::manifest) {
        throw wrong_state();
      }
      m_bundle->feed_manifest(record.body);
      break;
    case RecordType::manifest_end: {
      if (m_bundle_stage != BundleStage::manifest || !record.body.empty()) {
        throw wrong_state();
      }
      take_snapshot();
      const Bytes want = m_bundle->end_manifest();
      m_previous.reset();
      drop_trash();
      m_bundle_stage = BundleStage::blobs;
      co_await m_channel.send(RecordType::want, want);
      break;
    }
    case RecordType::blob_data:
      if (m_bundle_stage != BundleStage::blobs) {
        throw wrong_state();
      }
      m_bundle->feed_blobs(record.body);
      break;
    case RecordType::bundle_end: {
      if (m_bundle_stage != BundleStage::blobs || !record.body.empty()) {
        throw wrong_state();
      }
      const BundleStats stats = m_bundle->finish();
      const std::shared_ptr<TreeWatch> watch = std::move(m_watch); // kept on by the next tree
      if (m_state.cache != nullptr && !m_keep && stats.files <= k_max_reused_files) {
        try {
          m_written = m_bundle->written_tree(seal_tree(m_job_fd));
          m_written->watch = TreeWatch::start(m_job_fd, m_job_dir, *m_written, watch, {".tmp"});
          if (m_written->watch == nullptr) {
            log_debug("%s: job dir not watched; a reuse will stat it", m_label.c_str());
          }
        } catch (const std::system_error& e) {
          log_warn("%s: job dir will not be reused: %s", m_label.c_str(), e.what());
        }
      }
      m_bundle.reset();
      m_bundle_stage = BundleStage::done;
      const BundleOkBody ok{stats.files, stats.bytes, stats.from_cache,
                            elapsed_ms(m_bundle_started)};
      log_debug("%s: bundle of %llu files, %llu bytes written, %llu files from the cache, "
                "%llu of them kept in place",
                m_label.c_str(), static_cast<unsigned long long>(stats.files),
                static_cast<unsigned long long>(stats.bytes),
                static_cast<unsigned long long>(stats.from_cache),
                static_cast<unsigned long long>(stats.kept));
      const std::string body = dump_body(to_json(ok));
      co_await m_channel.send(RecordType::bundle_ok, body);
      break;
    }
    default:
      throw wrong_state();
    }
  } catch (const BundleError& e) {
    // The whole bundle is refused; finish() removes the job dir with whatever was written.
    log_warn("%s: bundle rejected: %s: %s", m_label.c_str(), e.code().c_str(), e.what());
    refusal = ErrorBody{e.code(), e.what(), std::nullopt, true};
    if (e.ref() >= 0) {
      refusal->ref = e.ref();
    }
  } catch (const ProtocolError& e) {
    refusal = ErrorBody{"protocol", e.what(), std::nullopt, true};
  } catch (const std::system_error& e) {
    // Worker-side I/O trouble (EACCES, EMFILE, EIO): the bundle cannot be written here.
    log_warn("%s: bundle: %s", m_label.c_str(), e.what());
    refusal = ErrorBody{"io_error", std::string("cannot write the bundle: ") + e.code().message(),
                        std::nullopt, true};
  }
  if (refusal) {
    m_bundle.reset();
    wait_snapshot();
    m_previous.reset();
    drop_trash();
    co_await send_error(refusal->code, refusal->msg, true, refusal->ref);
    throw ProtocolError("bundle refused: " + refusal->msg);
  }
}

std::vector<std::string> Session::job_environment(const RunBody& run) const
{
  // A scrubbed base: nothing of the worker's own environment leaks into jobs but these.
  std::map<std::string, std::string> env;
  for (const char* name : {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ"}) {
    if (const char* v = std::getenv(name)) {
      env[name] = v;
    }
  }
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    if (kv.rfind("LC_", 0) == 0) {
      const auto eq = kv.find('=');
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  if (env.count("PATH") == 0) {
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
  }
  env["TMPDIR"] = m_job_dir + "/.tmp";
  env["DISTCOMP_JOB_DIR"] = m_job_dir;
  for (const auto& [k, v] : run.env) {
    env[k] = v;
  }
  if (m_msg) {
    // The endpoint and the three clients, with no install step on the node.
    env["DISTCOMP_MSG_SOCKET"] = m_msg->socket_address();
    const ClientFiles& files = m_state.client_files;
    const auto prepend = [&env](const std::string& name, const std::string& dir) {
      if (!dir.empty()) {
        const auto it = env.find(name);
        env[name] = it == env.end() || it->second.empty() ? dir : dir + ":" + it->second;
      }
    };
    prepend("CPATH", files.include_dir);
    prepend("PYTHONPATH", files.python_dir);
    prepend("PATH", files.bin_dir);
  }
  // Marks every process of this job, so ones that escape their group can still be found.
  env[m_job_marker.substr(0, m_job_marker.find('='))] = m_channel.session_id();
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) {
    out.push_back(k + "=" + v);
  }
  return out;
}

awaitable<void> Session::on_run(const Record& record)
{
  if (m_bundle_stage == BundleStage::manifest || m_bundle_stage == BundleStage::blobs) {
    co_await send_error("protocol", "RUN during a bundle", true);
    throw ProtocolError("RUN during a bundle");
  }
  if (m_previous) { // adopted at HELLO: the last job's files are there until a bundle reconciles
    co_await send_error("protocol", "RUN before the bundle HELLO announced", true);
    throw ProtocolError("RUN before the bundle HELLO announced");
  }
  RunBody run;
  std::string bad_request;
  try {
    run = run_from(parse_body(record.body));
  } catch (const ProtocolError& e) {
    bad_request = std::string("RUN: ") + e.what();
  }
  if (!bad_request.empty()) {
    co_await send_error("bad_request", bad_request, false);
    co_return;
  }
  for (const auto& [k, v] : run.env) {
    if (!valid_env_name(k) || v.find('\0') != std::string::npos) {
      co_await send_error("bad_request", "RUN: bad environment variable name " + escape_for_log(k),
                          false, run.id);
      co_return;
    }
  }
  if (run.sh.find('\0') != std::string::npos) {
    co_await send_error("bad_request", "RUN: command contains a NUL byte", false, run.id);
    co_return;
  }
  if (m_commands.count(run.id) != 0) {
    co_await send_error("bad_request", "RUN: id " + std::to_string(run.id) + " already used", false,
                        run.id);
    co_return;
  }
  if (m_runs >= m_state.options.limits.max_runs_per_session) {
    co_await send_error("too_many_runs",
                        "RUN: limit of " +
                            std::to_string(m_state.options.limits.max_runs_per_session) +
                            " commands per session reached",
                        false, run.id);
    co_return;
  }
  if (m_state.running_processes >= m_state.options.limits.max_processes) {
    co_await send_error("busy",
                        "RUN: worker already runs " + std::to_string(m_state.running_processes) +
                            " commands",
                        false, run.id);
    co_return;
  }
  if (run.msg && !co_await open_msg_endpoint(run)) {
    co_return;
  }
  ++m_runs;
  auto cmd = std::make_shared<Command>(m_channel.socket().get_executor());
  cmd->id = run.id;
  cmd->wants_stdin = run.stdin;
  m_commands[run.id] = cmd;
  ++m_active;
  ++m_state.running_processes;
  asio::co_spawn(m_channel.socket().get_executor(), run_command(cmd, std::move(run)),
                 [this](std::exception_ptr e) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       log_warn("%s: command: %s", m_label.c_str(), ex.what());
                     }
                   }
                   --m_active;
                   --m_state.running_processes;
                   m_active_changed.notify();
                 });
}

awaitable<void> Session::on_fetch_record(const Record& record)
{
  const auto refuse = [&](const std::string& why) -> ProtocolError {
    return ProtocolError(std::string(to_string(record.type)) + ": " + why);
  };
  std::optional<ErrorBody> refusal; // co_await is not allowed inside a catch handler
  try {
    if (record.type == RecordType::fetch) {
      const bool running = std::any_of(m_commands.begin(), m_commands.end(),
                                       [](const auto& c) { return !c.second->finished; });
      if (m_fetched || m_fetch || running || m_bundle_stage == BundleStage::manifest ||
          m_bundle_stage == BundleStage::blobs || m_previous) {
        throw refuse("out of order");
      }
      m_fetched = true;
      const FetchBody request = fetch_from(parse_body(record.body));
      if (request.paths.size() > k_max_fetch_patterns) {
        throw refuse("too many paths");
      }
      if (!m_groups.empty()) {
        // Results must hold still while they are read: the job's leftovers go first.
        co_await kill_leftovers();
      }
      auto fetch = std::make_unique<Fetch>();
      fetch->selection =
          select_results(m_job_dir, request.paths, {".tmp"}, m_state.options.limits.bundle);
      fetch->blobs =
          std::make_unique<BlobCompressor>(fetch->selection.source, 3, k_fetch_blob_memory);
      const ResultSelection& sel = fetch->selection;
      const FetchReplyBody reply{sel.missing, sel.skipped, sel.skipped_examples};
      const std::string reply_body = dump_body(to_json(reply));
      co_await m_channel.send(RecordType::fetch_reply, reply_body);
      const Manifest& manifest = sel.source.manifest;
      const BundleBeginBody begin{manifest.entries.size(), manifest.file_count(),
                                  manifest.total_bytes(), sel.source.compressed_manifest.size()};
      const std::string begin_body = dump_body(to_json(begin));
      co_await m_channel.send(RecordType::bundle_begin, begin_body);
      for (const ByteView slice : split_slices(sel.source.compressed_manifest)) {
        co_await m_channel.send(RecordType::manifest, slice);
      }
      co_await m_channel.send(RecordType::manifest_end, ByteView{});
      m_fetch = std::move(fetch);
    } else if (record.type == RecordType::want) {
      if (!m_fetch || m_fetch->stage != Fetch::Stage::want) {
        throw refuse("out of order");
      }
      const std::size_t files = m_fetch->selection.source.manifest.file_count();
      if (record.body.size() != (files + 7) / 8) {
        throw refuse("bitmap of the wrong length");
      }
      m_fetch->stage = Fetch::Stage::ok;
      Bytes scratch;
      for (std::size_t i = 0; i < files; ++i) {
        if ((record.body[i / 8] >> (i % 8) & 1) == 0) {
          continue;
        }
        const BlobRef blob = m_fetch->blobs->frame(i);
        for (std::uint64_t at = 0; at < blob.size; at += k_max_body_size) {
          const ByteView slice = m_fetch->blobs->read(blob, at, k_max_body_size, scratch);
          co_await m_channel.send(RecordType::blob_data, slice);
          m_idle->extend(m_state.options.limits.idle_timeout); // the master is reading
        }
      }
      co_await m_channel.send(RecordType::bundle_end, ByteView{});
    } else { // BUNDLE_OK
      if (!m_fetch || m_fetch->stage != Fetch::Stage::ok) {
        throw refuse("out of order");
      }
      const BundleOkBody ok = bundle_ok_from(parse_body(record.body));
      log_debug("%s: results sent: %llu files, %llu bytes, %llu unchanged, in %llu ms",
                m_label.c_str(), static_cast<unsigned long long>(ok.files),
                static_cast<unsigned long long>(ok.bytes),
                static_cast<unsigned long long>(ok.from_cache),
                static_cast<unsigned long long>(elapsed_ms(m_fetch->started)));
      m_fetch.reset();
    }
  } catch (const ConfigError& e) { // a bad pattern
    refusal = ErrorBody{"bad_request", e.what(), std::nullopt, true};
  } catch (const BundleError& e) {
    log_warn("%s: results not sent: %s", m_label.c_str(), e.what());
    refusal = ErrorBody{e.code(), e.what(), std::nullopt, true};
  } catch (const ProtocolError& e) {
    refusal = ErrorBody{"protocol", e.what(), std::nullopt, true};
  } catch (const std::system_error& e) {
    if (e.code() == asio::error::operation_aborted || e.code() == asio::error::eof ||
        e.code() == asio::error::broken_pipe || e.code() == asio::error::connection_reset) {
      throw; // the connection is gone: the session's end cleans up
    }
    log_warn("%s: results: %s", m_label.c_str(), e.what());
    refusal = ErrorBody{"io_error", std::string("cannot read the results: ") + e.code().message(),
                        std::nullopt, true};
  }
  if (refusal) {
    m_fetch.reset();
    co_await send_error(refusal->code, refusal->msg, true);
    throw ProtocolError("fetch refused: " + refusal->msg);
  }
}

void Session::on_cancel(const Record& record)
{
  const CancelBody c = cancel_from(parse_body(record.body));
  for (auto& [id, cmd] : m_commands) {
    if (!c.id || *c.id == id) {
      terminate(cmd, "cancelled");
    }
  }
}

awaitable<void> Session::on_status(const Record& record)
{
  // Any time after WELCOME, even during a bundle or while commands run (PROTOCOL.md §5).
  bool bad_request = false;
  try {
    parse_body(record.body); // {} today; fields added later are ignored
  } catch (const ProtocolError&) {
    bad_request = true;
  }
  if (bad_request) {
    co_await send_error("bad_request", "STATUS: body is not a JSON object", false);
    co_return;
  }
  const HostLoad host = read_host_load();
  StatusReplyBody reply;
  reply.uptime_s = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - m_state.started).count());
  reply.load = host.load;
  reply.mem_available_bytes = host.mem_available_bytes;
  reply.running_jobs = static_cast<std::uint32_t>(m_state.running_processes);
  reply.sessions = static_cast<std::uint32_t>(m_state.sessions.size() - 1);
  const std::string body = dump_body(to_json(reply));
  co_await m_channel.send(RecordType::status_reply, body);
}

awaitable<bool> Session::open_msg_endpoint(const RunBody& run)
{
  if (m_msg) {
    if (m_msg->rank() != run.msg->rank || m_msg->size() != run.msg->size) {
      co_await send_error("bad_request", "RUN: msg rank and size differ from the job's", false,
                          run.id);
      co_return false;
    }
    co_return true;
  }
  std::string failure;
  try {
    m_msg = std::make_shared<MsgEndpoint>(m_channel, run.msg->rank, run.msg->size, m_label);
    m_msg->start();
  } catch (const std::system_error& e) {
    m_msg.reset();
    failure = e.what();
  }
  if (!failure.empty()) {
    log_warn("%s: cannot open the message socket: %s", m_label.c_str(), failure.c_str());
    co_await send_error("io_error", "cannot open the message socket: " + failure, false, run.id);
    co_return false;
  }
  co_return true;
}

awaitable<void> Session::on_msg_record(const Record& record)
{
  std::string violation;
  if (!m_msg && !(record.type == RecordType::window)) {
    violation = std::string(to_string(record.type)) + " before any RUN with msg";
  } else {
    try {
      switch (record.type) {
      case RecordType::msg_data:
        m_msg->on_data(record.body);
        break;
      case RecordType::msg_end:
        m_msg->on_end(record.body);
        break;
      case RecordType::msg_barrier:
        m_msg->on_barrier(record.body);
        break;
      case RecordType::msg_active:
        m_msg->on_active(record.body);
        break;
      default: {
        const WindowBody w = window_from(parse_body(record.body));
        if (w.stream != "msg" || !m_msg) {
          violation = "WINDOW from the master is only for stream \"msg\" of a messaging job";
        } else {
          m_msg->on_window(w);
        }
      }
      }
    } catch (const ProtocolError& e) {
      violation = e.what();
    }
  }
  if (!violation.empty()) {
    co_await send_error("protocol", violation, true);
    throw ProtocolError(violation);
  }
}

void Session::terminate(const std::shared_ptr<Command>& cmd, const std::string& reason)
{
  if (cmd->finished || !cmd->child || cmd->child->exited()) {
    return;
  }
  if (cmd->cancel_reason.empty()) {
    cmd->cancel_reason = reason;
  }
  cmd->child->signal_group(SIGTERM);
  cmd->kill_timer.expires_after(m_state.options.limits.kill_grace);
  cmd->kill_timer.async_wait([cmd](std::error_code ec) {
    if (!ec && cmd->child && !cmd->child->exited()) {
      cmd->child->signal_group(SIGKILL);
    }
  });
}

awaitable<void> Session::pump(std::shared_ptr<Command> cmd, bool is_stderr)
{
  asio::readable_pipe& pipe = is_stderr ? cmd->child->err() : cmd->child->out();
  const RecordType type = is_stderr ? RecordType::stderr_data : RecordType::stdout_data;
  // One record's worth per read: the u32 id takes the first 4 bytes of the body.
  Bytes body(k_max_body_size);
  body[0] = static_cast<std::uint8_t>(cmd->id >> 24);
  body[1] = static_cast<std::uint8_t>(cmd->id >> 16);
  body[2] = static_cast<std::uint8_t>(cmd->id >> 8);
  body[3] = static_cast<std::uint8_t>(cmd->id);
  for (;;) {
    auto [ec, n] = co_await pipe.async_read_some(asio::buffer(body.data() + 4, body.size() - 4),
                                                 as_tuple(use_awaitable));
    if (ec || n == 0) {
      break;
    }
    try {
      co_await m_channel.send(type, ByteView(body.data(), 4 + n));
    } catch (const std::exception&) {
      break; // the connection is gone; the session's end kills the job
    }
  }
  --cmd->pumps_running;
  cmd->pumps_changed.notify();
}

awaitable<void> Session::on_stdin(const Record& record)
{
  const auto [id, data] = decode_output(record.body);
  const auto it = m_commands.find(id);
  if (it == m_commands.end() || !it->second->wants_stdin) {
    // Not a command of ours that takes stdin: a protocol error, unless it is one that already
    // ended (its EXIT and our last STDIN crossed on the wire).
    if (it == m_commands.end()) {
      co_await send_error("protocol", "STDIN for an unknown command", true);
      throw ProtocolError("STDIN for an unknown command");
    }
    co_return;
  }
  Command& cmd = *it->second;
  if (record.type == RecordType::stdin_eof) {
    cmd.stdin_eof = true;
  } else if (cmd.stdin_eof || data.size() > cmd.stdin_credit) {
    co_await send_error("protocol", "STDIN beyond the granted window", true);
    throw ProtocolError("STDIN beyond the granted window");
  } else if (!data.empty() && !cmd.stdin_done) {
    cmd.stdin_credit -= data.size();
    cmd.stdin_queue.emplace_back(data.begin(), data.end());
  }
  cmd.stdin_changed.notify();
}

// Writes the STDIN records of `cmd` to its stdin pipe in order and gives the master credit back
// for what was written. Ends at STDIN_EOF (closing the pipe: the job sees EOF) or when the shell
// exits; a command that closed its stdin (EPIPE) has the rest dropped, as with a local pipe.
awaitable<void> Session::feed_stdin(std::shared_ptr<Command> cmd)
{
  asio::writable_pipe& pipe = cmd->child->in();
  bool broken = false;
  std::uint64_t written = 0; // since the last WINDOW
  for (;;) {
    while (cmd->stdin_queue.empty() && !cmd->stdin_eof && !cmd->stdin_done) {
      co_await cmd->stdin_changed.wait();
    }
    if (cmd->stdin_done || cmd->stdin_queue.empty()) {
      break;
    }
    const Bytes chunk = std::move(cmd->stdin_queue.front());
    cmd->stdin_queue.pop_front();
    if (!broken) {
      auto [ec, n] = co_await asio::async_write(pipe, asio::buffer(chunk), as_tuple(use_awaitable));
      broken = static_cast<bool>(ec);
    }
    written += chunk.size();
    // Credit goes back in quarters of the window, or at once when we have caught up.
    if (written >= k_stdin_window / 4 || cmd->stdin_queue.empty()) {
      cmd->stdin_credit += written;
      const std::string body = dump_body(to_json(WindowBody{cmd->id, "stdin", written}));
      written = 0;
      try {
        co_await m_channel.send(RecordType::window, body);
      } catch (const std::exception&) {
        break; // the connection is gone; the session's end kills the job
      }
    }
  }
  std::error_code ignored;
  pipe.close(ignored);
}

awaitable<void> Session::run_command(std::shared_ptr<Command> cmd, RunBody run)
{
  const auto started = Clock::now();
  ExitBody exit;
  exit.id = cmd->id;
  std::string spawn_error;
  try {
    cmd->child = std::make_unique<ChildProcess>(
        m_channel.socket().get_executor(),
        SpawnSpec{run.sh, m_job_dir, job_environment(run), cmd->wants_stdin});
  } catch (const std::system_error& e) {
    spawn_error = e.what();
  }
  if (!spawn_error.empty()) {
    log_warn("%s: cannot start command %u: %s", m_label.c_str(), cmd->id, spawn_error.c_str());
    const std::string msg = "distcomp: cannot start command: " + spawn_error + "\n";
    try {
      const Bytes output = encode_output(cmd->id, as_bytes(msg));
      co_await m_channel.send(RecordType::stderr_data, output);
      exit.code = 127;
      exit.reason = "spawn_failed";
      const std::string body = dump_body(to_json(exit));
      co_await m_channel.send(RecordType::exit, body);
    } catch (const std::exception&) {
    }
    cmd->finished = true;
    co_return;
  }
  m_groups.push_back(cmd->child->pid());
  if (run.timeout_s > 0) {
    cmd->timeout_timer.expires_after(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run.timeout_s)));
    cmd->timeout_timer.async_wait([this, cmd](std::error_code ec) {
      if (!ec) {
        terminate(cmd, "timeout");
      }
    });
  }
  const auto executor = m_channel.socket().get_executor();
  cmd->pumps_running = 2;
  asio::co_spawn(executor, pump(cmd, false), asio::detached);
  asio::co_spawn(executor, pump(cmd, true), asio::detached);
  if (cmd->wants_stdin) {
    cmd->stdin_credit = k_stdin_window;
    asio::co_spawn(executor, feed_stdin(cmd), asio::detached);
    const std::string window = dump_body(to_json(WindowBody{cmd->id, "stdin", k_stdin_window}));
    try {
      co_await m_channel.send(RecordType::window, window);
    } catch (const std::exception&) {
      // Connection gone: the session's end kills the job.
    }
  }

  const ExitStatus status = co_await cmd->child->wait();
  if (cmd->wants_stdin) {
    // Stop feeding a shell that is gone; a background process holding the pipe must not keep
    // a write pending forever.
    cmd->stdin_done = true;
    std::error_code ignored;
    cmd->child->in().cancel(ignored);
    cmd->stdin_changed.notify();
  }
  cmd->timeout_timer.cancel();
  cmd->kill_timer.cancel();
  // The command ends when its shell exits, not when its pipes close (`server & exit 0`): take
  // what is already in the pipes for a short grace, then stop reading.
  cmd->drain_timer.expires_after(m_state.options.limits.drain_grace);
  cmd->drain_timer.async_wait([cmd](std::error_code ec) {
    if (!ec) {
      std::error_code ignored;
      cmd->child->out().cancel(ignored);
      cmd->child->err().cancel(ignored);
    }
  });
  while (cmd->pumps_running > 0) {
    co_await cmd->pumps_changed.wait();
  }
  cmd->drain_timer.cancel();
  exit.code = status.code;
  exit.signal = status.signal;
  exit.reason = !cmd->cancel_reason.empty() ? cmd->cancel_reason
                : status.signal             ? "signaled"
                                            : "exited";
  exit.wall_ms = elapsed_ms(started);
  cmd->finished = true;
  try {
    const std::string body = dump_body(to_json(exit));
    co_await m_channel.send(RecordType::exit, body);
  } catch (const std::exception&) {
    // Connection gone: the session's end cleans up.
  }
}

awaitable<void> Session::watch_sends()
{
  const Clock::duration limit = m_state.options.limits.send_timeout;
  const Clock::duration period = std::max<Clock::duration>(limit / 4, 50ms);
  while (!m_watch_stop) {
    m_watch_timer.expires_after(period);
    co_await m_watch_timer.async_wait(as_tuple(use_awaitable));
    if (!m_watch_stop && m_channel.send_stalled_for() > limit) {
      log_warn("%s: master took no output for %.0f s; closing", m_label.c_str(),
               std::chrono::duration<double>(limit).count());
      m_channel.close(); // the receive loop ends; finish() kills the job
      break;
    }
  }
}

awaitable<void> Session::send_error(std::string code, std::string msg, bool fatal,
                                    std::optional<long long> ref)
{
  // Bodies are built in named locals before co_await: g++ 12 destroys some temporaries of a
  // co_await full-expression twice (seen as a double free of an ErrorBody here).
  const std::string body =
      dump_body(to_json(ErrorBody{std::move(code), std::move(msg), ref, fatal}));
  try {
    co_await m_channel.send(RecordType::error, body);
  } catch (const std::exception&) {
  }
}

awaitable<void> Session::kill_leftovers()
{
  // Background processes of the job (in its groups, or escaped with setsid but carrying the
  // marker) get SIGTERM, then SIGKILL after the grace period.
  const auto group_alive = [this] {
    return std::any_of(m_groups.begin(), m_groups.end(),
                       [](pid_t group) { return kill(-group, 0) == 0; });
  };
  if (!group_alive() && !have_orphans()) {
    co_return; // the usual end: nothing of the job is left (one read of /proc, not five)
  }
  const auto alive = [&group_alive] {
    reap_orphans();
    return group_alive();
  };
  for (pid_t group : m_groups) {
    kill(-group, SIGTERM);
  }
  const bool escaped = kill_orphans_with_marker(m_job_marker) > 0;
  const auto deadline = Clock::now() + m_state.options.limits.kill_grace;
  while ((escaped || alive()) && Clock::now() < deadline) {
    co_await sleep_for(20ms);
    if (!alive() && kill_orphans_with_marker(m_job_marker) == 0) {
      break;
    }
  }
  for (pid_t group : m_groups) {
    kill(-group, SIGKILL);
  }
  // Killing a parent re-parents its children to us: repeat until no marked process is left.
  for (int round = 0; round < 8 && kill_orphans_with_marker(m_job_marker) > 0; ++round) {
    co_await sleep_for(10ms);
    reap_orphans();
  }
  reap_orphans();
}

awaitable<void> Session::finish(const std::string& why)
{
  const bool clean = why.empty();
  if (!clean && m_authenticated) {
    if (why == "ended") {
      log_warn("%s: peer disconnected without BYE; killing its job", m_label.c_str());
    } else {
      log_warn("%s: %s; killing its job", m_label.c_str(), why.c_str());
    }
  }
  const std::string reason =
      clean ? "cancelled" : (m_stop_reason.empty() ? "disconnected" : "shutdown");
  m_watch_stop = true;
  m_watch_timer.cancel();
  for (auto& [id, cmd] : m_commands) {
    terminate(cmd, reason);
  }
  while (m_active > 0) {
    co_await m_active_changed.wait();
  }
  if (!m_groups.empty()) {
    co_await kill_leftovers();
  }
  if (m_msg) {
    co_await m_msg->close();
    m_msg.reset();
  }
  if (!m_stop_reason.empty() && m_authenticated) {
    co_await send_error("shutdown", m_stop_reason, true);
  }
  wait_snapshot();
  drop_trash();
  std::optional<Workdir::Parked> parked = parkable();
  if (m_job_fd >= 0) {
    close(m_job_fd);
    m_job_fd = -1;
  }
  if (!m_job_dir.empty() && m_keep) {
    log_info("%s: kept job dir %s", m_label.c_str(), m_job_dir.c_str());
  }
  if (clean || !m_stop_reason.empty()) {
    try {
      co_await m_channel.send(RecordType::bye, ByteView{});
      co_await m_channel.drain();
    } catch (const std::exception&) {
    }
  }
  m_channel.shutdown_send();
  m_channel.close();
  // Every process of the job is gone; the files go after the BYE, on the workdir's own thread.
  if (parked) {
    m_state.workdir.park(std::move(*parked));
  } else if (!m_job_dir.empty() && !m_keep) {
    m_state.workdir.remove_job_dir(m_job_dir);
  }
  if (m_authenticated) {
    log_debug("%s: closed", m_label.c_str());
  }
}

void Session::adopt_parked_dir()
{
  if (std::exchange(m_adopt_tried, true)) {
    return; // at HELLO already: another dir parked since then is the next session's
  }
  if (m_state.cache == nullptr || m_keep) {
    return; // --no-cache: every bundle is written whole; --keep: a dir of its own
  }
  std::optional<Workdir::Parked> parked = m_state.workdir.take_parked();
  if (!parked) {
    return;
  }
  Workdir& workdir = m_state.workdir;
  std::string trash;
  UniqueFd trash_fd;
  try {
    trash = workdir.create_job_dir(false);
    trash_fd = UniqueFd(open(trash.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  } catch (const std::system_error&) {
  }
  const auto give_up = [&](const char* step) {
    log_warn("%s: cannot reuse the last job dir (%s: %s); writing a fresh one", m_label.c_str(),
             step, std::strerror(errno));
    workdir.remove_job_dir(parked->path);
    if (!trash.empty()) {
      workdir.remove_job_dir(trash);
    }
  };
  if (trash_fd.get() < 0) {
    return give_up("trash dir");
  }
  // The fresh dir (only .tmp so far) goes to the trash and the parked one takes its name, so the
  // job's path is new as always.
  if (renameat(AT_FDCWD, m_job_dir.c_str(), trash_fd.get(), "fresh") != 0) {
    return give_up("rename");
  }
  const auto restore_fresh = [&] {
    renameat(trash_fd.get(), "fresh", AT_FDCWD, m_job_dir.c_str());
  };
  if (rename(parked->path.c_str(), m_job_dir.c_str()) != 0) {
    restore_fresh();
    return give_up("rename");
  }
  UniqueFd reused(open(m_job_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st {};
  if (reused.get() < 0 || fstat(reused.get(), &st) != 0 || st.st_dev != parked->dev ||
      st.st_ino != parked->ino) {
    // Not the directory that was parked (something replaced it): it goes, the fresh one is back.
    renameat(AT_FDCWD, m_job_dir.c_str(), trash_fd.get(), "replaced");
    restore_fresh();
    errno = EXDEV;
    return give_up("identity");
  }
  // The earlier job's TMPDIR goes too; this job gets an empty one.
  if ((renameat(reused.get(), ".tmp", trash_fd.get(), "tmp") != 0 && errno != ENOENT) ||
      mkdirat(reused.get(), ".tmp", 0700) != 0) {
    throw std::system_error(errno, std::generic_category(), "job TMPDIR");
  }
  close(m_job_fd);
  m_job_fd = reused.release();
  m_previous = std::move(parked->tree);
  m_trash = std::move(trash);
  m_trash_fd = trash_fd.release();
}

void Session::take_snapshot()
{
  if (m_previous && m_previous->watch != nullptr) {
    // Watched since it was sealed: what had no event is as recorded, no stats needed.
    m_watch = std::move(m_previous->watch);
    std::optional<TreeSnapshot> snapshot = m_watch->snapshot();
    if (snapshot) {
      log_debug("%s: %zu entries of the last job dir untouched since it was sealed",
                m_label.c_str(), snapshot->entries.size());
      if (m_bundle) {
        m_bundle->use_snapshot(std::move(*snapshot));
      }
    } else {
      log_debug("%s: the last job dir's watch lost count; the reconcile stats it", m_label.c_str());
    }
    return;
  }
  if (!m_snapshot.valid()) {
    return;
  }
  m_snapshot_stop->store(true);
  try {
    std::optional<TreeSnapshot> snapshot = m_snapshot.get();
    log_debug("%s: %zu entries of the last job dir stat'ed ahead of the manifest", m_label.c_str(),
              snapshot ? snapshot->entries.size() : std::size_t{0});
    if (snapshot && m_bundle && m_previous) {
      m_bundle->use_snapshot(std::move(*snapshot));
    }
  } catch (const std::exception& e) {
    log_debug("%s: no snapshot of the last job dir (%s); the reconcile stats it", m_label.c_str(),
              e.what());
  }
}

void Session::wait_snapshot()
{
  if (m_snapshot.valid()) {
    m_snapshot_stop->store(true);
    m_snapshot.wait(); // its thread reads the job dir: done before the dir goes anywhere
    m_snapshot = {};
  }
}

void Session::drop_trash()
{
  if (m_trash_fd >= 0) {
    close(m_trash_fd);
    m_trash_fd = -1;
  }
  if (!m_trash.empty()) {
    m_state.workdir.remove_job_dir(std::exchange(m_trash, {}));
  }
}

std::optional<Workdir::Parked> Session::parkable()
{
  if (!m_written || m_job_fd < 0) {
    return std::nullopt;
  }
  // A process of the job that escaped the kill and still works there could change the files
  // under the next job, which a fresh dir would not see: then the dir goes as it always did.
  if (orphan_uses(m_job_dir)) {
    log_warn("%s: a process of the job still uses its dir; it will not be reused", m_label.c_str());
    return std::nullopt;
  }
  // Park only the very directory this session wrote (a job may have renamed it and put
  // something else in its place), readable again whatever mode the job gave it.
  if (fchmod(m_job_fd, 0700) != 0) {
    return std::nullopt;
  }
  struct stat held {
  }, named{};
  const UniqueFd by_name(open(m_job_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (fstat(m_job_fd, &held) != 0 || by_name.get() < 0 || fstat(by_name.get(), &named) != 0 ||
      held.st_dev != named.st_dev || held.st_ino != named.st_ino) {
    return std::nullopt;
  }
  return Workdir::Parked{m_job_dir, held.st_dev, held.st_ino, std::move(*m_written)};
}

} // namespace dc::worker
