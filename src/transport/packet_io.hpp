// The machinery of the message-carrying socket transports (udp, unix_dgram, seqpacket):
// a non-blocking SOCK_DGRAM or SOCK_SEQPACKET descriptor driven by the event loop, where
// one call moves one whole message, a message larger than the caller's buffer is
// reported (MSG_TRUNC) instead of silently truncated, and descriptors and credentials
// travel as ancillary data; as free functions over the state the public classes hold
// (strata/transport/socket_state.hpp). The public classes forward to these; their doc
// comments carry the contracts. Also the unix socket helpers (binding with stale-file
// replacement, message size, credentials). Private to src/.
#pragma once

#include <cstddef>
#include <span>

#include "strata/core/address.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/query.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"
#include "strata/transport/socket_state.hpp"

namespace strata::detail {

/// send_packet sends `bufs` as one message to `to` (nullptr: the connected peer) with
/// `fds` attached (SCM_RIGHTS, still owned by the caller). message_too_large without a
/// system call above s.max_send (when set) or when the kernel refuses the size.
task<result<void>> send_packet(packet_socket_state& s, const_buffers bufs, const address* to,
                               std::span<const int> fds, deadline dl);
/// try_send_packet sends `buf` as one message to `to` (nullptr: the connected peer) if
/// the socket takes it now, without waiting or a coroutine: true when it went, false
/// when it would have to wait (nothing sent). Errors as send_packet's.
result<bool> try_send_packet(packet_socket_state& s, const_buffer buf, const address* to);
/// recv_packet receives one message into `buf` and returns its size; `from` and `env`
/// (optional) get the sender and the ancillary data.
task<result<std::size_t>> recv_packet(packet_socket_state& s, mutable_buffer buf, address* from,
                                      envelope* env, deadline dl);
/// send_batch_packets sends `msgs` in order with sendmmsg and returns how many went: all
/// of them, or fewer when the deadline passed, the scope was canceled or an error came
/// after at least one was sent (the error repeats on the next call if it persists). It
/// fails only when none was sent; message_too_large, before any system call, when any
/// message is over the limit.
task<result<std::size_t>> send_batch_packets(packet_socket_state& s, std::span<const outgoing_datagram> msgs,
                                             deadline dl);
/// recv_batch_packets waits for at least one message, then takes as many as are queued,
/// up to slots.size(), with one recvmmsg, and returns how many slots it filled.
task<result<std::size_t>> recv_batch_packets(packet_socket_state& s, std::span<incoming_datagram> slots,
                                             deadline dl);
/// peek_sender waits for a message and returns its sender without taking it.
/// Errors: timed_out, operation_canceled, closed, system errors.
task<result<address>> peek_sender(packet_socket_state& s, deadline dl);
/// shutdown_packet_write ends our direction (SHUT_WR): the peer reads end_of_stream.
result<void> shutdown_packet_write(packet_socket_state& s);
/// close_packet releases the socket. A sequenced socket shuts its write direction down
/// and drops the peer's remaining input until its end or `dl` first (timed_out then).
/// Tasks waiting on the socket complete with `closed`, as does every later call.
task<result<void>> close_packet(packet_socket_state& s, deadline dl);
/// close_packet_now releases the descriptor at once (waiting tasks get `closed`).
void close_packet_now(packet_socket_state& s) noexcept;
/// release_packet gives the descriptor to the caller; every later call gets `closed`.
int release_packet(packet_socket_state& s) noexcept;
/// packet_peer_address is the connected peer, or the peer kept in user space
/// (s.only_from); ENOTCONN (a system error) for an unconnected datagram socket.
result<address> packet_peer_address(const packet_socket_state& s);

/// same_sender compares two socket addresses as senders: family, address and port for
/// IP (ignoring IPv6 flow labels), the exact name for unix sockets.
bool same_sender(const address& a, const address& b) noexcept;

/// unix_socket_in_use reports whether something is bound behind the unix socket file at
/// `where` (a probe connect of `type` is not refused), so a stale file can be replaced.
bool unix_socket_in_use(const address& where, int type) noexcept;

/// bound_unix_socket is a fresh unix socket descriptor bound to `where` and the file it
/// owns. With `unlink_stale`, a socket file nobody is bound behind is replaced; a live one
/// (or a file that is not a socket) makes bind fail with EADDRINUSE.
struct bound_unix_socket {
  int fd = -1;
  unix_socket_file file;
};
/// bind_unix creates a non-blocking socket of `type` (SOCK_DGRAM, SOCK_SEQPACKET) bound
/// to `where` (a path or an abstract name). Errors: invalid_argument, EADDRINUSE, ...
result<bound_unix_socket> bind_unix(const address& where, int type, bool unlink_stale);

/// unix_max_message is the largest message a unix datagram or seqpacket socket accepts:
/// its send buffer (SO_SNDBUF, by default net.core.wmem_default = 212992) less the
/// kernel's 32-byte allowance; 0 when it cannot be read.
std::size_t unix_max_message(int fd) noexcept;
/// unix_peer_credentials reads SO_PEERCRED. not_supported when the kernel recorded none
/// (a datagram socket connected with connect(2): only socketpairs and seqpacket
/// connections carry them).
result<credentials> unix_peer_credentials(int fd);
/// set_pass_credentials turns SO_PASSCRED on or off: with it, every received message
/// carries its sender's credentials, checked by the kernel.
result<void> set_pass_credentials(int fd, bool on);

}  // namespace strata::detail
