#include "strata/transport/unix.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "io_parts.hpp"
#include "socket_io.hpp"
#include "strata/runtime/event_loop.hpp"

namespace strata::uds {
namespace {

// accepts_connections reports whether a listener answers at the socket file `where`, so
// that bind replaces only a stale file (its server gone) and never steals a live one.
// The probe connection, if accepted, is closed at once. A socket file of another type
// (EPROTOTYPE) counts as in use: nothing tells whether its owner is still alive.
bool accepts_connections(const address& where) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int rc = ::connect(fd, where.data(), static_cast<socklen_t>(where.size()));
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err != ECONNREFUSED && err != ENOENT;
}

}  // namespace

result<std::pair<stream, stream>> stream::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
    return unexpected(from_errno(errno));
  }
  return std::pair<stream, stream>{stream{fds[0]}, stream{fds[1]}};
}

result<stream> stream::adopt(int fd) {
  if (auto r = detail::set_nonblocking_cloexec(fd); !r) return unexpected(r.error());
  return stream{fd};
}

task<result<std::size_t>> stream::read_some(mutable_buffer buf, deadline dl) {
  return detail::stream_read_some(state_, buf, dl);
}

task<result<void>> stream::write(const_buffers bufs, deadline dl) {
  return detail::stream_write(state_, bufs, dl);
}

result<std::size_t> stream::try_write_some(const_buffer buf) { return detail::stream_try_write(state_, buf); }

task<result<void>> stream::shutdown_write(deadline dl) { return detail::stream_shutdown_write(state_, dl); }

task<result<void>> stream::close(deadline dl) { return detail::stream_close(state_, dl); }

task<result<void>> stream::send_fds(const_buffer data, std::span<const int> fds, deadline dl) {
  if (data.empty() || fds.size() > max_fds_per_message) co_return errc::invalid_argument;
  if (state_.write_error) co_return state_.write_error;
  if (!state_.fd) co_return errc::closed;
  detail::control_buffer<detail::fd_control_bytes(max_fds_per_message)> control{};
  const int fd = state_.fd.get();
  auto n = co_await state_.fd.perform_write(
      [&] {
        iovec iov{const_cast<std::byte*>(data.data()), data.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        detail::attach_fds(msg, control, fds);
        return ::sendmsg(fd, &msg, MSG_NOSIGNAL);
      },
      dl);
  if (!n) {
    if (n.error() != errc::timed_out && n.error() != errc::operation_canceled) {
      detail::stream_fail_write(state_, n.error());
      co_return state_.write_error;
    }
    co_return n.error();
  }
  // The descriptors travelled with the first byte; the rest is an ordinary write.
  if (*n < data.size()) co_return co_await write(data.subspan(*n), dl);
  co_return result<void>{};
}

task<result<std::size_t>> stream::recv_fds(mutable_buffer buf, std::vector<int>& fds, deadline dl) {
  if (state_.read_error) co_return unexpected(state_.read_error);
  if (!state_.fd) co_return errc::closed;
  if (buf.empty()) co_return std::size_t{0};
  detail::control_buffer<detail::fd_control_bytes(max_fds_per_message)> control{};
  const int fd = state_.fd.get();
  msghdr msg{};
  iovec iov{buf.data(), buf.size()};
  auto n = co_await state_.fd.perform_read(
      [&] {
        msg = msghdr{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        return ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
      },
      dl);
  if (n) {
    detail::take_fds(msg, fds);
    if (*n > 0) co_return n;
    detail::stream_fail_read(state_, errc::end_of_stream);
    co_return unexpected(state_.read_error);
  }
  if (n.error() == errc::timed_out || n.error() == errc::operation_canceled) co_return n;
  detail::stream_fail_read(state_, n.error());
  co_return unexpected(state_.read_error);
}

result<credentials> stream::peer_credentials() const {
  if (!state_.fd) return errc::closed;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(state_.fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return unexpected(from_errno(errno));
  return credentials{cred.pid, cred.uid, cred.gid};
}

result<address> stream::local_address() const { return detail::local_address_of(state_.fd); }

result<address> stream::peer_address() const { return detail::stream_peer_address(state_); }

int stream::release() noexcept { return detail::stream_release(state_); }

void stream::reset() noexcept { detail::stream_reset(state_); }

task<result<stream>> connect(address where, deadline dl) {
  if (!where.is_unix()) co_return errc::invalid_argument;
  auto fd = co_await detail::connect_fd(where, dl);
  if (!fd) co_return unexpected(fd.error());
  co_return stream{*fd};
}

task<result<stream>> connect(std::string_view path, deadline dl) {
  auto where = address::parse_unix(path);
  if (!where) co_return unexpected(where.error());
  co_return co_await connect(*where, dl);
}

listener::listener(listener&& other) noexcept
    : state_(std::move(other.state_)), file_(std::move(other.file_)) {}

listener& listener::operator=(listener&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
    file_ = std::move(other.file_);
  }
  return *this;
}

listener::~listener() { close(); }

void listener::close() noexcept {
  file_.reset();
  state_.fd.close();
}

result<listener> listener::bind(const address& where, listen_options options) {
  if (!where.is_unix()) return errc::invalid_argument;
  std::string path;
  if (where.kind() == address::family::unix_path) {
    path = where.to_string();
    struct stat st {};
    if (options.unlink_stale && ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      if (accepts_connections(where)) return unexpected(from_errno(EADDRINUSE));
      ::unlink(path.c_str());
    }
  }
  auto fd = detail::open_listener(where, {.backlog = options.backlog, .reuse_address = false});
  if (!fd) return unexpected(fd.error());
  return listener{*fd, detail::unix_socket_file(std::move(path))};
}

result<listener> listener::bind(std::string_view path, listen_options options) {
  auto where = address::parse_unix(path);
  if (!where) return unexpected(where.error());
  return bind(*where, options);
}

task<result<stream>> listener::accept(deadline dl) {
  auto fd = co_await detail::accept_fd(state_, dl);
  if (!fd) co_return unexpected(fd.error());
  co_return stream{*fd};
}

result<address> listener::local_address() const { return detail::local_address_of(state_.fd); }

}  // namespace strata::uds
