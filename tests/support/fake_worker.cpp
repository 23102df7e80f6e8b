#include "tests/support/fake_worker.hpp"

#include "common/bundle_source.hpp"
#include "common/channel.hpp"
#include "common/handshake.hpp"
#include "common/key_file.hpp"
#include "common/messages.hpp"
#include "common/wire.hpp"
#include "tests/support/raw_client.hpp"

#include <asio.hpp>

namespace dc::test {

using asio::awaitable;
using asio::ip::tcp;

struct FakeWorker::State {
  asio::io_context ctx;
  tcp::acceptor acceptor{ctx};
  ClusterKey key;
  FakeResults results;
};

namespace {

awaitable<void> serve(tcp::socket socket, const ClusterKey& key, const FakeResults& results,
                      std::atomic<bool>& accepted)
{
  Channel channel(std::move(socket));
  const std::vector<const ClusterKey*> keys{&key};
  const ServerHandshakeOutcome outcome = co_await server_handshake(channel, keys);
  if (!outcome.ok) {
    co_return;
  }
  for (;;) {
    const std::optional<Record> record = co_await channel.receive();
    if (!record) {
      co_return;
    }
    switch (record->type) {
    case RecordType::hello: {
      Welcome w;
      w.worker = "fake";
      w.version = "0.0.0";
      w.session = channel.session_id();
      w.features = {"bundle", "fetch"};
      co_await channel.send(RecordType::welcome, dump_body(to_json(w)));
      break;
    }
    case RecordType::run: {
      ExitBody e;
      e.id = run_from(parse_body(record->body)).id;
      e.code = 0;
      e.reason = "exited";
      co_await channel.send(RecordType::exit, dump_body(to_json(e)));
      break;
    }
    case RecordType::fetch: {
      co_await channel.send(RecordType::fetch_reply, dump_body(to_json(FetchReplyBody{})));
      const Bytes z = zstd_frame(results.manifest);
      co_await channel.send(RecordType::bundle_begin,
                            dump_body(to_json(BundleBeginBody{results.entries, results.files,
                                                              results.bytes, z.size()})));
      for (const ByteView slice : split_slices(z)) {
        co_await channel.send(RecordType::manifest, slice);
      }
      co_await channel.send(RecordType::manifest_end, ByteView{});
      break;
    }
    case RecordType::want:
      for (const Bytes& blob : results.blobs) {
        for (const ByteView slice : split_slices(blob)) {
          co_await channel.send(RecordType::blob_data, slice);
        }
      }
      co_await channel.send(RecordType::bundle_end, ByteView{});
      break;
    case RecordType::bundle_ok:
      accepted = true;
      break;
    case RecordType::bye:
      co_await channel.send(RecordType::bye, ByteView{});
      channel.shutdown_send();
      co_return;
    default:
      break; // ERROR, WINDOW, PING...: a fake has nothing to say
    }
  }
}

awaitable<void> accept_loop(FakeWorker::State& s, std::atomic<bool>& accepted);

} // namespace

FakeWorker::FakeWorker(const std::string& key_path, FakeResults results)
    : m_state(std::make_unique<State>())
{
  init_sodium();
  m_state->key = load_cluster_key(key_path, false);
  m_state->results = std::move(results);
  const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), 0);
  m_state->acceptor.open(at.protocol());
  m_state->acceptor.bind(at);
  m_state->acceptor.listen();
  m_port = m_state->acceptor.local_endpoint().port();
  asio::co_spawn(m_state->ctx, accept_loop(*m_state, m_accepted), asio::detached);
  m_thread = std::thread([this] { m_state->ctx.run(); });
}

FakeWorker::~FakeWorker()
{
  m_state->ctx.stop();
  m_thread.join();
}

namespace {

awaitable<void> accept_loop(FakeWorker::State& s, std::atomic<bool>& accepted)
{
  for (;;) {
    tcp::socket socket = co_await s.acceptor.async_accept(asio::use_awaitable);
    asio::co_spawn(
        s.ctx,
        [&s, &accepted, socket = std::move(socket)]() mutable -> awaitable<void> {
          try {
            co_await serve(std::move(socket), s.key, s.results, accepted);
          } catch (const std::exception&) {
            // the master hung up on a hostile bundle: that is what the tests want to see
          }
        },
        asio::detached);
  }
}

} // namespace

} // namespace dc::test
