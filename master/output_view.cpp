#include "master/output_view.hpp"

#include "master/blocks_view.hpp"
#include "master/gather_view.hpp"
#include "master/json_view.hpp"
#include "master/options.hpp"
#include "master/outdir_view.hpp"
#include "master/terminal_style.hpp"

#include <vector>

namespace dc::master {
namespace {

// Pieces a captured output is written in: big enough for few writes, small enough to keep the
// Printer's queue near its high-water mark.
constexpr std::size_t k_capture_piece = 256 << 10;

// The default view: the Printer's tagged live lines.
class LiveView : public OutputView {
public:
  using OutputView::OutputView;
  void output(std::size_t node, bool is_stderr, ByteView data) override
  {
    m_printer.output(node, is_stderr, data);
  }
  asio::awaitable<void> node_done(std::size_t node, const NodeResult&) override
  {
    m_printer.finish_node(node);
    co_return;
  }
};

} // namespace

asio::awaitable<void> OutputView::write_capture(const OutputCapture& capture)
{
  std::vector<char> piece(std::size_t(std::min<std::uint64_t>(capture.size(), k_capture_piece)));
  std::uint64_t offset = 0;
  while (const std::size_t n = capture.read(offset, piece.data(), piece.size())) {
    offset += n;
    m_printer.write(false, std::string_view(piece.data(), n));
    co_await m_printer.wait_writable();
  }
  if (!capture.ends_with_newline()) {
    m_printer.write(false, "\n"); // the next header starts on a line of its own
  }
}

std::unique_ptr<OutputView> make_output_view(const Options& options, Printer& printer,
                                             const std::vector<std::string>& labels)
{
  const bool color_out = use_color(options.color, 1);
  printer.set_labels(labels, color_out && options.view == ViewKind::live,
                     use_color(options.color, 2) && options.view != ViewKind::json);
  switch (options.view) {
  case ViewKind::live:
    break;
  case ViewKind::blocks:
    return std::make_unique<BlocksView>(printer, labels, color_out);
  case ViewKind::gather:
    return std::make_unique<GatherView>(printer, labels, options.gather_live);
  case ViewKind::outdir:
    return std::make_unique<OutdirView>(printer, labels, options.outdir);
  case ViewKind::json:
    return std::make_unique<JsonView>(printer, labels);
  }
  return std::make_unique<LiveView>(printer);
}

} // namespace dc::master
