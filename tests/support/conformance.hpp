// The shared conformance suites, one per shape (stream, message, listener): GoogleTest
// type-parameterised suites that every protocol instantiates before its own cases, so
// every layer is held to the same written contract (include/strata/core/stream.hpp).
//
// Instantiate with a traits type, in the protocol's test file:
//
//   struct tcp_traits {
//     using stream_type = tcp::stream;
//     static task<result<std::pair<tcp::stream, tcp::stream>>> make_pair(deadline dl);
//     // optional:
//     static constexpr bool close_unblocks_reader = true;           // default false
//     static constexpr bool write_after_peer_close_breaks = true;   // default false
//     static constexpr std::size_t transfer_size = 4 << 20;         // default 4 MiB
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Tcp, stream_conformance, ::testing::Types<tcp_traits>);
//
// message_conformance traits:
//   using message_type = ...;
//   static task<result<std::pair<message_type, message_type>>> make_pair(deadline dl);
//   static constexpr std::size_t max_message = N;        // largest message the test sends
//   optional: supports_empty_message (default true), keeps_message_on_too_large (default
//   true: the contract for buffering layers), send_rejects_oversize (default false: send
//   of max_message + 1 bytes must fail with message_too_large).
//
// listener_conformance traits:
//   using listener_type = ...;  // accept(dl) returns result<S> for a byte_stream S
//   static result<listener_type> make_listener();
//   static task<result<client_type>> connect(listener_type& l, deadline dl);  // a byte_stream
//   optional: has_port (default false; true: local_address() must carry a non-zero port).
//   A listener with close() is also checked to wake a pending accept with `closed`.
//
// What the stream suite checks: a large transfer in both directions at once (a
// position-dependent pattern, so a lost, duplicated or reordered byte fails), ping-pong,
// half-close both ways, sticky end_of_stream, an end right behind the last bytes, empty
// buffers, deadlines already past / expiring during a wait / met by arriving data,
// cancellation of a pending read without losing a byte (also racing with arriving data),
// close() waking a reader of the same object, `closed` after close, and `broken` for
// writes after the peer closed. The message suite: sizes 0 / 1 / 1000 / max, order and
// boundaries, gather sends, a too small buffer, oversize sends, deadlines, cancellation.
//
// Every case runs on its own event loop with a time limit (run_test), so a broken layer
// fails instead of hanging.
//
// Declare traits types in a named namespace, not an anonymous one: the test bodies are
// lambdas inside these header templates, and g++ rejects (-Wsubobject-linkage) coroutine
// frames declared in a header that hold a closure without linkage.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/stream.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"

namespace strata::test {

// -- traits defaults --------------------------------------------------------------------

template <class T>
constexpr bool close_unblocks_reader_v = [] {
  if constexpr (requires { T::close_unblocks_reader; }) {
    return T::close_unblocks_reader;
  } else {
    return false;
  }
}();
template <class T>
constexpr bool write_after_peer_close_breaks_v = [] {
  if constexpr (requires { T::write_after_peer_close_breaks; }) {
    return T::write_after_peer_close_breaks;
  } else {
    return false;
  }
}();
template <class T>
constexpr std::size_t transfer_size_v = [] {
  if constexpr (requires { T::transfer_size; }) {
    return std::size_t{T::transfer_size};
  } else {
    return std::size_t{4} << 20;
  }
}();
template <class T>
constexpr bool supports_empty_message_v = [] {
  if constexpr (requires { T::supports_empty_message; }) {
    return T::supports_empty_message;
  } else {
    return true;
  }
}();
template <class T>
constexpr bool keeps_message_on_too_large_v = [] {
  if constexpr (requires { T::keeps_message_on_too_large; }) {
    return T::keeps_message_on_too_large;
  } else {
    return true;
  }
}();
template <class T>
constexpr bool send_rejects_oversize_v = [] {
  if constexpr (requires { T::send_rejects_oversize; }) {
    return T::send_rejects_oversize;
  } else {
    return false;
  }
}();
template <class T>
constexpr bool has_port_v = [] {
  if constexpr (requires { T::has_port; }) {
    return T::has_port;
  } else {
    return false;
  }
}();

// -- helpers ----------------------------------------------------------------------------

/// pattern_period is the length after which the transfer pattern repeats: a prime, so a
/// block lost or duplicated at any power-of-two boundary still shows as a mismatch.
inline constexpr std::size_t pattern_period = 1000003;

/// pattern_table holds one period of the pattern (built once per program).
inline const std::vector<std::byte>& pattern_table() {
  static const std::vector<std::byte> table = [] {
    std::vector<std::byte> t(pattern_period);
    std::uint32_t x = 2463534242u;
    for (auto& b : t) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      b = static_cast<std::byte>(x >> 24);
    }
    return t;
  }();
  return table;
}

/// pattern_byte is the deterministic content of byte `i` of a test transfer.
inline std::byte pattern_byte(std::size_t i) { return pattern_table()[i % pattern_period]; }

/// fill_pattern writes the pattern for positions [first, first + out.size()).
inline void fill_pattern(mutable_buffer out, std::size_t first) {
  const auto& t = pattern_table();
  for (std::size_t done = 0; done < out.size();) {
    std::size_t at = (first + done) % pattern_period;
    std::size_t n = std::min(out.size() - done, pattern_period - at);
    std::memcpy(out.data() + done, t.data() + at, n);
    done += n;
  }
}

/// matches_pattern reports whether `in` equals the pattern at positions [first, ...).
inline bool matches_pattern(const_buffer in, std::size_t first) {
  const auto& t = pattern_table();
  for (std::size_t done = 0; done < in.size();) {
    std::size_t at = (first + done) % pattern_period;
    std::size_t n = std::min(in.size() - done, pattern_period - at);
    if (std::memcmp(in.data() + done, t.data() + at, n) != 0) return false;
    done += n;
  }
  return true;
}

/// stream_transfer_stats is what one side of a transfer saw.
struct stream_transfer_stats {
  std::size_t bytes = 0;
  std::size_t first_bad_read = SIZE_MAX;  ///< offset of the first read that broke the pattern
  std::error_code error;
};

/// write_pattern writes `total` pattern bytes in varying chunk sizes (some as gather
/// lists), then shuts down the write direction.
template <byte_stream S>
task<void> write_pattern(S& s, std::size_t total, stream_transfer_stats& st, deadline dl) {
  static constexpr std::array<std::size_t, 6> sizes{1, 7, 1000, 65536, 4096, 100000};
  std::vector<std::byte> buf(100000);
  std::size_t k = 0;
  while (st.bytes < total) {
    std::size_t n = std::min(sizes[k % sizes.size()], total - st.bytes);
    fill_pattern(mutable_buffer(buf.data(), n), st.bytes);
    result<void> w;
    if (k % 3 == 2 && n > 1) {
      std::array<const_buffer, 2> parts{const_buffer(buf.data(), n / 2),
                                        const_buffer(buf.data() + n / 2, n - n / 2)};
      w = co_await s.write(std::span<const const_buffer>(parts), dl);
    } else {
      w = co_await s.write(const_buffer(buf.data(), n), dl);
    }
    if (!w) {
      st.error = w.error();
      co_return;
    }
    st.bytes += n;
    ++k;
  }
  if (auto sh = co_await s.shutdown_write(dl); !sh) st.error = sh.error();
}

/// read_pattern reads until end_of_stream, checking every byte against the pattern
/// (position-dependent, so a lost, duplicated or reordered byte is a mismatch).
template <byte_stream S>
task<void> read_pattern(S& s, stream_transfer_stats& st, deadline dl) {
  std::vector<std::byte> buf(70000);
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) {
      if (n.error() != errc::end_of_stream) st.error = n.error();
      co_return;
    }
    if (*n == 0) {
      st.error = errc::protocol_error;  // read_some must not return 0 for a non-empty buffer
      co_return;
    }
    if (st.first_bad_read == SIZE_MAX && !matches_pattern(const_buffer(buf.data(), *n), st.bytes)) {
      st.first_bad_read = st.bytes;
    }
    st.bytes += *n;
  }
}

/// read_text reads exactly `n` bytes and returns them as text.
template <byte_stream S>
task<result<std::string>> read_text(S& s, std::size_t n, deadline dl) {
  std::string out(n, '\0');
  auto r = co_await read_exact(s, mutable_buffer(reinterpret_cast<std::byte*>(out.data()), n), dl);
  if (!r) co_return unexpected(r.error());
  co_return out;
}

/// timing_tolerance is the generous upper bound on how late a deadline may fire (loaded
/// CI machines, sanitizers); the lower bound is always checked strictly.
inline constexpr std::chrono::milliseconds timing_tolerance{500};

// -- stream_conformance -----------------------------------------------------------------

template <class Traits>
class stream_conformance : public ::testing::Test {};
TYPED_TEST_SUITE_P(stream_conformance);

TYPED_TEST_P(stream_conformance, LargeTransferArrivesIntactInBothDirections) {
  run_test(
      []() -> task<void> {
        using T = TypeParam;
        auto dl = deadline::after(std::chrono::seconds(50));
        auto p = co_await T::make_pair(dl);
        CO_ASSERT_OK(p);
        auto& [a, b] = *p;
        const std::size_t total = transfer_size_v<T>;
        stream_transfer_stats ab_w, ab_r, ba_w, ba_r;
        co_await with_scope([&](scope& s) -> task<void> {
          s.spawn(write_pattern(a, total, ab_w, dl));
          s.spawn(read_pattern(b, ab_r, dl));
          s.spawn(write_pattern(b, total / 2, ba_w, dl));
          s.spawn(read_pattern(a, ba_r, dl));
          co_return;
        });
        EXPECT_FALSE(ab_w.error) << ab_w.error.message();
        EXPECT_FALSE(ab_r.error) << ab_r.error.message();
        EXPECT_FALSE(ba_w.error) << ba_w.error.message();
        EXPECT_FALSE(ba_r.error) << ba_r.error.message();
        EXPECT_EQ(ab_w.bytes, total);
        EXPECT_EQ(ab_r.bytes, total);
        EXPECT_EQ(ab_r.first_bad_read, SIZE_MAX)
            << "corrupted data in the read at offset " << ab_r.first_bad_read;
        EXPECT_EQ(ba_w.bytes, total / 2);
        EXPECT_EQ(ba_r.bytes, total / 2);
        EXPECT_EQ(ba_r.first_bad_read, SIZE_MAX)
            << "corrupted data in the read at offset " << ba_r.first_bad_read;
      },
      std::chrono::seconds(60));
}

TYPED_TEST_P(stream_conformance, PingPong) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    constexpr std::uint32_t rounds = 200;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](auto& b, deadline dl) -> task<void> {
        std::array<std::byte, 4> word;
        for (std::uint32_t i = 0; i < rounds; ++i) {
          auto r = co_await read_exact(b, word, dl);
          CO_ASSERT_OK(r);
          std::uint32_t v;
          std::memcpy(&v, word.data(), 4);
          ++v;
          std::memcpy(word.data(), &v, 4);
          auto w = co_await b.write(const_buffer(word), dl);
          CO_ASSERT_OK(w);
        }
      }(b, dl));
      std::array<std::byte, 4> word;
      for (std::uint32_t i = 0; i < rounds; ++i) {
        std::uint32_t v = i * 10;
        std::memcpy(word.data(), &v, 4);
        auto w = co_await a.write(const_buffer(word), dl);
        CO_ASSERT_OK(w);
        auto r = co_await read_exact(a, word, dl);
        CO_ASSERT_OK(r);
        std::memcpy(&v, word.data(), 4);
        CO_ASSERT_EQ(v, i * 10 + 1);
      }
    });
  });
}

TYPED_TEST_P(stream_conformance, HalfCloseLetsThePeerFinishAndAnswer) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto w = co_await a.write(as_bytes("request"), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    // Our write direction is finished for good...
    auto late = co_await a.write(as_bytes("x"), dl);
    EXPECT_FALSE(late);
    // ...the peer reads everything, then end_of_stream...
    auto got = co_await read_text(b, 7, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "request");
    std::array<std::byte, 16> buf;
    auto end = co_await b.read_some(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    // ...and can still answer on the other direction, which we can still read.
    auto answer = co_await b.write(as_bytes("response"), dl);
    CO_ASSERT_OK(answer);
    auto sh2 = co_await b.shutdown_write(dl);
    CO_ASSERT_OK(sh2);
    auto back = co_await read_text(a, 8, dl);
    CO_ASSERT_OK(back);
    EXPECT_EQ(*back, "response");
    auto end2 = co_await a.read_some(buf, dl);
    EXPECT_EQ(end2.error(), errc::end_of_stream);
    // Both directions finished: closing is orderly on both sides.
    auto ca = co_await a.close(dl);
    EXPECT_TRUE(ca) << ca.error().message();
    auto cb = co_await b.close(dl);
    EXPECT_TRUE(cb) << cb.error().message();
  });
}

TYPED_TEST_P(stream_conformance, EndOfStreamIsSticky) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto sh = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    std::array<std::byte, 16> buf;
    for (int i = 0; i < 3; ++i) {
      auto r = co_await b.read_some(buf, dl);
      EXPECT_EQ(r.error(), errc::end_of_stream) << "read " << i;
    }
    // Sticky even with an expired deadline: the answer is known without waiting.
    auto r = co_await b.read_some(buf, deadline::already());
    EXPECT_EQ(r.error(), errc::end_of_stream);
  });
}

TYPED_TEST_P(stream_conformance, EndRightBehindTheDataIsNotMissed) {
  // The peer's last bytes and its end arrive together, after the reader has waited once
  // (so readiness now comes from edges): a read that returns fewer bytes than asked must
  // not make the next read wait for an edge that already happened.
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::array<std::byte, 256> buf;
    auto nothing = co_await b.read_some(buf, deadline::after(std::chrono::milliseconds(1)));
    EXPECT_EQ(nothing.error(), errc::timed_out);
    auto w = co_await a.write(as_bytes("tail"), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    std::size_t got = 0;
    auto start = deadline::clock::now();
    for (;;) {
      auto n = co_await b.read_some(buf, deadline::after(std::chrono::seconds(2)));
      if (!n) {
        EXPECT_EQ(n.error(), errc::end_of_stream);
        break;
      }
      got += *n;
    }
    EXPECT_EQ(got, 4u);
    EXPECT_LT(elapsed_since(start), timing_tolerance) << "the end of stream was found only by the deadline";
  });
}

TYPED_TEST_P(stream_conformance, EmptyBuffersCompleteAtOnce) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto n = co_await b.read_some(mutable_buffer{}, deadline::already());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 0u);
    auto w = co_await a.write(const_buffer{}, deadline::already());
    EXPECT_TRUE(w) << w.error().message();
  });
}

TYPED_TEST_P(stream_conformance, PastDeadlineWithoutDataTimesOutImmediately) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::array<std::byte, 16> buf;
    auto start = deadline::clock::now();
    auto r1 = co_await b.read_some(buf, deadline::already());
    EXPECT_EQ(r1.error(), errc::timed_out);
    auto r2 = co_await b.read_some(buf, deadline::at(deadline::clock::now() - std::chrono::seconds(1)));
    EXPECT_EQ(r2.error(), errc::timed_out);
    EXPECT_LT(elapsed_since(start), timing_tolerance);
    // The timeouts consumed nothing and broke nothing.
    auto w = co_await a.write(as_bytes("ok"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(b, 2, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "ok");
  });
}

TYPED_TEST_P(stream_conformance, DeadlineDuringAWaitExpiresOnTime) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::array<std::byte, 16> buf;
    auto start = deadline::clock::now();
    auto r = co_await b.read_some(buf, deadline::after(std::chrono::milliseconds(20)));
    auto took = elapsed_since(start);
    EXPECT_EQ(r.error(), errc::timed_out);
    EXPECT_GE(took, std::chrono::milliseconds(20));
    EXPECT_LT(took, std::chrono::milliseconds(20) + timing_tolerance);
    auto w = co_await a.write(as_bytes("late"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(b, 4, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "late");
  });
}

TYPED_TEST_P(stream_conformance, FutureDeadlineGetsDataThatArrivesInTime) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    // Data already there.
    auto w = co_await a.write(as_bytes("early"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(b, 5, deadline::after(std::chrono::seconds(5)));
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "early");
    // Data arriving while the reader waits.
    std::string later;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](auto& b, event& parked, std::string& out) -> task<void> {
        parked.set();
        auto r = co_await read_text(b, 5, deadline::after(std::chrono::seconds(5)));
        if (r) out = *r;
      }(b, parked, later));
      (void)co_await parked.wait(dl);
      auto w2 = co_await a.write(as_bytes("later"), dl);
      EXPECT_TRUE(w2) << w2.error().message();
    });
    EXPECT_EQ(later, "later");
  });
}

TYPED_TEST_P(stream_conformance, CanceledReadLosesNoByte) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](auto& b, event& parked, std::error_code& outcome) -> task<void> {
        std::array<std::byte, 64> buf;
        parked.set();
        auto r = co_await b.read_some(buf, deadline::after(std::chrono::seconds(5)));
        outcome = r ? std::error_code{} : r.error();
      }(b, parked, outcome));
      (void)co_await parked.wait(dl);
      s.cancel();
      co_return;
    });
    EXPECT_EQ(outcome, errc::operation_canceled);
    std::vector<std::byte> in(1000);
    co_await with_scope([&](scope& s) -> task<void> {
      // The writer runs beside the reader: a layer with small buffers needs both.
      s.spawn([](auto& a, deadline dl) -> task<void> {
        std::vector<std::byte> data(1000);
        fill_pattern(data, 0);
        auto w = co_await a.write(const_buffer(data), dl);
        EXPECT_TRUE(w) << w.error().message();
      }(a, dl));
      auto r = co_await read_exact(b, in, dl);
      EXPECT_TRUE(r) << r.error().message();
    });
    EXPECT_TRUE(matches_pattern(in, 0)) << "bytes were lost or changed after a canceled read";
  });
}

TYPED_TEST_P(stream_conformance, CancelRacingWithArrivingDataLosesNoByte) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    // Small enough to fit any layer's buffer, so the write completes without a reader.
    std::vector<std::byte> data(64);
    fill_pattern(data, 0);
    std::vector<std::byte> got;
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn(
          [](auto& b, event& parked, std::vector<std::byte>& got, std::error_code& outcome) -> task<void> {
            std::array<std::byte, 16> buf;
            parked.set();
            auto r = co_await b.read_some(buf, deadline::after(std::chrono::seconds(5)));
            if (r) {
              got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
            } else {
              outcome = r.error();
            }
          }(b, parked, got, outcome));
      (void)co_await parked.wait(dl);
      // Data and cancellation in the same turn: the reader may see either, but no byte
      // may disappear between them.
      auto w = co_await a.write(const_buffer(data), dl);
      EXPECT_TRUE(w) << w.error().message();
      s.cancel();
    });
    if (outcome) {
      EXPECT_EQ(outcome, errc::operation_canceled);
    }
    std::vector<std::byte> rest(data.size() - got.size());
    auto r = co_await read_exact(b, rest, dl);
    CO_ASSERT_OK(r);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, data);
  });
}

TYPED_TEST_P(stream_conformance, CloseUnblocksAReaderOfTheSameObject) {
  if constexpr (!close_unblocks_reader_v<TypeParam>) {
    GTEST_SKIP() << "this stream type does not support close() while a read is pending";
  } else {
    run_test([]() -> task<void> {
      auto dl = deadline::after(std::chrono::seconds(10));
      auto p = co_await TypeParam::make_pair(dl);
      CO_ASSERT_OK(p);
      auto& [a, b] = *p;
      std::error_code read_outcome;
      result<void> close_outcome;
      co_await with_scope([&](scope& s) -> task<void> {
        event parked, unblocked;
        s.spawn([](auto& b, event& parked, event& unblocked, std::error_code& out) -> task<void> {
          std::array<std::byte, 64> buf;
          parked.set();
          auto r = co_await b.read_some(buf, deadline::after(std::chrono::seconds(5)));
          out = r ? std::error_code{} : r.error();
          unblocked.set();
        }(b, parked, unblocked, read_outcome));
        (void)co_await parked.wait(dl);
        s.spawn([](auto& b, result<void>& out, deadline dl) -> task<void> { out = co_await b.close(dl); }(
                                                                b, close_outcome, dl));
        auto woke = co_await unblocked.wait(deadline::after(std::chrono::seconds(2)));
        EXPECT_TRUE(woke) << "close() did not wake the pending reader";
        // Let an orderly close finish: the peer ends its side too.
        (void)co_await a.shutdown_write(dl);
      });
      EXPECT_EQ(read_outcome, errc::closed);
      EXPECT_TRUE(close_outcome) << close_outcome.error().message();
      std::array<std::byte, 8> buf;
      auto after = co_await b.read_some(buf, dl);
      EXPECT_EQ(after.error(), errc::closed);
      auto w = co_await b.write(as_bytes("x"), dl);
      EXPECT_EQ(w.error(), errc::closed);
    });
  }
}

TYPED_TEST_P(stream_conformance, OperationsAfterCloseFailWithClosed) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto w = co_await a.write(as_bytes("bye"), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await b.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto c = co_await a.close(dl);
    EXPECT_TRUE(c) << c.error().message();
    std::array<std::byte, 8> buf;
    auto r = co_await a.read_some(buf, dl);
    EXPECT_EQ(r.error(), errc::closed);
    auto w2 = co_await a.write(as_bytes("x"), dl);
    EXPECT_EQ(w2.error(), errc::closed);
    auto c2 = co_await a.close(dl);
    EXPECT_EQ(c2.error(), errc::closed);
    // The peer still gets what was written before the close, then the end.
    auto got = co_await read_text(b, 3, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "bye");
    auto end = co_await b.read_some(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
  });
}

TYPED_TEST_P(stream_conformance, WriteAfterPeerClosedFailsWithBroken) {
  if constexpr (!write_after_peer_close_breaks_v<TypeParam>) {
    GTEST_SKIP() << "this stream type does not report a vanished peer to writers";
  } else {
    run_test([]() -> task<void> {
      auto dl = deadline::after(std::chrono::seconds(10));
      auto p = co_await TypeParam::make_pair(dl);
      CO_ASSERT_OK(p);
      auto& [a, b] = *p;
      // We never finish our side, so an orderly close of the peer either returns at once
      // (nothing to wait for) or times out and resets; either way the peer is gone.
      auto c = co_await b.close(deadline::after(std::chrono::milliseconds(50)));
      if (!c) {
        EXPECT_EQ(c.error(), errc::timed_out);
      }
      std::array<std::byte, 1024> chunk{};
      std::error_code failure;
      for (int i = 0; i < 1000 && !failure; ++i) {
        auto w = co_await a.write(const_buffer(chunk), dl);
        if (!w) failure = w.error();
      }
      EXPECT_EQ(failure, errc::broken);
      auto again = co_await a.write(const_buffer(chunk), dl);
      EXPECT_EQ(again.error(), errc::broken) << "a broken write direction must stay broken";
    });
  }
}

// A test program may instantiate only some of the suites.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(stream_conformance);
REGISTER_TYPED_TEST_SUITE_P(stream_conformance, LargeTransferArrivesIntactInBothDirections, PingPong,
                            HalfCloseLetsThePeerFinishAndAnswer, EndOfStreamIsSticky,
                            EndRightBehindTheDataIsNotMissed, EmptyBuffersCompleteAtOnce,
                            PastDeadlineWithoutDataTimesOutImmediately, DeadlineDuringAWaitExpiresOnTime,
                            FutureDeadlineGetsDataThatArrivesInTime, CanceledReadLosesNoByte,
                            CancelRacingWithArrivingDataLosesNoByte, CloseUnblocksAReaderOfTheSameObject,
                            OperationsAfterCloseFailWithClosed, WriteAfterPeerClosedFailsWithBroken);

// -- message_conformance ----------------------------------------------------------------

template <class Traits>
class message_conformance : public ::testing::Test {};
TYPED_TEST_SUITE_P(message_conformance);

/// pattern_message is message number `seq` of `size` bytes.
inline std::vector<std::byte> pattern_message(std::size_t size, std::size_t seq) {
  std::vector<std::byte> m(size);
  fill_pattern(m, seq * 7919);
  return m;
}

TYPED_TEST_P(message_conformance, SizesRoundTrip) {
  run_test([]() -> task<void> {
    using T = TypeParam;
    auto dl = deadline::after(std::chrono::seconds(20));
    auto p = co_await T::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::vector<std::size_t> sizes{1, 1000, T::max_message};
    if (supports_empty_message_v<T>) sizes.insert(sizes.begin(), 0);
    std::vector<std::byte> buf(T::max_message + 16);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      auto m = pattern_message(sizes[i], i);
      std::vector<std::byte> received;
      co_await with_scope([&](scope& s) -> task<void> {
        s.spawn([](auto& a, const std::vector<std::byte>& m, deadline dl) -> task<void> {
          auto w = co_await a.send(const_buffer(m), dl);
          EXPECT_TRUE(w) << "send of " << m.size() << " bytes: " << w.error().message();
        }(a, m, dl));
        auto n = co_await b.recv(buf, dl);
        CO_ASSERT_OK(n);
        received.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
      });
      EXPECT_EQ(received.size(), sizes[i]);
      EXPECT_TRUE(received == m) << "message of " << sizes[i] << " bytes changed in transit";
    }
  });
}

TYPED_TEST_P(message_conformance, OrderAndBoundariesArePreserved) {
  run_test([]() -> task<void> {
    using T = TypeParam;
    auto dl = deadline::after(std::chrono::seconds(20));
    auto p = co_await T::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    constexpr std::size_t count = 100;
    auto size_of = [](std::size_t i) { return std::min<std::size_t>(1 + (i * 37) % 300, T::max_message); };
    std::size_t good = 0;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](auto& a, auto size_of, deadline dl) -> task<void> {
        for (std::size_t i = 0; i < count; ++i) {
          auto m = pattern_message(size_of(i), i);
          auto w = co_await a.send(const_buffer(m), dl);
          CO_ASSERT_OK(w);
        }
      }(a, size_of, dl));
      std::vector<std::byte> buf(T::max_message + 16);
      for (std::size_t i = 0; i < count; ++i) {
        auto n = co_await b.recv(buf, dl);
        CO_ASSERT_OK(n);
        auto expected = pattern_message(size_of(i), i);
        CO_ASSERT_EQ(*n, expected.size());
        CO_ASSERT_TRUE(std::equal(expected.begin(), expected.end(), buf.begin()));
        ++good;
      }
    });
    EXPECT_EQ(good, count);
  });
}

TYPED_TEST_P(message_conformance, GatherSendIsOneMessage) {
  run_test([]() -> task<void> {
    using T = TypeParam;
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await T::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::array<const_buffer, 3> parts{as_bytes("one "), as_bytes("two "), as_bytes("three")};
    auto w = co_await a.send(std::span<const const_buffer>(parts), dl);
    CO_ASSERT_OK(w);
    std::array<std::byte, 64> buf;
    auto n = co_await b.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "one two three");
  });
}

TYPED_TEST_P(message_conformance, TooSmallBufferIsReportedNotTruncated) {
  run_test([]() -> task<void> {
    using T = TypeParam;
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await T::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    const std::size_t size = std::min<std::size_t>(100, T::max_message);
    auto big = pattern_message(size, 1);
    auto w = co_await a.send(const_buffer(big), dl);
    CO_ASSERT_OK(w);
    auto w2 = co_await a.send(as_bytes("next"), dl);
    CO_ASSERT_OK(w2);
    std::vector<std::byte> small(size - 1);
    auto n = co_await b.recv(small, dl);
    EXPECT_EQ(n.error(), errc::message_too_large);
    std::vector<std::byte> buf(size + 16);
    if constexpr (keeps_message_on_too_large_v<T>) {
      auto again = co_await b.recv(buf, dl);
      CO_ASSERT_OK(again);
      CO_ASSERT_EQ(*again, size);
      EXPECT_TRUE(std::equal(big.begin(), big.end(), buf.begin()));
    }
    auto next = co_await b.recv(buf, dl);
    CO_ASSERT_OK(next);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *next)), "next");
  });
}

TYPED_TEST_P(message_conformance, OversizeSendIsRefused) {
  using T = TypeParam;
  if constexpr (!send_rejects_oversize_v<T>) {
    GTEST_SKIP() << "this message type has no enforced maximum";
  } else {
    run_test([]() -> task<void> {
      auto dl = deadline::after(std::chrono::seconds(10));
      auto p = co_await T::make_pair(dl);
      CO_ASSERT_OK(p);
      auto& [a, b] = *p;
      std::vector<std::byte> huge(T::max_message + 1);
      auto w = co_await a.send(const_buffer(huge), dl);
      EXPECT_EQ(w.error(), errc::message_too_large);
      // Nothing was sent: the next message is the first one the peer sees.
      auto ok = co_await a.send(as_bytes("fine"), dl);
      CO_ASSERT_OK(ok);
      std::array<std::byte, 16> buf;
      auto n = co_await b.recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "fine");
    });
  }
}

TYPED_TEST_P(message_conformance, Deadlines) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::array<std::byte, 64> buf;
    auto start = deadline::clock::now();
    auto past = co_await b.recv(buf, deadline::already());
    EXPECT_EQ(past.error(), errc::timed_out);
    EXPECT_LT(elapsed_since(start), timing_tolerance);
    start = deadline::clock::now();
    auto during = co_await b.recv(buf, deadline::after(std::chrono::milliseconds(20)));
    auto took = elapsed_since(start);
    EXPECT_EQ(during.error(), errc::timed_out);
    EXPECT_GE(took, std::chrono::milliseconds(20));
    EXPECT_LT(took, std::chrono::milliseconds(20) + timing_tolerance);
    auto w = co_await a.send(as_bytes("in time"), dl);
    CO_ASSERT_OK(w);
    auto n = co_await b.recv(buf, deadline::after(std::chrono::seconds(5)));
    CO_ASSERT_OK(n);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "in time");
  });
}

TYPED_TEST_P(message_conformance, CanceledRecvLosesNoMessage) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(std::chrono::seconds(10));
    auto p = co_await TypeParam::make_pair(dl);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](auto& b, event& parked, std::error_code& outcome) -> task<void> {
        std::array<std::byte, 64> buf;
        parked.set();
        auto r = co_await b.recv(buf, deadline::after(std::chrono::seconds(5)));
        outcome = r ? std::error_code{} : r.error();
      }(b, parked, outcome));
      (void)co_await parked.wait(dl);
      s.cancel();
      co_return;
    });
    EXPECT_EQ(outcome, errc::operation_canceled);
    auto w = co_await a.send(as_bytes("survivor"), dl);
    CO_ASSERT_OK(w);
    std::array<std::byte, 64> buf;
    auto n = co_await b.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *n)), "survivor");
  });
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(message_conformance);
REGISTER_TYPED_TEST_SUITE_P(message_conformance, SizesRoundTrip, OrderAndBoundariesArePreserved,
                            GatherSendIsOneMessage, TooSmallBufferIsReportedNotTruncated,
                            OversizeSendIsRefused, Deadlines, CanceledRecvLosesNoMessage);

// -- listener_conformance ---------------------------------------------------------------

template <class Traits>
class listener_conformance : public ::testing::Test {};
TYPED_TEST_SUITE_P(listener_conformance);

TYPED_TEST_P(listener_conformance, AcceptTimesOut) {
  run_test([]() -> task<void> {
    auto l = TypeParam::make_listener();
    CO_ASSERT_OK(l);
    auto start = deadline::clock::now();
    auto past = co_await l->accept(deadline::already());
    EXPECT_EQ(past.error(), errc::timed_out);
    EXPECT_LT(elapsed_since(start), timing_tolerance);
    start = deadline::clock::now();
    auto during = co_await l->accept(deadline::after(std::chrono::milliseconds(20)));
    auto took = elapsed_since(start);
    EXPECT_EQ(during.error(), errc::timed_out);
    EXPECT_GE(took, std::chrono::milliseconds(20));
    EXPECT_LT(took, std::chrono::milliseconds(20) + timing_tolerance);
  });
}

TYPED_TEST_P(listener_conformance, AcceptCanceled) {
  run_test([]() -> task<void> {
    auto l = TypeParam::make_listener();
    CO_ASSERT_OK(l);
    auto dl = deadline::after(std::chrono::seconds(10));
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](auto& l, event& parked, std::error_code& outcome) -> task<void> {
        parked.set();
        auto c = co_await l.accept(deadline::after(std::chrono::seconds(5)));
        outcome = c ? std::error_code{} : c.error();
      }(*l, parked, outcome));
      (void)co_await parked.wait(dl);
      s.cancel();
      co_return;
    });
    EXPECT_EQ(outcome, errc::operation_canceled);
    // The listener still works after a canceled accept.
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](auto& l, deadline dl) -> task<void> {
        auto c = co_await TypeParam::connect(l, dl);
        EXPECT_TRUE(c) << c.error().message();
      }(*l, dl));
      auto c = co_await l->accept(dl);
      EXPECT_TRUE(c) << c.error().message();
    });
  });
}

TYPED_TEST_P(listener_conformance, LocalAddressIsTheRealOne) {
  run_test([]() -> task<void> {
    auto l = TypeParam::make_listener();
    CO_ASSERT_OK(l);
    auto where = l->local_address();
    CO_ASSERT_OK(where);
    if constexpr (has_port_v<TypeParam>) {
      EXPECT_NE(where->port(), 0) << "the ephemeral port must be filled in: " << where->to_string();
    }
    auto again = l->local_address();
    CO_ASSERT_OK(again);
    EXPECT_EQ(*again, *where);
  });
}

TYPED_TEST_P(listener_conformance, AcceptsManyConnections) {
  run_test([]() -> task<void> {
    auto l = TypeParam::make_listener();
    CO_ASSERT_OK(l);
    auto dl = deadline::after(std::chrono::seconds(10));
    constexpr int count = 16;
    std::set<int> seen;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](auto& l, deadline dl) -> task<void> {
        for (int i = 0; i < count; ++i) {
          auto c = co_await TypeParam::connect(l, dl);
          CO_ASSERT_OK(c);
          auto id = static_cast<std::byte>(i);
          auto w = co_await c->write(const_buffer(&id, 1), dl);
          CO_ASSERT_OK(w);
          auto sh = co_await c->shutdown_write(dl);
          CO_ASSERT_OK(sh);
          // Wait for the acceptor's end so that close() finds nothing to drain.
          std::array<std::byte, 1> end;
          auto r = co_await c->read_some(end, dl);
          EXPECT_EQ(r.error(), errc::end_of_stream);
          (void)co_await c->close(dl);
        }
      }(*l, dl));
      for (int i = 0; i < count; ++i) {
        auto c = co_await l->accept(dl);
        CO_ASSERT_OK(c);
        std::array<std::byte, 1> id;
        auto r = co_await read_exact(*c, id, dl);
        CO_ASSERT_OK(r);
        seen.insert(std::to_integer<int>(id[0]));
        auto cl = co_await c->close(dl);
        EXPECT_TRUE(cl) << cl.error().message();
      }
    });
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(count));
  });
}

TYPED_TEST_P(listener_conformance, CloseUnblocksAcceptAndLaterAcceptsFail) {
  run_test([]() -> task<void> {
    auto l = TypeParam::make_listener();
    CO_ASSERT_OK(l);
    if constexpr (requires { l->close(); }) {
      auto dl = deadline::after(std::chrono::seconds(10));
      std::error_code outcome;
      co_await with_scope([&](scope& s) -> task<void> {
        event parked;
        s.spawn([](auto& l, event& parked, std::error_code& outcome) -> task<void> {
          parked.set();
          auto c = co_await l.accept(deadline::after(std::chrono::seconds(5)));
          outcome = c ? std::error_code{} : c.error();
        }(*l, parked, outcome));
        (void)co_await parked.wait(dl);
        l->close();
        co_return;
      });
      EXPECT_EQ(outcome, errc::closed);
      auto later = co_await l->accept(dl);
      EXPECT_EQ(later.error(), errc::closed);
    }
  });
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(listener_conformance);
REGISTER_TYPED_TEST_SUITE_P(listener_conformance, AcceptTimesOut, AcceptCanceled, LocalAddressIsTheRealOne,
                            AcceptsManyConnections, CloseUnblocksAcceptAndLaterAcceptsFail);

}  // namespace strata::test
