// run: the entry point that gives a thread its event loop and drives a task to the end.
#pragma once

#include <exception>
#include <utility>

#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// run creates an event loop on the calling thread, runs `t` until it finishes and
/// returns its value (rethrowing an exception that escaped it). Not reentrant: one
/// run() per thread at a time. The loop waits with `backend` (default_loop_backend():
/// STRATA_LOOP in the environment, else the default).
template <class T>
T run(task<T> t, loop_backend backend = default_loop_backend()) {
  event_loop loop(backend);
  auto h = t.handle();
  h.promise().cancel_ = &loop.root_cancel();
  loop.run_until(h);
  auto& p = h.promise();
  if (p.exception_) std::rethrow_exception(std::exchange(p.exception_, {}));
  return p.take();
}

}  // namespace strata
