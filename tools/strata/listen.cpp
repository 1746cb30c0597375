// strata listen SPEC: accept on a listener pipeline and relay stdin/stdout over the
// accepted connection, or serve a bound endpoint: print every datagram from every sender.
#include <cstdio>
#include <optional>
#include <string>

#include "commands.hpp"
#include "endpoint.hpp"
#include "relay.hpp"
#include "serve.hpp"

namespace strata::cli {

const std::string_view listen_help = R"(usage: strata listen [options] SPEC

Bind the listener pipeline SPEC (e.g. 'tcp-listen:127.0.0.1:0 | crlf'), accept ONE
connection and relay stdin/stdout over it exactly as 'strata connect' does (see its
help for when the relay ends), like nc -l.
The listener is closed as soon as that connection is accepted (a Unix socket file is
removed), and strata exits when the connection ends.

A bound SPEC (udp-bind:HOST:PORT, unix-dgram-bind:PATH) is one connection-less
endpoint instead: strata prints every datagram from every sender to stdout, exactly its
bytes and a '\n' (after 'SENDER: ' with --from), and sends each stdin line (without
its '\n') to the sender of the latest datagram; stdin is not read before a first
datagram arrives, and its end stops only the answers. An answer that cannot be
delivered is reported and the endpoint goes on. It runs until SIGHUP/SIGINT/SIGTERM,
a receive error or --idle; -k changes nothing and --linger does not apply.

With --serve DIR, SPEC ends in an HTTP application and strata is a static file server:
'| http' speaks HTTP/1.1 or HTTP/2 as each client chooses (TLS ALPN h2, the HTTP/2
preface, the h2c Upgrade), '| http1' and '| http2' only theirs. Each connection is
served concurrently, its requests one after another (HTTP/1.1 keep-alive) or at once
(HTTP/2 streams), with GET and HEAD of the regular files under DIR (Content-
Type by extension, Last-Modified, If-Modified-Since 304, one Range 206/416, a
directory's index.html, no listings; other methods 405; '..' and symbolic links out of
DIR 403; a missing file 404). Files go out with sendfile(2) when nothing lies between
HTTP/1.1 and the socket (not under tls). It runs until SIGHUP/SIGINT/SIGTERM; -v writes
one line per request to stderr: PEER METHOD TARGET STATUS BYTES. The application's
parameters (max-body, header-timeout, idle-timeout, ...) tune the server.

Once bound, strata writes 'listening on ADDRESS' to stderr, with the real port when
SPEC asked for port 0. stdout carries nothing but received data.

options:
  -k, --keep           keep listening: serve connections one after another. stdin is
                       shared: data read from it goes to the connection being served,
                       and once stdin has ended later connections get end of stream
                       right away. Runs until a fatal error or SIGHUP/SIGINT/SIGTERM.
  -v, --verbose        write 'connection from ADDRESS' to stderr for each connection
                       ('datagram from ADDRESS' for each datagram of a bound SPEC;
                       'PEER METHOD TARGET STATUS BYTES' for each request with --serve)
  --serve DIR          serve the files under DIR over HTTP (SPEC ends in '| http')
  --max-connections N  (--serve) serve at most N connections at once (default 1000);
                       the next is accepted when one ends
  --from               (bound SPEC) prefix each datagram's line with its sender:
                       '127.0.0.1:40000: text'
  --handshake DURATION each connection's layers above the transport must be ready
                       within DURATION (default 5s); one that is not, or whose
                       handshake fails, is dropped (-v reports it) and listen goes on
  --idle DURATION      fail a connection when no data moves either way for DURATION
  --linger DURATION    after the peer finished, wait this long for more stdin (default 500ms)
  -h, --help           show this help

exit status: 0 the connection ended normally; 1 runtime failure (cannot bind, reset,
idle); 2 usage error or refused SPEC; 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM.

examples:
  strata listen tcp-listen:127.0.0.1:7000 > received.bin
  strata listen -k 'unix-listen:/tmp/app.sock | prefix(4)'
  strata listen --from udp-bind:127.0.0.1:5514       # a syslog-like sink
  strata listen 'tcp-listen:127.0.0.1:8080 | http' --serve ./www
  strata listen -v 'tcp-listen:127.0.0.1:8443 | tls(cert=s.pem, key=s.key) | http' --serve .
)";

namespace {

/// listen_serve runs --serve DIR: a static file server on a pipeline ending in http, http1
/// or http2.
int listen_serve(const pipeline& p, const pipeline_layer& app, std::string_view dir,
                 const listen_options& listening, bool verbose, std::size_t max_connections,
                 signal_guard& signals) {
  serve_options options;
  options.verbose = verbose;
  options.max_connections = max_connections;
  options.label = p.text();
  if (const auto* both = http_settings_of(app)) {
    options.speak = serve_options::protocol::http;
    options.http = both->server;
    options.http2 = both->server2;
  } else if (const auto* h1 = http1_settings_of(app)) {
    options.speak = serve_options::protocol::http1;
    options.http = h1->server;
  } else if (const auto* h2 = http2_settings_of(app)) {
    options.speak = serve_options::protocol::http2;
    options.http2 = h2->server;
  } else {
    return usage_error("listen", "--serve speaks HTTP; '" + app.spec.name + "' is not an HTTP application");
  }
  std::optional<http1::file_server> files;
  if (!parse_only()) {
    auto opened = http1::file_server::open(std::string(dir));
    if (!opened) {
      report("listen: --serve " + std::string(dir), opened.error());
      return exit_usage;
    }
    files = std::move(*opened);
  }
  return run_command(signals, [&]() -> task<int> {
    auto listener = p.listen(listening);
    if (!listener) {
      report(listener.error().where(), listener.error());
      co_return exit_failure;
    }
    if (verbose) {
      listener->on_handshake_failure([](const handshake_failure& f) {
        std::string who = f.peer && !f.peer->to_string().empty() ? f.peer->to_string() : "a peer";
        report("handshake with " + who + " failed", f.error);
      });
    }
    auto where = listener->local_address();
    std::fprintf(stderr, "listening on %s\n", where ? where->to_string().c_str() : p.text().c_str());
    std::fflush(stderr);
    co_return co_await serve_files(*listener, *files, options);
  });
}

}  // namespace

int listen_main(args& a, signal_guard& signals) {
  relay_options options;
  listen_options listening;
  bool keep = false;
  bool verbose = false;
  bool from = false;
  std::string_view spec_text;
  bool have_spec = false;
  std::optional<std::string_view> serve_dir;
  std::optional<std::size_t> max_connections;
  while (!a.empty()) {
    bool missing = false;
    if (auto v = option_value(a, "--idle", missing)) {
      auto d = parse_duration(*v);
      if (!d || d->count() == 0)
        return usage_error("listen", "--idle: not a duration: '" + std::string(*v) + "'");
      options.idle = *d;
      continue;
    }
    if (auto v = option_value(a, "--serve", missing)) {
      if (v->empty()) return usage_error("listen", "--serve needs a directory");
      serve_dir = *v;
      continue;
    }
    if (auto v = option_value(a, "--max-connections", missing)) {
      max_connections = parse_connection_limit(*v);
      if (!max_connections) return usage_error("listen", connection_limit_refusal(*v));
      continue;
    }
    if (auto v = option_value(a, "--handshake", missing)) {
      auto d = parse_duration(*v);
      if (!d || d->count() == 0)
        return usage_error("listen", "--handshake: not a duration: '" + std::string(*v) + "'");
      listening.handshakes.timeout = std::chrono::ceil<std::chrono::milliseconds>(*d);
      continue;
    }
    if (auto v = option_value(a, "--linger", missing)) {
      auto d = parse_duration(*v);
      if (!d) return usage_error("listen", "--linger: not a duration: '" + std::string(*v) + "'");
      options.linger = *d;
      continue;
    }
    if (missing) return usage_error("listen", std::string(a.peek()) + " needs a value");
    std::string_view arg = a.next();
    if (arg == "-k" || arg == "--keep") {
      keep = true;
    } else if (arg == "-v" || arg == "--verbose") {
      verbose = true;
    } else if (arg == "--from") {
      from = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage_error("listen", "unknown option '" + std::string(arg) + "'");
    } else if (have_spec) {
      return usage_error("listen", "one SPEC expected (quote a spec that contains spaces or '|')");
    } else {
      spec_text = arg;
      have_spec = true;
    }
  }
  if (!have_spec) return usage_error("listen", "missing SPEC");
  auto p = parse_pipeline("listen", spec_text);
  if (!p) return exit_usage;
  if (!p->is_listener() && !p->is_bound())
    return usage_error("listen", "'" + std::string(spec_text) + "' connects; use 'strata connect' for it");
  if (from && !p->is_bound())
    return usage_error("listen",
                       "--from applies to a bound SPEC (udp-bind, unix-dgram-bind), whose "
                       "datagrams come from many senders");
  if (const auto* app = p->application()) {
    if (!serve_dir) {
      return usage_error("listen", "'" + std::string(spec_text) + "' ends in the application protocol " +
                                       app->spec.name + "; add --serve DIR to serve the files under DIR");
    }
    return listen_serve(*p, *app, *serve_dir, listening, verbose,
                        max_connections.value_or(serve_options::default_max_connections), signals);
  }
  if (max_connections) return usage_error("listen", "--max-connections applies to --serve");
  if (serve_dir) {
    return usage_error("listen", "--serve needs a SPEC that ends in an HTTP application: add '| http' to '" +
                                     std::string(spec_text) + "'");
  }
  if (p->is_bound()) {
    endpoint_options endpoint{
        .show_sender = from, .verbose = verbose, .idle = options.idle, .label = p->text()};
    stdio_guard stdio;
    return run_command(signals, [&]() -> task<int> {
      auto bound = p->bind();
      if (!bound) {
        report(bound.error().where(), bound.error());
        co_return exit_failure;
      }
      auto where = bound->local_address();
      std::fprintf(stderr, "listening on %s\n", where ? where->to_string().c_str() : p->text().c_str());
      std::fflush(stderr);
      co_return co_await serve_endpoint(*bound, stdio, endpoint);
    });
  }

  stdio_guard stdio;
  return run_command(signals, [&]() -> task<int> {
    auto listener = p->listen(listening);
    if (!listener) {
      report(listener.error().where(), listener.error());
      co_return exit_failure;
    }
    if (verbose) {
      listener->on_handshake_failure([](const handshake_failure& f) {
        std::string who = f.peer && !f.peer->to_string().empty() ? f.peer->to_string() : "a peer";
        report("handshake with " + who + " failed", f.error);
      });
    }
    auto where = listener->local_address();
    std::fprintf(stderr, "listening on %s\n", where ? where->to_string().c_str() : p->text().c_str());
    std::fflush(stderr);

    stdin_source in;
    int code = exit_ok;
    for (;;) {
      auto conn = co_await listener->accept(deadline::never());
      if (!conn) {
        if (conn.error() == errc::operation_canceled) break;
        report("accept on " + p->text(), conn.error());
        code = exit_failure;
        break;
      }
      if (!keep) listener->close();
      options.label = "connection";
      if (auto peer = conn->peer_address(); peer && !peer->to_string().empty()) {
        options.label += " from " + peer->to_string();
        if (verbose) {
          std::fprintf(stderr, "connection from %s\n", peer->to_string().c_str());
          std::fflush(stderr);
        }
      }
      code = co_await relay(*conn, stdio, in, options);
      if (!keep) break;
    }
    if (keep) listener->close();
    co_return code;
  });
}

}  // namespace strata::cli
