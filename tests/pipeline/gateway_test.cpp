// gateway (pipeline/gateway.hpp): many TCP clients over one mux channel to a backend and
// its TCP echo service, every byte checked; over a unix socket and a shm stream; a
// backend that dies (a forked child killed with SIGKILL) resets the clients it carried,
// and a new backend serves new clients.
#include "strata/pipeline/gateway.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "strata/strata.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

deadline soon() { return deadline::after(5s); }

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 7;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string unique(const char* what) {
  static int counter = 0;
  return std::string("strata-gw-test-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(++counter);
}

pipeline parsed(const std::string& text) {
  pipeline_error error;
  auto p = pipeline::parse(text, error);
  if (!p) ADD_FAILURE() << text << ": " << error.message;
  return *p;
}

task<void> echo_one(any_connection conn) {
  auto& s = conn.stream();
  std::array<std::byte, 16384> buf;
  for (;;) {
    auto n = co_await s.read_some(buf, soon());
    if (!n) break;
    if (!co_await s.write(const_buffer(buf.data(), *n), soon())) break;
  }
  (void)co_await s.shutdown_write(soon());
  (void)co_await conn.close(soon());
}

/// echo_service answers every connection of `listener` with what it sends.
task<void> echo_service(any_listener& listener) {
  co_await with_scope([&](scope& s) -> task<void> {
    for (;;) {
      auto conn = co_await listener.accept(deadline::never());
      if (!conn) co_return;
      s.spawn(echo_one(std::move(*conn)));
    }
  });
}

/// client_round connects to `port`, sends `out`, half-closes and reads the echo.
task<void> client_round(int port, std::string out, int& ok) {
  auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
  if (!conn) {
    ADD_FAILURE() << "connect: " << conn.error().message();
    co_return;
  }
  auto& s = conn->stream();
  std::string got;
  co_await with_scope([&](scope& sc) -> task<void> {
    sc.spawn(test::call([&]() -> task<void> {
      (void)co_await s.write(as_bytes(out), soon());
      (void)co_await s.shutdown_write(soon());
    }));
    std::array<std::byte, 16384> buf;
    for (;;) {
      auto n = co_await s.read_some(buf, soon());
      if (!n) {
        EXPECT_EQ(n.error(), errc::end_of_stream) << n.error().message();
        break;
      }
      got.append(as_text(const_buffer(buf.data(), *n)));
    }
  });
  (void)co_await conn->close(soon());
  if (got == out) ++ok;
}

/// many_clients: `n` clients at once through a gateway whose channel is `channel_connect`
/// to a backend listening on `channel_listen`.
void many_clients(const std::string& channel_listen, const std::string& channel_connect, int n,
                  std::size_t size) {
  int ok = 0;
  gateway_stats gs;
  backend_stats bs;
  test::run_test(
      [&]() -> task<void> {
        auto service = strata::listen("tcp-listen:127.0.0.1:0");
        auto channels = strata::listen(channel_listen);
        auto clients = strata::listen("tcp-listen:127.0.0.1:0");
        CO_ASSERT_TRUE(service.has_value() && channels.has_value() && clients.has_value());
        int service_port = service->local_address()->port();
        int port = clients->local_address()->port();
        gateway gw(parsed(channel_connect));
        gateway_backend backend(parsed("tcp:127.0.0.1:" + std::to_string(service_port)));
        co_await with_scope([&](scope& s) -> task<void> {
          s.spawn(echo_service(*service));
          s.spawn(test::call([&]() -> task<void> {
            auto served = co_await backend.serve(*channels);
            EXPECT_TRUE(served.has_value()) << served.error().message();
          }));
          s.spawn(test::call([&]() -> task<void> {
            auto served = co_await gw.serve(*clients);
            EXPECT_TRUE(served.has_value()) << served.error().message();
          }));
          auto up = co_await gw.wait_channel(soon());
          CO_ASSERT_TRUE(up.has_value());
          co_await with_scope([&](scope& cs) -> task<void> {
            for (int i = 0; i < n; ++i) cs.spawn(client_round(port, pattern(size + i, i), ok));
            co_return;
          });
          s.cancel();
        });
        gs = gw.stats();
        bs = backend.stats();
      },
      20s);
  EXPECT_EQ(ok, n);
  EXPECT_EQ(gs.channels, 1u);
  EXPECT_EQ(gs.clients, static_cast<std::uint64_t>(n));
  EXPECT_EQ(gs.served, static_cast<std::uint64_t>(n));
  EXPECT_EQ(gs.failed + gs.refused, 0u);
  EXPECT_EQ(bs.channels, 1u);
  EXPECT_EQ(bs.streams, static_cast<std::uint64_t>(n));
  std::uint64_t expected = 0;
  for (int i = 0; i < n; ++i) expected += size + i;
  EXPECT_EQ(gs.bytes_up, expected);
  EXPECT_EQ(gs.bytes_down, expected);
}

TEST(gateway, many_tcp_clients_over_one_unix_channel) {
  auto name = "@" + unique("unix");
  many_clients("unix-listen:" + name, "unix:" + name, 64, 100000);
}

TEST(gateway, many_tcp_clients_over_one_shm_channel) {
  auto name = unique("shm");
  many_clients("shm-listen:" + name, "shm:" + name, 16, 200000);
}

// -- a backend in a child process ----------------------------------------------------------

task<void> backend_main(std::string channel_listen, int service_port) {
  auto channels = strata::listen(channel_listen);
  if (!channels) co_return;
  gateway_backend backend(parsed("tcp:127.0.0.1:" + std::to_string(service_port)));
  (void)co_await backend.serve(*channels);
}

/// fork_backend starts a backend in a child process: it keeps only stdio, so closing a
/// socket in the test closes it for real, and runs its own loop on a thread of its own
/// (the test's loop in the copied memory is never touched).
pid_t fork_backend(const std::string& channel_listen, int service_port) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::close_range(3, ~0U, 0);
  std::thread t([&] { strata::run(backend_main(channel_listen, service_port)); });
  t.join();
  ::_exit(0);
}

void kill_child(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

TEST(gateway, backend_restart_resets_old_clients_and_serves_new_ones) {
  auto name = "@" + unique("restart");
  gateway_stats gs;
  std::error_code old_client_saw;
  int ok = 0;
  test::run_test(
      [&]() -> task<void> {
        auto service = strata::listen("tcp-listen:127.0.0.1:0");
        auto clients = strata::listen("tcp-listen:127.0.0.1:0");
        CO_ASSERT_TRUE(service.has_value() && clients.has_value());
        int service_port = service->local_address()->port();
        int port = clients->local_address()->port();
        gateway gw(parsed("unix:" + name));
        pid_t first = fork_backend("unix-listen:" + name, service_port);
        CO_ASSERT_TRUE(first > 0);
        co_await with_scope([&](scope& s) -> task<void> {
          s.spawn(echo_service(*service));
          s.spawn(test::call([&]() -> task<void> {
            auto served = co_await gw.serve(*clients);
            EXPECT_TRUE(served.has_value()) << served.error().message();
          }));
          auto up = co_await gw.wait_channel(soon());
          CO_ASSERT_TRUE(up.has_value());
          // An old client, mid-conversation when its backend dies.
          auto old = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
          CO_ASSERT_TRUE(old.has_value());
          (void)co_await old->stream().write(as_bytes("before"), soon());
          std::array<std::byte, 64> buf;
          auto n = co_await old->stream().read_some(buf, soon());
          CO_ASSERT_TRUE(n.has_value());
          EXPECT_EQ(std::string(as_text(const_buffer(buf.data(), *n))), std::string("before"));
          kill_child(first);
          auto after = co_await old->stream().read_some(buf, soon());
          old_client_saw = after ? std::error_code{} : after.error();
          (void)co_await old->close(soon());
          // A new backend; new clients are served by it.
          pid_t second = fork_backend("unix-listen:" + name, service_port);
          co_await with_scope([&](scope& cs) -> task<void> {
            for (int i = 0; i < 4; ++i) cs.spawn(client_round(port, pattern(50000, 100 + i), ok));
            co_return;
          });
          kill_child(second);
          s.cancel();
        });
        gs = gw.stats();
      },
      20s);
  EXPECT_EQ(old_client_saw, errc::broken) << old_client_saw.message();
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(gs.channels, 2u);
  EXPECT_GE(gs.channel_lost, 1u);
  EXPECT_EQ(gs.failed, 1u);
}

TEST(gateway, a_client_without_channel_is_reset_after_channel_wait) {
  auto name = "@" + unique("none");
  std::error_code saw;
  gateway_stats gs;
  test::run_test([&]() -> task<void> {
    auto clients = strata::listen("tcp-listen:127.0.0.1:0");
    CO_ASSERT_TRUE(clients.has_value());
    int port = clients->local_address()->port();
    gateway_options o;
    o.channel_wait = 100ms;
    gateway gw(parsed("unix:" + name), o);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> {
        auto served = co_await gw.serve(*clients);
        EXPECT_TRUE(served.has_value()) << served.error().message();
      }));
      auto c = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
      CO_ASSERT_TRUE(c.has_value());
      std::array<std::byte, 16> buf;
      auto n = co_await c->stream().read_some(buf, soon());
      saw = n ? std::error_code{} : n.error();
      (void)co_await c->close(soon());
      s.cancel();
    });
    gs = gw.stats();
  });
  EXPECT_EQ(saw, errc::broken) << saw.message();
  EXPECT_EQ(gs.refused, 1u);
  EXPECT_GE(gs.connect_failed, 1u);
}

TEST(gateway, gives_up_when_the_channel_stays_down) {
  auto name = "@" + unique("giveup");
  result<void> r;
  test::run_test([&]() -> task<void> {
    auto clients = strata::listen("tcp-listen:127.0.0.1:0");
    CO_ASSERT_TRUE(clients.has_value());
    gateway_options o;
    o.give_up = 150ms;
    gateway gw(parsed("unix:" + name), o);
    r = co_await gw.serve(*clients);
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::timed_out);
}

}  // namespace
}  // namespace strata
