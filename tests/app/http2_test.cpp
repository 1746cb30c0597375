// http2: our client against our server over in-memory streams — requests and responses
// with bodies both ways, many concurrent streams, streamed bodies larger than every
// flow-control window, trailers, HEAD, a handler that sends nothing, the limits that
// guard the server (header list, body, active handlers against rapid reset) and the
// graceful GOAWAY of a stopping server.
#include "strata/app/http2.hpp"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

#include "strata/runtime.hpp"
#include "strata/secure/tls.hpp"
#include "support/co_test.hpp"
#include "support/mem_stream.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace {

task<void> run_server(any_stream s, http2::handler h, http2::server_options o,
                      result<http2::serve_stats>& out) {
  out = co_await http2::serve(std::move(s), std::move(h), o);
}
task<void> run_server(mem_stream s, http2::handler h, http2::server_options o,
                      result<http2::serve_stats>& out) {
  return run_server(any_stream(std::move(s)), std::move(h), std::move(o), out);
}

http2::handler echo_handler() {
  return [](http2::request& req, http2::response& res) -> task<result<void>> {
    auto dl = deadline::after(10s);
    auto body = co_await req.read_body(64 << 20, dl);
    if (!body) co_return unexpected(body.error());
    (void)res.set_header("X-Method", req.method());
    std::string reply = std::string(req.target()) + " " + *body;
    for (const auto& t : req.trailers().all())
      reply += " " + std::string(t.name) + "=" + std::string(t.value);
    co_return co_await res.send(200, reply, dl);
  };
}

struct h2_pair {
  mem_stream client_end;
  mem_stream server_end;
};

h2_pair make_pair() {
  auto [a, b] = mem_stream::pair();
  return {std::move(a), std::move(b)};
}

/// tls_contexts is a server context with a self-signed certificate for "localhost" and a
/// client context that trusts it.
struct tls_contexts {
  tls::context server;
  tls::context client;
};
result<tls_contexts> localhost_tls() {
  std::vector<std::string> names{"localhost"};
  auto cert = tls::self_signed(names);
  if (!cert) return unexpected(cert.error());
  tls::context_options server_options;
  server_options.certificates.push_back(*cert);
  auto server = tls::context::server(server_options);
  if (!server) return unexpected(server.error());
  tls::context_options client_options;
  client_options.ca_pem = cert->cert_pem;
  auto client = tls::context::client(client_options);
  if (!client) return unexpected(client.error());
  return tls_contexts{std::move(*server), std::move(*client)};
}

http2::client_options client_opts() {
  http2::client_options co;
  co.authority = "example.org";
  co.scheme = "http";
  return co;
}

TEST(Http2, RequestsAndResponsesWithBodies) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    scope s;
    s.spawn(run_server(std::move(p.server_end), echo_handler(), http2::server_options{}, stats));
    http2::client_options co;
    co.authority = "example.org";
    co.scheme = "http";
    http2::client c(any_stream(std::move(p.client_end)), co);
    auto dl = deadline::after(10s);
    http2::client::outgoing get;
    get.target = "/a";
    auto r = co_await c.request(get, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->status(), 200);
    EXPECT_EQ(r->fields().get("x-method"), std::optional<std::string_view>("GET"));
    EXPECT_EQ(r->fields().get("server"), std::optional<std::string_view>("strata"));
    auto body = co_await r->read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("/a "));

    http2::client::outgoing post;
    post.method = "POST";
    post.target = "/b";
    post.body = "payload";
    r = co_await c.request(post, dl);
    CO_ASSERT_OK(r);
    body = co_await r->read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("/b payload"));
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
    CO_ASSERT_OK(stats);
    EXPECT_EQ(stats->requests, 2u);
  });
}

// A request needs an authority: without set_host, client_options::authority or a Host
// header the client refuses it with no_authority, saying why, before anything is sent;
// set_host supplies it (as http1::client::set_host does the Host field).
TEST(Http2, ARequestWithoutAnAuthorityIsRefusedAndSetHostSuppliesIt) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    scope s;
    s.spawn(run_server(std::move(p.server_end), echo_handler(), http2::server_options{}, stats));
    http2::client c(any_stream(std::move(p.client_end)));
    auto dl = deadline::after(10s);
    http2::client::outgoing get;
    get.target = "/a";
    auto refused = co_await c.request(get, dl);
    CO_ASSERT_TRUE(!refused);
    EXPECT_EQ(refused.error(), http2::make_error_code(http2::error::no_authority));
    EXPECT_EQ(refused.error(), errc::invalid_argument);
    EXPECT_NE(refused.error().message().find("set_host"), std::string::npos);
    c.set_host("example.org");
    auto r = co_await c.request(get, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->status(), 200);
    auto body = co_await r->read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("/a "));
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
  });
}

task<void> one_request(http2::client& c, int i, int& ok) {
  http2::client::outgoing get;
  get.target = "/" + std::to_string(i);
  auto dl = deadline::after(10s);
  auto r = co_await c.request(get, dl);
  if (!r) co_return;
  auto body = co_await r->read_body(1024, dl);
  if (body && *body == get.target + " ") ++ok;
}

TEST(Http2, ManyConcurrentStreamsOnOneConnection) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    scope s;
    s.spawn(run_server(std::move(p.server_end), echo_handler(), http2::server_options{}, stats));
    http2::client c(any_stream(std::move(p.client_end)), client_opts());
    int ok = 0;
    {
      scope requests;
      for (int i = 0; i < 50; ++i) requests.spawn(one_request(c, i, ok));
      (void)co_await requests.join(deadline::after(10s));
    }
    EXPECT_EQ(ok, 50);
    (void)co_await c.close(deadline::after(5s));
    (void)co_await s.join(deadline::after(5s));
    CO_ASSERT_OK(stats);
    EXPECT_EQ(stats->requests, 50u);
    // 50 responses left in far fewer writes than streams.
    EXPECT_LT(stats->writes, 50u);
  });
}

TEST(Http2, BodiesLargerThanEveryWindowStreamBothWays) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    http2::server_options o;
    o.stream_window = 65535;
    o.connection_window = 65535;
    o.max_body = 8 << 20;
    scope s;
    s.spawn(run_server(std::move(p.server_end), echo_handler(), o, stats));
    auto co = client_opts();
    co.stream_window = 65535;
    co.connection_window = 65535;
    http2::client c(any_stream(std::move(p.client_end)), co);
    auto dl = deadline::after(20s);
    http2::client::outgoing post;
    post.method = "PUT";
    post.target = "/big";
    post.body.resize(3 << 20);
    for (std::size_t i = 0; i < post.body.size(); ++i) post.body[i] = static_cast<char>('a' + i % 26);
    auto r = co_await c.request(post, dl);
    CO_ASSERT_OK(r);
    auto body = co_await r->read_body(8 << 20, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(body->size(), post.body.size() + 5);
    EXPECT_TRUE(*body == "/big " + post.body);
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
  });
}

TEST(Http2, StreamedResponseWithTrailersAndHead) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    auto h = [](http2::request&, http2::response& res) -> task<result<void>> {
      auto dl = deadline::after(10s);
      auto st = co_await res.start(200, std::nullopt, dl);
      if (!st) co_return st;
      for (int i = 0; i < 100; ++i) {
        std::string piece(1000, static_cast<char>('0' + i % 10));
        auto w = co_await res.write(as_bytes(piece), dl);
        if (!w) co_return w;
      }
      std::vector<http1::header> trailers;
      trailers.push_back({"X-Checksum", "abc"});
      co_return co_await res.finish(trailers, dl);
    };
    scope s;
    s.spawn(run_server(std::move(p.server_end), h, http2::server_options{}, stats));
    http2::client c(any_stream(std::move(p.client_end)), client_opts());
    auto dl = deadline::after(10s);
    http2::client::outgoing get;
    auto r = co_await c.request(get, dl);
    CO_ASSERT_OK(r);
    auto body = co_await r->read_body(1 << 20, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(body->size(), 100000u);
    EXPECT_EQ(r->trailers().get("x-checksum"), std::optional<std::string_view>("abc"));
    http2::client::outgoing head;
    head.method = "HEAD";
    r = co_await c.request(head, dl);
    CO_ASSERT_OK(r);
    body = co_await r->read_body(1 << 20, dl);
    CO_ASSERT_OK(body);
    EXPECT_TRUE(body->empty());
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
  });
}

TEST(Http2, AHandlerThatSendsNothingGets500) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    auto h = [](http2::request&, http2::response&) -> task<result<void>> { co_return result<void>{}; };
    scope s;
    s.spawn(run_server(std::move(p.server_end), h, http2::server_options{}, stats));
    http2::client c(any_stream(std::move(p.client_end)), client_opts());
    auto dl = deadline::after(10s);
    http2::client::outgoing get;
    auto r = co_await c.request(get, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->status(), 500);
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
  });
}

// A head over max_header_list is answered 431 (RFC 9113 10.5.1) without the handler; a
// body over max_body resets the stream; neither ends the connection.
TEST(Http2, HeaderListAndBodyLimitsEndTheStreamNotTheConnection) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    http2::server_options o;
    o.max_header_list = 4096;
    o.max_body = 1000;
    scope s;
    s.spawn(run_server(std::move(p.server_end), echo_handler(), o, stats));
    http2::client c(any_stream(std::move(p.client_end)), client_opts());
    auto dl = deadline::after(10s);
    http2::client::outgoing big_header;
    big_header.headers.push_back({"x-big", std::string(5000, 'v')});
    auto r = co_await c.request(big_header, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->status(), 431);
    auto refusal = co_await r->read_body(1024, dl);
    CO_ASSERT_OK(refusal);
    EXPECT_EQ(*refusal, std::string("request header fields too large\n"));
    http2::client::outgoing big_body;
    big_body.method = "POST";
    big_body.body.assign(5000, 'b');
    r = co_await c.request(big_body, dl);
    if (r) {
      auto body = co_await r->read_body(1 << 20, dl);
      EXPECT_FALSE(body.has_value());
    }
    // The connection still serves.
    http2::client::outgoing fine;
    fine.target = "/fine";
    r = co_await c.request(fine, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->status(), 200);
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
  });
}

TEST(Http2, AStoppingServerSendsGoawayAndFinishesStreamsInProgress) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    event stop;
    event entered;
    event release;
    auto h = [&](http2::request&, http2::response& res) -> task<result<void>> {
      entered.set();
      (void)co_await release.wait(deadline::after(10s));
      co_return co_await res.send(200, "late", deadline::after(10s));
    };
    http2::server_options o;
    o.stop = &stop;
    scope s;
    s.spawn(run_server(std::move(p.server_end), h, o, stats));
    http2::client c(any_stream(std::move(p.client_end)), client_opts());
    auto dl = deadline::after(10s);
    result<std::string> got = errc::closed;
    auto request = [](http2::client& c, result<std::string>& got) -> task<void> {
      http2::client::outgoing get;
      auto dl = deadline::after(10s);
      auto r = co_await c.request(get, dl);
      if (!r) {
        got = unexpected(r.error());
        co_return;
      }
      got = co_await r->read_body(1024, dl);
    };
    scope requests;
    requests.spawn(request(c, got));
    (void)co_await entered.wait(dl);
    stop.set();
    release.set();
    (void)co_await requests.join(dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, std::string("late"));
    (void)co_await s.join(dl);
    CO_ASSERT_OK(stats);
    // A request after the GOAWAY is refused by the client side.
    http2::client::outgoing again;
    auto r = co_await c.request(again, dl);
    EXPECT_FALSE(r.has_value());
    (void)co_await c.close(dl);
  });
}

// A header block larger than one frame travels as HEADERS + CONTINUATION; arriving a
// byte at a time it must not look like a CONTINUATION flood (nghttp2 1.52's limit counts
// pieces, see session_core::feed).
TEST(Http2, AHeaderBlockInContinuationsArrivingByteByByte) {
  run_test([]() -> task<void> {
    mem_options bytewise;
    bytewise.max_read_chunk = 1;
    auto [client_end, server_end] = mem_stream::pair(mem_options{}, bytewise);
    result<http2::serve_stats> stats = errc::closed;
    scope s;
    s.spawn(run_server(std::move(server_end), echo_handler(), http2::server_options{}, stats));
    http2::client c(any_stream(std::move(client_end)), client_opts());
    auto dl = deadline::after(20s);
    http2::client::outgoing get;
    get.target = "/large-head";
    for (int i = 0; i < 5; ++i)
      get.headers.push_back({"x-big-" + std::to_string(i), std::string(7000, 'a' + i)});
    auto r = co_await c.request(get, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->status(), 200);
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
  });
}

// Without client_options::scheme the client says "https" over a secure stream (tls
// below) and "http" over anything else; a scheme that is set is sent as it is.
TEST(Http2, TheSchemeFollowsTheStreamBelowUnlessSet) {
  run_test([]() -> task<void> {
    auto scheme_handler = [](http2::request& req, http2::response& res) -> task<result<void>> {
      co_return co_await res.send(200, std::string(req.head().scheme), deadline::after(10s));
    };
    auto scheme_seen = [&](any_stream client_end, any_stream server_end,
                           std::string scheme) -> task<result<std::string>> {
      result<http2::serve_stats> stats = errc::closed;
      scope s;
      s.spawn(run_server(std::move(server_end), scheme_handler, http2::server_options{}, stats));
      http2::client_options o;
      o.authority = "example.org";
      o.scheme = std::move(scheme);
      http2::client c(std::move(client_end), o);
      auto dl = deadline::after(10s);
      http2::client::outgoing get;
      auto r = co_await c.request(get, dl);
      if (!r) co_return unexpected(r.error());
      auto body = co_await r->read_body(64, dl);
      (void)co_await c.close(dl);
      (void)co_await s.join(dl);
      co_return body;
    };
    auto p = make_pair();
    auto plain =
        co_await scheme_seen(any_stream(std::move(p.client_end)), any_stream(std::move(p.server_end)), "");
    CO_ASSERT_OK(plain);
    EXPECT_EQ(*plain, "http");
    auto q = make_pair();
    auto set = co_await scheme_seen(any_stream(std::move(q.client_end)), any_stream(std::move(q.server_end)),
                                    "https");
    CO_ASSERT_OK(set);
    EXPECT_EQ(*set, "https");

    auto contexts = localhost_tls();
    CO_ASSERT_OK(contexts);
    auto server_ctx = &contexts->server;
    auto client_ctx = &contexts->client;
    auto t = make_pair();
    auto dl = deadline::after(10s);
    std::optional<result<tls::stream<any_stream>>> accepted;
    scope hs;
    hs.spawn(call([&]() -> task<void> {
      accepted = co_await tls::accept(any_stream(std::move(t.server_end)), *server_ctx, dl);
    }));
    tls::client_options hello;
    hello.server_name = "localhost";
    auto secured = co_await tls::connect(any_stream(std::move(t.client_end)), *client_ctx, hello, dl);
    (void)co_await hs.join(dl);
    CO_ASSERT_OK(secured);
    CO_ASSERT_TRUE(accepted.has_value() && accepted->has_value());
    auto over_tls =
        co_await scheme_seen(any_stream(std::move(*secured)), any_stream(std::move(**accepted)), "");
    CO_ASSERT_OK(over_tls);
    EXPECT_EQ(*over_tls, "https");
  });
}

// RFC 8441: an extended CONNECT turns one stream into a byte stream; TLS runs over it
// unchanged, on both sides, while the connection goes on serving other requests.
TEST(Http2, ExtendedConnectCarriesTlsOverOneStream) {
  run_test([]() -> task<void> {
    auto p = make_pair();
    result<http2::serve_stats> stats = errc::closed;
    auto contexts = localhost_tls();
    CO_ASSERT_OK(contexts);
    auto server_ctx = &contexts->server;
    auto client_ctx = &contexts->client;
    auto h = [ctx = *server_ctx](http2::request& req, http2::response& res) -> task<result<void>> {
      auto dl = deadline::after(10s);
      if (req.head().protocol != "echo-tls") co_return co_await res.send(400, "", dl);
      auto tunnel = co_await res.tunnel(dl);
      if (!tunnel) co_return unexpected(tunnel.error());
      auto secured = co_await tls::accept(std::move(*tunnel), ctx, dl);
      if (!secured) co_return unexpected(secured.error());
      std::array<std::byte, 1024> buf{};
      for (;;) {
        auto n = co_await secured->read_some(buf, dl);
        if (!n) break;
        auto w = co_await secured->write(const_buffer(buf.data(), *n), dl);
        if (!w) break;
      }
      (void)co_await secured->close(dl);
      co_return result<void>{};
    };
    scope s;
    s.spawn(run_server(std::move(p.server_end), h, http2::server_options{}, stats));
    http2::client c(any_stream(std::move(p.client_end)), client_opts());
    auto dl = deadline::after(10s);
    http2::client::outgoing connect;
    connect.protocol = "echo-tls";
    connect.target = "/tunnel";
    auto r = co_await c.request(connect, dl);
    CO_ASSERT_OK(r);
    CO_ASSERT_EQ(r->status(), 200);
    auto tunnel = r->tunnel();
    CO_ASSERT_OK(tunnel);
    tls::client_options hello;
    hello.server_name = "localhost";
    auto secured = co_await tls::connect(std::move(*tunnel), *client_ctx, hello, dl);
    CO_ASSERT_OK(secured);
    std::string message = "through TLS through one HTTP/2 stream";
    auto w = co_await secured->write(as_bytes(message), dl);
    CO_ASSERT_OK(w);
    std::string echoed;
    std::array<std::byte, 1024> buf{};
    while (echoed.size() < message.size()) {
      auto n = co_await secured->read_some(buf, dl);
      CO_ASSERT_OK(n);
      echoed.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    EXPECT_EQ(echoed, message);
    // Meanwhile the connection serves ordinary requests.
    http2::client::outgoing get;
    auto plain = co_await c.request(get, dl);
    CO_ASSERT_OK(plain);
    EXPECT_EQ(plain->status(), 400);
    (void)co_await secured->shutdown_write(dl);
    (void)co_await secured->close(dl);
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
  });
}

}  // namespace
}  // namespace strata::test
