#include "master/node_session.hpp"

#include "common/bundle_writer.hpp"
#include "common/handshake.hpp"
#include "common/log.hpp"
#include "master/bundle_scan.hpp"
#include "master/connect.hpp"
#include "master/results_dir.hpp"
#include "master/safe_file_name.hpp"

#include <utility>

namespace dc::master {
namespace {

constexpr auto k_ping_interval = 15s; // the worker closes idle sessions after 60 s
constexpr auto k_idle_limit = 60s;    // nothing at all from the worker for this long: lost
constexpr auto k_cancel_limit = 12s;  // worker's kill grace (5 s) plus margin
constexpr auto k_bye_limit = 5s;

struct ScanFailed {}; // the --send scan failed while this node connected

} // namespace

// Sends a PING every k_ping_interval so the worker's idle limit never ends a quiet command.
struct NodeSession::Pinger {
  explicit Pinger(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  bool done = false;

  static awaitable<void> loop(std::shared_ptr<Pinger> self, std::shared_ptr<Channel> channel)
  {
    std::uint64_t counter = 0;
    while (!self->done) {
      self->timer.expires_after(k_ping_interval);
      co_await self->timer.async_wait(as_tuple(use_awaitable));
      if (self->done) {
        break;
      }
      Bytes body;
      put_be<std::uint64_t>(body, ++counter);
      try {
        channel->post(RecordType::ping, body);
      } catch (const std::exception&) {
        break;
      }
    }
  }
};

NodeSession::NodeSession(const RunPlan& plan, const Peer& peer, OutputView& view, MsgRouter& router)
    : m_plan(plan), m_peer(peer), m_view(view), m_router(router)
{
}

NodeSession::~NodeSession()
{
  if (m_pinger) {
    m_pinger->done = true;
    m_pinger->timer.cancel();
  }
}

void NodeSession::cancel()
{
  if (m_cancelled) {
    return;
  }
  m_cancelled = true;
  if (!m_channel) {
    return;
  }
  if (m_phase == Phase::running && m_running_id) {
    try {
      m_channel->post(RecordType::cancel, as_bytes(dump_body(to_json(CancelBody{}))));
      arm(k_cancel_limit);
      return;
    } catch (const std::exception&) {
    }
  }
  if (m_phase != Phase::closing) {
    m_channel->close();
  }
}

void NodeSession::abort()
{
  m_cancelled = true;
  if (m_channel) {
    m_channel->close();
  }
}

awaitable<NodeResult> NodeSession::run(std::function<void()> uploaded)
{
  const auto release_slot = [&uploaded] {
    if (uploaded) {
      std::exchange(uploaded, nullptr)();
    }
  };
  const auto started = Clock::now();
  auto mark = started;
  const auto lap = [&mark] {
    const auto now = Clock::now();
    const auto d = now - mark;
    mark = now;
    return d;
  };
  try {
    co_await connect();
    m_result.connect = lap();
    co_await wait_for_scan();
    if (m_plan.scan != nullptr && m_plan.scan->failure()) {
      throw ScanFailed{};
    }
    lap(); // waiting for the scan is neither connecting nor uploading
    m_view.node_connected(m_peer.index);
    m_phase = Phase::uploading;
    if (m_plan.bundle) {
      co_await upload();
    }
    upload_ended();
    m_result.upload = lap();
    m_phase = Phase::running;
    release_slot();
    m_result.state = NodeState::ok;
    if (m_plan.stdin_bytes && !m_worker_has_stdin) {
      m_result.state = NodeState::failed;
      m_result.detail = "this worker is too old for --stdin";
    }
    for (std::uint32_t i = 0; m_result.state == NodeState::ok && i < m_plan.options.commands.size();
         ++i) {
      if (m_cancelled) {
        m_result.state = NodeState::cancelled;
        break;
      }
      if (!co_await run_command(i, m_plan.options.commands[i])) {
        break;
      }
    }
    m_result.run = lap();
    // Results come back also from a failed or timed-out run: they may say why.
    const bool fetchable = m_result.state == NodeState::ok || m_result.state == NodeState::failed ||
                           m_result.state == NodeState::timed_out;
    if (!m_plan.options.fetch.empty() && fetchable && !m_cancelled) {
      co_await fetch();
      m_result.fetch = lap();
    }
    m_phase = Phase::closing;
    // The job is over: other nodes' sends to it fail from now on, their receives once they have
    // what it sent.
    m_router.node_ended(std::uint32_t(m_peer.index));
    co_await say_bye();
  } catch (const ScanFailed&) {
    m_result.state = NodeState::cancelled; // never shown: run() rethrows the scan's failure
  } catch (const HandshakeError& e) {
    m_result.state = NodeState::rejected;
    m_result.detail = e.what();
  } catch (const RemoteError& e) {
    const bool refused = e.body.code == "busy" || e.body.code == "shutdown";
    m_result.state = m_phase == Phase::connecting ? NodeState::rejected : NodeState::failed;
    if (e.body.code == "shutdown" && m_phase != Phase::connecting) {
      m_result.state = NodeState::lost;
    }
    m_result.detail = (refused                       ? ""
                       : m_phase == Phase::uploading ? "bundle rejected: "
                       : m_phase == Phase::fetching  ? "fetch failed: "
                                                     : "worker error: ") +
                      e.body.msg;
    if (e.body.ref && m_phase == Phase::uploading) {
      m_result.detail += " (entry " + std::to_string(*e.body.ref) + ")";
    }
  } catch (const ConnectionLost& e) {
    m_result.state = m_cancelled ? NodeState::cancelled : NodeState::lost;
    m_result.detail = e.what();
  } catch (const ProtocolError& e) {
    m_result.state = NodeState::lost;
    m_result.detail = std::string(e.what()) + " — output may be incomplete";
  } catch (const BundleError& e) {
    if (m_phase != Phase::fetching || m_result.state == NodeState::ok) {
      m_result.state = NodeState::failed; // a timed-out run stays timed out
    }
    m_result.detail +=
        (m_result.detail.empty() ? "" : "; ") +
        std::string(m_phase == Phase::fetching ? "results rejected: " : "cannot send: ") + e.what();
  } catch (const std::system_error& e) {
    const bool timed_out = m_deadline && m_deadline->expired();
    if (m_cancelled) {
      m_result.state = NodeState::cancelled;
      m_result.detail = m_phase == Phase::running ? "" : "interrupted";
    } else if (m_phase == Phase::connecting) {
      m_result.state = NodeState::unreachable;
      m_result.detail =
          timed_out ? "connect timeout (" + format_duration(m_plan.options.connect_timeout) + ")"
                    : e.code().message();
    } else {
      m_result.state = NodeState::lost;
      m_result.detail = timed_out ? "worker silent for " + format_duration(m_limit) +
                                        " — output may be incomplete"
                                  : "connection lost — output may be incomplete";
    }
  }
  m_router.node_ended(std::uint32_t(m_peer.index)); // also when it never started
  release_slot();
  if (m_pinger) {
    m_pinger->done = true;
    m_pinger->timer.cancel();
  }
  upload_ended(); // a node that failed before or during its upload is done with it too
  if (m_result.state == NodeState::ok && m_cancelled) {
    m_result.state = NodeState::cancelled;
  }
  if (m_phase == Phase::running) {
    m_result.run = lap();
  } else if (m_phase == Phase::fetching) {
    m_result.fetch = lap();
  }
  m_result.total = Clock::now() - started;
  if (m_channel) {
    m_result.bytes_sent = m_channel->bytes_sent();
    m_deadline.reset();
    m_channel->close();
  }
  // No result before the scan is done: if it fails, no node is reported at all.
  co_await wait_for_scan();
  if (m_plan.scan != nullptr && m_plan.scan->failure()) {
    std::rethrow_exception(m_plan.scan->failure());
  }
  co_return m_result;
}

awaitable<void> NodeSession::wait_for_scan()
{
  while (m_plan.scan != nullptr && !m_plan.scan->done()) {
    co_await m_plan.scan->wait(k_ping_interval);
    if (m_deadline) {
      arm(k_idle_limit); // a long scan is no sign of a silent worker (the pinger keeps it)
    }
  }
}

void NodeSession::upload_ended()
{
  if (m_plan.progress != nullptr && !m_upload_reported) {
    m_upload_reported = true;
    m_plan.progress->node_done();
  }
}

void NodeSession::arm(Clock::duration limit)
{
  m_limit = limit;
  m_deadline->extend(limit);
}

awaitable<void> NodeSession::connect()
{
  const auto ex = co_await asio::this_coro::executor;
  const auto endpoints = co_await resolve_peer(m_peer, m_plan.options.connect_timeout);
  if (m_cancelled) {
    throw std::system_error(asio::error::operation_aborted);
  }
  m_channel = std::make_shared<Channel>(tcp::socket(ex));
  m_deadline = std::make_unique<Deadline>(m_channel->socket(), m_plan.options.connect_timeout);
  Hello hello;
  hello.client = std::string("distcomp master ") + DC_VERSION;
  hello.name = m_peer.label;
  hello.keep = m_plan.options.keep;
  hello.bundle = !m_plan.options.send.empty();
  const Welcome welcome = co_await open_session(*m_channel, endpoints, m_plan.key, hello);
  m_result.kept_dir = welcome.job_dir;
  m_worker_has_stdin = std::find(welcome.features.begin(), welcome.features.end(), "stdin") !=
                       welcome.features.end();
  m_worker_has_fetch = std::find(welcome.features.begin(), welcome.features.end(), "fetch") !=
                       welcome.features.end();
  m_worker_has_msg = std::find(welcome.features.begin(), welcome.features.end(), "msg") !=
                         welcome.features.end() &&
                     m_plan.peers.size() <= k_max_msg_nodes;
  log_debug("%s: session %s with %s (worker %s)", m_peer.label.c_str(), welcome.session.c_str(),
            escape_for_log(welcome.worker).c_str(), escape_for_log(welcome.version).c_str());
  arm(k_idle_limit);
  m_pinger = std::make_shared<Pinger>(ex);
  asio::co_spawn(ex, Pinger::loop(m_pinger, m_channel), asio::detached);
}

awaitable<void> NodeSession::upload()
{
  const BundleSource& bundle = *m_plan.bundle;
  const Manifest& manifest = bundle.manifest;
  const BundleBeginBody begin{manifest.entries.size(), manifest.file_count(),
                              manifest.total_bytes(), bundle.compressed_manifest.size()};
  const std::string begin_body = dump_body(to_json(begin));
  co_await m_channel->send(RecordType::bundle_begin, begin_body);
  const ByteView zmanifest(bundle.compressed_manifest);
  for (std::size_t at = 0; at < zmanifest.size(); at += k_max_body_size) {
    co_await m_channel->send(
        RecordType::manifest,
        zmanifest.subspan(at, std::min(k_max_body_size, zmanifest.size() - at)));
  }
  co_await m_channel->send(RecordType::manifest_end, ByteView{});
  const Record want = co_await next();
  if (want.type != RecordType::want) {
    throw ProtocolError(std::string("expected WANT, got ") + to_string(want.type));
  }
  const std::size_t files = manifest.file_count();
  if (want.body.size() != (files + 7) / 8) {
    throw ProtocolError("WANT bitmap of the wrong length");
  }
  Bytes scratch; // one record's worth of a spooled blob
  UploadStats stats;
  stats.files = files;
  stats.bytes = manifest.total_bytes();
  std::vector<std::uint64_t> sizes; // of the files, in manifest order
  sizes.reserve(files);
  for (const auto& e : manifest.entries) {
    if (e.kind == EntryKind::file) {
      sizes.push_back(e.size);
    }
  }
  if (m_plan.progress != nullptr) {
    std::uint64_t wanted = 0;
    for (std::size_t i = 0; i < files; ++i) {
      wanted += (want.body[i / 8] >> (i % 8) & 1) != 0 ? sizes[i] : 0;
    }
    m_plan.progress->wanted(wanted);
  }
  for (std::size_t i = 0; i < files; ++i) {
    if ((want.body[i / 8] >> (i % 8) & 1) == 0) {
      continue;
    }
    ++stats.sent_files;
    stats.sent_bytes += sizes[i];
    const BlobRef blob = m_plan.blobs->frame(i);
    std::uint64_t credited = 0; // content bytes of this file reported to the progress bar
    for (std::uint64_t at = 0; at < blob.size; at += k_max_body_size) {
      // A spooled blob is read a slice at a time into `scratch`, which stays untouched until
      // send() has queued it.
      const ByteView slice = m_plan.blobs->read(blob, at, k_max_body_size, scratch);
      co_await m_channel->send(RecordType::blob_data, slice);
      if (m_plan.progress != nullptr) {
        // Content bytes pro rata of the compressed bytes sent; the last slice credits the rest.
        const std::uint64_t end = at + slice.size();
        const std::uint64_t upto = end >= blob.size
                                       ? sizes[i]
                                       : static_cast<std::uint64_t>(static_cast<double>(sizes[i]) *
                                                                    static_cast<double>(end) /
                                                                    static_cast<double>(blob.size));
        m_plan.progress->sent(upto - std::min(upto, credited));
        credited = std::max(credited, upto);
      }
      if (m_cancelled) {
        throw std::system_error(asio::error::operation_aborted);
      }
    }
  }
  co_await m_channel->send(RecordType::bundle_end, ByteView{});
  const Record ok = co_await next();
  if (ok.type != RecordType::bundle_ok) {
    throw ProtocolError(std::string("expected BUNDLE_OK, got ") + to_string(ok.type));
  }
  const BundleOkBody confirmed = bundle_ok_from(parse_body(ok.body));
  stats.cached_files = std::min<std::uint64_t>(confirmed.from_cache, files);
  m_result.upload_stats = stats;
}

void NodeSession::send_stdin()
{
  const std::string_view data = *m_plan.stdin_bytes;
  while (m_stdin_credit > 0 && m_stdin_sent < data.size()) {
    const std::size_t n = std::size_t(
        std::min<std::uint64_t>({m_stdin_credit, data.size() - m_stdin_sent, k_max_body_size - 4}));
    m_channel->post(RecordType::stdin_data,
                    encode_output(*m_running_id, as_bytes(data.substr(m_stdin_sent, n))));
    m_stdin_sent += n;
    m_stdin_credit -= n;
  }
  if (m_stdin_sent == data.size() && !m_stdin_eof_sent) {
    m_channel->post(RecordType::stdin_eof, encode_output(*m_running_id, {}));
    m_stdin_eof_sent = true;
  }
}

RunBody NodeSession::make_run(std::uint32_t id, const std::string& command) const
{
  RunBody run;
  run.id = id;
  run.sh = command;
  run.timeout_s = m_plan.options.command_timeout_s;
  run.stdin = m_plan.stdin_bytes.has_value();
  run.env = m_plan.options.env;
  const std::string node_id = std::to_string(m_peer.index);
  const std::string n_nodes = std::to_string(m_plan.peers.size());
  run.env["DISTCOMP_NODE_ID"] = node_id;
  run.env["DISTCOMP_N_NODES"] = n_nodes;
  run.env["DISTCOMP_NODE_NAME"] = m_peer.label;
  run.env["DISTCOMP_JOB_ID"] = m_plan.job_id;
  run.env["DISTCOMP_RANK"] = node_id; // one process per node for now
  run.env["DISTCOMP_SIZE"] = n_nodes;
  if (m_worker_has_msg) {
    run.msg = RunBody::Msg{std::uint32_t(m_peer.index), std::uint32_t(m_plan.peers.size())};
  }
  return run;
}

awaitable<bool> NodeSession::run_command(std::uint32_t id, const std::string& command)
{
  const std::string run_body = dump_body(to_json(make_run(id, command)));
  co_await m_channel->send(RecordType::run, run_body);
  m_running_id = id;
  if (m_worker_has_msg && !m_msg_open) {
    // The worker opens the endpoint at this RUN; whatever we forward now arrives after it.
    m_msg_open = true;
    m_router.open(
        std::uint32_t(m_peer.index),
        [channel = m_channel](RecordType type, ByteView body) { channel->post(type, body); });
  }
  if (m_plan.stdin_bytes) {
    // Each command reads the whole of stdin, from the start, as its credit allows.
    m_stdin_sent = 0;
    m_stdin_credit = 0;
    m_stdin_eof_sent = false;
    send_stdin(); // an empty stdin is just the EOF
  }
  for (;;) {
    Record record = co_await next();
    if (record.type != RecordType::exit) {
      throw ProtocolError(std::string("unexpected ") + to_string(record.type) + " during RUN");
    }
    const ExitBody exit = exit_from(parse_body(record.body));
    if (exit.id != id) {
      throw ProtocolError("EXIT for an unknown command id");
    }
    m_running_id.reset();
    m_result.exit_code = exit.code;
    m_result.exit_signal = exit.signal;
    if (exit.reason == "timeout") {
      m_result.state = NodeState::timed_out;
      m_result.detail = "command " + std::to_string(id + 1) + " timed out after " +
                        format_duration(std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(m_plan.options.command_timeout_s)));
      co_return false;
    }
    if (exit.reason == "shutdown") {
      m_result.state = NodeState::lost;
      m_result.detail = "worker shut down during the command";
      co_return false;
    }
    if (exit.reason == "cancelled" || m_cancelled) {
      m_result.state = NodeState::cancelled;
      co_return false;
    }
    if (exit.signal || exit.code.value_or(0) != 0) {
      m_result.state = NodeState::failed;
      if (m_plan.options.commands.size() > 1) {
        m_result.detail = "command " + std::to_string(id + 1) + " of " +
                          std::to_string(m_plan.options.commands.size());
      }
      co_return false;
    }
    co_return true;
  }
}

awaitable<void> NodeSession::fetch()
{
  if (!m_worker_has_fetch) {
    m_result.state = NodeState::failed;
    m_result.detail = "this worker is too old for --fetch";
    co_return;
  }
  m_phase = Phase::fetching;
  const Options& o = m_plan.options;
  const std::string request = dump_body(to_json(FetchBody{o.fetch}));
  co_await m_channel->send(RecordType::fetch, request);
  const Record reply_record = co_await next();
  if (reply_record.type != RecordType::fetch_reply) {
    throw ProtocolError(std::string("expected FETCH_REPLY, got ") + to_string(reply_record.type));
  }
  const FetchReplyBody reply = fetch_reply_from(parse_body(reply_record.body));
  const Record begin_record = co_await next();
  if (begin_record.type != RecordType::bundle_begin) {
    throw ProtocolError(std::string("expected BUNDLE_BEGIN, got ") + to_string(begin_record.type));
  }
  const BundleBeginBody b = bundle_begin_from(parse_body(begin_record.body));
  std::optional<ResultsDir> results;
  try {
    results.emplace(o.results_dir, safe_file_name(m_peer.label));
  } catch (const std::system_error& e) {
    throw BundleError("io_error", e.what());
  }
  // The worker is hostile until its results verified: the same limits as a worker applies to
  // a bundle, with the size capped by --fetch-limit and the local disk.
  BundleLimits limits;
  limits.max_bytes = cap_to_free_space(results->fd(), o.fetch_limit, std::uint64_t{1} << 30);
  BundleWriter writer(results->fd(), BundleBegin{b.entries, b.files, b.bytes, b.manifest_zbytes},
                      limits, &results->previous());
  co_await receive_stream(RecordType::manifest, RecordType::manifest_end,
                          [&](ByteView body) { writer.feed_manifest(body); });
  const Bytes want = writer.end_manifest();
  co_await m_channel->send(RecordType::want, want);
  co_await receive_stream(RecordType::blob_data, RecordType::bundle_end,
                          [&](ByteView body) { writer.feed_blobs(body); });
  const BundleStats stats = writer.finish();
  const std::string ok =
      dump_body(to_json(BundleOkBody{stats.files, stats.bytes, stats.from_cache, 0}));
  co_await m_channel->send(RecordType::bundle_ok, ok);
  try {
    results->commit();
  } catch (const std::system_error& e) {
    throw BundleError("io_error", e.what());
  }
  FetchStats f;
  f.dir = results->final_path();
  f.files = stats.files;
  f.bytes = stats.bytes;
  f.reused_files = stats.from_cache;
  f.skipped = reply.skipped;
  for (const auto& example : reply.skipped_examples) {
    if (f.skipped_examples.size() < 5) {
      f.skipped_examples.push_back(escape_for_log(example));
    }
  }
  m_result.fetch_stats = std::move(f);
  if (!reply.missing.empty()) {
    std::string missing;
    for (const auto& p : reply.missing) {
      missing += (missing.empty() ? "'" : ", '") + escape_for_log(p) + "'";
    }
    m_result.state = m_result.state == NodeState::ok ? NodeState::failed : m_result.state;
    m_result.detail +=
        (m_result.detail.empty() ? "" : "; ") + std::string("--fetch: no match for ") + missing;
  }
}

awaitable<void> NodeSession::receive_stream(RecordType data, RecordType end,
                                            const std::function<void(ByteView)>& feed)
{
  for (;;) {
    const Record r = co_await next();
    if (r.type == data) {
      feed(r.body);
    } else if (r.type == end && r.body.empty()) {
      co_return;
    } else {
      throw ProtocolError(std::string("unexpected ") + to_string(r.type) + " in the results");
    }
  }
}

awaitable<void> NodeSession::say_bye()
{
  arm(k_bye_limit);
  co_await close_session(*m_channel, m_peer.label);
}

awaitable<Record> NodeSession::next()
{
  for (;;) {
    std::optional<Record> record = co_await m_channel->receive();
    if (!record) {
      throw ConnectionLost("connection lost — output may be incomplete");
    }
    arm(m_cancelled ? k_cancel_limit : k_idle_limit);
    switch (record->type) {
    case RecordType::ping:
      m_channel->post(RecordType::pong, record->body);
      continue;
    case RecordType::pong:
      continue;
    case RecordType::stdout_data:
    case RecordType::stderr_data: {
      const auto [id, data] = decode_output(record->body);
      if (!m_running_id || id != *m_running_id) {
        throw ProtocolError("output for a command that is not running");
      }
      m_view.output(m_peer.index, record->type == RecordType::stderr_data, data);
      co_await m_view.wait_writable();
      continue;
    }
    case RecordType::msg_data:
      m_router.on_data(std::uint32_t(m_peer.index), record->body);
      continue;
    case RecordType::msg_barrier:
      m_router.on_barrier(std::uint32_t(m_peer.index), record->body);
      continue;
    case RecordType::msg_active:
      m_router.on_active(std::uint32_t(m_peer.index), record->body);
      continue;
    case RecordType::window: {
      const WindowBody w = window_from(parse_body(record->body));
      if (w.stream == "msg") {
        m_router.on_window(std::uint32_t(m_peer.index), w.id, w.bytes);
        continue;
      }
      // Credit for a command that already ended (its EXIT crossed our data) is moot.
      if (m_plan.stdin_bytes && w.stream == "stdin" && m_running_id && w.id == *m_running_id) {
        m_stdin_credit += w.bytes;
        send_stdin();
      }
      continue;
    }
    case RecordType::error: {
      ErrorBody e = error_from(parse_body(record->body));
      if (e.fatal || (e.ref && m_running_id && *e.ref == *m_running_id) ||
          m_phase != Phase::running) {
        throw RemoteError(std::move(e));
      }
      log_warn("%s: worker: %s", m_peer.label.c_str(), escape_for_log(e.msg).c_str());
      continue;
    }
    case RecordType::bye:
      throw ConnectionLost("worker ended the session");
    default:
      co_return std::move(*record);
    }
  }
}

} // namespace dc::master
