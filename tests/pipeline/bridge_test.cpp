// bridge (pipeline/bridge.hpp): two connections joined end to end over real loopback
// sockets. Every byte is checked both ways; splice(2) is used between bare sockets and
// not above a layer that changes bytes; half-close crosses the bridge; idle and failures
// stop it, and reset_on_failure resets the TCP side.
#include "strata/pipeline/bridge.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <string>

#include "strata/strata.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

deadline soon() { return deadline::after(5s); }

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string unique_name(const char* what) {
  static int counter = 0;
  return std::string("@strata-bridge-test-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(++counter);
}

/// read_all reads `s` until its end; an error is recorded in `error`.
task<std::string> read_all(any_stream& s, std::error_code& error) {
  std::string out;
  std::array<std::byte, 16384> buf;
  for (;;) {
    auto n = co_await s.read_some(buf, soon());
    if (!n) {
      if (n.error() != errc::end_of_stream) error = n.error();
      co_return out;
    }
    out.append(as_text(const_buffer(buf.data(), *n)));
  }
}

/// an endpoint of the test: sends `out`, half-closes, reads everything that comes.
struct peer_side {
  std::string out;
  std::string got;
  std::error_code error;
};

task<void> talk(any_stream& s, peer_side& p) {
  co_await with_scope([&](scope& sc) -> task<void> {
    sc.spawn(test::call([&]() -> task<void> {
      auto w = co_await s.write(as_bytes(p.out), soon());
      if (!w) p.error = w.error();
      (void)co_await s.shutdown_write(soon());
    }));
    p.got = co_await read_all(s, p.error);
  });
  (void)co_await s.close(soon());
}

struct bridge_case {
  std::string front;  // listener the client connects to (side a)
  std::string back;   // listener of the service (side b)
  std::string front_connect;
  std::string back_connect;
};

/// run_bridge: a client through `front`, bridged to `back`, exchanges `up` and `down`.
task<void> run_bridge(const bridge_case& c, const bridge_options& options, peer_side& client,
                      peer_side& service, bridge_result& r) {
  auto front = strata::listen(c.front);
  CO_ASSERT_TRUE(front.has_value());
  auto back = strata::listen(c.back);
  CO_ASSERT_TRUE(back.has_value());
  std::string front_target = c.front_connect;
  if (front_target.find(":0") != std::string::npos)
    front_target = "tcp:127.0.0.1:" + std::to_string(front->local_address()->port());
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(test::call([&]() -> task<void> {
      auto a = co_await front->accept(soon());
      CO_ASSERT_TRUE(a.has_value());
      auto b = co_await strata::connect(c.back_connect, soon());
      CO_ASSERT_TRUE(b.has_value());
      r = co_await bridge(*a, *b, options);
    }));
    s.spawn(test::call([&]() -> task<void> {
      auto conn = co_await back->accept(soon());
      CO_ASSERT_TRUE(conn.has_value());
      co_await talk(conn->stream(), service);
    }));
    auto conn = co_await strata::connect(front_target, soon());
    CO_ASSERT_TRUE(conn.has_value());
    co_await talk(conn->stream(), client);
  });
}

TEST(bridge, tcp_to_unix_is_spliced_and_every_byte_crosses_both_ways) {
  auto name = unique_name("splice");
  bridge_case c{"tcp-listen:127.0.0.1:0", "unix-listen:" + name, "tcp:127.0.0.1:0", "unix:" + name};
  peer_side client{pattern(3 << 20, 1), {}, {}};
  peer_side service{pattern(1234567, 2), {}, {}};
  bridge_result r;
  test::run_test([&]() -> task<void> { co_await run_bridge(c, {}, client, service, r); });
  EXPECT_FALSE(r.error) << r.what << ": " << r.error.message();
  EXPECT_FALSE(client.error) << client.error.message();
  EXPECT_FALSE(service.error) << service.error.message();
  EXPECT_TRUE(service.got == client.out) << service.got.size();
  EXPECT_TRUE(client.got == service.out) << client.got.size();
  EXPECT_EQ(r.bytes_ab, client.out.size());
  EXPECT_EQ(r.bytes_ba, service.out.size());
  EXPECT_EQ(r.spliced, r.bytes_ab + r.bytes_ba);
}

// A side whose stack holds output back (`| buffered`) gets what the bridge wrote flushed
// before the bridge waits to read again: a question crosses while the asker waits for
// the answer with its write direction still open.
TEST(bridge, a_buffering_side_is_flushed_before_the_bridge_waits) {
  auto name = unique_name("buffered");
  auto front = strata::listen("tcp-listen:127.0.0.1:0");
  ASSERT_TRUE(front.has_value());
  auto back = strata::listen("unix-listen:" + name);
  ASSERT_TRUE(back.has_value());
  std::string port = std::to_string(front->local_address()->port());
  bridge_result r;
  std::string answer;
  test::run_test([&]() -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> {
        auto a = co_await front->accept(soon());
        CO_ASSERT_TRUE(a.has_value());
        auto b = co_await strata::connect("unix:" + name + " | buffered", soon());
        CO_ASSERT_TRUE(b.has_value());
        r = co_await bridge(*a, *b, {});
      }));
      s.spawn(test::call([&]() -> task<void> {
        auto conn = co_await back->accept(soon());
        CO_ASSERT_TRUE(conn.has_value());
        std::array<std::byte, 16> buf;
        auto n = co_await conn->stream().read_some(buf, soon());
        CO_ASSERT_TRUE(n.has_value());
        EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "ping");
        auto w = co_await conn->stream().write(as_bytes(std::string_view("pong")), soon());
        CO_ASSERT_TRUE(w.has_value());
        (void)co_await conn->close(soon());
      }));
      auto conn = co_await strata::connect("tcp:127.0.0.1:" + port, soon());
      CO_ASSERT_TRUE(conn.has_value());
      auto w = co_await conn->stream().write(as_bytes(std::string_view("ping")), soon());
      CO_ASSERT_TRUE(w.has_value());
      std::error_code error;
      answer = co_await read_all(conn->stream(), error);  // the service's close ends it
      EXPECT_FALSE(error) << error.message();
      (void)co_await conn->close(soon());
    });
  });
  EXPECT_EQ(answer, "pong");
  EXPECT_FALSE(r.error) << r.what << ": " << r.error.message();
}

TEST(bridge, copies_when_splice_is_off) {
  auto name = unique_name("copy");
  bridge_case c{"tcp-listen:127.0.0.1:0", "unix-listen:" + name, "tcp:127.0.0.1:0", "unix:" + name};
  peer_side client{pattern(1 << 20, 3), {}, {}};
  peer_side service{pattern(100000, 4), {}, {}};
  bridge_result r;
  bridge_options options;
  options.splice = false;
  test::run_test([&]() -> task<void> { co_await run_bridge(c, options, client, service, r); });
  EXPECT_FALSE(r.error) << r.what << ": " << r.error.message();
  EXPECT_TRUE(service.got == client.out);
  EXPECT_TRUE(client.got == service.out);
  EXPECT_EQ(r.spliced, 0u);
  EXPECT_EQ(r.bytes_ab, client.out.size());
}

TEST(bridge, half_close_of_one_side_leaves_the_other_direction_open) {
  // The client sends nothing and half-closes at once; the service still sends 2 MiB.
  auto name = unique_name("half");
  bridge_case c{"tcp-listen:127.0.0.1:0", "unix-listen:" + name, "tcp:127.0.0.1:0", "unix:" + name};
  peer_side client{"", {}, {}};
  peer_side service{pattern(2 << 20, 5), {}, {}};
  bridge_result r;
  test::run_test([&]() -> task<void> { co_await run_bridge(c, {}, client, service, r); });
  EXPECT_FALSE(r.error) << r.what;
  EXPECT_TRUE(service.got.empty());
  EXPECT_TRUE(client.got == service.out);
}

TEST(bridge, shm_side_is_copied) {
  // shm has no descriptor of its own to splice: the tcp -> shm direction copies.
  auto name = "strata-bridge-shm-" + std::to_string(::getpid());
  bridge_case c{"tcp-listen:127.0.0.1:0", "shm-listen:" + name, "tcp:127.0.0.1:0", "shm:" + name};
  peer_side client{pattern(1 << 20, 6), {}, {}};
  peer_side service{pattern(300000, 7), {}, {}};
  bridge_result r;
  test::run_test([&]() -> task<void> { co_await run_bridge(c, {}, client, service, r); });
  EXPECT_FALSE(r.error) << r.what << ": " << r.error.message();
  EXPECT_TRUE(service.got == client.out);
  EXPECT_TRUE(client.got == service.out);
  EXPECT_EQ(r.spliced, 0u);
}

TEST(bridge, messages_are_forwarded_whole) {
  auto name = unique_name("msg");
  bridge_result r;
  std::vector<std::string> got;
  test::run_test([&]() -> task<void> {
    auto front = strata::listen("tcp-listen:127.0.0.1:0 | prefix(4)");
    CO_ASSERT_TRUE(front.has_value());
    auto back = strata::listen("unix-listen:" + name + " | crlf");
    CO_ASSERT_TRUE(back.has_value());
    auto port = front->local_address()->port();
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> {
        auto a = co_await front->accept(soon());
        CO_ASSERT_TRUE(a.has_value());
        auto b = co_await strata::connect("unix:" + name + " | crlf", soon());
        CO_ASSERT_TRUE(b.has_value());
        r = co_await bridge(*a, *b, {});
      }));
      s.spawn(test::call([&]() -> task<void> {
        auto conn = co_await back->accept(soon());
        CO_ASSERT_TRUE(conn.has_value());
        std::array<std::byte, 256> buf;
        for (;;) {
          auto n = co_await conn->message().recv(buf, soon());
          if (!n) break;
          got.emplace_back(as_text(const_buffer(buf.data(), *n)));
          (void)co_await conn->message().send(const_buffer(buf.data(), *n), soon());
        }
        (void)co_await conn->close(soon());
      }));
      auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port) + " | prefix(4)", soon());
      CO_ASSERT_TRUE(conn.has_value());
      std::array<std::byte, 256> buf;
      for (std::string m : {"one", "", "three three"}) {
        (void)co_await conn->message().send(as_bytes(m), soon());
        auto n = co_await conn->message().recv(buf, soon());
        CO_ASSERT_TRUE(n.has_value());
        EXPECT_EQ(std::string(as_text(const_buffer(buf.data(), *n))), m);
      }
      (void)co_await conn->message().shutdown_write(soon());
      auto end = co_await conn->message().recv(buf, soon());
      EXPECT_EQ(end.error(), errc::end_of_stream);
      (void)co_await conn->close(soon());
    });
  });
  EXPECT_FALSE(r.error) << r.what;
  EXPECT_EQ(r.messages_ab, 3u);
  EXPECT_EQ(r.messages_ba, 3u);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2], "three three");
}

TEST(bridge, idle_deadline_fails_the_bridge) {
  auto name = unique_name("idle");
  bridge_result r;
  std::error_code client_saw;
  test::run_test([&]() -> task<void> {
    auto front = strata::listen("tcp-listen:127.0.0.1:0");
    auto back = strata::listen("unix-listen:" + name);
    CO_ASSERT_TRUE(front.has_value() && back.has_value());
    auto port = front->local_address()->port();
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> {
        auto a = co_await front->accept(soon());
        auto b = co_await strata::connect("unix:" + name, soon());
        CO_ASSERT_TRUE(a.has_value() && b.has_value());
        bridge_options options;
        options.idle = 150ms;
        options.reset_on_failure = true;
        r = co_await bridge(*a, *b, options);
      }));
      s.spawn(test::call([&]() -> task<void> {
        auto conn = co_await back->accept(soon());
        CO_ASSERT_TRUE(conn.has_value());
        std::error_code ignored;
        (void)co_await read_all(conn->stream(), ignored);
      }));
      auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
      CO_ASSERT_TRUE(conn.has_value());
      (void)co_await read_all(conn->stream(), client_saw);
    });
  });
  EXPECT_EQ(r.error, errc::timed_out);
  EXPECT_TRUE(r.idle_expired);
  EXPECT_EQ(r.what, "no data for 150ms");
  // reset_on_failure: the client reads a reset, not an orderly end.
  EXPECT_EQ(client_saw, errc::broken) << client_saw.message();
}

TEST(bridge, a_failing_side_stops_both_and_names_it) {
  auto name = unique_name("fail");
  bridge_result r;
  std::error_code client_saw;
  test::run_test([&]() -> task<void> {
    auto front = strata::listen("tcp-listen:127.0.0.1:0");
    auto back = strata::listen("tcp-listen:127.0.0.1:0");
    CO_ASSERT_TRUE(front.has_value() && back.has_value());
    auto port = front->local_address()->port();
    auto back_port = back->local_address()->port();
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> {
        auto a = co_await front->accept(soon());
        auto b = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(back_port), soon());
        CO_ASSERT_TRUE(a.has_value() && b.has_value());
        bridge_options options;
        options.label_a = "front";
        options.label_b = "back";
        options.reset_on_failure = true;
        r = co_await bridge(*a, *b, options);
      }));
      s.spawn(test::call([&]() -> task<void> {
        auto conn = co_await back->accept(soon());
        CO_ASSERT_TRUE(conn.has_value());
        std::array<std::byte, 4> buf;
        (void)co_await conn->stream().read_some(buf, soon());
        // The service resets its connection.
        int fd = *query<fact::native_handle>(conn->stream());
        linger lg{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        sockaddr unspec{};
        unspec.sa_family = AF_UNSPEC;
        ::connect(fd, &unspec, sizeof unspec);  // RST, no FIN
        (void)co_await conn->close(soon());
      }));
      auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
      CO_ASSERT_TRUE(conn.has_value());
      (void)co_await conn->stream().write(as_bytes("hello"), soon());
      (void)co_await read_all(conn->stream(), client_saw);
    });
  });
  EXPECT_EQ(r.error, errc::broken) << r.what << ": " << r.error.message();
  EXPECT_EQ(r.what.rfind("back: ", 0), 0u) << r.what;
  EXPECT_EQ(client_saw, errc::broken) << client_saw.message();
}

int open_descriptors() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST(bridge, a_spliced_direction_gives_its_pipe_back_when_idle) {
  auto name = unique_name("idlepipe");
  int before_data = 0;
  int with_pipes = 0;
  int after_idle = 0;
  bridge_result r;
  test::run_test([&]() -> task<void> {
    auto front = strata::listen("tcp-listen:127.0.0.1:0");
    auto back = strata::listen("unix-listen:" + name);
    CO_ASSERT_TRUE(front.has_value() && back.has_value());
    auto port = front->local_address()->port();
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> {
        auto a = co_await front->accept(soon());
        auto b = co_await strata::connect("unix:" + name, soon());
        CO_ASSERT_TRUE(a.has_value() && b.has_value());
        r = co_await bridge(*a, *b, {});
      }));
      auto client = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
      CO_ASSERT_TRUE(client.has_value());
      auto service = co_await back->accept(soon());
      CO_ASSERT_TRUE(service.has_value());
      before_data = open_descriptors();  // the bridge holds no pipe yet
      (void)co_await client->stream().write(as_bytes("ping"), soon());
      std::array<std::byte, 8> buf;
      auto n = co_await service->stream().read_some(buf, soon());
      CO_ASSERT_TRUE(n.has_value());
      with_pipes = open_descriptors();
      // The direction has waited 50 ms for more: its pipe goes (looked at until 2 s).
      auto until = deadline::after(2s);
      while ((after_idle = open_descriptors()) != before_data && !until.expired())
        (void)co_await sleep_until(deadline::after(10ms));
      (void)co_await client->stream().shutdown_write(soon());
      (void)co_await service->stream().shutdown_write(soon());
      std::error_code ignored;
      (void)co_await read_all(client->stream(), ignored);
      (void)co_await read_all(service->stream(), ignored);
      (void)co_await client->close(soon());
      (void)co_await service->close(soon());
    });
  });
  EXPECT_FALSE(r.error) << r.what;
  EXPECT_EQ(r.spliced, 4u);
  EXPECT_EQ(with_pipes, before_data + 2);  // one pipe, for the direction that moved data
  EXPECT_EQ(after_idle, before_data);
}

TEST(bridge, different_units_are_refused) {
  auto name = unique_name("unit");
  bridge_result r;
  test::run_test([&]() -> task<void> {
    auto back = strata::listen("unix-listen:" + name);
    CO_ASSERT_TRUE(back.has_value());
    auto a = co_await strata::connect("unix:" + name, soon());
    auto b = co_await strata::connect("unix:" + name + " | prefix(4)", soon());
    CO_ASSERT_TRUE(a.has_value() && b.has_value());
    r = co_await bridge(*a, *b, {});
  });
  EXPECT_EQ(r.error, errc::invalid_argument);
}

TEST(bridge, splice_handle_answers_only_bare_stream_descriptors) {
  auto name = unique_name("handle");
  test::run_test([&]() -> task<void> {
    auto back = strata::listen("unix-listen:" + name);
    CO_ASSERT_TRUE(back.has_value());
    auto bare = co_await strata::connect("unix:" + name, soon());
    CO_ASSERT_TRUE(bare.has_value());
    EXPECT_TRUE(splice_handle(bare->stream()).has_value());
    auto framed = co_await strata::connect("unix:" + name + " | buffered", soon());
    CO_ASSERT_TRUE(framed.has_value());
    EXPECT_FALSE(splice_handle(framed->stream()).has_value());
    // Nobody accepts them: close does not wait for the peer's end.
    (void)co_await bare->close(deadline::after(10ms));
    (void)co_await framed->close(deadline::after(10ms));
  });
}

}  // namespace
}  // namespace strata
