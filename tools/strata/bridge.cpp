// strata bridge SPEC1 SPEC2: join two pipelines end to end.
#include "bridge.hpp"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"

namespace strata::cli {
namespace {

constexpr std::size_t chunk = 128 * 1024;
constexpr std::size_t default_message_limit = 64u << 20;

struct bridge_state {
  bridge_result out;
  deadline::clock::time_point last_activity = deadline::clock::now();

  // fail records the first failure and stops both directions; operation_canceled is how
  // the directions learn that the bridge stops, never a failure of its own.
  void fail(std::string where, std::error_code ec, scope& s) {
    if (ec == errc::operation_canceled) return;
    if (!out.error) {
      out.what = std::move(where);
      out.error = ec;
    }
    s.cancel();
  }
  void touch() { last_activity = deadline::clock::now(); }
};

task<void> pump_stream(any_stream& from, const std::string& from_label, any_stream& to,
                       const std::string& to_label, std::uint64_t& bytes, bridge_state& st, scope& s) {
  std::vector<std::byte> buf(chunk);
  for (;;) {
    auto n = co_await from.read_some(buf, deadline::never());
    if (!n) {
      // A write-only (simplex) side never sends: as if it had ended at once.
      if (n.error() != errc::end_of_stream && n.error() != errc::not_supported)
        co_return st.fail(from_label + ": read", n.error(), s);
      auto r = co_await to.shutdown_write(deadline::never());
      if (!r && r.error() != errc::not_supported) st.fail(to_label + ": shutdown", r.error(), s);
      co_return;
    }
    st.touch();
    auto w = co_await to.write(const_buffer(buf.data(), *n), deadline::never());
    if (!w && w.error() == errc::not_supported) co_return;  // a read-only (simplex) side
    if (!w) co_return st.fail(to_label + ": write", w.error(), s);
    bytes += *n;
  }
}

task<void> pump_messages(any_message& from, std::size_t limit, const std::string& from_label, any_message& to,
                         const std::string& to_label, std::uint64_t& bytes, std::uint64_t& messages,
                         bridge_state& st, scope& s) {
  std::vector<std::byte> buf(std::min(chunk, limit));
  for (;;) {
    auto n = co_await from.recv(buf, deadline::never());
    if (!n) {
      if (n.error() == errc::message_too_large && buf.size() < limit) {
        buf.resize(std::min(buf.size() * 4, limit));  // the layer kept the message
        continue;
      }
      if (n.error() != errc::end_of_stream && n.error() != errc::not_supported)
        co_return st.fail(from_label + ": receive", n.error(), s);
      auto r = co_await to.shutdown_write(deadline::never());
      if (!r && r.error() != errc::not_supported) st.fail(to_label + ": shutdown", r.error(), s);
      co_return;
    }
    st.touch();
    auto w = co_await to.send(const_buffer(buf.data(), *n), deadline::never());
    if (!w && w.error() == errc::not_supported) co_return;  // a receive-only (simplex) side
    if (!w) co_return st.fail(to_label + ": send", w.error(), s);
    bytes += *n;
    ++messages;
  }
}

task<void> idle_watch(duration idle, bridge_state& st, scope& s) {
  for (;;) {
    auto until = st.last_activity + idle;
    if (deadline::clock::now() >= until)
      co_return st.fail("no data for " + format_duration(idle) + " (--idle)", errc::timed_out, s);
    if (!co_await sleep_until(deadline::at(until))) co_return;
  }
}

// counted runs `t` and raises `done` when the last of `running` tasks has finished.
task<void> counted(task<void> t, int& running, event& done) {
  co_await std::move(t);
  if (--running == 0) done.set();
}

std::size_t limit_of(const any_connection& c) {
  auto caps = c.runtime_capabilities();
  return caps.max_message ? caps.max_message : default_message_limit;
}

// adapters_between lists registered adapters that turn `from` into `to`.
std::string adapters_between(unit from, unit to) {
  std::string names;
  for (const auto& entry : registry()) {
    if (entry.role != layer_role::adapter || entry.row == nullptr) continue;
    const auto& row = *entry.row;
    if (!row.required.has(prop::unit) || row.required_value.unit != from) continue;
    if (!row.provided.has(prop::unit) || row.provided_value.unit != to) continue;
    // Suggest only what can be written bare: no parameter without a default.
    bool bare = true;
    for (const auto& p : entry.params) bare = bare && (!p.default_value.empty() || p.optional);
    if (!bare) continue;
    if (!names.empty()) names += ", ";
    names += "'| ";
    names += entry.name;
    names += "'";
  }
  return names;
}

}  // namespace

bool units_match(const pipeline& a, const pipeline& b, std::string& message) {
  unit ua = a.top().unit;
  unit ub = b.top().unit;
  if (ua == ub) return true;
  message = "SPEC1 '" + a.text() + "' gives " + std::string(unit_phrase(ua)) + " but SPEC2 '" + b.text() +
            "' gives " + std::string(unit_phrase(ub)) + "; both sides must carry the same unit.";
  // Suggest stacking onto the stream side the adapter that gives messages (or the reverse).
  auto to_b = adapters_between(ub, ua);
  auto to_a = adapters_between(ua, ub);
  if (!to_b.empty()) message += " Add " + to_b + " to the end of SPEC2";
  if (!to_a.empty()) message += std::string(to_b.empty() ? " Add " : ", or ") + to_a + " to the end of SPEC1";
  if (to_a.empty() && to_b.empty()) {
    message += " No registered adapter converts between them";
  }
  message += ".";
  return false;
}

task<bridge_result> bridge(any_connection& a, any_connection& b, const bridge_options& options) {
  bridge_state st;
  if (a.is_stream() != b.is_stream()) {
    st.out.what = "bridge";
    st.out.error = errc::invalid_argument;
    co_return st.out;
  }
  int running = 2;
  event done;
  co_await with_scope([&](scope& s) -> task<void> {
    if (options.idle) s.spawn(idle_watch(*options.idle, st, s));
    if (a.is_stream()) {
      s.spawn(counted(
          pump_stream(a.stream(), options.label_a, b.stream(), options.label_b, st.out.bytes_ab, st, s),
          running, done));
      s.spawn(counted(
          pump_stream(b.stream(), options.label_b, a.stream(), options.label_a, st.out.bytes_ba, st, s),
          running, done));
    } else {
      s.spawn(counted(pump_messages(a.message(), limit_of(a), options.label_a, b.message(), options.label_b,
                                    st.out.bytes_ab, st.out.messages_ab, st, s),
                      running, done));
      s.spawn(counted(pump_messages(b.message(), limit_of(b), options.label_b, a.message(), options.label_a,
                                    st.out.bytes_ba, st.out.messages_ba, st, s),
                      running, done));
    }
    // Both directions ended (or a failure canceled the scope): stop the idle watch.
    (void)co_await done.wait(deadline::never());
    s.cancel();
  });
  auto grace = st.out.error ? deadline::after(std::chrono::milliseconds(100))
                            : deadline::after(std::chrono::seconds(2));
  (void)co_await a.close(grace);
  (void)co_await b.close(grace);
  co_return st.out;
}

}  // namespace strata::cli

// -- the command --------------------------------------------------------------------------

namespace strata::cli {

const std::string_view bridge_help = R"(usage: strata bridge [options] SPEC1 SPEC2

Join two pipelines end to end: what SPEC1's connection delivers is written to SPEC2's
and the other way round, like socat with two addresses.

If SPEC1 is a listener (e.g. tcp-listen:127.0.0.1:0), strata writes 'listening on
ADDRESS' to stderr, accepts a connection and only then connects SPEC2 for it. If SPEC1
is a connector, both are connected at start. SPEC2 must be a connector.

Both tops must carry the same unit: a byte stream to a byte stream, messages to
messages (each message is forwarded whole). A mismatch is refused before anything
connects, with the adapter that would fix it.

Back-pressure: each direction holds one buffer (128 KiB, or one message) and reads its
source again only after the other side accepted the previous one, so a slow peer slows
the fast one and memory stays bounded.

Shutdown: the end of one side's input shuts the other side's write direction down
(half-close); when both directions have ended both connections are closed. An error on
either side (reset, protocol error, message too large, --idle) closes both.

options:
  -k, --keep           (listener SPEC1) keep accepting; each connection gets its own
                       SPEC2 connection and is bridged concurrently with the others.
                       Failures of one connection are reported and do not stop the rest.
                       Runs until SIGINT/SIGTERM.
  -v, --verbose        write 'connection from ADDRESS' and a summary per bridge to stderr
  --timeout DURATION   give up connecting a side after DURATION (default 10s)
  --idle DURATION      fail a bridge when no data moves either way for DURATION
  -h, --help           show this help

exit status: 0 the bridge (without -k) ended normally; 1 runtime failure (cannot bind
or connect, reset, timeout, idle); 2 usage error, refused SPEC or unit mismatch;
130/143 stopped by SIGINT/SIGTERM.

examples:
  strata bridge tcp-listen:127.0.0.1:8080 unix:/run/app.sock
  strata bridge -k 'tcp-listen:127.0.0.1:7000 | crlf' 'unix:@app | prefix(4)'
)";

namespace {

struct bridge_command {
  pipeline first;
  pipeline second;
  duration timeout = std::chrono::seconds(10);
  bridge_options options;
  bool verbose = false;
};

// connect_side connects one pipeline and reports a failure with its spec.
task<result<any_connection>> connect_side(const pipeline& p, duration timeout) {
  auto conn = co_await p.connect(deadline::after(timeout));
  if (!conn) {
    if (conn.error() == errc::timed_out) {
      report("connect " + p.text() + ": timed out after " + format_duration(timeout));
    } else if (conn.error() != errc::operation_canceled) {
      report("connect " + p.text(), conn.error());
    }
  }
  co_return conn;
}

// serve bridges one connection of SPEC1 to a new connection of SPEC2.
task<int> serve(any_connection first, std::string peer, const bridge_command& cmd) {
  auto second = co_await connect_side(cmd.second, cmd.timeout);
  if (!second) {
    (void)co_await first.close(deadline::after(std::chrono::milliseconds(100)));
    co_return exit_failure;
  }
  bridge_options options = cmd.options;
  if (!peer.empty()) options.label_a = "SPEC1 connection from " + peer;
  auto r = co_await bridge(first, *second, options);
  if (r.error) {
    report(r.what, r.error);
    co_return exit_failure;
  }
  if (cmd.verbose) {
    std::fprintf(stderr, "bridge%s%s done: %llu bytes SPEC1->SPEC2, %llu bytes SPEC2->SPEC1\n",
                 peer.empty() ? "" : " from ", peer.c_str(), static_cast<unsigned long long>(r.bytes_ab),
                 static_cast<unsigned long long>(r.bytes_ba));
    std::fflush(stderr);
  }
  co_return exit_ok;
}

task<void> serve_detached(any_connection first, std::string peer, const bridge_command& cmd) {
  (void)co_await serve(std::move(first), std::move(peer), cmd);
}

std::string peer_of(const any_connection& c) {
  auto peer = c.peer_address();
  return peer ? peer->to_string() : std::string();
}

task<int> run_bridge(const bridge_command& cmd, bool keep) {
  if (!cmd.first.is_listener()) {
    auto first = co_await connect_side(cmd.first, cmd.timeout);
    if (!first) co_return exit_failure;
    std::string no_peer;
    co_return co_await serve(std::move(*first), no_peer, cmd);
  }
  auto listener = cmd.first.listen();
  if (!listener) {
    report("listen " + cmd.first.text(), listener.error());
    co_return exit_failure;
  }
  auto where = listener->local_address();
  std::fprintf(stderr, "listening on %s\n", where ? where->to_string().c_str() : cmd.first.text().c_str());
  std::fflush(stderr);
  if (!keep) {
    auto conn = co_await listener->accept(deadline::never());
    listener->close();
    if (!conn) {
      if (conn.error() != errc::operation_canceled) report("accept on " + cmd.first.text(), conn.error());
      co_return exit_failure;
    }
    std::string peer = peer_of(*conn);
    if (cmd.verbose && !peer.empty()) std::fprintf(stderr, "connection from %s\n", peer.c_str());
    co_return co_await serve(std::move(*conn), peer, cmd);
  }
  int code = exit_ok;
  co_await with_scope([&](scope& s) -> task<void> {
    for (;;) {
      auto conn = co_await listener->accept(deadline::never());
      if (!conn) {
        if (conn.error() != errc::operation_canceled) {
          report("accept on " + cmd.first.text(), conn.error());
          code = exit_failure;
        }
        s.cancel();
        co_return;
      }
      std::string peer = peer_of(*conn);
      if (cmd.verbose && !peer.empty()) {
        std::fprintf(stderr, "connection from %s\n", peer.c_str());
        std::fflush(stderr);
      }
      s.spawn(serve_detached(std::move(*conn), std::move(peer), cmd));
    }
  });
  listener->close();
  co_return code;
}

}  // namespace

int bridge_main(args& a, signal_guard& signals) {
  bool keep = false;
  bool verbose = false;
  duration timeout = std::chrono::seconds(10);
  std::optional<duration> idle;
  std::vector<std::string_view> specs;
  while (!a.empty()) {
    bool missing = false;
    if (auto v = option_value(a, "--timeout", missing)) {
      auto d = parse_duration(*v);
      if (!d) return usage_error("bridge", "--timeout: not a duration: '" + std::string(*v) + "'");
      timeout = *d;
      continue;
    }
    if (auto v = option_value(a, "--idle", missing)) {
      auto d = parse_duration(*v);
      if (!d || d->count() == 0)
        return usage_error("bridge", "--idle: not a duration: '" + std::string(*v) + "'");
      idle = *d;
      continue;
    }
    if (missing) return usage_error("bridge", std::string(a.peek()) + " needs a value");
    std::string_view arg = a.next();
    if (arg == "-k" || arg == "--keep") {
      keep = true;
    } else if (arg == "-v" || arg == "--verbose") {
      verbose = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage_error("bridge", "unknown option '" + std::string(arg) + "'");
    } else {
      specs.push_back(arg);
    }
  }
  if (specs.size() != 2)
    return usage_error("bridge", "two SPECs expected, got " + std::to_string(specs.size()) +
                                     " (quote a spec that contains spaces or '|')");
  auto first = parse_pipeline("bridge: SPEC1", specs[0]);
  if (!first) return exit_usage;
  auto second = parse_pipeline("bridge: SPEC2", specs[1]);
  if (!second) return exit_usage;
  if (second->is_listener())
    return usage_error("bridge",
                       "SPEC2 '" + second->text() +
                           "' listens; SPEC2 must connect (it is dialled for each connection of SPEC1)");
  if (keep && !first->is_listener()) return usage_error("bridge", "-k needs a listener SPEC1");
  std::string mismatch;
  if (!units_match(*first, *second, mismatch)) return usage_error("bridge", mismatch);

  bridge_command cmd{std::move(*first), std::move(*second), timeout, {}, verbose};
  cmd.options.idle = idle;
  cmd.options.label_a = "SPEC1 " + cmd.first.text();
  cmd.options.label_b = "SPEC2 " + cmd.second.text();
  return run_command(signals, [&]() -> task<int> { co_return co_await run_bridge(cmd, keep); });
}

}  // namespace strata::cli
