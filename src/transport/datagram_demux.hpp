// The machinery of the datagram listeners (udp, unix_dgram), which make one connection per
// sender out of a socket that hears every sender: which sender the next accept serves,
// what becomes of the datagrams other senders had queued on a socket that an accept
// connects to its peer (they wait, bounded, for a later accept instead of being dropped),
// and the delivery of the datagrams an accepted connection finds already taken off its
// socket. As free functions over the state the listeners and connections hold
// (strata/transport/socket_state.hpp). Private to src/.
#pragma once

#include <cstddef>
#include <span>

#include "strata/core/address.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/datagram.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"
#include "strata/transport/socket_state.hpp"

namespace strata::detail {

/// set_pending_caps bounds the datagrams `l` keeps for senders waiting for an accept:
/// `bytes` in all (0: the receive buffer of socket `fd`, SO_RCVBUF, what the kernel
/// would have kept), `datagrams` in all and `per_sender` for each sender.
void set_pending_caps(datagram_listener_state& l, int fd, std::size_t bytes, std::size_t datagrams,
                      std::size_t per_sender) noexcept;

/// next_sender returns the sender the next accept serves: the waiting sender whose first
/// datagram is the oldest, at once, its datagrams moved to `backlog` (oldest first); else
/// it waits for a datagram on `s` and returns its sender, leaving the datagram queued.
/// With a gate (l.gate), each datagram at the head of the queue is shown to it first: a
/// refused one is taken off the queue (its reply sent from `s`) and the wait goes on.
/// Errors: timed_out, operation_canceled (nothing taken but refused datagrams), closed,
/// system errors.
task<result<address>> next_sender(packet_socket_state& s, datagram_listener_state& l,
                                  datagram_backlog& backlog, deadline dl);

/// drain_queue takes what is queued on `s` without waiting: `peer`'s datagrams are
/// appended to `backlog` (to be delivered before what the kernel still holds), every
/// other sender's to its entry in l.pending, a new sender's entry after the others (with
/// a gate, only if the gate admits its first datagram; a refusal is answered from `s`).
/// Datagrams beyond l's caps are dropped and counted (l.stats.dropped). It stops after
/// l.max_bytes or l.max_datagrams of `peer`'s, or twice l.max_datagrams in all, so that
/// senders that never pause cannot keep it going; what it leaves stays queued.
void drain_queue(packet_socket_state& s, datagram_listener_state& l, const address& peer,
                 datagram_backlog& backlog);

/// demux_stats is l's counts with its current pending totals.
datagram_listener_stats demux_stats(const datagram_listener_state& l) noexcept;

/// clear_pending drops every waiting sender's datagrams.
void clear_pending(datagram_listener_state& l) noexcept;

/// recv_backlog delivers the oldest datagram of the non-empty `b` into `buf`, as a
/// receive from `s` would: message_too_large when it does not fit (dropped, or kept with
/// s.keep_too_large), closed after `s` was closed.
task<result<std::size_t>> recv_backlog(packet_socket_state& s, datagram_backlog& b, mutable_buffer buf);

/// recv_backlog_batch fills `slots` from the non-empty `b` (oldest first, each from
/// `from`), as a batch receive would (a datagram larger than its slot is cut and flagged
/// truncated), and returns how many it filled.
task<result<std::size_t>> recv_backlog_batch(packet_socket_state& s, datagram_backlog& b,
                                             std::span<incoming_datagram> slots, address from);

}  // namespace strata::detail
