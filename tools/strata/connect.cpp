// strata connect SPEC: dial a connector pipeline and relay stdin/stdout over it.
#include <chrono>
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "relay.hpp"

namespace strata::cli {

const std::string_view connect_help = R"(usage: strata connect [options] SPEC

Build the connector pipeline SPEC (e.g. 'tcp:127.0.0.1:7000 | prefix(4)'), then relay
stdin to the connection and the connection to stdout, like nc or socat.

Stream stacks (top is a byte stream) carry raw bytes. Message stacks (top is messages,
e.g. '| prefix(4)' or '| crlf') send each stdin line, without its '\n', as one message
and write each received message followed by '\n'.

When stdin ends, the connection's write side is shut down (the peer reads end of stream)
and strata keeps receiving. strata exits once the peer has finished sending (all it sent
is on stdout by then) and stdin has ended too. If stdin is still open when the peer
finishes, strata goes on sending it until it ends or delivers nothing for the --linger
time (like socat's -t); if the peer has closed entirely, the rest is dropped quietly.

options:
  --timeout DURATION   give up connecting after DURATION (default 10s)
  --idle DURATION      fail when no data moves either way for DURATION (default: never)
  --linger DURATION    after the peer finished, wait this long for more stdin (default 500ms)
  -h, --help           show this help

DURATION is a number with an optional unit: 500ms, 10s, 2m (seconds by default).

exit status: 0 the peer finished and everything was relayed; 1 runtime failure
(connection refused, reset, timeout, idle); 2 usage error or refused SPEC;
129/130/143 stopped by SIGHUP/SIGINT/SIGTERM.

examples:
  printf 'hello\n' | strata connect tcp:127.0.0.1:7000
  strata connect 'unix:/tmp/app.sock | prefix(4)' < requests.txt
)";

int connect_main(args& a, signal_guard& signals) {
  duration timeout = std::chrono::seconds(10);
  relay_options options;
  std::string_view spec_text;
  bool have_spec = false;
  while (!a.empty()) {
    bool missing = false;
    if (auto v = option_value(a, "--timeout", missing)) {
      auto d = parse_duration(*v);
      if (!d) return usage_error("connect", "--timeout: not a duration: '" + std::string(*v) + "'");
      timeout = *d;
      continue;
    }
    if (auto v = option_value(a, "--idle", missing)) {
      auto d = parse_duration(*v);
      if (!d || d->count() == 0)
        return usage_error("connect", "--idle: not a duration: '" + std::string(*v) + "'");
      options.idle = *d;
      continue;
    }
    if (auto v = option_value(a, "--linger", missing)) {
      auto d = parse_duration(*v);
      if (!d) return usage_error("connect", "--linger: not a duration: '" + std::string(*v) + "'");
      options.linger = *d;
      continue;
    }
    if (missing) return usage_error("connect", std::string(a.peek()) + " needs a value");
    std::string_view arg = a.next();
    if (arg.size() > 1 && arg[0] == '-')
      return usage_error("connect", "unknown option '" + std::string(arg) + "'");
    if (have_spec)
      return usage_error("connect", "one SPEC expected (quote a spec that contains spaces or '|')");
    spec_text = arg;
    have_spec = true;
  }
  if (!have_spec) return usage_error("connect", "missing SPEC");
  auto p = parse_pipeline("connect", spec_text);
  if (!p) return exit_usage;
  if (p->is_listener())
    return usage_error("connect", "'" + std::string(spec_text) + "' listens; use 'strata listen' for it");
  if (p->is_bound())
    return usage_error("connect", "'" + std::string(spec_text) +
                                      "' is a bound endpoint (connection-less); use 'strata listen' for it");
  if (const auto* app = p->application()) {
    return usage_error("connect", "'" + std::string(spec_text) + "' ends in the application protocol " +
                                      app->spec.name + "; use 'strata get URL --via SPEC' for it");
  }
  options.label = p->text();

  stdio_guard stdio;
  return run_command(signals, [&]() -> task<int> {
    auto conn = co_await p->connect(deadline::after(timeout));
    if (!conn) {
      if (conn.error() == errc::timed_out) {
        report("connect " + p->text() + ": timed out after " + format_duration(timeout));
      } else if (conn.error() != errc::operation_canceled) {
        report(conn.error().where(), conn.error());
      }
      co_return exit_failure;
    }
    stdin_source in;
    co_return co_await relay(*conn, stdio, in, options);
  });
}

}  // namespace strata::cli
