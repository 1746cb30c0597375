// shm broadcast: one publisher, N subscribers on one ring (shm_ring.hpp has the
// algorithm). The publisher owns the segment, two eventfds (data: subscribers sleep on
// it, one write wakes them all; space: the publisher sleeps on it under `block`) and a
// service thread that admits subscribers, drops the dead ones and wakes many sleeping
// subscribers on the publisher's behalf (reader_wake::fan_out).
#include <unistd.h>

#include <atomic>
#include <string>

#include "shm_internal.hpp"
#include "strata/runtime/event.hpp"

namespace strata::shm {
namespace {

constexpr std::uint32_t broadcast_fds = 3;  // memfd, data eventfd, space eventfd

properties broadcast_properties(overflow_policy policy, std::uint64_t max_message) {
  auto p = transport_properties(broadcast_row);
  p.reliable = policy == overflow_policy::block;
  p.max_message = static_cast<std::size_t>(max_message);
  return p;
}

}  // namespace

// -- publisher --------------------------------------------------------------------------------

struct publisher::state {
  detail::segment seg;
  pollable_fd data_efd, space_efd;
  ring_view view;
  broadcast_writer writer;
  detail::waitset ws;
  detail::spinner spin;
  publish_options options;
  detail::service service;
  event finished_event;
  bool finished = false;
  bool alive = true;
  std::uint64_t sent = 0;

  explicit state(publish_options o) : spin(o.wait.spin_limit), options(o) {}

  void finish() noexcept {
    if (finished) return;
    finished = true;
    // The record first, then the flag: subscribers take a flag without one for forged.
    service.announce_end(writer.head());
    writer.finish();
    detail::wake(data_efd.get());
    finished_event.set();
  }

  void release() noexcept {
    if (!alive) return;
    finish();
    // Stop admitting and watching before the ring goes away; subscribers see the end
    // flag first, then their control connection close.
    service.stop();
    alive = false;
    ws.close();
    seg.map.reset();
    seg.memfd.close();
    data_efd.close();
    space_efd.close();
  }
};

publisher::publisher() noexcept = default;
publisher::publisher(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
publisher::publisher(publisher&&) noexcept = default;
publisher& publisher::operator=(publisher&& other) noexcept {
  if (this != &other) {
    if (s_) s_->release();
    s_ = std::move(other.s_);
  }
  return *this;
}
publisher::~publisher() {
  if (s_) s_->release();
}

result<publisher> publisher::bind(std::string_view name, publish_options options) {
  using namespace detail;
  auto shape = make_layout(segment_kind::broadcast, options.slots, options.max_message, options.policy,
                           options.max_subscribers);
  if (!shape) return unexpected(shape.error());
  auto where = rendezvous_address(name);
  if (!where) return unexpected(where.error());
  auto st = std::make_unique<state>(options);
  auto seg = create_segment(*shape);
  if (!seg) return unexpected(seg.error());
  st->seg = std::move(*seg);
  auto data = make_eventfd();
  if (!data) return unexpected(data.error());
  auto space = make_eventfd();
  if (!space) return unexpected(space.error());
  st->data_efd = std::move(*data);
  st->space_efd = std::move(*space);
  st->view = ring_view::of(st->seg.map.base(), st->seg.shape);
  st->writer = broadcast_writer(st->view);
  int space_fd = st->space_efd.get();
  if (auto r = st->ws.open(std::span<const int>(&space_fd, 1), -1); !r) return unexpected(r.error());
  auto sock = uds::listener::bind(*where);
  if (!sock) return unexpected(sock.error());
  state* raw = st.get();
  service::hooks hooks{
      .kind = segment_kind::broadcast,
      .join = [raw](std::uint32_t pid) -> std::optional<std::uint32_t> {
        for (std::uint32_t i = 0; i < raw->view.shape.members; ++i) {
          if (atom(raw->view.table[i].state).load(std::memory_order_acquire) !=
              static_cast<std::uint32_t>(member_state::free))
            continue;
          join_broadcast(raw->view, i, pid);
          return i;
        }
        return std::nullopt;
      },
      .leave =
          [raw](std::uint32_t member) {
            leave_member(raw->view, member);
            // A publisher waiting for this subscriber rescans without it.
            wake(raw->space_efd.get());
            return true;
          },
      .fan_out = [raw] { wake(raw->data_efd.get()); },
  };
  std::vector<int> fds{st->seg.memfd.get(), st->data_efd.get(), st->space_efd.get()};
  if (auto r = st->service.start(std::move(*sock), std::move(fds), std::move(hooks)); !r)
    return unexpected(r.error());
  return publisher(std::move(st));
}

task<result<void>> publisher::send(const_buffers msg, deadline dl) {
  state* st = s_.get();
  if (!st || !st->alive || st->finished) co_return errc::closed;
  if (msg.total_size() > st->seg.shape.max_message) co_return errc::message_too_large;
  for (;;) {
    // The head and end flag are ours alone: another value means the segment was rewritten.
    if (auto v = st->writer.verify(); !v) co_return errc::protocol_error;
    if (st->writer.can_publish()) {
      st->writer.publish(msg);
      ++st->sent;
      switch (st->writer.readers_to_wake()) {
        case reader_wake::none:
          break;
        case reader_wake::direct:
          detail::wake(st->data_efd.get());
          break;
        case reader_wake::fan_out:
          st->service.fan_out();
          break;
      }
      co_return result<void>{};
    }
    auto w = co_await detail::await_ready(
        st->ws, st->spin, st->options.wait, st->alive, dl, [st] { return st->writer.can_publish(); },
        [st] { st->writer.prepare_wait(); }, [st] { st->writer.end_wait(); });
    if (!w) co_return w.error();
    if (!st->alive || st->finished) co_return errc::closed;
  }
}

task<result<std::size_t>> publisher::recv(mutable_buffer, deadline dl) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  if (auto r = co_await st->finished_event.wait(dl); !r) co_return unexpected(r.error());
  if (!st->alive) co_return errc::closed;
  co_return errc::end_of_stream;
}

task<result<void>> publisher::shutdown_write(deadline) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  st->finish();
  co_return result<void>{};
}

task<result<void>> publisher::close(deadline) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  st->release();
  co_return result<void>{};
}

std::size_t publisher::subscribers() const noexcept { return s_ && s_->alive ? s_->service.members() : 0; }
std::uint64_t publisher::sent() const noexcept { return s_ ? s_->sent : 0; }

result<address> publisher::local_address() const {
  if (!s_ || !s_->alive) return errc::closed;
  return s_->service.local_address();
}

properties publisher::runtime_capabilities() const noexcept {
  if (!s_) return capabilities;
  return broadcast_properties(s_->options.policy, s_->seg.shape.max_message);
}

// -- subscriber -------------------------------------------------------------------------------

namespace {
std::atomic<loss_observer> loss_hook{nullptr};
}  // namespace

void observe_losses(loss_observer observer) noexcept { loss_hook.store(observer, std::memory_order_relaxed); }

struct subscriber::state {
  std::string name;
  detail::segment seg;
  uds::stream ctrl;
  pollable_fd data_efd, space_efd;
  broadcast_reader reader;
  detail::waitset ws;
  detail::spinner spin;
  wait_options wait;
  std::error_code error;
  std::uint64_t lost = 0;
  detail::end_records publisher_end;  ///< the publisher's fin record (its final head)
  const char* fault = nullptr;
  bool alive = true;
  bool peer_gone = false;

  explicit state(wait_options w) : spin(w.spin_limit), wait(w) {}

  void fail(std::error_code ec) noexcept {
    if (!error) error = ec;
  }
  void corrupt(const char* why) noexcept {
    if (!fault) fault = why ? why : "shm: impossible ring state";
    fail(cause::shm_corrupted);
  }
  // at_end decides what an empty ring means once the end flag is set, the control
  // connection hung up or a record came: end_of_stream (the publisher's fin record says
  // we read everything), peer_died (no record: it died), protocol_error (a flag without
  // a record, a head that disagrees with it), or nothing (read again).
  std::error_code at_end(bool flagged) noexcept {
    if (!publisher_end.poll(ctrl.native_handle())) {
      corrupt("shm: malformed end record on the control connection");
      return error;
    }
    if (publisher_end.fin) {
      std::uint64_t end = *publisher_end.fin, next = reader.next();
      if (next == end) return errc::end_of_stream;
      // Messages up to `end` were published before the record was sent.
      corrupt(static_cast<std::int64_t>(end - next) < 0
                  ? "shm: read past the publisher's end record"
                  : "shm: broadcast ended short of the publisher's end record");
      return error;
    }
    if (flagged) {
      corrupt("shm: end flag without the publisher's end record");
      return error;
    }
    if (peer_gone || publisher_end.eof) return errc::peer_died;
    return {};
  }
  void release() noexcept {
    if (!alive) return;
    alive = false;
    ws.close();
    ctrl.reset();  // the publisher's service sees the hang-up and frees our entry
    seg.map.reset();
    data_efd.close();
    space_efd.close();
    error = errc::closed;
  }
};

subscriber::subscriber() noexcept = default;
subscriber::subscriber(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
subscriber::subscriber(subscriber&&) noexcept = default;
subscriber& subscriber::operator=(subscriber&& other) noexcept {
  if (this != &other) {
    if (s_) s_->release();
    s_ = std::move(other.s_);
  }
  return *this;
}
subscriber::~subscriber() {
  if (s_) s_->release();
}

task<result<subscriber>> subscribe(std::string_view name, deadline dl, wait_options options) {
  using namespace detail;
  auto rv = co_await connect_rendezvous(name, segment_kind::broadcast, broadcast_fds, dl);
  if (!rv) co_return unexpected(rv.error());
  auto seg = attach_segment(rv->fds[0].get(), segment_kind::broadcast);
  if (!seg) co_return unexpected(seg.error());
  seg->memfd.close();
  rv->fds[0].close();
  if (rv->reply.member >= seg->shape.members) co_return errc::protocol_error;
  auto view = ring_view::of(seg->map.base(), seg->shape);
  // Our first message, set by the publisher's service before it answered. Under block
  // the publisher cannot lap it; under overwrite it may have, between the answer and
  // now, and the reader counts those messages as lost like any later lap.
  std::uint64_t start = atom(view.table[rv->reply.member].cursor).load(std::memory_order_acquire);
  std::uint64_t head = atom(view.control->head).load(std::memory_order_acquire);
  if (seg->shape.policy == overflow_policy::block && head - start > seg->shape.capacity)
    co_return errc::protocol_error;
  auto st = std::make_unique<subscriber::state>(options);
  st->seg = std::move(*seg);
  st->ctrl = std::move(rv->ctrl);
  st->data_efd = std::move(rv->fds[1]);
  st->space_efd = std::move(rv->fds[2]);
  st->name = std::string(name);
  st->reader = broadcast_reader(view, rv->reply.member, start);
  int data_fd = st->data_efd.get();
  if (auto r = st->ws.open(std::span<const int>(&data_fd, 1), st->ctrl.native_handle(), true); !r)
    co_return unexpected(r.error());
  co_return subscriber(std::move(st));
}

task<result<delivery>> subscriber::receive(mutable_buffer buf, deadline dl) {
  state* st = s_.get();
  if (!st) co_return errc::closed;
  if (st->error) co_return unexpected(st->error);
  bool saw_end = false;
  for (;;) {
    auto step = st->reader.read(buf);
    switch (step.state) {
      case broadcast_step::status::message:
        st->lost += step.lost;
        if (step.lost > 0) {
          if (auto hook = loss_hook.load(std::memory_order_relaxed)) hook(st->name, step.lost);
        }
        if (st->seg.shape.policy == overflow_policy::block && st->reader.publisher_needs_wake())
          detail::wake(st->space_efd.get());
        co_return delivery{step.size, step.lost};
      case broadcast_step::status::too_small:
        co_return errc::message_too_large;
      case broadcast_step::status::error:
        st->corrupt(st->reader.fault());
        co_return unexpected(st->error);
      case broadcast_step::status::empty:
        break;
    }
    // Empty. The end flag is a hint another process could have forged: the publisher's
    // end record on the control connection decides (at_end). Read once more after the
    // end is seen: messages published before it are visible now.
    if (bool flagged = st->reader.finished(); flagged || st->peer_gone || st->publisher_end.fin) {
      if (saw_end) {
        if (auto ec = st->at_end(flagged)) {
          st->fail(ec);
          co_return unexpected(st->error);
        }
      }
      saw_end = true;
      continue;
    }
    // About to wait: what only we write must hold what we wrote.
    if (auto v = st->reader.verify(); !v) {
      st->corrupt(st->reader.fault());
      co_return unexpected(st->error);
    }
    auto w = co_await detail::await_ready(
        st->ws, st->spin, st->wait, st->alive, dl, [st] { return st->reader.has_news(); },
        [st] { st->reader.prepare_wait(); }, [st] { st->reader.end_wait(); });
    if (!w) co_return unexpected(w.error());
    if (*w == detail::wait_outcome::hung_up) st->peer_gone = true;
    // After a sleep: the end record may be what woke us (its flag may have been wiped).
    if (*w == detail::wait_outcome::slept && !st->publisher_end.fin) {
      if (!st->publisher_end.poll(st->ctrl.native_handle())) {
        st->corrupt("shm: malformed end record on the control connection");
        co_return unexpected(st->error);
      }
      if (st->publisher_end.eof) st->peer_gone = true;
    }
  }
}

task<result<std::size_t>> subscriber::recv(mutable_buffer buf, deadline dl) {
  auto d = co_await receive(buf, dl);
  if (!d) co_return unexpected(d.error());
  co_return d->size;
}

task<result<void>> subscriber::send(const_buffers, deadline) {
  if (!s_ || !s_->alive) co_return errc::closed;
  co_return errc::not_supported;
}

task<result<void>> subscriber::shutdown_write(deadline) {
  if (!s_ || !s_->alive) co_return errc::closed;
  co_return errc::not_supported;
}

task<result<void>> subscriber::close(deadline) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  st->release();
  co_return result<void>{};
}

std::uint64_t subscriber::loss_count() const noexcept { return s_ ? s_->lost : 0; }
std::string_view subscriber::fault() const noexcept { return s_ && s_->fault ? s_->fault : ""; }
std::size_t subscriber::max_message() const noexcept {
  return s_ ? static_cast<std::size_t>(s_->seg.shape.max_message) : 0;
}

result<address> subscriber::peer_address() const {
  if (!s_ || !s_->alive) return errc::closed;
  return s_->ctrl.peer_address();
}

properties subscriber::runtime_capabilities() const noexcept {
  if (!s_) return capabilities;
  return broadcast_properties(s_->seg.shape.policy, s_->seg.shape.max_message);
}

}  // namespace strata::shm
