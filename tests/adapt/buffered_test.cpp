// buffered: the stream conformance suite with nothing held back, then what the layer is
// for — small writes coalesced (proven by counting the lower layer's writes), the size
// limit, large writes going straight through in one gather write, the flush before a read
// waits (and none when bytes are already there), errors surfacing at the next write,
// flush or read, flushing at shutdown_write, close and detach, a writer and a reader at
// once, flushing through type erasure, and a spec string round trip over TCP.
#include "strata/adapt/buffered.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/adapt/prefix.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/pipeline/registry.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/unix.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "support/mem_stream.hpp"

using namespace std::chrono_literals;

// -- the shared stream conformance suite, with nothing held back (size 1): the read,
// close and deadline paths through the layer. (Traits outside the anonymous namespace:
// see conformance.hpp.) ----------------------------------------------------------------

namespace strata::test {
namespace buffered_conformance {

struct over_unix {
  using stream_type = buffered<uds::stream>;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static task<result<std::pair<stream_type, stream_type>>> make_pair(deadline) {
    auto p = uds::stream::pair();
    if (!p) co_return unexpected(p.error());
    buffered_options o{.size = 1};
    co_return std::pair<stream_type, stream_type>{stream_type(std::move(p->first), o),
                                                  stream_type(std::move(p->second), o)};
  }
};

struct over_mem {
  using stream_type = buffered<mem_stream>;
  static constexpr bool close_unblocks_reader = true;
  static constexpr std::size_t transfer_size = 1 << 20;
  static task<result<std::pair<stream_type, stream_type>>> make_pair(deadline) {
    auto [a, b] = mem_stream::pair();
    buffered_options o{.size = 1};
    co_return std::pair<stream_type, stream_type>{stream_type(std::move(a), o), stream_type(std::move(b), o)};
  }
};

using stream_types = ::testing::Types<over_unix, over_mem>;
INSTANTIATE_TYPED_TEST_SUITE_P(Buffered, stream_conformance, stream_types);

}  // namespace buffered_conformance
}  // namespace strata::test

namespace strata {
namespace {

using test::mem_options;
using test::mem_stream;

// -- compile-time checks ---------------------------------------------------------------

static_assert(byte_stream<buffered<tcp::stream>>);
static_assert(byte_stream<buffered<any_stream>>);
static_assert(buffered<tcp::stream>::capabilities.unit == unit::stream);
static_assert(buffered<tcp::stream>::capabilities.reliable);
static_assert(buffered<tcp::stream>::capabilities.domain == domain::net);
static_assert(buffered<tcp::stream>::capabilities.congestion_controlled);
static_assert(buffered<uds::stream>::capabilities.domain == domain::ipc);
static_assert(!buffered<uds::stream>::capabilities.fd_passing);  // no call carries descriptors
static_assert(stacks_on<buffered<tcp::stream>, prefix_layer>);
static_assert(!stacks_on<prefix<tcp::stream>, buffered_layer>);  // messages are not a stream
static_assert(!detail::may_hold_output<tcp::stream>());
static_assert(!detail::may_hold_output<prefix<tcp::stream>>());
static_assert(detail::may_hold_output<prefix<buffered<tcp::stream>>>());

// -- helpers ---------------------------------------------------------------------------

deadline soon() { return deadline::after(5s); }

std::string text(std::span<const std::byte> b) { return std::string(as_text(b)); }

/// counts are what a counting_stream saw; shared, so they outlive moves of the stream.
struct counts {
  int writes = 0;
  int reads = 0;
  std::vector<std::size_t> write_sizes;
};

/// counting_stream is a mem_stream end that counts the calls made on it: how many
/// system calls a socket would have seen.
class counting_stream {
 public:
  static constexpr properties capabilities = mem_stream::capabilities;

  counting_stream(mem_stream inner, std::shared_ptr<counts> seen)
      : inner_(std::move(inner)), seen_(std::move(seen)) {}

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) {
    ++seen_->reads;
    return inner_.read_some(buf, dl);
  }
  task<result<void>> write(const_buffers bufs, deadline dl) {
    ++seen_->writes;
    seen_->write_sizes.push_back(bufs.total_size());
    return inner_.write(bufs, dl);
  }
  task<result<void>> shutdown_write(deadline dl) { return inner_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return inner_.close(dl); }

 private:
  mem_stream inner_;
  std::shared_ptr<counts> seen_;
};

/// setup is a buffered end over a counting mem_stream and the raw peer end.
struct setup {
  std::shared_ptr<counts> seen = std::make_shared<counts>();
  buffered<counting_stream> a;
  mem_stream b;
};

setup make(std::size_t size, mem_options ao = {}, mem_options bo = {}) {
  auto [x, y] = mem_stream::pair(ao, bo);
  auto seen = std::make_shared<counts>();
  buffered_options o{.size = size};
  return setup{seen, buffered<counting_stream>(counting_stream(std::move(x), seen), o), std::move(y)};
}

/// read_all reads exactly `n` bytes from `s` as text.
template <class S>
task<result<std::string>> read_all(S& s, std::size_t n, deadline dl) {
  std::string out(n, '\0');
  auto got = co_await read_exact(s, mutable_buffer(reinterpret_cast<std::byte*>(out.data()), n), dl);
  if (!got) co_return unexpected(got.error());
  co_return out;
}

/// pattern is `n` bytes that differ with their position.
std::string pattern(std::size_t n, char seed = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>('a' + (i * 7 + static_cast<std::size_t>(seed)) % 26);
  return s;
}

// -- coalescing ------------------------------------------------------------------------

TEST(Buffered, SmallWritesCoalesceIntoOneLowerWrite) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024);
    std::string all;
    for (int i = 0; i < 100; ++i) {
      auto piece = pattern(10, static_cast<char>(i));
      all += piece;
      auto w = co_await s.a.write(as_bytes(piece), soon());
      CO_ASSERT_OK(w);
    }
    EXPECT_EQ(s.seen->writes, 0);
    EXPECT_EQ(s.a.pending(), 1000u);
    EXPECT_EQ(s.b.buffered(), 0u);
    auto f = co_await s.a.flush(soon());
    CO_ASSERT_OK(f);
    EXPECT_EQ(s.seen->writes, 1);
    EXPECT_EQ(s.a.pending(), 0u);
    auto got = co_await read_all(s.b, all.size(), soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, all);
    // A flush with nothing held back writes nothing.
    auto again = co_await s.a.flush(soon());
    CO_ASSERT_OK(again);
    EXPECT_EQ(s.seen->writes, 1);
  });
}

TEST(Buffered, GatherWritesAreCopiedWhole) {
  test::run_test([]() -> task<void> {
    auto s = make(1024);
    std::array<const_buffer, 3> parts{as_bytes("one "), as_bytes(""), as_bytes("two")};
    auto w = co_await s.a.write(std::span<const const_buffer>(parts), soon());
    CO_ASSERT_OK(w);
    auto f = co_await s.a.flush(soon());
    CO_ASSERT_OK(f);
    auto got = co_await read_all(s.b, 7, soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "one two");
  });
}

TEST(Buffered, TheWriteThatReachesTheSizeGoesOutWithTheBufferInOneWrite) {
  test::run_test([]() -> task<void> {
    auto s = make(100);
    auto first = pattern(60, 1), second = pattern(40, 2), third = pattern(10, 3);
    auto w1 = co_await s.a.write(as_bytes(first), soon());
    CO_ASSERT_OK(w1);
    EXPECT_EQ(s.seen->writes, 0);
    // 60 + 40 reaches 100: both leave in one gather write, the 40 bytes not copied.
    auto w2 = co_await s.a.write(as_bytes(second), soon());
    CO_ASSERT_OK(w2);
    EXPECT_EQ(s.seen->writes, 1);
    CO_ASSERT_EQ(s.seen->write_sizes.size(), 1u);
    EXPECT_EQ(s.seen->write_sizes[0], 100u);
    EXPECT_EQ(s.a.pending(), 0u);
    auto w3 = co_await s.a.write(as_bytes(third), soon());
    CO_ASSERT_OK(w3);
    EXPECT_EQ(s.seen->writes, 1);
    EXPECT_EQ(s.a.pending(), 10u);
    auto f = co_await s.a.flush(soon());
    CO_ASSERT_OK(f);
    auto got = co_await read_all(s.b, 110, soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, first + second + third);
  });
}

TEST(Buffered, LargeWriteGoesStraightThroughAfterWhatIsBuffered) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024, mem_options{.buffer_limit = 4 << 20});
    auto small = pattern(10, 5);
    auto large = pattern(1 << 20, 6);
    auto w1 = co_await s.a.write(as_bytes(small), soon());
    CO_ASSERT_OK(w1);
    auto w2 = co_await s.a.write(as_bytes(large), soon());
    CO_ASSERT_OK(w2);
    EXPECT_EQ(s.seen->writes, 1);
    CO_ASSERT_EQ(s.seen->write_sizes.size(), 1u);
    EXPECT_EQ(s.seen->write_sizes[0], small.size() + large.size());
    // Nothing was copied into the buffer for it, and the buffer holds nothing now.
    EXPECT_EQ(s.a.pending(), 0u);
    EXPECT_LE(s.a.buffered_capacity(), 4096u);
    auto got = co_await read_all(s.b, small.size() + large.size(), soon());
    CO_ASSERT_OK(got);
    EXPECT_TRUE(*got == small + large);
  });
}

TEST(Buffered, TryWriteAcceptsOnlyWhatNeedsNoLowerWrite) {
  test::run_test([]() -> task<void> {
    auto s = make(16, mem_options{.fail_at_operation = 0});
    EXPECT_TRUE(s.a.try_write(as_bytes("12345678")));
    EXPECT_FALSE(s.a.try_write(as_bytes("abcdefgh"))) << "would reach the size: write's job";
    EXPECT_EQ(s.a.pending(), 8u);
    EXPECT_EQ(s.seen->writes, 0);
    auto f = co_await s.a.flush(soon());
    EXPECT_EQ(f.error(), errc::broken);
    EXPECT_FALSE(s.a.try_write(as_bytes("x"))) << "an error to report: write's job";
  });
}

TEST(Buffered, SizeOneHoldsNothingBack) {
  test::run_test([]() -> task<void> {
    auto s = make(1);
    for (int i = 0; i < 3; ++i) {
      auto w = co_await s.a.write(as_bytes("x"), soon());
      CO_ASSERT_OK(w);
    }
    EXPECT_EQ(s.seen->writes, 3);
    auto got = co_await read_all(s.b, 3, soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "xxx");
  });
}

// -- flush before a read waits ---------------------------------------------------------

TEST(Buffered, AReadThatMustWaitFlushesFirst) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024);
    co_await with_scope([&](scope& sc) -> task<void> {
      // The peer answers only after it has the whole request.
      sc.spawn([](mem_stream& b) -> task<void> {
        auto req = co_await read_all(b, 8, soon());
        CO_ASSERT_OK(req);
        EXPECT_EQ(*req, "request!");
        auto w = co_await b.write(as_bytes("answer"), soon());
        CO_ASSERT_OK(w);
      }(s.b));
      auto w1 = co_await s.a.write(as_bytes("requ"), soon());
      CO_ASSERT_OK(w1);
      auto w2 = co_await s.a.write(as_bytes("est!"), soon());
      CO_ASSERT_OK(w2);
      EXPECT_EQ(s.seen->writes, 0);
      auto answer = co_await read_all(s.a, 6, soon());
      CO_ASSERT_OK(answer);
      EXPECT_EQ(*answer, "answer");
      EXPECT_EQ(s.seen->writes, 1);
      // Waiting for input, the connection holds no output buffer.
      EXPECT_EQ(s.a.buffered_capacity(), 0u);
    });
  });
}

TEST(Buffered, AReadThatFindsBytesDoesNotFlush) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024);
    auto w = co_await s.b.write(as_bytes("early"), soon());
    CO_ASSERT_OK(w);
    auto req = co_await s.a.write(as_bytes("held"), soon());
    CO_ASSERT_OK(req);
    std::array<std::byte, 16> buf;
    auto n = co_await s.a.read_some(buf, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(text(std::span(buf).first(*n)), "early");
    EXPECT_EQ(s.seen->writes, 0);
    EXPECT_EQ(s.a.pending(), 4u);
    // The next read has to wait: now the output leaves.
    auto timed = co_await s.a.read_some(buf, deadline::after(20ms));
    EXPECT_EQ(timed.error(), errc::timed_out);
    EXPECT_EQ(s.seen->writes, 1);
    auto got = co_await read_all(s.b, 4, soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "held");
  });
}

TEST(Buffered, AReadWithAPastDeadlineFlushesWhatTheLowerLayerTakesAtOnce) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024);
    auto w = co_await s.a.write(as_bytes("poll"), soon());
    CO_ASSERT_OK(w);
    std::array<std::byte, 16> buf;
    auto r = co_await s.a.read_some(buf, deadline::already());
    EXPECT_EQ(r.error(), errc::timed_out);
    EXPECT_EQ(s.seen->writes, 1);
    EXPECT_EQ(s.b.buffered(), 4u);
  });
}

// -- errors ----------------------------------------------------------------------------

TEST(Buffered, AWriteErrorSurfacesAtTheFlushAndStays) {
  test::run_test([]() -> task<void> {
    // The lower layer's first operation (the flush's write) fails.
    auto s = make(64 * 1024, mem_options{.fail_at_operation = 0});
    auto w = co_await s.a.write(as_bytes("accepted"), soon());
    EXPECT_TRUE(w) << "a write only accepts the bytes";
    auto f = co_await s.a.flush(soon());
    EXPECT_EQ(f.error(), errc::broken);
    EXPECT_EQ(s.a.pending(), 0u) << "the bytes that could not be written are dropped";
    auto later = co_await s.a.write(as_bytes("x"), soon());
    EXPECT_EQ(later.error(), errc::broken);
    auto again = co_await s.a.flush(soon());
    EXPECT_EQ(again.error(), errc::broken);
  });
}

TEST(Buffered, AWriteErrorSurfacesAtTheWriteThatFillsTheBuffer) {
  test::run_test([]() -> task<void> {
    auto s = make(16, mem_options{.fail_at_operation = 0});
    auto w1 = co_await s.a.write(as_bytes("12345678"), soon());
    EXPECT_TRUE(w1);
    auto w2 = co_await s.a.write(as_bytes("abcdefgh"), soon());
    EXPECT_EQ(w2.error(), errc::broken);
    auto w3 = co_await s.a.write(as_bytes("x"), soon());
    EXPECT_EQ(w3.error(), errc::broken);
  });
}

TEST(Buffered, AWriteErrorSurfacesOnceAtTheReadThatFlushes) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024, mem_options{.fail_at_operation = 1});  // 0: the probe read; 1: the write
    auto w = co_await s.a.write(as_bytes("request"), soon());
    CO_ASSERT_OK(w);
    std::array<std::byte, 16> buf;
    auto r1 = co_await s.a.read_some(buf, soon());
    EXPECT_EQ(r1.error(), errc::broken);
    // The read direction is fine: later reads read (here: nothing comes).
    auto r2 = co_await s.a.read_some(buf, deadline::after(20ms));
    EXPECT_EQ(r2.error(), errc::timed_out);
    auto w2 = co_await s.a.write(as_bytes("x"), soon());
    EXPECT_EQ(w2.error(), errc::broken);
  });
}

TEST(Buffered, AFlushThatTimesOutBeforeAnyByteLeftKeepsTheBytes) {
  test::run_test([]() -> task<void> {
    // The peer takes 4 bytes before it reads.
    auto s = make(64 * 1024, mem_options{.buffer_limit = 4});
    auto w1 = co_await s.a.write(as_bytes("abcd"), soon());
    CO_ASSERT_OK(w1);
    auto f1 = co_await s.a.flush(soon());
    CO_ASSERT_OK(f1);
    auto w2 = co_await s.a.write(as_bytes("efgh"), soon());
    CO_ASSERT_OK(w2);
    auto f2 = co_await s.a.flush(deadline::after(20ms));
    EXPECT_EQ(f2.error(), errc::timed_out);
    EXPECT_EQ(s.a.pending(), 4u);
    auto w3 = co_await s.a.write(as_bytes("ij"), soon());
    CO_ASSERT_OK(w3);
    auto first = co_await read_all(s.b, 4, soon());
    CO_ASSERT_OK(first);
    EXPECT_EQ(*first, "abcd");
    co_await with_scope([&](scope& sc) -> task<void> {
      sc.spawn([](mem_stream& b) -> task<void> {
        auto rest = co_await read_all(b, 6, soon());
        CO_ASSERT_OK(rest);
        EXPECT_EQ(*rest, "efghij");
      }(s.b));
      auto f3 = co_await s.a.flush(soon());
      CO_ASSERT_OK(f3);
    });
  });
}

// -- the end of the connection ---------------------------------------------------------

TEST(Buffered, CloseFlushesFirst) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024);
    auto w = co_await s.a.write(as_bytes("bye"), soon());
    CO_ASSERT_OK(w);
    auto c = co_await s.a.close(soon());
    CO_ASSERT_OK(c);
    EXPECT_EQ(s.seen->writes, 1);
    auto got = co_await read_all(s.b, 3, soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "bye");
    std::array<std::byte, 4> buf;
    auto end = co_await s.b.read_some(buf, soon());
    EXPECT_EQ(end.error(), errc::end_of_stream);
    auto after = co_await s.a.write(as_bytes("x"), soon());
    EXPECT_EQ(after.error(), errc::closed);
    auto read_after = co_await s.a.read_some(buf, soon());
    EXPECT_EQ(read_after.error(), errc::closed);
    auto flush_after = co_await s.a.flush(soon());
    EXPECT_EQ(flush_after.error(), errc::closed);
  });
}

TEST(Buffered, ShutdownWriteFlushesFirst) {
  test::run_test([]() -> task<void> {
    auto s = make(64 * 1024);
    auto w = co_await s.a.write(as_bytes("last words"), soon());
    CO_ASSERT_OK(w);
    auto sh = co_await s.a.shutdown_write(soon());
    CO_ASSERT_OK(sh);
    auto got = co_await read_all(s.b, 10, soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "last words");
    std::array<std::byte, 4> buf;
    auto end = co_await s.b.read_some(buf, soon());
    EXPECT_EQ(end.error(), errc::end_of_stream);
    auto after = co_await s.a.write(as_bytes("x"), soon());
    EXPECT_EQ(after.error(), errc::closed);
    // The read direction still works.
    auto answer = co_await s.b.write(as_bytes("ok"), soon());
    CO_ASSERT_OK(answer);
    auto back = co_await read_all(s.a, 2, soon());
    CO_ASSERT_OK(back);
    EXPECT_EQ(*back, "ok");
  });
}

TEST(Buffered, DetachFlushesAndHandsBackTheUnreadBytes) {
  test::run_test([]() -> task<void> {
    auto [x, y] = mem_stream::pair();
    std::vector<std::byte> unread{std::byte{'u'}, std::byte{'v'}};
    buffered<mem_stream> a(std::move(x), buffered_options{}, unread);
    std::array<std::byte, 1> one;
    auto n = co_await a.read_some(one, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(one[0], std::byte{'u'});
    auto w = co_await a.write(as_bytes("out"), soon());
    CO_ASSERT_OK(w);
    auto d = co_await a.detach(soon());
    CO_ASSERT_OK(d);
    EXPECT_EQ(d->unread, std::vector<std::byte>{std::byte{'v'}});
    auto got = co_await read_all(y, 3, soon());
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "out");
    auto after = co_await a.write(as_bytes("x"), soon());
    EXPECT_EQ(after.error(), errc::closed);
    // The detached stream works on its own.
    auto more = co_await d->lower.write(as_bytes("raw"), soon());
    CO_ASSERT_OK(more);
    auto raw = co_await read_all(y, 3, soon());
    CO_ASSERT_OK(raw);
    EXPECT_EQ(*raw, "raw");
  });
}

// -- a writer and a reader at once -----------------------------------------------------

TEST(Buffered, AWriterWaitsForTheReadersFlushAndKeepsTheOrder) {
  test::run_test([]() -> task<void> {
    // The peer takes 8 bytes before it reads, so the reader's flush stays in flight.
    auto s = make(100, mem_options{.buffer_limit = 8});
    auto first = pattern(20, 1), second = pattern(70, 2), third = pattern(40, 3);
    auto w1 = co_await s.a.write(as_bytes(first), soon());
    CO_ASSERT_OK(w1);
    event reader_flushing;
    co_await with_scope([&](scope& sc) -> task<void> {
      // The reader must wait: it flushes the 20 bytes, which stall after 8.
      sc.spawn([](buffered<counting_stream>& a, event& flushing) -> task<void> {
        flushing.set();
        auto answer = co_await read_all(a, 2, soon());
        CO_ASSERT_OK(answer);
        EXPECT_EQ(*answer, "ok");
      }(s.a, reader_flushing));
      auto started = co_await reader_flushing.wait(soon());
      CO_ASSERT_OK(started);
      co_await yield();
      EXPECT_EQ(s.seen->writes, 1);
      // Accepted while the flush is in flight: copied into the other buffer.
      auto w2 = co_await s.a.write(as_bytes(second), soon());
      CO_ASSERT_OK(w2);
      // Reaches the size: must wait for the flush in flight, then goes out after it.
      sc.spawn([](mem_stream& b, std::string expected) -> task<void> {
        auto all = co_await read_all(b, expected.size(), soon());
        CO_ASSERT_OK(all);
        EXPECT_TRUE(*all == expected) << "bytes out of order";
        auto w = co_await b.write(as_bytes("ok"), soon());
        CO_ASSERT_OK(w);
      }(s.b, first + second + third));
      auto w3 = co_await s.a.write(as_bytes(third), soon());
      CO_ASSERT_OK(w3);
      EXPECT_EQ(s.seen->writes, 2);
    });
  });
}

// -- through type erasure --------------------------------------------------------------

TEST(Buffered, FlushReachesTheLayerThroughTypeErasure) {
  test::run_test([]() -> task<void> {
    auto [x, y] = mem_stream::pair();
    any_stream erased(buffered<mem_stream>(std::move(x)));
    auto w = co_await erased.write(as_bytes("through any_stream"), soon());
    CO_ASSERT_OK(w);
    EXPECT_EQ(y.buffered(), 0u);
    auto handle = query<fact::flusher>(erased);
    CO_ASSERT_OK(handle);
    EXPECT_EQ(handle->pending(), 18u);
    auto f = co_await flush(erased, soon());
    CO_ASSERT_OK(f);
    EXPECT_EQ(y.buffered(), 18u);

    // Under a message layer, erased twice.
    any_message messages(prefix<any_stream>(std::move(erased)));
    auto sent = co_await messages.send(as_bytes("msg"), soon());
    CO_ASSERT_OK(sent);
    EXPECT_EQ(y.buffered(), 18u);
    auto f2 = co_await flush(messages, soon());
    CO_ASSERT_OK(f2);
    EXPECT_EQ(y.buffered(), 18u + 4 + 3);

    // A stack without a buffering layer: nothing to flush, success.
    auto [p, q] = mem_stream::pair();
    any_stream plain(std::move(p));
    EXPECT_EQ(query<fact::flusher>(plain).error(), errc::not_supported);
    auto f3 = co_await flush(plain, soon());
    EXPECT_TRUE(f3);
  });
}

TEST(Buffered, FlushFlushesTheBufferingLayersBelow) {
  test::run_test([]() -> task<void> {
    auto [x, y] = mem_stream::pair();
    buffered<buffered<mem_stream>> twice(buffered<mem_stream>(std::move(x)));
    auto w = co_await twice.write(as_bytes("deep"), soon());
    CO_ASSERT_OK(w);
    EXPECT_EQ(twice.pending(), 4u);
    auto f = co_await flush(twice, soon());
    CO_ASSERT_OK(f);
    EXPECT_EQ(twice.pending(), 0u);
    EXPECT_EQ(y.buffered(), 4u);
  });
}

// -- prefix over buffered --------------------------------------------------------------

TEST(Buffered, PrefixMessagesCoalesceAndAnswersFlushThem) {
  test::run_test([]() -> task<void> {
    auto [x, y] = mem_stream::pair();
    auto seen = std::make_shared<counts>();
    prefix<buffered<counting_stream>> a(buffered<counting_stream>(counting_stream(std::move(x), seen)));
    prefix<mem_stream> b(std::move(y));
    for (int i = 0; i < 50; ++i) {
      auto sent = co_await a.send(as_bytes(std::to_string(i)), soon());
      CO_ASSERT_OK(sent);
    }
    EXPECT_EQ(seen->writes, 0);
    co_await with_scope([&](scope& sc) -> task<void> {
      sc.spawn([](prefix<mem_stream>& b) -> task<void> {
        std::array<std::byte, 16> buf;
        for (int i = 0; i < 50; ++i) {
          auto n = co_await b.recv(buf, soon());
          CO_ASSERT_OK(n);
          EXPECT_EQ(text(std::span(buf).first(*n)), std::to_string(i));
        }
        auto done = co_await b.send(as_bytes("done"), soon());
        CO_ASSERT_OK(done);
      }(b));
      // recv must wait for the answer: the 50 messages leave first, in one write.
      std::array<std::byte, 16> buf;
      auto n = co_await a.recv(buf, soon());
      CO_ASSERT_OK(n);
      EXPECT_EQ(text(std::span(buf).first(*n)), "done");
      EXPECT_EQ(seen->writes, 1);
    });
  });
}

TEST(Buffered, PrefixsIdleGraceDoesNotCutTheFlushShort) {
  // prefix reads with a 50 ms idle grace of its own; the flush before that read must get
  // the caller's deadline, or a flush slower than 50 ms would stop part-way and break
  // the write direction.
  test::run_test([]() -> task<void> {
    auto [x, y] = mem_stream::pair(mem_options{.buffer_limit = 8});
    prefix<buffered<mem_stream>> a(buffered<mem_stream>(std::move(x)));
    prefix<mem_stream> b(std::move(y));
    auto hi = co_await b.send(as_bytes("hi"), soon());
    CO_ASSERT_OK(hi);
    std::array<std::byte, 64> buf;
    auto first = co_await a.recv(buf, soon());  // a now holds a read chunk: the grace applies
    CO_ASSERT_OK(first);
    const std::string request(20, 'r');
    auto sent = co_await a.send(as_bytes(request), soon());
    CO_ASSERT_OK(sent);
    co_await with_scope([&](scope& sc) -> task<void> {
      sc.spawn([](prefix<mem_stream>& b, std::string expected) -> task<void> {
        // The peer starts reading only after the grace is over (the wait is the point).
        event never;
        auto idle = co_await never.wait(deadline::after(150ms));
        EXPECT_EQ(idle.error(), errc::timed_out);
        std::array<std::byte, 64> in;
        auto n = co_await b.recv(in, soon());
        CO_ASSERT_OK(n);
        EXPECT_EQ(text(std::span(in).first(*n)), expected);
        auto ok = co_await b.send(as_bytes("ok"), soon());
        CO_ASSERT_OK(ok);
      }(b, request));
      auto answer = co_await a.recv(buf, soon());
      CO_ASSERT_OK(answer);
      EXPECT_EQ(text(std::span(buf).first(*answer)), "ok");
    });
  });
}

// -- the registry and a spec string ----------------------------------------------------

/// parses tells whether `text` passes the parser and the checker; the message otherwise.
std::optional<std::string> refusal(std::string_view text) {
  pipeline_error error;
  if (pipeline::parse(text, error)) return std::nullopt;
  return error.message;
}

TEST(BufferedSpec, ParametersAndPlacementAreChecked) {
  EXPECT_EQ(refusal("tcp:127.0.0.1:9 | buffered"), std::nullopt);
  EXPECT_EQ(refusal("tcp:127.0.0.1:9 | buffered(16k) | prefix(4)"), std::nullopt);
  EXPECT_EQ(refusal("tcp:127.0.0.1:9 | buffered(size=1m) | crlf"), std::nullopt);
  EXPECT_NE(refusal("tcp:127.0.0.1:9 | buffered(0)"), std::nullopt);
  EXPECT_NE(refusal("tcp:127.0.0.1:9 | buffered(size=1g)"), std::nullopt);
  EXPECT_NE(refusal("tcp:127.0.0.1:9 | buffered(nope=1)"), std::nullopt);
  auto on_messages = refusal("tcp:127.0.0.1:9 | prefix(4) | buffered");
  ASSERT_NE(on_messages, std::nullopt);
  EXPECT_NE(on_messages->find("stream"), std::string::npos) << *on_messages;
  const auto* entry = find_protocol("buffered");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->layer, "adapt");
}

/// echo answers every message of the first connection with the same message.
task<void> echo(any_listener& listener) {
  auto conn = co_await listener.accept(soon());
  CO_ASSERT_TRUE(conn);
  CO_ASSERT_TRUE(conn->is_message());
  auto& m = conn->message();
  std::array<std::byte, 256> buf;
  for (;;) {
    auto n = co_await m.recv(buf, soon());
    if (!n) break;
    if (!co_await m.send(const_buffer(buf.data(), *n), soon())) break;
  }
  (void)co_await m.close(soon());
}

TEST(BufferedSpec, RoundTripOverTcpWithPrefix) {
  test::run_test([]() -> task<void> {
    auto listener = strata::listen("tcp-listen:127.0.0.1:0 | buffered | prefix(4)");
    CO_ASSERT_TRUE(listener);
    auto port = listener->local_address()->port();
    co_await with_scope([&](scope& sc) -> task<void> {
      sc.spawn(echo(*listener));
      auto conn = co_await strata::connect(
          "tcp:127.0.0.1:" + std::to_string(port) + " | buffered(4k) | prefix(4)", soon());
      CO_ASSERT_TRUE(conn);
      CO_ASSERT_TRUE(conn->is_message());
      auto caps = conn->runtime_capabilities();
      EXPECT_EQ(caps.unit, unit::message);
      EXPECT_EQ(caps.domain, domain::net);
      // Facts of the layers below still reach the top, through buffered.
      auto peer = conn->peer_address();
      CO_ASSERT_OK(peer);
      EXPECT_EQ(peer->port(), port);
      auto& m = conn->message();
      std::array<std::byte, 256> buf;
      // Request and answer: the recv flushes the request (and the server's recv its answer).
      const std::vector<std::string> exchange{"hello", "", "a|b,c", std::string(200, 'x')};
      for (const auto& msg : exchange) {
        auto sent = co_await m.send(as_bytes(msg), soon());
        CO_ASSERT_OK(sent);
        auto n = co_await m.recv(buf, soon());
        CO_ASSERT_OK(n);
        EXPECT_EQ(text(std::span(buf).first(*n)), msg);
      }
      // A burst, then an explicit flush through the erased stack.
      for (int i = 0; i < 100; ++i) {
        auto sent = co_await m.send(as_bytes(std::to_string(i)), soon());
        CO_ASSERT_OK(sent);
      }
      auto f = co_await flush(*conn, soon());
      CO_ASSERT_OK(f);
      for (int i = 0; i < 100; ++i) {
        auto n = co_await m.recv(buf, soon());
        CO_ASSERT_OK(n);
        EXPECT_EQ(text(std::span(buf).first(*n)), std::to_string(i));
      }
      auto c = co_await conn->close(soon());
      CO_ASSERT_OK(c);
    });
    listener->close();
  });
}

}  // namespace
}  // namespace strata
