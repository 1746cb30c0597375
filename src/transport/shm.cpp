// shm: the machinery shared by every ring (segments, wait sets, the rendezvous) and the
// duplex byte stream with its listener. Broadcast rings are in shm_broadcast.cpp, the
// MPMC queue in shm_queue.cpp, the ring algorithms in shm_ring.cpp.
#include "strata/transport/shm.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>

#include "shm_internal.hpp"
#include "socket_io.hpp"
#include "strata/core/handshaking_listener.hpp"
#include "strata/runtime/event_loop.hpp"

namespace strata::shm {
namespace detail {

// -- descriptors and mappings ------------------------------------------------------------

void mapping::reset() noexcept {
  if (base_) ::munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
}

result<segment> create_segment(const layout& l) {
  segment seg;
  int fd = ::memfd_create("strata-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return unexpected(from_errno(errno));
  seg.memfd = pollable_fd(fd);
  if (::ftruncate(fd, static_cast<off_t>(l.size)) < 0) return unexpected(from_errno(errno));
  // Sealed size: a peer can neither shrink the object under our mapping (SIGBUS) nor grow it.
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
    return unexpected(from_errno(errno));
  void* p = ::mmap(nullptr, l.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return unexpected(from_errno(errno));
  seg.map = mapping(static_cast<std::byte*>(p), l.size);
  seg.shape = l;
  auto h = header_of(l);
  std::memcpy(seg.map.base(), &h, sizeof h);
  if (l.kind == segment_kind::queue) {
    auto v = ring_view::of(seg.map.base(), l);
    for (std::uint64_t i = 0; i < l.capacity; ++i) atom(v.slot(i)->seq).store(i, std::memory_order_relaxed);
  }
  if (l.kind != segment_kind::stream) {
    auto v = ring_view::of(seg.map.base(), l);
    for (std::uint32_t i = 0; i < l.members; ++i) {
      atom(v.table[i].send_claim).store(no_claim, std::memory_order_relaxed);
      atom(v.table[i].recv_claim).store(no_claim, std::memory_order_relaxed);
    }
  }
  std::atomic_thread_fence(std::memory_order_release);
  return seg;
}

result<segment> attach_segment(int memfd, segment_kind expected) {
  int seals = ::fcntl(memfd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) return errc::protocol_error;
  struct stat st {};
  if (::fstat(memfd, &st) < 0) return unexpected(from_errno(errno));
  auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < line_size || file_size > max_segment_bytes) return errc::protocol_error;
  void* p = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (p == MAP_FAILED) return unexpected(from_errno(errno));
  segment seg;
  seg.map = mapping(static_cast<std::byte*>(p), file_size);
  // Validate a private copy: the creator could rewrite the header after we looked.
  std::array<std::byte, sizeof(segment_header)> copy;
  std::memcpy(copy.data(), seg.map.base(), copy.size());
  auto l = parse_layout(copy, file_size);
  if (!l) return unexpected(l.error());
  if (l->kind != expected) return errc::protocol_error;
  seg.shape = *l;
  return seg;
}

result<pollable_fd> make_eventfd() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return unexpected(from_errno(errno));
  return pollable_fd(fd);
}

void wake(int efd) noexcept {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(efd, &one, sizeof one);
}

// -- waitset --------------------------------------------------------------------------------

result<void> waitset::open(std::span<const int> wake_fds, int hangup_fd, bool records) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return from_errno(errno);
  epoll_.close();
  epoll_ = pollable_fd(ep);
  for (int fd : wake_fds) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return from_errno(errno);
  }
  hangup_fd_ = hangup_fd;
  hung_up_ = false;
  if (hangup_fd >= 0) {
    epoll_event ev{};
    // The hang-up, and end records when asked for. A hang-up that happened before
    // registration is reported at once.
    ev.events = EPOLLRDHUP | EPOLLET | (records ? EPOLLIN : 0u);
    ev.data.fd = hangup_fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, hangup_fd, &ev) < 0) return from_errno(errno);
  }
  return {};
}

int waitset::refresh() noexcept {
  if (!epoll_) return 0;
  std::array<epoll_event, 8> events;
  int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 0);
  if (n <= 0) return 0;
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd == hangup_fd_ && (events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
      hung_up_ = true;
  }
  return n;
}

namespace {

// collect is the "read" of a waitset's epoll descriptor: its pending events, or EAGAIN.
ssize_t collect(waitset& set) noexcept {
  int n = set.refresh();
  if (n > 0) return n;
  errno = EAGAIN;
  return -1;
}

}  // namespace

bool waitset::hung_up() noexcept {
  if (hung_up_ || hangup_fd_ < 0 || !epoll_) return hung_up_;
  // The loop's readiness hint is set by every event it saw on the set since the last
  // drain; without one, nothing new can have arrived and no system call is made.
  (void)epoll_.try_read([this] { return collect(*this); });
  return hung_up_;
}

task<std::error_code> waitset::wait(deadline dl) {
  if (!epoll_) co_return errc::closed;
  // Events the loop reported while nobody waited raised no edge we could wait for: the
  // first try collects them. After that, any new event raises an edge on the set.
  auto n = co_await epoll_.perform_read([this] { return collect(*this); }, dl);
  if (!n) co_return n.error();
  co_return std::error_code{};
}

// -- end records ------------------------------------------------------------------------------

result<void> end_records::poll(int fd) noexcept {
  if (fd < 0) return {};
  while (!eof) {
    ssize_t n = ::recv(fd, partial_.data() + got_, partial_.size() - got_, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
      eof = true;  // reset: the peer is gone
      break;
    }
    if (n == 0) {
      eof = true;
      if (got_ != 0) return errc::protocol_error;  // a torn record
      break;
    }
    got_ += static_cast<std::size_t>(n);
    if (got_ < partial_.size()) continue;
    got_ = 0;
    auto r = decode_end(partial_);
    if (!r) return errc::protocol_error;
    if (r->kind == end_kind::fin) {
      if (fin) return errc::protocol_error;
      fin = r->position;
    } else {
      if (bye) return errc::protocol_error;
      bye = true;
    }
  }
  return {};
}

void send_end(int fd, const end_record& r) noexcept {
  if (fd < 0) return;
  std::array<std::byte, end_record_size> wire;
  encode_end(r, wire);
  for (;;) {
    ssize_t n = ::send(fd, wire.data(), wire.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

// -- rendezvous -------------------------------------------------------------------------------

task<result<void>> send_reply(uds::stream& ctrl, const hello& reply, std::span<const int> fds, deadline dl) {
  std::array<std::byte, hello_size> wire;
  encode_hello(reply, wire);
  if (fds.empty()) co_return co_await ctrl.write(const_buffer(wire), dl);
  co_return co_await ctrl.send_fds(const_buffer(wire), fds, dl);
}

task<result<hello>> read_request(uds::stream& ctrl, deadline dl) {
  std::array<std::byte, hello_size> wire;
  auto r = co_await read_exact(ctrl, wire, dl);
  if (!r)
    co_return unexpected(r.error() == errc::end_of_stream ? make_error_code(errc::protocol_error)
                                                          : r.error());
  co_return decode_hello(wire);
}

task<result<hello>> exchange_hello(uds::stream& ctrl, const hello& request, std::vector<pollable_fd>& fds,
                                   deadline dl) {
  std::array<std::byte, hello_size> wire;
  encode_hello(request, wire);
  if (auto w = co_await ctrl.write(const_buffer(wire), dl); !w) co_return unexpected(w.error());
  std::size_t got = 0;
  std::vector<int> raw;
  while (got < wire.size()) {
    raw.clear();
    auto n = co_await ctrl.recv_fds(mutable_buffer(wire).subspan(got), raw, dl);
    for (int fd : raw) fds.emplace_back(fd);
    if (!n) {
      co_return unexpected(n.error() == errc::end_of_stream ? make_error_code(errc::protocol_error)
                                                            : n.error());
    }
    got += *n;
  }
  auto reply = decode_hello(wire);
  if (!reply) co_return reply;
  if (reply->fds != fds.size()) co_return errc::protocol_error;
  for (auto& fd : fds) {
    if (!strata::detail::set_nonblocking_cloexec(fd.get())) co_return errc::protocol_error;
  }
  co_return reply;
}

task<result<rendezvous>> connect_rendezvous(std::string_view name, segment_kind kind,
                                            std::uint32_t fds_expected, deadline dl) {
  auto where = rendezvous_address(name);
  if (!where) co_return unexpected(where.error());
  auto ctrl = co_await uds::connect(*where, dl);
  if (!ctrl) co_return unexpected(ctrl.error());
  rendezvous out{std::move(*ctrl), {}, {}};
  hello request;
  request.kind = kind;
  auto reply = co_await exchange_hello(out.ctrl, request, out.fds, dl);
  if (!reply) co_return unexpected(reply.error());
  switch (reply->status) {
    case hello_status::ok:
      break;
    case hello_status::wrong_kind:
      co_return errc::protocol_error;
    case hello_status::full:
      co_return unexpected(from_errno(EUSERS));
    case hello_status::failed:
      co_return unexpected(from_errno(EIO));
  }
  if (reply->kind != kind || reply->fds != fds_expected) co_return errc::protocol_error;
  out.reply = *reply;
  co_return out;
}

std::uint32_t peer_pid(int fd) noexcept {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return 0;
  return static_cast<std::uint32_t>(cred.pid);
}

}  // namespace detail

result<address> rendezvous_address(std::string_view name) {
  if (name.empty() || name.find('\0') != std::string_view::npos) return errc::invalid_argument;
  if (name.front() == '/' || name.substr(0, 2) == "./") return address::unix_path(name);
  if (name.front() == '@') {
    if (name.size() == 1) return errc::invalid_argument;
    return address::abstract(name.substr(1));
  }
  return address::abstract("strata-shm-" + std::string(name));
}

// -- stream -----------------------------------------------------------------------------------
//
// Ring r of a stream segment carries bytes from side r to side 1 - r (side 0 accepted,
// side 1 connected). Its eventfds: data(r) = efd[2r] wakes its sleeping reader, space(r)
// = efd[2r + 1] its sleeping writer.

namespace {

constexpr std::uint32_t stream_fds = 5;  // memfd, then data(0), space(0), data(1), space(1)

}  // namespace

struct stream::state {
  detail::segment seg;
  uds::stream ctrl;
  std::array<pollable_fd, 4> efd;
  spsc_reader rx;
  spsc_writer tx;
  int rx_space = -1;  ///< we wake the peer's writer here after reading
  int tx_data = -1;   ///< we wake the peer's reader here after writing
  detail::waitset read_ws, write_ws;
  detail::spinner read_spin, write_spin;
  wait_options wait;
  std::error_code read_error, write_error;
  detail::end_records peer;  ///< what the peer announced on the control connection
  const char* fault = nullptr;
  bool fin_sent = false;
  bool alive = true;
  bool peer_gone = false;

  state(detail::segment s, uds::stream c, std::array<pollable_fd, 4> e, int side, wait_options w)
      : seg(std::move(s)),
        ctrl(std::move(c)),
        efd(std::move(e)),
        read_spin(w.spin_limit),
        write_spin(w.spin_limit),
        wait(w) {
    int tx_ring = side, rx_ring = 1 - side;
    auto ring = [&](int r) { return reinterpret_cast<spsc_control*>(seg.map.base() + seg.shape.ring[r]); };
    auto data = [&](int r) { return seg.map.base() + seg.shape.ring[r] + sizeof(spsc_control); };
    rx = spsc_reader(ring(rx_ring), data(rx_ring), seg.shape.capacity);
    tx = spsc_writer(ring(tx_ring), data(tx_ring), seg.shape.capacity);
    rx_space = efd[2 * rx_ring + 1].get();
    tx_data = efd[2 * tx_ring].get();
    if (w.spin) {
      rx.declare_spinning();
      tx.declare_spinning();
    }
  }

  result<void> open_waits(int side) {
    int tx_ring = side, rx_ring = 1 - side;
    int rx_data = efd[2 * rx_ring].get(), tx_space = efd[2 * tx_ring + 1].get();
    if (auto r = read_ws.open(std::span<const int>(&rx_data, 1), ctrl.native_handle(), true); !r) return r;
    return write_ws.open(std::span<const int>(&tx_space, 1), ctrl.native_handle());
  }

  void fail_read(std::error_code ec) noexcept {
    if (!read_error) read_error = ec;
  }
  void fail_write(std::error_code ec) noexcept {
    if (!write_error) write_error = ec;
  }
  // corrupt records the first cause of a corrupted segment; returns shm_corrupted (a
  // protocol_error).
  std::error_code corrupt(const char* why) noexcept {
    if (!fault) fault = why ? why : "shm: impossible ring state";
    return cause::shm_corrupted;
  }
  // poll_peer reads the end records that arrived; false after a malformed one.
  bool poll_peer() noexcept {
    if (peer.poll(ctrl.native_handle())) return true;
    corrupt("shm: malformed end record on the control connection");
    return false;
  }

  // read_end decides what an empty ring means once the peer's end flag is set or its
  // control connection hung up: end_of_stream (its fin record matches what we read),
  // peer_died (no record: it died), protocol_error (a flag without a record, or a ring
  // that disagrees with the record), or nothing (more bytes to read: empty result).
  std::error_code read_end(bool flagged) noexcept {
    if (!poll_peer()) return errc::protocol_error;
    if (peer.fin) {
      // Every byte up to `end` was published before the record was sent, so the tail
      // says `end` now; we read on until our head is there too.
      std::uint64_t end = *peer.fin;
      std::uint64_t head = rx.position();
      if (static_cast<std::int64_t>(end - head) < 0) return corrupt("shm: read past the peer's end record");
      if (rx.tail_now() != end) {
        return corrupt(rx.tail_now() == head ? "shm: stream ended short of the peer's end record"
                                             : "shm: ring tail disagrees with the peer's end record");
      }
      if (head == end) return errc::end_of_stream;
      return {};
    }
    if (flagged) return corrupt("shm: end flag without the peer's end record");
    if (peer_gone || peer.eof) return errc::peer_died;
    return {};
  }

  // send_fin announces the end of our direction: the record first, then the flag (a
  // flag without a record is forged).
  void send_fin() noexcept {
    if (fin_sent) return;
    fin_sent = true;
    detail::send_end(ctrl.native_handle(), {end_kind::fin, tx.published()});
    tx.finish();
  }

  bool rx_ready() noexcept {
    auto a = rx.available();
    return !a || *a > 0 || rx.finished();
  }
  bool tx_ready() noexcept {
    auto s = tx.space();
    return !s || *s > 0 || tx.reader_closed();
  }

  // finish_tx ends our direction: the peer reads end_of_stream after the last byte.
  void finish_tx() noexcept {
    send_fin();
    if (tx.reader_needs_wake()) detail::wake(tx_data);
  }

  // release is close() without the coroutine: flags for the peer, wake our own waiters
  // (closed), then unmap. The peer keeps its own mapping of the segment.
  void release() noexcept {
    if (!alive) return;
    send_fin();
    detail::send_end(ctrl.native_handle(), {end_kind::bye, 0});
    rx.close();
    // Wake the peer's reader (end of stream) and writer (broken) whether or not they
    // announced a sleep: cheaper to reason about than the flags on this rare path.
    detail::wake(tx_data);
    detail::wake(rx_space);
    alive = false;
    read_ws.close();
    write_ws.close();
    ctrl.reset();
    for (auto& e : efd) e.close();
    seg.map.reset();
    seg.memfd.close();
    read_error = write_error = errc::closed;
  }
};

stream::stream() noexcept = default;
stream::stream(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
stream::stream(stream&&) noexcept = default;
stream& stream::operator=(stream&& other) noexcept {
  if (this != &other) {
    if (s_) s_->release();
    s_ = std::move(other.s_);
  }
  return *this;
}
stream::~stream() {
  if (s_) s_->release();
}

std::size_t stream::ring_bytes() const noexcept {
  return s_ ? static_cast<std::size_t>(s_->seg.shape.capacity) : 0;
}

std::string_view stream::fault() const noexcept { return s_ && s_->fault ? s_->fault : ""; }

result<address> stream::local_address() const {
  if (!s_ || !s_->alive) return errc::closed;
  return s_->ctrl.local_address();
}

result<address> stream::peer_address() const {
  if (!s_ || !s_->alive) return errc::closed;
  return s_->ctrl.peer_address();
}

task<result<std::size_t>> stream::read_some(mutable_buffer buf, deadline dl) {
  state* st = s_.get();
  if (!st) co_return errc::closed;
  if (st->read_error) co_return unexpected(st->read_error);
  if (buf.empty()) co_return std::size_t{0};
  for (;;) {
    auto avail = st->rx.available();
    if (!avail) {
      st->fail_read(st->corrupt(st->rx.fault()));
      co_return unexpected(st->read_error);
    }
    if (*avail > 0) {
      std::size_t n = st->rx.read(buf, *avail);
      if (st->rx.writer_needs_wake()) detail::wake(st->rx_space);
      co_return n;
    }
    // Empty. The end flag is a hint another process could have forged: the peer's end
    // record on the control connection decides (read_end).
    if (bool flagged = st->rx.finished(); flagged || st->peer_gone || st->peer.fin) {
      if (auto ec = st->read_end(flagged)) {
        st->fail_read(ec);
        co_return unexpected(st->read_error);
      }
      if (st->peer.fin) continue;  // the rest of the bytes before the end
    }
    // About to wait: the fields only we write must hold what we wrote.
    if (auto v = st->rx.verify(); !v) {
      st->fail_read(st->corrupt(st->rx.fault()));
      co_return unexpected(st->read_error);
    }
    auto w = co_await detail::await_ready(
        st->read_ws, st->read_spin, st->wait, st->alive, dl, [st] { return st->rx_ready(); },
        [st] { st->rx.prepare_wait(); }, [st] { st->rx.end_wait(); });
    if (!w) {
      if (w.error() == errc::closed) co_return errc::closed;
      co_return unexpected(w.error());
    }
    // A hang-up: look at the ring once more (bytes written before the death are still
    // ours, and a peer that finished orderly reads as end_of_stream), then report it.
    if (*w == detail::wait_outcome::hung_up) st->peer_gone = true;
    // After a sleep: an end record may be what woke us (its flag may have been wiped).
    if (*w == detail::wait_outcome::slept && !st->peer.fin) {
      if (!st->poll_peer()) {
        st->fail_read(errc::protocol_error);
        co_return unexpected(st->read_error);
      }
      if (st->peer.eof) st->peer_gone = true;
    }
  }
}

task<result<void>> stream::write(const_buffers bufs, deadline dl) {
  state* st = s_.get();
  if (!st) co_return errc::closed;
  if (st->write_error) co_return st->write_error;
  auto view = bufs.view();
  std::size_t index = 0, offset = 0, written = 0;
  auto skip_empty = [&] {
    while (index < view.size() && offset == view[index].size()) {
      ++index;
      offset = 0;
    }
  };
  skip_empty();
  while (index < view.size()) {
    if (st->tx.reader_closed()) {
      // A hint: the peer's bye record (sent before the flag) makes it true.
      if (!st->poll_peer()) {
        st->fail_write(errc::protocol_error);
      } else if (st->peer.bye) {
        st->fail_write(errc::broken);
      } else {
        st->fail_write(st->corrupt("shm: reader-closed flag without the peer's close record"));
      }
      co_return st->write_error;
    }
    auto space =
        st->tx.space(std::min(bufs.total_size() - written, static_cast<std::size_t>(st->tx.capacity())));
    if (!space) {
      st->fail_write(st->corrupt(st->tx.fault()));
      co_return st->write_error;
    }
    if (*space > 0) {
      std::size_t room = *space;
      while (room > 0 && index < view.size()) {
        std::size_t n = st->tx.write(view[index].subspan(offset), room);
        room -= n;
        offset += n;
        written += n;
        skip_empty();
      }
      st->tx.publish();
      if (st->tx.reader_needs_wake()) detail::wake(st->tx_data);
      continue;
    }
    if (st->peer_gone) {
      st->fail_write(errc::peer_died);
      co_return st->write_error;
    }
    if (auto v = st->tx.verify(); !v) {
      st->fail_write(st->corrupt(st->tx.fault()));
      co_return st->write_error;
    }
    auto w = co_await detail::await_ready(
        st->write_ws, st->write_spin, st->wait, st->alive, dl, [st] { return st->tx_ready(); },
        [st] { st->tx.prepare_wait(); }, [st] { st->tx.end_wait(); });
    if (!w) {
      if (w.error() == errc::closed) co_return errc::closed;
      // A partial write leaves the peer with an unknown prefix: the direction is lost.
      if (written > 0) st->fail_write(w.error());
      co_return w.error();
    }
    if (*w == detail::wait_outcome::hung_up) st->peer_gone = true;
  }
  co_return result<void>{};
}

task<result<void>> stream::shutdown_write(deadline) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  if (st->write_error == errc::closed) co_return result<void>{};
  st->finish_tx();
  st->fail_write(errc::closed);
  co_return result<void>{};
}

task<result<void>> stream::close(deadline) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  st->release();
  co_return result<void>{};
}

// -- listener ---------------------------------------------------------------------------------

// The listener's state is defined after serve_stream, which its handshake runs.

namespace {

// serve_stream serves one rendezvous connection: reads its request, creates the stream's
// segment and eventfds, hands them over. nullptr when the connector is dropped (bad or
// slow request, other kind); the listener goes on.
task<result<std::unique_ptr<stream::state>>> serve_stream(uds::stream& ctrl, const listen_options& options,
                                                          deadline dl) {
  using namespace detail;
  auto request_dl = dl;
  auto req = co_await read_request(ctrl, request_dl);
  if (!req) {
    if (req.error() == errc::operation_canceled || req.error() == errc::closed ||
        (req.error() == errc::timed_out && dl.expired()))
      co_return unexpected(req.error());
    co_return std::unique_ptr<stream::state>{};
  }
  hello reply;
  reply.kind = segment_kind::stream;
  if (req->kind != segment_kind::stream) {
    reply.status = hello_status::wrong_kind;
    (void)co_await send_reply(ctrl, reply, {}, request_dl);
    co_return std::unique_ptr<stream::state>{};
  }
  auto shape = make_layout(segment_kind::stream, options.ring_bytes, 0, overflow_policy::block, 0);
  auto seg = shape ? create_segment(*shape) : result<segment>(unexpected(shape.error()));
  std::array<pollable_fd, 4> efd;
  std::error_code failure = seg ? std::error_code{} : seg.error();
  for (auto& e : efd) {
    if (failure) break;
    auto fd = make_eventfd();
    if (!fd)
      failure = fd.error();
    else
      e = std::move(*fd);
  }
  if (failure) {
    reply.status = hello_status::failed;
    (void)co_await send_reply(ctrl, reply, {}, request_dl);
    co_return unexpected(failure);
  }
  std::array<int, stream_fds> fds{seg->memfd.get(), efd[0].get(), efd[1].get(), efd[2].get(), efd[3].get()};
  reply.fds = stream_fds;
  if (auto w = co_await send_reply(ctrl, reply, fds, request_dl); !w) {
    if (w.error() == errc::operation_canceled || w.error() == errc::closed) co_return unexpected(w.error());
    co_return std::unique_ptr<stream::state>{};
  }
  seg->memfd.close();  // the mapping keeps the segment; the peer has its own descriptor
  auto st =
      std::make_unique<stream::state>(std::move(*seg), std::move(ctrl), std::move(efd), 0, options.wait);
  if (auto r = st->open_waits(0); !r) co_return unexpected(r.error());
  co_return st;
}

}  // namespace

/// stream_factory makes streams for the listener's handshake (stream's constructor is
/// private).
struct stream_factory {
  static stream make(std::unique_ptr<stream::state> st) { return stream(std::move(st)); }
};

namespace {

/// serve_connector is the listener's handshake: one rendezvous connection's request,
/// answered with its rings. A connector that is silent, asks for another kind or cannot
/// be served fails its own handshake only.
struct serve_connector {
  listen_options options;
  task<result<stream>> operator()(uds::stream ctrl, deadline dl) const {
    return serve(std::move(ctrl), options, dl);
  }
  static task<result<stream>> serve(uds::stream ctrl, listen_options options, deadline dl) {
    auto served = co_await serve_stream(ctrl, options, dl);
    if (!served) co_return unexpected(served.error());
    if (!*served) co_return errc::protocol_error;  // dropped: silent, or another kind of ring
    co_return stream_factory::make(std::move(*served));
  }
};

handshake_options connector_handshakes(const listen_options& options) {
  // A connector gets 2 s to say what it wants, in its own task: a silent one delays
  // nobody else.
  return {.timeout = std::chrono::seconds(2),
          .max_pending = static_cast<std::size_t>(options.backlog > 0 ? options.backlog : 1)};
}

}  // namespace

struct listener::state {
  state(uds::listener sock, listen_options o)
      : options(o), ready(std::move(sock), serve_connector{o}, connector_handshakes(o)) {}
  listen_options options;
  handshaking_listener<uds::listener, serve_connector> ready;
  bool open = true;
};

task<result<stream>> listener::accept(deadline dl) {
  if (!s_ || !s_->open) co_return errc::closed;
  co_return co_await s_->ready.accept(dl);
}

result<address> listener::local_address() const {
  if (!s_ || !s_->open) return errc::closed;
  return s_->ready.local_address();
}

void listener::close() noexcept {
  if (!s_ || !s_->open) return;
  s_->open = false;
  s_->ready.close();
}

listener::listener() noexcept = default;
listener::listener(listener&&) noexcept = default;
listener& listener::operator=(listener&&) noexcept = default;
listener::~listener() { close(); }

result<listener> listener::bind(std::string_view name, listen_options options) {
  auto l = make_layout(segment_kind::stream, options.ring_bytes, 0, overflow_policy::block, 0);
  if (!l) return unexpected(l.error());
  auto where = rendezvous_address(name);
  if (!where) return unexpected(where.error());
  auto sock = uds::listener::bind(*where, {.backlog = options.backlog});
  if (!sock) return unexpected(sock.error());
  listener out;
  out.s_ = std::make_unique<state>(std::move(*sock), options);
  return out;
}

handshake_stats listener::handshakes() const { return s_ ? s_->ready.stats() : handshake_stats{}; }

task<result<stream>> connect(std::string_view name, deadline dl, wait_options options) {
  using namespace detail;
  auto rv = co_await connect_rendezvous(name, segment_kind::stream, stream_fds, dl);
  if (!rv) co_return unexpected(rv.error());
  auto seg = attach_segment(rv->fds[0].get(), segment_kind::stream);
  if (!seg) co_return unexpected(seg.error());
  seg->memfd.close();
  rv->fds[0].close();
  std::array<pollable_fd, 4> efd{std::move(rv->fds[1]), std::move(rv->fds[2]), std::move(rv->fds[3]),
                                 std::move(rv->fds[4])};
  auto st = std::make_unique<stream::state>(std::move(*seg), std::move(rv->ctrl), std::move(efd), 1, options);
  if (auto r = st->open_waits(1); !r) co_return unexpected(r.error());
  co_return stream(std::move(st));
}

}  // namespace strata::shm
