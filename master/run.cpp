#include "master/run.hpp"

#include "common/log.hpp"
#include "master/fanout.hpp"
#include "master/status.hpp"

#include <sodium.h>

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

} // namespace

int run(const Options& options)
{
  set_log_level(options.verbose ? LogLevel::debug : LogLevel::info);
  init_sodium();
  if (options.keygen) {
    return keygen(options);
  }
  const ClusterKey key = load_cluster_key(options.key_path, options.force);
  log_debug("key %s (key id %s)", key.path.c_str(), key_id_hex(key.key_id).c_str());
  RunPlan plan{options,        load_peers_file(options.peers_file), key, nullptr, nullptr,
               random_job_id()};
  if (options.status) {
    return run_status(plan);
  }
  if (!options.send.empty()) {
    plan.bundle = std::make_unique<BundleSource>(scan_sources(options.send));
    plan.blobs = std::make_unique<BlobCompressor>(*plan.bundle);
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
  printer.set_labels(labels);
  Fanout fanout(plan, printer);

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

  asio::co_spawn(ctx, fanout.run(), [&](std::exception_ptr e) {
    signals.cancel();
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log_error("%s", ex.what());
      }
    }
  });
  ctx.run();

  if (printer.stdout_closed()) {
    printer.flush();
    return 141; // like any tool killed by SIGPIPE, minus the noise
  }
  const auto& results = fanout.results();
  for (std::size_t i = 0; i < results.size(); ++i) {
    printer.status(summary_line(labels[i], width, results[i]));
  }
  printer.status(total_line(results, Clock::now() - started));
  printer.flush();
  return exit_status(results, fanout.interrupted(), options.largest_remote_status);
}

} // namespace dc::master
