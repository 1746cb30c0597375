// Pipelines end to end: stacks built from spec strings over real loopback TCP and
// abstract unix sockets exchange messages, describe() shows each layer's properties,
// and the free connect/listen refuse what the checker refuses.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
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
      task<result<any_connection>> pending = [&] {
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
