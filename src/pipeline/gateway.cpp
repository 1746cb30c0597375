// gateway and gateway_backend (pipeline/gateway.hpp): many clients over one mux channel.
//
// The gateway is three kinds of task in one scope: the acceptor (serve's own body), the
// channel keeper (connect, run, notice the end, back off, connect again) and one bridge
// per client. The current channel is a shared mux::session: a client's stream keeps its
// session's state alive, so the keeper may drop a dead session while its clients' bridges
// still unwind (they fail with broken and reset their clients).
#include "strata/pipeline/gateway.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "strata/runtime/event.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/timer.hpp"

namespace strata {
namespace {

using namespace std::chrono_literals;

std::string peer_text(const any_connection& c) {
  auto peer = c.peer_address();
  return peer ? peer->to_string() : std::string("(unknown peer)");
}

/// abort_connection resets a connection that will not be carried (TCP: RST) and closes it.
task<void> abort_connection(any_connection conn) {
  reset_tcp(conn);
  (void)co_await conn.close(deadline::after(100ms));
}

template <class Log>
void say(const Log& log, std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  if (!log) return;
  std::string line(a);
  line += b;
  line += c;
  log(line);
}

/// mux_side is a mux stream as one side of a bridge: a close with no time left (the
/// bridge's close after a failure or cancel with reset_on_failure) resets the stream, so
/// the other end of the channel learns that the transfer was cut, not finished.
class mux_side {
 public:
  explicit mux_side(mux::stream s) : s_(std::move(s)) {}
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) { return s_.read_some(buf, dl); }
  task<result<void>> write(const_buffers bufs, deadline dl) { return s_.write(bufs, dl); }
  task<result<void>> shutdown_write(deadline dl) { return s_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) {
    if (dl.expired()) {
      s_.reset();
      return nothing();
    }
    return s_.close(dl);
  }
  properties runtime_capabilities() const noexcept { return s_.runtime_capabilities(); }

 private:
  static task<result<void>> nothing() { co_return result<void>{}; }
  mux::stream s_;
};

/// live_count keeps a live counter up while it exists.
struct live_count {
  std::uint64_t& live;
  explicit live_count(std::uint64_t& l) : live(l) { ++live; }
  ~live_count() { --live; }
  live_count(const live_count&) = delete;
  live_count& operator=(const live_count&) = delete;
};

}  // namespace

// -- gateway ---------------------------------------------------------------------------

struct gateway::state {
  state(pipeline c, gateway_options o) : channel(std::move(c)), options(std::move(o)) {}
  pipeline channel;
  gateway_options options;
  gateway_stats stats;
  std::shared_ptr<mux::session> session;  // the channel now; null while it is down
  event up;                               // set while the channel is up
  std::error_code failure;                // why serve stops (give_up)

  task<void> keep_channel(scope& s);
  task<void> carry(any_connection client);
};

task<void> gateway::state::keep_channel(scope& s) {
  auto backoff = options.backoff_min;
  auto down_since = deadline::clock::now();
  for (;;) {
    auto conn = co_await channel.connect(deadline::after(options.connect_timeout));
    if (!conn || !conn->is_stream()) {
      if (conn && !conn->is_stream()) {
        failure = errc::invalid_argument;
        say(options.log, "channel ", channel.text(), ": not a byte stream");
        s.cancel();
        co_return;
      }
      if (conn.error() == errc::operation_canceled) co_return;
      ++stats.connect_failed;
      say(options.log, "channel: ", conn.error().message());
      if (options.give_up.count() > 0 && deadline::clock::now() - down_since >= options.give_up) {
        failure = errc::timed_out;
        say(options.log, "channel ", channel.text(), ": down too long, giving up");
        s.cancel();
        co_return;
      }
      if (!co_await sleep_until(deadline::after(backoff))) co_return;
      backoff = std::min(backoff * 2, options.backoff_max);
      continue;
    }
    backoff = options.backoff_min;
    session = std::make_shared<mux::session>(conn->take_stream(), mux::role::client, options.mux);
    auto current = session;
    ++stats.channels;
    up.set();
    say(options.log, "channel up: ", channel.text());
    // The backend opens no streams: accept returns only when the session ends (the
    // transport's end, a keepalive timeout, GOAWAY). A stream it opens anyway is reset.
    std::error_code why;
    for (;;) {
      auto in = co_await current->accept(deadline::never());
      if (in) {
        in->reset();
        continue;
      }
      why = in.error();
      break;
    }
    up.reset();
    session.reset();
    if (why == errc::operation_canceled) co_return;
    ++stats.channel_lost;
    down_since = deadline::clock::now();
    say(options.log, "channel lost: ", why.message());
  }
}

task<void> gateway::state::carry(any_connection client) {
  live_count one(stats.live);
  std::string peer = peer_text(client);
  if (!session) {
    auto ready = co_await up.wait(deadline::after(options.channel_wait));
    if (!ready || !session) {
      ++stats.refused;
      say(options.log, "client ", peer, ": no channel");
      co_return co_await abort_connection(std::move(client));
    }
  }
  auto current = session;
  auto opened = co_await current->open(deadline::after(options.connect_timeout));
  current.reset();
  if (!opened) {
    ++stats.refused;
    say(options.log, "client ", peer, ": channel refused a stream: " + opened.error().message());
    co_return co_await abort_connection(std::move(client));
  }
  any_connection stream{any_stream(mux_side(std::move(*opened)))};
  bridge_options b;
  b.idle = options.idle;
  b.reset_on_failure = true;
  b.label_a = "client";
  b.label_b = "channel";
  b.peer_a = peer;
  auto r = co_await bridge(client, stream, b);
  stats.bytes_up += r.bytes_ab;
  stats.bytes_down += r.bytes_ba;
  if (r.error) {
    ++stats.failed;
    say(options.log, r.what, ": ", r.error.message());
  } else {
    ++stats.served;
  }
}

gateway::gateway(pipeline channel, gateway_options options)
    : state_(std::make_unique<state>(std::move(channel), std::move(options))) {}
gateway::~gateway() = default;

task<result<void>> gateway::serve(any_listener& clients) {
  auto& st = *state_;
  if (st.channel.is_listener() || st.channel.is_bound()) co_return errc::invalid_argument;
  st.failure = {};
  std::error_code accept_error;
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(st.keep_channel(s));
    for (;;) {
      auto conn = co_await clients.accept(deadline::never());
      if (!conn) {
        if (conn.error() != errc::operation_canceled) accept_error = conn.error();
        s.cancel();
        co_return;
      }
      ++st.stats.clients;
      if (st.stats.live >= st.options.max_clients) {
        ++st.stats.refused;
        s.spawn(abort_connection(std::move(*conn)));
        continue;
      }
      s.spawn(st.carry(std::move(*conn)));
    }
  });
  st.up.reset();
  st.session.reset();
  if (st.failure) co_return unexpected(st.failure);
  if (accept_error) co_return unexpected(accept_error);
  co_return result<void>{};
}

task<result<void>> gateway::wait_channel(deadline dl) {
  auto& st = *state_;
  while (!st.session) {
    auto w = co_await st.up.wait(dl);
    if (!w) co_return unexpected(w.error());
  }
  co_return result<void>{};
}

bool gateway::channel_up() const noexcept { return static_cast<bool>(state_->session); }
const gateway_stats& gateway::stats() const noexcept { return state_->stats; }

// -- backend ---------------------------------------------------------------------------

struct gateway_backend::state {
  state(pipeline s, backend_options o) : service(std::move(s)), options(std::move(o)) {}
  pipeline service;
  backend_options options;
  backend_stats stats;
  std::uint64_t live_channels = 0;

  task<void> serve_channel(any_connection conn, scope& s);
  task<void> serve_stream(mux::stream in);
};

task<void> gateway_backend::state::serve_stream(mux::stream in) {
  live_count one(stats.live);
  any_connection from{any_stream(mux_side(std::move(in)))};
  auto to = co_await service.connect(deadline::after(options.connect_timeout));
  if (!to) {
    ++stats.connect_failed;
    if (to.error() != errc::operation_canceled) say(options.log, "service: ", to.error().message());
    // `from` goes without a close: its stream is reset, and the gateway resets its client.
    co_return;
  }
  bridge_options b;
  b.idle = options.idle;
  b.reset_on_failure = true;
  b.label_a = "channel stream";
  b.label_b = "service";
  auto r = co_await bridge(from, *to, b);
  if (r.error) {
    ++stats.failed;
    say(options.log, r.what, ": ", r.error.message());
  } else {
    ++stats.served;
  }
}

task<void> gateway_backend::state::serve_channel(any_connection conn, scope& s) {
  live_count one(live_channels);
  ++stats.channels;
  mux::session session(conn.take_stream(), mux::role::server, options.mux);
  for (;;) {
    auto in = co_await session.accept(deadline::never());
    if (!in) {
      if (in.error() != errc::operation_canceled) say(options.log, "channel ended: ", in.error().message());
      break;
    }
    ++stats.streams;
    s.spawn(serve_stream(std::move(*in)));
  }
}

gateway_backend::gateway_backend(pipeline service, backend_options options)
    : state_(std::make_unique<state>(std::move(service), std::move(options))) {}
gateway_backend::~gateway_backend() = default;

task<result<void>> gateway_backend::serve(any_listener& channels) {
  auto& st = *state_;
  if (st.service.is_listener() || st.service.is_bound() || st.service.top().unit != unit::stream)
    co_return errc::invalid_argument;
  std::error_code accept_error;
  co_await with_scope([&](scope& s) -> task<void> {
    for (;;) {
      auto conn = co_await channels.accept(deadline::never());
      if (!conn) {
        if (conn.error() != errc::operation_canceled) accept_error = conn.error();
        s.cancel();
        co_return;
      }
      if (!conn->is_stream() || st.live_channels >= st.options.max_channels) {
        s.spawn(abort_connection(std::move(*conn)));
        continue;
      }
      say(st.options.log, "channel from ", peer_text(*conn));
      s.spawn(st.serve_channel(std::move(*conn), s));
    }
  });
  if (accept_error) co_return unexpected(accept_error);
  co_return result<void>{};
}

const backend_stats& gateway_backend::stats() const noexcept { return state_->stats; }

}  // namespace strata
