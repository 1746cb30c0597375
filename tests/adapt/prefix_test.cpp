// prefix: round trips over unix and TCP sockets, the exact wire format of every header
// size and byte order, size limits both ways, reads split at every byte, buffering,
// timeouts and cancellation that lose no byte, and detach-then-continue.
#include "strata/adapt/prefix.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "strata/adapt/crlf.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/udp.hpp"
#include "strata/transport/unix.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "support/mem_stream.hpp"
#include "support/memory.hpp"

using namespace std::chrono_literals;

// -- the shared message conformance suite (traits outside the anonymous namespace: see
// conformance.hpp) --------------------------------------------------------------------

namespace strata::test {
namespace prefix_conformance {

struct over_unix {
  using message_type = prefix<uds::stream>;
  static constexpr std::size_t max_message = 1 << 20;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<message_type, message_type>>> make_pair(deadline) {
    auto p = uds::stream::pair();
    if (!p) co_return unexpected(p.error());
    co_return std::pair<message_type, message_type>{message_type(std::move(p->first)),
                                                    message_type(std::move(p->second))};
  }
};

// Byte-at-a-time reads and writes in memory: every frame arrives split at every byte.
struct over_mem_bytewise {
  using message_type = prefix<mem_stream>;
  static constexpr std::size_t max_message = 4096;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<message_type, message_type>>> make_pair(deadline) {
    mem_options o{.max_read_chunk = 1, .max_write_chunk = 1};
    auto [a, b] = mem_stream::pair(o, o);
    prefix_options po{.header_bytes = 2, .byte_order = std::endian::little, .max_message = max_message};
    co_return std::pair<message_type, message_type>{message_type(std::move(a), po),
                                                    message_type(std::move(b), po)};
  }
};

using message_types = ::testing::Types<over_unix, over_mem_bytewise>;
INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, message_conformance, message_types);

}  // namespace prefix_conformance
}  // namespace strata::test

namespace strata {
namespace {

// -- compile-time checks ---------------------------------------------------------------

static_assert(prefix<tcp::stream>::capabilities.unit == unit::message);
static_assert(prefix<tcp::stream>::capabilities.reliable);
static_assert(prefix<tcp::stream>::capabilities.ordered);
static_assert(prefix<tcp::stream>::capabilities.connection == connection::based);
static_assert(prefix<tcp::stream>::capabilities.domain == domain::net);
static_assert(prefix<tcp::stream>::capabilities.congestion_controlled);
static_assert(prefix<tcp::stream>::capabilities.max_message == 1 << 20);
static_assert(prefix<uds::stream>::capabilities.domain == domain::ipc);
static_assert(!prefix<uds::stream>::capabilities.fd_passing);
static_assert(message_socket<prefix<tcp::stream>>);
static_assert(message_socket<prefix<any_stream>>);
static_assert(!stacks_on<prefix<tcp::stream>, prefix_layer>);  // messages are not a stream
static_assert(!byte_stream<prefix<tcp::stream>>);
// CTAD with designated options, as in DESIGN §8.
static_assert(
    std::is_same_v<decltype(prefix{std::declval<tcp::stream>(), {.header_bytes = 4}}), prefix<tcp::stream>>);

// -- helpers ---------------------------------------------------------------------------

deadline soon() { return deadline::after(5s); }

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = as_bytes(s);
  return {b.begin(), b.end()};
}

std::vector<std::byte> frame(const prefix_options& o, std::string_view payload) {
  std::array<std::byte, 8> header;
  auto n = encode_prefix_header(o, payload.size(), header);
  EXPECT_TRUE(n);
  std::vector<std::byte> out(header.begin(), header.begin() + static_cast<std::ptrdiff_t>(n ? *n : 0));
  auto p = as_bytes(payload);
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string text(std::span<const std::byte> b) { return std::string(as_text(b)); }

/// script_stream serves scripted chunks to read_some (one chunk, or what fits of it, per
/// call; then end_of_stream) and records writes: a deterministic lower layer that also
/// counts calls, so tests can check buffering and one-write-per-message.
struct script_stream {
  static constexpr properties capabilities = tcp::stream::capabilities;

  script_stream() = default;
  explicit script_stream(std::vector<std::vector<std::byte>> c) : chunks(std::move(c)) {}

  std::vector<std::vector<std::byte>> chunks;
  std::size_t next = 0;
  std::size_t offset = 0;
  int reads = 0;
  int writes = 0;
  std::vector<std::byte> written;

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline) {
    ++reads;
    if (next == chunks.size()) co_return errc::end_of_stream;
    auto& c = chunks[next];
    auto n = std::min(buf.size(), c.size() - offset);
    std::copy_n(c.begin() + static_cast<std::ptrdiff_t>(offset), n, buf.begin());
    offset += n;
    if (offset == c.size()) {
      ++next;
      offset = 0;
    }
    co_return n;
  }
  task<result<void>> write(const_buffers bufs, deadline) {
    ++writes;
    bufs.copy_to(written);
    co_return result<void>{};
  }
  task<result<void>> shutdown_write(deadline) { co_return result<void>{}; }
  task<result<void>> close(deadline) { co_return result<void>{}; }
};

task<result<std::pair<tcp::stream, tcp::stream>>> tcp_pair() {
  auto l = tcp::listener::bind("127.0.0.1:0");
  if (!l) co_return unexpected(l.error());
  auto where = l->local_address();
  if (!where) co_return unexpected(where.error());
  // The kernel completes the handshake from the backlog, so connect-then-accept is fine.
  auto c = co_await tcp::connect(*where, soon());
  if (!c) co_return unexpected(c.error());
  auto s = co_await l->accept(soon());
  if (!s) co_return unexpected(s.error());
  co_return std::pair{std::move(*c), std::move(*s)};
}

// Sends `messages` on `a` and expects them in order on `b`.
template <class A, class B>
task<void> expect_round_trip(A& a, B& b, const std::vector<std::string>& messages) {
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn([](A& a, const std::vector<std::string>& messages) -> task<void> {
      for (const auto& m : messages) {
        auto r = co_await a.send(as_bytes(m), soon());
        EXPECT_TRUE(r) << r.error().message();
        if (!r) co_return;
      }
    }(a, messages));
    std::vector<std::byte> buf(1 << 20);
    for (const auto& m : messages) {
      auto n = co_await b.recv(buf, soon());
      EXPECT_TRUE(n) << n.error().message();
      if (!n) co_return;
      EXPECT_EQ(*n, m.size());
      EXPECT_TRUE(text(std::span(buf).first(*n)) == m);
    }
  });
}

// -- round trips -----------------------------------------------------------------------

TEST(Prefix, RoundTripUnix) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    prefix a{std::move(p->first)};
    prefix b{std::move(p->second)};
    std::vector<std::string> messages{"hello", "", "x", std::string(70000, 'q'), "last"};
    co_await expect_round_trip(a, b, messages);
    co_await expect_round_trip(b, a, messages);
    // Half-close at a message boundary: the peer reads end_of_stream, sticky.
    EXPECT_TRUE(co_await a.shutdown_write(soon()));
    std::array<std::byte, 16> buf;
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::end_of_stream);
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::end_of_stream);
    // Socket close drains the peer until its end: close the side whose peer finished first.
    EXPECT_TRUE(co_await b.close(soon()));
    EXPECT_TRUE(co_await a.close(soon()));
  }());
}

TEST(Prefix, RoundTripTcp) {
  run([]() -> task<void> {
    auto p = co_await tcp_pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    prefix a{std::move(p->first), {.header_bytes = 4}};
    prefix b{std::move(p->second), {.header_bytes = 4}};
    // Facts of the layers below reach the top through strata::query.
    auto peer = query<fact::peer_address>(a);
    EXPECT_TRUE(peer);
    if (!peer) co_return;
    EXPECT_EQ(peer->port(), query<fact::local_address>(b)->port());
    EXPECT_EQ(query<fact::max_message>(a).value(), std::size_t{1} << 20);
    EXPECT_EQ(query<fact::peer_credentials>(a).error(), errc::not_supported);
    std::vector<std::string> messages;
    for (int i = 0; i < 200; ++i)
      messages.push_back(std::string(static_cast<std::size_t>(i * 37 % 3000), 'a' + i % 26));
    messages.push_back(std::string(1 << 20, 'z'));  // exactly max_message
    co_await expect_round_trip(a, b, messages);
    co_await expect_round_trip(b, a, messages);
    EXPECT_TRUE(co_await a.shutdown_write(soon()));
    EXPECT_TRUE(co_await b.close(soon()));
    EXPECT_TRUE(co_await a.close(soon()));
  }());
}

TEST(Prefix, GatherListIsOneWriteWithoutCopy) {
  run([]() -> task<void> {
    prefix p{script_stream{}, {.header_bytes = 2}};
    std::array<const_buffer, 3> parts{as_bytes("ab"), as_bytes(""), as_bytes("cde")};
    EXPECT_TRUE(co_await p.send(std::span<const const_buffer>(parts), soon()));
    // More parts than the inline gather array holds.
    std::vector<const_buffer> many(20, as_bytes("z"));
    EXPECT_TRUE(co_await p.send(many, soon()));
    EXPECT_EQ(p.next_layer().writes, 2);
    auto expected = frame({.header_bytes = 2}, "abcde");
    auto second = frame({.header_bytes = 2}, std::string(20, 'z'));
    expected.insert(expected.end(), second.begin(), second.end());
    EXPECT_EQ(p.next_layer().written, expected);
  }());
}

// -- wire format -----------------------------------------------------------------------

TEST(Prefix, WireBytesEveryHeaderSizeAndOrder) {
  for (std::size_t hb = 1; hb <= 8; ++hb) {
    for (auto order : {std::endian::big, std::endian::little}) {
      SCOPED_TRACE(testing::Message()
                   << "header_bytes=" << hb << " little=" << (order == std::endian::little));
      prefix_options o{.header_bytes = hb, .byte_order = order};
      // A length using two header bytes where possible (0x0102 = 258), else 0xfe.
      std::size_t len = hb >= 2 ? 0x0102 : 0xfe;
      std::vector<std::byte> want(hb, std::byte{0});
      if (hb >= 2) {
        want[order == std::endian::big ? hb - 1 : 0] = std::byte{0x02};
        want[order == std::endian::big ? hb - 2 : 1] = std::byte{0x01};
      } else {
        want[0] = std::byte{0xfe};
      }
      std::string payload(len, 'p');
      auto payload_bytes = as_bytes(payload);
      want.insert(want.end(), payload_bytes.begin(), payload_bytes.end());

      run([](prefix_options o, std::vector<std::byte> want, std::string payload) -> task<void> {
        // Sending produces exactly these bytes...
        auto p = uds::stream::pair();
        EXPECT_TRUE(p);
        if (!p) co_return;
        prefix a{std::move(p->first), o};
        auto& raw = p->second;
        EXPECT_TRUE(co_await a.send(as_bytes(payload), soon()));
        std::vector<std::byte> got(want.size());
        EXPECT_TRUE(co_await read_exact(raw, got, soon()));
        EXPECT_EQ(got, want);
        // ...and receiving them yields the payload.
        EXPECT_TRUE(co_await raw.write(const_buffer(want), soon()));
        std::vector<std::byte> buf(payload.size());
        auto n = co_await a.recv(buf, soon());
        EXPECT_TRUE(n);
        EXPECT_EQ(n ? *n : 0, payload.size());
        EXPECT_EQ(text(buf), payload);
      }(o, want, payload));
    }
  }
}

TEST(Prefix, EncodeLimits) {
  std::array<std::byte, 8> h;
  EXPECT_TRUE(encode_prefix_header({.header_bytes = 1}, 255, h));
  EXPECT_EQ(encode_prefix_header({.header_bytes = 1}, 256, h).error(), errc::message_too_large);
  EXPECT_EQ(encode_prefix_header({.header_bytes = 2}, 65535, h).value(), 2u);
  EXPECT_EQ(encode_prefix_header({.header_bytes = 2}, 65536, h).error(), errc::message_too_large);
  EXPECT_EQ(encode_prefix_header({.header_bytes = 3, .max_message = 10}, 11, h).error(),
            errc::message_too_large);
  EXPECT_EQ(encode_prefix_header({.header_bytes = 0}, 1, h).error(), errc::invalid_argument);
  EXPECT_EQ(prefix_limit({.header_bytes = 1}), 255u);
  EXPECT_EQ(prefix_limit({.header_bytes = 8, .max_message = SIZE_MAX}), SIZE_MAX);
  // An 8-byte header holding 2^64-1: the decoder refuses it as too large, no overflow.
  prefix_decoder d({.header_bytes = 8, .max_message = SIZE_MAX - 1});
  std::array<std::byte, 8> all_ones;
  all_ones.fill(std::byte{0xff});
  auto step = d.decode(all_ones);
  EXPECT_EQ(step.state, decode_step::status::error);
  EXPECT_EQ(step.error, errc::message_too_large);
}

TEST(Prefix, InvalidOptions) {
  EXPECT_EQ(validate(prefix_options{.header_bytes = 0}).error(), errc::invalid_argument);
  EXPECT_EQ(validate(prefix_options{.header_bytes = 9}).error(), errc::invalid_argument);
  EXPECT_TRUE(validate(prefix_options{.header_bytes = 8}));
  EXPECT_EQ(prefix<uds::stream>::validate({.header_bytes = 9}).error(), errc::invalid_argument);
  run([]() -> task<void> {
    prefix p{script_stream{{bytes_of("\x01\x02")}}, {.header_bytes = 9}};
    std::array<std::byte, 8> buf;
    EXPECT_EQ((co_await p.send(as_bytes("x"), soon())).error(), errc::invalid_argument);
    EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::invalid_argument);
    EXPECT_EQ(p.next_layer().writes, 0);
    EXPECT_EQ(p.next_layer().reads, 0);
  }());
}

// -- limits ----------------------------------------------------------------------------

TEST(Prefix, OversizeSendSendsNothing) {
  run([]() -> task<void> {
    prefix p{script_stream{}, {.header_bytes = 4, .max_message = 10}};
    EXPECT_EQ((co_await p.send(as_bytes("01234567890"), soon())).error(), errc::message_too_large);
    EXPECT_TRUE(co_await p.send(as_bytes("0123456789"), soon()));
    EXPECT_EQ(p.next_layer().written, frame({.header_bytes = 4}, "0123456789"));

    // The header's own limit: one byte counts up to 255.
    prefix q{script_stream{}, {.header_bytes = 1}};
    EXPECT_EQ((co_await q.send(as_bytes(std::string(256, 'x')), soon())).error(), errc::message_too_large);
    EXPECT_EQ(q.next_layer().writes, 0);
    EXPECT_TRUE(co_await q.send(as_bytes(std::string(255, 'x')), soon()));
    EXPECT_EQ(q.runtime_capabilities().max_message, 255u);
  }());
}

TEST(Prefix, OversizeRecvIsSticky) {
  run([]() -> task<void> {
    prefix_options o{.header_bytes = 2, .max_message = 10};
    auto big = frame({.header_bytes = 2}, "01234567890");
    auto ok = frame(o, "fine");
    std::vector<std::byte> buf(100);
    prefix p{script_stream{{ok, big, ok}}, o};
    auto n = co_await p.recv(buf, soon());
    EXPECT_TRUE(n && *n == 4);
    EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::message_too_large);
    // No resynchronisation: the direction stays failed although a good frame follows.
    EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::message_too_large);
    EXPECT_EQ(p.next_layer().reads, 2);
    // Sending still works: only the read direction failed.
    EXPECT_TRUE(co_await p.send(as_bytes("ok"), soon()));
  }());
}

TEST(Prefix, SmallBufferKeepsMessage) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    prefix a{std::move(p->first)};
    prefix b{std::move(p->second)};
    std::string big(100, 'b');
    EXPECT_TRUE(co_await a.send(as_bytes(big), soon()));
    EXPECT_TRUE(co_await a.send(as_bytes("next"), soon()));
    std::array<std::byte, 10> small;
    EXPECT_EQ((co_await b.recv(small, soon())).error(), errc::message_too_large);
    EXPECT_EQ((co_await b.recv(small, soon())).error(), errc::message_too_large);
    std::array<std::byte, 100> large;
    auto n = co_await b.recv(large, soon());
    EXPECT_TRUE(n && *n == 100);
    EXPECT_EQ(text(large), big);
    n = co_await b.recv(small, soon());
    EXPECT_TRUE(n && *n == 4);
    EXPECT_EQ(text(std::span(small).first(4)), "next");
  }());
}

// -- end of stream ---------------------------------------------------------------------

TEST(Prefix, TruncatedFrameIsProtocolError) {
  run([]() -> task<void> {
    prefix_options o{.header_bytes = 4};
    auto f = frame(o, "0123456789");
    std::array<std::byte, 64> buf;
    // Inside the payload.
    prefix a{script_stream{{std::vector(f.begin(), f.begin() + 9)}}, o};
    EXPECT_EQ((co_await a.recv(buf, soon())).error(), errc::protocol_error);
    EXPECT_EQ((co_await a.recv(buf, soon())).error(), errc::protocol_error);
    // Inside the header.
    prefix b{script_stream{{std::vector(f.begin(), f.begin() + 2)}}, o};
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::protocol_error);
    // After a whole frame: a clean end.
    prefix c{script_stream{{f}}, o};
    EXPECT_TRUE(co_await c.recv(buf, soon()));
    EXPECT_EQ((co_await c.recv(buf, soon())).error(), errc::end_of_stream);
  }());
}

TEST(Prefix, TruncatedFrameOverSocket) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    auto& raw = p->first;
    prefix b{std::move(p->second)};
    auto f = frame({}, "0123456789");
    EXPECT_TRUE(co_await raw.write(const_buffer(f).first(8), soon()));
    EXPECT_TRUE(co_await raw.shutdown_write(soon()));
    std::array<std::byte, 64> buf;
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::protocol_error);
  }());
}

// -- buffering and split reads ---------------------------------------------------------

TEST(Prefix, SplitAtEveryByte) {
  for (std::size_t hb : {1u, 2u, 4u, 8u}) {
    prefix_options o{.header_bytes = hb, .byte_order = hb == 2 ? std::endian::little : std::endian::big};
    std::vector<std::string> messages{"first", "", "third message", "4"};
    std::vector<std::byte> stream;
    for (const auto& m : messages) {
      auto f = frame(o, m);
      stream.insert(stream.end(), f.begin(), f.end());
    }
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
      SCOPED_TRACE(testing::Message() << "header_bytes=" << hb << " cut=" << cut);
      std::vector<std::vector<std::byte>> chunks{
          std::vector(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(cut)),
          std::vector(stream.begin() + static_cast<std::ptrdiff_t>(cut), stream.end())};
      run([](prefix_options o, std::vector<std::vector<std::byte>> chunks,
             const std::vector<std::string>& messages) -> task<void> {
        prefix p{script_stream{std::move(chunks)}, o};
        std::array<std::byte, 64> buf;
        for (const auto& m : messages) {
          auto n = co_await p.recv(buf, soon());
          EXPECT_TRUE(n);
          if (!n) co_return;
          EXPECT_EQ(text(std::span(buf).first(*n)), m);
        }
        EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::end_of_stream);
      }(o, std::move(chunks), messages));
    }
  }
}

TEST(Prefix, OneByteChunks) {
  run([]() -> task<void> {
    prefix_options o{.header_bytes = 3};
    std::vector<std::vector<std::byte>> chunks;
    for (auto m : {"alpha", "beta", "", "gamma"})
      for (auto b : frame(o, m)) chunks.push_back({b});
    prefix p{script_stream{std::move(chunks)}, o};
    std::array<std::byte, 16> buf;
    for (std::string_view m : {"alpha", "beta", "", "gamma"}) {
      auto n = co_await p.recv(buf, soon());
      EXPECT_TRUE(n);
      if (!n) co_return;
      EXPECT_EQ(text(std::span(buf).first(*n)), m);
    }
    EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::end_of_stream);
  }());
}

TEST(Prefix, SeveralMessagesInOneRead) {
  run([]() -> task<void> {
    std::vector<std::byte> all;
    for (int i = 0; i < 100; ++i) {
      auto f = frame({}, std::string(64, static_cast<char>('a' + i % 26)));
      all.insert(all.end(), f.begin(), f.end());
    }
    prefix p{script_stream{{all}}};
    std::array<std::byte, 64> buf;
    for (int i = 0; i < 100; ++i) {
      auto n = co_await p.recv(buf, soon());
      EXPECT_TRUE(n && *n == 64);
      EXPECT_EQ(buf[0], static_cast<std::byte>('a' + i % 26));
    }
    // 6800 bytes: the small read that waits for the first bytes, then one read for all
    // the rest (they fit one chunk). The lower layer is not asked once per message.
    EXPECT_EQ(p.next_layer().reads, 2);
    EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::end_of_stream);
    EXPECT_EQ(p.next_layer().reads, 3);
  }());
}

// -- memory follows the bytes that arrived ---------------------------------------------

TEST(Prefix, ClaimedSizeCostsNoMemoryUntilTheBytesArrive) {
  // A 4-byte header claiming just under 1 GiB (allowed by max=1g), then 64 KiB: the
  // receiver holds what arrived, not what the header announced.
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    CO_ASSERT_TRUE(p);
    auto& raw = p->first;
    prefix b{std::move(p->second), {.header_bytes = 4, .max_message = std::size_t{1} << 30}};
    auto before = test::resident_bytes();
    std::vector<std::byte> wire(4 + 64 * 1024, std::byte{'x'});
    wire[0] = std::byte{0x3f};
    wire[1] = wire[2] = wire[3] = std::byte{0xff};
    auto w = co_await raw.write(const_buffer(wire), soon());
    CO_ASSERT_OK(w);
    std::array<std::byte, 64> buf;
    // Reads everything that is there, then times out without waiting.
    EXPECT_EQ((co_await b.recv(buf, deadline::already())).error(), errc::timed_out);
    auto grown = test::resident_bytes() - std::min(before, test::resident_bytes());
    EXPECT_LT(grown, std::size_t{4} << 20) << "resident memory grew by " << grown << " bytes";
    // Nothing was lost: the frame is still pending, and a claim above max is refused at once.
    EXPECT_EQ((co_await b.recv(buf, deadline::already())).error(), errc::timed_out);
  }());
}

TEST(Prefix, ClaimAboveMaxIsRefusedBeforeTheBody) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    CO_ASSERT_TRUE(p);
    auto& raw = p->first;
    prefix b{std::move(p->second), {.header_bytes = 4, .max_message = 1024}};
    std::array<std::byte, 4> header{std::byte{0}, std::byte{0}, std::byte{4}, std::byte{1}};  // 1025
    auto w = co_await raw.write(const_buffer(header), soon());
    CO_ASSERT_OK(w);
    std::array<std::byte, 64> buf;
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::message_too_large);
  }());
}

TEST(Prefix, IdleConnectionHoldsNoReceiveBuffer) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    CO_ASSERT_TRUE(p);
    auto& raw = p->first;
    prefix b{std::move(p->second)};
    auto f = frame({}, std::string(3000, 'm'));
    auto w = co_await raw.write(const_buffer(f), soon());
    CO_ASSERT_OK(w);
    std::array<std::byte, 4096> buf;
    auto n = co_await b.recv(buf, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 3000u);
    // The next recv finds nothing: it keeps the chunk for a short grace (more may come
    // at once), then gives it back and waits with a small read.
    EXPECT_EQ((co_await b.recv(buf, deadline::already())).error(), errc::timed_out);
    EXPECT_GT(b.buffered_capacity(), 0u);
    EXPECT_EQ((co_await b.recv(buf, deadline::after(200ms))).error(), errc::timed_out);
    EXPECT_EQ(b.buffered_capacity(), 0u);
    // And the next message still arrives whole.
    auto again = co_await raw.write(const_buffer(f), soon());
    CO_ASSERT_OK(again);
    auto m = co_await b.recv(buf, soon());
    CO_ASSERT_OK(m);
    EXPECT_EQ(*m, 3000u);
  }());
}

// -- deadlines and cancellation lose no byte ------------------------------------------

TEST(Prefix, TimeoutKeepsPartialFrame) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    auto& raw = p->first;
    prefix b{std::move(p->second)};
    auto f = frame({}, "payload");
    std::array<std::byte, 64> buf;
    EXPECT_EQ((co_await b.recv(buf, deadline::already())).error(), errc::timed_out);
    EXPECT_TRUE(co_await raw.write(const_buffer(f).first(6), soon()));
    EXPECT_EQ((co_await b.recv(buf, deadline::after(20ms))).error(), errc::timed_out);
    EXPECT_TRUE(co_await raw.write(const_buffer(f).subspan(6), soon()));
    auto n = co_await b.recv(buf, soon());
    EXPECT_TRUE(n);
    EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), "payload");
  }());
}

TEST(Prefix, CancelKeepsPartialFrame) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    auto& raw = p->first;
    prefix b{std::move(p->second)};
    auto f = frame({}, "payload");
    EXPECT_TRUE(co_await raw.write(const_buffer(f).first(5), soon()));
    std::error_code seen;
    event waiting;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](prefix<uds::stream>& b, std::error_code& seen, event& waiting) -> task<void> {
        std::array<std::byte, 64> buf;
        waiting.set();
        seen = (co_await b.recv(buf, soon())).error();
      }(b, seen, waiting));
      (void)co_await waiting.wait(soon());
      co_await yield();  // let the reader consume the 5 bytes and park
      s.cancel();
      co_return;
    });
    EXPECT_EQ(seen, errc::operation_canceled);
    EXPECT_TRUE(co_await raw.write(const_buffer(f).subspan(5), soon()));
    std::array<std::byte, 64> buf;
    auto n = co_await b.recv(buf, soon());
    EXPECT_TRUE(n);
    EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), "payload");
  }());
}

// -- detach and protocol switching -----------------------------------------------------

TEST(Prefix, DetachThenContinueLosesNoByte) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    auto& raw = p->first;
    std::vector<std::byte> wire;
    for (auto m : {"one", "two", "three"}) {
      auto f = frame({}, m);
      wire.insert(wire.end(), f.begin(), f.end());
    }
    auto tail = bytes_of("line A\r\nline B\r\n");
    wire.insert(wire.end(), tail.begin(), tail.end());
    EXPECT_TRUE(co_await raw.write(const_buffer(wire), soon()));
    EXPECT_TRUE(co_await raw.shutdown_write(soon()));

    prefix first{std::move(p->second)};
    std::array<std::byte, 64> buf;
    auto n = co_await first.recv(buf, soon());
    EXPECT_TRUE(n);
    EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), "one");
    auto d = first.detach();
    EXPECT_FALSE(d.unread.empty());  // the first read took more than one frame
    EXPECT_EQ((co_await first.recv(buf, soon())).error(), errc::closed);
    EXPECT_EQ((co_await first.send(as_bytes("x"), soon())).error(), errc::closed);

    prefix second{std::move(d.lower), {}, std::move(d.unread)};
    for (std::string_view m : {"two", "three"}) {
      n = co_await second.recv(buf, soon());
      EXPECT_TRUE(n);
      EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), m);
    }
    auto d2 = second.detach();
    crlf lines{std::move(d2.lower), {}, std::move(d2.unread)};
    for (std::string_view m : {"line A", "line B"}) {
      n = co_await lines.recv(buf, soon());
      EXPECT_TRUE(n);
      EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), m);
    }
    EXPECT_EQ((co_await lines.recv(buf, soon())).error(), errc::end_of_stream);
  }());
}

// -- fault injection -------------------------------------------------------------------

TEST(Prefix, InjectedFailuresSurfaceAsErrors) {
  // Every read_some/write of either end may fail; each run must end with an error, never
  // hang or report success with lost or corrupted messages.
  auto outcome = test::run_until_passes([](int fail_at) -> task<result<void>> {
    auto [x, y] = test::mem_stream::pair({.max_read_chunk = 3, .fail_at_operation = fail_at},
                                         {.max_write_chunk = 5, .fail_at_operation = fail_at});
    prefix a{std::move(x), {.header_bytes = 2}};
    prefix b{std::move(y), {.header_bytes = 2}};
    std::vector<std::string> messages{"alpha", "", std::string(40, 'b'), "gamma"};
    result<void> sent;
    result<void> received;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](prefix<test::mem_stream>& a, const std::vector<std::string>& messages,
                 result<void>& sent) -> task<void> {
        for (const auto& m : messages) {
          sent = co_await a.send(as_bytes(m), soon());
          if (!sent) co_return;
        }
        sent = co_await a.shutdown_write(soon());
      }(a, messages, sent));
      std::array<std::byte, 64> buf;
      for (const auto& m : messages) {
        auto n = co_await b.recv(buf, soon());
        if (!n) {
          received = n.error();
          co_return;
        }
        if (text(std::span(buf).first(*n)) != m) {
          received = errc::protocol_error;
          ADD_FAILURE() << "message corrupted with fail_at=" << fail_at;
          co_return;
        }
      }
      auto end = co_await b.recv(buf, soon());
      received = end.error() == errc::end_of_stream ? result<void>{} : result<void>(end.error());
    });
    if (!sent) co_return sent;
    co_return received;
  });
  EXPECT_TRUE(outcome.passed);
  EXPECT_GT(outcome.failed_runs, 0);
}

// -- dynamic stacks --------------------------------------------------------------------

TEST(Prefix, OverAnyStream) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    prefix a{any_stream(std::move(p->first)), {.header_bytes = 2, .max_message = 1000}};
    prefix b{any_stream(std::move(p->second)), {.header_bytes = 2, .max_message = 1000}};
    auto caps = a.runtime_capabilities();
    EXPECT_EQ(caps.unit, unit::message);
    EXPECT_EQ(caps.domain, domain::ipc);
    EXPECT_TRUE(caps.reliable);
    EXPECT_FALSE(caps.fd_passing);
    EXPECT_EQ(caps.max_message, 1000u);
    // Wrapped once more in the message erasure, as a pipeline does.
    any_message m(std::move(b));
    EXPECT_EQ(m.runtime_capabilities().max_message, 1000u);
    std::vector<std::string> messages{"dynamic", "stack"};
    co_await expect_round_trip(a, m, messages);
    EXPECT_EQ((co_await a.send(as_bytes(std::string(1001, 'x')), soon())).error(), errc::message_too_large);
  }());
}

// -- batch send ------------------------------------------------------------------------

std::vector<outgoing_datagram> outgoing_of(const std::vector<std::string>& texts) {
  std::vector<outgoing_datagram> out;
  for (const auto& t : texts) {
    outgoing_datagram d;
    d.data = as_bytes(t);
    out.push_back(d);
  }
  return out;
}

TEST(PrefixBatch, EveryMessageInOrderWithOneWrite) {
  test::run_test([]() -> task<void> {
    const prefix_options o{.header_bytes = 2, .max_message = 1000};
    prefix<script_stream> p(script_stream{}, o);
    const std::vector<std::string> texts{"one", "", "three", std::string(300, 'x')};
    auto msgs = outgoing_of(texts);
    auto n = co_await p.send_batch(msgs, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, texts.size());
    EXPECT_EQ(p.next_layer().writes, 1);
    std::vector<std::byte> expected;
    for (const auto& t : texts) {
      auto f = frame(o, t);
      expected.insert(expected.end(), f.begin(), f.end());
    }
    EXPECT_TRUE(p.next_layer().written == expected);
  });
}

TEST(PrefixBatch, GatherMessagesKeepTheirParts) {
  test::run_test([]() -> task<void> {
    const prefix_options o{.header_bytes = 4};
    prefix<script_stream> p(script_stream{}, o);
    std::array<const_buffer, 3> parts{as_bytes("ga"), as_bytes(""), as_bytes("ther")};
    std::vector<outgoing_datagram> msgs(2);
    msgs[0].data = std::span<const const_buffer>(parts);
    msgs[1].data = as_bytes("plain");
    auto n = co_await p.send_batch(msgs, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 2u);
    auto f1 = frame(o, "gather");
    auto f2 = frame(o, "plain");
    f1.insert(f1.end(), f2.begin(), f2.end());
    EXPECT_TRUE(p.next_layer().written == f1);
    EXPECT_EQ(p.next_layer().writes, 1);
  });
}

TEST(PrefixBatch, OneOversizeMessageRefusesTheBatchBeforeAnyByte) {
  test::run_test([]() -> task<void> {
    prefix<script_stream> p(script_stream{}, prefix_options{.header_bytes = 1, .max_message = 100});
    const std::vector<std::string> texts{"fine", std::string(101, 'x'), "fine too"};
    auto msgs = outgoing_of(texts);
    auto n = co_await p.send_batch(msgs, soon());
    EXPECT_EQ(n.error(), errc::message_too_large);
    EXPECT_EQ(p.next_layer().writes, 0);
    EXPECT_TRUE(p.next_layer().written.empty());
    // Over what the 1-byte header can count, too.
    prefix<script_stream> q(script_stream{}, prefix_options{.header_bytes = 1, .max_message = 1000});
    const std::vector<std::string> big{"a", std::string(256, 'y')};
    auto big_msgs = outgoing_of(big);
    auto m = co_await q.send_batch(big_msgs, soon());
    EXPECT_EQ(m.error(), errc::message_too_large);
    EXPECT_EQ(q.next_layer().writes, 0);
    // The layer is unharmed.
    const std::vector<std::string> ok{"a", std::string(255, 'y')};
    auto ok_msgs = outgoing_of(ok);
    auto k = co_await q.send_batch(ok_msgs, soon());
    CO_ASSERT_OK(k);
    EXPECT_EQ(*k, 2u);
  });
}

TEST(PrefixBatch, EmptyBatchBadOptionsAndDetached) {
  test::run_test([]() -> task<void> {
    prefix<script_stream> p(script_stream{});
    std::vector<outgoing_datagram> none;
    auto n = co_await p.send_batch(none, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(p.next_layer().writes, 0);
    const std::vector<std::string> texts{"x"};
    auto msgs = outgoing_of(texts);
    prefix<script_stream> bad(script_stream{}, prefix_options{.header_bytes = 9});
    auto b = co_await bad.send_batch(msgs, soon());
    EXPECT_EQ(b.error(), errc::invalid_argument);
    (void)p.detach();
    auto d = co_await p.send_batch(msgs, soon());
    EXPECT_EQ(d.error(), errc::closed);
  });
}

TEST(PrefixBatch, ReceivedOneByOneOverASocket) {
  test::run_test([]() -> task<void> {
    auto pair = uds::stream::pair();
    CO_ASSERT_TRUE(pair);
    prefix a(std::move(pair->first));
    prefix b(std::move(pair->second));
    std::vector<std::string> texts;
    for (int i = 0; i < 200; ++i)
      texts.push_back(std::to_string(i) + std::string(static_cast<std::size_t>(i % 7), '.'));
    auto msgs = outgoing_of(texts);
    auto n = co_await a.send_batch(msgs, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, texts.size());
    std::array<std::byte, 64> buf;
    for (const auto& t : texts) {
      auto got = co_await b.recv(buf, soon());
      CO_ASSERT_OK(got);
      EXPECT_EQ(text(std::span(buf).first(*got)), t);
    }
  });
}

TEST(PrefixBatch, TimeoutBeforeAnyByteSendsNothingAndTheBatchMayBeRetried) {
  test::run_test([]() -> task<void> {
    // The peer takes 8 bytes before it reads: the first frame (4 + 4) fills that.
    auto [x, y] = test::mem_stream::pair(test::mem_options{.buffer_limit = 8});
    prefix a(std::move(x));
    prefix b(std::move(y));
    auto first = co_await a.send(as_bytes("full"), soon());
    CO_ASSERT_OK(first);
    const std::vector<std::string> texts{"one", "two"};
    auto msgs = outgoing_of(texts);
    auto timed = co_await a.send_batch(msgs, deadline::after(20ms));
    EXPECT_EQ(timed.error(), errc::timed_out);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](prefix<test::mem_stream>& b) -> task<void> {
        std::array<std::byte, 16> buf;
        const std::vector<std::string> wanted{"full", "one", "two"};
        for (const auto& want : wanted) {
          auto n = co_await b.recv(buf, soon());
          CO_ASSERT_OK(n);
          EXPECT_EQ(text(std::span(buf).first(*n)), want);
        }
      }(b));
      auto again = co_await a.send_batch(msgs, soon());
      CO_ASSERT_OK(again);
      EXPECT_EQ(*again, 2u);
    });
  });
}

TEST(PrefixBatch, TimeoutPartWayBreaksTheDirection) {
  test::run_test([]() -> task<void> {
    // Room for 10 bytes: the batch (2 frames of 8) stops inside its second frame.
    auto [x, y] = test::mem_stream::pair(test::mem_options{.buffer_limit = 10});
    prefix a(std::move(x));
    prefix b(std::move(y));
    const std::vector<std::string> texts{"abcd", "efgh"};
    auto msgs = outgoing_of(texts);
    auto timed = co_await a.send_batch(msgs, deadline::after(20ms));
    EXPECT_EQ(timed.error(), errc::timed_out);
    // The peer got a prefix of the batch: the first message whole, then part of a frame.
    std::array<std::byte, 16> buf;
    auto n = co_await b.recv(buf, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(text(std::span(buf).first(*n)), "abcd");
    auto partial = co_await b.recv(buf, deadline::after(20ms));
    EXPECT_EQ(partial.error(), errc::timed_out);
    // The write direction stays failed.
    auto after = co_await a.send_batch(msgs, soon());
    EXPECT_FALSE(after);
  });
}

/// counted_messages is a message layer without a batch send of its own, whose send fails
/// from its `fail_at`-th call on.
struct counted_messages {
  static constexpr properties capabilities = prefix<tcp::stream>::capabilities;
  std::shared_ptr<std::vector<std::string>> sent = std::make_shared<std::vector<std::string>>();
  std::size_t fail_at = SIZE_MAX;

  task<result<void>> send(const_buffers b, deadline) {
    if (sent->size() >= fail_at) co_return errc::broken;
    std::vector<std::byte> bytes;
    b.copy_to(bytes);
    sent->emplace_back(as_text(bytes));
    co_return result<void>{};
  }
  task<result<std::size_t>> recv(mutable_buffer, deadline) { co_return errc::not_supported; }
  task<result<void>> close(deadline) { co_return result<void>{}; }
};

/// tally_stream is a script_stream that counts its writes where a test can see them
/// after the stream moved into an erased stack.
struct tally_stream : script_stream {
  std::shared_ptr<int> tally = std::make_shared<int>(0);
  task<result<void>> write(const_buffers bufs, deadline dl) {
    ++*tally;
    return script_stream::write(bufs, dl);
  }
};

/// piece_stream is a script_stream that records how many pieces each write had.
struct piece_stream : script_stream {
  std::vector<std::size_t> pieces;
  task<result<void>> write(const_buffers bufs, deadline dl) {
    pieces.push_back(bufs.view().size());
    return script_stream::write(bufs, dl);
  }
};

TEST(PrefixBatch, SmallMessagesLeaveAsOneBufferLargePartsFromTheCallersMemory) {
  test::run_test([]() -> task<void> {
    const prefix_options o{.header_bytes = 4};
    prefix<piece_stream> p(piece_stream{}, o);
    std::vector<std::string> texts(64, std::string(64, 's'));
    auto msgs = outgoing_of(texts);
    auto n = co_await p.send_batch(msgs, soon());
    CO_ASSERT_OK(n);
    CO_ASSERT_EQ(p.next_layer().pieces.size(), 1u);
    EXPECT_EQ(p.next_layer().pieces[0], 1u) << "64 headers and payloads, copied into one piece";
    EXPECT_EQ(p.next_layer().written.size(), 64u * 68);
    // A large part is not copied: small pieces before and after it, it in between.
    const std::vector<std::string> mixed{"a", "b", std::string(4096, 'L'), "c"};
    auto mixed_msgs = outgoing_of(mixed);
    auto m = co_await p.send_batch(mixed_msgs, soon());
    CO_ASSERT_OK(m);
    CO_ASSERT_EQ(p.next_layer().pieces.size(), 2u);
    EXPECT_EQ(p.next_layer().pieces[1], 3u);
    std::vector<std::byte> expected(p.next_layer().written.begin(), p.next_layer().written.begin() + 64 * 68);
    for (const auto& t : mixed) {
      auto f = frame(o, t);
      expected.insert(expected.end(), f.begin(), f.end());
    }
    EXPECT_TRUE(p.next_layer().written == expected);
  });
}

TEST(PrefixBatch, AnyMessageUsesTheLayersBatchSend) {
  test::run_test([]() -> task<void> {
    tally_stream lower;
    auto writes = lower.tally;
    any_message m(prefix<tally_stream>(std::move(lower)));
    const std::vector<std::string> texts{"a", "b", "c"};
    auto msgs = outgoing_of(texts);
    auto n = co_await m.send_batch(msgs, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 3u);
    EXPECT_EQ(*writes, 1);
  });
}

TEST(PrefixBatch, AnyMessageLoopsOverSendForOtherLayers) {
  test::run_test([]() -> task<void> {
    const std::vector<std::string> texts{"a", "b", "c"};
    auto msgs = outgoing_of(texts);
    counted_messages all;
    auto all_sent = all.sent;
    any_message m(std::move(all));
    auto n = co_await m.send_batch(msgs, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 3u);
    EXPECT_EQ(*all_sent, texts);

    // A failure after some were sent: the count before it, no error (udp's rule).
    counted_messages part;
    part.fail_at = 2;
    auto part_sent = part.sent;
    any_message p(std::move(part));
    auto k = co_await p.send_batch(msgs, soon());
    CO_ASSERT_OK(k);
    EXPECT_EQ(*k, 2u);
    EXPECT_EQ(part_sent->size(), 2u);

    // A failure at the first: the error.
    counted_messages none;
    none.fail_at = 0;
    any_message z(std::move(none));
    auto e = co_await z.send_batch(msgs, soon());
    EXPECT_EQ(e.error(), errc::broken);
  });
}

// any_message forwards to udp's own batch send (sendmmsg) for a connected udp socket.
static_assert(requires(udp::connected & c, std::span<const outgoing_datagram> m, deadline dl) {
  { c.send_batch(m, dl) } -> std::same_as<task<result<std::size_t>>>;
});

TEST(PrefixBatch, AnyMessageOverConnectedUdpSendsEveryDatagram) {
  test::run_test([]() -> task<void> {
    auto receiver = udp::socket::bind("127.0.0.1:0");
    CO_ASSERT_TRUE(receiver);
    auto sender = udp::socket::bind("127.0.0.1:0");
    CO_ASSERT_TRUE(sender);
    auto to = receiver->local_address();
    CO_ASSERT_TRUE(to);
    auto connected = std::move(*sender).connect(*to);
    CO_ASSERT_TRUE(connected);
    any_message m(std::move(*connected));
    const std::vector<std::string> texts{"d0", "d1", "d2", "d3"};
    auto msgs = outgoing_of(texts);
    auto n = co_await m.send_batch(msgs, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, texts.size());
    std::array<std::byte, 16> buf;
    for (const auto& t : texts) {
      auto got = co_await receiver->recv_from(buf, soon());
      CO_ASSERT_OK(got);
      EXPECT_EQ(text(std::span(buf).first(got->size)), t);
    }
  });
}

}  // namespace
}  // namespace strata
