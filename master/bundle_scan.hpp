#pragma once
// The --send scan on a thread of its own: the master connects, handshakes and says HELLO to its
// nodes while it walks (and, cold, hashes) its files, and each worker meanwhile stats its last job
// dir. Node sessions wait for it after their handshake, before the view hears of them.

#include "common/async.hpp"
#include "master/run_plan.hpp"

#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace dc::master {

class BundleScan {
public:
  // Starts scanning plan.options.send (and its ignore rules, with the hash cache unless
  // --no-hash-cache). When done, on `ex`'s thread: sets plan.bundle and plan.blobs, or keeps the
  // exception the scan threw and calls `on_failure`; then wakes every waiter. Until then `ex`'s
  // io_context does not run out of work.
  BundleScan(const asio::any_io_executor& ex, RunPlan& plan, std::function<void()> on_failure);
  ~BundleScan(); // joins the thread (which saves the hash cache after handing the result over)
  BundleScan(const BundleScan&) = delete;
  BundleScan& operator=(const BundleScan&) = delete;

  bool done() const { return m_done; }
  // What the scan threw (a ConfigError for what cannot be sent), or null.
  std::exception_ptr failure() const { return m_failure; }
  // Returns once the scan is done, or after `at_most`, whichever comes first.
  awaitable<void> wait(Clock::duration at_most);

private:
  void finished(std::exception_ptr failure);

  RunPlan& m_plan;
  std::function<void()> m_on_failure;
  asio::any_io_executor m_work; // keeps the io_context running until the result is handed over
  bool m_done = false;
  std::exception_ptr m_failure;
  std::vector<asio::steady_timer*> m_waiters;
  std::thread m_thread;
};

} // namespace dc::master
