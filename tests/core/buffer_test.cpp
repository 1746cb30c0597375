// byte_buffer: memory follows the bytes written, large blocks are given back, and moving
// a large message out does not hold it twice.
#include "strata/core/buffer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "support/memory.hpp"

namespace strata {
namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

TEST(ByteBuffer, ReadableWritableConsumeCompact) {
  byte_buffer b;
  EXPECT_EQ(b.capacity(), 0u);
  b.append(as_bytes("hello world"));
  EXPECT_EQ(as_text(b.readable()), "hello world");
  b.consume(6);
  EXPECT_EQ(as_text(b.readable()), "world");
  b.compact();
  EXPECT_EQ(as_text(b.readable()), "world");
  auto w = b.writable(100);
  EXPECT_GE(w.size(), 100u);
  b.consume(5);
  EXPECT_TRUE(b.empty());
  b.release();
  EXPECT_EQ(b.capacity(), 0u);
}

TEST(ByteBuffer, GrowthKeepsTheBytesAcrossTheHeapToMappingSwitch) {
  byte_buffer b;
  std::vector<std::byte> expect;
  for (int i = 0; i < 5000; ++i) {
    std::byte piece[64];
    std::fill(std::begin(piece), std::end(piece), static_cast<std::byte>(i));
    b.append(piece);
    expect.insert(expect.end(), std::begin(piece), std::end(piece));
  }
  ASSERT_EQ(b.size(), expect.size());
  EXPECT_TRUE(std::equal(expect.begin(), expect.end(), b.readable().begin()));
  byte_buffer moved = std::move(b);
  EXPECT_EQ(b.capacity(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(moved.size(), expect.size());
}

TEST(ByteBuffer, CapacityIsNotResidentUntilWritten) {
  auto before = test::resident_bytes();
  byte_buffer b;
  auto room = b.writable(256 * mib);
  EXPECT_GE(room.size(), 256 * mib);
  auto grown = test::resident_bytes() - std::min(before, test::resident_bytes());
  EXPECT_LT(grown, 4 * mib) << "room that was never written became resident: " << grown << " bytes";
}

TEST(ByteBuffer, MovingALargeMessageOutHoldsItOnce) {
  byte_buffer source;
  auto room = source.writable(8 * mib + 5);
  std::fill(room.begin(), room.begin() + static_cast<std::ptrdiff_t>(8 * mib + 5), std::byte{'y'});
  source.commit(8 * mib + 5);
  source.consume(5);
  byte_buffer target;
  auto into = target.writable(8 * mib).first(8 * mib);
  auto before = test::resident_bytes();
  source.move_out(0, into);
  auto grown = test::resident_bytes() - std::min(before, test::resident_bytes());
  EXPECT_LT(grown, 3 * mib) << "the message was held twice: resident memory grew by " << grown << " bytes";
  EXPECT_EQ(std::count(into.begin(), into.end(), std::byte{'y'}), static_cast<std::ptrdiff_t>(8 * mib));
}

}  // namespace
}  // namespace strata
