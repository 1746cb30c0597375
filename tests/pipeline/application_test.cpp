// The application role (an application protocol on top of a pipeline, `... | http1`):
// the checker refuses it anywhere but on top and below anything that is not a reliable
// ordered stream, with its usual explanations; connect and listen build the layers below
// it and application() names it with the settings the spec gave; the settings parse and
// refuse like every entry's parameters; native_handle reaches the application only when
// nothing lies between it and the socket.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "strata/strata.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

std::string refusal(std::string_view text) {
  pipeline_error error;
  auto p = pipeline::parse(text, error);
  EXPECT_FALSE(p) << text;
  return error.message;
}

TEST(ApplicationRole, RefusesAnUnreliableOrMessageLayerBelow) {
  auto udp = refusal("udp:127.0.0.1:9 | http1");
  EXPECT_EQ(udp,
            "http1 needs a stream below it, but udp:127.0.0.1:9 provides message (unmet property: unit); "
            "insert reliable | bytes between them: `udp:127.0.0.1:9 | reliable | bytes | http1`");
  auto framed = refusal("tcp:127.0.0.1:9 | prefix(4) | http");
  EXPECT_NE(framed.find("http needs a stream below it, but prefix(4) provides message"), std::string::npos)
      << framed;
  // dtls gives secure messages, still not a stream.
  EXPECT_NE(refusal("udp:127.0.0.1:9 | dtls(sni=localhost) | http1").find("http1 needs a stream"),
            std::string::npos);
}

TEST(ApplicationRole, MustBeTheTopLayer) {
  auto above = refusal("tcp:127.0.0.1:9 | http1 | prefix(4)");
  EXPECT_EQ(
      above,
      "prefix cannot stand on http1: http1 is an application protocol (it carries requests and "
      "responses, not bytes or messages) and must be the top layer; put the layers it runs on below it");
  EXPECT_NE(refusal("tcp:127.0.0.1:9 | http | http1").find("http1 cannot stand on http"), std::string::npos);
  pipeline_error error;
  std::string text = "tcp:127.0.0.1:9 | http1 | tls(sni=a)";
  ASSERT_FALSE(pipeline::parse(text, error));
  EXPECT_EQ(error.position, text.find("tls"));
  auto first = refusal("http1 | tcp:127.0.0.1:9");
  EXPECT_EQ(first.rfind("http1 needs a stream below it, but it is the first layer", 0), 0u) << first;
  EXPECT_NE(first.find("`tcp:127.0.0.1:9 | http1`"), std::string::npos) << first;
  EXPECT_NE(refusal("udp-bind:127.0.0.1:0 | http1").find("a bound endpoint is connection-less"),
            std::string::npos);
}

TEST(ApplicationRole, ParametersAreCheckedAndKept) {
  pipeline_error error;
  auto p = pipeline::parse(
      "tcp-listen:127.0.0.1:0 | http1(max-body=1m, max-header=8k, header-timeout=250ms, idle-timeout=2m, "
      "max-requests=3)",
      error);
  ASSERT_TRUE(p) << error.message;
  const auto* app = p->application();
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->entry->protocol, "http1");
  EXPECT_EQ(app->entry->role, layer_role::application);
  const auto* settings = http1_settings_of(*app);
  ASSERT_NE(settings, nullptr);
  EXPECT_EQ(settings->server.limits.max_body, 1u << 20);
  EXPECT_EQ(settings->server.limits.max_header_block, 8u << 10);
  EXPECT_EQ(settings->server.header_timeout, 250ms);
  EXPECT_EQ(settings->server.idle_timeout, 2min);
  EXPECT_EQ(settings->server.body_timeout, 30s);  // the default
  EXPECT_EQ(settings->server.max_requests, 3u);
  EXPECT_EQ(settings->client.limits.max_body, 1u << 20);
  EXPECT_EQ(settings->client.header_timeout, 250ms);
  // The layer below is what connections give.
  EXPECT_EQ(p->top().unit, unit::stream);
  EXPECT_TRUE(p->is_listener());
  EXPECT_EQ(http1_settings_of(p->layers().front()), nullptr);

  // `http` is http1 or http2 as the peers agree: its settings are http1's, with http2's.
  auto h = pipeline::parse("unix:@x | http(max-body=1k)", error);
  ASSERT_TRUE(h) << error.message;
  ASSERT_NE(h->application(), nullptr);
  EXPECT_EQ(h->application()->entry->protocol, "http");
  EXPECT_NE(http1_settings_of(*h->application()), nullptr);
  const auto* both = http_settings_of(*h->application());
  ASSERT_NE(both, nullptr);
  EXPECT_EQ(both->server.limits.max_body, 1024u);
  EXPECT_EQ(both->server2.max_body, 1024u);
  auto h2 = pipeline::parse("tcp-listen:127.0.0.1:0 | http2(max-streams=7)", error);
  ASSERT_TRUE(h2) << error.message;
  const auto* h2_settings = http2_settings_of(*h2->application());
  ASSERT_NE(h2_settings, nullptr);
  EXPECT_EQ(h2_settings->server.max_concurrent_streams, 7u);
  EXPECT_EQ(http1_settings_of(*h2->application()), nullptr);

  auto plain = pipeline::parse("tcp:127.0.0.1:9 | prefix", error);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->application(), nullptr);

  EXPECT_EQ(refusal("tcp:127.0.0.1:9 | http1(header-timeout=soon)"),
            "http1: header-timeout 'soon' is not a duration (a number with ms, s or m)");
  EXPECT_EQ(refusal("tcp:127.0.0.1:9 | http1(max-header=10)"),
            "http1: max-header must be 1k to 1m, got '10'");
  EXPECT_EQ(refusal("tcp:127.0.0.1:9 | http1(header-timeout=0)"),
            "http1: header-timeout must be from 1ms to 60m, got '0'");
  EXPECT_NE(refusal("tcp:127.0.0.1:9 | http1(nope=1)").find("http1 has no parameter 'nope'"),
            std::string::npos);
  EXPECT_NE(refusal("tcp:127.0.0.1:9 | http1:x").find("http1 takes no target"), std::string::npos);
}

TEST(ApplicationRole, DescribeShowsTheApplicationOnTop) {
  pipeline_error error;
  auto p = pipeline::parse("tcp:127.0.0.1:9 | http1", error);
  ASSERT_TRUE(p);
  auto text = p->describe();
  EXPECT_NE(text.find("tcp:127.0.0.1:9  ->  connection-based stream"), std::string::npos) << text;
  EXPECT_NE(text.find("\nhttp1            ->  application net\n"), std::string::npos) << text;
  // Over tls the application's line shows what it passes on.
  auto secure = pipeline::parse("tcp:127.0.0.1:9 | tls(sni=localhost) | http1", error);
  ASSERT_TRUE(secure) << error.message;
  auto lines = secure->describe();
  auto at = lines.find("\nhttp1");
  ASSERT_NE(at, std::string::npos) << lines;
  EXPECT_NE(lines.find("->  application secure authenticated net\n", at), std::string::npos) << lines;
  EXPECT_TRUE(secure->top().secure);
  EXPECT_EQ(secure->top().unit, unit::stream);
}

TEST(ApplicationRole, ConnectAndListenBuildTheLayersBelowIt) {
  test::run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    pipeline_error error;
    auto server = pipeline::parse("tcp-listen:127.0.0.1:0 | http1", error);
    CO_ASSERT_TRUE(server.has_value());
    auto listener = server->listen();
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    auto client = pipeline::parse("tcp:127.0.0.1:" + std::to_string(port) + " | http", error);
    CO_ASSERT_TRUE(client.has_value());
    auto conn = co_await client->connect(dl);
    CO_ASSERT_OK(conn);
    auto accepted = co_await listener->accept(dl);
    CO_ASSERT_OK(accepted);
    // Both ends are the plain byte stream the application runs on, and nothing lies
    // between it and the socket: its descriptor is there for sendfile.
    CO_ASSERT_TRUE(conn->is_stream() && accepted->is_stream());
    auto fd = query<fact::native_handle>(*conn);
    auto accepted_fd = query<fact::native_handle>(*accepted);
    EXPECT_TRUE(fd.has_value() && *fd >= 0);
    EXPECT_TRUE(accepted_fd.has_value() && *accepted_fd >= 0);

    // Speak HTTP/1.1 over them.
    scope s;
    s.spawn(test::call([&]() -> task<void> {
      auto h = [](http1::request& req, http1::response& res) -> task<result<void>> {
        co_return co_await res.send(200, "hi " + std::string(req.target()), deadline::after(5s));
      };
      auto served = co_await http1::serve(accepted->take_stream(), h,
                                          http1_settings_of(*server->application())->server);
      EXPECT_TRUE(served.has_value());
    }));
    http1::client c(conn->take_stream(), http1_settings_of(*client->application())->client);
    c.set_host("127.0.0.1");
    http1::client::outgoing get;
    get.target = "/x";
    auto head = co_await c.send(get, dl);
    CO_ASSERT_OK(head);
    EXPECT_EQ(head->status, 200);
    auto body = co_await c.read_body(100, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("hi /x"));
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
    listener->close();
  });
}

TEST(ApplicationRole, NativeHandleStopsAtALayerThatChangesTheBytes) {
  test::run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto listener = strata::listen("tcp-listen:127.0.0.1:0 | prefix(4)");
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port) + " | prefix(4)", dl);
    CO_ASSERT_OK(conn);
    EXPECT_EQ(query<fact::native_handle>(*conn).error(), errc::not_supported);
    // The other facts still come from below.
    EXPECT_TRUE(query<fact::peer_address>(*conn).has_value());
    listener->close();
  });
}

}  // namespace
}  // namespace strata
