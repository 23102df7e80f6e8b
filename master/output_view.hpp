#pragma once
// OutputView: how the output of a run is shown. NodeSession and Fanout report events (node
// connected, output bytes, node done, run done); a view turns them into text for the Printer,
// which stays the only writer of the terminal. One view per run, chosen by a flag:
//   live (default)  tagged lines as they arrive            ("lab01 | text")
//   --blocks        one block of stdout per node as it finishes, headed by its exit and time
//   --gather        identical stdout merged under a compressed hostlist, outliers after
//   --outdir DIR    raw per-node files DIR/<node>.out and .err, bytes untouched
//   --json          one JSON event per line on stdout, nothing else there
// Every view runs on the io_context thread only.

#include "common/bytes.hpp"
#include "master/node_result.hpp"
#include "master/output_capture.hpp"
#include "master/printer.hpp"

#include <memory>
#include <string>
#include <vector>

namespace dc::master {

struct Options;

class OutputView {
public:
  explicit OutputView(Printer& printer) : m_printer(printer) {}
  virtual ~OutputView() = default;
  OutputView(const OutputView&) = delete;
  OutputView& operator=(const OutputView&) = delete;

  // The node is connected and authenticated. Throws only std::bad_alloc.
  virtual void node_connected(std::size_t /*node*/) {}
  // A chunk of a command's output, cut anywhere. Never blocks; throws only std::bad_alloc.
  virtual void output(std::size_t node, bool is_stderr, ByteView data) = 0;
  // The node has ended (no more output will come). May wait for the terminal; throws
  // std::system_error when captured output cannot be read back.
  virtual asio::awaitable<void> node_done(std::size_t node, const NodeResult& result) = 0;
  // Every node has ended and `exit_status` is what the master will return. May wait for the
  // terminal; throws std::system_error when captured output cannot be read back.
  virtual asio::awaitable<void> run_done(const std::vector<NodeResult>& /*results*/,
                                         Clock::duration /*total*/, int /*exit_status*/)
  {
    co_return;
  }
  // Producers of output co_await this after output(): backpressure from the terminal.
  asio::awaitable<void> wait_writable() { return m_printer.wait_writable(); }

protected:
  // Writes `capture` to stdout in pieces, waiting for the terminal between them, so a node that
  // printed gigabytes never sits in the Printer's queue whole.
  asio::awaitable<void> write_capture(const OutputCapture& capture);

  Printer& m_printer;
};

// The view `options` ask for over nodes labelled `labels`; throws ConfigError when it cannot be
// set up (e.g. --outdir not creatable) and std::system_error on other OS failures.
std::unique_ptr<OutputView> make_output_view(const Options& options, Printer& printer,
                                             const std::vector<std::string>& labels);

} // namespace dc::master
