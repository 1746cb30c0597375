// seqpacket — a connection carrying whole messages between processes on one host,
// reliably and in order (unix(7), SOCK_SEQPACKET): what a unix stream plus framing
// gives, done by the kernel, with descriptor passing and peer credentials.
//
// row: requires nothing (bottom layer)
//      provides connection-based message reliable ordered dup_free ipc p2p any-process
//               duplex fd_passing max_message=212960 (SO_SNDBUF 212992 by default less
//               the kernel's 32 bytes; max_message() probes the real socket)
// spec: seqpacket:PATH or seqpacket:@NAME (connect),
//       seqpacket-listen:PATH or seqpacket-listen:@NAME (listen)
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/stream.hpp"
#include "strata/transport/socket_state.hpp"
#include "strata/transport/unix.hpp"

namespace strata::seqpacket {

/// default_max_message is the largest message with the default send buffer:
/// net.core.wmem_default (212992) less 32. Sockets report their own in max_message().
inline constexpr std::size_t default_max_message = 212992 - 32;

/// row is the seqpacket socket's capability declaration.
inline constexpr capability_row row{
    .name = "seqpacket",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
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

/// socket is a connected seqpacket socket: a message_socket (core/stream.hpp) with
/// half-close. Thread-compatible: one task receives and one sends at a time.
class socket {
 public:
  static constexpr properties capabilities = transport_properties(row);

  socket() noexcept = default;
  /// pair returns two connected sockets (socketpair), e.g. to hand one to a child.
  static result<std::pair<socket, socket>> pair();
  /// adopt takes ownership of a connected SOCK_SEQPACKET descriptor.
  static result<socket> adopt(int fd);

  /// send sends one message. invalid_argument for an empty message: the receiver could
  /// not tell it from the end of the connection (both read as zero bytes).
  /// message_too_large (nothing sent) above max_message(). A full send buffer makes it
  /// wait until `dl`: timed_out / operation_canceled mean nothing was sent. broken (sticky)
  /// once the peer has closed its receiving side.
  task<result<void>> send(const_buffers bufs, deadline dl);
  /// try_send sends one message if the socket takes it now, without waiting or a
  /// coroutine: true when it went, false when send would wait. Errors as send's.
  result<bool> try_send(const_buffer buf);
  /// recv receives one whole message. When `buf` is too small: message_too_large, and the
  /// kernel discards the rest of the message (the whole message is lost to the caller)
  /// unless keep_too_large is on, which keeps it queued for a retry. end_of_stream
  /// (sticky) once the peer shut down or closed and every message was read; a peer that
  /// is not strata and sends an empty message ends the stream too. broken (sticky) when
  /// the connection was reset. timed_out / operation_canceled consume nothing.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// send_fds sends one message with `fds` attached (at most uds::max_fds_per_message;
  /// invalid_argument above or for an empty message; they stay owned by the caller). The
  /// descriptors travel with exactly this message.
  task<result<void>> send_fds(const_buffers bufs, std::span<const int> fds, deadline dl);
  /// recv_fds receives one message and appends the descriptors sent with it to `fds`
  /// (close-on-exec, owned by the caller). A plain recv closes such descriptors.
  task<result<std::size_t>> recv_fds(mutable_buffer buf, std::vector<int>& fds, deadline dl);
  /// recv_with receives one message with its envelope (sender, descriptors, credentials
  /// when pass_credentials is on).
  task<result<std::size_t>> recv_with(mutable_buffer buf, envelope& env, deadline dl);
  /// shutdown_write half-closes: the peer reads end_of_stream after our last message.
  task<result<void>> shutdown_write(deadline dl);
  /// close shuts our direction down, drops the peer's remaining messages until it ends or
  /// `dl` passes (timed_out, and the socket is closed anyway) and releases the socket.
  /// Waiting tasks and later calls get `closed`.
  task<result<void>> close(deadline dl);

  /// peer_credentials reports the peer's pid, uid and gid, recorded by the kernel when
  /// the connection was made (SO_PEERCRED).
  result<uds::credentials> peer_credentials() const;
  /// set_pass_credentials turns SO_PASSCRED on: each message then carries its sender's
  /// credentials (see recv_with).
  result<void> set_pass_credentials(bool on);
  /// max_message is the largest message this socket can send (SO_SNDBUF less 32).
  std::size_t max_message() const noexcept;
  properties runtime_capabilities() const noexcept;

  /// set_keep_too_large chooses what recv does with a message larger than the caller's
  /// buffer. Off (the default, the kernel's own behaviour, one system call per message):
  /// message_too_large, and the message is lost. On: message_too_large and the message
  /// stays queued, so a retry with a larger buffer gets it; this costs one extra peek
  /// (MSG_PEEK|MSG_TRUNC) per receive.
  void set_keep_too_large(bool on) noexcept { state_.keep_too_large = on; }
  bool keeps_too_large() const noexcept { return state_.keep_too_large; }
  /// local_address is the name this end is bound to ("(unnamed)" for a connecting or
  /// paired socket).
  result<address> local_address() const;
  /// peer_address is the name of the socket at the other end.
  result<address> peer_address() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// release gives the descriptor to the caller, who must close it; every later call
  /// gets `closed`.
  int release() noexcept;
  bool is_open() const noexcept { return state_.fd.is_open(); }

 private:
  friend task<result<socket>> connect(address, deadline);
  friend class listener;
  explicit socket(int fd) noexcept;
  detail::packet_socket_state state_;
};

/// connect opens a connection to the seqpacket listener at `where` before `dl`.
/// Errors: timed_out, operation_canceled, ENOENT, ECONNREFUSED, EPROTOTYPE (the socket
/// there is not a seqpacket one), invalid_argument.
task<result<socket>> connect(address where, deadline dl);
/// connect parses "PATH" or "@NAME" and connects.
task<result<socket>> connect(std::string_view path, deadline dl);

/// listen_options tune a listener.
struct listen_options {
  int backlog = 128;
  /// unlink_stale replaces a socket file at PATH that nobody listens behind; a live one
  /// (or a file that is not a socket) makes bind fail with EADDRINUSE.
  bool unlink_stale = true;
};

/// listener accepts seqpacket connections. A listener bound to a path removes the file
/// when it is closed or destroyed.
class listener {
 public:
  listener() noexcept = default;
  static result<listener> bind(const address& where, listen_options options = {});
  static result<listener> bind(std::string_view path, listen_options options = {});
  /// accept waits for the next connection. Running out of descriptors or memory does
  /// not fail it: it retries after a back-off (see tcp::listener::accept) counted in
  /// stats(). Errors: timed_out, operation_canceled, closed.
  task<result<socket>> accept(deadline dl);
  /// stats is what accept has survived so far.
  const accept_stats& stats() const noexcept { return state_.stats; }
  /// local_address is the bound name.
  result<address> local_address() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// close removes the socket file (if it is still ours) and releases the socket; a
  /// waiting accept gets `closed`.
  void close() noexcept;

 private:
  listener(int fd, detail::unix_socket_file file) noexcept
      : state_{.fd = pollable_fd(fd)}, file_(std::move(file)) {}
  detail::listener_socket_state state_;
  detail::unix_socket_file file_;
};

}  // namespace strata::seqpacket
