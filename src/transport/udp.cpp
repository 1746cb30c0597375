#include "strata/transport/udp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "datagram_demux.hpp"
#include "packet_io.hpp"
#include "socket_io.hpp"
#include "strata/runtime/event_loop.hpp"

namespace strata::udp {
namespace {

result<void> set_int(int fd, int level, int name, int value) {
  if (fd < 0) return errc::closed;
  if (::setsockopt(fd, level, name, &value, sizeof value) < 0) return from_errno(errno);
  return {};
}

std::size_t max_for(int family) noexcept { return family == AF_INET6 ? max_ipv6_message : max_ipv4_message; }

/// ipv4_of reads the IPv4 address out of `a`; invalid_argument for another family.
result<in_addr> ipv4_of(const address& a) {
  if (a.kind() != address::family::ipv4) return errc::invalid_argument;
  return reinterpret_cast<const sockaddr_in*>(a.data())->sin_addr;
}

result<void> membership(int fd, int option, const address& group, const std::optional<address>& interface) {
  if (fd < 0) return errc::closed;
  if (group.kind() == address::family::ipv6) return errc::not_supported;
  auto g = ipv4_of(group);
  if (!g) return unexpected(g.error());
  if (!IN_MULTICAST(ntohl(g->s_addr))) return errc::invalid_argument;
  ip_mreqn req{};
  req.imr_multiaddr = *g;
  req.imr_address.s_addr = htonl(INADDR_ANY);
  if (interface) {
    auto i = ipv4_of(*interface);
    if (!i) return unexpected(i.error());
    req.imr_address = *i;
  }
  if (option == IP_ADD_MEMBERSHIP) {
    // Linux delivers every group joined by any socket on the host to a socket bound to
    // the port unless IP_MULTICAST_ALL is off: a member hears only its own groups.
    if (auto r = set_int(fd, IPPROTO_IP, IP_MULTICAST_ALL, 0); !r) return r;
  }
  if (::setsockopt(fd, IPPROTO_IP, option, &req, sizeof req) < 0) return from_errno(errno);
  return {};
}

result<void> multicast_interface(int fd, const address& interface) {
  if (fd < 0) return errc::closed;
  auto i = ipv4_of(interface);
  if (!i) return unexpected(i.error());
  ip_mreqn req{};
  req.imr_address = *i;
  if (::setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &req, sizeof req) < 0) return from_errno(errno);
  return {};
}

result<void> multicast_ttl(int fd, int ttl) {
  if (ttl < 0 || ttl > 255) return errc::invalid_argument;
  return set_int(fd, IPPROTO_IP, IP_MULTICAST_TTL, ttl);
}

result<void> apply_multicast(int fd, const multicast_options& o) {
  if (o.interface) {
    if (auto r = multicast_interface(fd, *o.interface); !r) return r;
  }
  if (o.loop) {
    if (auto r = set_int(fd, IPPROTO_IP, IP_MULTICAST_LOOP, *o.loop ? 1 : 0); !r) return r;
  }
  if (o.ttl) {
    if (auto r = multicast_ttl(fd, *o.ttl); !r) return r;
  }
  if (o.group) return membership(fd, IP_ADD_MEMBERSHIP, *o.group, o.interface);
  return {};
}

properties capabilities_for(std::size_t max_message) noexcept {
  auto caps = transport_properties(row);
  caps.max_message = max_message;
  return caps;
}

address any_address(int family) { return *address::parse_ip(family == AF_INET6 ? "[::]:0" : "0.0.0.0:0"); }

}  // namespace

// -- socket ----------------------------------------------------------------------------------

socket::socket(int fd, int family) noexcept : state_(fd, detail::packet_kind::datagram) {
  state_.max_send = max_for(family);
  state_.max_recv = state_.max_send;
}

result<socket> socket::bind(const address& where, bind_options options) {
  if (!where.is_ip()) return errc::invalid_argument;
  int fd = ::socket(where.socket_family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return unexpected(from_errno(errno));
  socket s{fd, where.socket_family()};
  s.set_keep_too_large(options.keep_too_large);
  auto set = [&](bool wanted, int level, int name, int value) -> result<void> {
    return wanted ? set_int(fd, level, name, value) : result<void>{};
  };
  if (auto r = set(options.reuse_address, SOL_SOCKET, SO_REUSEADDR, 1); !r) return unexpected(r.error());
  if (auto r = set(options.reuse_port, SOL_SOCKET, SO_REUSEPORT, 1); !r) return unexpected(r.error());
  if (auto r = set(options.receive_buffer > 0, SOL_SOCKET, SO_RCVBUF, options.receive_buffer); !r)
    return unexpected(r.error());
  if (auto r = set(options.send_buffer > 0, SOL_SOCKET, SO_SNDBUF, options.send_buffer); !r)
    return unexpected(r.error());
  if (::bind(fd, where.data(), static_cast<socklen_t>(where.size())) < 0)
    return unexpected(from_errno(errno));
  return s;
}

result<socket> socket::bind(std::string_view host_port, bind_options options) {
  auto where = address::parse_ip(host_port);
  if (!where) return unexpected(where.error());
  return bind(*where, options);
}

result<socket> socket::adopt(int fd) {
  if (auto r = detail::set_nonblocking_cloexec(fd); !r) return unexpected(r.error());
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int type = 0;
  socklen_t type_len = sizeof type;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0 ||
      ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) < 0) {
    return unexpected(from_errno(errno));
  }
  if ((ss.ss_family != AF_INET && ss.ss_family != AF_INET6) || type != SOCK_DGRAM)
    return errc::invalid_argument;
  return socket{fd, ss.ss_family};
}

task<result<void>> socket::send_to(const_buffers bufs, const address& to, deadline dl) {
  return detail::send_packet(state_, bufs, &to, {}, dl);
}

task<result<received>> socket::recv_from(mutable_buffer buf, deadline dl) {
  received r;
  auto n = co_await detail::recv_packet(state_, buf, &r.from, nullptr, dl);
  if (!n) co_return unexpected(n.error());
  r.size = *n;
  co_return r;
}

task<result<std::size_t>> socket::send_batch(std::span<const outgoing> msgs, deadline dl) {
  return detail::send_batch_packets(state_, msgs, dl);
}

task<result<std::size_t>> socket::recv_batch(std::span<incoming> slots, deadline dl) {
  return detail::recv_batch_packets(state_, slots, dl);
}

task<result<void>> socket::close(deadline dl) { return detail::close_packet(state_, dl); }

result<connected> socket::connect(const address& peer) && {
  if (!state_.fd.is_open()) return errc::closed;
  if (!peer.is_ip()) return errc::invalid_argument;
  if (::connect(state_.fd.get(), peer.data(), static_cast<socklen_t>(peer.size())) < 0)
    return unexpected(from_errno(errno));
  // Datagrams from others may have queued before the kernel began to filter.
  if (auto kernel_peer = peer_address()) state_.only_from = *kernel_peer;
  return connected{std::move(*this), true};
}

result<void> socket::join_group(const address& group, const std::optional<address>& interface) {
  return membership(state_.fd.get(), IP_ADD_MEMBERSHIP, group, interface);
}

result<void> socket::leave_group(const address& group, const std::optional<address>& interface) {
  return membership(state_.fd.get(), IP_DROP_MEMBERSHIP, group, interface);
}

result<void> socket::set_multicast_loop(bool on) {
  return set_int(state_.fd.get(), IPPROTO_IP, IP_MULTICAST_LOOP, on ? 1 : 0);
}

result<void> socket::set_multicast_interface(const address& interface) {
  return multicast_interface(state_.fd.get(), interface);
}

result<void> socket::set_multicast_ttl(int ttl) { return multicast_ttl(state_.fd.get(), ttl); }

result<void> socket::apply(const multicast_options& options) {
  return apply_multicast(state_.fd.get(), options);
}

properties socket::runtime_capabilities() const noexcept { return capabilities_for(state_.max_send); }

result<address> socket::local_address() const { return detail::local_address_of(state_.fd); }

result<address> socket::peer_address() const { return detail::packet_peer_address(state_); }

int socket::release() noexcept { return detail::release_packet(state_); }

// -- connected -------------------------------------------------------------------------------

connected::connected(socket s, bool kernel_connected) noexcept
    : state_(std::move(s.state_)), kernel_connected_(kernel_connected) {}

task<result<void>> connected::send(const_buffers bufs, deadline dl) {
  return detail::send_packet(state_, bufs,
                             kernel_connected_ || !state_.only_from ? nullptr : &*state_.only_from, {}, dl);
}

result<bool> connected::try_send(const_buffer buf) {
  return detail::try_send_packet(state_, buf,
                                 kernel_connected_ || !state_.only_from ? nullptr : &*state_.only_from);
}

task<result<std::size_t>> connected::recv(mutable_buffer buf, deadline dl) {
  if (!backlog_.empty()) [[unlikely]]
    return detail::recv_backlog(state_, backlog_, buf);
  return detail::recv_packet(state_, buf, nullptr, nullptr, dl);
}

task<result<std::size_t>> connected::send_batch(std::span<const outgoing> msgs, deadline dl) {
  // Every message goes to the peer, whatever its `to` says.
  std::vector<outgoing> to_peer(msgs.begin(), msgs.end());
  const address* peer = kernel_connected_ || !state_.only_from ? nullptr : &*state_.only_from;
  for (auto& m : to_peer) m.to = peer;
  co_return co_await detail::send_batch_packets(state_, to_peer, dl);
}

task<result<std::size_t>> connected::recv_batch(std::span<incoming> slots, deadline dl) {
  if (!backlog_.empty()) [[unlikely]] {
    auto peer = peer_address();
    return detail::recv_backlog_batch(state_, backlog_, slots, peer ? *peer : address{});
  }
  return detail::recv_batch_packets(state_, slots, dl);
}

task<result<void>> connected::close(deadline dl) {
  backlog_ = {};
  return detail::close_packet(state_, dl);
}

result<void> connected::set_multicast_loop(bool on) {
  return set_int(state_.fd.get(), IPPROTO_IP, IP_MULTICAST_LOOP, on ? 1 : 0);
}

result<void> connected::set_multicast_interface(const address& interface) {
  return multicast_interface(state_.fd.get(), interface);
}

result<void> connected::set_multicast_ttl(int ttl) { return multicast_ttl(state_.fd.get(), ttl); }

result<void> connected::set_ttl(int ttl) {
  if (ttl < 1 || ttl > 255) return errc::invalid_argument;
  auto here = local_address();
  if (!here) return unexpected(here.error());
  if (here->kind() == address::family::ipv6)
    return set_int(state_.fd.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl);
  return set_int(state_.fd.get(), IPPROTO_IP, IP_TTL, ttl);
}

properties connected::runtime_capabilities() const noexcept { return capabilities_for(state_.max_send); }

result<address> connected::local_address() const { return detail::local_address_of(state_.fd); }

result<address> connected::peer_address() const { return detail::packet_peer_address(state_); }

int connected::release() noexcept {
  backlog_ = {};
  return detail::release_packet(state_);
}

result<connected> connect(const address& peer, connect_options options) {
  if (!peer.is_ip()) return errc::invalid_argument;
  auto local = options.bind ? *options.bind : any_address(peer.socket_family());
  auto s = socket::bind(local, {.keep_too_large = options.keep_too_large});
  if (!s) return unexpected(s.error());
  if (auto r = s->apply(options.multicast); !r) return unexpected(r.error());
  auto c = std::move(*s).connect(peer);
  if (c && options.ttl) {
    if (auto r = c->set_ttl(*options.ttl); !r) return unexpected(r.error());
  }
  return c;
}

result<connected> connect(std::string_view host_port, connect_options options) {
  auto where = address::parse_ip(host_port);
  if (!where) return unexpected(where.error());
  return connect(*where, std::move(options));
}

// -- listener --------------------------------------------------------------------------------

namespace {

result<socket> open_listening(const address& where, const listen_options& options) {
  auto s = socket::bind(where, {.reuse_address = true, .keep_too_large = options.keep_too_large});
  if (!s) return s;
  if (auto r = s->apply(options.multicast); !r) return unexpected(r.error());
  return s;
}

}  // namespace

listener::listener(udp::socket s, address where, listen_options options) noexcept
    : socket_(std::move(s)), where_(where), options_(std::move(options)) {
  detail::set_pending_caps(demux_, socket_.native_handle(), options_.pending_bytes,
                           options_.pending_datagrams, options_.pending_per_sender);
}

result<listener> listener::bind(const address& where, listen_options options) {
  auto s = open_listening(where, options);
  if (!s) return unexpected(s.error());
  // The successors bind the real port, not 0.
  auto bound = s->local_address();
  if (!bound) return unexpected(bound.error());
  return listener{std::move(*s), *bound, std::move(options)};
}

result<listener> listener::bind(std::string_view host_port, listen_options options) {
  auto where = address::parse_ip(host_port);
  if (!where) return unexpected(where.error());
  return bind(*where, std::move(options));
}

task<result<connected>> listener::accept(deadline dl) {
  if (!socket_.is_open()) {
    if (rebind_error_) co_return unexpected(rebind_error_);
    if (accepted_once_) co_return errc::not_supported;
    co_return errc::closed;
  }
  // A sender whose datagrams an earlier accept set aside comes first, without waiting.
  detail::datagram_backlog first;
  auto sender = co_await detail::next_sender(socket_.state_, demux_, first, dl);
  if (!sender) co_return unexpected(sender.error());
  if (options_.multicast.group) {
    // A kernel-connected socket stops receiving group datagrams: keep the peer ourselves.
    ++demux_.stats.accepted;
    accepted_once_ = true;
    socket_.state_.only_from = *sender;
    co_return connected{std::move(socket_), false};
  }
  // Bind the successor before the current socket narrows to its peer, so the port stays
  // open to other senders throughout. From its bind on, new datagrams reach the
  // successor (the kernel prefers the newer of two equal sockets) and, after the
  // connect, the peer's reach the current one. So the current socket's queue is taken
  // apart before the connect (everything that came before the successor), the
  // successor's after it (what came in between, the peer's included) and the current
  // one's again (the peer's since the connect): the peer's datagrams stay in order and
  // the others' wait for their own accepts.
  auto next = open_listening(where_, options_);
  int fd = socket_.native_handle();
  detail::drain_queue(socket_.state_, demux_, *sender, first);
  if (::connect(fd, sender->data(), static_cast<socklen_t>(sender->size())) < 0) {
    co_return unexpected(from_errno(errno));
  }
  socket_.state_.only_from = *sender;
  if (next) detail::drain_queue(next->state_, demux_, *sender, first);
  detail::drain_queue(socket_.state_, demux_, *sender, first);
  ++demux_.stats.accepted;
  connected accepted{std::move(socket_), true};
  accepted.backlog_ = std::move(first);
  if (next) {
    socket_ = std::move(*next);
  } else {
    rebind_error_ = next.error();
  }
  co_return accepted;
}

result<address> listener::local_address() const {
  if (!socket_.is_open()) return errc::closed;
  return socket_.local_address();
}

void listener::close() noexcept {
  detail::close_packet_now(socket_.state_);
  detail::clear_pending(demux_);
}

datagram_listener_stats listener::stats() const noexcept { return detail::demux_stats(demux_); }

}  // namespace strata::udp
