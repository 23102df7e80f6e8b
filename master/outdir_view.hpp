#pragma once
// --outdir DIR: each node's stdout and stderr written raw to DIR/<node>.out and DIR/<node>.err
// (names from safe_file_name), bytes untouched; nothing on stdout. The files are created when the
// run starts, so every selected node has both, even when it printed nothing or was unreachable.

#include "common/unique_fd.hpp"
#include "master/output_view.hpp"

namespace dc::master {

class OutdirView : public OutputView {
public:
  // Creates `dir` (and missing parents) and truncates every node's files; throws ConfigError
  // naming the path when that fails.
  OutdirView(Printer& printer, const std::vector<std::string>& labels, const std::string& dir);
  void output(std::size_t node, bool is_stderr, ByteView data) override;
  asio::awaitable<void> node_done(std::size_t node, const NodeResult& result) override;
  asio::awaitable<void> run_done(const std::vector<NodeResult>& results, Clock::duration total,
                                 int exit_status) override;

private:
  struct Files {
    std::string path[2]; // .out, .err
    UniqueFd fd[2];
    bool failed[2] = {false, false};
  };
  std::string m_dir;
  std::vector<Files> m_files;
};

} // namespace dc::master
