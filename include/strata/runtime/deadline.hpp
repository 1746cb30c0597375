// deadline: an absolute point on the monotonic clock, the last parameter of every
// blocking call. One deadline can be reused across several calls so that a whole
// exchange shares one budget.
#pragma once

#include <chrono>

namespace strata {

/// deadline is an absolute time on std::chrono::steady_clock, or never.
class deadline {
 public:
  using clock = std::chrono::steady_clock;

  /// never returns a deadline that does not expire.
  static constexpr deadline never() noexcept { return deadline{clock::time_point::max()}; }
  /// after returns the deadline `d` from now.
  static deadline after(clock::duration d) noexcept { return deadline{clock::now() + d}; }
  /// at returns the deadline at the given instant.
  static constexpr deadline at(clock::time_point tp) noexcept { return deadline{tp}; }
  /// already returns a deadline in the past: try without blocking.
  static constexpr deadline already() noexcept { return deadline{clock::time_point::min()}; }

  constexpr bool is_never() const noexcept { return tp_ == clock::time_point::max(); }
  bool expired() const noexcept { return !is_never() && clock::now() >= tp_; }
  constexpr clock::time_point time_point() const noexcept { return tp_; }
  /// remaining is the time left (zero when expired, max when never).
  clock::duration remaining() const noexcept {
    if (is_never()) return clock::duration::max();
    auto now = clock::now();
    return now >= tp_ ? clock::duration::zero() : tp_ - now;
  }
  /// earlier returns whichever of two deadlines comes first.
  static constexpr deadline earlier(deadline a, deadline b) noexcept { return a.tp_ < b.tp_ ? a : b; }

  friend constexpr bool operator==(deadline, deadline) noexcept = default;

 private:
  constexpr explicit deadline(clock::time_point tp) noexcept : tp_(tp) {}
  clock::time_point tp_;
};

}  // namespace strata
