#include "strata/transport/tcp.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "socket_io.hpp"

namespace strata::tcp {
namespace {

void apply_no_delay(int fd, bool on) {
  int value = on ? 1 : 0;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, sizeof value);
}

}  // namespace

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

result<address> stream::local_address() const { return detail::local_address_of(state_.fd); }

result<address> stream::peer_address() const { return detail::stream_peer_address(state_); }

int stream::release() noexcept { return detail::stream_release(state_); }

void stream::reset() noexcept { detail::stream_reset(state_); }

result<void> stream::set_no_delay(bool on) {
  if (!state_.fd) return errc::closed;
  int value = on ? 1 : 0;
  if (::setsockopt(state_.fd.get(), IPPROTO_TCP, TCP_NODELAY, &value, sizeof value) < 0)
    return from_errno(errno);
  return {};
}

task<result<stream>> connect(address where, deadline dl, connect_options options) {
  if (!where.is_ip()) co_return errc::invalid_argument;
  auto fd = co_await detail::connect_fd(where, dl);
  if (!fd) co_return unexpected(fd.error());
  apply_no_delay(*fd, options.no_delay);
  co_return stream{*fd};
}

task<result<stream>> connect(std::string_view host_port, deadline dl, connect_options options) {
  auto where = address::parse_ip(host_port);
  if (!where) co_return unexpected(where.error());
  co_return co_await connect(*where, dl, options);
}

result<listener> listener::bind(const address& where, listen_options options) {
  if (!where.is_ip()) return errc::invalid_argument;
  auto fd = detail::open_listener(where, {.backlog = options.backlog, .reuse_port = options.reuse_port});
  if (!fd) return unexpected(fd.error());
  return listener{*fd, options.no_delay};
}

result<listener> listener::bind(std::string_view host_port, listen_options options) {
  auto where = address::parse_ip(host_port);
  if (!where) return unexpected(where.error());
  return bind(*where, options);
}

result<listener> listener::adopt(int fd) {
  if (auto r = detail::set_nonblocking_cloexec(fd); !r) return unexpected(r.error());
  return listener{fd, true};
}

task<result<stream>> listener::accept(deadline dl) {
  address peer;
  auto fd = co_await detail::accept_fd(state_, dl, &peer);
  if (!fd) co_return unexpected(fd.error());
  apply_no_delay(*fd, no_delay_);
  stream s{*fd};
  detail::stream_remember_peer(s.state_, peer);
  co_return s;
}

result<address> listener::local_address() const { return detail::local_address_of(state_.fd); }

}  // namespace strata::tcp
