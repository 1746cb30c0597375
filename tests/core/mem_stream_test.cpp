// Self-tests of the in-memory test transport (tests/support/mem_stream.hpp): its own
// cases (chunking, back-pressure, fault injection, reset, moves) and the shared stream
// conformance suite, with default options and with tiny chunks and buffers.
#include "support/mem_stream.hpp"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <array>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"

using namespace std::chrono_literals;

namespace strata::test {

// -- conformance ------------------------------------------------------------------------
// The traits live outside the anonymous namespace (see conformance.hpp).

namespace mem_conformance {

struct mem_default_traits {
  using stream_type = mem_stream;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static task<result<std::pair<mem_stream, mem_stream>>> make_pair(deadline) { co_return mem_stream::pair(); }
};

// Tiny chunks and a tiny buffer force every read and write through many suspensions.
struct mem_tiny_traits {
  using stream_type = mem_stream;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static constexpr std::size_t transfer_size = 64 * 1024;
  static task<result<std::pair<mem_stream, mem_stream>>> make_pair(deadline) {
    mem_options o{.max_read_chunk = 7, .max_write_chunk = 13, .buffer_limit = 100};
    co_return mem_stream::pair(o, o);
  }
};

// The same suite through type erasure: any_stream forwards every call unchanged.
struct mem_any_traits {
  using stream_type = any_stream;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static task<result<std::pair<any_stream, any_stream>>> make_pair(deadline) {
    auto [a, b] = mem_stream::pair();
    co_return std::pair<any_stream, any_stream>{any_stream(std::move(a)), any_stream(std::move(b))};
  }
};

using types = ::testing::Types<mem_default_traits, mem_tiny_traits, mem_any_traits>;
INSTANTIATE_TYPED_TEST_SUITE_P(Mem, stream_conformance, types);

// A minimal in-memory message pair, only here to hold message_conformance itself to
// account (the suite's real users are the message layers).
class mem_message {
 public:
  static constexpr std::size_t max_message = 64 * 1024;

  static std::pair<mem_message, mem_message> pair() {
    auto st = std::make_shared<state>();
    return {mem_message(st, 0), mem_message(st, 1)};
  }

  task<result<void>> send(const_buffers bufs, deadline) {
    auto st = state_;
    if (st->closed[side_]) co_return errc::closed;
    if (bufs.total_size() > max_message) co_return errc::message_too_large;
    std::vector<std::byte> m;
    bufs.copy_to(m);
    st->queue[side_].push_back(std::move(m));
    st->ready[side_].set();
    co_return result<void>{};
  }

  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) {
    auto st = state_;
    int from = 1 - side_;
    for (;;) {
      if (st->closed[side_]) co_return errc::closed;
      auto& q = st->queue[from];
      if (!q.empty()) {
        auto& m = q.front();
        if (m.size() > buf.size()) co_return errc::message_too_large;  // kept for a retry
        std::copy(m.begin(), m.end(), buf.begin());
        std::size_t n = m.size();
        q.pop_front();
        if (q.empty()) st->ready[from].reset();
        co_return n;
      }
      if (st->closed[from]) co_return errc::end_of_stream;
      if (auto r = co_await st->ready[from].wait(dl); !r) co_return unexpected(r.error());
    }
  }

  task<result<void>> close(deadline) {
    auto st = state_;
    if (st->closed[side_]) co_return errc::closed;
    st->closed[side_] = true;
    st->ready[side_].set();
    co_return result<void>{};
  }

 private:
  struct state {
    std::deque<std::vector<std::byte>> queue[2];  // queue[i]: sent by end i
    event ready[2];                               // set while queue[i] is non-empty or i closed
    bool closed[2] = {false, false};
  };
  mem_message(std::shared_ptr<state> st, int side) : state_(std::move(st)), side_(side) {}
  std::shared_ptr<state> state_;
  int side_;
};
static_assert(message_socket<mem_message>);

struct mem_message_traits {
  using message_type = mem_message;
  static constexpr std::size_t max_message = mem_message::max_message;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<mem_message, mem_message>>> make_pair(deadline) {
    co_return mem_message::pair();
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Mem, message_conformance, ::testing::Types<mem_message_traits>);

}  // namespace mem_conformance

namespace {

static_assert(mem_stream::capabilities.unit == unit::stream);
static_assert(mem_stream::capabilities.domain == domain::inproc);
static_assert(mem_stream::capabilities.reliable && mem_stream::capabilities.ordered);

// -- own cases --------------------------------------------------------------------------

task<result<std::string>> read_all(mem_stream& s, deadline dl) {
  std::string out;
  std::array<std::byte, 256> buf;
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) {
      if (n.error() == errc::end_of_stream) co_return out;
      co_return unexpected(n.error());
    }
    out.append(as_text(const_buffer(buf.data(), *n)));
  }
}

TEST(MemStream, ReadChunkBoundsEveryRead) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair({}, {.max_read_chunk = 1});
    auto dl = deadline::after(5s);
    auto w = co_await a.write(as_bytes("abc"), dl);
    CO_ASSERT_OK(w);
    std::array<std::byte, 16> buf;
    for (char expected : std::string("abc")) {
      auto n = co_await b.read_some(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(*n, 1u);
      EXPECT_EQ(static_cast<char>(buf[0]), expected);
    }
    EXPECT_EQ(b.buffered(), 0u);
  });
}

TEST(MemStream, WriteChunksAreSeenSeparatelyByAWaitingReader) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair({.max_write_chunk = 2}, {});
    std::vector<std::size_t> sizes;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](mem_stream& b, std::vector<std::size_t>& sizes) -> task<void> {
        std::array<std::byte, 64> buf;
        for (;;) {
          auto n = co_await b.read_some(buf, deadline::after(5s));
          if (!n) break;
          sizes.push_back(*n);
        }
      }(b, sizes));
      (void)co_await a.write(as_bytes("abcdef"), deadline::after(5s));
      (void)co_await a.shutdown_write(deadline::after(5s));
      co_return;
    });
    EXPECT_EQ(sizes, (std::vector<std::size_t>{2, 2, 2}));
  });
}

TEST(MemStream, GatherWriteKeepsOrder) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair({.max_write_chunk = 3}, {});
    std::array<const_buffer, 4> parts{as_bytes("he"), as_bytes(""), as_bytes("llo "), as_bytes("world")};
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](mem_stream& a, std::array<const_buffer, 4>& parts) -> task<void> {
        auto w = co_await a.write(std::span<const const_buffer>(parts), deadline::after(5s));
        EXPECT_TRUE(w) << w.error().message();
        (void)co_await a.close(deadline::after(5s));
      }(a, parts));
      auto got = co_await read_all(b, deadline::after(5s));
      CO_ASSERT_OK(got);
      EXPECT_EQ(*got, "hello world");
    });
  });
}

TEST(MemStream, BackPressureBlocksTheWriterUntilTheDeadline) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair({.buffer_limit = 10}, {});
    // Fits: returns at once even with an expired deadline.
    auto first = co_await a.write(as_bytes("0123456789"), deadline::already());
    CO_ASSERT_OK(first);
    auto start = deadline::clock::now();
    auto blocked = co_await a.write(as_bytes("x"), deadline::after(20ms));
    EXPECT_EQ(blocked.error(), errc::timed_out);
    EXPECT_GE(elapsed_since(start), 20ms);
    // Nothing was handed over, so the direction still works.
    std::array<std::byte, 4> buf;
    auto n = co_await b.read_some(buf, deadline::after(5s));
    CO_ASSERT_OK(n);
    auto again = co_await a.write(as_bytes("x"), deadline::already());
    EXPECT_TRUE(again) << again.error().message();
  });
}

TEST(MemStream, PartialWriteThatTimesOutFailsTheDirection) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair({.buffer_limit = 4}, {});
    auto w = co_await a.write(as_bytes("0123456789"), deadline::after(10ms));
    EXPECT_EQ(w.error(), errc::timed_out);
    EXPECT_EQ(b.buffered(), 4u);
    auto again = co_await a.write(as_bytes("x"), deadline::after(5s));
    EXPECT_EQ(again.error(), errc::timed_out) << "the timed-out partial write must stay sticky";
  });
}

TEST(MemStream, WriterWakesWhenTheReaderMakesRoom) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair({.buffer_limit = 3}, {.max_read_chunk = 2});
    std::string got;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](mem_stream& a) -> task<void> {
        auto w = co_await a.write(as_bytes("abcdefghijklmnopqrstuvwxyz"), deadline::after(5s));
        EXPECT_TRUE(w) << w.error().message();
        (void)co_await a.shutdown_write(deadline::after(5s));
      }(a));
      auto all = co_await read_all(b, deadline::after(5s));
      CO_ASSERT_OK(all);
      got = *all;
    });
    EXPECT_EQ(got, "abcdefghijklmnopqrstuvwxyz");
  });
}

TEST(MemStream, InjectedWriteFailureIsStickyAndThePeerSeesBrokenAfterEarlierBytes) {
  run_test([]() -> task<void> {
    int before = mem_stream::injected_failures();
    auto [a, b] = mem_stream::pair({.fail_at_operation = 1}, {});
    auto dl = deadline::after(5s);
    auto w0 = co_await a.write(as_bytes("ok"), dl);
    CO_ASSERT_OK(w0);
    auto w1 = co_await a.write(as_bytes("lost"), dl);
    EXPECT_EQ(w1.error(), errc::broken);
    auto w2 = co_await a.write(as_bytes("more"), dl);
    EXPECT_EQ(w2.error(), errc::broken);
    EXPECT_EQ(mem_stream::injected_failures(), before + 1);
    std::array<std::byte, 16> buf;
    auto n = co_await b.read_some(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "ok");
    auto r = co_await b.read_some(buf, dl);
    EXPECT_EQ(r.error(), errc::broken);
    // The other direction is untouched.
    auto back = co_await b.write(as_bytes("back"), dl);
    CO_ASSERT_OK(back);
    auto m = co_await a.read_some(buf, dl);
    CO_ASSERT_OK(m);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *m)), "back");
  });
}

TEST(MemStream, InjectedReadFailureBreaksThePeersWrites) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair({}, {.fail_at_operation = 0});
    auto dl = deadline::after(5s);
    std::array<std::byte, 16> buf;
    auto r = co_await b.read_some(buf, dl);
    EXPECT_EQ(r.error(), errc::broken);
    auto r2 = co_await b.read_some(buf, dl);
    EXPECT_EQ(r2.error(), errc::broken);
    auto w = co_await a.write(as_bytes("x"), dl);
    EXPECT_EQ(w.error(), errc::broken);
  });
}

TEST(MemStream, ResetBreaksBothDirectionsOfThePeerAtOnce) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    auto dl = deadline::after(5s);
    (void)co_await a.write(as_bytes("dropped"), dl);
    a.reset();
    std::array<std::byte, 16> buf;
    auto r = co_await b.read_some(buf, dl);
    EXPECT_EQ(r.error(), errc::broken);
    auto w = co_await b.write(as_bytes("x"), dl);
    EXPECT_EQ(w.error(), errc::broken);
    auto own = co_await a.read_some(buf, dl);
    EXPECT_EQ(own.error(), errc::closed);
  });
}

TEST(MemStream, ResetWakesAWaitingPeerReader) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    std::error_code got;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](mem_stream& b, event& parked, std::error_code& got) -> task<void> {
        std::array<std::byte, 16> buf;
        parked.set();
        got = (co_await b.read_some(buf, deadline::after(5s))).error();
      }(b, parked, got));
      (void)co_await parked.wait(deadline::after(5s));
      a.reset();
    });
    EXPECT_EQ(got, errc::broken);
  });
}

TEST(MemStream, MovedEndpointKeepsTheConnection) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    mem_stream moved = std::move(a);
    EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_TRUE(moved.is_open());
    auto dl = deadline::after(5s);
    auto w = co_await moved.write(as_bytes("hi"), dl);
    CO_ASSERT_OK(w);
    std::array<std::byte, 4> buf;
    auto n = co_await b.read_some(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 2u);
    auto stale = co_await a.read_some(buf, dl);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(stale.error(), errc::closed);
    mem_stream assigned;
    assigned = std::move(b);
    auto back = co_await assigned.write(as_bytes("yo"), dl);
    CO_ASSERT_OK(back);
    auto m = co_await moved.read_some(buf, dl);
    CO_ASSERT_OK(m);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *m)), "yo");
  });
}

TEST(MemStream, DestroyingAnEndpointIsAnOrderlyClose) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    {
      mem_stream gone = std::move(a);
      (void)co_await gone.write(as_bytes("last words"), deadline::after(5s));
    }
    auto all = co_await read_all(b, deadline::after(5s));
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "last words");
    auto w = co_await b.write(as_bytes("x"), deadline::after(5s));
    EXPECT_EQ(w.error(), errc::broken);
  });
}

TEST(MemStream, OperationsAreCountedPerEndpoint) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    auto dl = deadline::after(5s);
    (void)co_await a.write(as_bytes("1"), dl);
    (void)co_await a.write(as_bytes("2"), dl);
    std::array<std::byte, 4> buf;
    (void)co_await b.read_some(buf, dl);
    EXPECT_EQ(a.operations(), 2u);
    EXPECT_EQ(b.operations(), 1u);
  });
}

// A small request/response exchange, looped with a failure injected at every operation
// of either side in turn: every run must end with an error (no crash, no hang) until the
// run in which no injected failure fires, which must succeed.
task<result<void>> echo_scenario(int fail_at, bool hurt_client) {
  mem_options hurt{.max_read_chunk = 3, .fail_at_operation = fail_at};
  mem_options fine{.max_read_chunk = 3};
  auto [client, server] = mem_stream::pair(hurt_client ? hurt : fine, hurt_client ? fine : hurt);
  auto dl = deadline::after(5s);
  result<void> server_outcome;
  result<void> client_outcome;
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn([](mem_stream& server, deadline dl, result<void>& out) -> task<void> {
      std::array<std::byte, 8> buf;
      for (;;) {
        auto n = co_await server.read_some(buf, dl);
        if (!n) {
          if (n.error() != errc::end_of_stream) out = n.error();
          break;
        }
        if (auto w = co_await server.write(const_buffer(buf.data(), *n), dl); !w) {
          out = w;
          break;
        }
      }
      (void)co_await server.close(dl);
    }(server, dl, server_outcome));
    const std::string request = "the quick brown fox";
    if (auto w = co_await client.write(as_bytes(request), dl); !w) {
      client_outcome = w;
      (void)co_await client.close(dl);
      co_return;
    }
    if (auto sh = co_await client.shutdown_write(dl); !sh) client_outcome = sh;
    auto echoed = co_await read_all(client, dl);
    if (!echoed) {
      client_outcome = echoed.error();
    } else if (*echoed != request) {
      client_outcome = errc::protocol_error;
    }
    (void)co_await client.close(dl);
  });
  if (!client_outcome) co_return client_outcome;
  co_return server_outcome;
}

TEST(MemStream, LoopedFailuresOnTheClient) {
  auto report = run_until_passes([](int fail_at) { return echo_scenario(fail_at, true); });
  EXPECT_TRUE(report.passed);
  EXPECT_GT(report.failed_runs, 3);
  EXPECT_EQ(report.runs, report.failed_runs + 1);
}

TEST(MemStream, LoopedFailuresOnTheServer) {
  auto report = run_until_passes([](int fail_at) { return echo_scenario(fail_at, false); });
  EXPECT_TRUE(report.passed);
  EXPECT_GT(report.failed_runs, 3);
}

TEST(MemStream, LoopReportsASwallowedFailure) {
  // A scenario that ignores its errors must be caught by the loop.
  testing::TestPartResultArray failures;
  {
    testing::ScopedFakeTestPartResultReporter reporter(
        testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    run_until_passes([](int fail_at) -> task<result<void>> {
      auto [a, b] = mem_stream::pair({.fail_at_operation = fail_at}, {});
      (void)co_await a.write(as_bytes("ignored"), deadline::after(5s));
      co_return result<void>{};
    });
  }
  ASSERT_EQ(failures.size(), 1);
  EXPECT_NE(std::string(failures.GetTestPartResult(0).message()).find("swallowed"), std::string::npos);
}

}  // namespace
}  // namespace strata::test
