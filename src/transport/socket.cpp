#include "strata/transport/socket.hpp"

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
namespace {

void forget(int fd) noexcept {
  if (auto* loop = event_loop::current()) loop->forget_fd(fd);
}

}  // namespace

result<void> set_nonblocking_cloexec(int fd) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return from_errno(errno);
  int fdflags = ::fcntl(fd, F_GETFD);
  if (fdflags < 0 || ::fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC) < 0) return from_errno(errno);
  return {};
}

// -- socket_stream -----------------------------------------------------------------------

socket_stream::socket_stream(socket_stream&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      read_error_(std::exchange(other.read_error_, errc::closed)),
      write_error_(std::exchange(other.write_error_, errc::closed)),
      write_shut_(other.write_shut_),
      short_read_drains_(other.short_read_drains_),
      peer_family_(other.peer_family_),
      peer_port_(other.peer_port_),
      peer_ip_(other.peer_ip_) {}

socket_stream& socket_stream::operator=(socket_stream&& other) noexcept {
  if (this != &other) {
    release_fd();
    fd_ = std::exchange(other.fd_, -1);
    read_error_ = std::exchange(other.read_error_, errc::closed);
    write_error_ = std::exchange(other.write_error_, errc::closed);
    write_shut_ = other.write_shut_;
    short_read_drains_ = other.short_read_drains_;
    peer_family_ = other.peer_family_;
    peer_port_ = other.peer_port_;
    peer_ip_ = other.peer_ip_;
  }
  return *this;
}

socket_stream::~socket_stream() { release_fd(); }

void socket_stream::release_fd() noexcept {
  if (fd_ < 0) return;
  forget(fd_);
  ::close(fd_);
  fd_ = -1;
}

int socket_stream::release() noexcept {
  if (fd_ >= 0) forget(fd_);
  read_error_ = write_error_ = errc::closed;
  return std::exchange(fd_, -1);
}

void socket_stream::reset() noexcept {
  if (fd_ < 0) return;
  linger lg{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  release_fd();
  read_error_ = write_error_ = errc::closed;
}

task<result<std::size_t>> socket_stream::read_some(mutable_buffer buf, deadline dl) {
  if (read_error_) co_return unexpected(read_error_);
  if (fd_ < 0) co_return errc::closed;
  if (buf.empty()) co_return std::size_t{0};
  auto* loop = event_loop::current();
  for (;;) {
    if (!loop->io_ready(fd_, false)) {
      if (auto ec = co_await wait_readable(fd_, dl)) {
        if (ec == errc::closed) fail_read(ec);
        co_return unexpected(ec);
      }
      if (read_error_) co_return unexpected(read_error_);
    }
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n > 0) {
      if (short_read_drains_ && static_cast<std::size_t>(n) < buf.size()) loop->io_drained(fd_, false);
      co_return static_cast<std::size_t>(n);
    }
    if (n == 0) {
      fail_read(errc::end_of_stream);
      co_return unexpected(read_error_);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      loop->io_drained(fd_, false);
      continue;
    }
    fail_read(from_errno(errno));
    co_return unexpected(read_error_);
  }
}

task<result<void>> socket_stream::write(const_buffers bufs, deadline dl) {
  if (write_error_) co_return write_error_;
  if (fd_ < 0) co_return errc::closed;
  auto* loop = event_loop::current();
  iovec_list iov(bufs);
  std::size_t sent = 0;
  while (sent < iov.total()) {
    if (!loop->io_ready(fd_, true)) {
      if (auto ec = co_await wait_writable(fd_, dl)) {
        // A partial write leaves the peer with an unknown prefix: the direction is lost.
        if (sent > 0 || ec == errc::closed) fail_write(ec);
        co_return ec;
      }
      if (write_error_) co_return write_error_;
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = std::min<std::size_t>(iov.count(), IOV_MAX);
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        loop->io_drained(fd_, true);
        continue;
      }
      fail_write(from_errno(errno));
      co_return write_error_;
    }
    sent += static_cast<std::size_t>(n);
    iov.advance(static_cast<std::size_t>(n));
  }
  co_return result<void>{};
}

task<result<void>> socket_stream::shutdown_write(deadline) {
  if (fd_ < 0) co_return errc::closed;
  if (write_shut_) co_return result<void>{};
  write_shut_ = true;
  if (::shutdown(fd_, SHUT_WR) < 0 && errno != ENOTCONN) {
    fail_write(from_errno(errno));
    co_return write_error_;
  }
  fail_write(errc::closed);
  co_return result<void>{};
}

task<result<void>> socket_stream::close(deadline dl) {
  if (fd_ < 0) co_return errc::closed;
  // Wake any task parked on this descriptor: it gets `closed`.
  forget(fd_);
  if (!write_shut_) {
    write_shut_ = true;
    ::shutdown(fd_, SHUT_WR);
  }
  fail_write(errc::closed);
  // Orderly end: drop what the peer still sends until it finishes, so the kernel does
  // not answer unread data with a reset that could destroy our last bytes in flight.
  std::error_code outcome;
  if (read_error_ != errc::end_of_stream && read_error_ != errc::broken) {
    thread_local std::array<std::byte, 4096> scratch;
    for (;;) {
      ssize_t n = ::recv(fd_, scratch.data(), scratch.size(), 0);
      if (n > 0) continue;
      if (n == 0) break;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) break;
      if (auto ec = co_await wait_readable(fd_, dl)) {
        outcome = ec;
        break;
      }
    }
  }
  if (outcome) {
    reset();
  } else {
    release_fd();
  }
  read_error_ = write_error_ = errc::closed;
  co_return outcome;
}

result<address> socket_stream::local_address() const {
  if (fd_ < 0) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return unexpected(from_errno(errno));
  return address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

result<address> socket_stream::peer_address() const {
  if (fd_ < 0) return errc::closed;
  if (peer_family_ == 4) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(peer_port_);
    std::memcpy(&sa.sin_addr, peer_ip_.data(), 4);
    return address::from_sockaddr(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  if (peer_family_ == 6) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(peer_port_);
    std::memcpy(&sa.sin6_addr, peer_ip_.data(), 16);
    return address::from_sockaddr(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return unexpected(from_errno(errno));
  return address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

void socket_stream::remember_peer(const address& peer) noexcept {
  if (peer.kind() == address::family::ipv4) {
    const auto* sa = reinterpret_cast<const sockaddr_in*>(peer.data());
    peer_family_ = 4;
    peer_port_ = ntohs(sa->sin_port);
    std::memcpy(peer_ip_.data(), &sa->sin_addr, 4);
  } else if (peer.kind() == address::family::ipv6) {
    const auto* sa = reinterpret_cast<const sockaddr_in6*>(peer.data());
    peer_family_ = 6;
    peer_port_ = ntohs(sa->sin6_port);
    std::memcpy(peer_ip_.data(), &sa->sin6_addr, 16);
  }
}

// -- socket_listener -------------------------------------------------------------------

socket_listener::socket_listener(socket_listener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), stats_(other.stats_), backoff_(other.backoff_) {}

socket_listener& socket_listener::operator=(socket_listener&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    stats_ = other.stats_;
    backoff_ = other.backoff_;
  }
  return *this;
}

socket_listener::~socket_listener() { close(); }

void socket_listener::close() noexcept {
  if (fd_ < 0) return;
  forget(fd_);
  ::close(fd_);
  fd_ = -1;
}

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

task<result<int>> socket_listener::accept_fd(deadline dl, address* peer) {
  for (;;) {
    if (fd_ < 0) co_return errc::closed;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(fd_, peer ? reinterpret_cast<sockaddr*>(&ss) : nullptr, peer ? &len : nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      backoff_ = {};
      if (peer) *peer = address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
      co_return fd;
    }
    int err = errno;
    if (err == EINTR) continue;
    if (connection_went_away(err)) {
      ++stats_.dropped_connections;
      continue;
    }
    if (out_of_resources(err)) {
      // Established connections go on; accepting resumes once descriptors or memory
      // come back. Waiting for readability would not notice that, so retry on a timer
      // that backs off (bounded) while the shortage lasts.
      ++stats_.resource_errors;
      stats_.last_resource_error = from_errno(err);
      backoff_ = backoff_ == backoff_.zero() ? first_backoff : std::min(backoff_ * 2, max_backoff);
      auto retry = deadline::after(backoff_);
      if (!co_await sleep_until(deadline::earlier(retry, dl))) co_return errc::operation_canceled;
      if (dl.expired()) co_return errc::timed_out;
      continue;
    }
    if (err != EAGAIN && err != EWOULDBLOCK) co_return unexpected(from_errno(err));
    if (auto ec = co_await wait_readable(fd_, dl)) co_return unexpected(ec);
  }
}

result<address> socket_listener::local_address() const {
  if (fd_ < 0) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return unexpected(from_errno(errno));
  return address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
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
  int rc = ::connect(fd, where.data(), static_cast<socklen_t>(where.size()));
  // Only EINPROGRESS means "connecting". EAGAIN is a failure: a unix listener's queue is
  // full (the socket stays unconnected, yet polls writable) or TCP ran out of ports.
  if (rc < 0 && errno != EINPROGRESS) {
    int err = errno;
    ::close(fd);
    co_return unexpected(from_errno(err));
  }
  if (rc < 0) {
    if (auto ec = co_await wait_writable(fd, dl)) {
      forget(fd);
      ::close(fd);
      co_return unexpected(ec);
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      forget(fd);
      ::close(fd);
      co_return unexpected(from_errno(err));
    }
  }
  co_return fd;
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
