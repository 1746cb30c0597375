#include <gtest/gtest.h>

#include "strata/runtime.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

task<int> answer() { co_return 42; }
task<int> sum() { co_return co_await answer() + co_await answer(); }

TEST(Task, NestedAwaitReturnsValues) { EXPECT_EQ(run(sum()), 84); }

}  // namespace
}  // namespace strata
