#pragma once
// A test-only hostile worker: it holds the cluster key and speaks the protocol through the real
// dc::Channel and dc::server_handshake, answers every RUN with exit 0, and answers FETCH with
// whatever results bundle the test made by hand (raw_client.hpp builds manifests and zstd frames):
// paths outside the results dir, links, oversize bundles, lies about sizes. It lets a test drive
// the real master binary against results no honest worker would send.

#include "common/bytes.hpp"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace dc::test {

// What the fake worker sends back for a FETCH.
struct FakeResults {
  Bytes manifest; // raw manifest bytes (encode_raw_manifest), compressed by the worker
  std::uint64_t entries = 0, files = 0, bytes = 0; // BUNDLE_BEGIN's counts, as the test claims
  std::vector<Bytes> blobs; // compressed blobs sent after WANT, in order, whatever was wanted
};

class FakeWorker {
public:
  // Listens on 127.0.0.1:0 with the key at `key_path`.
  FakeWorker(const std::string& key_path, FakeResults results);
  ~FakeWorker(); // stops the listener and any session, joins the thread
  FakeWorker(const FakeWorker&) = delete;
  FakeWorker& operator=(const FakeWorker&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(m_port); }
  // Whether a master confirmed the results with BUNDLE_OK (it must not, for a hostile bundle).
  bool results_accepted() const { return m_accepted; }

  struct State; // the listener's io_context, key and script

private:
  std::unique_ptr<State> m_state;
  std::uint16_t m_port = 0;
  std::atomic<bool> m_accepted{false};
  std::thread m_thread;
};

} // namespace dc::test
