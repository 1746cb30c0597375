// SIGPIPE without a process-wide handler, for the calls that have no MSG_NOSIGNAL: write(2)
// to a pipe (the pipe transport) and splice(2) (the bridge). Blocking the signal on the
// thread leaves it pending instead of killing the process; the caller that saw EPIPE
// takes it, so it is never delivered later. Private to src/.
#pragma once

#include <signal.h>

#include <cerrno>
#include <ctime>

namespace strata::detail {

/// block_sigpipe blocks SIGPIPE for the calling thread, once.
inline void block_sigpipe() noexcept {
  thread_local bool blocked = false;
  if (blocked) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  blocked = true;
}

/// consume_sigpipe takes the SIGPIPE that a failed write left pending on this thread (if
/// any; an ignored SIGPIPE leaves none).
inline void consume_sigpipe() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  timespec zero{};
  while (sigtimedwait(&set, nullptr, &zero) < 0 && errno == EINTR) {
  }
}

}  // namespace strata::detail
