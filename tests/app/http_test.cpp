// http: the per-connection choice of http::serve over in-memory streams — HTTP/2 prior
// knowledge recognised by its preface (also when it arrives a byte at a time), HTTP/1.1
// for everything else with the sniffed bytes kept, a near-preface answered as HTTP/1.1
// would (505), and one generic handler serving both. (curl in every mode, the h2c
// Upgrade and ALPN: http2_interop_test.cpp.)
#include "strata/app/http.hpp"

#include <gtest/gtest.h>

#include <string>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/mem_stream.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace {

http::handlers echo_protocol() {
  return http::both([](auto& req, auto& res) -> task<result<void>> {
    std::string body = "served " + std::string(req.target());
    co_return co_await res.send(200, body, deadline::after(5s));
  });
}

task<void> run_switch(mem_stream s, result<http::serve_stats>& out) {
  out = co_await http::serve(any_stream(std::move(s)), echo_protocol());
}

task<std::string> read_until_end(mem_stream& s, deadline dl) {
  std::string got;
  std::array<std::byte, 4096> buf{};
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) break;
    got.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  co_return got;
}

TEST(Http, PriorKnowledgeIsRecognisedByThePrefaceEvenByteByByte) {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{SIZE_MAX}}) {
    run_test([chunk]() -> task<void> {
      mem_options server_reads;
      server_reads.max_read_chunk = chunk;
      auto [client_end, server_end] = mem_stream::pair(mem_options{}, server_reads);
      result<http::serve_stats> stats = errc::closed;
      scope s;
      s.spawn(run_switch(std::move(server_end), stats));
      http2::client_options o;
      o.authority = "example.org";
      o.scheme = "http";
      http2::client c(any_stream(std::move(client_end)), o);
      auto dl = deadline::after(10s);
      http2::client::outgoing get;
      get.target = "/h2";
      auto r = co_await c.request(get, dl);
      CO_ASSERT_OK(r);
      auto body = co_await r->read_body(1024, dl);
      CO_ASSERT_OK(body);
      EXPECT_EQ(*body, std::string("served /h2"));
      (void)co_await c.close(dl);
      (void)co_await s.join(dl);
      CO_ASSERT_OK(stats);
      EXPECT_EQ(stats->protocol, http::protocol::http2_prior_knowledge);
      EXPECT_EQ(stats->requests, 1u);
    });
  }
}

std::string exchange(std::string request, result<http::serve_stats>& stats) {
  std::string reply;
  run_test([&]() -> task<void> {
    auto [client_end, server_end] = mem_stream::pair();
    scope s;
    s.spawn(run_switch(std::move(server_end), stats));
    auto dl = deadline::after(5s);
    (void)co_await client_end.write(as_bytes(request), dl);
    (void)co_await client_end.shutdown_write(dl);
    reply = co_await read_until_end(client_end, dl);
    (void)co_await s.join(dl);
  });
  return reply;
}

TEST(Http, EverythingElseIsHttp1WithTheSniffedBytesKept) {
  result<http::serve_stats> stats = errc::closed;
  auto reply = exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", stats);
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply;
  EXPECT_NE(reply.find("served /a"), std::string::npos);
  EXPECT_NE(reply.find("served /b"), std::string::npos);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->protocol, http::protocol::http1);
  EXPECT_EQ(stats->requests, 2u);
  // A request shorter than the preface is not waited on for more.
  auto tiny = exchange("GET / HTTP/1.0\r\n\r\n", stats);  // 18 bytes
  EXPECT_NE(tiny.find("served /"), std::string::npos) << tiny;
}

TEST(Http, AlmostThePrefaceIsAnsweredAsHttp1Would) {
  result<http::serve_stats> stats = errc::closed;
  auto reply = exchange("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", stats);
  EXPECT_EQ(reply.rfind("HTTP/1.1 505 ", 0), 0u) << reply;
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->protocol, http::protocol::http1);
}

// The client side of the h2c Upgrade against http::serve: the first request goes as
// HTTP/1.1, its response comes on stream 1, and the next requests are HTTP/2 streams.
TEST(Http, ClientUpgradesToH2cAndGoesOnInHttp2) {
  run_test([]() -> task<void> {
    auto [client_end, server_end] = mem_stream::pair();
    result<http::serve_stats> stats = errc::closed;
    scope s;
    s.spawn(run_switch(std::move(server_end), stats));
    http2::client_options o;
    o.authority = "example.org";
    o.scheme = "http";
    auto dl = deadline::after(10s);
    http2::client::outgoing first;
    first.method = "POST";
    first.target = "/first";
    first.body = "with a body";
    auto upgraded = co_await http2::client::upgrade(any_stream(std::move(client_end)), first, o, dl);
    CO_ASSERT_OK(upgraded);
    auto& [c, response] = *upgraded;
    EXPECT_EQ(response.status(), 200);
    auto body = co_await response.read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("served /first"));
    http2::client::outgoing next;
    next.target = "/second";
    auto r = co_await c.request(next, dl);
    CO_ASSERT_OK(r);
    body = co_await r->read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("served /second"));
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
    CO_ASSERT_OK(stats);
    EXPECT_EQ(stats->protocol, http::protocol::http2_upgrade);
    EXPECT_EQ(stats->requests, 2u);
  });
}

TEST(Http, ClientUpgradeToAServerThatDoesNotSwitchIsNotSupported) {
  run_test([]() -> task<void> {
    auto [client_end, server_end] = mem_stream::pair();
    result<http1::serve_stats> stats = errc::closed;
    auto serve_h1 = [](mem_stream s, result<http1::serve_stats>& out) -> task<void> {
      out = co_await http1::serve(any_stream(std::move(s)), echo_protocol().http1);
    };
    scope s;
    s.spawn(serve_h1(std::move(server_end), stats));
    http2::client_options o;
    o.authority = "example.org";
    auto dl = deadline::after(10s);
    http2::client::outgoing first;
    auto upgraded = co_await http2::client::upgrade(any_stream(std::move(client_end)), first, o, dl);
    CO_ASSERT_TRUE(!upgraded.has_value());
    EXPECT_EQ(upgraded.error(), make_error_code(errc::not_supported));
    (void)co_await s.join(dl);
  });
}

}  // namespace
}  // namespace strata::test
