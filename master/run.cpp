#include "master/run.hpp"

#include "common/log.hpp"
#include "master/bundle_scan.hpp"
#include "master/fanout.hpp"
#include "master/node_selection.hpp"
#include "master/output_view.hpp"
#include "master/status.hpp"

#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace dc::master {
namespace {

std::string random_job_id()
{
  std::uint8_t id[6];
  randombytes_buf(id, sizeof id);
  return to_hex(id);
}

int keygen(const Options& options)
{
  const std::string path = options.key_path.value_or(default_keygen_path());
  const ClusterKey key = generate_key_file(path, options.force);
  std::fprintf(stderr, "wrote %s (key id %s); copy it to every worker with mode 0600\n",
               path.c_str(), key_id_hex(key.key_id).c_str());
  return k_exit_ok;
}

// Bytes --stdin may broadcast: it is held once in memory; bigger inputs travel with --send.
constexpr std::size_t k_max_stdin = 64 << 20;

std::string read_stdin_once()
{
  if (::isatty(0) == 1) {
    log_info("--stdin: reading stdin until EOF (Ctrl-D)");
  }
  std::string data;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(0, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      throw ConfigError(std::string("--stdin: cannot read stdin: ") + std::strerror(errno));
    }
    if (n == 0) {
      return data;
    }
    if (data.size() + std::size_t(n) > k_max_stdin) {
      throw ConfigError("--stdin: input larger than 64 MiB; ship big inputs with --send");
    }
    data.append(buffer, std::size_t(n));
  }
}

} // namespace

int run(const Options& options)
{
  set_log_level(options.verbose ? LogLevel::debug : LogLevel::info);
  init_sodium();
  if (options.keygen) {
    return keygen(options);
  }
  std::vector<Peer> nodes = select_nodes(options); // before the key: a typo in -w is reported first
  const ClusterKey key = load_cluster_key(options.key_path, options.force);
  log_debug("key %s (key id %s)", key.path.c_str(), key_id_hex(key.key_id).c_str());
  RunPlan plan{options, std::move(nodes), key, nullptr, nullptr,
               nullptr, random_job_id(),  {},  nullptr};
  if (options.stdin) {
    plan.stdin_bytes = read_stdin_once();
  }
  if (options.status) {
    return run_status(plan);
  }
  const auto started = Clock::now();
  asio::io_context ctx(1);
  Printer printer(ctx.get_executor());
  std::vector<std::string> labels;
  std::size_t width = 0;
  for (const auto& p : plan.peers) {
    labels.push_back(p.label);
    width = std::max(width, p.label.size());
  }
  const std::unique_ptr<OutputView> view = make_output_view(options, printer, labels);
  std::unique_ptr<UploadProgress> progress;
  if (!options.send.empty() && options.progress.value_or(::isatty(2) == 1)) {
    progress = std::make_unique<UploadProgress>(printer, plan.peers.size());
    plan.progress = progress.get();
  }
  Fanout fanout(plan, *view);
  // The files are scanned while the nodes connect. What cannot be sent stops every node before
  // anything is shown or run, and is reported like any other bad argument.
  std::optional<BundleScan> scan;
  if (!options.send.empty()) {
    scan.emplace(ctx.get_executor(), plan, [&fanout] {
      fanout.interrupt();
      fanout.interrupt(); // close connections still being made, too
    });
    plan.scan = &*scan;
  }

  asio::signal_set signals(ctx, SIGINT, SIGTERM);
  std::function<void(std::error_code, int)> on_signal = [&](std::error_code ec, int) {
    if (ec) {
      return;
    }
    if (!fanout.interrupted()) {
      printer.status("interrupted: cancelling every node (Ctrl-C again to close at once)");
    }
    fanout.interrupt();
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  // `| head` closed our stdout: stop everything quietly.
  printer.on_stdout_closed([&] {
    if (!fanout.interrupted()) {
      fanout.interrupt();
    }
  });

  int status = k_exit_ok;
  const auto run_all = [&]() -> awaitable<void> {
    co_await fanout.run();
    status = exit_status(fanout.results(), fanout.interrupted(), options.largest_remote_status);
    if (!printer.stdout_closed()) {
      co_await view->run_done(fanout.results(), Clock::now() - started, status);
    }
  };
  bool failed = false;
  asio::co_spawn(ctx, run_all(), [&](std::exception_ptr e) {
    signals.cancel();
    if (e && !(scan && scan->failure())) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log_error("%s", ex.what());
      }
      failed = true;
    }
  });
  ctx.run();
  if (scan && scan->failure()) {
    std::rethrow_exception(scan->failure());
  }
  if (progress) {
    progress->finish();
  }

  if (printer.stdout_closed()) {
    printer.flush();
    return 141; // like any tool killed by SIGPIPE, minus the noise
  }
  const auto& results = fanout.results();
  for (std::size_t i = 0; i < results.size(); ++i) {
    printer.status(summary_line(labels[i], width, results[i]));
  }
  if (const std::string line = straggler_line(labels, results); !line.empty()) {
    printer.status(line);
  }
  printer.status(total_line(results, Clock::now() - started));
  printer.flush();
  // A view that failed (disk full under --gather's spool) lost output: never report success.
  return failed && status == k_exit_ok ? k_exit_command_failed : status;
}

} // namespace dc::master
