// bytes: a byte stream over reliable messages — a large transfer over a lossy link with
// random write and read sizes (checked by SHA-256), writes cut at the layer below's
// max_message, reads across message boundaries, half-close, and tls and http1 over
// bytes over reliable over real UDP from spec strings.
#include "strata/adapt/bytes.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "strata/adapt/reliable.hpp"
#include "strata/app/http1.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "support/lossy_link.hpp"
#include "support/pki.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace bytes_conformance {
/// The shared stream suite over bytes | reliable | a link that loses 2%.
struct lossy_traits {
  using stream_type = bytes_stream<reliable::connection>;
  static constexpr std::size_t transfer_size = 1 << 20;
  static constexpr bool close_unblocks_reader = true;
  static task<result<std::pair<stream_type, stream_type>>> make_pair(deadline) {
    link_config link;
    link.loss = 0.02;
    link.delay = 200us;
    link.jitter = 300us;
    link.reorder = 0.05;
    auto [x, y] = lossy_pair(link);
    reliable::options o;
    o.rto_min = 10ms;
    o.rto_initial = 50ms;
    co_return std::pair<stream_type, stream_type>(stream_type(reliable::connection(std::move(x), o)),
                                                  stream_type(reliable::connection(std::move(y), o)));
  }
};
}  // namespace bytes_conformance

INSTANTIATE_TYPED_TEST_SUITE_P(BytesOverReliable, stream_conformance,
                               ::testing::Types<bytes_conformance::lossy_traits>);

namespace {

using bytes_over_reliable = bytes_stream<reliable::connection>;
static_assert(byte_stream<bytes_over_reliable>);
static_assert(bytes_over_reliable::capabilities.unit == unit::stream);
static_assert(bytes_over_reliable::capabilities.reliable);

reliable::options quick() {
  reliable::options o;
  o.rto_min = 20ms;
  o.rto_initial = 100ms;
  o.keepalive = 0ms;
  o.dead_after = 30s;
  return o;
}

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = std::byte(rng() & 0xff);
  return out;
}

TEST(BytesStream, TransfersAMegabyteOverALossyReliableLinkWithRandomWritesAndReads) {
  run_test(
      []() -> task<void> {
        link_config link;
        link.loss = 0.05;
        link.duplicate = 0.02;
        link.reorder = 0.05;
        link.delay = 1ms;
        link.jitter = 1ms;
        link.seed = 77;
        auto [x, y] = lossy_pair(link);
        bytes_over_reliable a(reliable::connection(std::move(x), quick()));
        bytes_over_reliable b(reliable::connection(std::move(y), quick()));
        EXPECT_EQ(a.chunk(), 1200 - reliable::header_size);
        const auto data = pattern(1 << 20, 5);
        std::string sent_hash;
        std::string got_hash;
        std::size_t got = 0;
        auto dl = deadline::after(15s);
        scope s;
        s.spawn(call([&]() -> task<void> {
          std::mt19937 rng(1);
          sha256 h;
          std::size_t off = 0;
          while (off < data.size()) {
            // Some writes as gather lists of three pieces, of any size.
            std::size_t n = std::min<std::size_t>(data.size() - off, rng() % 5000 + 1);
            std::size_t cut1 = n / 3;
            std::size_t cut2 = n - n / 4;
            std::array<const_buffer, 3> parts{const_buffer(data.data() + off, cut1),
                                              const_buffer(data.data() + off + cut1, cut2 - cut1),
                                              const_buffer(data.data() + off + cut2, n - cut2)};
            result<void> w{};
            if (rng() % 2) {
              w = co_await a.write(std::span<const const_buffer>(parts), dl);
            } else {
              w = co_await a.write(const_buffer(data.data() + off, n), dl);
            }
            CO_ASSERT_OK(w);
            h.update(data.data() + off, n);
            off += n;
          }
          sent_hash = h.hex();
          auto shut = co_await a.shutdown_write(dl);
          CO_ASSERT_OK(shut);
          std::array<std::byte, 16> buf{};
          auto end = co_await a.read_some(buf, dl);
          EXPECT_EQ(end.error(), make_error_code(errc::end_of_stream));
          (void)co_await a.close(dl);
        }));
        s.spawn(call([&]() -> task<void> {
          std::mt19937 rng(2);
          sha256 h;
          std::vector<std::byte> buf(3000);
          for (;;) {
            std::size_t want = rng() % 3000 + 1;
            auto n = co_await b.read_some(mutable_buffer(buf.data(), want), dl);
            if (!n) {
              EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream)) << n.error().message();
              break;
            }
            EXPECT_GE(*n, 1u);
            EXPECT_LE(*n, want);
            h.update(buf.data(), *n);
            got += *n;
          }
          got_hash = h.hex();
          auto shut = co_await b.shutdown_write(dl);
          EXPECT_TRUE(shut);
          (void)co_await b.close(dl);
        }));
        (void)co_await s.join();
        EXPECT_EQ(got, data.size());
        EXPECT_EQ(sent_hash, got_hash);
      },
      20s);
}

TEST(BytesStream, WritesAreCutAtTheMessageSizeAndReadsCrossMessages) {
  run_test([]() -> task<void> {
    link_config link;
    link.max_message = 200;
    auto [x, y] = lossy_pair(link);
    bytes_over_reliable a(reliable::connection(std::move(x), quick()));
    bytes_over_reliable b(reliable::connection(std::move(y), quick()));
    const std::size_t chunk = 200 - reliable::header_size;
    EXPECT_EQ(a.chunk(), chunk);
    auto dl = deadline::after(5s);
    const auto data = pattern(1000, 9);
    auto w = co_await a.write(const_buffer(data), dl);
    CO_ASSERT_OK(w);
    // 1000 bytes in messages of at most 168: six messages.
    EXPECT_EQ(a.next_layer().counters().messages_sent, (1000 + chunk - 1) / chunk);
    // Small gather pieces are gathered into one message.
    std::array<const_buffer, 4> small{const_buffer(data.data(), 10), const_buffer(data.data() + 10, 10),
                                      const_buffer(data.data() + 20, 10), const_buffer(data.data() + 30, 10)};
    w = co_await a.write(std::span<const const_buffer>(small), dl);
    CO_ASSERT_OK(w);
    EXPECT_EQ(a.next_layer().counters().messages_sent, (1000 + chunk - 1) / chunk + 1);
    // Reads of 7 bytes cross every message boundary.
    std::vector<std::byte> got;
    std::array<std::byte, 7> buf{};
    while (got.size() < 1040) {
      auto n = co_await b.read_some(buf, dl);
      CO_ASSERT_OK(n);
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
    }
    EXPECT_TRUE(std::equal(data.begin(), data.end(), got.begin()));
    EXPECT_TRUE(std::equal(data.begin(), data.begin() + 40, got.begin() + 1000));
    // An empty read completes at once.
    auto none = co_await b.read_some(mutable_buffer{}, dl);
    CO_ASSERT_OK(none);
    EXPECT_EQ(*none, 0u);
    scope s;
    s.spawn(call([&]() -> task<void> { (void)co_await a.close(dl); }));
    s.spawn(call([&]() -> task<void> { (void)co_await b.close(dl); }));
    (void)co_await s.join();
    auto after = co_await a.read_some(buf, dl);
    EXPECT_EQ(after.error(), make_error_code(errc::closed));
  });
}

TEST(BytesStream, HalfCloseIsTheLowerEndOfStream) {
  run_test([]() -> task<void> {
    link_config link;
    auto [x, y] = lossy_pair(link);
    bytes_over_reliable a(reliable::connection(std::move(x), quick()));
    bytes_over_reliable b(reliable::connection(std::move(y), quick()));
    auto dl = deadline::after(5s);
    auto w = co_await a.write(as_bytes("request"), dl);
    CO_ASSERT_OK(w);
    auto shut = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(shut);
    std::array<std::byte, 64> buf{};
    std::string got;
    for (;;) {
      auto n = co_await b.read_some(buf, dl);
      if (!n) {
        EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream));
        break;
      }
      got.append(as_text(const_buffer(buf.data(), *n)));
    }
    EXPECT_EQ(got, std::string("request"));
    // The other direction still works.
    w = co_await b.write(as_bytes("response"), dl);
    CO_ASSERT_OK(w);
    auto n = co_await a.read_some(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(std::string(as_text(const_buffer(buf.data(), *n))), std::string("response"));
    scope s;
    s.spawn(call([&]() -> task<void> { (void)co_await a.close(dl); }));
    s.spawn(call([&]() -> task<void> { (void)co_await b.close(dl); }));
    (void)co_await s.join();
  });
}

// -- stream protocols over bytes | reliable | udp, from spec strings --------------------------

TEST(BytesPipeline, TlsOverBytesOverReliableOverUdp) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto listener = strata::listen("udp-listen:127.0.0.1:0 | reliable(rto-min=20ms) | bytes | tls(cert=" +
                                   pki().server.cert_file + ", key=" + pki().server.key_file + ")");
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    const auto data = pattern(300 * 1000, 3);
    std::string echoed_hash;
    std::size_t echoed = 0;
    scope s;
    s.spawn(call([&]() -> task<void> {
      auto conn = co_await listener->accept(dl);
      CO_ASSERT_OK(conn);
      CO_ASSERT_TRUE(conn->is_stream());
      EXPECT_TRUE(conn->runtime_capabilities().secure);
      auto& st = conn->stream();
      std::vector<std::byte> buf(16384);
      for (;;) {
        auto n = co_await st.read_some(buf, dl);
        if (!n) {
          EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream)) << n.error().message();
          break;
        }
        auto w = co_await st.write(const_buffer(buf.data(), *n), dl);
        CO_ASSERT_OK(w);
      }
      (void)co_await st.close(dl);
    }));
    auto text = "udp:127.0.0.1:" + std::to_string(port) +
                " | reliable(rto-min=20ms) | bytes | tls(sni=localhost, ca=" + pki().ca.cert_file + ")";
    auto conn = co_await strata::connect(text, dl);
    CO_ASSERT_OK(conn);
    CO_ASSERT_TRUE(conn->is_stream());
    auto caps = conn->runtime_capabilities();
    EXPECT_TRUE(caps.secure);
    EXPECT_TRUE(caps.reliable);
    EXPECT_TRUE(caps.congestion_controlled);
    auto client = conn->take_stream();
    s.spawn(call([&]() -> task<void> {
      sha256 h;
      std::vector<std::byte> buf(16384);
      for (;;) {
        auto n = co_await client.read_some(buf, dl);
        if (!n) break;
        h.update(buf.data(), *n);
        echoed += *n;
        if (echoed == data.size()) break;
      }
      echoed_hash = h.hex();
    }));
    auto w = co_await client.write(const_buffer(data), dl);
    CO_ASSERT_OK(w);
    auto shut = co_await client.shutdown_write(dl);  // close_notify: the server's read ends
    CO_ASSERT_OK(shut);
    (void)co_await s.join(dl);
    sha256 h;
    h.update(data.data(), data.size());
    EXPECT_EQ(echoed, data.size());
    EXPECT_EQ(echoed_hash, h.hex());
    (void)co_await client.close(dl);
    listener->close();
  });
}

TEST(BytesPipeline, Http1OverBytesOverReliableOverUdp) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto listener = strata::listen("udp-listen:127.0.0.1:0 | reliable(rto-min=20ms) | bytes | http1");
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    scope s;
    s.spawn(call([&]() -> task<void> {
      auto conn = co_await listener->accept(dl);
      CO_ASSERT_OK(conn);
      auto h = [](http1::request& req, http1::response& res) -> task<result<void>> {
        std::string body = "over udp: " + std::string(req.target());
        co_return co_await res.send(200, body, deadline::after(5s));
      };
      (void)co_await http1::serve(conn->take_stream(), h);
    }));
    auto conn = co_await strata::connect(
        "udp:127.0.0.1:" + std::to_string(port) + " | reliable(rto-min=20ms) | bytes | http1", dl);
    CO_ASSERT_OK(conn);
    http1::client c(conn->take_stream());
    c.set_host("localhost");
    for (int i = 0; i < 3; ++i) {
      http1::client::outgoing get;
      get.target = "/page/" + std::to_string(i);
      auto head = co_await c.send(get, dl);
      CO_ASSERT_OK(head);
      EXPECT_EQ(head->status, 200);
      auto body = co_await c.read_body(1024, dl);
      CO_ASSERT_OK(body);
      EXPECT_EQ(*body, "over udp: /page/" + std::to_string(i));
    }
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
    listener->close();
  });
}

}  // namespace
}  // namespace strata::test
