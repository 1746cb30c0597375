#include "relay.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "strata/core/flush.hpp"
#include "strata/transport/shm.hpp"

namespace strata::cli {
namespace {

// Messages a broadcast subscriber lost under policy=overwrite are not an error, but the
// user must hear of them: the shm subscriber reports each loss here (it sits behind
// any_message, out of reach of loss_count()), and the relay prints the total.
std::uint64_t& messages_lost() {
  static std::uint64_t lost = 0;
  return lost;
}
void count_loss(std::string_view, std::uint64_t lost) { messages_lost() += lost; }

constexpr std::size_t chunk = 64 * 1024;
// Largest line or message the relay buffers when the stack declares no max_message.
constexpr std::size_t default_message_limit = 64u << 20;

// relay_state is shared by the tasks of one relay (first_failure: the first failure
// wins and stops the relay).
struct relay_state : first_failure {
  deadline::clock::time_point last_activity = deadline::clock::now();
  deadline::clock::time_point last_stdin = deadline::clock::now();  // last data read from stdin
  bool peer_done = false;                                           // the peer has finished sending
  event sender_done;  // stdin -> connection has ended (or given up)
  stdio_guard* stdio = nullptr;

  // fail_write records a failed write to the connection. Once the peer has finished
  // sending, `broken` only says it has closed entirely: the rest of stdin is dropped
  // (as nc does) and that is not a failure.
  void fail_write(std::string where, std::error_code ec, scope& s) {
    if (peer_done && ec == errc::broken) return;
    fail(std::move(where), ec, s);
  }
  void touch() { last_activity = deadline::clock::now(); }
  void touch_stdin() { last_stdin = last_activity = deadline::clock::now(); }
};

std::error_code stdout_error(std::error_code ec) {
  // from_errno maps EPIPE to `broken`; on stdout it means the reader went away.
  if (ec == errc::broken) return std::make_error_code(std::errc::broken_pipe);
  return ec;
}

std::size_t message_limit(const any_connection& conn) {
  auto caps = conn.runtime_capabilities();
  return caps.max_message ? caps.max_message : default_message_limit;
}

// stdin -> connection, bytes.
task<void> send_stream(any_stream& out, stdin_source& in, relay_state& st, const relay_options& options,
                       scope& s) {
  for (;;) {
    if (!in.pending.empty()) {
      auto r = co_await out.write(const_buffer(in.pending.readable()), deadline::never());
      if (!r && r.error() == errc::not_supported) co_return;  // a read-only (simplex) stack
      if (!r) co_return st.fail_write(options.label + ": write", r.error(), s);
      in.pending.consume(in.pending.size());
      st.touch();
      continue;
    }
    if (in.ended) {
      auto r = co_await out.shutdown_write(deadline::never());
      if (!r && r.error() != errc::not_supported) st.fail_write(options.label + ": shutdown", r.error(), s);
      co_return;
    }
    // What stdin gave so far leaves before the relay waits for more: a `buffered`
    // layer in the stack would otherwise hold interactive input until it fills.
    if (detail::output_pending(out)) {
      auto flushed = co_await flush(out, deadline::never());
      if (!flushed) co_return st.fail_write(options.label + ": flush", flushed.error(), s);
    }
    auto space = in.pending.writable(chunk);
    auto n = co_await read_fd(st.stdio->in(), space.first(std::min(space.size(), chunk)), deadline::never());
    if (!n) {
      if (n.error() == errc::operation_canceled) co_return;
      in.ended = true;
      if (n.error() != errc::end_of_stream) co_return st.fail("stdin", n.error(), s);
      continue;
    }
    in.pending.commit(*n);
    st.touch_stdin();
  }
}

// stdin -> connection, one message per line.
task<void> send_lines(any_message& out, stdin_source& in, std::size_t limit, relay_state& st,
                      const relay_options& options, scope& s) {
  std::size_t scanned = 0;  // bytes of pending known to hold no '\n'
  for (;;) {
    auto data = in.pending.readable();
    // (An empty buffer may have no storage at all: memchr must not see a null pointer.)
    auto* nl =
        data.size() > scanned
            ? static_cast<const std::byte*>(std::memchr(data.data() + scanned, '\n', data.size() - scanned))
            : nullptr;
    if (nl != nullptr || (in.ended && !data.empty())) {
      std::size_t line = nl ? static_cast<std::size_t>(nl - data.data()) : data.size();
      if (line > limit) co_return st.fail("stdin", errc::message_too_large, s);
      auto r = co_await out.send(const_buffer(data.data(), line), deadline::never());
      if (!r && r.error() == errc::not_supported) co_return;  // a receive-only (simplex) stack
      if (!r) co_return st.fail_write(options.label + ": send", r.error(), s);
      in.pending.consume(nl ? line + 1 : line);
      scanned = 0;
      st.touch();
      continue;
    }
    scanned = data.size();
    if (in.ended) {
      auto r = co_await out.shutdown_write(deadline::never());
      if (!r && r.error() != errc::not_supported) st.fail_write(options.label + ": shutdown", r.error(), s);
      co_return;
    }
    if (scanned > limit) co_return st.fail("stdin: line", errc::message_too_large, s);
    if (detail::output_pending(out)) {  // as send_stream: no line waits behind stdin
      auto flushed = co_await flush(out, deadline::never());
      if (!flushed) co_return st.fail_write(options.label + ": flush", flushed.error(), s);
    }
    auto space = in.pending.writable(chunk);
    auto n = co_await read_fd(st.stdio->in(), space.first(std::min(space.size(), chunk)), deadline::never());
    if (!n) {
      if (n.error() == errc::operation_canceled) co_return;
      in.ended = true;
      if (n.error() != errc::end_of_stream) co_return st.fail("stdin", n.error(), s);
      continue;
    }
    in.pending.commit(*n);
    st.touch_stdin();
  }
}

// connection -> stdout, bytes. Returns when the peer has finished (or on failure).
task<void> receive_stream(any_stream& from, relay_state& st, const relay_options& options, scope& s) {
  std::vector<std::byte> buf(chunk);
  for (;;) {
    auto n = co_await from.read_some(buf, deadline::never());
    if (!n) {
      if (n.error() == errc::not_supported) {
        // A write-only (simplex) stack: nothing comes back; done once stdin is sent.
        (void)co_await st.sender_done.wait(deadline::never());
        co_return;
      }
      if (n.error() == errc::end_of_stream || n.error() == errc::operation_canceled) co_return;
      co_return st.fail(options.label + ": read", n.error(), s);
    }
    st.touch();
    auto w = co_await write_fd(st.stdio->out(), const_buffer(buf.data(), *n), deadline::never());
    if (!w) {
      if (w.error() == errc::operation_canceled) co_return;
      co_return st.fail("stdout", stdout_error(w.error()), s);
    }
  }
}

// connection -> stdout, one line per message.
task<void> receive_lines(any_message& from, std::size_t limit, relay_state& st, const relay_options& options,
                         scope& s) {
  // Not a vector: growing one zero-fills it, so a long message would cost its size several
  // times over. byte_buffer memory follows the bytes received.
  byte_buffer buf;
  auto room = buf.writable(std::min(chunk, limit));
  static constexpr std::byte newline[1] = {std::byte{'\n'}};
  for (;;) {
    auto n = co_await from.recv(room, deadline::never());
    if (!n) {
      if (n.error() == errc::message_too_large && room.size() < limit) {
        // The layer keeps the message: retry with a larger buffer (nothing to copy over).
        auto larger = std::min(room.size() * 4, limit);
        buf.release();
        room = buf.writable(larger);
        continue;
      }
      if (n.error() == errc::not_supported) {
        // A send-only (simplex) stack: nothing comes back; done once stdin is sent.
        (void)co_await st.sender_done.wait(deadline::never());
        co_return;
      }
      if (n.error() == errc::end_of_stream || n.error() == errc::operation_canceled) co_return;
      co_return st.fail(options.label + ": receive", n.error(), s);
    }
    st.touch();
    std::array<const_buffer, 2> parts{const_buffer(room.data(), *n), const_buffer(newline)};
    auto w = co_await write_fd(st.stdio->out(), std::span<const const_buffer>(parts), deadline::never());
    if (!w) {
      if (w.error() == errc::operation_canceled) co_return;
      co_return st.fail("stdout", stdout_error(w.error()), s);
    }
  }
}

// finish_sending runs the stdin -> connection direction and raises sender_done after it.
task<void> finish_sending(task<void> sender, relay_state& st) {
  co_await std::move(sender);
  st.sender_done.set();
}

task<void> idle_watch(duration idle, relay_state& st, scope& s) {
  for (;;) {
    auto until = st.last_activity + idle;
    if (deadline::clock::now() >= until) {
      co_return st.fail("no data for " + format_duration(idle) + " (--idle)", errc::timed_out, s);
    }
    if (!co_await sleep_until(deadline::at(until))) co_return;  // canceled
  }
}

}  // namespace

task<int> relay(any_connection& conn, stdio_guard& stdio, stdin_source& in, const relay_options& options) {
  relay_state st;
  st.stdio = &stdio;
  messages_lost() = 0;
  shm::observe_losses(count_loss);
  co_await with_scope([&](scope& s) -> task<void> {
    if (options.idle) s.spawn(idle_watch(*options.idle, st, s));
    if (conn.is_stream()) {
      s.spawn(finish_sending(send_stream(conn.stream(), in, st, options, s), st));
      co_await receive_stream(conn.stream(), st, options, s);
    } else {
      std::size_t limit = message_limit(conn);
      s.spawn(finish_sending(send_lines(conn.message(), in, limit, st, options, s), st));
      co_await receive_lines(conn.message(), limit, st, options, s);
    }
    if (!st.error && !s.canceled()) {
      // The peer has finished sending. Let stdin's remaining data go out for as long as
      // stdin keeps delivering: give up after `linger` without new stdin data.
      st.peer_done = true;
      st.last_stdin = deadline::clock::now();
      while (!st.sender_done.is_set()) {
        auto until = st.last_stdin + options.linger;
        if (deadline::clock::now() >= until) break;
        auto r = co_await st.sender_done.wait(deadline::at(until));
        if (!r && r.error() != errc::timed_out) break;  // canceled
      }
    }
    s.cancel();  // stops stdin reading and the idle watch
  });
  // Orderly when the peer finished; after a failure close() gives up quickly.
  (void)co_await conn.close(
      deadline::after(st.error ? std::chrono::milliseconds(200) : std::chrono::seconds(2)));
  shm::observe_losses(nullptr);
  if (auto lost = messages_lost(); lost > 0) {
    report(options.label + ": " + std::to_string(lost) + (lost == 1 ? " message" : " messages") +
           " lost (policy=overwrite)");
  }
  if (st.error) {
    report(st.what, st.error);
    co_return exit_failure;
  }
  co_return exit_ok;
}

}  // namespace strata::cli
