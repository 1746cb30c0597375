// result<T> and the error vocabulary: values and errors, move-only values, comparisons
// with strata::errc and std::errc, messages, and the errno mapping.
#include "strata/runtime/result.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

namespace strata {
namespace {

result<int> half(int x) {
  if (x % 2) return errc::invalid_argument;
  return x / 2;
}

result<int> quarter(int x) {
  auto h = half(x);
  if (!h) return unexpected(h.error());
  return half(*h);
}

TEST(Result, HoldsAValue) {
  result<int> r = 42;
  EXPECT_TRUE(r.has_value());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(r.value(), 42);
  EXPECT_FALSE(r.error()) << "a value carries the success code";
  *r = 7;
  EXPECT_EQ(*r, 7);
}

TEST(Result, HoldsAnError) {
  result<int> r = errc::timed_out;
  EXPECT_FALSE(r.has_value());
  EXPECT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timed_out);
  EXPECT_NE(r.error(), errc::operation_canceled);
  result<int> sys = unexpected(std::make_error_code(std::errc::connection_refused));
  EXPECT_EQ(sys.error(), std::errc::connection_refused);
  result<int> wrapped = unexpected(errc::broken);
  EXPECT_EQ(wrapped.error(), errc::broken);
}

TEST(Result, PropagatesErrors) {
  EXPECT_EQ(*quarter(8), 2);
  EXPECT_EQ(quarter(6).error(), errc::invalid_argument);
  EXPECT_EQ(quarter(3).error(), errc::invalid_argument);
}

TEST(Result, MoveOnlyValuesAndMemberAccess) {
  result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 5);
  std::unique_ptr<int> taken = std::move(r).value();
  EXPECT_EQ(*taken, 5);
  result<std::unique_ptr<int>> again = std::make_unique<int>(6);
  std::unique_ptr<int> via_star = *std::move(again);
  EXPECT_EQ(*via_star, 6);

  result<std::string> s = std::string("text");
  EXPECT_EQ(s->size(), 4u);
  const auto& cs = s;
  EXPECT_EQ(cs->front(), 't');
  EXPECT_EQ(*cs, "text");

  result<std::vector<int>> v(std::in_place, 3u, 9);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, (std::vector<int>{9, 9, 9}));
}

TEST(Result, VoidResults) {
  result<void> ok;
  EXPECT_TRUE(ok);
  EXPECT_TRUE(ok.has_value());
  EXPECT_FALSE(ok.error());
  ok.value();
  result<void> bad = errc::closed;
  EXPECT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::closed);
  result<void> from_code = std::make_error_code(std::errc::broken_pipe);
  EXPECT_EQ(from_code.error(), std::errc::broken_pipe);
  result<void> from_unexpected = unexpected(errc::end_of_stream);
  EXPECT_EQ(from_unexpected.error(), errc::end_of_stream);
  result<void> success_code = std::error_code{};
  EXPECT_TRUE(success_code) << "an empty error code is success";
}

#ifndef NDEBUG
TEST(ResultDeathTest, ValueOfAnErrorIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  result<int> r = errc::broken;
  EXPECT_DEATH((void)r.value(), "has_value");
}
#endif

TEST(Error, CategoryNamesAndMessages) {
  EXPECT_STREQ(strata_category().name(), "strata");
  EXPECT_EQ(make_error_code(errc::timed_out).message(), "deadline expired");
  EXPECT_EQ(make_error_code(errc::operation_canceled).message(), "operation canceled");
  EXPECT_EQ(make_error_code(errc::end_of_stream).message(), "end of stream");
  EXPECT_EQ(make_error_code(errc::broken).message(), "connection broken");
  EXPECT_EQ(make_error_code(errc::protocol_error).message(), "protocol error");
  EXPECT_EQ(make_error_code(errc::message_too_large).message(), "message too large");
  EXPECT_EQ(make_error_code(errc::not_supported).message(), "not supported by this layer");
  EXPECT_EQ(make_error_code(errc::invalid_argument).message(), "invalid argument");
  EXPECT_EQ(make_error_code(errc::closed).message(), "closed");
  EXPECT_EQ(make_error_code(errc::peer_died).message(), "peer process died");
  EXPECT_NE(std::error_code(999, strata_category()).message().find("999"), std::string::npos);
}

TEST(Error, StrataErrorsMatchTheirStandardConditions) {
  EXPECT_EQ(make_error_code(errc::timed_out), std::errc::timed_out);
  EXPECT_EQ(make_error_code(errc::operation_canceled), std::errc::operation_canceled);
  EXPECT_EQ(make_error_code(errc::message_too_large), std::errc::message_size);
  EXPECT_EQ(make_error_code(errc::not_supported), std::errc::operation_not_supported);
  EXPECT_EQ(make_error_code(errc::invalid_argument), std::errc::invalid_argument);
  // Strata-only conditions match nothing standard.
  EXPECT_NE(make_error_code(errc::end_of_stream), std::errc::connection_reset);
  EXPECT_NE(make_error_code(errc::broken), std::errc::broken_pipe);
}

TEST(Error, ErrnoMapsToTheSharedVocabulary) {
  EXPECT_EQ(from_errno(ECONNRESET), errc::broken);
  EXPECT_EQ(from_errno(EPIPE), errc::broken);
  EXPECT_EQ(from_errno(ECONNABORTED), errc::broken);
  EXPECT_EQ(from_errno(ETIMEDOUT), errc::timed_out);
  EXPECT_EQ(from_errno(ECANCELED), errc::operation_canceled);
  EXPECT_EQ(from_errno(EMSGSIZE), errc::message_too_large);
  auto refused = from_errno(ECONNREFUSED);
  EXPECT_EQ(refused.category(), std::system_category());
  EXPECT_EQ(refused, std::errc::connection_refused);
  EXPECT_EQ(from_errno(ENOENT), std::errc::no_such_file_or_directory);
}

TEST(Error, DescribeNamesTheOperation) {
  EXPECT_EQ(describe("connect 127.0.0.1:1", make_error_code(errc::timed_out)),
            "connect 127.0.0.1:1: deadline expired");
  EXPECT_EQ(describe("write", from_errno(EPIPE)), "write: connection broken");
  // A reset is a broken connection to callers, and says so to humans.
  EXPECT_EQ(describe("read", from_errno(ECONNRESET)), "read: connection reset by peer");
  EXPECT_EQ(from_errno(ECONNRESET), errc::broken);
  EXPECT_FALSE(from_errno(ECONNRESET) != errc::broken);
  EXPECT_TRUE(from_errno(ECONNRESET) == std::errc::connection_reset);
  EXPECT_NE(from_errno(EPIPE), cause::connection_reset);
  EXPECT_FALSE(make_error_code(errc::broken) == errc::closed);
  EXPECT_FALSE(std::make_error_code(std::errc::connection_reset) == errc::broken)
      << "system codes stay apart";
}

}  // namespace
}  // namespace strata
