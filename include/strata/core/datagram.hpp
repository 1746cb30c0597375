// What a message carries besides its bytes, for the message transports (udp, unix_dgram,
// seqpacket) and any_datagram: the size and sender of one connection-less receive
// (received, the result of datagram_socket's recv_from in core/stream.hpp), the slots of
// a batch send or receive (outgoing_datagram, incoming_datagram) and the ancillary data
// of a unix message (envelope). Plain values: the caller owns every buffer they point to.
#pragma once

#include <cstddef>
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

}  // namespace strata
