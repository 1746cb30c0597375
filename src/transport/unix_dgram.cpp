#include "strata/transport/unix_dgram.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "datagram_demux.hpp"
#include "packet_io.hpp"
#include "socket_io.hpp"

namespace strata::unix_dgram {
namespace {

task<result<void>> fail_with(errc e) { co_return e; }

bool unnamed(const address& a) noexcept { return a.size() <= offsetof(sockaddr_un, sun_path); }

std::size_t max_of(int fd) noexcept {
  auto n = detail::unix_max_message(fd);
  return n ? n : default_max_message;
}

properties capabilities_for(std::size_t max_message) noexcept {
  auto caps = transport_properties(row);
  caps.max_message = max_message;
  return caps;
}

result<void> apply(socket& s, const bind_options& options) {
  s.set_keep_too_large(options.keep_too_large);
  if (options.pass_credentials) return s.set_pass_credentials(true);
  return {};
}

}  // namespace

// -- socket ----------------------------------------------------------------------------------

socket::socket(int fd, detail::unix_socket_file file) noexcept
    : state_(fd, detail::packet_kind::datagram), file_(std::move(file)) {
  state_.is_unix = true;
  state_.sends_poll_on_full = true;
}

result<socket> socket::bind(const address& where, bind_options options) {
  auto bound = detail::bind_unix(where, SOCK_DGRAM, options.unlink_stale);
  if (!bound) return unexpected(bound.error());
  socket s{bound->fd, std::move(bound->file)};
  if (auto r = apply(s, options); !r) return unexpected(r.error());
  return s;
}

result<socket> socket::bind(std::string_view path, bind_options options) {
  auto where = address::parse_unix(path);
  if (!where) return unexpected(where.error());
  return bind(*where, options);
}

result<socket> socket::open(bool autobind) {
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return unexpected(from_errno(errno));
  socket s{fd, {}};
  if (autobind) {
    // An address of the family alone asks the kernel for a unique abstract name.
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof(sa_family_t)) < 0)
      return unexpected(from_errno(errno));
  }
  return s;
}

task<result<void>> socket::send_to(const_buffers bufs, const address& to, deadline dl) {
  return detail::send_packet(state_, bufs, &to, {}, dl);
}

task<result<void>> socket::send_fds_to(const_buffers bufs, std::span<const int> fds, const address& to,
                                       deadline dl) {
  return detail::send_packet(state_, bufs, &to, fds, dl);
}

task<result<received>> socket::recv_from(mutable_buffer buf, deadline dl) {
  received r;
  auto n = co_await detail::recv_packet(state_, buf, &r.from, nullptr, dl);
  if (!n) co_return unexpected(n.error());
  r.size = *n;
  co_return r;
}

task<result<std::size_t>> socket::recv_with(mutable_buffer buf, envelope& env, deadline dl) {
  return detail::recv_packet(state_, buf, nullptr, &env, dl);
}

task<result<void>> socket::close(deadline dl) {
  file_.reset();
  return detail::close_packet(state_, dl);
}

result<connected> socket::connect(const address& peer) && {
  if (!state_.fd.is_open()) return errc::closed;
  if (!peer.is_unix()) return errc::invalid_argument;
  if (::connect(state_.fd.get(), peer.data(), static_cast<socklen_t>(peer.size())) < 0)
    return unexpected(from_errno(errno));
  // Messages from others may have queued before the kernel began to refuse them.
  if (auto kernel_peer = peer_address()) state_.only_from = *kernel_peer;
  return connected{std::move(*this), true};
}

result<void> socket::set_pass_credentials(bool on) {
  return detail::set_pass_credentials(state_.fd.get(), on);
}

std::size_t socket::max_message() const noexcept { return max_of(state_.fd.get()); }

properties socket::runtime_capabilities() const noexcept { return capabilities_for(max_message()); }

result<address> socket::local_address() const { return detail::local_address_of(state_.fd); }

result<address> socket::peer_address() const { return detail::packet_peer_address(state_); }

int socket::release() noexcept { return detail::release_packet(state_); }

// -- connected -------------------------------------------------------------------------------

connected::connected(socket s, bool kernel_connected) noexcept
    : state_(std::move(s.state_)), file_(std::move(s.file_)), kernel_connected_(kernel_connected) {}

connected::connected(int fd) noexcept : state_(fd, detail::packet_kind::datagram) { state_.is_unix = true; }

result<std::pair<connected, connected>> connected::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
    return unexpected(from_errno(errno));
  }
  return std::pair<connected, connected>{connected{fds[0]}, connected{fds[1]}};
}

result<connected> connected::adopt(int fd) {
  if (auto r = detail::set_nonblocking_cloexec(fd); !r) return unexpected(r.error());
  return connected{fd};
}

task<result<void>> connected::send(const_buffers bufs, deadline dl) {
  if (!kernel_connected_) return fail_with(!state_.fd.is_open() ? errc::closed : errc::not_supported);
  return detail::send_packet(state_, bufs, nullptr, {}, dl);
}

result<bool> connected::try_send(const_buffer buf) {
  if (!kernel_connected_) return !state_.fd.is_open() ? errc::closed : errc::not_supported;
  return detail::try_send_packet(state_, buf, nullptr);
}

task<result<void>> connected::send_fds(const_buffers bufs, std::span<const int> fds, deadline dl) {
  if (!kernel_connected_) return fail_with(!state_.fd.is_open() ? errc::closed : errc::not_supported);
  return detail::send_packet(state_, bufs, nullptr, fds, dl);
}

task<result<std::size_t>> connected::recv(mutable_buffer buf, deadline dl) {
  return detail::recv_packet(state_, buf, nullptr, nullptr, dl);
}

task<result<std::size_t>> connected::recv_fds(mutable_buffer buf, std::vector<int>& fds, deadline dl) {
  envelope env;
  auto n = co_await detail::recv_packet(state_, buf, nullptr, &env, dl);
  fds.insert(fds.end(), env.fds.begin(), env.fds.end());
  co_return n;
}

task<result<std::size_t>> connected::recv_with(mutable_buffer buf, envelope& env, deadline dl) {
  return detail::recv_packet(state_, buf, nullptr, &env, dl);
}

task<result<void>> connected::close(deadline dl) {
  file_.reset();
  return detail::close_packet(state_, dl);
}

result<uds::credentials> connected::peer_credentials() const {
  return detail::unix_peer_credentials(state_.fd.get());
}

result<void> connected::set_pass_credentials(bool on) {
  return detail::set_pass_credentials(state_.fd.get(), on);
}

std::size_t connected::max_message() const noexcept { return max_of(state_.fd.get()); }

properties connected::runtime_capabilities() const noexcept { return capabilities_for(max_message()); }

result<address> connected::local_address() const { return detail::local_address_of(state_.fd); }

result<address> connected::peer_address() const { return detail::packet_peer_address(state_); }

int connected::release() noexcept { return detail::release_packet(state_); }

result<connected> connect(const address& peer, connect_options options) {
  if (!peer.is_unix()) return errc::invalid_argument;
  bind_options how{.unlink_stale = true,
                   .pass_credentials = options.pass_credentials,
                   .keep_too_large = options.keep_too_large};
  auto s = options.bind ? socket::bind(*options.bind, how) : socket::open(true);
  if (!s) return unexpected(s.error());
  if (!options.bind) {
    if (auto r = apply(*s, how); !r) return unexpected(r.error());
  }
  return std::move(*s).connect(peer);
}

result<connected> connect(std::string_view path, connect_options options) {
  auto where = address::parse_unix(path);
  if (!where) return unexpected(where.error());
  return connect(*where, std::move(options));
}

// -- listener --------------------------------------------------------------------------------

result<listener> listener::bind(const address& where, bind_options options) {
  auto s = socket::bind(where, options);
  if (!s) return unexpected(s.error());
  auto bound = s->local_address();
  if (!bound) return unexpected(bound.error());
  return listener{std::move(*s), *bound};
}

result<listener> listener::bind(std::string_view path, bind_options options) {
  auto where = address::parse_unix(path);
  if (!where) return unexpected(where.error());
  return bind(*where, options);
}

task<result<connected>> listener::accept(deadline dl) {
  if (accepted_) co_return errc::not_supported;
  for (;;) {
    if (!socket_.is_open()) co_return errc::closed;
    // (Nothing waits here: the one accept leaves no later one to keep others' messages for.)
    detail::datagram_backlog none;
    auto sender = co_await detail::next_sender(socket_.state_, demux_, none, dl);
    if (!sender) co_return unexpected(sender.error());
    int fd = socket_.native_handle();
    if (unnamed(*sender)) {
      accepted_ = true;
      ++demux_.stats.accepted;
      socket_.state_.only_from = *sender;
      co_return connected{std::move(socket_), false};
    }
    if (::connect(fd, sender->data(), static_cast<socklen_t>(sender->size())) == 0) {
      accepted_ = true;
      ++demux_.stats.accepted;
      socket_.state_.only_from = *sender;
      co_return connected{std::move(socket_), true};
    }
    int err = errno;
    if (err != ECONNREFUSED && err != ENOENT) co_return unexpected(from_errno(err));
    // The sender is gone: drop its message and wait for the next one.
    (void)::recv(fd, nullptr, 0, MSG_TRUNC | MSG_DONTWAIT);
  }
}

result<address> listener::local_address() const {
  if (!accepted_ && !socket_.is_open()) return errc::closed;
  return where_;
}

void listener::close() noexcept {
  if (!socket_.is_open()) return;
  socket_.file_.reset();
  detail::close_packet_now(socket_.state_);
}

datagram_listener_stats listener::stats() const noexcept { return detail::demux_stats(demux_); }

}  // namespace strata::unix_dgram
