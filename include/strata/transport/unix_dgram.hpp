// unix_dgram — connection-less messages between processes on one host (unix(7),
// SOCK_DGRAM), with descriptor passing and kernel-checked sender credentials. Unlike UDP,
// Linux unix datagrams are reliable and ordered: a sender whose receiver's queue is full
// waits instead of losing the message.
//
// row: requires nothing (bottom layer)
//      provides connection-less message reliable ordered dup_free ipc p2p any-process
//               duplex fd_passing max_message=212960 (SO_SNDBUF 212992 by default less
//               the kernel's 32 bytes; max_message() probes the real socket)
// spec: unix-dgram:PATH or unix-dgram:@NAME (a message socket connected to it),
//       unix-dgram-listen:PATH or unix-dgram-listen:@NAME (bound; socat-like, accept waits
//       for the first message and returns a socket connected to its sender),
//       unix-dgram-bind:PATH or unix-dgram-bind:@NAME (a bound socket: any sender, any peer)
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/stream.hpp"
#include "strata/transport/socket_state.hpp"
#include "strata/transport/unix.hpp"

namespace strata::unix_dgram {

/// default_max_message is the largest message with the default send buffer:
/// net.core.wmem_default (212992) less 32. Sockets report their own in max_message().
inline constexpr std::size_t default_max_message = 212992 - 32;

/// row is the unix datagram socket's capability declaration.
inline constexpr capability_row row{
    .name = "unix-dgram",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::less,
                       .unit = unit::message,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::p2p,
                       .sharing = sharing::any_process,
                       .direction = direction::duplex,
                       .fd_passing = true,
                       .max_message = default_max_message},
    .passed = {},
};

/// bind_options tune a bound socket.
struct bind_options {
  /// unlink_stale replaces a socket file at PATH that nobody is bound behind; a live one
  /// (or a file that is not a socket) makes bind fail with EADDRINUSE.
  bool unlink_stale = true;
  bool pass_credentials = false;  ///< SO_PASSCRED: messages carry their sender's credentials
  bool keep_too_large = false;    ///< see socket::set_keep_too_large
};

class connected;

/// socket is a connection-less unix datagram socket (a datagram_socket; core/stream.hpp),
/// bound to a path or an abstract name, or unbound. A path-bound socket removes its file
/// when closed or destroyed. Thread-compatible: one task receives and one sends at a time.
class socket {
 public:
  static constexpr properties capabilities = transport_properties(row);

  socket() noexcept = default;
  /// bind opens a socket bound to `where` ("PATH" or "@NAME").
  /// Errors: invalid_argument (not a unix address, too long), EADDRINUSE, EACCES, ...
  static result<socket> bind(const address& where, bind_options options = {});
  static result<socket> bind(std::string_view path, bind_options options = {});
  /// open opens an unbound socket. With `autobind` the kernel gives it a unique abstract
  /// name (so that receivers can answer); without, its messages arrive from "(unnamed)".
  static result<socket> open(bool autobind = true);

  /// send_to sends one message to the socket bound at `to`. message_too_large (nothing
  /// sent) above the send buffer. When the receiver's queue is full (net.unix.max_dgram_qlen
  /// messages, 10 by default) the send waits for room until `dl`; nothing announces room
  /// in another socket's queue, so it retries on a short timer (50 µs growing to 5 ms).
  /// Errors: timed_out / operation_canceled (nothing sent), ECONNREFUSED (nobody bound
  /// there), ENOENT, EPERM (the receiver is connected to another socket).
  task<result<void>> send_to(const_buffers bufs, const address& to, deadline dl);
  /// send_fds_to sends like send_to with `fds` attached to the message (at most
  /// uds::max_fds_per_message; invalid_argument above; they stay owned by the caller).
  task<result<void>> send_fds_to(const_buffers bufs, std::span<const int> fds, const address& to,
                                 deadline dl);
  /// recv_from waits for one message and returns its size and sender. When `buf` is too
  /// small: message_too_large, and the message is dropped (the kernel's rule) unless
  /// keep_too_large is on. Descriptors sent with the message are closed.
  task<result<received>> recv_from(mutable_buffer buf, deadline dl);
  /// recv_with receives like recv_from and fills `env` with the sender, the descriptors
  /// sent along (owned by the caller) and, with pass_credentials, the sender's credentials.
  task<result<std::size_t>> recv_with(mutable_buffer buf, envelope& env, deadline dl);
  /// close releases the socket (and its file); waiting tasks and later calls get `closed`.
  task<result<void>> close(deadline dl);

  /// connect fixes the peer: sends go there and only its messages are received (the
  /// kernel refuses other senders with EPERM; messages others had queued are dropped).
  /// Errors: ECONNREFUSED, ENOENT, EPERM (the peer is connected to someone else).
  result<connected> connect(const address& peer) &&;

  /// set_pass_credentials turns SO_PASSCRED on or off (see recv_with).
  result<void> set_pass_credentials(bool on);
  /// max_message is the largest message this socket can send (SO_SNDBUF less 32).
  std::size_t max_message() const noexcept;
  properties runtime_capabilities() const noexcept;

  /// set_keep_too_large chooses what a receive does with a message larger than the
  /// caller's buffer. Off (the default, the kernel's own behaviour, one system call per
  /// message): message_too_large, and the message is dropped. On: message_too_large and
  /// the message stays queued, so a retry with a larger buffer gets it; this costs one
  /// extra peek (MSG_PEEK|MSG_TRUNC) per receive.
  void set_keep_too_large(bool on) noexcept { state_.keep_too_large = on; }
  bool keeps_too_large() const noexcept { return state_.keep_too_large; }
  /// local_address is the bound name ("(unnamed)" for an unbound socket).
  result<address> local_address() const;
  /// peer_address is the connected peer of an adopted socket that was connected;
  /// not_connected (a system error) otherwise.
  result<address> peer_address() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// release gives the descriptor to the caller, who must close it (the socket file
  /// stays this object's to remove); every later call gets `closed`.
  int release() noexcept;
  bool is_open() const noexcept { return state_.fd.is_open(); }

 private:
  friend class connected;
  friend class listener;
  socket(int fd, detail::unix_socket_file file) noexcept;
  detail::packet_socket_state state_;
  detail::unix_socket_file file_;
};

/// connected is a unix datagram socket with a fixed peer: a message_socket
/// (core/stream.hpp). There is no end of stream: a peer that closes is noticed by the
/// next send (ECONNREFUSED, then ENOTCONN), never by recv, which waits until its deadline.
class connected {
 public:
  static constexpr properties capabilities = transport_properties(row);

  connected() noexcept = default;
  /// pair returns two sockets connected to each other (socketpair), e.g. to hand one to a
  /// child process. Each knows the other's credentials (peer_credentials()).
  static result<std::pair<connected, connected>> pair();
  /// adopt takes ownership of a connected unix datagram descriptor.
  static result<connected> adopt(int fd);

  /// send sends one message to the peer; errors as socket::send_to. The queue limit does
  /// not apply between the two ends of a pair, only the send buffer does; a full one
  /// makes send wait for room (announced by the kernel) until `dl`.
  task<result<void>> send(const_buffers bufs, deadline dl);
  /// try_send sends one message if the socket takes it now, without waiting or a
  /// coroutine: true when it went, false when send would wait. Errors as send's.
  result<bool> try_send(const_buffer buf);
  /// send_fds sends one message with `fds` attached (see socket::send_fds_to).
  task<result<void>> send_fds(const_buffers bufs, std::span<const int> fds, deadline dl);
  /// recv receives one message from the peer; too-small buffers as socket::recv_from.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// recv_fds receives one message and appends the descriptors sent with it to `fds`
  /// (close-on-exec, owned by the caller).
  task<result<std::size_t>> recv_fds(mutable_buffer buf, std::vector<int>& fds, deadline dl);
  /// recv_with receives one message with its envelope (see socket::recv_with).
  task<result<std::size_t>> recv_with(mutable_buffer buf, envelope& env, deadline dl);
  /// close releases the socket (and its file); waiting tasks and later calls get `closed`.
  task<result<void>> close(deadline dl);

  /// peer_credentials reports the peer's pid, uid and gid (SO_PEERCRED) for a pair;
  /// not_supported for a socket connected with connect(2) (the kernel records none for
  /// datagram connects: turn pass_credentials on and read them from recv_with).
  result<uds::credentials> peer_credentials() const;
  /// set_pass_credentials turns SO_PASSCRED on or off (see recv_with).
  result<void> set_pass_credentials(bool on);
  /// max_message is the largest message this socket can send (SO_SNDBUF less 32).
  std::size_t max_message() const noexcept;
  properties runtime_capabilities() const noexcept;

  /// set_keep_too_large: as on socket.
  void set_keep_too_large(bool on) noexcept { state_.keep_too_large = on; }
  bool keeps_too_large() const noexcept { return state_.keep_too_large; }
  /// local_address is the bound name ("(unnamed)" for an unbound socket).
  result<address> local_address() const;
  /// peer_address is the peer's name ("(unnamed)" for an unbound peer).
  result<address> peer_address() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// release gives the descriptor to the caller, who must close it (the socket file
  /// stays this object's to remove); every later call gets `closed`.
  int release() noexcept;
  bool is_open() const noexcept { return state_.fd.is_open(); }

 private:
  friend class socket;
  friend class listener;
  explicit connected(socket s, bool kernel_connected) noexcept;
  explicit connected(int fd) noexcept;
  detail::packet_socket_state state_;
  detail::unix_socket_file file_;
  bool kernel_connected_ = true;  // false: a peer without a name, kept in state_.only_from
};

/// connect_options tune unix_dgram::connect.
struct connect_options {
  /// bind names our end (a path or @name). Without it the socket is autobound to a
  /// kernel-chosen abstract name, so the peer can answer.
  std::optional<address> bind{};
  bool pass_credentials = false;
  bool keep_too_large = false;
};

/// connect opens a socket connected to the one bound at `peer`. It does not block.
/// Errors: invalid_argument, ENOENT, ECONNREFUSED (nobody bound there), EPERM.
result<connected> connect(const address& peer, connect_options options = {});
/// connect parses "PATH" or "@NAME" and connects.
result<connected> connect(std::string_view path, connect_options options = {});

/// listener gives unix datagrams listener semantics the way socat's UNIX-RECVFROM does:
/// accept waits for the first message on the bound address and returns the bound socket
/// itself, connected to that message's sender, with the message (and whatever else the
/// sender queued) pending; the kernel then refuses other senders (EPERM), and messages
/// they had queued before are dropped. The name stays with the accepted socket, so a
/// listener accepts once: later accepts fail with not_supported. A sender without a name
/// (an unbound socket) cannot be answered: its connection receives every unnamed sender's
/// messages and send fails with not_supported. A sender that is gone by the time of the
/// accept is skipped (its message dropped). With an admission gate (set_gate), the
/// accept shows each sender's message at the head of the queue to the gate first: a
/// refused one is dropped (the gate's reply sent from the bound socket) and the accept
/// waits for the next, so only an admitted sender gets the connection.
class listener {
 public:
  listener() noexcept = default;
  static result<listener> bind(const address& where, bind_options options = {});
  static result<listener> bind(std::string_view path, bind_options options = {});

  /// accept waits for the first message. Errors: timed_out, operation_canceled (nothing
  /// consumed), closed, not_supported (accepted before).
  task<result<connected>> accept(deadline dl);
  /// local_address is the bound name, also after the accept handed the socket over.
  result<address> local_address() const;
  /// close releases the socket (and removes its file) unless an accept took it.
  void close() noexcept;
  /// set_gate installs `gate` (core/datagram.hpp; empty: none); see the class comment.
  void set_gate(admission_gate gate) { demux_.gate = std::move(gate); }
  /// stats counts the connection handed out and the gate's verdicts and replies.
  datagram_listener_stats stats() const noexcept;

 private:
  listener(socket s, address where) noexcept : socket_(std::move(s)), where_(where) {}
  socket socket_;
  address where_;
  detail::datagram_listener_state demux_;
  bool accepted_ = false;
};

}  // namespace strata::unix_dgram
