// The two socket shapes and the listener, as concepts with written contracts.
//
// byte_stream (connection-based byte stream):
//   read_some(buf, dl)   waits until at least one byte is available and returns 1..size
//                        bytes (0 only for an empty buf). Errors: end_of_stream (the peer
//                        finished; sticky), timed_out / operation_canceled (nothing was
//                        consumed: retrying loses no byte), broken, protocol_error (sticky).
//   write(bufs, dl)      writes every byte of the gather list. timed_out or
//                        operation_canceled after a partial write fail the write
//                        direction for good (the peer saw an unknown prefix).
//   shutdown_write(dl)   half-close: the peer reads end_of_stream after the last byte.
//   close(dl)            orderly close: shutdown_write, drop the peer's remaining input
//                        until its end or `dl`, release resources. On timed_out the
//                        connection is reset. Afterwards every call fails with `closed`.
//
// message_socket (one message per call, never split or merged):
//   send(bufs, dl)       sends the gather list as one message. message_too_large when it
//                        exceeds the layer's max_message (nothing was sent).
//   recv(buf, dl)        receives one whole message. message_too_large when `buf` is
//                        too small; layers that buffer (prefix, crlf) keep the message
//                        so a retry with a larger buffer gets it.
//   close(dl)            as for streams.
//
// listener:
//   accept(dl)           waits for the next peer and returns its connected object.
//   local_address()      where it listens (the ephemeral port is filled in).
//
// Every blocking call takes the deadline last. Every object is move-only and owned by
// the layer above it.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include "strata/core/address.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"  // received
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

template <class S>
concept byte_stream = requires(S& s, mutable_buffer in, const_buffers out, deadline dl) {
  { s.read_some(in, dl) } -> std::same_as<task<result<std::size_t>>>;
  { s.write(out, dl) } -> std::same_as<task<result<void>>>;
  { s.shutdown_write(dl) } -> std::same_as<task<result<void>>>;
  { s.close(dl) } -> std::same_as<task<result<void>>>;
};

template <class M>
concept message_socket = requires(M& m, mutable_buffer in, const_buffers out, deadline dl) {
  { m.send(out, dl) } -> std::same_as<task<result<void>>>;
  { m.recv(in, dl) } -> std::same_as<task<result<std::size_t>>>;
  { m.close(dl) } -> std::same_as<task<result<void>>>;
};

/// datagram_socket (connection-less messages, e.g. a bound UDP socket):
///   send_to(bufs, to, dl)  sends one message to `to`; message_too_large over max_message.
///   recv_from(buf, dl)     receives one whole message and its sender (`received`, in
///                          core/datagram.hpp); message_too_large when `buf` is too small
///                          (whether the message is then dropped is the protocol's to
///                          document: datagram sockets drop it).
template <class D>
concept datagram_socket = requires(D& d, mutable_buffer in, const_buffers out, const address& to,
                                   deadline dl) {
  { d.send_to(out, to, dl) } -> std::same_as<task<result<void>>>;
  { d.recv_from(in, dl) } -> std::same_as<task<result<received>>>;
  { d.close(dl) } -> std::same_as<task<result<void>>>;
};

/// byte_source is the read half of a stream (a pipe's read end): read_some and close.
template <class S>
concept byte_source = requires(S& s, mutable_buffer in, deadline dl) {
  { s.read_some(in, dl) } -> std::same_as<task<result<std::size_t>>>;
  { s.close(dl) } -> std::same_as<task<result<void>>>;
};

/// byte_sink is the write half of a stream (a pipe's write end): write, shutdown_write
/// (which for a simplex end is its close) and close.
template <class S>
concept byte_sink = requires(S& s, const_buffers out, deadline dl) {
  { s.write(out, dl) } -> std::same_as<task<result<void>>>;
  { s.close(dl) } -> std::same_as<task<result<void>>>;
};

template <class L>
concept listener = requires(L& l, deadline dl) {
  l.accept(dl);
  { l.local_address() } -> std::same_as<result<address>>;
};

/// handshake_options bound what unfinished handshakes may cost.
struct handshake_options {
  /// timeout is each connection's handshake deadline, counted from its accept.
  std::chrono::milliseconds timeout{std::chrono::seconds(5)};
  /// max_pending bounds connections accepted but not yet taken by accept() (handshaking
  /// or ready); at the bound the listener stops accepting (the kernel's backlog waits).
  std::size_t max_pending = 256;
};

/// handshake_stats counts what became of accepted connections.
struct handshake_stats {
  std::uint64_t accepted = 0;   ///< taken from the listener below
  std::uint64_t ready = 0;      ///< handshake finished
  std::uint64_t failed = 0;     ///< handshake failed (the peer's fault or the layer's)
  std::uint64_t timed_out = 0;  ///< handshake past its deadline (also counted in failed)
  std::size_t handshaking = 0;  ///< in flight now
};

/// handshake_failure is what the failure observer learns about one connection.
struct handshake_failure {
  std::error_code error;  ///< timed_out, the layer's protocol_error, end_of_stream, ...
  result<address> peer;   ///< the peer's address when the layer below knows it
};

/// handshaking_listener hands out connections of `Lower` (a listener) after `Wrap` (a
/// callable `(accepted, deadline) -> task<result<U>>`) made them ready.
/// read_exact fills `buf` completely. Errors as read_some; end_of_stream when the peer
/// finished first (the bytes before it were consumed).
template <byte_stream S>
task<result<void>> read_exact(S& s, mutable_buffer buf, deadline dl) {
  std::size_t done = 0;
  while (done < buf.size()) {
    auto n = co_await s.read_some(buf.subspan(done), dl);
    if (!n) co_return n.error();
    done += *n;
  }
  co_return result<void>{};
}

/// detached is what detach() hands back: the lower layer and the bytes the upper layer
/// had read from it but not consumed, in order. Pass both to the next layer.
template <class Lower>
struct detached {
  Lower lower;
  std::vector<std::byte> unread;
};

}  // namespace strata
