// The data of the socket transports (tcp, unix, udp, unix_dgram, seqpacket), and nothing
// else: plain structs that the public classes hold by value, so that a socket stays a
// descriptor plus a few flags, with no allocation and no indirection, and its size is
// known to the code that embeds it. The machinery that drives them (read, write, accept,
// send, receive, close) is private to the library (src/transport/socket_io.hpp and
// packet_io.hpp); the public classes declare every operation they offer themselves.
// Nothing in namespace detail is meant to be used outside the library.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "strata/core/address.hpp"
#include "strata/core/datagram.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/pollable_fd.hpp"

namespace strata {

/// accept_stats counts what a listener's accept survived instead of failing.
struct accept_stats {
  std::uint64_t resource_errors = 0;      ///< EMFILE, ENFILE, ENOBUFS, ENOMEM: retried after a back-off
  std::uint64_t dropped_connections = 0;  ///< ECONNABORTED and the like: the next one is taken
  std::error_code last_resource_error{};  ///< the latest of resource_errors
};

namespace detail {

/// stream_socket_state is a connected stream socket (tcp, unix): its descriptor, the
/// sticky error of each direction (a failed direction stays failed) and the accepted
/// peer. Moving leaves `closed` in both directions of the moved-from state.
struct stream_socket_state {
  stream_socket_state() noexcept = default;
  /// stream_socket_state owns `owned`. `drains` sets short_read_drains.
  explicit stream_socket_state(int owned, bool drains = true) noexcept
      : fd(owned), short_read_drains(drains) {}
  stream_socket_state(stream_socket_state&& other) noexcept
      : fd(std::move(other.fd)),
        read_error(std::exchange(other.read_error, errc::closed)),
        write_error(std::exchange(other.write_error, errc::closed)),
        write_shut(other.write_shut),
        short_read_drains(other.short_read_drains),
        peer_family(other.peer_family),
        peer_port(other.peer_port),
        peer_ip(other.peer_ip) {}
  stream_socket_state& operator=(stream_socket_state&& other) noexcept {
    if (this != &other) {
      fd = std::move(other.fd);
      read_error = std::exchange(other.read_error, errc::closed);
      write_error = std::exchange(other.write_error, errc::closed);
      write_shut = other.write_shut;
      short_read_drains = other.short_read_drains;
      peer_family = other.peer_family;
      peer_port = other.peer_port;
      peer_ip = other.peer_ip;
    }
    return *this;
  }

  pollable_fd fd;
  std::error_code read_error{};
  std::error_code write_error{};
  bool write_shut = false;
  /// short_read_drains says whether a read that returns less than asked proves the
  /// receive queue empty (true for TCP). Unix sockets end a read early at bytes that
  /// carried descriptors with more bytes queued behind them, so for them only EAGAIN
  /// proves it.
  bool short_read_drains = true;
  // The accepted peer in 20 bytes (not an `address`: 144 bytes on every connection).
  std::uint8_t peer_family = 0;  ///< 0 none, 4 IPv4, 6 IPv6
  std::uint16_t peer_port = 0;   ///< host order
  std::array<std::uint8_t, 16> peer_ip{};
};

/// listener_socket_state is a listening stream socket: its descriptor, what its accepts
/// survived and the current back-off after running out of descriptors or memory.
struct listener_socket_state {
  pollable_fd fd;
  accept_stats stats{};
  std::chrono::milliseconds backoff{};
};

/// packet_kind tells the machinery how a socket ends. A datagram socket never ends: a
/// zero-length read is an empty message and errors are reported once, as they come. A
/// sequenced (SOCK_SEQPACKET) connection ends when the peer shuts down: a zero-length
/// read is the end of stream, and end/broken are sticky per direction.
enum class packet_kind : std::uint8_t { datagram, sequenced };

/// packet_socket_state is a message socket (udp, unix_dgram, seqpacket): a SOCK_DGRAM or
/// SOCK_SEQPACKET descriptor, how it ends, the limits and filters its sends and receives
/// apply, and the sticky errors of a sequenced socket. Moving leaves `closed` in both
/// directions (and no peer filter) behind.
struct packet_socket_state {
  packet_socket_state() noexcept = default;
  /// packet_socket_state owns `owned` (non-blocking, close-on-exec).
  packet_socket_state(int owned, packet_kind how) noexcept : fd(owned), kind(how) {}
  packet_socket_state(packet_socket_state&& other) noexcept
      : fd(std::move(other.fd)),
        kind(other.kind),
        is_unix(other.is_unix),
        keep_too_large(other.keep_too_large),
        sends_poll_on_full(other.sends_poll_on_full),
        max_send(other.max_send),
        max_recv(other.max_recv),
        only_from(std::exchange(other.only_from, std::nullopt)),
        read_error(std::exchange(other.read_error, errc::closed)),
        write_error(std::exchange(other.write_error, errc::closed)),
        write_shut(other.write_shut) {}
  packet_socket_state& operator=(packet_socket_state&& other) noexcept {
    if (this != &other) {
      fd = std::move(other.fd);
      kind = other.kind;
      is_unix = other.is_unix;
      keep_too_large = other.keep_too_large;
      sends_poll_on_full = other.sends_poll_on_full;
      max_send = other.max_send;
      max_recv = other.max_recv;
      only_from = std::exchange(other.only_from, std::nullopt);
      read_error = std::exchange(other.read_error, errc::closed);
      write_error = std::exchange(other.write_error, errc::closed);
      write_shut = other.write_shut;
    }
    return *this;
  }

  pollable_fd fd;
  packet_kind kind = packet_kind::datagram;
  bool is_unix = false;  ///< an AF_UNIX socket (an empty sender name is the unnamed address)
  /// keep_too_large: a message larger than the receive buffer stays queued (one extra
  /// peek per receive) instead of being dropped; see the transports' set_keep_too_large.
  bool keep_too_large = false;
  /// sends_poll_on_full: a send to an explicit unix destination whose queue is full gets
  /// EAGAIN while our own socket stays writable, so no readiness edge will announce room:
  /// such sends retry on a short, growing timer instead of waiting for one.
  bool sends_poll_on_full = false;
  /// max_send: messages above this many bytes are refused without a system call (0: none).
  std::size_t max_send = 0;
  /// max_recv: the largest message the socket can receive; a buffer this large needs no
  /// peek in keep_too_large mode.
  std::size_t max_recv = SIZE_MAX;
  /// only_from: when set, messages from other senders are dropped on receive (a socket
  /// that was connected after datagrams from others had queued, or a peer kept in user
  /// space rather than by the kernel).
  std::optional<address> only_from;
  std::error_code read_error{};
  std::error_code write_error{};
  bool write_shut = false;
};

/// datagram_backlog is whole datagrams already taken off a socket's kernel queue for one
/// peer, oldest first: [head, datagrams.size()) are still to be delivered. Moving leaves
/// an empty backlog behind.
struct datagram_backlog {
  datagram_backlog() noexcept = default;
  datagram_backlog(datagram_backlog&& other) noexcept
      : datagrams(std::exchange(other.datagrams, {})),
        head(std::exchange(other.head, 0)),
        bytes(std::exchange(other.bytes, 0)) {}
  datagram_backlog& operator=(datagram_backlog&& other) noexcept {
    if (this != &other) {
      datagrams = std::exchange(other.datagrams, {});
      head = std::exchange(other.head, 0);
      bytes = std::exchange(other.bytes, 0);
    }
    return *this;
  }
  bool empty() const noexcept { return head == datagrams.size(); }

  std::vector<std::vector<std::byte>> datagrams;
  std::size_t head = 0;
  std::size_t bytes = 0;  ///< of the datagrams still to be delivered
};

/// pending_sender is a sender a datagram listener has datagrams of but no connection for
/// yet.
struct pending_sender {
  address from;
  datagram_backlog backlog;
};

/// datagram_listener_state is what a datagram listener keeps besides its socket: the
/// admission gate a layer above installed, the senders waiting for an accept, in the
/// order of their first datagrams, with the caps that bound them, its counts, one
/// datagram's room for reading and the gate's reply.
struct datagram_listener_state {
  admission_gate gate;
  std::vector<pending_sender> pending;
  std::size_t pending_datagrams = 0;
  std::size_t pending_bytes = 0;
  std::size_t max_bytes = 0;  ///< caps of `pending` (0: nothing is kept)
  std::size_t max_datagrams = 0;
  std::size_t max_per_sender = 0;
  datagram_listener_stats stats{};
  std::vector<std::byte> scratch;  ///< room for one datagram, made on first use
  std::vector<std::byte> reply;    ///< what the gate answers a refused datagram with
};

/// unix_socket_file owns the filesystem entry of a socket this process bound to a path
/// and removes it when reset or destroyed (moving hands the duty over). It remembers the
/// file's device and inode at bind time and removes the path only while it still names
/// that file: another process may have replaced a socket file it found stale. Empty for
/// abstract names.
class unix_socket_file {
 public:
  unix_socket_file() noexcept = default;
  /// claims the socket file just bound at `path` (empty: nothing to own).
  explicit unix_socket_file(std::string path) noexcept;
  unix_socket_file(unix_socket_file&& other) noexcept
      : path_(std::exchange(other.path_, {})), device_(other.device_), inode_(other.inode_) {}
  unix_socket_file& operator=(unix_socket_file&& other) noexcept;
  ~unix_socket_file() { reset(); }
  /// reset removes the file now if it is still ours.
  void reset() noexcept;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  unsigned long long device_ = 0, inode_ = 0;
};

}  // namespace detail
}  // namespace strata
