#pragma once
// --json: one JSON object per line on stdout for every event, nothing else there. Schema (all
// events carry "event"; node events carry "node" (label) and "id" (DISTCOMP_NODE_ID)):
//   {"event":"connected","node":"lab01","id":0}
//   {"event":"output","node":"lab01","id":0,"stream":"stdout","line":"text"}
//       the line without its newline; "end":"none" when the stream ended without one, "split"
//       when a line over 256 KiB was cut; a line that is not valid UTF-8 comes as "line_base64"
//   {"event":"exit","node":"lab01","id":0,"state":"ok","exit_code":0,"connect_s":0.002,
//    "upload_s":0,"run_s":1.8,"total_s":1.81}
//       plus "signal" (number), "detail", "kept_dir" when they apply
//   {"event":"summary","nodes":2,"states":{"ok":2},"exit_status":0,"total_s":1.93}
// The human summary still goes to stderr.

#include "master/line_splitter.hpp"
#include "master/output_view.hpp"

namespace dc::master {

class JsonView : public OutputView {
public:
  // Throws only std::bad_alloc.
  JsonView(Printer& printer, std::vector<std::string> labels);
  void node_connected(std::size_t node) override;
  void output(std::size_t node, bool is_stderr, ByteView data) override;
  asio::awaitable<void> node_done(std::size_t node, const NodeResult& result) override;
  asio::awaitable<void> run_done(const std::vector<NodeResult>& results, Clock::duration total,
                                 int exit_status) override;

private:
  void emit_line(std::size_t node, bool is_stderr, std::string_view text, LineEnd end);

  std::vector<std::string> m_labels;
  std::vector<LineSplitter> m_splitters; // two per node: stdout, stderr
};

} // namespace dc::master
