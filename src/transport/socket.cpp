#include "socket_io.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "io_parts.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/timer.hpp"

namespace strata::detail {

result<void> set_nonblocking_cloexec(int fd) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return from_errno(errno);
  int fdflags = ::fcntl(fd, F_GETFD);
  if (fdflags < 0 || ::fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC) < 0) return from_errno(errno);
  return {};
}

namespace {

// waited_out: the error came from the wait (the deadline or the scope), not from the
// socket, so the direction is not lost.
bool waited_out(std::error_code ec) noexcept {
  return ec == errc::timed_out || ec == errc::operation_canceled;
}

}  // namespace

result<address> local_address_of(const pollable_fd& fd) {
  if (!fd) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return unexpected(from_errno(errno));
  return address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

// -- connected stream sockets ----------------------------------------------------------------

int stream_release(stream_socket_state& s) noexcept {
  s.read_error = s.write_error = errc::closed;
  return s.fd.release();
}

void stream_reset(stream_socket_state& s) noexcept {
  if (!s.fd) return;
  linger lg{1, 0};
  ::setsockopt(s.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  s.fd.close();
  s.read_error = s.write_error = errc::closed;
}

task<result<std::size_t>> stream_read_some(stream_socket_state& s, mutable_buffer buf, deadline dl) {
  if (s.read_error) co_return unexpected(s.read_error);
  if (!s.fd) co_return errc::closed;
  if (buf.empty()) co_return std::size_t{0};
  const int fd = s.fd.get();
  auto n = co_await s.fd.perform_read([&] { return ::recv(fd, buf.data(), buf.size(), 0); },
                                      s.short_read_drains ? buf.size() : 0, dl);
  if (n && *n > 0) co_return n;
  if (n) {
    stream_fail_read(s, errc::end_of_stream);
  } else if (!waited_out(n.error())) {
    stream_fail_read(s, n.error());
  } else {
    co_return n;
  }
  co_return unexpected(s.read_error);
}

task<result<void>> stream_write(stream_socket_state& s, const_buffers bufs, deadline dl) {
  if (s.write_error) co_return s.write_error;
  if (!s.fd) co_return errc::closed;
  const int fd = s.fd.get();
  iovec_list iov(bufs);
  std::size_t sent = 0;
  while (sent < iov.total()) {
    auto n = co_await s.fd.perform_write(
        [&] {
          // One buffer left: send, which spares the kernel sendmsg's import of a msghdr
          // and an iovec array (docs/performance.md, TLS).
          if (iov.count() == 1) return ::send(fd, iov.data()->iov_base, iov.data()->iov_len, MSG_NOSIGNAL);
          msghdr msg{};
          msg.msg_iov = iov.data();
          msg.msg_iovlen = std::min<std::size_t>(iov.count(), IOV_MAX);
          return ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        },
        dl);
    if (!n) {
      // A partial write leaves the peer with an unknown prefix: the direction is lost.
      if (sent > 0 || !waited_out(n.error())) stream_fail_write(s, n.error());
      co_return s.write_error ? s.write_error : n.error();
    }
    sent += *n;
    iov.advance(*n);
  }
  co_return result<void>{};
}

result<std::size_t> stream_try_write(stream_socket_state& s, const_buffer buf) {
  if (s.write_error) return unexpected(s.write_error);
  if (!s.fd) return errc::closed;
  if (buf.empty()) return std::size_t{0};
  const int fd = s.fd.get();
  auto n = s.fd.try_write([&] { return ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL | MSG_DONTWAIT); });
  if (n) return n;
  if (n.error() == std::errc::resource_unavailable_try_again) return std::size_t{0};
  stream_fail_write(s, n.error());
  return unexpected(s.write_error);
}

task<result<void>> stream_shutdown_write(stream_socket_state& s, deadline) {
  if (!s.fd) co_return errc::closed;
  if (s.write_shut) co_return result<void>{};
  s.write_shut = true;
  if (::shutdown(s.fd.get(), SHUT_WR) < 0 && errno != ENOTCONN) {
    stream_fail_write(s, from_errno(errno));
    co_return s.write_error;
  }
  stream_fail_write(s, errc::closed);
  co_return result<void>{};
}

task<result<void>> stream_close(stream_socket_state& s, deadline dl) {
  if (!s.fd) co_return errc::closed;
  // Wake any task parked on this descriptor: it gets `closed`.
  s.fd.abort_waits();
  const int fd = s.fd.get();
  if (!s.write_shut) {
    s.write_shut = true;
    ::shutdown(fd, SHUT_WR);
  }
  stream_fail_write(s, errc::closed);
  // Orderly end: drop what the peer still sends until it finishes, so the kernel does
  // not answer unread data with a reset that could destroy our last bytes in flight.
  std::error_code outcome;
  if (s.read_error != errc::end_of_stream && s.read_error != errc::broken) {
    thread_local std::array<std::byte, 4096> scratch;
    for (;;) {
      auto n = co_await s.fd.perform_read([&] { return ::recv(fd, scratch.data(), scratch.size(), 0); }, dl);
      if (n && *n > 0) continue;
      if (!n && waited_out(n.error())) outcome = n.error();
      break;
    }
  }
  if (outcome) {
    stream_reset(s);
  } else {
    s.fd.close();
  }
  s.read_error = s.write_error = errc::closed;
  co_return outcome;
}

result<address> stream_peer_address(const stream_socket_state& s) {
  if (!s.fd) return errc::closed;
  if (s.peer_family == 4) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(s.peer_port);
    std::memcpy(&sa.sin_addr, s.peer_ip.data(), 4);
    return address::from_sockaddr(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  if (s.peer_family == 6) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(s.peer_port);
    std::memcpy(&sa.sin6_addr, s.peer_ip.data(), 16);
    return address::from_sockaddr(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(s.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return unexpected(from_errno(errno));
  return address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

void stream_remember_peer(stream_socket_state& s, const address& peer) noexcept {
  if (peer.kind() == address::family::ipv4) {
    const auto* sa = reinterpret_cast<const sockaddr_in*>(peer.data());
    s.peer_family = 4;
    s.peer_port = ntohs(sa->sin_port);
    std::memcpy(s.peer_ip.data(), &sa->sin_addr, 4);
  } else if (peer.kind() == address::family::ipv6) {
    const auto* sa = reinterpret_cast<const sockaddr_in6*>(peer.data());
    s.peer_family = 6;
    s.peer_port = ntohs(sa->sin6_port);
    std::memcpy(s.peer_ip.data(), &sa->sin6_addr, 16);
  }
}

// -- listening stream sockets --------------------------------------------------------------

namespace {

// A connection that failed between the kernel's handshake and accept(): the listener is
// fine, the next connection may be too (accept(2): treat these like EAGAIN).
bool connection_went_away(int err) noexcept {
  switch (err) {
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

// Out of descriptors or memory: temporary for a listener, which must outlive it.
bool out_of_resources(int err) noexcept {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

constexpr std::chrono::milliseconds first_backoff{5};
constexpr std::chrono::milliseconds max_backoff{1000};

}  // namespace

task<result<int>> accept_fd(listener_socket_state& s, deadline dl, address* peer) {
  for (;;) {
    if (!s.fd) co_return errc::closed;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int err = 0;
    const int listen_fd = s.fd.get();
    auto fd = co_await s.fd.perform_read(
        [&]() -> ssize_t {
          for (;;) {
            len = sizeof ss;
            int got = ::accept4(listen_fd, peer ? reinterpret_cast<sockaddr*>(&ss) : nullptr,
                                peer ? &len : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (got >= 0 || !connection_went_away(errno)) {
              err = got < 0 ? errno : 0;
              return got;
            }
            ++s.stats.dropped_connections;
          }
        },
        dl);
    if (fd) {
      s.backoff = {};
      if (peer) *peer = address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
      co_return static_cast<int>(*fd);
    }
    if (!out_of_resources(err)) co_return unexpected(fd.error());
    // Established connections go on; accepting resumes once descriptors or memory come
    // back. Waiting for readability would not notice that, so retry on a timer that
    // backs off (bounded) while the shortage lasts.
    ++s.stats.resource_errors;
    s.stats.last_resource_error = fd.error();
    s.backoff = s.backoff == s.backoff.zero() ? first_backoff : std::min(s.backoff * 2, max_backoff);
    auto retry = deadline::after(s.backoff);
    if (!co_await sleep_until(deadline::earlier(retry, dl))) co_return errc::operation_canceled;
    if (dl.expired()) co_return errc::timed_out;
  }
}

result<int> open_listener(const address& where, const socket_options& options) {
  int fd = ::socket(where.socket_family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return unexpected(from_errno(errno));
  int one = 1;
  if (where.is_ip() && options.reuse_address) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    int err = errno;
    ::close(fd);
    return unexpected(from_errno(err));
  }
  if (::bind(fd, where.data(), static_cast<socklen_t>(where.size())) < 0 ||
      ::listen(fd, options.backlog) < 0) {
    int err = errno;
    ::close(fd);
    return unexpected(from_errno(err));
  }
  return fd;
}

task<result<int>> connect_fd(address where, deadline dl) {
  int fd = ::socket(where.socket_family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) co_return unexpected(from_errno(errno));
  pollable_fd socket(fd);
  if (auto r = co_await socket.connect(where.data(), static_cast<unsigned>(where.size()), dl); !r) {
    co_return unexpected(r.error());
  }
  co_return socket.release();
}

iovec_list::iovec_list(const_buffers bufs) {
  auto view = bufs.view();
  iovec* out = small_.data();
  if (view.size() > inline_iovecs) {
    large_.resize(view.size());
    out = large_.data();
  }
  for (auto b : view) {
    if (b.empty()) continue;
    out[count_++] = iovec{const_cast<std::byte*>(b.data()), b.size()};
    total_ += b.size();
  }
  data_ = out;
}

void iovec_list::advance(std::size_t n) noexcept {
  while (first_ < count_ && n >= data_[first_].iov_len) n -= data_[first_++].iov_len;
  if (n) {
    data_[first_].iov_base = static_cast<char*>(data_[first_].iov_base) + n;
    data_[first_].iov_len -= n;
  }
}

void attach_fds(msghdr& msg, std::span<char> control, std::span<const int> fds) noexcept {
  if (fds.empty()) return;
  std::memset(control.data(), 0, fd_control_bytes(fds.size()));
  msg.msg_control = control.data();
  msg.msg_controllen = fd_control_bytes(fds.size());
  auto* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
}

void take_fds(msghdr& msg, std::vector<int>& out) {
  for (auto* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      out.push_back(fd);
    }
  }
}

unix_socket_file::unix_socket_file(std::string path) noexcept : path_(std::move(path)) {
  struct stat st {};
  if (path_.empty() || ::lstat(path_.c_str(), &st) != 0) {
    path_.clear();
    return;
  }
  device_ = st.st_dev;
  inode_ = st.st_ino;
}

unix_socket_file& unix_socket_file::operator=(unix_socket_file&& other) noexcept {
  if (this != &other) {
    reset();
    path_ = std::exchange(other.path_, {});
    device_ = other.device_;
    inode_ = other.inode_;
  }
  return *this;
}

void unix_socket_file::reset() noexcept {
  if (path_.empty()) return;
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_)
    ::unlink(path_.c_str());
  path_.clear();
}

}  // namespace strata::detail
