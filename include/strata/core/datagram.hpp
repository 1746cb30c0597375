// What a message carries besides its bytes, for the message transports (udp, unix_dgram,
// seqpacket) and any_datagram: the size and sender of one connection-less receive
// (received, the result of datagram_socket's recv_from in core/stream.hpp), the slots of
// a batch send or receive (outgoing_datagram, incoming_datagram) and the ancillary data
// of a unix message (envelope). Plain values: the caller owns every buffer they point to.
// Also what the datagram listeners (udp-listen, unix-dgram-listen), which make one
// connection per sender, offer the layers above them: an admission gate that sees a new
// sender's first datagram before the listener keeps anything for it, and their counts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "strata/core/address.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/query.hpp"

namespace strata {

/// received is what a connection-less receive returns: the message size and its sender.
struct received {
  std::size_t size = 0;
  address from;
};

/// outgoing_datagram is one message of a batch send: its bytes and, on a connection-less
/// socket, its destination (nullptr: the connected peer). Both are views the caller keeps
/// alive for the duration of the call.
struct outgoing_datagram {
  const_buffers data{};
  const address* to = nullptr;
};

/// incoming_datagram is one slot of a batch receive: the caller's buffer, then what
/// arrived in it.
struct incoming_datagram {
  mutable_buffer buf{};
  std::size_t size = 0;    ///< the message's real size; larger than buf.size() when truncated
  address from{};          ///< its sender
  bool truncated = false;  ///< the message did not fit: buf holds its start, the rest is lost
};

/// envelope is what arrives with a unix message besides its bytes.
struct envelope {
  address from{};                                    ///< the sender ("(unnamed)" when unbound)
  std::vector<int> fds{};                            ///< descriptors sent with it (appended; close-on-exec;
                                                     ///< the caller owns and closes them)
  std::optional<strata::credentials> credentials{};  ///< the sender's pid/uid/gid (SCM_CREDENTIALS),
                                                     ///< when the receiver turned pass_credentials on
};

/// admission is an admission gate's verdict on a datagram.
enum class admission : std::uint8_t {
  admit,   ///< the sender may have a connection, whose first datagram this is
  refuse,  ///< the datagram is dropped, after the gate's reply if it wrote one
};

/// admission_gate is a check a layer installs on the datagram listener below it
/// (udp::listener::set_gate, unix_dgram::listener::set_gate; in a pipeline, the layer
/// right above udp-listen or unix-dgram-listen, see protocol_entry::gate). The listener
/// shows it the first datagram of every sender it has no connection and no waiting
/// datagrams for, `from` being the sender's address, *before* it keeps anything for that
/// sender: no socket, no entry, no queued byte. `admit`: the listener goes on as without
/// a gate (the datagram is the first its connection receives). `refuse`: the datagram is
/// dropped; a gate that wants to answer writes one datagram into `reply` (empty on entry),
/// which the listener sends to `from` from its listening socket at once or never (a full
/// send buffer loses it: the peer sends again). A stateless handshake step such as DTLS's
/// cookie exchange (dtls::cookie_gate) thus costs a listener nothing per forged sender.
/// Called on the listener's thread, inside its accept; must not block. The datagrams of
/// a sender whose first was admitted and that waits for its accept are not shown again.
using admission_gate =
    std::function<admission(const address& from, const_buffer datagram, std::vector<std::byte>& reply)>;

/// datagram_listener_stats tells what a datagram listener (udp-listen, unix-dgram-listen)
/// did with the datagrams of senders it had not accepted yet.
struct datagram_listener_stats {
  std::uint64_t accepted = 0;         ///< connections handed out
  std::uint64_t admitted = 0;         ///< first datagrams the gate admitted
  std::uint64_t refused = 0;          ///< datagrams the gate refused (each dropped, nothing kept)
  std::uint64_t answered = 0;         ///< replies to refused datagrams sent
  std::uint64_t dropped = 0;          ///< datagrams of waiting senders dropped at a cap
  std::size_t pending_senders = 0;    ///< senders waiting for an accept, now
  std::size_t pending_datagrams = 0;  ///< their datagrams, now
  std::size_t pending_bytes = 0;      ///< the bytes of those datagrams, now
};

}  // namespace strata
