// shm queue: an MPMC message queue shared by member processes (shm_ring.hpp has the
// algorithm). The first member to open NAME creates the segment and serves the name
// with a service thread, which also recovers the claims of members that die
// mid-message. Two eventfds: data (receivers sleep on it) and space (senders sleep on
// it); each write wakes every member sleeping on it.
#include <unistd.h>

#include <cerrno>

#include "shm_internal.hpp"
#include "strata/runtime/event.hpp"

namespace strata::shm {
namespace {

constexpr std::uint32_t queue_fds = 3;  // memfd, data eventfd, space eventfd

}  // namespace

struct queue::state {
  detail::segment seg;
  uds::stream ctrl;  ///< members: the connection to the creator's service
  pollable_fd data_efd, space_efd;
  ring_view view;
  queue_core core;
  detail::waitset read_ws, write_ws;
  detail::spinner read_spin, write_spin;
  queue_options options;
  detail::service service;  ///< creator only
  event finished_event;     ///< our shutdown_write (role send: ends recv)
  std::error_code read_error, write_error;
  std::uint64_t skipped = 0;
  detail::end_records creator_end;  ///< members: the creator's fin record
  const char* fault = nullptr;
  bool creator = false;
  bool alive = true;
  bool creator_gone = false;

  explicit state(queue_options o) : read_spin(o.wait.spin_limit), write_spin(o.wait.spin_limit), options(o) {}

  result<void> open_waits() {
    int hangup = creator ? -1 : ctrl.native_handle();
    int data = data_efd.get(), space = space_efd.get();
    if (auto r = read_ws.open(std::span<const int>(&data, 1), hangup, true); !r) return r;
    return write_ws.open(std::span<const int>(&space, 1), hangup, true);
  }

  std::error_code corrupt(const char* why) noexcept {
    if (!fault) fault = why ? why : "shm: impossible queue state";
    return cause::shm_corrupted;
  }
  // ended reports whether the creator closed the queue: the end flag is a hint another
  // process could have forged, the creator's fin record (sent before the flag) decides.
  // Sets `ec` to protocol_error for a flag without a record (the creator's own queue
  // has no control connection: any flag it did not set is forged).
  bool ended(std::error_code& ec) noexcept {
    if (!creator_end.poll(ctrl.native_handle())) {
      ec = corrupt("shm: malformed end record on the control connection");
      return false;
    }
    if (creator_end.eof) creator_gone = true;
    if (creator_end.fin) return true;
    if (core.finished()) ec = corrupt("shm: end flag without the creator's end record");
    return false;
  }

  void fail_read(std::error_code ec) noexcept {
    if (!read_error) read_error = ec;
  }
  void fail_write(std::error_code ec) noexcept {
    if (!write_error) write_error = ec;
  }

  void release() noexcept {
    if (!alive) return;
    if (creator) {
      // The end for everyone: members drain what is queued, then read end_of_stream.
      // The record first, then the flag (members take a flag without one for forged).
      service.announce_end(0);
      core.finish();
      detail::wake(data_efd.get());
      detail::wake(space_efd.get());
      service.stop();
    }
    finished_event.set();
    alive = false;
    read_ws.close();
    write_ws.close();
    ctrl.reset();  // a member's departure: the creator's service frees its entry
    seg.map.reset();
    seg.memfd.close();
    data_efd.close();
    space_efd.close();
    read_error = write_error = errc::closed;
  }
};

queue::queue() noexcept = default;
queue::queue(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
queue::queue(queue&&) noexcept = default;
queue& queue::operator=(queue&& other) noexcept {
  if (this != &other) {
    if (s_) s_->release();
    s_ = std::move(other.s_);
  }
  return *this;
}
queue::~queue() {
  if (s_) s_->release();
}

namespace {

std::optional<std::uint32_t> pick_member(const ring_view& v, std::uint32_t pid) {
  for (std::uint32_t i = 0; i < v.shape.members; ++i) {
    if (atom(v.table[i].state).load(std::memory_order_acquire) !=
        static_cast<std::uint32_t>(member_state::free))
      continue;
    join_queue(v, i, pid);
    return i;
  }
  return std::nullopt;
}

// create_queue makes the segment, serves NAME and joins as its first member.
// EADDRINUSE when another process serves the name already.
result<std::unique_ptr<queue::state>> create_queue(std::string_view name, const queue_options& options) {
  using namespace detail;
  auto shape = make_layout(segment_kind::queue, options.slots, options.max_message, overflow_policy::block,
                           options.max_members);
  if (!shape) return unexpected(shape.error());
  auto where = rendezvous_address(name);
  if (!where) return unexpected(where.error());
  auto sock = uds::listener::bind(*where);
  if (!sock) return unexpected(sock.error());
  auto st = std::make_unique<queue::state>(options);
  st->creator = true;
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
  auto me = pick_member(st->view, static_cast<std::uint32_t>(::getpid()));
  if (!me) return errc::invalid_argument;
  st->core = queue_core(st->view, *me);
  if (auto r = st->open_waits(); !r) return unexpected(r.error());
  queue::state* raw = st.get();
  service::hooks hooks{
      .kind = segment_kind::queue,
      .join = [raw](std::uint32_t pid) { return pick_member(raw->view, pid); },
      .leave =
          [raw](std::uint32_t member) {
            if (!recover_member(raw->view, member)) return false;
            // An abandoned slot is now committed and a freed one empty: wake both kinds.
            wake(raw->data_efd.get());
            wake(raw->space_efd.get());
            return true;
          },
      .fan_out = {},  // members wake each other directly
  };
  std::vector<int> fds{st->seg.memfd.get(), st->data_efd.get(), st->space_efd.get()};
  if (auto r = st->service.start(std::move(*sock), std::move(fds), std::move(hooks)); !r)
    return unexpected(r.error());
  return st;
}

task<result<std::unique_ptr<queue::state>>> join_queue_at(std::string_view name, const queue_options& options,
                                                          deadline dl) {
  using namespace detail;
  auto rv = co_await connect_rendezvous(name, segment_kind::queue, queue_fds, dl);
  if (!rv) co_return unexpected(rv.error());
  auto seg = attach_segment(rv->fds[0].get(), segment_kind::queue);
  if (!seg) co_return unexpected(seg.error());
  seg->memfd.close();
  rv->fds[0].close();
  if (rv->reply.member >= seg->shape.members) co_return errc::protocol_error;
  auto st = std::make_unique<queue::state>(options);
  st->seg = std::move(*seg);
  st->ctrl = std::move(rv->ctrl);
  st->data_efd = std::move(rv->fds[1]);
  st->space_efd = std::move(rv->fds[2]);
  st->view = ring_view::of(st->seg.map.base(), st->seg.shape);
  st->core = queue_core(st->view, rv->reply.member);
  if (auto r = st->open_waits(); !r) co_return unexpected(r.error());
  co_return st;
}

bool nobody_serves(std::error_code ec) {
  return ec == std::errc::connection_refused || ec == std::errc::no_such_file_or_directory;
}

}  // namespace

task<result<queue>> open_queue(std::string_view name, deadline dl, queue_options options) {
  // Join, or create when nobody serves the name; two processes racing to create find
  // out at bind (EADDRINUSE), and the loser joins the winner.
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto joined = co_await join_queue_at(name, options, dl);
    if (joined) co_return queue(std::move(*joined));
    if (!nobody_serves(joined.error())) co_return unexpected(joined.error());
    auto created = create_queue(name, options);
    if (created) co_return queue(std::move(*created));
    if (created.error() != std::errc::address_in_use) co_return unexpected(created.error());
  }
  co_return unexpected(from_errno(EADDRINUSE));
}

task<result<void>> queue::send(const_buffers msg, deadline dl) {
  state* st = s_.get();
  if (!st) co_return errc::closed;
  if (st->write_error) co_return st->write_error;
  if (st->options.role == queue_role::recv) co_return errc::not_supported;
  if (msg.total_size() > st->seg.shape.max_message) co_return errc::message_too_large;
  for (;;) {
    if (st->core.finished() || st->creator_end.fin) {
      std::error_code ec;
      if (st->ended(ec)) ec = errc::broken;  // the creator closed the queue
      if (ec) {
        st->fail_write(ec);
        co_return st->write_error;
      }
    }
    if (st->core.try_send(msg)) {
      if (st->core.others_need_wake(true)) detail::wake(st->data_efd.get());
      co_return result<void>{};
    }
    if (st->core.fault()) {
      st->fail_write(st->corrupt(st->core.fault()));
      co_return st->write_error;
    }
    if (st->creator_gone) {
      st->fail_write(errc::peer_died);
      co_return st->write_error;
    }
    if (auto v = st->core.verify(); !v) {
      st->fail_write(st->corrupt(st->core.fault()));
      co_return st->write_error;
    }
    auto w = co_await detail::await_ready(
        st->write_ws, st->write_spin, st->options.wait, st->alive, dl,
        [st] { return st->core.can_send() || st->core.finished(); }, [st] { st->core.prepare_wait(false); },
        [st] { st->core.end_wait(false); });
    if (!w) co_return w.error();
    if (*w == detail::wait_outcome::hung_up) st->creator_gone = true;
    if (*w == detail::wait_outcome::slept) {
      std::error_code ec;
      (void)st->ended(ec);  // picks up an end record (or a hang-up) that woke us
    }
  }
}

task<result<std::size_t>> queue::recv(mutable_buffer buf, deadline dl) {
  state* st = s_.get();
  if (!st) co_return errc::closed;
  if (st->read_error) co_return unexpected(st->read_error);
  if (st->options.role == queue_role::send) {
    if (auto r = co_await st->finished_event.wait(dl); !r) co_return unexpected(r.error());
    if (!st->alive) co_return errc::closed;
    co_return errc::end_of_stream;
  }
  bool saw_end = false;
  for (;;) {
    auto step = st->core.try_recv(buf);
    st->skipped += step.skipped;
    switch (step.state) {
      case queue_step::status::message:
        if (st->core.others_need_wake(false)) detail::wake(st->space_efd.get());
        co_return step.size;
      case queue_step::status::too_small:
        co_return errc::message_too_large;
      case queue_step::status::error:
        st->fail_read(st->corrupt(st->core.fault()));
        co_return unexpected(st->read_error);
      case queue_step::status::empty:
        if (step.skipped && st->core.others_need_wake(false)) detail::wake(st->space_efd.get());
        break;
    }
    if (saw_end) {
      st->fail_read(errc::end_of_stream);
      co_return unexpected(st->read_error);
    }
    if (st->core.finished() || st->creator_end.fin || st->creator_gone) {
      std::error_code ec;
      bool end = st->ended(ec);
      if (ec) {
        st->fail_read(ec);
        co_return unexpected(st->read_error);
      }
      if (end) {
        saw_end = true;  // read once more: what was queued before the end is visible now
        continue;
      }
    }
    if (st->creator_gone) {
      st->fail_read(errc::peer_died);
      co_return unexpected(st->read_error);
    }
    if (auto v = st->core.verify(); !v) {
      st->fail_read(st->corrupt(st->core.fault()));
      co_return unexpected(st->read_error);
    }
    auto w = co_await detail::await_ready(
        st->read_ws, st->read_spin, st->options.wait, st->alive, dl,
        [st] { return st->core.can_recv() || st->core.finished(); }, [st] { st->core.prepare_wait(true); },
        [st] { st->core.end_wait(true); });
    if (!w) co_return unexpected(w.error());
    if (*w == detail::wait_outcome::hung_up) st->creator_gone = true;
    if (*w == detail::wait_outcome::slept) {
      std::error_code ec;
      (void)st->ended(ec);  // picks up an end record (or a hang-up) that woke us
    }
  }
}

task<result<void>> queue::shutdown_write(deadline) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  st->fail_write(errc::closed);
  st->finished_event.set();
  co_return result<void>{};
}

task<result<void>> queue::close(deadline) {
  state* st = s_.get();
  if (!st || !st->alive) co_return errc::closed;
  st->release();
  co_return result<void>{};
}

bool queue::creator() const noexcept { return s_ && s_->creator; }
std::string_view queue::fault() const noexcept { return s_ && s_->fault ? s_->fault : ""; }
std::uint64_t queue::skipped() const noexcept { return s_ ? s_->skipped : 0; }
std::size_t queue::max_message() const noexcept {
  return s_ ? static_cast<std::size_t>(s_->seg.shape.max_message) : 0;
}
properties queue::runtime_capabilities() const noexcept {
  auto p = transport_properties(queue_row);
  if (s_) p.max_message = static_cast<std::size_t>(s_->seg.shape.max_message);
  return p;
}
queue_core& queue::core() noexcept { return s_->core; }

}  // namespace strata::shm
