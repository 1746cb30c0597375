// websocket: the connection driver over the sans-I/O receiver and sender
// (include/strata/app/websocket.hpp). One task may send while another receives; the
// write side is held by one of them at a time (a flag and an event), and the control
// frames recv must send (pong, the close reply) wait in a queue for whoever holds it.
#include <algorithm>
#include <array>
#include <cstring>

#include "strata/app/websocket.hpp"
#include "strata/runtime/event.hpp"

namespace strata::websocket {
namespace {

// Free space offered to each read while frames flow.
constexpr std::size_t read_chunk = 64 * 1024;
// The least room offered to a read that continues a partial frame.
constexpr std::size_t min_room = 1024;
// How long a connection may wait with its chunk before it gives it back.
constexpr std::chrono::milliseconds idle_grace{50};
// Room for the read that waits on an idle connection.
constexpr std::size_t wake_read = 512;
// Control frames queued for the writer beyond this are dropped (pongs: a peer that
// pings faster than we can write gets an answer to its latest pings only).
constexpr std::size_t control_queue_limit = 4 * 1024;

send_options send_options_of(const options& o) {
  send_options s;
  s.fragment_size = o.fragment_size;
  return s;
}

receive_limits receive_limits_of(const options& o) {
  receive_limits l;
  l.max_message = o.max_message;
  return l;
}

}  // namespace

struct connection::impl {
  impl(any_stream s, session sess_, const websocket::options& o, std::vector<std::byte> unread)
      : lower(std::move(s)),
        sess(std::move(sess_)),
        opts(o),
        rx(sess.role, sess.deflate, receive_limits_of(o)),
        tx(sess.role, sess.deflate, send_options_of(o)) {
    if (!unread.empty()) in.append(unread);
  }

  any_stream lower;
  session sess;
  websocket::options opts;
  receiver rx;
  sender tx;
  byte_buffer in;       // received, not consumed
  byte_buffer out;      // what the writer writes now (only the writer touches it)
  byte_buffer control;  // control frames recv queued for the writer

  bool writing = false;  // the write side is held
  event write_free;
  bool reading = false;  // a recv (or close) is reading
  event read_done;       // set whenever a read ends

  // A message reported by the receiver and not yet taken (the caller's buffer was small).
  bool pending = false;
  const_buffer pending_data{};
  message_kind pending_kind = message_kind::binary;
  std::size_t pending_consumed = 0;

  std::error_code read_error{};   // sticky: end_of_stream after the peer's close, or the failure
  std::error_code write_error{};  // sticky: the write that failed
  bool close_sent = false;
  bool close_received = false;
  bool closing = false;  // close() was called: recv answers closed from now on
  bool closed = false;
  std::optional<close_status> peer;
  std::uint64_t pongs = 0;
  std::vector<std::byte> last_pong;

  /// write_guard holds the write side; it is released on every exit of its coroutine.
  struct write_guard {
    impl* c = nullptr;
    write_guard() = default;
    explicit write_guard(impl* owner) : c(owner) {}
    write_guard(write_guard&& o) noexcept : c(std::exchange(o.c, nullptr)) {}
    write_guard& operator=(write_guard&&) = delete;
    ~write_guard() {
      if (c) {
        c->writing = false;
        c->write_free.set();
      }
    }
  };

  /// read_guard marks a read in progress and tells close() when it ends.
  struct read_guard {
    impl* c;
    explicit read_guard(impl* owner) : c(owner) { c->reading = true; }
    read_guard(const read_guard&) = delete;
    read_guard& operator=(const read_guard&) = delete;
    ~read_guard() {
      c->reading = false;
      c->read_done.set();
    }
  };

  /// acquire_write waits until the write side is free and takes it.
  /// Errors: timed_out, operation_canceled (nothing taken).
  task<result<void>> acquire_write(deadline dl) {
    while (writing) {
      write_free.reset();
      auto w = co_await write_free.wait(dl);
      if (!w) co_return unexpected(w.error());
    }
    writing = true;
    co_return result<void>{};
  }

  /// take_control moves the queued control frames to the front of `out` (the writer's).
  void take_control() {
    if (control.empty()) return;
    out.append(control.readable());
    control.consume(control.size());
  }

  /// write_out writes `out` (with `extra` parts after it) and empties it.
  task<result<void>> write_out(std::span<const const_buffer> extra, deadline dl) {
    std::array<const_buffer, 8> small{};
    std::vector<const_buffer> large;
    std::span<const_buffer> parts(small);
    auto count = extra.size() + 1;
    if (count > small.size()) {
      large.resize(count);
      parts = large;
    }
    std::size_t n = 0;
    if (!out.empty()) parts[n++] = out.readable();
    for (auto e : extra) parts[n++] = e;
    auto w = co_await lower.write(std::span<const const_buffer>(parts.data(), n), dl);
    out.consume(out.size());
    if (!w) write_error = w.error();
    co_return w;
  }

  /// flush_control writes what recv queued (while the caller holds the write side).
  task<void> flush_control() {
    while (!control.empty() && !write_error) {
      take_control();
      (void)co_await write_out({}, deadline::after(opts.close_timeout));
    }
    if (out.capacity() > 256 * 1024) out.release();
  }

  /// enqueue queues a control frame (recv's pong and close reply) for the writer.
  void enqueue(opcode op, const_buffer payload) {
    if (write_error) return;
    if (op == opcode::pong && control.size() > control_queue_limit) return;
    (void)tx.encode_control(op, payload, control);
  }

  /// kick writes the queued control frames now when the write side is free; otherwise
  /// its holder writes them before letting go.
  task<void> kick() {
    if (writing || control.empty()) co_return;
    writing = true;
    write_guard held(this);
    co_await flush_control();
  }

  /// fail records a protocol failure of the read side and closes with its code.
  task<std::error_code> fail(error e) {
    read_error = make_error_code(e);
    if (!close_sent && !write_error) {
      close_sent = true;
      auto payload = encode_close_payload(close_code_for(e), category().message(static_cast<int>(e)));
      enqueue(opcode::close, payload);
      co_await kick();
    }
    co_return read_error;
  }

  /// read_more reads from the lower layer into `in`. Memory follows the bytes that
  /// arrived, never a header's claim; an idle connection gives its buffer back.
  task<result<void>> read_more(deadline dl) {
    if (!in.empty()) {
      auto n = co_await lower.read_some(in.writable(std::clamp(in.size(), min_room, read_chunk)), dl);
      if (!n) co_return unexpected(n.error());
      in.commit(*n);
      co_return result<void>{};
    }
    if (in.capacity() != 0) {
      auto until = deadline::earlier(dl, deadline::after(idle_grace));
      auto n = co_await lower.read_some(in.writable(read_chunk), until);
      if (n) {
        in.commit(*n);
        co_return result<void>{};
      }
      if (n.error() != errc::timed_out || until == dl) co_return unexpected(n.error());
      in.release();
    }
    std::array<std::byte, wake_read> first;
    auto n = co_await lower.read_some(first, dl);
    if (!n) co_return unexpected(n.error());
    in.writable(*n == first.size() ? read_chunk : min_room);
    in.append(const_buffer(first.data(), *n));
    co_return result<void>{};
  }

  /// receive runs the receiver until a data message is pending (or, with `drop`, until
  /// the peer's close or a failure, dropping messages). Answers pings and the close.
  task<result<void>> receive(bool drop, deadline dl) {
    read_guard guard(this);
    for (;;) {
      if (pending) {
        if (!drop) co_return result<void>{};
        in.consume(pending_consumed);
        pending = false;
      }
      if (read_error) co_return unexpected(read_error);
      auto ev = rx.next(in.readable());
      using type = receiver::event::type;
      switch (ev.what) {
        case type::message:
          pending = true;
          pending_data = ev.data;
          pending_kind = ev.kind;
          pending_consumed = ev.consumed;
          continue;
        case type::ping: {
          // The pong is encoded (copied) before the ping's bytes are dropped.
          if (!close_sent) enqueue(opcode::pong, ev.data);
          in.consume(ev.consumed);
          co_await kick();
          continue;
        }
        case type::pong:
          ++pongs;
          last_pong.assign(ev.data.begin(), ev.data.end());
          in.consume(ev.consumed);
          continue;
        case type::close: {
          close_status status;
          status.code = ev.code;
          status.reason.assign(ev.reason);
          peer = std::move(status);
          in.consume(ev.consumed);
          close_received = true;
          read_error = make_error_code(errc::end_of_stream);
          if (!close_sent && !write_error) {
            // Echo the peer's code (RFC 6455 5.5.1); an empty close gets an empty one.
            close_sent = true;
            auto payload = encode_close_payload(peer->code, {});
            enqueue(opcode::close, payload);
            co_await kick();
          }
          co_return unexpected(read_error);
        }
        case type::error:
          co_return unexpected(co_await fail(ev.failure));
        case type::need_more:
          break;
      }
      in.consume(ev.consumed);
      auto got = co_await read_more(dl);
      if (!got) {
        auto ec = got.error();
        if (ec == errc::timed_out || ec == errc::operation_canceled) co_return unexpected(ec);
        read_error = ec == errc::end_of_stream ? make_error_code(error::truncated) : ec;
        co_return unexpected(read_error);
      }
    }
  }
};

connection::connection(any_stream lower, session s, const websocket::options& o,
                       std::vector<std::byte> unread)
    : impl_(std::make_unique<impl>(std::move(lower), std::move(s), o, std::move(unread))) {}
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;
connection::~connection() = default;

task<result<void>> connection::send(const_buffers message, deadline dl) {
  return send(impl_->opts.send_kind, message, dl);
}

task<result<void>> connection::send(message_kind kind, const_buffers message, deadline dl) {
  auto& c = *impl_;
  if (c.closed || c.close_sent) co_return errc::closed;
  if (c.write_error) co_return unexpected(c.write_error);
  auto size = message.total_size();
  if (size > c.opts.max_message) co_return errc::message_too_large;
  if (kind == message_kind::text) {
    utf8_validator v;
    for (auto part : message.view()) v.feed(part);
    if (!v.complete()) co_return errc::invalid_argument;
  }
  if (auto got = co_await c.acquire_write(dl); !got) co_return got;
  impl::write_guard held(&c);
  if (c.close_sent) co_return errc::closed;
  if (c.write_error) co_return unexpected(c.write_error);
  c.take_control();
  std::array<std::byte, max_header_size> header{};
  result<void> sent;
  if (auto n = c.tx.direct_header(kind, size, header); n != 0) {
    // A server's uncompressed message in one frame: header and payload in one gather
    // write, the payload not copied.
    std::array<const_buffer, 8> small{};
    std::vector<const_buffer> large;
    auto parts_in = message.view();
    std::span<const_buffer> parts(small);
    if (parts_in.size() + 1 > small.size()) {
      large.resize(parts_in.size() + 1);
      parts = large;
    }
    parts[0] = const_buffer(header.data(), n);
    std::copy(parts_in.begin(), parts_in.end(), parts.begin() + 1);
    sent = co_await c.write_out(std::span<const const_buffer>(parts.data(), parts_in.size() + 1), dl);
  } else {
    if (auto encoded = c.tx.encode_message(kind, message, c.out); !encoded) {
      c.out.consume(c.out.size());
      co_return encoded;
    }
    sent = co_await c.write_out({}, dl);
  }
  if (!sent) co_return sent;
  co_await c.flush_control();
  co_return result<void>{};
}

task<result<std::size_t>> connection::recv(mutable_buffer buf, deadline dl) {
  auto got = co_await recv_message(buf, dl);
  if (!got) co_return unexpected(got.error());
  co_return got->size;
}

task<result<message_info>> connection::recv_message(mutable_buffer buf, deadline dl) {
  auto& c = *impl_;
  // Once close() runs it reads (and drops) what comes: a second reader would race it.
  if (c.closed || c.closing) co_return errc::closed;
  if (!c.pending) {
    if (auto got = co_await c.receive(false, dl); !got) co_return unexpected(got.error());
  }
  if (c.pending_data.size() > buf.size()) co_return errc::message_too_large;
  if (!c.pending_data.empty()) std::memcpy(buf.data(), c.pending_data.data(), c.pending_data.size());
  message_info info;
  info.size = c.pending_data.size();
  info.kind = c.pending_kind;
  c.in.consume(c.pending_consumed);
  c.pending = false;
  c.pending_data = {};
  co_return info;
}

task<result<void>> connection::ping(const_buffer payload, deadline dl) {
  auto& c = *impl_;
  if (payload.size() > max_control_payload) co_return errc::invalid_argument;
  if (c.closed || c.close_sent) co_return errc::closed;
  if (c.write_error) co_return unexpected(c.write_error);
  if (auto got = co_await c.acquire_write(dl); !got) co_return got;
  impl::write_guard held(&c);
  if (c.close_sent) co_return errc::closed;
  c.take_control();
  (void)c.tx.encode_control(opcode::ping, payload, c.out);
  auto sent = co_await c.write_out({}, dl);
  if (!sent) co_return sent;
  co_await c.flush_control();
  co_return result<void>{};
}

task<result<void>> connection::close(deadline dl) { return close(close_code::normal, {}, dl); }

task<result<void>> connection::close(std::uint16_t code, std::string_view reason, deadline dl) {
  auto& c = *impl_;
  if (c.closed) co_return errc::closed;
  if (!valid_close_code(code) || !is_utf8(as_bytes(reason))) co_return errc::invalid_argument;
  auto payload = encode_close_payload(code, reason);
  c.closing = true;
  bool late = false;
  // Our close frame, or a close reply recv queued behind a send: written before the
  // stream closes (after the send in flight, if any).
  if (!c.write_error && (!c.close_sent || !c.control.empty() || c.writing)) {
    if (auto got = co_await c.acquire_write(dl); !got) {
      late = true;
    } else {
      impl::write_guard held(&c);
      c.take_control();
      if (!c.close_sent) {
        c.close_sent = true;
        (void)c.tx.encode_control(opcode::close, payload, c.out);
      }
      if (!c.out.empty()) (void)co_await c.write_out({}, dl);
    }
  }
  // The peer's close: seen by a pending recv, or read here (dropping data messages).
  while (!late && !c.close_received && !c.read_error) {
    if (c.reading) {
      c.read_done.reset();
      if (auto w = co_await c.read_done.wait(dl); !w) late = true;
      continue;
    }
    auto got = co_await c.receive(true, dl);
    if (!got && (got.error() == errc::timed_out || got.error() == errc::operation_canceled)) late = true;
  }
  c.closed = true;
  c.pending = false;
  // An orderly close of the stream (the server's end closes first, RFC 6455 7.1.1; the
  // client's waits for it in the lower close's drain); reset when the peer was late.
  auto lowered = co_await c.lower.close(late ? deadline::already() : dl);
  c.in.release();
  if (late) co_return errc::timed_out;
  co_return lowered;
}

std::optional<close_status> connection::peer_close() const { return impl_->peer; }
std::uint64_t connection::pongs_received() const noexcept { return impl_->pongs; }
const std::vector<std::byte>& connection::last_pong() const noexcept { return impl_->last_pong; }
const std::string& connection::protocol() const noexcept { return impl_->sess.protocol; }
bool connection::compressed() const noexcept { return impl_->sess.deflate.enabled; }
websocket::role connection::side() const noexcept { return impl_->sess.role; }
const websocket::options& connection::options() const noexcept { return impl_->opts; }
std::size_t connection::max_message() const noexcept { return impl_->opts.max_message; }

properties connection::runtime_capabilities() const {
  auto out = stack_on(impl_->lower.runtime_capabilities(), row);
  out.max_message = impl_->opts.max_message;
  return out;
}

std::size_t connection::buffered_capacity() const noexcept {
  return impl_->in.capacity() + impl_->rx.buffered_capacity();
}

any_stream& connection::next_layer() noexcept { return impl_->lower; }
const any_stream& connection::next_layer() const noexcept { return impl_->lower; }

}  // namespace strata::websocket
