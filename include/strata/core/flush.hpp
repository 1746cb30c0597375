// Flushing a stack: a layer that holds written bytes back (adapt/buffered.hpp) answers
// the fact `fact::flusher` of the query interface (core/query.hpp) with a flush_handle,
// so the bytes can be pushed out from the top of any stack, typed or erased
// (any_stream, any_message, any_connection forward queries), without knowing where the
// buffering layer sits. strata::flush(stack, dl) is the short form; on a stack without
// such a layer it succeeds at once, since every write there already went through.
#pragma once

#include <cstddef>
#include <system_error>
#include <utility>

#include "strata/core/query.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// flush_handle flushes one buffering layer found by query<fact::flusher>. It points at
/// that layer: valid while the layer is neither moved nor destroyed (query again after
/// moving a typed stack; the layers inside any_stream/any_message do not move).
class flush_handle {
 public:
  /// ops are the buffering layer's two operations on its type-erased self.
  struct ops {
    task<result<void>> (*flush)(void* layer, deadline dl);
    std::size_t (*pending)(const void* layer) noexcept;
  };

  flush_handle(void* layer, const ops* operations) noexcept : layer_(layer), ops_(operations) {}

  /// flush writes out every byte the layer (and every buffering layer below it) has
  /// accepted and not yet written; see buffered::flush for the contract.
  task<result<void>> flush(deadline dl) const { return ops_->flush(layer_, dl); }
  /// pending is how many accepted bytes the layer and those below it still hold.
  std::size_t pending() const noexcept { return ops_->pending(layer_); }

 private:
  void* layer_;
  const ops* ops_;
};

namespace fact {

/// flusher: the topmost layer of the stack that holds written bytes back, as a handle
/// that flushes it (and the buffering layers below it). Answered by buffered;
/// not_supported on a stack where every write goes straight through.
struct flusher {
  using type = flush_handle;
};

}  // namespace fact

namespace detail {

/// may_hold_output is false when `L` provably answers no fact::flusher (a typed stack
/// without a buffering layer), so asking costs nothing there.
template <class L>
constexpr bool may_hold_output() noexcept {
  if constexpr (answers_itself<fact::flusher, L> || erased_layer<L>) {
    return true;
  } else if constexpr (forwarding_layer<L>) {
    return may_hold_output<std::remove_cvref_t<decltype(std::declval<const L&>().next_layer())>>();
  } else {
    return false;
  }
}

/// output_pending tells whether the stack under `layer` holds written bytes back. A
/// layer that reads its lower stream with a deadline of its own, shorter than its
/// caller's (an idle grace), uses the caller's deadline instead while this is true: the
/// lower layer flushes before it waits, and a flush cut short part-way breaks the
/// write direction.
template <class L>
bool output_pending(const L& layer) {
  if constexpr (may_hold_output<L>()) {
    auto handle = query<fact::flusher>(layer);
    return handle && handle->pending() != 0;
  } else {
    return false;
  }
}

inline task<result<void>> flush_without_handle(std::error_code ec) {
  if (ec == errc::not_supported) co_return result<void>{};
  co_return ec;
}

}  // namespace detail

/// flush writes out what the buffering layers of the stack under `top` hold (the
/// topmost one and every one below it), then returns: the contract of buffered::flush
/// (adapt/buffered.hpp). On a stack without a buffering layer it succeeds at once. `top`
/// must outlive the task.
template <class Stack>
task<result<void>> flush(Stack& top, deadline dl) {
  auto handle = query<fact::flusher>(std::as_const(top));
  if (handle) return handle->flush(dl);
  return detail::flush_without_handle(handle.error());
}

}  // namespace strata
