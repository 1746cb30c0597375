// strata bridge SPEC1 SPEC2: join two pipelines end to end.
#include "bridge.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "commands.hpp"

namespace strata::cli {
namespace {

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

Back-pressure: each direction holds at most one buffer (128 KiB, or one message), none
once it has waited 50 ms for data, and reads its source again only after the other side
accepted the previous one, so a slow peer slows the fast one and memory stays bounded.

Shutdown: the end of one side's input shuts the other side's write direction down
(half-close); when both directions have ended both connections are closed. An error on
either side (reset, protocol error, message too large, --idle) closes both.

options:
  -k, --keep           (listener SPEC1) keep accepting; each connection gets its own
                       SPEC2 connection and is bridged concurrently with the others.
                       Failures of one connection are reported and do not stop the rest.
                       Runs until SIGHUP/SIGINT/SIGTERM.
  -v, --verbose        write 'connection from ADDRESS' and a summary per bridge to stderr
  --timeout DURATION   give up connecting a side after DURATION (default 10s)
  --idle DURATION      fail a bridge when no data moves either way for DURATION
  -h, --help           show this help

exit status: 0 the bridge (without -k) ended normally; 1 runtime failure (cannot bind
or connect, reset, timeout, idle); 2 usage error, refused SPEC or unit mismatch;
129/130/143 stopped by SIGHUP/SIGINT/SIGTERM.

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
  std::string label_a;  // what options' labels view
  std::string label_b;
};

// connect_side connects one pipeline and reports a failure with its spec.
task<result<any_connection>> connect_side(const pipeline& p, duration timeout) {
  auto conn = co_await p.connect(deadline::after(timeout));
  if (!conn) {
    if (conn.error() == errc::timed_out) {
      report("connect " + p.text() + ": timed out after " + format_duration(timeout));
    } else if (conn.error() != errc::operation_canceled) {
      report(conn.error().where(), conn.error());
    }
  }
  co_return std::move(conn);
}

// load counts the bridges of `-k` so that memory a burst left behind is given back once
// the burst is over (most of its bridges have ended), not kept at the burst's peak.
struct load {
  std::size_t live = 0;
  std::size_t peak = 0;
  static constexpr std::size_t burst = 64;  // smaller peaks leave too little to matter

  void started() { peak = std::max(peak, ++live); }
  void ended() {
    --live;
    if (peak >= burst && live <= peak / 4) {
      release_unused_memory();
      peak = live;
    }
  }
};

// counted marks one bridge in `bridges` (if any) for as long as it exists.
struct counted {
  load* bridges;
  explicit counted(load* l) : bridges(l) {
    if (bridges) bridges->started();
  }
  ~counted() {
    if (bridges) bridges->ended();
  }
};

// serve bridges one connection of SPEC1 to a new connection of SPEC2 and sets `code`.
task<void> serve(any_connection first, std::string peer, const bridge_command& cmd, int& code,
                 load* bridges) {
  counted one(bridges);
  code = exit_failure;
  auto second = co_await connect_side(cmd.second, cmd.timeout);
  if (!second) {
    (void)co_await first.close(deadline::after(std::chrono::milliseconds(100)));
    co_return;
  }
  bridge_options options = cmd.options;
  if (!peer.empty()) {
    options.label_a = "SPEC1";  // "SPEC1 connection from PEER"
    options.peer_a = peer;
  }
  auto r = co_await bridge(first, *second, options);
  if (r.error) {
    if (r.idle_expired) r.what += " (--idle)";
    co_return report(r.what, r.error);
  }
  if (cmd.verbose) {
    std::fprintf(stderr, "bridge%s%s done: %llu bytes SPEC1->SPEC2, %llu bytes SPEC2->SPEC1\n",
                 peer.empty() ? "" : " from ", peer.c_str(), static_cast<unsigned long long>(r.bytes_ab),
                 static_cast<unsigned long long>(r.bytes_ba));
    std::fflush(stderr);
  }
  code = exit_ok;
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
    int code = exit_failure;
    co_await serve(std::move(*first), no_peer, cmd, code, nullptr);
    co_return code;
  }
  auto listener = cmd.first.listen();
  if (!listener) {
    report(listener.error().where(), listener.error());
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
    int code = exit_failure;
    co_await serve(std::move(*conn), peer, cmd, code, nullptr);
    co_return code;
  }
  int code = exit_ok;
  int bridge_code = exit_ok;  // per connection: failures are reported, not the exit status
  load bridges;
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
      s.spawn(serve(std::move(*conn), std::move(peer), cmd, bridge_code, &bridges));
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
  for (const auto* side : {&*first, &*second}) {
    if (const auto* app = side->application()) {
      return usage_error("bridge", "'" + side->text() + "' ends in the application protocol " +
                                       app->spec.name +
                                       "; bridge relays byte streams and messages: leave '| " +
                                       app->spec.name + "' out to relay the bytes it would carry");
    }
    if (side->is_bound())
      return usage_error("bridge",
                         "'" + side->text() +
                             "' is a bound endpoint (connection-less); bridge relays connections: use "
                             "'strata listen' for it");
  }
  if (second->is_listener())
    return usage_error("bridge",
                       "SPEC2 '" + second->text() +
                           "' listens; SPEC2 must connect (it is dialled for each connection of SPEC1)");
  if (keep && !first->is_listener()) return usage_error("bridge", "-k needs a listener SPEC1");
  std::string mismatch;
  if (!units_match(*first, *second, mismatch)) return usage_error("bridge", mismatch);

  bridge_command cmd{std::move(*first), std::move(*second), timeout, {}, verbose, {}, {}};
  cmd.options.idle = idle;
  cmd.label_a = "SPEC1 " + cmd.first.text();
  cmd.label_b = "SPEC2 " + cmd.second.text();
  cmd.options.label_a = cmd.label_a;
  cmd.options.label_b = cmd.label_b;
  return run_command(signals, [&]() -> task<int> { co_return co_await run_bridge(cmd, keep); });
}

}  // namespace strata::cli
