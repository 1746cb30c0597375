#include "packet_io.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>

#include "io_parts.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/timer.hpp"
#include "strata/transport/unix.hpp"  // max_fds_per_message

namespace strata::detail {
namespace {

// Room for the most descriptors a message may carry plus one set of credentials.
constexpr std::size_t control_bytes =
    CMSG_SPACE(sizeof(int) * uds::max_fds_per_message) + CMSG_SPACE(sizeof(ucred));

// waited_out: the error came from the wait (the deadline or the scope), not the socket.
bool waited_out(std::error_code ec) noexcept {
  return ec == errc::timed_out || ec == errc::operation_canceled;
}

void close_all(std::span<const int> fds) noexcept {
  for (int fd : fds) ::close(fd);
}

/// ancillary collects what a recvmsg delivered besides the bytes.
struct ancillary {
  std::vector<int> fds;
  std::optional<strata::credentials> credentials;

  void take(msghdr& msg) {
    take_fds(msg, fds);
    for (auto* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET) continue;
      if (cm->cmsg_type == SCM_CREDENTIALS && cm->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
        ucred cred;
        std::memcpy(&cred, CMSG_DATA(cm), sizeof cred);
        credentials = strata::credentials{cred.pid, cred.uid, cred.gid};
      }
    }
  }
  void drop() noexcept {
    close_all(fds);
    fds.clear();
  }
};

address sender_of(const sockaddr_storage& ss, socklen_t len) {
  return address::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

address unnamed_unix() {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  return address::from_sockaddr(reinterpret_cast<const sockaddr*>(&un), sizeof(sa_family_t));
}

/// fail_read / fail_write record a sticky error for one direction (the first one stays).
void fail_read(packet_socket_state& s, std::error_code ec) noexcept {
  if (!s.read_error) s.read_error = ec;
}
void fail_write(packet_socket_state& s, std::error_code ec) noexcept {
  if (!s.write_error) s.write_error = ec;
}

/// sender turns a received name into an address; an empty one (a unix sender that is
/// not bound) becomes the unnamed unix address on a unix socket.
address sender(const packet_socket_state& s, const void* name, unsigned len) {
  if (len == 0 && s.is_unix) return unnamed_unix();
  return address::from_sockaddr(static_cast<const sockaddr*>(name), len);
}

/// receive_failed turns a receive's error into the caller's (sticky for sequenced
/// sockets; a wait's timeout or cancel never is).
std::error_code receive_failed(packet_socket_state& s, std::error_code ec) noexcept {
  if (waited_out(ec)) return ec;
  if (ec == errc::closed) {
    fail_read(s, ec);  // closed while waiting
    return ec;
  }
  if (s.kind != packet_kind::sequenced) return ec;
  fail_read(s, ec);
  return s.read_error;
}

}  // namespace

bool same_sender(const address& a, const address& b) noexcept {
  if (a.kind() != b.kind()) return false;
  if (a.kind() == address::family::ipv4) {
    auto* x = reinterpret_cast<const sockaddr_in*>(a.data());
    auto* y = reinterpret_cast<const sockaddr_in*>(b.data());
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a.kind() == address::family::ipv6) {
    auto* x = reinterpret_cast<const sockaddr_in6*>(a.data());
    auto* y = reinterpret_cast<const sockaddr_in6*>(b.data());
    return x->sin6_port == y->sin6_port &&
           std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
  }
  return a == b;
}

bool unix_socket_in_use(const address& where, int type) noexcept {
  int fd = ::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int rc = ::connect(fd, where.data(), static_cast<socklen_t>(where.size()));
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err != ECONNREFUSED && err != ENOENT;
}

result<bound_unix_socket> bind_unix(const address& where, int type, bool unlink_stale) {
  if (!where.is_unix()) return errc::invalid_argument;
  std::string path;
  if (where.kind() == address::family::unix_path) {
    path = where.to_string();
    struct stat st {};
    if (unlink_stale && ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      if (unix_socket_in_use(where, type)) return unexpected(from_errno(EADDRINUSE));
      ::unlink(path.c_str());
    }
  }
  int fd = ::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return unexpected(from_errno(errno));
  if (::bind(fd, where.data(), static_cast<socklen_t>(where.size())) < 0) {
    int err = errno;
    ::close(fd);
    return unexpected(from_errno(err));
  }
  return bound_unix_socket{fd, unix_socket_file{std::move(path)}};
}

std::size_t unix_max_message(int fd) noexcept {
  int size = 0;
  socklen_t len = sizeof size;
  if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &len) < 0 || size <= 32) return 0;
  return static_cast<std::size_t>(size) - 32;
}

result<credentials> unix_peer_credentials(int fd) {
  if (fd < 0) return errc::closed;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return unexpected(from_errno(errno));
  if (cred.pid == 0) return errc::not_supported;
  return credentials{cred.pid, cred.uid, cred.gid};
}

result<void> set_pass_credentials(int fd, bool on) {
  if (fd < 0) return errc::closed;
  int value = on ? 1 : 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &value, sizeof value) < 0) return from_errno(errno);
  return {};
}

// -- life cycle ----------------------------------------------------------------------------

void close_packet_now(packet_socket_state& s) noexcept {
  s.fd.close();
  s.read_error = s.write_error = errc::closed;
}

int release_packet(packet_socket_state& s) noexcept {
  s.read_error = s.write_error = errc::closed;
  return s.fd.release();
}

result<address> packet_peer_address(const packet_socket_state& s) {
  if (!s.fd) return errc::closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(s.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
    // A peer kept in user space (see only_from) is still the peer.
    if (errno == ENOTCONN && s.only_from) return *s.only_from;
    return unexpected(from_errno(errno));
  }
  return sender_of(ss, len);
}

// -- send ------------------------------------------------------------------------------------

task<result<void>> send_packet(packet_socket_state& s, const_buffers bufs, const address* to,
                               std::span<const int> fds, deadline dl) {
  if (s.write_error) co_return s.write_error;
  if (!s.fd) co_return errc::closed;
  if (fds.size() > uds::max_fds_per_message) co_return errc::invalid_argument;
  iovec_list iov(bufs);
  if (s.max_send && iov.total() > s.max_send) co_return errc::message_too_large;
  control_buffer<control_bytes> control;  // attach_fds fills what it uses
  const int fd = s.fd.get();
  // A message goes whole or not at all, so a successful send sent all of it.
  result<std::size_t> sent = std::size_t{0};
  if (fds.empty() && iov.count() <= 1) {
    // One buffer and nothing attached: send/sendto, which spare the kernel the import
    // of a msghdr and an iovec array (sendmsg's copy_msghdr_from_user; see
    // docs/performance.md, DTLS).
    const void* data = iov.count() ? iov.data()->iov_base : nullptr;
    const std::size_t size = iov.total();
    if (!to) {
      sent = co_await s.fd.perform_write([&] { return ::send(fd, data, size, MSG_NOSIGNAL); }, dl);
    } else {
      auto send_to = [&] {
        return ::sendto(fd, data, size, MSG_NOSIGNAL, to->data(), static_cast<socklen_t>(to->size()));
      };
      // (if/else, not ?:, around co_await: GCC 12 runs a conditional's awaits twice.)
      if (s.sends_poll_on_full) {
        sent = co_await s.fd.perform_polled(send_to, dl);
      } else {
        sent = co_await s.fd.perform_write(send_to, dl);
      }
    }
  } else {
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.count();
    if (to) {
      msg.msg_name = const_cast<sockaddr*>(to->data());
      msg.msg_namelen = static_cast<socklen_t>(to->size());
    }
    attach_fds(msg, control, fds);
    auto send = [&] { return ::sendmsg(fd, &msg, MSG_NOSIGNAL); };
    if (to && s.sends_poll_on_full) {
      sent = co_await s.fd.perform_polled(send, dl);
    } else {
      sent = co_await s.fd.perform_write(send, dl);
    }
  }
  if (sent) co_return result<void>{};
  auto ec = sent.error();
  if (!waited_out(ec) && s.kind == packet_kind::sequenced && ec == errc::broken) fail_write(s, ec);
  co_return ec;
}

result<bool> try_send_packet(packet_socket_state& s, const_buffer buf, const address* to) {
  if (s.write_error) return unexpected(s.write_error);
  if (!s.fd) return errc::closed;
  if (s.max_send && buf.size() > s.max_send) return errc::message_too_large;
  const int fd = s.fd.get();
  result<std::size_t> sent = std::size_t{0};
  if (to) {
    sent = s.fd.try_write([&] {
      return ::sendto(fd, buf.data(), buf.size(), MSG_NOSIGNAL, to->data(),
                      static_cast<socklen_t>(to->size()));
    });
  } else {
    sent = s.fd.try_write([&] { return ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL); });
  }
  if (sent) return true;
  auto ec = sent.error();
  if (ec == std::errc::resource_unavailable_try_again) return false;
  if (s.kind == packet_kind::sequenced && ec == errc::broken) fail_write(s, ec);
  return unexpected(ec);
}

task<result<std::size_t>> send_batch_packets(packet_socket_state& s, std::span<const outgoing_datagram> msgs,
                                             deadline dl) {
  if (s.write_error) co_return unexpected(s.write_error);
  if (!s.fd) co_return errc::closed;
  if (msgs.empty()) co_return std::size_t{0};
  std::size_t parts = 0;
  for (const auto& m : msgs) {
    if (s.max_send && m.data.total_size() > s.max_send) co_return errc::message_too_large;
    parts += m.data.view().size();
  }
  std::vector<mmsghdr> headers(msgs.size());
  std::vector<iovec> iovs(parts);
  std::size_t at = 0;
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    auto& h = headers[i].msg_hdr;
    h = msghdr{};
    h.msg_iov = iovs.data() + at;
    for (auto b : msgs[i].data.view()) {
      if (b.empty()) continue;
      iovs[at++] = iovec{const_cast<std::byte*>(b.data()), b.size()};
      ++h.msg_iovlen;
    }
    if (msgs[i].to) {
      h.msg_name = const_cast<sockaddr*>(msgs[i].to->data());
      h.msg_namelen = static_cast<socklen_t>(msgs[i].to->size());
    }
  }
  const int fd = s.fd.get();
  std::size_t done = 0;
  while (done < msgs.size()) {
    auto chunk = static_cast<unsigned>(std::min<std::size_t>(msgs.size() - done, UIO_MAXIOV));
    auto n = co_await s.fd.perform_write(
        [&]() -> ssize_t {
          int got = ::sendmmsg(fd, headers.data() + done, chunk, MSG_NOSIGNAL);
          if (got == 0) errno = EAGAIN;  // nothing went: wait for room
          return got > 0 ? got : -1;
        },
        dl);
    if (!n) {
      if (done > 0) break;
      co_return unexpected(n.error());
    }
    done += *n;
  }
  co_return done;
}

// -- receive ---------------------------------------------------------------------------------

task<result<std::size_t>> recv_packet(packet_socket_state& s, mutable_buffer buf, address* from,
                                      envelope* env, deadline dl) {
  if (s.read_error) co_return unexpected(s.read_error);
  if (!s.fd) co_return errc::closed;
  const int fd = s.fd.get();
  // What the caller and the filter need decides the call: recvmsg only for ancillary
  // data, recvfrom when the sender matters, recv otherwise. recv and recvfrom spare the
  // kernel the import of a msghdr and an iovec (docs/performance.md, DTLS), recv the
  // sender's address too, and a connected socket's caller then gets no address made.
  const bool want_sender = from || env || s.only_from;
  control_buffer<control_bytes> control;
  for (;;) {
    sockaddr_storage ss;
    socklen_t name_len = 0;
    if (s.keep_too_large && buf.size() < s.max_recv) {
      // Learn the size (and the sender) without taking the message.
      auto size = co_await s.fd.perform_read(
          [&] {
            name_len = want_sender ? sizeof ss : 0;
            return ::recvfrom(fd, nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT,
                              want_sender ? reinterpret_cast<sockaddr*>(&ss) : nullptr,
                              want_sender ? &name_len : nullptr);
          },
          dl);
      // The peek may take a pending error (e.g. an ICMP port unreachable): report it now.
      if (!size) co_return unexpected(receive_failed(s, size.error()));
      if (*size > buf.size()) {
        if (!s.only_from || same_sender(sender(s, &ss, name_len), *s.only_from)) {
          co_return errc::message_too_large;
        }
        // Someone else's message: the receive below drops it.
      }
    }
    msghdr msg{};
    iovec iov{buf.data(), buf.size()};
    result<std::size_t> n = std::size_t{0};
    if (env) {
      n = co_await s.fd.perform_read(
          [&] {
            msg = msghdr{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_name = &ss;
            msg.msg_namelen = sizeof ss;
            // Without room for ancillary data the kernel closes descriptors sent along.
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            return ::recvmsg(fd, &msg, MSG_TRUNC | MSG_CMSG_CLOEXEC);
          },
          dl);
      name_len = msg.msg_namelen;
    } else if (want_sender) {
      n = co_await s.fd.perform_read(
          [&] {
            name_len = sizeof ss;
            return ::recvfrom(fd, buf.data(), buf.size(), MSG_TRUNC, reinterpret_cast<sockaddr*>(&ss),
                              &name_len);
          },
          dl);
    } else {
      n = co_await s.fd.perform_read([&] { return ::recv(fd, buf.data(), buf.size(), MSG_TRUNC); }, dl);
    }
    if (!n) co_return unexpected(receive_failed(s, n.error()));
    ancillary extra;
    if (env) extra.take(msg);
    std::optional<address> from_addr;  // made only when someone looks at it
    if (want_sender) from_addr.emplace(sender(s, &ss, name_len));
    if (s.only_from && s.kind == packet_kind::datagram && !same_sender(*from_addr, *s.only_from)) {
      extra.drop();
      continue;
    }
    if (*n == 0 && s.kind == packet_kind::sequenced) {
      extra.drop();
      fail_read(s, errc::end_of_stream);
      co_return unexpected(s.read_error);
    }
    if (*n > buf.size()) {
      // The kernel dropped what did not fit; descriptors sent with it go too.
      extra.drop();
      co_return errc::message_too_large;
    }
    if (from) *from = *from_addr;
    if (env) {
      env->from = *from_addr;
      env->fds.insert(env->fds.end(), extra.fds.begin(), extra.fds.end());
      env->credentials = extra.credentials;
    }
    co_return *n;
  }
}

task<result<std::size_t>> recv_batch_packets(packet_socket_state& s, std::span<incoming_datagram> slots,
                                             deadline dl) {
  if (s.read_error) co_return unexpected(s.read_error);
  if (!s.fd) co_return errc::closed;
  if (slots.empty()) co_return std::size_t{0};
  auto count = std::min<std::size_t>(slots.size(), UIO_MAXIOV);
  std::vector<mmsghdr> headers(count);
  std::vector<iovec> iovs(count);
  std::vector<sockaddr_storage> names(count);
  const int fd = s.fd.get();
  for (;;) {
    auto got = co_await s.fd.perform_read(
        [&]() -> ssize_t {
          for (std::size_t i = 0; i < count; ++i) {
            iovs[i] = iovec{slots[i].buf.data(), slots[i].buf.size()};
            auto& h = headers[i].msg_hdr;
            h = msghdr{};
            h.msg_iov = &iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = &names[i];
            h.msg_namelen = sizeof(sockaddr_storage);
            headers[i].msg_len = 0;
          }
          return ::recvmmsg(fd, headers.data(), static_cast<unsigned>(count), MSG_TRUNC | MSG_DONTWAIT,
                            nullptr);
        },
        dl);
    if (!got) co_return unexpected(got.error());
    auto n = *got;
    // Keep the wanted messages, in order, at the front of `slots`. A slot whose message
    // moves down is copied: its bytes sit in its own buffer.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
      auto from_addr = sender(s, &names[i], headers[i].msg_hdr.msg_namelen);
      if (s.only_from && !same_sender(from_addr, *s.only_from)) continue;
      std::size_t size = headers[i].msg_len;
      bool truncated = (headers[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 || size > slots[i].buf.size();
      if (kept != i) {
        auto in = std::min(size, slots[i].buf.size());
        auto fit = std::min(in, slots[kept].buf.size());
        std::memmove(slots[kept].buf.data(), slots[i].buf.data(), fit);
        truncated = truncated || fit < size;
      }
      slots[kept].size = size;
      slots[kept].from = from_addr;
      slots[kept].truncated = truncated;
      ++kept;
    }
    if (kept > 0) co_return kept;
  }
}

task<result<address>> peek_sender(packet_socket_state& s, deadline dl) {
  if (!s.fd) co_return errc::closed;
  const int fd = s.fd.get();
  sockaddr_storage ss{};
  msghdr msg{};
  auto n = co_await s.fd.perform_read(
      [&] {
        msg = msghdr{};
        msg.msg_name = &ss;
        msg.msg_namelen = sizeof ss;
        return ::recvmsg(fd, &msg, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
      },
      dl);
  if (!n) co_return unexpected(n.error());
  co_return sender(s, &ss, msg.msg_namelen);
}

// -- shutdown and close --------------------------------------------------------------------

result<void> shutdown_packet_write(packet_socket_state& s) {
  if (!s.fd) return errc::closed;
  if (s.write_shut) return {};
  s.write_shut = true;
  if (::shutdown(s.fd.get(), SHUT_WR) < 0 && errno != ENOTCONN) {
    fail_write(s, from_errno(errno));
    return s.write_error;
  }
  fail_write(s, errc::closed);
  return {};
}

task<result<void>> close_packet(packet_socket_state& s, deadline dl) {
  if (!s.fd) co_return errc::closed;
  // Wake any task parked on this descriptor: it gets `closed`.
  s.fd.abort_waits();
  std::error_code outcome;
  if (s.kind == packet_kind::sequenced) {
    const int fd = s.fd.get();
    if (!s.write_shut) {
      s.write_shut = true;
      ::shutdown(fd, SHUT_WR);
    }
    // Orderly end, as for streams: drop what the peer still sends until it finishes.
    if (s.read_error != errc::end_of_stream && s.read_error != errc::broken) {
      thread_local std::array<std::byte, 4096> scratch;
      for (;;) {
        auto n = co_await s.fd.perform_read(
            [&] { return ::recv(fd, scratch.data(), scratch.size(), MSG_TRUNC); }, dl);
        if (n && *n > 0) continue;
        if (!n && waited_out(n.error())) outcome = n.error();
        break;
      }
    }
  }
  close_packet_now(s);
  co_return outcome;
}

}  // namespace strata::detail
