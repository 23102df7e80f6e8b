#include "master/gather_view.hpp"

#include "common/hostlist.hpp"

#include <algorithm>
#include <map>

namespace dc::master {
namespace {

// Groups of node indexes with the same key, largest first, ties in the order of their first node.
template <typename Key>
std::vector<std::vector<std::size_t>>
groups_by(const std::vector<std::pair<Key, std::size_t>>& keyed)
{
  std::map<Key, std::vector<std::size_t>> by_key;
  for (const auto& [key, node] : keyed) {
    by_key[key].push_back(node);
  }
  std::vector<std::vector<std::size_t>> groups;
  for (auto& [key, nodes] : by_key) {
    groups.push_back(std::move(nodes));
  }
  std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) {
    return a.size() != b.size() ? a.size() > b.size() : a.front() < b.front();
  });
  return groups;
}

} // namespace

GatherView::GatherView(Printer& printer, std::vector<std::string> labels, bool live)
    : OutputView(printer), m_labels(std::move(labels)), m_live(live)
{
  if (m_live) {
    m_nodes.resize(m_labels.size());
  } else {
    m_captures.resize(m_labels.size());
  }
}

void GatherView::output(std::size_t node, bool is_stderr, ByteView data)
{
  if (is_stderr) {
    m_printer.output(node, true, data);
    return;
  }
  if (!m_live) {
    m_captures.at(node).append(as_chars(data));
    return;
  }
  LiveNode& n = m_nodes.at(node);
  n.splitter.feed(as_chars(data), [&](std::string_view text, LineEnd end) {
    n.lines.push_back(std::string(text) + (end == LineEnd::split ? " [line split]\n" : "\n"));
  });
  print_ready_rows();
}

asio::awaitable<void> GatherView::node_done(std::size_t node, const NodeResult&)
{
  m_printer.finish_node(node); // a held partial stderr line
  if (m_live) {
    LiveNode& n = m_nodes.at(node);
    n.splitter.finish([&](std::string_view text, LineEnd) {
      n.lines.push_back(std::string(text) + " [no newline]\n");
    });
    n.done = true;
    print_ready_rows();
  }
  co_return;
}

void GatherView::print_ready_rows()
{
  for (;;) {
    bool any = false;
    bool complete = true; // every running node has its next line
    bool far_ahead = false;
    for (const LiveNode& n : m_nodes) {
      any = any || !n.lines.empty();
      complete = complete && (n.done || !n.lines.empty());
      far_ahead = far_ahead || n.lines.size() > k_max_behind;
    }
    if (!any || !(complete || far_ahead)) {
      return;
    }
    std::vector<std::pair<std::string, std::size_t>> row;
    for (std::size_t i = 0; i < m_nodes.size(); ++i) {
      if (!m_nodes[i].lines.empty()) {
        row.emplace_back(std::move(m_nodes[i].lines.front()), i);
        m_nodes[i].lines.pop_front();
      }
    }
    std::map<std::size_t, const std::string*> text_of; // first node of a group -> its line
    for (const auto& [text, node] : row) {
      text_of[node] = &text;
    }
    for (const auto& group : groups_by(row)) {
      std::vector<std::string> names;
      for (std::size_t node : group) {
        names.push_back(m_labels[node]);
      }
      m_printer.write(false, compress_hostlist(names) + " | " + *text_of[group.front()]);
    }
  }
}

asio::awaitable<void> GatherView::run_done(const std::vector<NodeResult>& results, Clock::duration,
                                           int)
{
  if (m_live) {
    co_return;
  }
  std::vector<std::pair<std::pair<std::uint64_t, std::array<std::uint8_t, 32>>, std::size_t>> keyed;
  for (std::size_t i = 0; i < m_captures.size() && i < results.size(); ++i) {
    keyed.push_back({{m_captures[i].size(), m_captures[i].digest()}, i});
  }
  for (const auto& group : groups_by(keyed)) {
    std::vector<std::string> names;
    for (std::size_t node : group) {
      names.push_back(m_labels[node]);
    }
    const std::string count =
        group.size() == 1 ? "1 node" : std::to_string(group.size()) + " nodes";
    const OutputCapture& capture = m_captures[group.front()];
    m_printer.write(false, "----- " + compress_hostlist(names) + " (" + count +
                               (capture.size() == 0 ? ", no output" : "") + ") -----\n");
    co_await write_capture(capture);
  }
  for (auto& capture : m_captures) {
    capture.clear();
  }
}

} // namespace dc::master
