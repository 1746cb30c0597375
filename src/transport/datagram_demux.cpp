#include "datagram_demux.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "packet_io.hpp"

namespace strata::detail {
namespace {

/// scratch_size is room for any UDP datagram (65507 over IPv4, 65527 over IPv6).
constexpr std::size_t scratch_size = 65536;

/// push appends a copy of `data` to `b`.
void push(datagram_backlog& b, const std::byte* data, std::size_t n) {
  b.datagrams.emplace_back(data, data + n);
  b.bytes += n;
}

/// pop drops the oldest datagram of `b`, releasing the memory of an emptied backlog.
void pop(datagram_backlog& b) noexcept {
  b.bytes -= b.datagrams[b.head].size();
  b.datagrams[b.head] = {};
  if (++b.head == b.datagrams.size()) {
    b.datagrams = {};
    b.head = 0;
  }
}

std::size_t waiting(const datagram_backlog& b) noexcept { return b.datagrams.size() - b.head; }

/// find_pending is the entry of `from` in l.pending, or nullptr. Newest first: a burst
/// comes from one sender.
pending_sender* find_pending(datagram_listener_state& l, const address& from) noexcept {
  for (auto it = l.pending.rbegin(); it != l.pending.rend(); ++it) {
    if (same_sender(it->from, from)) return &*it;
  }
  return nullptr;
}

/// sender_of turns a received name into an address; an empty one (a unix sender that is
/// not bound) is the unnamed unix address.
address sender_of(const packet_socket_state& s, const sockaddr_storage& ss, socklen_t len) {
  if (len == 0 && s.is_unix) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    return address::from_sockaddr(reinterpret_cast<const sockaddr*>(&un), sizeof(sa_family_t));
  }
  return address::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

/// admitted asks l's gate about the first datagram of `from` (nothing is kept for it
/// yet) and sends the reply of a refusal from socket `fd`, at once or never.
bool admitted(datagram_listener_state& l, int fd, const address& from, const std::byte* data, std::size_t n) {
  if (!l.gate) return true;
  l.reply.clear();
  if (l.gate(from, const_buffer(data, n), l.reply) == admission::admit) {
    ++l.stats.admitted;
    return true;
  }
  ++l.stats.refused;
  if (!l.reply.empty() && from.size() > sizeof(sa_family_t)) {
    auto sent = ::sendto(fd, l.reply.data(), l.reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL, from.data(),
                         static_cast<socklen_t>(from.size()));
    if (sent >= 0) ++l.stats.answered;
  }
  l.reply.clear();
  return false;
}

/// keep adds one datagram of `from` (not the accepted peer), taken off socket `fd`, to
/// l.pending within the caps; the first of a sender only if the gate admits it.
void keep(datagram_listener_state& l, int fd, const address& from, const std::byte* data, std::size_t n) {
  auto* entry = find_pending(l, from);
  if (!entry && !admitted(l, fd, from, data, n)) return;
  bool room = l.pending_datagrams < l.max_datagrams && l.pending_bytes + n <= l.max_bytes &&
              (!entry || waiting(entry->backlog) < l.max_per_sender);
  if (!room) {
    ++l.stats.dropped;
    return;
  }
  if (!entry) entry = &l.pending.emplace_back(pending_sender{from, {}});
  push(entry->backlog, data, n);
  ++l.pending_datagrams;
  l.pending_bytes += n;
}

/// peeked is the datagram at the head of a socket's queue, left there.
struct peeked {
  address from;
  std::size_t size = 0;
};

/// peek_datagram waits for a datagram on `s` and copies it whole into l.scratch (grown to
/// fit) without taking it.
task<result<peeked>> peek_datagram(packet_socket_state& s, datagram_listener_state& l, deadline dl) {
  if (!s.fd) co_return errc::closed;
  if (l.scratch.size() < scratch_size) l.scratch.resize(scratch_size);
  const int fd = s.fd.get();
  for (;;) {
    sockaddr_storage ss{};
    msghdr msg{};
    iovec iov{l.scratch.data(), l.scratch.size()};
    auto n = co_await s.fd.perform_read(
        [&] {
          msg = msghdr{};
          msg.msg_iov = &iov;
          msg.msg_iovlen = 1;
          msg.msg_name = &ss;
          msg.msg_namelen = sizeof ss;
          return ::recvmsg(fd, &msg, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
        },
        dl);
    if (!n) co_return unexpected(n.error());
    if (*n > l.scratch.size()) {
      l.scratch.resize(*n);  // a unix datagram may be larger than any UDP one
      continue;
    }
    co_return peeked{sender_of(s, ss, msg.msg_namelen), *n};
  }
}

}  // namespace

void set_pending_caps(datagram_listener_state& l, int fd, std::size_t bytes, std::size_t datagrams,
                      std::size_t per_sender) noexcept {
  if (bytes == 0) {
    int size = 0;
    socklen_t len = sizeof size;
    if (fd >= 0 && ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &len) == 0 && size > 0)
      bytes = static_cast<std::size_t>(size);
    else
      bytes = 212992;  // net.core.rmem_default's usual value
  }
  l.max_bytes = bytes;
  l.max_datagrams = datagrams;
  l.max_per_sender = per_sender;
}

task<result<address>> next_sender(packet_socket_state& s, datagram_listener_state& l,
                                  datagram_backlog& backlog, deadline dl) {
  if (!l.pending.empty()) {
    auto first = std::move(l.pending.front());
    l.pending.erase(l.pending.begin());
    l.pending_datagrams -= waiting(first.backlog);
    l.pending_bytes -= first.backlog.bytes;
    backlog = std::move(first.backlog);
    co_return first.from;
  }
  if (!l.gate) co_return co_await peek_sender(s, dl);
  // Each refused datagram is taken off the queue and answered, and the wait goes on.
  for (;;) {
    auto head = co_await peek_datagram(s, l, dl);
    if (!head) co_return unexpected(head.error());
    if (admitted(l, s.fd.get(), head->from, l.scratch.data(), head->size)) co_return head->from;
    (void)::recv(s.fd.get(), nullptr, 0, MSG_TRUNC | MSG_DONTWAIT);
  }
}

void drain_queue(packet_socket_state& s, datagram_listener_state& l, const address& peer,
                 datagram_backlog& backlog) {
  if (l.scratch.size() < scratch_size) l.scratch.resize(scratch_size);
  const int fd = s.fd.get();
  // Bounded, so that senders that do not pause cannot keep it going: the peer's by the
  // caps of a waiting sender's, everyone's by twice the datagram cap (what a receive
  // buffer holds before the call is well below it).
  std::size_t peer_bytes = 0, peer_datagrams = 0, taken = 0;
  while (peer_bytes < l.max_bytes && peer_datagrams < l.max_datagrams && taken < 2 * l.max_datagrams) {
    sockaddr_storage ss{};
    iovec iov{l.scratch.data(), l.scratch.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_name = &ss;
    msg.msg_namelen = sizeof ss;
    // Straight to the kernel, not through the loop's readiness hint: a fresh socket's
    // queue is read whatever the hint remembers of its descriptor number. (The hint may
    // stay "ready": the next wait then tries once more before it parks.)
    ssize_t got = ::recvmsg(fd, &msg, MSG_TRUNC | MSG_DONTWAIT);
    if (got < 0 && errno == EINTR) continue;
    // Empty (or a pending error such as an ICMP port unreachable, which the accepted
    // connection would report once anyway): done.
    if (got < 0) break;
    ++taken;
    auto n = static_cast<std::size_t>(got);
    if (n > l.scratch.size()) {
      ++l.stats.dropped;  // larger than any datagram of the family: cannot happen
      continue;
    }
    auto from = sender_of(s, ss, msg.msg_namelen);
    if (same_sender(from, peer)) {
      push(backlog, l.scratch.data(), n);
      peer_bytes += n;
      ++peer_datagrams;
    } else {
      keep(l, fd, from, l.scratch.data(), n);
    }
  }
}

datagram_listener_stats demux_stats(const datagram_listener_state& l) noexcept {
  auto out = l.stats;
  out.pending_senders = l.pending.size();
  out.pending_datagrams = l.pending_datagrams;
  out.pending_bytes = l.pending_bytes;
  return out;
}

void clear_pending(datagram_listener_state& l) noexcept {
  l.pending.clear();
  l.pending_datagrams = 0;
  l.pending_bytes = 0;
}

task<result<std::size_t>> recv_backlog(packet_socket_state& s, datagram_backlog& b, mutable_buffer buf) {
  if (!s.fd) co_return errc::closed;
  const auto& d = b.datagrams[b.head];
  const std::size_t n = d.size();
  if (n > buf.size()) {
    if (!s.keep_too_large) pop(b);
    co_return errc::message_too_large;
  }
  if (n) std::memcpy(buf.data(), d.data(), n);
  pop(b);
  co_return n;
}

task<result<std::size_t>> recv_backlog_batch(packet_socket_state& s, datagram_backlog& b,
                                             std::span<incoming_datagram> slots, address from) {
  if (!s.fd) co_return errc::closed;
  std::size_t filled = 0;
  for (auto& slot : slots) {
    if (b.empty()) break;
    const auto& d = b.datagrams[b.head];
    const std::size_t n = std::min(d.size(), slot.buf.size());
    if (n) std::memcpy(slot.buf.data(), d.data(), n);
    slot.size = d.size();
    slot.from = from;
    slot.truncated = d.size() > slot.buf.size();
    pop(b);
    ++filled;
  }
  co_return filled;
}

}  // namespace strata::detail
