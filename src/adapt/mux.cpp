// mux: the frame codec and the session driver (include/strata/adapt/mux.hpp).
#include "strata/adapt/mux.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "strata/runtime/event.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/timer.hpp"

namespace strata::mux {

namespace {

class mux_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "mux"; }
  std::string message(int value) const override {
    switch (static_cast<error>(value)) {
      case error::bad_frame_type:
        return "mux: unknown frame type";
      case error::bad_flags:
        return "mux: flags not allowed on this frame type";
      case error::bad_stream_id:
        return "mux: stream id not allowed here";
      case error::bad_length:
        return "mux: control frame of the wrong length";
      case error::frame_too_large:
        return "mux: frame over the size limit";
      case error::flow_control:
        return "mux: peer sent beyond its window";
      case error::stream_reset:
        return "mux: stream reset";
      case error::refused_stream:
        return "mux: stream refused";
      case error::going_away:
        return "mux: session going away";
      case error::peer_dead:
        return "mux: peer did not answer keepalive";
      case error::control_flood:
        return "mux: peer sends frames needing replies faster than it reads them";
    }
    return "mux error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    switch (static_cast<error>(value)) {
      case error::stream_reset:
      case error::refused_stream:
      case error::going_away:
      case error::peer_dead:
        return errc::broken;
      default:
        return errc::protocol_error;
    }
  }
};

// RST and GOAWAY codes on the wire.
constexpr std::uint32_t code_none = 0;
constexpr std::uint32_t code_protocol = 1;
constexpr std::uint32_t code_refused = 2;
constexpr std::uint32_t code_cancel = 3;
constexpr std::uint32_t code_flow = 4;

std::uint32_t load32(const std::byte* p) noexcept {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}
void store32(std::byte* p, std::uint32_t v) noexcept {
  p[0] = std::byte(v >> 24);
  p[1] = std::byte(v >> 16);
  p[2] = std::byte(v >> 8);
  p[3] = std::byte(v);
}

void append_control(std::string& out, frame_type type, std::uint8_t flags, std::uint32_t id, std::uint32_t a,
                    std::uint32_t b, std::size_t length) {
  std::array<std::byte, header_size + 8> buf{};
  encode_header(type, flags, id, length, std::span<std::byte, header_size>(buf.data(), header_size));
  store32(buf.data() + header_size, a);
  if (length == 8) store32(buf.data() + header_size + 4, b);
  out.append(reinterpret_cast<const char*>(buf.data()), header_size + length);
}

}  // namespace

const std::error_category& category() noexcept {
  static const mux_error_category c;
  return c;
}

// -- codec -------------------------------------------------------------------------------

void encode_header(frame_type type, std::uint8_t flags, std::uint32_t stream_id, std::size_t length,
                   std::span<std::byte, header_size> out) noexcept {
  out[0] = std::byte(length >> 16);
  out[1] = std::byte(length >> 8);
  out[2] = std::byte(length);
  out[3] = std::byte(static_cast<std::uint8_t>(type));
  out[4] = std::byte(flags);
  store32(out.data() + 5, stream_id);
}

void append_data(std::string& out, std::uint32_t stream_id, std::uint8_t flags, const_buffer payload) {
  std::array<std::byte, header_size> h{};
  encode_header(frame_type::data, flags, stream_id, payload.size(), h);
  out.append(reinterpret_cast<const char*>(h.data()), h.size());
  out.append(reinterpret_cast<const char*>(payload.data()), payload.size());
}
void append_window_update(std::string& out, std::uint32_t stream_id, std::uint32_t increment) {
  append_control(out, frame_type::window_update, 0, stream_id, increment, 0, 4);
}
void append_rst(std::string& out, std::uint32_t stream_id, std::uint32_t code) {
  append_control(out, frame_type::rst, 0, stream_id, code, 0, 4);
}
void append_ping(std::string& out, std::uint8_t flags, std::uint64_t opaque) {
  append_control(out, frame_type::ping, flags, 0, static_cast<std::uint32_t>(opaque >> 32),
                 static_cast<std::uint32_t>(opaque), 8);
}
void append_goaway(std::string& out, std::uint32_t last_id, std::uint32_t code) {
  append_control(out, frame_type::goaway, 0, 0, last_id, code, 8);
}

result<std::optional<frame>> decoder::decode(const_buffer input) noexcept {
  if (failed_) return unexpected(failed_);
  auto fail = [&](error e) -> result<std::optional<frame>> {
    failed_ = make_error_code(e);
    return unexpected(failed_);
  };
  if (input.size() < header_size) return std::optional<frame>{};
  const std::byte* p = input.data();
  std::size_t length = (std::size_t(p[0]) << 16) | (std::size_t(p[1]) << 8) | std::size_t(p[2]);
  auto type = static_cast<std::uint8_t>(p[3]);
  auto flags = static_cast<std::uint8_t>(p[4]);
  std::uint32_t id = load32(p + 5);
  frame f;
  f.flags = flags;
  f.stream_id = id;
  switch (type) {
    case 0:  // DATA
      if ((flags & ~(flag_syn | flag_fin)) != 0) return fail(error::bad_flags);
      if (id == 0) return fail(error::bad_stream_id);
      if (length > max_frame_) return fail(error::frame_too_large);
      break;
    case 1:  // WINDOW_UPDATE
    case 2:  // RST
      if (flags != 0) return fail(error::bad_flags);
      if (id == 0) return fail(error::bad_stream_id);
      if (length != 4) return fail(error::bad_length);
      break;
    case 3:  // PING
      if ((flags & ~flag_ack) != 0) return fail(error::bad_flags);
      if (id != 0) return fail(error::bad_stream_id);
      if (length != 8) return fail(error::bad_length);
      break;
    case 4:  // GOAWAY
      if (flags != 0) return fail(error::bad_flags);
      if (id != 0) return fail(error::bad_stream_id);
      if (length != 8) return fail(error::bad_length);
      break;
    default:
      return fail(error::bad_frame_type);
  }
  f.type = static_cast<frame_type>(type);
  if (input.size() < header_size + length) return std::optional<frame>{};
  f.size = header_size + length;
  const std::byte* body = p + header_size;
  switch (f.type) {
    case frame_type::data:
      f.payload = const_buffer(body, length);
      break;
    case frame_type::window_update:
      f.value = load32(body);
      if (f.value == 0 || f.value > max_window) return fail(error::flow_control);
      break;
    case frame_type::rst:
      f.value = load32(body);
      break;
    case frame_type::ping:
      f.value = (std::uint64_t(load32(body)) << 32) | load32(body + 4);
      break;
    case frame_type::goaway:
      f.last_id = load32(body);
      f.value = load32(body + 4);
      break;
  }
  return std::optional<frame>{f};
}

// -- session state -----------------------------------------------------------------------

struct stream_state {
  std::uint32_t id = 0;
  // Received, unread: the blocks of `in` from in_off bytes into the first. Blocks rather
  // than one growing buffer: nothing is moved when the reader takes a part, and no buffer
  // of a whole window is allocated (and page-faulted) again and again as it fills and
  // drains (see docs/performance.md, mux).
  std::deque<std::vector<std::byte>> in;
  std::size_t in_off = 0;
  std::size_t in_bytes = 0;
  // A read_some waiting with nothing buffered: the reader copies the next payload straight
  // into its buffer (one copy instead of two) and counts it in `delivered`.
  mutable_buffer waiting{};
  std::size_t delivered = 0;
  bool fin_received = false;
  bool fin_sent = false;
  bool closed = false;   // close() or reset() ran locally
  bool removed = false;  // out of the session's map
  std::error_code failure{};
  std::uint64_t send_window = initial_window;
  std::uint64_t recv_window = initial_window;  // what the peer may still send
  std::size_t consumed = 0;                    // read since credit last went back
  event readable;
  event writable;

  std::size_t buffered() const noexcept { return in_bytes; }
  void fail(std::error_code ec) {
    if (!failure) failure = ec;
    readable.set();
    writable.set();
  }
};

struct session_state {
  session_state(any_stream t, role r, const options& o)
      : io(std::move(t)), side(r), opts(o), dec(o.max_frame), next_id(r == role::client ? 1 : 2) {
    if (opts.window < initial_window) opts.window = initial_window;
    if (opts.window > max_window) opts.window = max_window;
    if (opts.max_frame == 0) opts.max_frame = 1;
    if (opts.max_frame > (1u << 24) - 1) opts.max_frame = (1u << 24) - 1;
    dec = decoder(opts.max_frame);
  }
  session_state(const session_state&) = delete;
  session_state& operator=(const session_state&) = delete;

  any_stream io;
  role side;
  options opts;
  decoder dec;
  std::uint32_t next_id;
  std::uint32_t last_peer_id = 0;
  std::unordered_map<std::uint32_t, std::shared_ptr<stream_state>> streams;
  std::deque<std::shared_ptr<stream_state>> backlog;
  std::string out;  // frames queued for the transport
  event wake;       // the writer has something to do
  event out_space;  // the send buffer drained below its bound
  event drained;    // nothing queued and no write in flight
  event accepted_ev;
  event stop;   // the session ends: stops keepalive
  event heard;  // bytes arrived from the peer
  event streams_done;
  std::error_code failed{};
  bool goaway_sent = false;
  bool goaway_received = false;
  bool writing = false;
  deadline::clock::time_point last_heard = deadline::clock::now();
  std::uint64_t ping_sent_opaque = 0;
  stats counters;
  scope tasks;  // last: destroyed first, before what the tasks use

  bool is_peer_id(std::uint32_t id) const noexcept {
    return side == role::client ? (id % 2 == 0) : (id % 2 == 1);
  }
  void kick() {
    drained.reset();
    wake.set();
  }
  void fail(std::error_code ec) {
    if (!failed) failed = ec;
    // A transport that ended without GOAWAY cuts the streams still open.
    if (ec == errc::end_of_stream) ec = make_error_code(errc::broken);
    for (auto& [id, st] : streams) {
      st->fail(ec);
      st->removed = true;
    }
    streams.clear();
    streams_done.set();
    for (auto& st : backlog) st->fail(ec);
    accepted_ev.set();
    out_space.set();
    stop.set();
    heard.set();
    wake.set();
  }
  // Blocks of received data: a block holds one frame's payload or several small ones, so
  // what a stream buffers stays within twice its window even for tiny frames.
  static constexpr std::size_t block_size = 16 * 1024;
  static constexpr std::size_t spare_limit = 64;
  std::vector<std::vector<std::byte>> spare_blocks;

  void take_in(stream_state& st, const_buffer payload) {
    if (st.waiting.size() > 0 && st.in_bytes == 0) {
      std::size_t n = std::min(st.waiting.size(), payload.size());
      std::memcpy(st.waiting.data(), payload.data(), n);
      st.delivered = n;
      st.waiting = {};
      payload = payload.subspan(n);
      if (payload.empty()) return;
    }
    if (!st.in.empty()) {
      auto& last = st.in.back();
      if (last.capacity() - last.size() >= payload.size()) {
        last.insert(last.end(), payload.begin(), payload.end());
        st.in_bytes += payload.size();
        return;
      }
    }
    std::vector<std::byte> block;
    if (!spare_blocks.empty() && payload.size() <= block_size) {
      block = std::move(spare_blocks.back());
      spare_blocks.pop_back();
    } else {
      block.reserve(std::max(block_size, payload.size()));
    }
    block.assign(payload.begin(), payload.end());
    st.in.push_back(std::move(block));
    st.in_bytes += payload.size();
  }
  void give_back(std::vector<std::byte>&& block) {
    if (block.capacity() != block_size || spare_blocks.size() >= spare_limit) return;
    block.clear();
    spare_blocks.push_back(std::move(block));
  }
  void drop_in(stream_state& st) {
    for (auto& block : st.in) give_back(std::move(block));
    st.in.clear();
    st.in_off = 0;
    st.in_bytes = 0;
  }
  void remove(stream_state& st) {
    if (st.removed) return;
    st.removed = true;
    streams.erase(st.id);
    if (streams.empty()) streams_done.set();
  }
  void maybe_finished(stream_state& st) {
    if (st.fin_sent && st.fin_received) remove(st);
  }
  void send_rst(stream_state& st, std::uint32_t code) {
    if (!failed) {
      append_rst(out, st.id, code);
      kick();
    }
    remove(st);
  }
  std::shared_ptr<stream_state> make_stream(std::uint32_t id) {
    auto st = std::make_shared<stream_state>();
    st->id = id;
    st->recv_window = opts.window;
    streams.emplace(id, st);
    streams_done.reset();
    if (opts.window > initial_window) {
      // The window beyond the initial one, granted at once.
      append_window_update(out, id, static_cast<std::uint32_t>(opts.window - initial_window));
    }
    return st;
  }

  task<void> reader();
  task<void> writer();
  task<void> keepalive();
  result<void> handle(const frame& f);
};

result<void> session_state::handle(const frame& f) {
  switch (f.type) {
    case frame_type::data: {
      std::shared_ptr<stream_state> st;
      if (f.flags & flag_syn) {
        if (!is_peer_id(f.stream_id) || f.stream_id <= last_peer_id)
          return make_error_code(error::bad_stream_id);
        last_peer_id = f.stream_id;
        // Streams waiting to be accepted count against the limit even once the peer reset
        // them, so opening and resetting in a loop cannot grow the backlog.
        if (goaway_sent || goaway_received || streams.size() >= opts.max_streams ||
            backlog.size() >= opts.max_streams) {
          ++counters.refused;
          append_rst(out, f.stream_id, code_refused);
          kick();
          return {};
        }
        if (f.payload.size() > opts.window) {
          append_rst(out, f.stream_id, code_flow);
          kick();
          return {};
        }
        st = make_stream(f.stream_id);
        ++counters.accepted;
        backlog.push_back(st);
        accepted_ev.set();
        kick();
      } else {
        auto it = streams.find(f.stream_id);
        if (it == streams.end()) {
          // A stream reset or finished here: its late frames are dropped. An id never
          // opened is the peer's mistake.
          bool ours = !is_peer_id(f.stream_id);
          if ((ours && f.stream_id >= next_id) || (!ours && f.stream_id > last_peer_id))
            return make_error_code(error::bad_stream_id);
          return {};
        }
        st = it->second;
      }
      if (st->fin_received) {
        send_rst(*st, code_protocol);
        st->fail(make_error_code(error::stream_reset));
        return {};
      }
      if (f.payload.size() > st->recv_window) {
        send_rst(*st, code_flow);
        st->fail(make_error_code(error::flow_control));
        return {};
      }
      st->recv_window -= f.payload.size();
      if (!f.payload.empty()) {
        if (st->closed) {
          st->consumed += f.payload.size();  // dropped: credit goes back at once
        } else {
          take_in(*st, f.payload);
        }
      }
      if (f.flags & flag_fin) st->fin_received = true;
      if (st->closed && st->consumed > 0 && !st->fin_received) {
        append_window_update(out, st->id, static_cast<std::uint32_t>(st->consumed));
        st->recv_window += st->consumed;
        st->consumed = 0;
        kick();
      }
      st->readable.set();
      maybe_finished(*st);
      return {};
    }
    case frame_type::window_update: {
      auto it = streams.find(f.stream_id);
      if (it == streams.end()) return {};
      auto& st = *it->second;
      st.send_window += f.value;
      if (st.send_window > max_window) {
        send_rst(st, code_flow);
        st.fail(make_error_code(error::flow_control));
        return {};
      }
      st.writable.set();
      return {};
    }
    case frame_type::rst: {
      auto it = streams.find(f.stream_id);
      if (it == streams.end()) return {};
      auto st = it->second;
      st->fail(make_error_code(f.value == code_refused ? error::refused_stream : error::stream_reset));
      remove(*st);
      // Reset before it was accepted and nothing to read: nobody needs to see it.
      if (st->buffered() == 0) {
        auto waiting = std::find(backlog.begin(), backlog.end(), st);
        if (waiting != backlog.end()) {
          backlog.erase(waiting);
          ++counters.dropped;
        }
      }
      return {};
    }
    case frame_type::ping:
      if (f.flags & flag_ack) return {};
      append_ping(out, flag_ack, f.value);
      kick();
      return {};
    case frame_type::goaway: {
      goaway_received = true;
      std::vector<std::shared_ptr<stream_state>> cut;
      for (auto& [id, st] : streams) {
        if (!is_peer_id(id) && id > f.last_id) cut.push_back(st);
      }
      for (auto& st : cut) {
        st->fail(make_error_code(error::refused_stream));
        remove(*st);
      }
      accepted_ev.set();
      return {};
    }
  }
  return {};
}

task<void> session_state::reader() {
  // The read buffer is small while the session is quiet and grows while reads keep
  // filling it: four times fewer reads of a busy transport (bench_mux, 100 streams:
  // +0.05-0.1 of the TCP baseline), 64 KiB held by an idle session.
  constexpr std::size_t quiet_size = 64 * 1024;
  constexpr std::size_t busy_size = 256 * 1024;
  std::vector<std::byte> buf(quiet_size);
  std::size_t have = 0;
  for (;;) {
    if (have == buf.size()) buf.resize(buf.size() * 2);  // a frame larger than the buffer
    const std::size_t asked = buf.size() - have;
    auto n = co_await io.read_some(mutable_buffer(buf.data() + have, asked), deadline::never());
    if (!n) {
      if (n.error() == errc::end_of_stream && goaway_received) {
        fail(make_error_code(error::going_away));
      } else {
        fail(n.error());
      }
      co_return;
    }
    last_heard = deadline::clock::now();
    heard.set();
    have += *n;
    std::size_t off = 0;
    for (;;) {
      auto f = dec.decode(const_buffer(buf.data() + off, have - off));
      if (!f) {
        if (!failed) {
          append_goaway(out, last_peer_id, code_protocol);
          kick();
        }
        fail(f.error());
        co_return;
      }
      if (!*f) break;
      auto handled = handle(**f);
      if (handled && out.size() > opts.send_buffer + opts.max_frame + opts.control_backlog) {
        handled = make_error_code(error::control_flood);
      }
      if (!handled) {
        append_goaway(out, last_peer_id, code_protocol);
        kick();
        fail(handled.error());
        co_return;
      }
      off += (*f)->size;
    }
    if (off > 0) {
      std::memmove(buf.data(), buf.data() + off, have - off);
      have -= off;
    }
    if (*n == asked && buf.size() < busy_size) {
      buf.resize(busy_size);
    } else if (*n < quiet_size / 4 && buf.size() > quiet_size && have < quiet_size / 2) {
      buf.resize(quiet_size);
      buf.shrink_to_fit();
    }
  }
}

task<void> session_state::writer() {
  std::string sending;
  for (;;) {
    wake.reset();
    if (!out.empty()) {
      sending.clear();
      sending.swap(out);
      out_space.set();
      writing = true;
      ++counters.writes;
      auto sent = co_await io.write(as_bytes(sending), deadline::after(opts.write_timeout));
      writing = false;
      if (!sent) {
        fail(sent.error());
        drained.set();
        co_return;
      }
      continue;
    }
    drained.set();
    if (failed) co_return;
    auto waited = co_await wake.wait(deadline::never());
    if (!waited) co_return;
  }
}

task<void> session_state::keepalive() {
  for (;;) {
    auto due = last_heard + opts.keepalive;
    auto w = co_await stop.wait(deadline::at(due));
    if (w || w.error() != errc::timed_out || failed) co_return;
    if (deadline::clock::now() - last_heard < opts.keepalive) continue;
    ++counters.pings;
    heard.reset();
    append_ping(out, 0, ++ping_sent_opaque);
    kick();
    // Anything from the peer (the ACK or any other frame) proves it alive.
    auto answer = co_await heard.wait(deadline::after(opts.dead_after));
    if (failed) co_return;
    if (!answer) {
      if (answer.error() != errc::timed_out) co_return;
      fail(make_error_code(error::peer_dead));
      tasks.cancel();  // the reader waits on a transport nobody answers on
      co_return;
    }
  }
}

// -- stream ------------------------------------------------------------------------------

stream::stream() noexcept = default;
stream::stream(std::shared_ptr<session_state> s, std::shared_ptr<stream_state> st) noexcept
    : session_(std::move(s)), state_(std::move(st)) {}
stream::stream(stream&&) noexcept = default;
stream& stream::operator=(stream&& other) noexcept {
  if (this != &other) {
    reset();
    session_ = std::move(other.session_);
    state_ = std::move(other.state_);
  }
  return *this;
}
stream::~stream() { reset(); }

std::uint32_t stream::id() const noexcept { return state_ ? state_->id : 0; }

void stream::reset() noexcept {
  if (!state_ || state_->closed) return;
  auto& s = *session_;
  auto& st = *state_;
  st.closed = true;
  if (!st.removed) s.send_rst(st, code_cancel);
  st.fail(make_error_code(error::stream_reset));
}

task<result<std::size_t>> stream::read_some(mutable_buffer buf, deadline dl) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto& s = *session_;
  auto& st = *state_;
  if (buf.empty()) co_return std::size_t{0};
  for (;;) {
    if (st.delivered > 0 || st.buffered() > 0) {
      std::size_t n = std::exchange(st.delivered, 0);
      std::size_t copied = 0;
      while (n < buf.size() && !st.in.empty()) {
        auto& block = st.in.front();
        std::size_t part = std::min(buf.size() - n, block.size() - st.in_off);
        std::memcpy(buf.data() + n, block.data() + st.in_off, part);
        n += part;
        copied += part;
        st.in_off += part;
        if (st.in_off == block.size()) {
          s.give_back(std::move(block));
          st.in.pop_front();
          st.in_off = 0;
        }
      }
      st.in_bytes -= copied;
      st.consumed += n;
      if (!st.fin_received && !st.removed && !s.failed && st.consumed >= s.opts.window / 4) {
        append_window_update(s.out, st.id, static_cast<std::uint32_t>(st.consumed));
        st.recv_window += st.consumed;
        st.consumed = 0;
        s.kick();
      }
      co_return n;
    }
    if (st.fin_received) co_return errc::end_of_stream;
    if (st.failure) co_return unexpected(st.failure);
    st.readable.reset();
    // Until this read resumes, the reader may write the next payload into `buf`. The
    // guard withdraws the offer however the wait ends. A read destroyed while it waits,
    // after bytes were handed to it, took them with it: the stream fails rather than let
    // the next read report bytes it never got.
    struct offer {
      stream_state& st;
      bool waiting = true;
      ~offer() {
        st.waiting = {};
        if (waiting && st.delivered > 0) {
          st.delivered = 0;
          st.fail(make_error_code(errc::broken));
        }
      }
    } offered{st};
    st.waiting = buf;
    auto w = co_await st.readable.wait(dl);
    offered.waiting = false;
    st.waiting = {};
    if (st.delivered > 0) continue;  // bytes arrived, even if the wait also ended otherwise
    if (!w) co_return unexpected(w.error());
  }
}

task<result<void>> stream::write(const_buffers bufs, deadline dl) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto& s = *session_;
  auto& st = *state_;
  if (st.fin_sent) co_return errc::closed;
  for (auto part : bufs.view()) {
    std::size_t done = 0;
    while (done < part.size()) {
      if (st.failure) co_return unexpected(st.failure);
      if (s.failed) co_return unexpected(s.failed);
      if (st.send_window == 0) {
        st.writable.reset();
        auto w = co_await st.writable.wait(dl);
        if (!w) co_return unexpected(w.error());
        continue;
      }
      if (s.out.size() >= s.opts.send_buffer) {
        s.out_space.reset();
        auto w = co_await s.out_space.wait(dl);
        if (!w) co_return unexpected(w.error());
        continue;
      }
      std::size_t n = std::min<std::uint64_t>({part.size() - done, st.send_window, s.opts.max_frame});
      append_data(s.out, st.id, 0, const_buffer(part.data() + done, n));
      st.send_window -= n;
      done += n;
      s.kick();
    }
  }
  co_return result<void>{};
}

task<result<void>> stream::shutdown_write(deadline) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto& s = *session_;
  auto& st = *state_;
  if (st.fin_sent) co_return result<void>{};
  if (st.failure) co_return unexpected(st.failure);
  if (s.failed) co_return unexpected(s.failed);
  append_data(s.out, st.id, flag_fin, const_buffer{});
  st.fin_sent = true;
  s.kick();
  s.maybe_finished(st);
  co_return result<void>{};
}

task<result<void>> stream::close(deadline dl) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto& s = *session_;
  auto& st = *state_;
  (void)co_await shutdown_write(dl);
  st.closed = true;
  // Drop what is buffered and what still comes; credit goes back so the peer can finish.
  st.consumed += st.buffered();
  s.drop_in(st);
  if (!st.fin_received && !st.removed && !s.failed && st.consumed > 0) {
    append_window_update(s.out, st.id, static_cast<std::uint32_t>(st.consumed));
    st.recv_window += st.consumed;
    st.consumed = 0;
    s.kick();
  }
  // Until the peer's FIN (or RST) the stream stays in the session, which drops what
  // arrives and returns the credit at once; close does not wait for it.
  if (st.fin_received || st.failure) s.remove(st);
  co_return result<void>{};
}

// -- session -----------------------------------------------------------------------------

session::session(any_stream transport, role r) : session(std::move(transport), r, options{}) {}
session::session(any_stream transport, role r, options o)
    : state_(std::make_shared<session_state>(std::move(transport), r, o)) {
  auto& s = *state_;
  s.tasks.spawn(s.reader());
  s.tasks.spawn(s.writer());
  if (s.opts.keepalive.count() > 0) s.tasks.spawn(s.keepalive());
}
session::session(session&&) noexcept = default;
session& session::operator=(session&& other) noexcept {
  if (this != &other) {
    if (state_) go_away();
    state_ = std::move(other.state_);
  }
  return *this;
}
session::~session() {
  if (state_) go_away();
}

std::error_code session::failure() const noexcept {
  return state_ ? state_->failed : make_error_code(errc::closed);
}
std::size_t session::open_streams() const noexcept { return state_ ? state_->streams.size() : 0; }
stats session::counters() const noexcept { return state_ ? state_->counters : stats{}; }

void session::go_away() {
  if (!state_) return;
  auto& s = *state_;
  if (s.goaway_sent || s.failed) return;
  s.goaway_sent = true;
  append_goaway(s.out, s.last_peer_id, code_none);
  s.kick();
  s.accepted_ev.set();
}

task<result<stream>> session::open(deadline) {
  if (!state_) co_return errc::closed;
  auto& s = *state_;
  if (s.failed) co_return unexpected(s.failed);
  if (s.goaway_sent || s.goaway_received || s.next_id > 0x7fffffffu)
    co_return unexpected(make_error_code(error::going_away));
  auto id = s.next_id;
  s.next_id += 2;
  auto st = s.make_stream(id);
  append_data(s.out, id, flag_syn, const_buffer{});
  s.kick();
  ++s.counters.opened;
  co_return stream(state_, std::move(st));
}

task<result<stream>> session::accept(deadline dl) {
  if (!state_) co_return errc::closed;
  auto keep = state_;
  auto& s = *keep;
  for (;;) {
    if (!s.backlog.empty()) {
      auto st = std::move(s.backlog.front());
      s.backlog.pop_front();
      co_return stream(keep, std::move(st));
    }
    if (s.failed) co_return unexpected(s.failed);
    if (s.goaway_sent || s.goaway_received) co_return unexpected(make_error_code(error::going_away));
    s.accepted_ev.reset();
    auto w = co_await s.accepted_ev.wait(dl);
    if (!w) co_return unexpected(w.error());
  }
}

task<result<void>> session::close(deadline dl) {
  if (!state_) co_return errc::closed;
  auto keep = std::move(state_);
  auto& s = *keep;
  if (!s.goaway_sent && !s.failed) {
    s.goaway_sent = true;
    append_goaway(s.out, s.last_peer_id, code_none);
    s.kick();
  }
  s.accepted_ev.set();
  while (!s.streams.empty() && !s.failed) {
    s.streams_done.reset();
    auto w = co_await s.streams_done.wait(dl);
    if (!w) break;
  }
  while (!s.failed && (!s.out.empty() || s.writing)) {
    auto w = co_await s.drained.wait(dl);
    if (!w) break;
  }
  if (!s.failed) s.fail(make_error_code(error::going_away));
  s.tasks.cancel();
  (void)co_await s.tasks.join(dl);
  co_return co_await s.io.close(dl);
}

}  // namespace strata::mux
