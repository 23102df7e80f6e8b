#include "master/connect.hpp"

#include "common/handshake.hpp"
#include "common/log.hpp"

namespace dc::master {

awaitable<tcp::resolver::results_type> resolve_peer(const Peer& peer, Clock::duration limit)
{
  // An address literal needs no lookup: getaddrinfo would still read /etc/hosts and friends, on
  // asio's one resolver thread, one node after another.
  std::error_code not_literal;
  const auto literal = asio::ip::make_address(peer.host, not_literal);
  if (!not_literal) {
    co_return tcp::resolver::results_type::create(tcp::endpoint(literal, peer.port), peer.host,
                                                  std::to_string(peer.port));
  }
  const auto ex = co_await asio::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(ex);
  asio::steady_timer resolve_limit(ex, limit);
  resolve_limit.async_wait([resolver](std::error_code ec) {
    if (!ec) {
      resolver->cancel();
    }
  });
  auto [ec, endpoints] = co_await resolver->async_resolve(peer.host, std::to_string(peer.port),
                                                          as_tuple(use_awaitable));
  resolve_limit.cancel();
  if (ec == asio::error::operation_aborted) {
    throw ConnectionLost("name lookup timed out");
  }
  if (ec) {
    throw std::system_error(ec, "cannot resolve " + peer.host);
  }
  co_return endpoints;
}

awaitable<Welcome> open_session(Channel& channel, const tcp::resolver::results_type& endpoints,
                                const ClusterKey& key, const Hello& hello)
{
  co_await asio::async_connect(channel.socket(), endpoints, use_awaitable);
  std::error_code ignored;
  channel.socket().set_option(tcp::no_delay(true), ignored);
  co_await client_handshake(channel, key);
  // Bodies go in named locals: g++ 12 mishandles some temporaries of co_await expressions.
  const std::string hello_body = dump_body(to_json(hello));
  co_await channel.send(RecordType::hello, hello_body);
  const Bytes welcome = co_await receive_body(channel, RecordType::welcome);
  co_return welcome_from(parse_body(welcome));
}

awaitable<Bytes> receive_body(Channel& channel, RecordType wanted)
{
  for (;;) {
    std::optional<Record> record = co_await channel.receive();
    if (!record) {
      throw ConnectionLost(std::string("connection closed before ") + to_string(wanted));
    }
    if (record->type == wanted) {
      co_return std::move(record->body);
    }
    switch (record->type) {
    case RecordType::ping:
      channel.post(RecordType::pong, record->body);
      continue;
    case RecordType::pong:
      continue;
    case RecordType::error:
      throw RemoteError(error_from(parse_body(record->body)));
    case RecordType::bye:
      throw ConnectionLost("worker ended the session");
    default:
      throw ProtocolError(std::string("expected ") + to_string(wanted) + ", got " +
                          to_string(record->type));
    }
  }
}

awaitable<void> close_session(Channel& channel, const std::string& label)
{
  co_await channel.send(RecordType::bye, ByteView{});
  for (;;) {
    std::optional<Record> record = co_await channel.receive();
    if (!record || record->type == RecordType::bye) {
      break;
    }
    if (record->type == RecordType::error) {
      const ErrorBody e = error_from(parse_body(record->body));
      log_warn("%s: worker: %s", label.c_str(), escape_for_log(e.msg).c_str());
    }
  }
  channel.shutdown_send();
}

} // namespace dc::master
