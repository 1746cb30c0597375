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
#include "strata/pipeline/demux.hpp"
#include "strata/pipeline/gateway.hpp"

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
       strata bridge --mux [options] CLIENTS CHANNEL      (gateway side)
       strata bridge --demux [options] CHANNELS SERVICE   (backend side)
       strata bridge --route RULE=SPEC [--route RULE=SPEC ...] [options] LISTENER

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
Between two bare stream sockets or pipes (no layer above them) the bytes move with
splice(2) through a pipe (up to 1 MiB at a time) and never enter the process.

Shutdown: the end of one side's input shuts the other side's write direction down
(half-close); when both directions have ended both connections are closed. An error on
either side (reset, protocol error, message too large, --idle) closes both.

Gateway (IP/IPC conversion): --mux carries every client CLIENTS accepts over ONE
multiplexed channel (mux) that it connects with CHANNEL (e.g. unix:/run/gw.sock or
shm:NAME) to a backend; --demux is the backend: it accepts channels on CHANNELS and joins
each of their streams to a new connection of SERVICE. Both run until SIGHUP/SIGINT/
SIGTERM. The gateway keeps the channel connected: each attempt is bounded by --timeout,
failed attempts back off from 20 ms to 1 s, and --give-up ends it (exit 1) when the
channel stayed down that long. When the channel dies (the backend exited or restarted)
the clients it carried are reset (TCP RST), and new clients are served by the new
backend; a client arriving while it is down waits up to --wait for it, then is reset.
CLIENTS and CHANNELS must listen; CHANNEL, CHANNELS and SERVICE must give byte streams.

Routing (demux): with --route, each connection LISTENER accepts is sniffed (its first
bytes, within --sniff-timeout and --sniff-max) and proxied to the SPEC of the first
RULE that matches; the sniffed bytes are sent first, so nothing is lost. RULE is one of
  sni:NAME     a TLS ClientHello naming NAME (exact, or *.example.org for any below it)
  alpn:PROTO   a TLS ClientHello offering PROTO (e.g. h2)
  host:NAME    an HTTP/1 request whose Host is NAME (exact or *.suffix)
  tls, http2, http1, unknown   that kind of first bytes (http2: the prior-knowledge preface)
  any          every connection (put it last)
A connection that no rule takes, or whose sniff fails (deadline, limit, malformed
ClientHello), is reset. Runs until SIGHUP/SIGINT/SIGTERM.

options:
  --mux                gateway side: CLIENTS over one channel to CHANNEL (see above)
  --demux              backend side: streams of channels on CHANNELS to SERVICE
  --wait DURATION      (--mux) how long a client waits for a channel that is down (5s)
  --give-up DURATION   (--mux) exit 1 when the channel stayed down this long (never)
  --route RULE=SPEC    route matching connections to SPEC (repeatable; see above)
  --sniff-timeout D    (--route) the first bytes' deadline (default 5s)
  --sniff-max SIZE     (--route) decide within this many bytes (default 16k)
  -k, --keep           (listener SPEC1) keep accepting; each connection gets its own
                       SPEC2 connection and is bridged concurrently with the others.
                       Failures of one connection are reported and do not stop the rest.
                       Runs until SIGHUP/SIGINT/SIGTERM.
  --max-connections N  (-k) bridge at most N connections at once (default 4096); the
                       next is accepted when one ends
  -v, --verbose        write 'connection from ADDRESS' and a summary per bridge to stderr
  --timeout DURATION   give up connecting a side (--mux: one attempt at the channel;
                       --demux: the service for one stream) after DURATION (default
                       10s; 5s with --mux/--demux)
  --idle DURATION      fail a bridge (with --mux/--demux: reset its client or stream)
                       when no data moves either way for DURATION
  -h, --help           show this help

exit status: 0 the bridge (without -k) ended normally; 1 runtime failure (cannot bind
or connect, reset, timeout, idle); 2 usage error, refused SPEC or unit mismatch;
129/130/143 stopped by SIGHUP/SIGINT/SIGTERM.

examples:
  strata bridge tcp-listen:127.0.0.1:8080 unix:/run/app.sock
  strata bridge --mux tcp-listen:127.0.0.1:8080 unix:/run/gw.sock
  strata bridge --demux unix-listen:/run/gw.sock tcp:127.0.0.1:9000
  strata bridge --route 'sni:*.api.example=unix:/run/api.sock' --route any=tcp:127.0.0.1:8443 \
                tcp-listen:0.0.0.0:443
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
  std::size_t max_connections = default_max_connections;  // -k: bridges at once
  static constexpr std::size_t default_max_connections = 4096;
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
  event one_ended;                          // set whenever a bridge ends
  static constexpr std::size_t burst = 64;  // smaller peaks leave too little to matter

  void started() { peak = std::max(peak, ++live); }
  void ended() {
    --live;
    one_ended.set();
    if (peak >= burst && live <= peak / 4) {
      release_unused_memory();
      peak = live;
    }
  }
};

// counted ends, when it goes, a bridge its creator counted in `bridges` (if any) with
// load::started: the accept loop counts a connection as it spawns it, so that the limit
// holds before the bridge's task first runs.
struct counted {
  load* bridges;
  explicit counted(load* l) : bridges(l) {}
  ~counted() {
    if (bridges) bridges->ended();
  }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;
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
    bool said_full = false;
    for (;;) {
      if (bridges.live >= cmd.max_connections) {
        if (cmd.verbose && !said_full) {
          std::fprintf(stderr,
                       "bridging %zu connections (--max-connections): the next waits for one to end\n",
                       bridges.live);
          std::fflush(stderr);
        }
        said_full = true;
        bridges.one_ended.reset();
        auto w = co_await bridges.one_ended.wait(deadline::never());
        if (!w) {
          s.cancel();
          co_return;
        }
        continue;
      }
      said_full = false;
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
      bridges.started();
      s.spawn(serve(std::move(*conn), std::move(peer), cmd, bridge_code, &bridges));
    }
  });
  listener->close();
  co_return code;
}

enum class gateway_mode { none, mux, demux };

struct gateway_command {
  pipeline listening;   // CLIENTS (--mux) or CHANNELS (--demux)
  pipeline connecting;  // CHANNEL (--mux) or SERVICE (--demux)
  std::optional<duration> timeout;
  std::optional<duration> idle;
  std::optional<duration> wait;
  std::optional<duration> give_up;
  bool verbose = false;
};

void log_line(std::string_view line) {
  std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
  std::fflush(stderr);
}

task<int> run_gateway(const gateway_command& cmd, gateway_mode mode) {
  auto listener = cmd.listening.listen();
  if (!listener) {
    report(listener.error().where(), listener.error());
    co_return exit_failure;
  }
  auto where = listener->local_address();
  std::fprintf(stderr, "listening on %s\n",
               where ? where->to_string().c_str() : cmd.listening.text().c_str());
  std::fflush(stderr);
  result<void> r;
  if (mode == gateway_mode::mux) {
    gateway_options o;
    if (cmd.timeout) o.connect_timeout = *cmd.timeout;
    if (cmd.wait) o.channel_wait = *cmd.wait;
    if (cmd.give_up) o.give_up = *cmd.give_up;
    o.idle = cmd.idle;
    if (cmd.verbose) o.log = log_line;
    gateway gw(cmd.connecting, o);
    r = co_await gw.serve(*listener);
    if (!r && r.error() == errc::timed_out) {
      report(
          "channel " + cmd.connecting.text() + ": down for " + format_duration(*cmd.give_up) + " (--give-up)",
          r.error());
      co_return exit_failure;
    }
  } else {
    backend_options o;
    if (cmd.timeout) o.connect_timeout = *cmd.timeout;
    o.idle = cmd.idle;
    if (cmd.verbose) o.log = log_line;
    gateway_backend backend(cmd.connecting, o);
    r = co_await backend.serve(*listener);
  }
  listener->close();
  if (!r) {
    report("accept on " + cmd.listening.text(), r.error());
    co_return exit_failure;
  }
  co_return exit_ok;
}

int gateway_main(gateway_mode mode, std::vector<std::string_view>& specs, gateway_command& cmd,
                 signal_guard& signals) {
  const char* flag = mode == gateway_mode::mux ? "--mux" : "--demux";
  const char* first_name = mode == gateway_mode::mux ? "CLIENTS" : "CHANNELS";
  const char* second_name = mode == gateway_mode::mux ? "CHANNEL" : "SERVICE";
  if (specs.size() != 2)
    return usage_error("bridge", std::string(flag) + ": " + first_name + " and " + second_name +
                                     " expected, got " + std::to_string(specs.size()) + " specs");
  auto first = parse_pipeline(std::string("bridge: ") + first_name, specs[0]);
  if (!first) return exit_usage;
  auto second = parse_pipeline(std::string("bridge: ") + second_name, specs[1]);
  if (!second) return exit_usage;
  if (!first->is_listener())
    return usage_error("bridge",
                       std::string(flag) + ": " + first_name + " '" + first->text() + "' must listen");
  if (second->is_listener() || second->is_bound())
    return usage_error("bridge",
                       std::string(flag) + ": " + second_name + " '" + second->text() + "' must connect");
  for (const auto* side : {&*first, &*second}) {
    if (side->application() || side->top().unit != unit::stream)
      return usage_error("bridge", std::string(flag) + ": '" + side->text() + "' must give a byte stream");
  }
  cmd.listening = std::move(*first);
  cmd.connecting = std::move(*second);
  return run_command(signals, [&]() -> task<int> { co_return co_await run_gateway(cmd, mode); });
}

struct route_arg {
  demux::route rule;
  pipeline target;
};

// parse_rule reads RULE of --route RULE=SPEC into `r`; false when it is none.
bool parse_rule(std::string_view text, demux::route& r) {
  auto colon = text.find(':');
  auto name = text.substr(0, colon);
  auto value = colon == std::string_view::npos ? std::string_view{} : text.substr(colon + 1);
  if (colon != std::string_view::npos && value.empty()) return false;
  if (name == "sni" && !value.empty()) {
    r.sni = std::string(value);
  } else if (name == "alpn" && !value.empty()) {
    r.kind = demux::kind::tls;
    r.alpn = std::string(value);
  } else if (name == "host" && !value.empty()) {
    r.host = std::string(value);
  } else if (value.empty() && (name == "tls" || name == "http2" || name == "http1" || name == "unknown")) {
    r.kind = name == "tls"     ? demux::kind::tls
             : name == "http2" ? demux::kind::http2
             : name == "http1" ? demux::kind::http1
                               : demux::kind::unknown;
  } else if (value.empty() && name == "any") {
  } else {
    return false;
  }
  return true;
}

task<int> run_routes(const pipeline& listening, const std::vector<route_arg>& routes, demux::options o,
                     duration timeout) {
  auto lower = listening.listen();
  if (!lower) {
    report(lower.error().where(), lower.error());
    co_return exit_failure;
  }
  auto where = lower->local_address();
  std::fprintf(stderr, "listening on %s\n", where ? where->to_string().c_str() : listening.text().c_str());
  std::fflush(stderr);
  demux::listener l(std::move(*lower), std::move(o));
  for (const auto& r : routes)
    l.add(r.rule,
          demux::to_pipeline(r.target, std::chrono::duration_cast<std::chrono::milliseconds>(timeout)));
  auto served = co_await l.serve();
  if (!served) {
    report("accept on " + listening.text(), served.error());
    co_return exit_failure;
  }
  co_return exit_ok;
}

}  // namespace

int bridge_main(args& a, signal_guard& signals) {
  bool keep = false;
  std::optional<std::size_t> max_connections;
  bool verbose = false;
  duration timeout = std::chrono::seconds(10);
  std::optional<duration> idle;
  std::optional<duration> wait;
  std::optional<duration> give_up;
  bool timeout_given = false;
  gateway_mode mode = gateway_mode::none;
  std::vector<std::string_view> specs;
  std::vector<std::string_view> route_texts;
  demux::options sniffing;
  while (!a.empty()) {
    bool missing = false;
    if (auto v = option_value(a, "--max-connections", missing)) {
      max_connections = parse_connection_limit(*v);
      if (!max_connections) return usage_error("bridge", connection_limit_refusal(*v));
      continue;
    }
    if (auto v = option_value(a, "--timeout", missing)) {
      auto d = parse_duration(*v);
      if (!d) return usage_error("bridge", "--timeout: not a duration: '" + std::string(*v) + "'");
      timeout = *d;
      timeout_given = true;
      continue;
    }
    if (auto v = option_value(a, "--route", missing)) {
      route_texts.push_back(*v);
      continue;
    }
    if (auto v = option_value(a, "--sniff-timeout", missing)) {
      auto d = parse_duration(*v);
      if (!d || d->count() == 0)
        return usage_error("bridge", "--sniff-timeout: not a duration: '" + std::string(*v) + "'");
      sniffing.sniff_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
      continue;
    }
    if (auto v = option_value(a, "--sniff-max", missing)) {
      auto n = parse_size(*v);
      if (!n || *n < 16 || *n > (1u << 20))
        return usage_error("bridge",
                           "--sniff-max: a size from 16 to 1m expected, got '" + std::string(*v) + "'");
      sniffing.max_sniff = static_cast<std::size_t>(*n);
      continue;
    }
    if (auto v = option_value(a, "--wait", missing)) {
      auto d = parse_duration(*v);
      if (!d) return usage_error("bridge", "--wait: not a duration: '" + std::string(*v) + "'");
      wait = *d;
      continue;
    }
    if (auto v = option_value(a, "--give-up", missing)) {
      auto d = parse_duration(*v);
      if (!d || d->count() == 0)
        return usage_error("bridge", "--give-up: not a duration: '" + std::string(*v) + "'");
      give_up = *d;
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
    if (arg == "--mux" || arg == "--demux") {
      auto m = arg == "--mux" ? gateway_mode::mux : gateway_mode::demux;
      if (mode != gateway_mode::none && mode != m)
        return usage_error("bridge", "--mux and --demux exclude each other");
      mode = m;
    } else if (arg == "-k" || arg == "--keep") {
      keep = true;
    } else if (arg == "-v" || arg == "--verbose") {
      verbose = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage_error("bridge", "unknown option '" + std::string(arg) + "'");
    } else {
      specs.push_back(arg);
    }
  }
  if (max_connections && !keep) return usage_error("bridge", "--max-connections applies to -k");
  if (!route_texts.empty()) {
    if (mode != gateway_mode::none || keep || wait || give_up)
      return usage_error("bridge", "--route does not combine with --mux, --demux, -k, --wait or --give-up");
    if (specs.size() != 1)
      return usage_error("bridge",
                         "--route: one LISTENER expected, got " + std::to_string(specs.size()) + " specs");
    auto listening = parse_pipeline("bridge: LISTENER", specs[0]);
    if (!listening) return exit_usage;
    if (!listening->is_listener() || listening->application() || listening->top().unit != unit::stream)
      return usage_error("bridge",
                         "--route: LISTENER '" + listening->text() + "' must listen and give a byte stream");
    std::vector<route_arg> routes;
    for (auto text : route_texts) {
      auto eq = text.find('=');
      route_arg r;
      if (eq == std::string_view::npos || !parse_rule(text.substr(0, eq), r.rule))
        return usage_error("bridge",
                           "--route: expected RULE=SPEC with RULE sni:NAME, alpn:PROTO, host:NAME, tls, "
                           "http2, http1, unknown or any; got '" +
                               std::string(text) + "'");
      auto target = parse_pipeline("bridge: --route SPEC", text.substr(eq + 1));
      if (!target) return exit_usage;
      if (target->is_listener() || target->is_bound() || target->application() ||
          target->top().unit != unit::stream)
        return usage_error("bridge",
                           "--route: SPEC '" + target->text() + "' must connect and give a byte stream");
      r.target = std::move(*target);
      routes.push_back(std::move(r));
    }
    if (verbose) sniffing.log = log_line;
    return run_command(signals, [&]() -> task<int> {
      co_return co_await run_routes(*listening, routes, sniffing, timeout);
    });
  }
  if (mode != gateway_mode::none) {
    if (keep) return usage_error("bridge", "-k is implied by --mux and --demux");
    if (mode == gateway_mode::demux && (wait || give_up))
      return usage_error("bridge", "--wait and --give-up are options of --mux");
    gateway_command cmd;
    if (timeout_given) cmd.timeout = timeout;
    cmd.idle = idle;
    cmd.wait = wait;
    cmd.give_up = give_up;
    cmd.verbose = verbose;
    return gateway_main(mode, specs, cmd, signals);
  }
  if (wait || give_up) return usage_error("bridge", "--wait and --give-up need --mux");
  if (sniffing.sniff_timeout != demux::options{}.sniff_timeout ||
      sniffing.max_sniff != demux::options{}.max_sniff)
    return usage_error("bridge", "--sniff-timeout and --sniff-max need --route");
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
  if (max_connections) cmd.max_connections = *max_connections;
  cmd.options.idle = idle;
  cmd.label_a = "SPEC1 " + cmd.first.text();
  cmd.label_b = "SPEC2 " + cmd.second.text();
  cmd.options.label_a = cmd.label_a;
  cmd.options.label_b = cmd.label_b;
  return run_command(signals, [&]() -> task<int> { co_return co_await run_bridge(cmd, keep); });
}

}  // namespace strata::cli
