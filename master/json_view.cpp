#include "master/json_view.hpp"

#include <nlohmann/json.hpp>
#include <sodium.h>

#include <chrono>
#include <map>

namespace dc::master {
namespace {

using json = nlohmann::ordered_json; // keys in the order written: "event" first

double seconds(Clock::duration d)
{
  return std::chrono::duration<double>(d).count();
}

std::string base64(std::string_view bytes)
{
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.pop_back(); // the terminating NUL
  return out;
}

json node_event(const char* event, const std::string& label, std::size_t node)
{
  return json{{"event", event}, {"node", label}, {"id", node}};
}

} // namespace

JsonView::JsonView(Printer& printer, std::vector<std::string> labels)
    : OutputView(printer), m_labels(std::move(labels)), m_splitters(2 * m_labels.size())
{
}

void JsonView::node_connected(std::size_t node)
{
  m_printer.write(false, node_event("connected", m_labels.at(node), node).dump() + "\n");
}

void JsonView::output(std::size_t node, bool is_stderr, ByteView data)
{
  m_splitters.at(2 * node + (is_stderr ? 1 : 0))
      .feed(as_chars(data),
            [&](std::string_view text, LineEnd end) { emit_line(node, is_stderr, text, end); });
}

void JsonView::emit_line(std::size_t node, bool is_stderr, std::string_view text, LineEnd end)
{
  json event = node_event("output", m_labels[node], node);
  event["stream"] = is_stderr ? "stderr" : "stdout";
  event["line"] = text;
  if (end != LineEnd::newline) {
    event["end"] = end == LineEnd::split ? "split" : "none";
  }
  std::string line;
  try {
    line = event.dump(); // strict: throws on invalid UTF-8
  } catch (const json::type_error&) {
    event.erase("line");
    event["line_base64"] = base64(text);
    line = event.dump();
  }
  line += '\n';
  m_printer.write(false, line);
}

asio::awaitable<void> JsonView::node_done(std::size_t node, const NodeResult& r)
{
  for (int stream = 0; stream < 2; ++stream) {
    m_splitters.at(2 * node + std::size_t(stream)).finish([&](std::string_view text, LineEnd end) {
      emit_line(node, stream == 1, text, end);
    });
  }
  json event = node_event("exit", m_labels[node], node);
  event["state"] = to_string(r.state);
  if (r.exit_code) {
    event["exit_code"] = *r.exit_code;
  }
  if (r.exit_signal) {
    event["signal"] = *r.exit_signal;
  }
  if (!r.detail.empty()) {
    event["detail"] = r.detail;
  }
  if (!r.kept_dir.empty()) {
    event["kept_dir"] = r.kept_dir;
  }
  if (r.fetch_stats) {
    const FetchStats& f = *r.fetch_stats;
    event["fetch"] = {{"dir", f.dir},         {"files", f.files},
                      {"bytes", f.bytes},     {"unchanged_files", f.reused_files},
                      {"skipped", f.skipped}, {"skipped_examples", f.skipped_examples}};
  }
  event["connect_s"] = seconds(r.connect);
  event["upload_s"] = seconds(r.upload);
  event["run_s"] = seconds(r.run);
  if (r.fetch_stats || r.fetch != Clock::duration::zero()) {
    event["fetch_s"] = seconds(r.fetch);
  }
  event["total_s"] = seconds(r.total);
  // Remote text (detail, kept_dir) is not trusted to be UTF-8: replace what is not.
  m_printer.write(false, event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
  co_return;
}

asio::awaitable<void> JsonView::run_done(const std::vector<NodeResult>& results,
                                         Clock::duration total, int exit_status)
{
  std::map<std::string, std::size_t> states;
  for (const auto& r : results) {
    ++states[to_string(r.state)];
  }
  const json event{{"event", "summary"},
                   {"nodes", results.size()},
                   {"states", states},
                   {"exit_status", exit_status},
                   {"total_s", seconds(total)}};
  m_printer.write(false, event.dump() + "\n");
  co_return;
}

} // namespace dc::master
