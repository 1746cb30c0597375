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

// -- socket_stream -----------------------------------------------------------------------

socket_stream::socket_stream(socket_stream&& other) noexcept
    : fd_(std::move(other.fd_)),
      read_error_(std::exchange(other.read_error_, errc::closed)),
      write_error_(std::exchange(other.write_error_, errc::closed)),
      write_shut_(other.write_shut_),
      short_read_drains_(other.short_read_drains_),
      peer_family_(other.peer_family_),
      peer_port_(other.peer_port_),
      peer_ip_(other.peer_ip_) {}

socket_stream& socket_stream::operator=(socket_stream&& other) noexcept {
  if (this != &other) {
    fd_ = std::move(other.fd_);
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

socket_stream::~socket_stream() = default;

int socket_stream::release() noexcept {
  read_error_ = write_error_ = errc::closed;
  return fd_.release();
}

void socket_stream::reset() noexcept {
  if (!fd_) return;
  linger lg{1, 0};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  release_fd();
  read_error_ = write_error_ = errc::closed;
}

task<result<std::size_t>> socket_stream::read_some(mutable_buffer buf, deadline dl) {
  if (read_error_) co_return unexpected(read_error_);
  if (!fd_) co_return errc::closed;
  if (buf.empty()) co_return std::size_t{0};
  const int fd = fd_.get();
  auto n = co_await fd_.perform_read([&] { return ::recv(fd, buf.data(), buf.size(), 0); },
                                     short_read_drains_ ? buf.size() : 0, dl);
  if (n && *n > 0) co_return n;
  if (n) {
    fail_read(errc::end_of_stream);
  } else if (!waited_out(n.error())) {
    fail_read(n.error());
  } else {
    co_return n;
  }
  co_return unexpected(read_error_);
}

task<result<void>> socket_stream::write(const_buffers bufs, deadline dl) {
  if (write_error_) co_return write_error_;
  if (!fd_) co_return errc::closed;
  const int fd = fd_.get();
  iovec_list iov(bufs);
  std::size_t sent = 0;
  while (sent < iov.total()) {
    auto n = co_await fd_.perform_write(
        [&] {
          msghdr msg{};
          msg.msg_iov = iov.data();
          msg.msg_iovlen = std::min<std::size_t>(iov.count(), IOV_MAX);
          return ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        },
        dl);
    if (!n) {
      // A partial write leaves the peer with an unknown prefix: the direction is lost.
      if (sent > 0 || !waited_out(n.error())) fail_write(n.error());
      co_return write_error_ ? write_error_ : n.error();
    }
    sent += *n;
    iov.advance(*n);
  }
  co_return result<void>{};
}

task<result<void>> socket_stream::shutdown_write(deadline) {
  if (!fd_) co_return errc::closed;
  if (write_shut_) co_return result<void>{};
  write_shut_ = true;
  if (::shutdown(fd_.get(), SHUT_WR) < 0 && errno != ENOTCONN) {
    fail_write(from_errno(errno));
    co_return write_error_;
  }
  fail_write(errc::closed);
  co_return result<void>{};
}

task<result<void>> socket_stream::close(deadline dl) {
  if (!fd_) co_return errc::closed;
  // Wake any task parked on this descriptor: it gets `closed`.
  fd_.abort_waits();
  const int fd = fd_.get();
  if (!write_shut_) {
    write_shut_ = true;
    ::shutdown(fd, SHUT_WR);
  }
  fail_write(errc::closed);
  // Orderly end: drop what the peer still sends until it finishes, so the kernel does
  // not answer unread data with a reset that could destroy our last bytes in flight.
  std::error_code outcome;
  if (read_error_ != errc::end_of_stream && read_error_ != errc::broken) {
    thread_local std::array<std::byte, 4096> scratch;
    for (;;) {
      auto n = co_await fd_.perform_read([&] { return ::recv(fd, scratch.data(), scratch.size(), 0); }, dl);
      if (n && *n > 0) continue;
      if (!n && waited_out(n.error())) outcome = n.error();
      break;
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
  if (!fd_) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return unexpected(from_errno(errno));
  return address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

result<address> socket_stream::peer_address() const {
  if (!fd_) return errc::closed;
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
  if (::getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return unexpected(from_errno(errno));
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
    : fd_(std::move(other.fd_)), stats_(other.stats_), backoff_(other.backoff_) {}

socket_listener& socket_listener::operator=(socket_listener&& other) noexcept {
  if (this != &other) {
    fd_ = std::move(other.fd_);
    stats_ = other.stats_;
    backoff_ = other.backoff_;
  }
  return *this;
}

socket_listener::~socket_listener() = default;

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
    if (!fd_) co_return errc::closed;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int err = 0;
    const int listen_fd = fd_.get();
    auto fd = co_await fd_.perform_read(
        [&]() -> ssize_t {
          for (;;) {
            len = sizeof ss;
            int got = ::accept4(listen_fd, peer ? reinterpret_cast<sockaddr*>(&ss) : nullptr,
                                peer ? &len : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (got >= 0 || !connection_went_away(errno)) {
              err = got < 0 ? errno : 0;
              return got;
            }
            ++stats_.dropped_connections;
          }
        },
        dl);
    if (fd) {
      backoff_ = {};
      if (peer) *peer = address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
      co_return static_cast<int>(*fd);
    }
    if (!out_of_resources(err)) co_return unexpected(fd.error());
    // Established connections go on; accepting resumes once descriptors or memory come
    // back. Waiting for readability would not notice that, so retry on a timer that
    // backs off (bounded) while the shortage lasts.
    ++stats_.resource_errors;
    stats_.last_resource_error = fd.error();
    backoff_ = backoff_ == backoff_.zero() ? first_backoff : std::min(backoff_ * 2, max_backoff);
    auto retry = deadline::after(backoff_);
    if (!co_await sleep_until(deadline::earlier(retry, dl))) co_return errc::operation_canceled;
    if (dl.expired()) co_return errc::timed_out;
  }
}

result<address> socket_listener::local_address() const {
  if (!fd_) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return unexpected(from_errno(errno));
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
