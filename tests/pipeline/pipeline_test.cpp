// Pipelines end to end: stacks built from spec strings over real loopback TCP and
// abstract unix sockets exchange messages, describe() shows each layer's properties,
// and the free connect/listen refuse what the checker refuses.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

deadline soon() { return deadline::after(5s); }

/// echo_messages answers every message it receives with the same message, until the
/// peer finishes.
task<void> echo_messages(any_listener& listener, bool& accepted_message) {
  auto conn = co_await listener.accept(soon());
  if (!conn) co_return;
  accepted_message = conn->is_message();
  if (!conn->is_message()) co_return;
  auto& m = conn->message();
  std::array<std::byte, 256> buf;
  for (;;) {
    auto n = co_await m.recv(buf, soon());
    if (!n) break;
    if (!co_await m.send(const_buffer(buf.data(), *n), soon())) break;
  }
  (void)co_await m.close(soon());
}

/// exchange sends each message over `spec_text` and checks the echo.
task<std::vector<std::string>> exchange(std::string spec_text, std::vector<std::string> messages,
                                        properties& seen) {
  std::vector<std::string> echoed;
  auto conn = co_await strata::connect(spec_text, soon());
  if (!conn) {
    ADD_FAILURE() << "connect: " << conn.error().message();
    co_return echoed;
  }
  if (!conn->is_message()) {
    ADD_FAILURE() << "not a message socket";
    co_return echoed;
  }
  seen = conn->runtime_capabilities();
  auto& m = conn->message();
  std::array<std::byte, 256> buf;
  for (const auto& text : messages) {
    if (!co_await m.send(as_bytes(text), soon())) break;
    auto n = co_await m.recv(buf, soon());
    if (!n) break;
    echoed.emplace_back(as_text(const_buffer(buf.data(), *n)));
  }
  (void)co_await m.close(soon());
  co_return echoed;
}

TEST(PipelineEndToEnd, PrefixOverTcp) {
  const std::vector<std::string> messages = {"hello", "", "a|b,c", std::string(200, 'x')};
  properties seen;
  bool server_saw_message = false;
  auto echoed = run([&]() -> task<std::vector<std::string>> {
    auto listener = strata::listen("tcp-listen:127.0.0.1:0 | prefix(4)");
    if (!listener) {
      ADD_FAILURE() << "listen: " << listener.error().message();
      co_return std::vector<std::string>{};
    }
    auto port = listener->local_address()->port();
    std::vector<std::string> out;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(echo_messages(*listener, server_saw_message));
      out = co_await exchange("tcp:127.0.0.1:" + std::to_string(port) + " | prefix(4)", messages, seen);
    });
    listener->close();
    co_return out;
  }());
  EXPECT_EQ(echoed, messages);
  EXPECT_TRUE(server_saw_message);
  EXPECT_EQ(seen.unit, unit::message);
  EXPECT_EQ(seen.domain, domain::net);
  EXPECT_EQ(seen.max_message, std::size_t{1} << 20);
}

TEST(PipelineEndToEnd, CrlfOverAbstractUnixSocket) {
  std::string name = "@strata-test-" + std::to_string(::getpid());
  const std::vector<std::string> messages = {"one", "two words", "", "three"};
  properties seen;
  bool server_saw_message = false;
  auto echoed = run([&]() -> task<std::vector<std::string>> {
    auto listener = strata::listen("unix-listen:" + name + " | crlf");
    if (!listener) {
      ADD_FAILURE() << "listen: " << listener.error().message();
      co_return std::vector<std::string>{};
    }
    EXPECT_EQ(listener->local_address()->to_string(), name);
    std::vector<std::string> out;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(echo_messages(*listener, server_saw_message));
      out = co_await exchange("unix:" + name + " | crlf(max=200)", messages, seen);
    });
    listener->close();
    co_return out;
  }());
  EXPECT_EQ(echoed, messages);
  EXPECT_TRUE(server_saw_message);
  EXPECT_EQ(seen.domain, domain::ipc);
  EXPECT_EQ(seen.max_message, 200u);
}

/// top_facts connects `spec_text` and reads facts from the top of the stack, while
/// the listener's side reads the same from its accepted connection.
struct facts_seen {
  result<address> client_peer = errc::not_supported;
  result<address> client_local = errc::not_supported;
  result<address> server_peer = errc::not_supported;
  result<credentials> client_creds = errc::not_supported;
  result<credentials> server_creds = errc::not_supported;
  result<std::size_t> client_max = errc::not_supported;
};

task<void> accept_and_query(any_listener& listener, facts_seen& seen) {
  auto conn = co_await listener.accept(soon());
  if (!conn) co_return;
  seen.server_peer = query<fact::peer_address>(*conn);
  seen.server_creds = query<fact::peer_credentials>(*conn);
  (void)co_await conn->close(soon());
}

facts_seen query_both_ends(const std::string& listen_spec,
                           const std::function<std::string(any_listener&)>& connect_spec) {
  facts_seen seen;
  run([&]() -> task<void> {
    auto listener = strata::listen(listen_spec);
    if (!listener) {
      ADD_FAILURE() << "listen: " << listener.error().message();
      co_return;
    }
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(accept_and_query(*listener, seen));
      auto conn = co_await strata::connect(connect_spec(*listener), soon());
      if (!conn) {
        ADD_FAILURE() << "connect: " << conn.error().message();
        co_return;
      }
      seen.client_peer = query<fact::peer_address>(*conn);
      seen.client_local = query<fact::local_address>(*conn);
      seen.client_creds = query<fact::peer_credentials>(*conn);
      seen.client_max = query<fact::max_message>(*conn);
      (void)co_await conn->close(soon());
    });
    listener->close();
  }());
  return seen;
}

// The query interface reaches the transport from the top of a stack built from a spec:
// prefix and crlf answer nothing about addresses or credentials themselves, any_message
// and any_stream forward, and the transport answers.
TEST(PipelineQuery, PeerCredentialsAndAddressFromTheTopOfUnixPrefix) {
  std::string name = "@strata-query-" + std::to_string(::getpid());
  auto seen = query_both_ends("unix-listen:" + name + " | prefix(4)",
                              [&](any_listener&) { return "unix:" + name + " | prefix(4, max=64k)"; });
  ASSERT_TRUE(seen.client_creds) << seen.client_creds.error().message();
  EXPECT_EQ(seen.client_creds->pid, ::getpid());
  EXPECT_EQ(seen.client_creds->uid, ::getuid());
  ASSERT_TRUE(seen.server_creds) << seen.server_creds.error().message();
  EXPECT_EQ(seen.server_creds->pid, ::getpid());
  ASSERT_TRUE(seen.client_peer);
  EXPECT_EQ(seen.client_peer->to_string(), name);
  ASSERT_TRUE(seen.client_max);
  EXPECT_EQ(*seen.client_max, 64u * 1024);  // prefix answers, above the transport
}

TEST(PipelineQuery, PeerAddressFromTheTopOfTcpCrlf) {
  auto seen = query_both_ends("tcp-listen:127.0.0.1:0 | crlf", [](any_listener& l) {
    return "tcp:127.0.0.1:" + std::to_string(l.local_address()->port()) + " | crlf(max=1000)";
  });
  ASSERT_TRUE(seen.client_peer) << seen.client_peer.error().message();
  ASSERT_TRUE(seen.client_local);
  ASSERT_TRUE(seen.server_peer) << seen.server_peer.error().message();
  EXPECT_EQ(seen.client_peer->to_string().substr(0, 10), "127.0.0.1:");
  // Each end's peer is the other's local address.
  EXPECT_EQ(seen.server_peer->to_string(), seen.client_local->to_string());
  EXPECT_EQ(seen.client_creds.error(), errc::not_supported);  // tcp has no credentials
  EXPECT_EQ(seen.server_creds.error(), errc::not_supported);
  EXPECT_EQ(seen.client_max.value(), 1000u);
}

TEST(PipelineEndToEnd, TheWireFormatIsTheAdapters) {
  // A typed prefix<tcp::stream> client talks to a spec-built little-endian listener:
  // both sides must agree on the header, so the spec's parameters reached the adapter.
  bool ok = run([]() -> task<bool> {
    auto listener = strata::listen("tcp-listen:127.0.0.1:0 | prefix(bytes=2, order=little)");
    if (!listener) co_return false;
    auto port = listener->local_address()->port();
    bool good = false;
    bool server_saw_message = false;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(echo_messages(*listener, server_saw_message));
      auto raw = co_await tcp::connect("127.0.0.1:" + std::to_string(port), soon());
      if (!raw) co_return;
      std::array<std::byte, 5> frame = {std::byte{3}, std::byte{0}, std::byte{'a'}, std::byte{'b'},
                                        std::byte{'c'}};
      if (!co_await raw->write(const_buffer(frame), soon())) co_return;
      std::array<std::byte, 5> back;
      if (!co_await read_exact(*raw, back, soon())) co_return;
      good = back == frame;
      (void)co_await raw->close(soon());
    });
    listener->close();
    co_return good;
  }());
  EXPECT_TRUE(ok);
}

TEST(PipelineEndToEnd, BareTransportGivesAStream) {
  bool ok = run([]() -> task<bool> {
    auto listener = strata::listen("tcp-listen:127.0.0.1:0");
    if (!listener) co_return false;
    auto port = listener->local_address()->port();
    bool good = false;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](any_listener& l, bool& good) -> task<void> {
        auto c = co_await l.accept(soon());
        if (!c || !c->is_stream()) co_return;
        std::array<std::byte, 2> in;
        if (!co_await read_exact(c->stream(), in, soon())) co_return;
        good = as_text(in) == "hi";
        (void)co_await c->close(soon());
      }(*listener, good));
      auto c = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port) + "(nodelay=0)", soon());
      if (!c || !c->is_stream()) co_return;
      (void)co_await c->stream().write(as_bytes("hi"), soon());
      (void)co_await c->close(soon());
    });
    listener->close();
    co_return good;
  }());
  EXPECT_TRUE(ok);
}

TEST(PipelineEndToEnd, ConnectOutlivesItsArguments) {
  // connect reads the spec eagerly: the task still works after the text and the
  // pipeline object are gone.
  auto ec = run([]() -> task<std::error_code> {
    auto listener = strata::listen("tcp-listen:127.0.0.1:0 | crlf");
    if (!listener) co_return listener.error();
    auto port = listener->local_address()->port();
    std::error_code ec;
    co_await with_scope([&](scope& s) -> task<void> {
      bool ignored = false;
      s.spawn(echo_messages(*listener, ignored));
      task<stack_result<any_connection>> pending = [&] {
        std::string text = "tcp:127.0.0.1:" + std::to_string(port) + " | crlf";
        pipeline_error error;
        auto p = pipeline::parse(text, error);
        return p->connect(soon());
      }();
      auto c = co_await std::move(pending);
      if (!c) {
        ec = c.error();
        co_return;
      }
      (void)co_await c->close(soon());
    });
    listener->close();
    co_return ec;
  }());
  EXPECT_FALSE(ec) << ec.message();
}

TEST(PipelineEndToEnd, ConnectionRefusedIsReported) {
  auto ec = run([]() -> task<std::error_code> {
    std::uint16_t port = 0;
    {
      auto l = tcp::listener::bind("127.0.0.1:0");
      if (!l) co_return l.error();
      port = l->local_address()->port();
    }  // closed: nobody listens on the port any more
    auto c = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port) + " | prefix", soon());
    co_return c ? std::error_code{} : c.error();
  }());
  EXPECT_EQ(ec, std::error_code(ECONNREFUSED, std::system_category())) << ec.message();
}

TEST(PipelineEndToEnd, RefusedSpecsAndWrongRoles) {
  auto ec = run([]() -> task<std::error_code> {
    auto c = co_await strata::connect("tcp:127.0.0.1:1 | prefix(4) | crlf", soon());
    co_return c.error();
  }());
  EXPECT_EQ(ec, errc::invalid_argument);
  EXPECT_EQ(strata::listen("tcp-listen:127.0.0.1:0 | crlf | crlf").error(), errc::invalid_argument);

  pipeline_error error;
  auto connector = pipeline::parse("tcp:127.0.0.1:1 | crlf", error);
  ASSERT_TRUE(connector);
  EXPECT_EQ(connector->listen().error(), errc::invalid_argument);
  auto listener = pipeline::parse("tcp-listen:127.0.0.1:0 | crlf", error);
  ASSERT_TRUE(listener);
  auto wrong = run([](const pipeline& p) -> task<std::error_code> {
    auto c = co_await p.connect(soon());
    co_return c.error();
  }(*listener));
  EXPECT_EQ(wrong, errc::invalid_argument);
}

TEST(PipelineDescribe, OneLinePerLayerWithProperties) {
  pipeline_error error;
  auto p = pipeline::parse("tcp:127.0.0.1:7000|prefix( 4 )", error);
  ASSERT_TRUE(p) << error.render("tcp:127.0.0.1:7000|prefix( 4 )");
  EXPECT_EQ(p->text(), "tcp:127.0.0.1:7000|prefix( 4 )");
  auto text = p->describe();
  EXPECT_EQ(text, "tcp:127.0.0.1:7000  ->  " + describe(transport_properties(tcp::row)) + "\n" +
                      "prefix(4)           ->  " + describe(p->top()) + "\n");
  EXPECT_NE(text.find("connection-based stream reliable ordered"), std::string::npos) << text;
  EXPECT_NE(text.find("connection-based message reliable ordered"), std::string::npos) << text;
  EXPECT_NE(text.find("max_message=1048576"), std::string::npos) << text;
  EXPECT_NE(text.find("net"), std::string::npos) << text;
}

}  // namespace
}  // namespace strata
