#include "master/printer.hpp"

#include <asio.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using dc::master::Printer;
using dc::master::PrinterLimits;

// A pipe owned by the test: the printer writes to `write_end`, the test reads `read_end`.
struct Pipe {
  int read_end = -1;
  int write_end = -1;

  Pipe()
  {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    read_end = fds[0];
    write_end = fds[1];
  }
  ~Pipe()
  {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  void close_read()
  {
    if (read_end >= 0) {
      ::close(read_end);
      read_end = -1;
    }
  }
  void close_write()
  {
    if (write_end >= 0) {
      ::close(write_end);
      write_end = -1;
    }
  }
  // Everything in the pipe right now (does not wait for more).
  std::string drain() const
  {
    const int flags = ::fcntl(read_end, F_GETFL);
    ::fcntl(read_end, F_SETFL, flags | O_NONBLOCK);
    std::string out;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(read_end, buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      out.append(buf, std::size_t(n));
    }
    ::fcntl(read_end, F_SETFL, flags);
    return out;
  }
};

// Reads a pipe on its own thread until EOF (the write end must be closed to finish).
class PipeReader {
public:
  explicit PipeReader(int fd) : m_thread([this, fd] { run(fd); }) {}
  ~PipeReader()
  {
    if (m_thread.joinable()) {
      m_thread.join();
    }
  }
  std::string take()
  {
    m_thread.join();
    return std::move(m_data);
  }

private:
  void run(int fd)
  {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) {
        return;
      }
      m_data.append(buf, std::size_t(n));
    }
  }
  std::string m_data;
  std::thread m_thread;
};

void out(Printer& printer, std::size_t node, std::string_view text, bool is_stderr = false)
{
  printer.output(node, is_stderr, dc::as_bytes(text));
}

std::vector<std::string> split_lines(const std::string& text)
{
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\n', start);
    if (end == std::string::npos) {
      FAIL_CHECK("unterminated last line: the printer writes whole lines only");
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

} // namespace

TEST_CASE("printer: whole lines are tagged with the node's label")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  printer.set_labels({"lab01", "[::1]:7000"});
  out(printer, 0, "hello\nworld\n");
  out(printer, 1, "x\n\ny\n");
  printer.flush();
  CHECK(o.drain() ==
        "lab01 | hello\nlab01 | world\n[::1]:7000 | x\n[::1]:7000 | \n[::1]:7000 | y\n");
  CHECK(e.drain().empty());
}

TEST_CASE("printer: a node without a label is shown by its index")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  printer.set_labels({"a"});
  out(printer, 2, "late\n");
  printer.flush();
  CHECK(o.drain() == "2 | late\n");
}

TEST_CASE("printer: a line cut across chunks is printed once, whole")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  printer.set_labels({"n"});
  out(printer, 0, "hel");
  out(printer, 0, "");
  printer.flush();
  CHECK(o.drain().empty()); // nothing until the newline
  out(printer, 0, "lo\nwor");
  out(printer, 0, "ld");
  out(printer, 0, "\n");
  printer.flush();
  CHECK(o.drain() == "n | hello\nn | world\n");
}

TEST_CASE("printer: finish_node prints held tails with the marker, on both streams")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  printer.set_labels({"n0", "n1"});
  out(printer, 0, "abc\ndef");
  out(printer, 0, "warn", true);
  out(printer, 1, "other\n");
  printer.finish_node(0);
  printer.finish_node(0); // idempotent: the tails are gone
  printer.finish_node(1); // nothing held
  printer.flush();
  CHECK(o.drain() == "n0 | abc\nn1 | other\nn0 | def [no newline]\n");
  CHECK(e.drain() == "n0 | warn [no newline]\n");
}

TEST_CASE("printer: interleaved chunks of two nodes never mix inside a line")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  printer.set_labels({"n0", "n1"});
  out(printer, 0, "aaa");
  out(printer, 1, "bbb");
  out(printer, 0, "aa\nA");
  out(printer, 1, "b\nB");
  out(printer, 1, "B\n");
  out(printer, 0, "A\n");
  printer.flush();
  CHECK(o.drain() == "n0 | aaaaa\nn1 | bbbb\nn1 | BB\nn0 | AA\n");
}

TEST_CASE("printer: stderr goes to its own fd, status lines follow the output")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  printer.set_labels({"n0"});
  out(printer, 0, "to out\n");
  out(printer, 0, "to err\n", true);
  printer.status("n0   ok    exit 0");
  out(printer, 0, "more out\n");
  printer.flush();
  CHECK(o.drain() == "n0 | to out\nn0 | more out\n");
  CHECK(e.drain() == "n0 | to err\nn0   ok    exit 0\n");
}

TEST_CASE("printer: status and output share one order when both fds are the same")
{
  asio::io_context ctx;
  Pipe p;
  Printer printer(ctx.get_executor(), p.write_end, p.write_end);
  printer.set_labels({"n0"});
  out(printer, 0, "one\n");
  out(printer, 0, "two\n", true);
  out(printer, 0, "three\n");
  printer.status("done");
  printer.flush();
  CHECK(p.drain() == "n0 | one\nn0 | two\nn0 | three\ndone\n");
}

TEST_CASE("printer: an endless line is printed in pieces once it exceeds max_held_line")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  PrinterLimits limits;
  limits.max_held_line = 8;
  printer.set_limits(limits);
  printer.set_labels({"n"});
  out(printer, 0, "12345");
  out(printer, 0, "6789");
  out(printer, 0, "ab\n");
  printer.flush();
  CHECK(o.drain() == "n | 123456789 [line split]\nn | ab\n");
}

namespace {

constexpr std::size_t k_nodes = 4;
constexpr std::size_t k_lines_per_node = 250'000; // 1M lines in all

// Feeds each node's numbered lines in chunks of odd sizes, interleaving nodes, and respects
// backpressure like a node session does.
asio::awaitable<void> feed_lines(Printer& printer)
{
  std::vector<std::string> texts(k_nodes);
  for (std::size_t node = 0; node < k_nodes; ++node) {
    for (std::size_t i = 0; i < k_lines_per_node; ++i) {
      texts[node] += "line " + std::to_string(i) + "\n";
    }
  }
  std::vector<std::size_t> offsets(k_nodes, 0);
  const std::size_t chunk_sizes[] = {1, 7, 4093, 65536, 100, 31};
  std::size_t turn = 0;
  for (bool more = true; more;) {
    more = false;
    for (std::size_t node = 0; node < k_nodes; ++node) {
      const std::size_t n =
          std::min(chunk_sizes[(turn++ + node) % 6], texts[node].size() - offsets[node]);
      printer.output(node, false,
                     dc::as_bytes(std::string_view(texts[node]).substr(offsets[node], n)));
      offsets[node] += n;
      more = more || offsets[node] < texts[node].size();
      co_await printer.wait_writable();
    }
  }
}

} // namespace

TEST_CASE("printer: 1M lines from 4 nodes arrive intact and in order per node")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  PipeReader reader(o.read_end);
  {
    Printer printer(ctx.get_executor(), o.write_end, e.write_end);
    PrinterLimits limits;
    limits.high_water = 1 << 20; // small, so the producer really waits on the reader thread
    limits.low_water = 256 << 10;
    printer.set_limits(limits);
    printer.set_labels({"n0", "n1", "n2", "n3"});
    bool done = false;
    asio::co_spawn(ctx, feed_lines(printer), [&](std::exception_ptr ex) {
      REQUIRE(!ex);
      done = true;
    });
    ctx.run();
    CHECK(done);
  }
  o.close_write();
  const std::string text = reader.take();
  std::vector<std::size_t> next(k_nodes, 0);
  std::size_t total = 0;
  bool all_good = true;
  for (const std::string& line : split_lines(text)) {
    ++total;
    const std::size_t node = std::size_t(line[1] - '0');
    const std::string expected =
        "n" + std::to_string(node) + " | line " + std::to_string(next[node]++);
    if (node >= k_nodes || line != expected) {
      all_good = false;
      FAIL_CHECK("unexpected line '" << line << "', wanted '" << expected << "'");
      break;
    }
  }
  CHECK(all_good);
  CHECK(total == k_nodes * k_lines_per_node);
  for (std::size_t node = 0; node < k_nodes; ++node) {
    CHECK(next[node] == k_lines_per_node);
  }
}

TEST_CASE("printer: EPIPE on stdout sets stdout_closed and drops stdout only")
{
  std::signal(SIGPIPE, SIG_IGN); // as the master does
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  printer.set_labels({"n0"});
  out(printer, 0, "first\n");
  printer.flush();
  CHECK(o.drain() == "n0 | first\n");
  CHECK_FALSE(printer.stdout_closed());
  o.close_read(); // `| head` exits
  out(printer, 0, "second\n");
  printer.flush();
  CHECK(printer.stdout_closed());
  out(printer, 0, "third\npartial");
  printer.finish_node(0);
  out(printer, 0, "still on stderr\n", true);
  printer.status("summary");
  printer.flush();
  CHECK(e.drain() == "n0 | still on stderr\nsummary\n");
}

TEST_CASE("printer: a non-blocking stdout is written in full (EAGAIN waits in poll)")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  REQUIRE(::fcntl(o.write_end, F_SETFL, ::fcntl(o.write_end, F_GETFL) | O_NONBLOCK) == 0);
  PipeReader reader(o.read_end);
  std::string line(999, 'x');
  line += '\n';
  {
    Printer printer(ctx.get_executor(), o.write_end, e.write_end);
    printer.set_labels({"n"});
    for (int i = 0; i < 2000; ++i) { // ~2 MB, far over the 64 KiB pipe buffer
      out(printer, 0, line);
    }
  } // the destructor writes everything
  o.close_write();
  const std::string text = reader.take();
  CHECK(text.size() == 2000 * (line.size() + 4));
  CHECK(split_lines(text).size() == 2000);
}

namespace {

asio::awaitable<void> wait_then_mark(Printer& printer, std::atomic<bool>& returned)
{
  co_await printer.wait_writable();
  returned = true;
}

} // namespace

TEST_CASE("printer: wait_writable holds producers while the terminal is stalled")
{
  asio::io_context ctx;
  Pipe o;
  Pipe e;
  Printer printer(ctx.get_executor(), o.write_end, e.write_end);
  PrinterLimits limits;
  limits.high_water = 256 << 10;
  limits.low_water = 128 << 10;
  printer.set_limits(limits);
  printer.set_labels({"n"});

  std::string block;
  for (int i = 0; i < 1000; ++i) {
    block.append(99, static_cast<char>('a' + i % 26)); // (operator+ trips a g++ 12 false
    block += '\n';                                     //  positive under -Warray-bounds)
  }
  for (int i = 0; i < 10; ++i) { // ~1 MB: 64 KiB fill the pipe, the rest stays queued
    out(printer, 0, block);
  }
  std::atomic<bool> returned = false;
  asio::co_spawn(ctx, wait_then_mark(printer, returned), asio::detached);
  ctx.run_for(std::chrono::milliseconds(300));
  CHECK_FALSE(returned); // nobody reads the pipe: the producer stays suspended

  // A second producer arriving now waits too.
  std::atomic<bool> second = false;
  asio::co_spawn(ctx, wait_then_mark(printer, second), asio::detached);
  ctx.run_for(std::chrono::milliseconds(50));
  CHECK_FALSE(second);

  const std::size_t expected = 10 * 1000 * (100 + 4);
  std::string text;
  std::thread drainer([&] {
    char buf[65536];
    while (text.size() < expected) {
      const ssize_t n = ::read(o.read_end, buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      text.append(buf, std::size_t(n));
    }
  });
  ctx.run(); // returns once both coroutines finished: the writer woke them via post
  drainer.join();
  CHECK(returned);
  CHECK(second);
  CHECK(text.size() == expected);

  // Below the high-water mark it returns at once.
  std::atomic<bool> third = false;
  ctx.restart();
  asio::co_spawn(ctx, wait_then_mark(printer, third), asio::detached);
  ctx.poll();
  CHECK(third);
}

TEST_CASE("printer: a progress bar is erased before any later output, on either stream")
{
  asio::io_context ctx;
  Pipe o, e;
  {
    Printer printer(ctx.get_executor(), o.write_end, e.write_end);
    printer.show_bar("A");
    printer.show_bar("B");
    printer.write(false, "hello\n");
    printer.status("summary");
    printer.clear_bar(); // nothing shown: nothing written
    printer.show_bar("bar");
    printer.clear_bar();
    printer.flush();
  }
  CHECK(o.drain() == "hello\n");
  CHECK(e.drain() == "\r\x1b[KA\r\x1b[K\r\x1b[KB\r\x1b[Ksummary\n\r\x1b[Kbar\r\x1b[K");
}
