#include "strata/runtime/pollable_fd.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace strata {

result<pollable_fd> pollable_fd::adopt(int fd) noexcept {
  if (fd < 0) return errc::invalid_argument;
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return unexpected(from_errno(errno));
  int fdflags = ::fcntl(fd, F_GETFD);
  if (fdflags < 0 || ::fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC) < 0) return unexpected(from_errno(errno));
  return pollable_fd(fd);
}

void pollable_fd::abort_waits() noexcept {
  if (fd_ < 0) return;
  if (auto* loop = event_loop::current()) loop->forget_fd(fd_);
}

void pollable_fd::close() noexcept {
  if (fd_ < 0) return;
  abort_waits();
  ::close(fd_);
  fd_ = -1;
}

task<result<void>> pollable_fd::connect(const void* addr, unsigned len, deadline dl) {
  if (fd_ < 0) co_return errc::closed;
  int rc = ::connect(fd_, static_cast<const sockaddr*>(addr), static_cast<socklen_t>(len));
  if (rc == 0) co_return result<void>{};
  // Only EINPROGRESS means "connecting". EAGAIN is a failure: a unix listener's queue is
  // full (the socket stays unconnected, yet polls writable) or TCP ran out of ports.
  if (errno != EINPROGRESS) co_return from_errno(errno);
  if (auto ec = co_await writable(dl)) co_return ec;
  int err = 0;
  socklen_t err_len = sizeof err;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &err_len) < 0) co_return from_errno(errno);
  if (err) co_return from_errno(err);
  co_return result<void>{};
}

}  // namespace strata
