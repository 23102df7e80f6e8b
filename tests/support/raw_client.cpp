#include "tests/support/raw_client.hpp"

#include "common/handshake.hpp"

#include <sodium.h>
#include <zstd.h>

#include <future>
#include <stdexcept>

namespace dc::test {
namespace {

awaitable<void> do_handshake(Channel& channel, const ClusterKey& key)
{
  co_await client_handshake(channel, key);
}

awaitable<void> do_send(Channel& channel, RecordType type, Bytes body)
{
  co_await channel.send(type, body);
  co_await channel.drain();
}

awaitable<bool> do_send_raw(Channel& channel, Bytes bytes)
{
  auto [ec, n] =
      co_await asio::async_write(channel.socket(), asio::buffer(bytes), as_tuple(use_awaitable));
  (void)n;
  co_return !ec;
}

awaitable<Received> do_receive(Channel& channel)
{
  Received r;
  try {
    std::optional<Record> record = co_await channel.receive();
    if (record) {
      r.kind = Received::Kind::record;
      r.record = std::move(*record);
    } else {
      r.kind = Received::Kind::eof;
    }
  } catch (const std::system_error& e) {
    r.kind = Received::Kind::error;
    r.error = e.code() == asio::error::eof ? "eof inside a record" : e.code().message();
  } catch (const std::exception& e) {
    r.kind = Received::Kind::error;
    r.error = e.what();
  }
  co_return r;
}

awaitable<RawRead> do_read_raw(tcp::socket& socket)
{
  RawRead out;
  std::array<std::uint8_t, 4096> buf;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), as_tuple(use_awaitable));
    out.bytes.insert(out.bytes.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    if (ec == asio::error::operation_aborted) {
      co_return out; // our time limit
    }
    if (ec) {
      out.closed = true; // EOF or reset
      co_return out;
    }
  }
}

tcp::socket connect_to(asio::io_context& ctx, const std::string& address)
{
  const auto [host, port] = split_address(address);
  tcp::socket socket(ctx);
  socket.connect(tcp::endpoint(asio::ip::make_address(host), port));
  return socket;
}

} // namespace

std::pair<std::string, std::uint16_t> split_address(const std::string& address)
{
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    throw std::invalid_argument("address without port: " + address);
  }
  return {address.substr(0, colon),
          static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

std::string UntilClosed::first_error_code() const
{
  for (const Record& r : records) {
    if (r.type == RecordType::error) {
      try {
        return error_from(parse_body(r.body)).code;
      } catch (const std::exception&) {
        return "<unparsable ERROR>";
      }
    }
  }
  return "";
}

RawClient::RawClient(const std::string& address, const std::string& key_path)
    : RawClient(address, (init_sodium(), load_cluster_key(key_path, false)))
{
}

RawClient::RawClient(const std::string& address, ClusterKey key) : m_key(std::move(key))
{
  init_sodium();
  m_channel = std::make_unique<Channel>(connect_to(m_ctx, address));
}

RawClient::~RawClient()
{
  close();
}

template <typename T>
T RawClient::drive(asio::awaitable<T> op, std::chrono::milliseconds timeout, bool& timed_out)
{
  auto result = asio::co_spawn(m_ctx, std::move(op), asio::use_future);
  m_ctx.restart();
  m_ctx.run_for(timeout);
  timed_out = false;
  if (result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    timed_out = true;
    std::error_code ignored;
    m_channel->socket().cancel(ignored); // the pending operation ends with operation_aborted
    m_ctx.restart();
    m_ctx.run();
  }
  return result.get();
}

void RawClient::handshake(std::chrono::milliseconds timeout)
{
  bool timed_out = false;
  try {
    drive(do_handshake(*m_channel, m_key), timeout, timed_out);
  } catch (const std::system_error&) {
    if (timed_out) {
      throw std::runtime_error("handshake timed out");
    }
    throw;
  }
}

Welcome RawClient::hello(const std::string& name)
{
  Hello h;
  h.client = "distcomp raw test client";
  h.name = name;
  return hello(h);
}

Welcome RawClient::hello(const Hello& h)
{
  send_json(RecordType::hello, to_json(h));
  const Received r = receive();
  if (!r.is(RecordType::welcome)) {
    throw std::runtime_error("expected WELCOME, got " + (r.kind == Received::Kind::record
                                                             ? std::string(to_string(r.record.type))
                                                             : "no record: " + r.error));
  }
  return welcome_from(parse_body(r.record.body));
}

void RawClient::send(RecordType type, ByteView body)
{
  bool timed_out = false;
  drive(do_send(*m_channel, type, Bytes(body.begin(), body.end())), std::chrono::seconds(10),
        timed_out);
}

bool RawClient::send_raw(ByteView bytes)
{
  bool timed_out = false;
  return drive(do_send_raw(*m_channel, Bytes(bytes.begin(), bytes.end())), std::chrono::seconds(10),
               timed_out) &&
         !timed_out;
}

Received RawClient::receive(std::chrono::milliseconds timeout)
{
  bool timed_out = false;
  Received r = drive(do_receive(*m_channel), timeout, timed_out);
  if (timed_out && r.kind != Received::Kind::record) {
    r.kind = Received::Kind::timeout;
  }
  return r;
}

UntilClosed RawClient::until_closed(std::chrono::milliseconds timeout)
{
  UntilClosed out;
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return out;
    }
    Received r = receive(left);
    switch (r.kind) {
    case Received::Kind::record:
      out.records.push_back(std::move(r.record));
      break;
    case Received::Kind::eof:
      out.closed = true;
      out.how = "eof";
      return out;
    case Received::Kind::error:
      out.closed = true;
      out.how = r.error;
      return out;
    case Received::Kind::timeout:
      return out;
    }
  }
}

RawRead RawClient::read_raw_until_closed(std::chrono::milliseconds timeout)
{
  bool timed_out = false;
  return drive(do_read_raw(m_channel->socket()), timeout, timed_out);
}

void RawClient::shutdown_send()
{
  m_channel->shutdown_send();
}

void RawClient::close()
{
  if (m_channel) {
    m_channel->close();
    m_ctx.restart();
    m_ctx.run_for(std::chrono::milliseconds(100)); // let the detached writer see the close
  }
}

// --- hand-made bundles ---------------------------------------------------------------------

Hash content_hash(std::string_view content)
{
  Hash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(content.data()),
                     content.size(), nullptr, 0);
  return h;
}

RawEntry file_entry(const std::string& path, std::string_view content)
{
  RawEntry e;
  e.kind = 2;
  e.path = path;
  e.size = content.size();
  e.hash = content_hash(content);
  return e;
}

Bytes encode_raw_manifest(const std::vector<RawEntry>& entries, std::optional<std::uint32_t> files)
{
  std::uint32_t file_count = 0;
  for (const auto& e : entries) {
    file_count += e.kind == 2 ? 1 : 0;
  }
  Bytes out(k_manifest_magic.begin(), k_manifest_magic.end());
  put_be<std::uint32_t>(out, static_cast<std::uint32_t>(entries.size()));
  put_be<std::uint32_t>(out, files.value_or(file_count));
  for (const auto& e : entries) {
    out.push_back(e.kind);
    out.push_back(e.mode);
    put_be<std::int64_t>(out, 1'700'000'000); // mtime_s
    put_be<std::uint32_t>(out, 0);            // mtime_ns
    put_be<std::uint16_t>(out, static_cast<std::uint16_t>(e.path.size()));
    put_bytes(out, as_bytes(e.path));
    if (e.kind == 2) {
      put_be<std::uint64_t>(out, e.size);
      put_bytes(out, e.hash);
    }
  }
  return out;
}

Bytes zstd_frame(ByteView data, int level)
{
  Bytes out(ZSTD_compressBound(data.size()));
  const std::size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n)) {
    throw std::runtime_error(std::string("ZSTD_compress: ") + ZSTD_getErrorName(n));
  }
  out.resize(n);
  return out;
}

Bytes zstd_zero_bomb(std::uint64_t n)
{
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 20); // the worker allows 1 MiB for small files
  const Bytes zeros(std::size_t{1} << 20, 0);
  Bytes out;
  Bytes chunk(ZSTD_CStreamOutSize());
  std::uint64_t left = n;
  for (;;) {
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(left, zeros.size()));
    left -= take;
    ZSTD_inBuffer in{zeros.data(), take, 0};
    const ZSTD_EndDirective mode = left == 0 ? ZSTD_e_end : ZSTD_e_continue;
    for (;;) {
      ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
      const std::size_t rc = ZSTD_compressStream2(cctx, &o, &in, mode);
      if (ZSTD_isError(rc)) {
        ZSTD_freeCCtx(cctx);
        throw std::runtime_error(std::string("ZSTD_compressStream2: ") + ZSTD_getErrorName(rc));
      }
      out.insert(out.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(o.pos));
      if (mode == ZSTD_e_end ? rc == 0 : in.pos == in.size) {
        break;
      }
    }
    if (left == 0) {
      break;
    }
  }
  ZSTD_freeCCtx(cctx);
  return out;
}

Received send_bundle(RawClient& client, const std::vector<RawEntry>& entries, ByteView blobs,
                     std::optional<BundleBeginBody> declared)
{
  const Bytes zmanifest = zstd_frame(encode_raw_manifest(entries));
  if (!declared) {
    declared = BundleBeginBody{};
    declared->entries = entries.size();
    for (const auto& e : entries) {
      declared->files += e.kind == 2 ? 1 : 0;
      declared->bytes += e.kind == 2 ? e.size : 0;
    }
    declared->manifest_zbytes = zmanifest.size();
  }
  client.send_json(RecordType::bundle_begin, to_json(*declared));
  for (std::size_t at = 0; at < zmanifest.size(); at += k_max_body_size) {
    client.send(RecordType::manifest,
                ByteView(zmanifest).subspan(at, std::min(k_max_body_size, zmanifest.size() - at)));
  }
  client.send(RecordType::manifest_end, ByteView{});
  Received r = client.receive();
  if (!r.is(RecordType::want)) {
    return r;
  }
  try {
    for (std::size_t at = 0; at < blobs.size(); at += k_max_body_size) {
      client.send(RecordType::blob_data,
                  blobs.subspan(at, std::min(k_max_body_size, blobs.size() - at)));
    }
    client.send(RecordType::bundle_end, ByteView{});
  } catch (const std::system_error&) {
    // The worker refused the bundle part-way and closed: its ERROR is still to be read.
  }
  return client.receive();
}

} // namespace dc::test
