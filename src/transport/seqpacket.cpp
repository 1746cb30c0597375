#include "strata/transport/seqpacket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "packet_io.hpp"
#include "socket_io.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/timer.hpp"

namespace strata::seqpacket {
namespace {

task<result<void>> fail_with(errc e) { co_return e; }

}  // namespace

socket::socket(int fd) noexcept : state_(fd, detail::packet_kind::sequenced) { state_.is_unix = true; }

result<std::pair<socket, socket>> socket::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
    return unexpected(from_errno(errno));
  }
  return std::pair<socket, socket>{socket{fds[0]}, socket{fds[1]}};
}

result<socket> socket::adopt(int fd) {
  if (auto r = detail::set_nonblocking_cloexec(fd); !r) return unexpected(r.error());
  return socket{fd};
}

task<result<void>> socket::send(const_buffers bufs, deadline dl) {
  if (bufs.total_size() == 0) return fail_with(errc::invalid_argument);
  return detail::send_packet(state_, bufs, nullptr, {}, dl);
}

result<bool> socket::try_send(const_buffer buf) {
  if (buf.empty()) return errc::invalid_argument;
  return detail::try_send_packet(state_, buf, nullptr);
}

task<result<std::size_t>> socket::recv(mutable_buffer buf, deadline dl) {
  return detail::recv_packet(state_, buf, nullptr, nullptr, dl);
}

task<result<void>> socket::send_fds(const_buffers bufs, std::span<const int> fds, deadline dl) {
  if (bufs.total_size() == 0) return fail_with(errc::invalid_argument);
  return detail::send_packet(state_, bufs, nullptr, fds, dl);
}

task<result<std::size_t>> socket::recv_fds(mutable_buffer buf, std::vector<int>& fds, deadline dl) {
  envelope env;
  auto n = co_await detail::recv_packet(state_, buf, nullptr, &env, dl);
  fds.insert(fds.end(), env.fds.begin(), env.fds.end());
  co_return n;
}

task<result<std::size_t>> socket::recv_with(mutable_buffer buf, envelope& env, deadline dl) {
  return detail::recv_packet(state_, buf, nullptr, &env, dl);
}

task<result<void>> socket::shutdown_write(deadline) { co_return detail::shutdown_packet_write(state_); }

task<result<void>> socket::close(deadline dl) { return detail::close_packet(state_, dl); }

result<uds::credentials> socket::peer_credentials() const {
  return detail::unix_peer_credentials(state_.fd.get());
}

result<void> socket::set_pass_credentials(bool on) {
  return detail::set_pass_credentials(state_.fd.get(), on);
}

std::size_t socket::max_message() const noexcept {
  auto n = detail::unix_max_message(state_.fd.get());
  return n ? n : default_max_message;
}

properties socket::runtime_capabilities() const noexcept {
  auto caps = transport_properties(row);
  caps.max_message = max_message();
  return caps;
}

result<address> socket::local_address() const { return detail::local_address_of(state_.fd); }

result<address> socket::peer_address() const { return detail::packet_peer_address(state_); }

int socket::release() noexcept { return detail::release_packet(state_); }

task<result<socket>> connect(address where, deadline dl) {
  if (!where.is_unix()) co_return errc::invalid_argument;
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) co_return unexpected(from_errno(errno));
  socket s{fd};
  // A full listener backlog fails a unix connect with EAGAIN instead of leaving it in
  // progress (unlike TCP), and nothing announces room: retry on a growing timer.
  auto r = co_await s.state_.fd.perform_polled(
      [&] { return static_cast<ssize_t>(::connect(fd, where.data(), static_cast<socklen_t>(where.size()))); },
      dl);
  if (!r) co_return unexpected(r.error());
  co_return s;
}

task<result<socket>> connect(std::string_view path, deadline dl) {
  auto where = address::parse_unix(path);
  if (!where) co_return unexpected(where.error());
  co_return co_await connect(*where, dl);
}

result<listener> listener::bind(const address& where, listen_options options) {
  auto bound = detail::bind_unix(where, SOCK_SEQPACKET, options.unlink_stale);
  if (!bound) return unexpected(bound.error());
  if (::listen(bound->fd, options.backlog) < 0) {
    int err = errno;
    ::close(bound->fd);
    return unexpected(from_errno(err));
  }
  return listener{bound->fd, std::move(bound->file)};
}

result<listener> listener::bind(std::string_view path, listen_options options) {
  auto where = address::parse_unix(path);
  if (!where) return unexpected(where.error());
  return bind(*where, options);
}

task<result<socket>> listener::accept(deadline dl) {
  auto fd = co_await detail::accept_fd(state_, dl);
  if (!fd) co_return unexpected(fd.error());
  co_return socket{*fd};
}

result<address> listener::local_address() const { return detail::local_address_of(state_.fd); }

void listener::close() noexcept {
  if (state_.fd.is_open()) file_.reset();
  state_.fd.close();
}

}  // namespace strata::seqpacket
