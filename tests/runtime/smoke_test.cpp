#include <gtest/gtest.h>

#include <thread>

#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

TEST(Smoke, ScopeCancelSleep) {
  int result = run([]() -> task<int> {
    int finished = 0;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](int& f) -> task<void> {
        auto r = co_await sleep_for(10s);
        if (r.error() == errc::operation_canceled) ++f;
      }(finished));
      s.spawn([](int& f) -> task<void> {
        co_await sleep_for(1ms);
        ++f;
      }(finished));
      co_await sleep_for(20ms);
      s.cancel();
    });
    co_return finished;
  }());
  EXPECT_EQ(result, 2);
}

TEST(Smoke, TcpEcho) {
  auto ok = run([]() -> task<bool> {
    auto l = tcp::listener::bind("127.0.0.1:0");
    if (!l) co_return false;
    auto port = l->local_address()->port();
    bool good = false;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](tcp::listener& l) -> task<void> {
        auto c = co_await l.accept(deadline::after(5s));
        if (!c) co_return;
        std::array<std::byte, 100> buf;
        for (;;) {
          auto n = co_await c->read_some(buf, deadline::after(5s));
          if (!n) break;
          (void)co_await c->write(const_buffer(buf.data(), *n), deadline::after(5s));
        }
        (void)co_await c->close(deadline::after(5s));
      }(*l));
      auto c = co_await tcp::connect("127.0.0.1:" + std::to_string(port), deadline::after(5s));
      if (!c) co_return;
      (void)co_await c->write(as_bytes("hello"), deadline::after(5s));
      std::array<std::byte, 5> in;
      auto r = co_await read_exact(*c, in, deadline::after(5s));
      good = r && as_text(in) == "hello";
      auto cl = co_await c->close(deadline::after(5s));
      good = good && cl;
    });
    co_return good;
  }());
  EXPECT_TRUE(ok);
}

TEST(Smoke, ChannelAcrossThreads) {
  channel<int> ch(4);
  std::thread producer([&] {
    run([](channel<int>& ch) -> task<void> {
      for (int i = 0; i < 1000; ++i) (void)co_await ch.send(i, deadline::after(5s));
      ch.close();
    }(ch));
  });
  long total = run([](channel<int>& ch) -> task<long> {
    long sum = 0;
    for (;;) {
      auto v = co_await ch.recv(deadline::after(5s));
      if (!v) break;
      sum += *v;
    }
    co_return sum;
  }(ch));
  producer.join();
  EXPECT_EQ(total, 999L * 1000 / 2);
}

}  // namespace
}  // namespace strata
