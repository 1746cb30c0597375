// Layers that handshake: a test-only adapter, registered by the test as a program would
// (custom_protocol.hpp), exchanges a greeting before its connection is ready. A listening
// pipeline runs each connection's handshake concurrently under its own deadline: silent
// and half-finished clients never delay accepts or other clients, and their failures are
// counted and reported without ending the listener. Errors name the layer that failed.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <string>
#include <vector>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

/// greet is the test's handshaking layer: each side writes its greeting and reads the
/// peer's before the stream is handed up unchanged.
struct greet_options {
  std::string word = "hello";
};

constexpr capability_row greet_row{
    .name = "greet",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = {},
    .provided_value = {},
    .passed = prop_set::all(),
};

task<result<any_connection>> greet_wrap(any_connection lower, const greet_options& options, layer_side,
                                        deadline dl) {
  auto& s = lower.stream();
  std::string line = options.word + "\n";
  auto sent = co_await s.write(as_bytes(line), dl);
  std::string heard(line.size(), '\0');
  auto got = sent ? co_await read_exact(
                        s, mutable_buffer(reinterpret_cast<std::byte*>(heard.data()), heard.size()), dl)
                  : sent;
  std::error_code failure = !sent ? sent.error() : got.error();
  if (!failure && heard != line) failure = make_error_code(errc::protocol_error);
  if (failure) {
    (void)co_await s.close(deadline::after(100ms));
    co_return unexpected(failure);
  }
  co_return std::move(lower);
}

protocol_registry with_greet() {
  protocol_registry protocols;
  auto added = protocols.add(adapter_entry<greet_options>({
      .name = "greet",
      .summary = "a greeting each way before the stream is ready (test only)",
      .row = &greet_row,
      .params = {field<&greet_options::word>("word", "the greeting")},
      .wrap = greet_wrap,
  }));
  EXPECT_TRUE(added);
  return protocols;
}

std::string port_of(const any_listener& l) { return std::to_string(l.local_address()->port()); }

TEST(Handshake, SilentClientsDelayNeitherAcceptsNorOtherHandshakes) {
  constexpr int silent = 100;
  constexpr int greeting = 100;
  auto protocols = with_greet();
  handshake_stats stats;
  int served = 0;
  run([&]() -> task<void> {
    // A handshake deadline far beyond the test's: only concurrency can pass it.
    auto listener = strata::listen("tcp-listen:127.0.0.1:0(backlog=512) | greet",
                                   {.handshakes = {.timeout = 120s, .max_pending = 1024}}, protocols);
    if (!listener) {
      ADD_FAILURE() << listener.error().message();
      co_return;
    }
    std::string port = port_of(*listener);
    std::vector<tcp::stream> quiet;
    // Silent clients connect first, half of them after half a greeting.
    for (int i = 0; i < silent; ++i) {
      auto c = co_await tcp::connect(*address::parse_ip("127.0.0.1:" + port), deadline::after(5s));
      if (!c) {
        ADD_FAILURE() << "silent connect: " << c.error().message();
        co_return;
      }
      if (i % 2) (void)co_await c->write(as_bytes(std::string_view("hel")), deadline::after(5s));
      quiet.push_back(std::move(*c));
    }
    auto everyone = deadline::after(20s);
    co_await with_scope([&](scope& s) -> task<void> {
      for (int i = 0; i < greeting; ++i) {
        s.spawn([](std::string spec, const protocol_registry& p, deadline dl) -> task<void> {
          auto c = co_await strata::connect(spec, dl, p);
          if (!c) {
            ADD_FAILURE() << c.error().message();
            co_return;
          }
          (void)co_await c->close(dl);
        }("tcp:127.0.0.1:" + port + " | greet", protocols, everyone));
      }
      for (int i = 0; i < greeting; ++i) {
        auto conn = co_await listener->accept(everyone);
        if (!conn) {
          ADD_FAILURE() << "accept " << i << ": " << conn.error().message();
          break;
        }
        ++served;
        (void)co_await conn->close(everyone);
      }
    });
    stats = listener->handshakes();
    listener->close();
  }());
  EXPECT_EQ(served, greeting);
  EXPECT_EQ(stats.ready, static_cast<std::uint64_t>(greeting));
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.handshaking, static_cast<std::size_t>(silent));  // still waiting, not in the way
}

TEST(Handshake, FailedHandshakesAreCountedReportedAndNeverFatal) {
  auto protocols = with_greet();
  handshake_stats stats;
  std::vector<handshake_failure> failures;
  bool served_after = false;
  run([&]() -> task<void> {
    auto listener =
        strata::listen("tcp-listen:127.0.0.1:0 | greet", {.handshakes = {.timeout = 200ms}}, protocols);
    if (!listener) {
      ADD_FAILURE() << listener.error().message();
      co_return;
    }
    event three_failed;
    listener->on_handshake_failure([&](const handshake_failure& f) {
      failures.push_back(f);
      if (failures.size() == 3) three_failed.set();
    });
    std::string port = port_of(*listener);
    auto where = *address::parse_ip("127.0.0.1:" + port);
    auto dl = deadline::after(10s);
    // One client stays silent (times out), one greets wrongly (protocol_error), one
    // hangs up mid-greeting (end_of_stream).
    auto silent = co_await tcp::connect(where, dl);
    auto wrong = co_await tcp::connect(where, dl);
    auto gone = co_await tcp::connect(where, dl);
    if (!silent || !wrong || !gone) {
      ADD_FAILURE() << "connect";
      co_return;
    }
    (void)co_await wrong->write(as_bytes(std::string_view("howdy\n")), dl);
    (void)co_await gone->write(as_bytes(std::string_view("he")), dl);
    (void)co_await gone->shutdown_write(dl);  // ends mid-greeting (close would wait for the server)
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](std::string spec, const protocol_registry& p, deadline d) -> task<void> {
        auto c = co_await strata::connect(spec, d, p);
        EXPECT_TRUE(c) << (c ? "" : c.error().message());
        if (c) (void)co_await c->close(d);
      }("tcp:127.0.0.1:" + port + " | greet", protocols, dl));
      auto conn = co_await listener->accept(dl);
      served_after = static_cast<bool>(conn);
      if (conn) (void)co_await conn->close(dl);
    });
    // The silent client's deadline passes 200 ms after its accept.
    EXPECT_TRUE(co_await three_failed.wait(dl));
    stats = listener->handshakes();
    listener->close();
  }());
  EXPECT_TRUE(served_after);
  EXPECT_EQ(stats.failed, 3u);
  EXPECT_EQ(stats.timed_out, 1u);
  ASSERT_EQ(failures.size(), 3u);
  int timed_out = 0, protocol = 0, ended = 0;
  for (const auto& f : failures) {
    EXPECT_TRUE(f.peer) << "the observer learns whom the failure concerns";
    if (f.error == errc::timed_out) ++timed_out;
    if (f.error == errc::protocol_error) ++protocol;
    if (f.error == errc::end_of_stream || f.error == errc::broken) ++ended;
  }
  EXPECT_EQ(timed_out, 1);
  EXPECT_EQ(protocol, 1);
  EXPECT_EQ(ended, 1);
}

// The accept loop and the handshakes run on the loop of the run() that called accept();
// when that run ends they end with it, and the next run() accepts again.
TEST(Handshake, ListenerOutlivesTheRunThatStartedIt) {
  auto protocols = with_greet();
  auto listener = strata::listen("tcp-listen:127.0.0.1:0 | greet", {}, protocols);
  ASSERT_TRUE(listener) << listener.error().message();
  std::string spec = "tcp:127.0.0.1:" + port_of(*listener) + " | greet";
  for (int round = 0; round < 2; ++round) {
    bool served = run([&]() -> task<bool> {
      bool ok = false;
      co_await with_scope([&](scope& s) -> task<void> {
        s.spawn([](std::string spec, const protocol_registry& p) -> task<void> {
          auto c = co_await strata::connect(spec, deadline::after(5s), p);
          EXPECT_TRUE(c) << (c ? "" : c.error().message());
          if (c) (void)co_await c->close(deadline::after(5s));
        }(spec, protocols));
        auto conn = co_await listener->accept(deadline::after(5s));
        ok = static_cast<bool>(conn);
        if (conn) (void)co_await conn->close(deadline::after(5s));
      });
      co_return ok;
    }());
    EXPECT_TRUE(served) << "round " << round;
  }
  listener->close();
}

TEST(Handshake, ConnectErrorsNameTheLayer) {
  auto protocols = with_greet();
  auto refused = run([]() -> task<stack_result<any_connection>> {
    co_return co_await strata::connect("tcp:127.0.0.1:1 | prefix(4)", deadline::after(5s));
  }());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), std::error_code(ECONNREFUSED, std::system_category()));
  EXPECT_EQ(refused.error().message(), "connect tcp:127.0.0.1:1 | prefix(4): tcp: Connection refused");
  EXPECT_EQ(refused.error().layer(), "tcp");

  auto typo = run([]() -> task<stack_result<any_connection>> {
    co_return co_await strata::connect("tcp:127.0.0.1:1 | prefx", deadline::after(5s));
  }());
  ASSERT_FALSE(typo);
  EXPECT_EQ(typo.error(), errc::invalid_argument);
  EXPECT_EQ(typo.error().message(),
            "connect tcp:127.0.0.1:1 | prefx: unknown protocol 'prefx'; did you mean 'prefix'?");

  // A failed handshake names the handshaking layer: the peer greets wrongly.
  auto wrong = run([&]() -> task<stack_result<any_connection>> {
    auto l = tcp::listener::bind("127.0.0.1:0");
    if (!l) co_return stack_error("test", "", "", l.error());
    auto port = std::to_string(l->local_address()->port());
    stack_result<any_connection> out = stack_error();
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](tcp::listener& lis) -> task<void> {
        auto c = co_await lis.accept(deadline::after(5s));
        if (c) (void)co_await c->write(as_bytes(std::string_view("howdy\n")), deadline::after(5s));
        if (c) (void)co_await c->close(deadline::after(5s));
      }(*l));
      out = co_await strata::connect("tcp:127.0.0.1:" + port + " | greet", deadline::after(5s), protocols);
    });
    co_return out;
  }());
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), errc::protocol_error);
  EXPECT_EQ(wrong.error().layer(), "greet");
  EXPECT_NE(wrong.error().message().find("| greet: greet: "), std::string::npos) << wrong.error().message();
}

TEST(Handshake, CustomParametersAreCheckedLikeBuiltInOnes) {
  auto protocols = with_greet();
  pipeline_error error;
  EXPECT_TRUE(pipeline::parse("tcp:127.0.0.1:7 | greet(word=hi)", error, protocols)) << error.message;
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:7 | greet(wrd=hi)", error, protocols));
  EXPECT_NE(error.message.find("greet has no parameter 'wrd'"), std::string::npos) << error.message;
  // Only the registry that has it knows it.
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:7 | greet", error));
  EXPECT_NE(error.message.find("unknown protocol 'greet'"), std::string::npos) << error.message;
  // Its row is checked like any other: greet needs a stream.
  EXPECT_FALSE(pipeline::parse("udp:127.0.0.1:7 | greet", error, protocols));
  EXPECT_NE(error.message.find("greet needs a stream"), std::string::npos) << error.message;
  // A name already taken is refused.
  EXPECT_FALSE(
      protocols.add(adapter_entry<greet_options>({.name = "prefix", .row = &greet_row, .wrap = greet_wrap})));
}

}  // namespace
}  // namespace strata
