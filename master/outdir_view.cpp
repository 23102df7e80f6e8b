#include "master/outdir_view.hpp"

#include "common/error.hpp"
#include "common/log.hpp"
#include "master/safe_file_name.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <system_error>

namespace dc::master {

OutdirView::OutdirView(Printer& printer, const std::vector<std::string>& labels,
                       const std::string& dir)
    : OutputView(printer), m_dir(dir), m_files(labels.size())
{
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    throw ConfigError("--outdir " + dir + ": cannot create the directory" +
                      (ec ? ": " + ec.message() : std::string()));
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::string base = (dir.ends_with('/') ? dir : dir + "/") + safe_file_name(labels[i]);
    for (int stream = 0; stream < 2; ++stream) {
      Files& f = m_files[i];
      f.path[stream] = base + (stream == 0 ? ".out" : ".err");
      f.fd[stream] =
          UniqueFd(::open(f.path[stream].c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (f.fd[stream].get() < 0) {
        throw ConfigError(f.path[stream] + ": cannot create: " + std::strerror(errno));
      }
    }
  }
}

void OutdirView::output(std::size_t node, bool is_stderr, ByteView data)
{
  Files& f = m_files.at(node);
  const int stream = is_stderr ? 1 : 0;
  if (f.failed[stream]) {
    return;
  }
  // A local file: write(2) may block on a slow disk, but never on a terminal or a peer.
  std::string_view rest = as_chars(data);
  while (!rest.empty()) {
    const ssize_t n = ::write(f.fd[stream].get(), rest.data(), rest.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      f.failed[stream] = true;
      log_error("%s: %s; further output of this node is lost", f.path[stream].c_str(),
                n < 0 ? std::strerror(errno) : "short write");
      return;
    }
    rest.remove_prefix(std::size_t(n));
  }
}

asio::awaitable<void> OutdirView::node_done(std::size_t node, const NodeResult&)
{
  for (UniqueFd& fd : m_files.at(node).fd) {
    fd.reset();
  }
  co_return;
}

asio::awaitable<void> OutdirView::run_done(const std::vector<NodeResult>& results, Clock::duration,
                                           int)
{
  m_printer.status("output of " + std::to_string(results.size()) + " nodes in " + m_dir +
                   (m_dir.ends_with('/') ? "" : "/") + " (<node>.out, <node>.err)");
  co_return;
}

} // namespace dc::master
