#pragma once
// Printer: the only writer of the master's stdout, and of the tagged job output on its stderr.
//
// Job output arrives in chunks cut anywhere. The io_context side (one thread, never blocks) cuts
// it into whole lines, tags each as "label | text" and appends them, copied once, to a queue of
// large buffers; a writer thread empties the queue with one blocking write(2) per buffer. A
// stalled terminal therefore stalls only the writer thread: once more than `high_water` bytes
// wait, producers co_await wait_writable() (so TCP backpressure reaches the remote job), and the
// writer wakes them through asio::post when the queue drains below `low_water`.

#include "common/bytes.hpp"

#include <asio.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace dc::master {

struct PrinterLimits {
  // Bytes queued for the terminal before producers must wait: bounds memory (8 MiB is seconds
  // of a slow terminal, far more than a pipe buffer) while keeping the writer busy.
  std::size_t high_water = 8 << 20;
  // Waiting producers resume once the queue is below this; the gap avoids a wake-up per write.
  std::size_t low_water = 4 << 20;
  // A held unterminated line longer than this is printed early with the marker " [line split]",
  // so a job that never prints '\n' cannot grow our memory (per node and stream).
  std::size_t max_held_line = 256 << 10;
};

class Printer {
public:
  // Starts the writer thread for `out_fd` (job stdout, default 1) and `err_fd` (job stderr and
  // status, default 2); the fds are borrowed, not closed. Throws std::system_error if the thread
  // cannot start.
  Printer(asio::any_io_executor ex, int out_fd = 1, int err_fd = 2);
  // Writes everything queued and joins the writer thread; held partial lines are not printed
  // (call finish_node). Must outlive every coroutine suspended in wait_writable().
  ~Printer();
  Printer(const Printer&) = delete;
  Printer& operator=(const Printer&) = delete;

  // Replaces the queue limits (tests use small ones); does not throw.
  void set_limits(const PrinterLimits& limits);
  // Sets the label of each node index (a node without one is shown by its index), drawn in a
  // per-node color on the streams that ask for it; throws only std::bad_alloc.
  void set_labels(const std::vector<std::string>& labels, bool color_stdout = false,
                  bool color_stderr = false);

  // Queues the whole lines of `data` (job output of `node`) and holds its unterminated tail; never
  // blocks and drops the data once that stream is closed. Throws only std::bad_alloc.
  void output(std::size_t node, bool is_stderr, ByteView data);
  // Queues the held partial lines of `node` (stdout, then stderr) as "label | text [no newline]";
  // throws only std::bad_alloc.
  void finish_node(std::size_t node);
  // Queues `line` plus a newline for stderr, ordered after the output queued before it; throws
  // only std::bad_alloc.
  void status(std::string_view line);
  // Queues `bytes` as they are (views format their own text); dropped once that stream is
  // closed. Throws only std::bad_alloc.
  void write(bool is_stderr, std::string_view bytes);
  // Draws `line` as a progress bar on stderr: "\r", the line, "erase to end of line", no newline.
  // Any later output (either stream) first clears it. Throws only std::bad_alloc.
  void show_bar(std::string_view line);
  // Clears a bar that is shown; throws only std::bad_alloc.
  void clear_bar();

  // Returns at once unless more than high_water bytes are queued, else once the queue is below
  // low_water; does not throw.
  asio::awaitable<void> wait_writable();
  // Blocks the calling thread until everything queued has been written or dropped (end of run);
  // does not throw.
  void flush();
  // Runs `callback` on the io_context once stdout is closed (see stdout_closed()); set it before
  // output starts. Does not throw.
  void on_stdout_closed(std::function<void()> callback)
  {
    m_on_stdout_closed = std::move(callback);
  }
  // True once a write to stdout failed (EPIPE: `master … | head`); stdout output is dropped from
  // then on and the caller should end the run quietly. Thread-safe; does not throw.
  bool stdout_closed() const { return m_stdout_closed.load(std::memory_order_relaxed); }

private:
  std::function<void()> m_on_stdout_closed;
  struct Chunk {
    bool is_stderr = false;
    std::string bytes;
  };
  struct HeldTails {
    std::string out;
    std::string err;
  };

  template <typename Fill>
  void enqueue(bool is_stderr, std::size_t size_hint, Fill&& fill);
  std::string& tail_locked(bool is_stderr); // the buffer to append to, under m_mutex
  void hold(std::size_t node, bool is_stderr, std::string_view text);
  void print_held(std::size_t node, bool is_stderr, std::string_view marker);
  std::string& held(std::size_t node, bool is_stderr);
  const std::string& prefix(std::size_t node, bool is_stderr);
  bool closed(bool is_stderr) const;
  void write_loop();

  // io_context side only.
  asio::any_io_executor m_executor;
  asio::steady_timer m_writable; // never expires; cancelled (via post) to wake wait_writable()
  std::shared_ptr<bool> m_alive; // lets a wake-up posted by the writer outlive us harmlessly
  std::vector<std::string> m_prefixes[2]; // "label | " per node, for stdout and stderr
  std::vector<HeldTails> m_held;
  bool m_bar_shown = false; // a progress bar is on the last line of stderr
  const int m_out_fd;
  const int m_err_fd;

  // Shared with the writer thread, under m_mutex.
  std::mutex m_mutex;
  std::condition_variable m_work_ready; // writer: a chunk is queued, or stopping
  std::condition_variable m_idle;       // flush(): the queue is empty and nothing is in write(2)
  std::deque<Chunk> m_queue;
  std::vector<std::string> m_spare; // written buffers kept for reuse
  std::size_t m_queued_bytes = 0;   // in m_queue plus the chunk being written
  PrinterLimits m_limits;
  bool m_writing = false;
  bool m_waiters = false; // someone waits in wait_writable(): wake them below low_water
  bool m_stopping = false;

  std::atomic<bool> m_stdout_closed{false};
  std::atomic<bool> m_stderr_closed{false};
  std::thread m_writer; // last: starts once everything above exists
};

} // namespace dc::master
