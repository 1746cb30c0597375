// inproc: the shared stream and message conformance suites (one thread; a tiny buffer
// for back-pressure), then pairs across two threads, the named rendezvous (bind, connect,
// backlog, refusals, close) and inproc:/inproc-listen: pipelines.
#include "strata/transport/inproc.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"

using namespace std::chrono_literals;

namespace strata::test {

namespace inproc_conformance {

struct stream_traits {
  using stream_type = inproc::stream;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static task<result<std::pair<inproc::stream, inproc::stream>>> make_pair(deadline) {
    co_return inproc::stream_pair();
  }
};

// 100-byte buffers: every write waits for the reader many times over.
struct tiny_buffer_traits {
  using stream_type = inproc::stream;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static constexpr std::size_t transfer_size = 256 * 1024;
  static task<result<std::pair<inproc::stream, inproc::stream>>> make_pair(deadline) {
    co_return inproc::stream_pair({.buffer_limit = 100});
  }
};

using stream_types = ::testing::Types<stream_traits, tiny_buffer_traits>;
INSTANTIATE_TYPED_TEST_SUITE_P(Inproc, stream_conformance, stream_types);

struct message_traits {
  using message_type = inproc::message;
  static constexpr std::size_t max_message = 64 * 1024;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<inproc::message, inproc::message>>> make_pair(deadline) {
    co_return inproc::message_pair({.capacity = 4, .max_message = max_message});
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Inproc, message_conformance, ::testing::Types<message_traits>);

}  // namespace inproc_conformance

namespace {

std::string unique_name() {
  static std::atomic<int> counter{0};
  return "inproc-test-" + std::to_string(counter++);
}

TEST(Inproc, RowsAndRuntimeCapabilities) {
  EXPECT_EQ(inproc::stream::capabilities.domain, domain::inproc);
  EXPECT_EQ(inproc::stream::capabilities.unit, unit::stream);
  EXPECT_EQ(inproc::message::capabilities.unit, unit::message);
  auto [a, b] = inproc::message_pair({.max_message = 1000});
  EXPECT_EQ(a.runtime_capabilities().max_message, 1000u);
}

TEST(Inproc, ShutdownWriteEndsMessagesAfterTheQueuedOnes) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto [a, b] = inproc::message_pair();
    auto w = co_await a.send(as_bytes("last"), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto late = co_await a.send(as_bytes("x"), dl);
    EXPECT_EQ(late.error(), errc::closed);
    std::array<std::byte, 16> buf;
    auto n = co_await b.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "last");
    auto end = co_await b.recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    // The other direction still works.
    auto back = co_await b.send(as_bytes("answer"), dl);
    CO_ASSERT_OK(back);
    auto got = co_await a.recv(buf, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *got)), "answer");
    // A closed peer breaks our sends.
    auto cl = co_await a.close(dl);
    CO_ASSERT_OK(cl);
    auto broken = co_await b.send(as_bytes("gone"), dl);
    EXPECT_EQ(broken.error(), errc::broken);
  });
}

// Each end on its own thread with its own event loop: wake-ups cross through eventfds.
TEST(Inproc, StreamEndsOnTwoThreads) {
  auto [a, b] = inproc::stream_pair({.buffer_limit = 4096});
  constexpr std::size_t total = 2 << 20;
  stream_transfer_stats w_ab, r_ab, w_ba, r_ba;
  std::thread other([&, &b = b] {
    run_test(
        [&]() -> task<void> {
          auto dl = deadline::after(20s);
          co_await with_scope([&](scope& s) -> task<void> {
            s.spawn(read_pattern(b, r_ab, dl));
            co_await write_pattern(b, total / 2, w_ba, dl);
          });
        },
        30s);
  });
  run_test(
      [&, &a = a]() -> task<void> {
        auto dl = deadline::after(20s);
        co_await with_scope([&](scope& s) -> task<void> {
          s.spawn(read_pattern(a, r_ba, dl));
          co_await write_pattern(a, total, w_ab, dl);
        });
      },
      30s);
  other.join();
  EXPECT_FALSE(w_ab.error || r_ab.error || w_ba.error || r_ba.error);
  EXPECT_EQ(r_ab.bytes, total);
  EXPECT_EQ(r_ab.first_bad_read, SIZE_MAX);
  EXPECT_EQ(r_ba.bytes, total / 2);
  EXPECT_EQ(r_ba.first_bad_read, SIZE_MAX);
}

TEST(Inproc, MessagesOnTwoThreads) {
  auto [a, b] = inproc::message_pair({.capacity = 2});
  constexpr int count = 2000;
  int received = 0;
  bool in_order = true;
  std::thread other([&, &b = b] {
    run_test(
        [&]() -> task<void> {
          std::array<std::byte, 16> buf;
          for (int i = 0; i < count; ++i) {
            auto n = co_await b.recv(buf, deadline::after(20s));
            CO_ASSERT_OK(n);
            if (as_text(const_buffer(buf.data(), *n)) != std::to_string(i)) in_order = false;
            ++received;
          }
        },
        30s);
  });
  run_test(
      [&, &a = a]() -> task<void> {
        for (int i = 0; i < count; ++i) {
          auto text = std::to_string(i);
          auto w = co_await a.send(as_bytes(text), deadline::after(20s));
          CO_ASSERT_OK(w);
        }
      },
      30s);
  other.join();
  EXPECT_EQ(received, count);
  EXPECT_TRUE(in_order);
}

// -- named rendezvous ---------------------------------------------------------------------

TEST(InprocNamed, ConnectAcceptAndTalk) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto name = unique_name();
    auto l = inproc::listener::bind(name);
    CO_ASSERT_OK(l);
    EXPECT_EQ(l->name(), name);
    EXPECT_EQ(l->local_address().error(), errc::not_supported);
    auto c = co_await inproc::connect(name, dl);  // queued in the backlog
    CO_ASSERT_OK(c);
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    auto w = co_await c->write(as_bytes("hello"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(*s, 5, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "hello");
    auto again = inproc::listener::bind(name);
    EXPECT_EQ(again.error(), std::errc::address_in_use);
    auto empty = inproc::listener::bind("");
    EXPECT_EQ(empty.error(), errc::invalid_argument);
  });
}

TEST(InprocNamed, RefusedWithoutListenerAndAfterClose) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto name = unique_name();
    auto none = co_await inproc::connect(name, dl);
    EXPECT_EQ(none.error(), std::errc::connection_refused);
    auto l = inproc::listener::bind(name);
    CO_ASSERT_OK(l);
    auto queued = co_await inproc::connect(name, dl);
    CO_ASSERT_OK(queued);
    l->close();
    // The connection that was never accepted ends; the name is free again.
    std::array<std::byte, 4> buf;
    auto end = co_await queued->read_some(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    auto after = co_await inproc::connect(name, dl);
    EXPECT_EQ(after.error(), std::errc::connection_refused);
    auto accept = co_await l->accept(dl);
    EXPECT_EQ(accept.error(), errc::closed);
    auto rebound = inproc::listener::bind(name);
    EXPECT_TRUE(rebound);
  });
}

TEST(InprocNamed, FullBacklogTimesTheConnectorOutAndCloseWakesAccept) {
  run_test([]() -> task<void> {
    auto name = unique_name();
    auto l = inproc::listener::bind(name, {.backlog = 1});
    CO_ASSERT_OK(l);
    auto first = co_await inproc::connect(name, deadline::after(5s));
    CO_ASSERT_OK(first);
    auto start = deadline::clock::now();
    auto second = co_await inproc::connect(name, deadline::after(30ms));
    EXPECT_EQ(second.error(), errc::timed_out);
    EXPECT_GE(elapsed_since(start), 30ms);
    auto s = co_await l->accept(deadline::after(5s));
    CO_ASSERT_OK(s);
    std::error_code outcome;
    co_await with_scope([&](scope& sc) -> task<void> {
      event parked;
      sc.spawn([](inproc::listener& l, event& parked, std::error_code& out) -> task<void> {
        parked.set();
        auto c = co_await l.accept(deadline::after(5s));
        out = c ? std::error_code{} : c.error();
      }(*l, parked, outcome));
      (void)co_await parked.wait(deadline::after(5s));
      l->close();
      co_return;
    });
    EXPECT_EQ(outcome, errc::closed);
  });
}

TEST(InprocNamed, ConnectorOnAnotherThread) {
  auto name = unique_name();
  auto l = inproc::listener::bind(name);
  ASSERT_TRUE(l);
  std::string got;
  std::thread client([&] {
    run_test(
        [&]() -> task<void> {
          auto c = co_await inproc::connect(name, deadline::after(10s));
          CO_ASSERT_OK(c);
          auto w = co_await c->write(as_bytes("across threads"), deadline::after(10s));
          CO_ASSERT_OK(w);
          (void)co_await c->shutdown_write(deadline::after(10s));
        },
        20s);
  });
  run_test(
      [&]() -> task<void> {
        auto s = co_await l->accept(deadline::after(10s));
        CO_ASSERT_OK(s);
        std::array<std::byte, 64> buf;
        for (;;) {
          auto n = co_await s->read_some(buf, deadline::after(10s));
          if (!n) {
            EXPECT_EQ(n.error(), errc::end_of_stream);
            break;
          }
          got.append(as_text(const_buffer(buf.data(), *n)));
        }
      },
      20s);
  client.join();
  EXPECT_EQ(got, "across threads");
}

TEST(InprocNamed, PipelinesMeetByName) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto name = unique_name();
    auto l = strata::listen("inproc-listen:" + name + "(backlog=2, buffer=4k) | crlf");
    CO_ASSERT_OK(l);
    auto c = co_await strata::connect("inproc:" + name + " | crlf", dl);
    CO_ASSERT_OK(c);
    CO_ASSERT_TRUE(c->is_message());
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    CO_ASSERT_TRUE(s->is_message());
    auto w = co_await c->message().send(as_bytes("a line"), dl);
    CO_ASSERT_OK(w);
    std::array<std::byte, 64> buf;
    auto n = co_await s->message().recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "a line");
    auto caps = c->runtime_capabilities();
    EXPECT_EQ(caps.domain, domain::inproc);
    pipeline_error error;
    EXPECT_FALSE(pipeline::parse("inproc-listen:x(buffer=0)", error));
    EXPECT_NE(error.message.find("buffer"), std::string::npos) << error.message;
  });
}

}  // namespace
}  // namespace strata::test
