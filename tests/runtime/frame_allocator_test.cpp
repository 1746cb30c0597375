// The frame pool and its switch: STRATA_FRAME_POOL=0 makes a thread allocate every frame
// with malloc and free it at once, so that a sanitizer of the user's build sees a use of a
// destroyed frame even with a release library (whose recycled frames would hide it).
#include "strata/runtime/frame_allocator.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstddef>
#include <optional>
#include <string>
#include <thread>

#include "strata/runtime.hpp"

namespace strata {
namespace {

// frames_cached_after_work runs some tasks on a new thread (which decides about its pool
// when it allocates its first frame) and returns the bytes of frames it kept for reuse and
// whether its pool was on.
std::pair<std::size_t, bool> frames_cached_after_work() {
  std::size_t cached = 0;
  bool enabled = false;
  std::thread([&] {
    run([]() -> task<void> {
      scope s;
      for (int i = 0; i < 100; ++i) s.spawn([]() -> task<void> { co_await yield(); }());
      (void)co_await s.join();
    }());
    enabled = detail::frame_pool_enabled();
    cached = detail::release_cached_frames();
  }).join();
  return {cached, enabled};
}

// env_override sets an environment variable for its lifetime (no other thread runs then).
class env_override {
 public:
  env_override(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~env_override() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  env_override(const env_override&) = delete;
  env_override& operator=(const env_override&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(FramePool, SwitchedOffByTheEnvironment) {
  env_override off("STRATA_FRAME_POOL", "0");
  auto [cached, enabled] = frames_cached_after_work();
  EXPECT_FALSE(enabled);
  EXPECT_EQ(cached, 0u);  // every frame went back to malloc at once
}

TEST(FramePool, OnByDefaultUnlessUnderAddressSanitizer) {
  env_override unset("STRATA_FRAME_POOL", nullptr);
  auto [cached, enabled] = frames_cached_after_work();
  if (!enabled) GTEST_SKIP() << "AddressSanitizer: frames are never pooled";
  EXPECT_GT(cached, 0u);
}

TEST(FramePool, OtherValuesLeaveItOn) {
  env_override on("STRATA_FRAME_POOL", "1");
  auto [cached, enabled] = frames_cached_after_work();
  if (!enabled) GTEST_SKIP() << "AddressSanitizer: frames are never pooled";
  EXPECT_GT(cached, 0u);
}

}  // namespace
}  // namespace strata
