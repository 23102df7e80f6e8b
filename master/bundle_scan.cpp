#include "master/bundle_scan.hpp"

#include "common/log.hpp"
#include "common/signals_blocked.hpp"

#include <algorithm>
#include <future>
#include <utility>

namespace dc::master {

BundleScan::BundleScan(const asio::any_io_executor& ex, RunPlan& plan,
                       std::function<void()> on_failure)
    : m_plan(plan), m_on_failure(std::move(on_failure)),
      m_work(asio::prefer(ex, asio::execution::outstanding_work.tracked))
{
  // Everything the thread touches is its own until the result is posted to the io thread.
  const SignalsBlocked in_scan_threads; // inherited by the walk's and the cache's threads
  m_thread = std::thread([this, options = &plan.options] {
    try {
      // The hash cache loads (a file of ~100 bytes per entry) while the tree is walked.
      std::future<HashCache> loading;
      if (options->hash_cache) {
        loading =
            std::async(std::launch::async, [] { return HashCache(default_hash_cache_path()); });
      }
      std::optional<HashCache> hashes;
      auto bundle = std::make_unique<BundleSource>(
          scan_sources(options->send, options->ignore, [&]() -> HashCache* {
            if (loading.valid()) {
              hashes.emplace(loading.get());
            }
            return hashes ? &*hashes : nullptr;
          }));
      if (hashes) {
        log_debug("--send: %zu files read, %zu unchanged since the hash cache saw them",
                  bundle->files_read, hashes->hits());
      }
      if (bundle->ignored > 0) {
        log_debug("--send: %zu entries left out by ignore rules", bundle->ignored);
      }
      auto blobs = std::make_unique<BlobCompressor>(*bundle);
      asio::post(m_work, [this, bundle = std::move(bundle), blobs = std::move(blobs)]() mutable {
        m_plan.bundle = std::move(bundle);
        m_plan.blobs = std::move(blobs);
        finished(nullptr);
      });
      // While the nodes upload: a replaced cache file costs a flush (ext4 writes out a file
      // renamed over another). The destructor waits for it.
      if (hashes) {
        hashes->save();
      }
    } catch (...) {
      asio::post(m_work, [this, failure = std::current_exception()] { finished(failure); });
    }
  });
}

BundleScan::~BundleScan()
{
  if (m_thread.joinable()) {
    m_thread.join();
  }
}

void BundleScan::finished(std::exception_ptr failure)
{
  m_done = true;
  m_failure = std::move(failure);
  for (asio::steady_timer* waiter : m_waiters) {
    waiter->cancel();
  }
  if (m_failure && m_on_failure) {
    m_on_failure();
  }
  m_work = asio::any_io_executor(); // the io_context may run out of work now
}

awaitable<void> BundleScan::wait(Clock::duration at_most)
{
  if (m_done) {
    co_return;
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, at_most);
  m_waiters.push_back(&timer);
  co_await timer.async_wait(as_tuple(use_awaitable));
  m_waiters.erase(std::find(m_waiters.begin(), m_waiters.end(), &timer));
}

} // namespace dc::master
