// The machinery the message-carrying socket transports share (udp, unix_dgram,
// seqpacket): a non-blocking SOCK_DGRAM or SOCK_SEQPACKET descriptor driven by the event
// loop, where one call moves one whole message, a message larger than the caller's
// buffer is reported (MSG_TRUNC) instead of silently truncated, and descriptors and
// credentials travel as ancillary data. The transports are this plus their capability
// row and their own extras; they are not meant to be used through this type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/address.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/query.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/pollable_fd.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"
#include "strata/transport/socket_state.hpp"  // unix_socket_file

namespace strata::detail {

/// packet_kind tells the machinery how a socket ends. A datagram socket never ends: a
/// zero-length read is an empty message and errors are reported once, as they come. A
/// sequenced (SOCK_SEQPACKET) connection ends when the peer shuts down: a zero-length
/// read is the end of stream, and end/broken are sticky per direction.
enum class packet_kind : std::uint8_t { datagram, sequenced };

/// packet_socket is a non-blocking message socket; see the transports for the contracts.
class packet_socket {
 public:
  packet_socket() noexcept = default;
  /// packet_socket owns `fd` (non-blocking, close-on-exec).
  packet_socket(int fd, packet_kind kind) noexcept : fd_(fd), kind_(kind) {}
  packet_socket(packet_socket&& other) noexcept;
  packet_socket& operator=(packet_socket&& other) noexcept;
  ~packet_socket();

  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return fd_.get(); }
  bool is_open() const noexcept { return fd_.is_open(); }
  /// release gives the descriptor to the caller, who must close it.
  int release() noexcept;
  result<address> local_address() const;
  /// peer_address is the connected peer; not_connected (a system error) for an
  /// unconnected datagram socket.
  result<address> peer_address() const;

  /// set_keep_too_large chooses what a receive does with a message larger than the
  /// caller's buffer. Off (the default, the kernel's own behaviour, one system call per
  /// message): message_too_large, and the message is dropped. On: message_too_large and
  /// the message stays queued, so a retry with a larger buffer gets it; this costs one
  /// extra peek (MSG_PEEK|MSG_TRUNC) per receive into a buffer smaller than the largest
  /// message the socket can carry. Batch receives always drop (they flag `truncated`).
  void set_keep_too_large(bool on) noexcept { keep_too_large_ = on; }
  bool keeps_too_large() const noexcept { return keep_too_large_; }

 protected:
  /// send_packet sends `bufs` as one message to `to` (nullptr: the connected peer) with
  /// `fds` attached (SCM_RIGHTS, still owned by the caller). message_too_large without a
  /// system call above max_send_ (when set) or when the kernel refuses the size.
  task<result<void>> send_packet(const_buffers bufs, const address* to, std::span<const int> fds,
                                 deadline dl);
  /// recv_packet receives one message into `buf` and returns its size; `from` and `env`
  /// (optional) get the sender and the ancillary data.
  task<result<std::size_t>> recv_packet(mutable_buffer buf, address* from, envelope* env, deadline dl);
  /// send_batch sends `msgs` in order with sendmmsg and returns how many went: all of
  /// them, or fewer when the deadline passed, the scope was canceled or an error came
  /// after at least one was sent (the error repeats on the next call if it persists).
  /// It fails only when none was sent; message_too_large, before any system call, when
  /// any message is over the limit.
  task<result<std::size_t>> send_batch_packets(std::span<const outgoing_datagram> msgs, deadline dl);
  /// recv_batch waits for at least one message, then takes as many as are queued, up to
  /// slots.size(), with one recvmmsg, and returns how many slots it filled.
  task<result<std::size_t>> recv_batch_packets(std::span<incoming_datagram> slots, deadline dl);
  /// peek_sender waits for a message and returns its sender without taking it.
  /// Errors: timed_out, operation_canceled, closed, system errors.
  task<result<address>> peek_sender(deadline dl);
  /// shutdown_packet_write ends our direction (SHUT_WR): the peer reads end_of_stream.
  result<void> shutdown_packet_write();
  /// close_packet releases the socket. A sequenced socket shuts its write direction down
  /// and drops the peer's remaining input until its end or `dl` first (timed_out then).
  /// Tasks waiting on the socket complete with `closed`, as does every later call.
  task<result<void>> close_packet(deadline dl);
  /// close_now releases the descriptor at once (waiting tasks get `closed`).
  void close_now() noexcept;

  void fail_read(std::error_code ec) noexcept {
    if (!read_error_) read_error_ = ec;
  }
  void fail_write(std::error_code ec) noexcept {
    if (!write_error_) write_error_ = ec;
  }

  /// sender turns a received name into an address; an empty one (a unix sender that is
  /// not bound) becomes the unnamed unix address when unix_ is set.
  address sender(const void* name, unsigned len) const;

  pollable_fd fd_;
  packet_kind kind_ = packet_kind::datagram;
  bool unix_ = false;  ///< an AF_UNIX socket
  bool keep_too_large_ = false;
  /// sends_poll_on_full: a send to an explicit unix destination whose queue is full gets
  /// EAGAIN while our own socket stays writable, so no readiness edge will announce room:
  /// such sends retry on a short, growing timer instead of waiting for one.
  bool sends_poll_on_full_ = false;
  /// max_send_: messages above this many bytes are refused without a system call (0: none).
  std::size_t max_send_ = 0;
  /// max_recv_: the largest message the socket can receive; a buffer this large needs no
  /// peek in keep_too_large mode.
  std::size_t max_recv_ = SIZE_MAX;
  /// only_from_: when set, messages from other senders are dropped on receive (a socket
  /// that was connected after datagrams from others had queued, or a peer kept in user
  /// space rather than by the kernel).
  std::optional<address> only_from_;

 private:
  /// receive_failed turns a receive's error into the caller's (sticky for sequenced sockets;
  /// a wait's timeout or cancel never is).
  std::error_code receive_failed(std::error_code ec) noexcept;

  std::error_code read_error_{};
  std::error_code write_error_{};
  bool write_shut_ = false;
};

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
