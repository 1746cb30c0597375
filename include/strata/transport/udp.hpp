// udp — connection-less datagrams between hosts, one message per datagram (RFC 768),
// with batching (sendmmsg/recvmmsg) and IPv4 multicast (RFC 1112).
//
// row: requires nothing (bottom layer)
//      provides connection-less message unreliable unordered net multicast any-process
//               duplex max_message=65507 (IPv4; 65527 over IPv6)
// spec: udp:HOST:PORT (a message socket connected to HOST:PORT),
//       udp-listen:HOST:PORT (socat-like: accept waits for the first datagram and returns
//       a message socket connected to its sender, that datagram pending; other senders'
//       datagrams wait for the accepts that follow),
//       udp-bind:HOST:PORT (a bound socket below: any sender, any peer; any_datagram)
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/stream.hpp"
#include "strata/transport/socket_state.hpp"

namespace strata::udp {

/// max_ipv4_message is the largest UDP payload over IPv4: 65535 - 20 (IP) - 8 (UDP).
inline constexpr std::size_t max_ipv4_message = 65507;
/// max_ipv6_message is the largest UDP payload over IPv6 without jumbograms: 65535 - 8.
inline constexpr std::size_t max_ipv6_message = 65527;

/// row is udp's capability declaration. Datagrams may be lost, duplicated or reordered;
/// one sent datagram arrives whole or not at all.
inline constexpr capability_row row{
    .name = "udp",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::less,
                       .unit = unit::message,
                       .reliable = false,
                       .ordered = false,
                       .dup_free = false,
                       .domain = domain::net,
                       .topology = topology::multicast,
                       .sharing = sharing::any_process,
                       .direction = direction::duplex,
                       .max_message = max_ipv4_message},
    .passed = {},
};

using outgoing = outgoing_datagram;
using incoming = incoming_datagram;

/// bind_options tune a bound socket.
struct bind_options {
  bool reuse_address = false;   ///< SO_REUSEADDR: several sockets on one port (multicast receivers)
  bool reuse_port = false;      ///< SO_REUSEPORT: the kernel spreads datagrams over the sockets
  int receive_buffer = 0;       ///< SO_RCVBUF in bytes; 0 keeps the system default
  int send_buffer = 0;          ///< SO_SNDBUF in bytes; 0 keeps the system default
  bool keep_too_large = false;  ///< see socket::set_keep_too_large
};

/// multicast_options say how a socket sends to and receives from IPv4 groups.
struct multicast_options {
  std::optional<address> group{};       ///< join this group (its port is ignored)
  std::optional<address> interface {};  ///< the local interface address for joins and sends
                                        ///< (IP_MULTICAST_IF); none: the kernel's choice
  std::optional<bool> loop{};           ///< IP_MULTICAST_LOOP: receive our own group sends
  std::optional<int> ttl{};             ///< IP_MULTICAST_TTL (0..255; the default is 1)
};

class connected;

/// socket is a bound, connection-less UDP socket (a datagram_socket; core/stream.hpp).
/// Thread-compatible: one task receives and one sends at a time.
class socket {
 public:
  static constexpr properties capabilities = transport_properties(row);

  socket() noexcept = default;
  /// bind opens a socket on `where` (IPv4 or IPv6; port 0: an ephemeral port, see
  /// local_address()). Errors: invalid_argument (not an IP address), EADDRINUSE, ...
  static result<socket> bind(const address& where, bind_options options = {});
  /// bind parses "HOST:PORT" ("0.0.0.0:0", "[::1]:0", "localhost:0") and binds.
  static result<socket> bind(std::string_view host_port, bind_options options = {});
  /// adopt takes ownership of a UDP socket descriptor (made non-blocking, close-on-exec).
  static result<socket> adopt(int fd);

  /// send_to sends one datagram to `to`. message_too_large, without a system call, above
  /// max_message() (nothing sent). timed_out / operation_canceled: nothing was sent. A
  /// datagram that was sent may still be lost. System errors: ENETUNREACH, EACCES (to a
  /// broadcast address), EAFNOSUPPORT / EINVAL for an address of the wrong family, ...
  task<result<void>> send_to(const_buffers bufs, const address& to, deadline dl);
  /// recv_from waits for one datagram and returns its size and sender. When `buf` is too
  /// small: message_too_large, and the datagram is dropped (the kernel's rule) unless
  /// keep_too_large is on. timed_out / operation_canceled consume nothing.
  task<result<received>> recv_from(mutable_buffer buf, deadline dl);
  /// send_batch sends `msgs` (each with its `to`) in order with sendmmsg and returns how
  /// many went: all of them, or fewer when the deadline passed, the scope was canceled or
  /// an error came after at least one was sent (the error repeats on the next call if it
  /// persists). It fails only when none was sent; message_too_large, before any system
  /// call, when any message is over max_message().
  task<result<std::size_t>> send_batch(std::span<const outgoing> msgs, deadline dl);
  /// recv_batch waits for one datagram, then fills up to slots.size() slots with what is
  /// queued (one recvmmsg) and returns how many. A datagram larger than its slot is cut
  /// and flagged `truncated`; the rest of it is lost.
  task<result<std::size_t>> recv_batch(std::span<incoming> slots, deadline dl);
  /// close releases the socket; waiting tasks and later calls get `closed`.
  task<result<void>> close(deadline dl);

  /// connect fixes the peer (the kernel then filters and addresses datagrams) and returns
  /// the socket as a message socket. Datagrams from other senders already queued are
  /// dropped on receive. Errors: as connect(2).
  result<connected> connect(const address& peer) &&;

  /// join_group subscribes to the IPv4 group `group` on the interface whose address is
  /// `interface` (nullopt: the kernel's choice) with IP_ADD_MEMBERSHIP, and turns
  /// IP_MULTICAST_ALL off so that the socket hears only the groups it joined (Linux
  /// otherwise delivers every group any local socket joined to every socket on the port).
  /// Several sockets on one port need reuse_address. A socket bound to a unicast address
  /// hears no group: bind 0.0.0.0 or the group itself. not_supported for IPv6 groups
  /// (IPv6 multicast does not work on the test machines' loopback, so it is not offered).
  result<void> join_group(const address& group, const std::optional<address>& interface = std::nullopt);
  /// leave_group drops a membership join_group made (IP_DROP_MEMBERSHIP).
  result<void> leave_group(const address& group, const std::optional<address>& interface = std::nullopt);
  /// set_multicast_loop chooses whether our own group sends come back to local members
  /// (IP_MULTICAST_LOOP, on by default). Sends that leave by the loopback interface come
  /// back through it whatever this says.
  result<void> set_multicast_loop(bool on);
  /// set_multicast_interface picks the interface (by its address) group sends leave by.
  result<void> set_multicast_interface(const address& interface);
  /// set_multicast_ttl sets the hop limit of group sends (0..255).
  result<void> set_multicast_ttl(int ttl);
  /// apply sets every option `options` gives, joining its group last.
  result<void> apply(const multicast_options& options);

  /// max_message is the largest datagram the socket's family can carry.
  std::size_t max_message() const noexcept { return state_.max_send; }
  properties runtime_capabilities() const noexcept;

  /// set_keep_too_large chooses what a receive does with a datagram larger than the
  /// caller's buffer. Off (the default, the kernel's own behaviour, one system call per
  /// datagram): message_too_large, and the datagram is dropped. On: message_too_large and
  /// the datagram stays queued, so a retry with a larger buffer gets it; this costs one
  /// extra peek (MSG_PEEK|MSG_TRUNC) per receive into a buffer smaller than
  /// max_message(). Batch receives always drop (they flag `truncated`).
  void set_keep_too_large(bool on) noexcept { state_.keep_too_large = on; }
  bool keeps_too_large() const noexcept { return state_.keep_too_large; }
  /// local_address is where the socket is bound (the ephemeral port filled in).
  result<address> local_address() const;
  /// peer_address is the connected peer of an adopted socket that was connected;
  /// not_connected (a system error) otherwise.
  result<address> peer_address() const;
  /// native_handle is the descriptor (still owned by this object: setsockopt is fine), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// release gives the descriptor to the caller, who must close it; every later call
  /// gets `closed`.
  int release() noexcept;
  bool is_open() const noexcept { return state_.fd.is_open(); }

 private:
  friend class listener;
  friend class connected;
  socket(int fd, int family) noexcept;
  detail::packet_socket_state state_;
};

/// connected is a UDP socket with a fixed peer: a message_socket (core/stream.hpp) whose
/// send goes to the peer and whose recv takes only the peer's datagrams. Datagrams may
/// be lost or reordered; there is no end of stream (recv waits until its deadline).
class connected {
 public:
  static constexpr properties capabilities = transport_properties(row);

  connected() noexcept = default;
  /// send sends one datagram to the peer. message_too_large above max_message() without a
  /// system call. connection_refused (a system error) when an earlier datagram drew an
  /// ICMP port unreachable: reported once, not sticky.
  task<result<void>> send(const_buffers bufs, deadline dl);
  /// try_send sends one datagram if the socket takes it now, without waiting or a
  /// coroutine: true when it went, false when send would wait. Errors as send's.
  result<bool> try_send(const_buffer buf);
  /// recv waits for one datagram from the peer (see socket::recv_from for too-small
  /// buffers); connection_refused as for send. A connection from listener::accept first
  /// delivers, in order and without waiting, the peer's datagrams the listener had to
  /// take off the socket (see listener).
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// send_batch / recv_batch as on socket; `to` is ignored and `from` is the peer. A
  /// connection from listener::accept that still holds datagrams the listener took off the
  /// socket fills the slots from those first (and returns without waiting).
  task<result<std::size_t>> send_batch(std::span<const outgoing> msgs, deadline dl);
  task<result<std::size_t>> recv_batch(std::span<incoming> slots, deadline dl);
  /// close releases the socket; waiting tasks and later calls get `closed`.
  task<result<void>> close(deadline dl);

  /// The multicast setters of socket, for a socket connected to a group.
  result<void> set_multicast_loop(bool on);
  result<void> set_multicast_interface(const address& interface);
  result<void> set_multicast_ttl(int ttl);
  /// set_ttl sets the unicast hop limit (IP_TTL / IPV6_UNICAST_HOPS).
  result<void> set_ttl(int ttl);

  /// max_message is the largest datagram the socket's family can carry.
  std::size_t max_message() const noexcept { return state_.max_send; }
  properties runtime_capabilities() const noexcept;

  /// set_keep_too_large: as on socket.
  void set_keep_too_large(bool on) noexcept { state_.keep_too_large = on; }
  bool keeps_too_large() const noexcept { return state_.keep_too_large; }
  /// local_address is where the socket is bound.
  result<address> local_address() const;
  /// peer_address is the peer datagrams go to and come from.
  result<address> peer_address() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// release gives the descriptor to the caller, who must close it; every later call
  /// gets `closed`. Datagrams the listener had taken off the socket for this connection
  /// and not yet delivered are dropped.
  int release() noexcept;
  bool is_open() const noexcept { return state_.fd.is_open(); }

 private:
  friend class socket;
  friend class listener;
  explicit connected(socket s, bool kernel_connected) noexcept;
  detail::packet_socket_state state_;
  detail::datagram_backlog backlog_;  // the peer's datagrams the listener took off the socket
  bool kernel_connected_ = true;      // false: the peer is kept in user space (state_.only_from)
};

/// connect_options tune udp::connect.
struct connect_options {
  std::optional<address> bind{};  ///< local address (default: any address, ephemeral port)
  multicast_options multicast{};  ///< for a group peer: interface, loop and ttl of the sends
  std::optional<int> ttl{};       ///< unicast hop limit
  bool keep_too_large = false;    ///< see socket::set_keep_too_large
};

/// connect opens a socket connected to `peer` (a unicast or multicast address). It does
/// not block: UDP has no handshake, so an absent peer shows up later, as
/// connection_refused on a send or recv. Errors: invalid_argument, ENETUNREACH, ...
result<connected> connect(const address& peer, connect_options options = {});
/// connect parses "HOST:PORT" and connects.
result<connected> connect(std::string_view host_port, connect_options options = {});

/// listen_options tune a listener.
struct listen_options {
  multicast_options multicast{};  ///< join a group: the listener's sockets are members
  bool keep_too_large = false;    ///< for the accepted sockets
  /// pending_bytes caps the bytes of the datagrams the listener holds for senders that
  /// wait for an accept (see listener); 0: the listening socket's receive buffer
  /// (SO_RCVBUF), what the kernel would have held for them.
  std::size_t pending_bytes = 0;
  /// pending_datagrams caps their number, pending_per_sender the number of one sender's.
  std::size_t pending_datagrams = 512;
  std::size_t pending_per_sender = 32;
};

/// listener gives UDP listener semantics the way socat's UDP-LISTEN does: accept waits
/// for the first datagram on the bound address and returns a message socket connected to
/// its sender with that datagram (and whatever else the sender queued) to be received
/// first, in order.
/// Unicast: the accepted socket is the listening one, now connected to its peer (the
/// kernel delivers that peer's datagrams to it); the listener binds a fresh socket on the
/// same address (SO_REUSEADDR) for the next accept. Around the connect the accept takes
/// everything queued on both sockets without waiting: the peer's datagrams stay with the
/// connection (its recv delivers them, in order, before what the kernel holds), every
/// other sender's wait in the listener, in order, each sender with its own (simultaneous
/// peers lose nothing: see docs/protocols/udp.md). The next accept serves the sender
/// whose first waiting datagram is the oldest, at once, with its waiting datagrams
/// first, and takes its sockets' queues apart the same way. The listener holds at most
/// listen_options::pending_bytes / pending_datagrams of waiting datagrams, and
/// pending_per_sender of one sender's: beyond those it drops them (UDP may lose any
/// datagram) and counts them in stats().dropped.
/// With an admission gate (set_gate), a new sender's first datagram is shown to the
/// gate before any of this happens for it: a refused one is dropped, and only admitted
/// senders get a connection or wait for one.
/// Multicast (a group is joined): the accepted socket keeps its peer in user space (a
/// kernel-connected socket would stop receiving group datagrams) and the listener accepts
/// only once: later accepts fail with not_supported.
class listener {
 public:
  listener() noexcept = default;
  /// bind binds `where` (port 0: ephemeral; local_address() tells the port).
  static result<listener> bind(const address& where, listen_options options = {});
  static result<listener> bind(std::string_view host_port, listen_options options = {});

  /// accept waits for the first datagram of a new peer. Errors: timed_out,
  /// operation_canceled (nothing consumed), closed, not_supported (see above), and the
  /// error of re-binding the address after the previous accept.
  task<result<connected>> accept(deadline dl);
  result<address> local_address() const;
  /// close releases the listening socket; a waiting accept gets `closed`.
  void close() noexcept;
  /// listening_socket is the socket the next accept hands over (e.g. for more options).
  udp::socket& listening_socket() noexcept { return socket_; }
  /// set_gate installs `gate` (core/datagram.hpp; empty: none), which then sees the first
  /// datagram of every new sender before the listener keeps anything for it: a refused
  /// datagram is dropped (its reply sent from the listening socket) and no connection,
  /// socket or waiting entry is made for its sender. Install it before the first accept.
  void set_gate(admission_gate gate) { demux_.gate = std::move(gate); }
  /// stats counts the connections handed out, the gate's verdicts and replies and the
  /// waiting datagrams dropped at a cap, and tells how many senders and datagrams wait
  /// for an accept now.
  datagram_listener_stats stats() const noexcept;

 private:
  listener(udp::socket s, address where, listen_options options) noexcept;
  udp::socket socket_;
  address where_;
  listen_options options_;
  detail::datagram_listener_state demux_;
  std::error_code rebind_error_{};
  bool accepted_once_ = false;
};

}  // namespace strata::udp
