#include "endpoint.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <vector>

namespace strata::cli {
namespace {

constexpr std::size_t chunk = 64 * 1024;
// Largest datagram or stdin line handled when the endpoint declares no max_message. A
// unix sender with a larger send buffer than ours may send more than our max_message, so
// receives grow up to this.
constexpr std::size_t largest_message = 64u << 20;

// endpoint_state is shared by the receiving and the answering task (first_failure: the
// first failure wins).
struct endpoint_state : first_failure {
  std::optional<address> last_sender;  // the sender of the latest datagram
  event have_sender;                   // a first datagram has arrived
  deadline::clock::time_point last_activity = deadline::clock::now();
  stdio_guard* stdio = nullptr;

  void touch() { last_activity = deadline::clock::now(); }
};

std::error_code stdout_error(std::error_code ec) {
  // from_errno maps EPIPE to `broken`; on stdout it means the reader went away.
  if (ec == errc::broken) return std::make_error_code(std::errc::broken_pipe);
  return ec;
}

// endpoint -> stdout, one line per datagram. Returns on failure or cancellation.
task<void> print_datagrams(any_datagram& endpoint, endpoint_state& st, const endpoint_options& options,
                           scope& s) {
  auto declared = endpoint.runtime_capabilities().max_message;
  std::vector<std::byte> room(declared ? declared : chunk);
  static constexpr std::byte newline[1] = {std::byte{'\n'}};
  for (;;) {
    auto dl = options.idle ? deadline::at(st.last_activity + *options.idle) : deadline::never();
    auto got = co_await endpoint.recv_from(room, dl);
    if (!got) {
      if (got.error() == errc::timed_out && options.idle) {
        if (deadline::clock::now() < st.last_activity + *options.idle) continue;  // an answer went out
        co_return st.fail("no data for " + format_duration(*options.idle) + " (--idle)", errc::timed_out, s);
      }
      if (got.error() == errc::message_too_large && room.size() < largest_message) {
        // The entry keeps the datagram queued: receive it again with a larger buffer.
        room.resize(std::min(room.size() * 4, largest_message));
        continue;
      }
      co_return st.fail(options.label + ": receive", got.error(), s);
    }
    st.touch();
    std::string sender = got->from.to_string();
    if (options.verbose) {
      std::fprintf(stderr, "datagram from %s\n", sender.c_str());
      std::fflush(stderr);
    }
    st.last_sender = got->from;
    st.have_sender.set();
    if (options.show_sender) sender += ": ";
    std::array<const_buffer, 3> parts{options.show_sender ? as_bytes(sender) : const_buffer(),
                                      const_buffer(room.data(), got->size), const_buffer(newline)};
    auto w = co_await write_fd(st.stdio->out(), std::span<const const_buffer>(parts), deadline::never());
    if (!w) co_return st.fail("stdout", stdout_error(w.error()), s);
  }
}

// stdin -> the latest sender, one datagram per line.
task<void> answer_lines(any_datagram& endpoint, endpoint_state& st, const endpoint_options& options,
                        scope& s) {
  // Nobody to answer yet: stdin stays unread (in its pipe) until a first datagram arrives.
  if (!co_await st.have_sender.wait(deadline::never())) co_return;
  auto declared = endpoint.runtime_capabilities().max_message;
  std::size_t limit = declared ? declared : largest_message;
  byte_buffer pending;
  std::size_t scanned = 0;  // bytes of pending known to hold no '\n'
  bool ended = false;
  for (;;) {
    auto data = pending.readable();
    // (An empty buffer may have no storage at all: memchr must not see a null pointer.)
    auto* nl =
        data.size() > scanned
            ? static_cast<const std::byte*>(std::memchr(data.data() + scanned, '\n', data.size() - scanned))
            : nullptr;
    if (nl != nullptr || (ended && !data.empty())) {
      std::size_t line = nl ? static_cast<std::size_t>(nl - data.data()) : data.size();
      address to = *st.last_sender;
      auto r = co_await endpoint.send_to(const_buffer(data.data(), line), to, deadline::never());
      if (!r && r.error() == errc::operation_canceled) co_return;
      // One sender that cannot be answered does not stop the endpoint serving the others.
      if (!r) report(options.label + ": send to " + to.to_string(), r.error());
      if (r) st.touch();
      pending.consume(nl ? line + 1 : line);
      scanned = 0;
      continue;
    }
    scanned = data.size();
    if (ended) co_return;  // stdin's end stops the answers, not the endpoint
    if (scanned > limit) co_return st.fail("stdin: line", errc::message_too_large, s);
    auto space = pending.writable(chunk);
    auto n = co_await read_fd(st.stdio->in(), space.first(std::min(space.size(), chunk)), deadline::never());
    if (!n) {
      if (n.error() == errc::operation_canceled) co_return;
      if (n.error() != errc::end_of_stream) report("stdin", n.error());
      ended = true;
      continue;
    }
    pending.commit(*n);
  }
}

}  // namespace

task<int> serve_endpoint(any_datagram& endpoint, stdio_guard& stdio, const endpoint_options& options) {
  endpoint_state st;
  st.stdio = &stdio;
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(answer_lines(endpoint, st, options, s));
    co_await print_datagrams(endpoint, st, options, s);
    s.cancel();  // stops the answers
  });
  // A path-bound unix endpoint removes its file here (or, if a signal canceled this
  // close, when it is destroyed).
  (void)co_await endpoint.close(deadline::after(std::chrono::milliseconds(200)));
  if (st.error) {
    report(st.what, st.error);
    co_return exit_failure;
  }
  co_return exit_ok;
}

}  // namespace strata::cli
