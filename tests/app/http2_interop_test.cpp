// http2 and the protocol switch (http::serve) against implementations the project did not
// write: curl in every mode (HTTP/2 prior knowledge, the h2c Upgrade, HTTP/2 over TLS by
// ALPN, HTTP/1.1 and a WebSocket Upgrade from Python's websockets on the same listener),
// nghttp and h2load against strata's server, and
// strata's client against nghttpd, in cleartext and over TLS.
//
// Every peer is started here on a 127.0.0.1 port and stopped by its PID
// (support/peer_process.hpp); a missing peer fails the test. The strata side runs on a
// thread of its own with its own event loop (test::on_strata_thread).
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "strata/app/http.hpp"
#include "strata/app/http2.hpp"
#include "strata/app/websocket.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/scope.hpp"
#include "support/co_test.hpp"
#include "support/peer_process.hpp"
#include "support/pki.hpp"

namespace strata {
namespace {

using namespace std::chrono_literals;
using test::on_strata_thread;
using test::peer_process;
using test::pki;

constexpr auto patience = 20s;

http::handlers hello() {
  return http::both([](auto& req, auto& res) -> task<result<void>> {
    auto dl = deadline::after(5s);
    auto body = co_await req.read_body(1 << 20, dl);
    if (!body) co_return unexpected(body.error());
    (void)res.set_header("Content-Type", "text/plain");
    std::string reply = "hello " + std::string(req.target()) + (body->empty() ? "" : " " + *body) + "\n";
    co_return co_await res.send(200, reply, dl);
  });
}

struct served {
  std::vector<http::serve_stats> stats;
  std::vector<std::error_code> errors;
};

task<void> serve_one(any_connection conn, served& out, http::handlers h) {
  auto r = co_await http::serve(conn.take_stream(), std::move(h));
  if (r) {
    out.stats.push_back(*r);
  } else {
    out.errors.push_back(r.error());
  }
}

/// serve_connections accepts `count` connections and serves them concurrently with the
/// handlers `make` returns.
task<void> serve_connections(any_listener& l, int count, served& out, http::handlers (*make)() = hello) {
  scope s;
  auto dl = deadline::after(patience);
  for (int i = 0; i < count; ++i) {
    auto conn = co_await l.accept(dl);
    if (!conn) {
      out.errors.push_back(conn.error());
      break;
    }
    s.spawn(serve_one(std::move(*conn), out, make()));
  }
  (void)co_await s.join(dl);
  l.close();
}

std::size_t count_protocol(const served& s, http::protocol p) {
  std::size_t n = 0;
  for (const auto& st : s.stats) n += st.protocol == p ? 1 : 0;
  return n;
}

TEST(Http2Interop, CurlInEveryCleartextModeOnOneListener) {
  auto listener = strata::listen("tcp-listen:127.0.0.1:0");
  ASSERT_TRUE(listener) << listener.error().message();
  int port = listener->local_address()->port();
  served out;
  auto strata = on_strata_thread([&]() -> task<void> { co_await serve_connections(*listener, 3, out); },
                                 std::chrono::duration_cast<std::chrono::milliseconds>(patience));
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/path";
  struct mode {
    std::vector<std::string> flags;
    std::string version;
  };
  std::vector<mode> modes = {{{"--http2-prior-knowledge"}, "2"}, {{"--http2"}, "2"}, {{"--http1.1"}, "1.1"}};
  for (const auto& m : modes) {
    std::vector<std::string> argv{"curl", "-sS", "-w", "|%{http_version}", "-d", "data"};
    argv.insert(argv.end(), m.flags.begin(), m.flags.end());
    argv.push_back(url);
    auto curl = peer_process::start(argv);
    ASSERT_TRUE(curl);
    EXPECT_EQ(curl.wait_exit(patience), 0) << curl.output();
    EXPECT_EQ(curl.output(), "hello /path data\n|" + m.version) << m.flags[0];
  }
  strata.join();
  EXPECT_TRUE(out.errors.empty()) << (out.errors.empty() ? "" : out.errors[0].message());
  EXPECT_EQ(count_protocol(out, http::protocol::http2_prior_knowledge), 1u);
  EXPECT_EQ(count_protocol(out, http::protocol::http2_upgrade), 1u);
  EXPECT_EQ(count_protocol(out, http::protocol::http1), 1u);
}

// The issue's one listening pipeline: HTTP/1.1, HTTP/2 by preface, the h2c Upgrade and
// the WebSocket Upgrade (Python's websockets as the client) on one listener, chosen per
// connection. The WebSocket Upgrade reaches the HTTP/1.1 handler, which accepts it and
// echoes a message on the upgraded connection.
constexpr const char* python = "/usr/bin/python3";
constexpr const char* python_ws_client = R"PY(
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        await ws.send("over the switch")
        print("echo:", await ws.recv(), flush=True)
asyncio.run(main())
)PY";

http::handlers hello_or_websocket() {
  auto h = hello();
  auto plain = std::move(h.http1);
  h.http1 = [plain](http1::request& req, http1::response& res) -> task<result<void>> {
    if (!req.head().fields.has_token("upgrade", "websocket")) co_return co_await plain(req, res);
    auto dl = deadline::after(patience);
    auto ws = co_await websocket::accept(req, res, dl);
    if (!ws) co_return unexpected(ws.error());
    std::vector<std::byte> buf(4096);
    auto m = co_await ws->recv_message(buf, dl);
    if (!m) co_return unexpected(m.error());
    std::string reply = "ws " + std::string(req.target()) + ": " +
                        std::string(reinterpret_cast<const char*>(buf.data()), m->size);
    auto sent = co_await ws->send(m->kind, as_bytes(reply), dl);
    if (!sent) co_return unexpected(sent.error());
    auto closed = co_await ws->close(dl);
    if (!closed && closed.error() != errc::end_of_stream) co_return unexpected(closed.error());
    co_return result<void>{};
  };
  return h;
}

TEST(Http2Interop, OneListenerServesEveryModeAndTheWebSocketUpgrade) {
  auto listener = strata::listen("tcp-listen:127.0.0.1:0");
  ASSERT_TRUE(listener) << listener.error().message();
  int port = listener->local_address()->port();
  served out;
  auto strata = on_strata_thread(
      [&]() -> task<void> { co_await serve_connections(*listener, 4, out, hello_or_websocket); },
      std::chrono::duration_cast<std::chrono::milliseconds>(patience));
  std::string base = "127.0.0.1:" + std::to_string(port);
  for (auto [flag, version] : {std::pair<std::string, std::string>{"--http2-prior-knowledge", "2"},
                               {"--http2", "2"},
                               {"--http1.1", "1.1"}}) {
    auto curl = peer_process::start({"curl", "-sS", "-w", "|%{http_version}", flag, "http://" + base + "/p"});
    ASSERT_TRUE(curl);
    EXPECT_EQ(curl.wait_exit(patience), 0) << curl.output();
    EXPECT_EQ(curl.output(), "hello /p\n|" + version) << flag;
  }
  auto py = peer_process::start({python, "-u", "-c", python_ws_client, "ws://" + base + "/chat"});
  ASSERT_TRUE(py);
  EXPECT_EQ(py.wait_exit(patience), 0) << py.output();
  EXPECT_EQ(py.output(), "echo: ws /chat: over the switch\n");
  strata.join();
  EXPECT_TRUE(out.errors.empty()) << (out.errors.empty() ? "" : out.errors[0].message());
  EXPECT_EQ(count_protocol(out, http::protocol::http2_prior_knowledge), 1u);
  EXPECT_EQ(count_protocol(out, http::protocol::http2_upgrade), 1u);
  EXPECT_EQ(count_protocol(out, http::protocol::http1), 2u);
}

TEST(Http2Interop, CurlOverTlsChoosesByAlpn) {
  auto listener = strata::listen("tcp-listen:127.0.0.1:0 | tls(cert=" + pki().server.cert_file +
                                 ", key=" + pki().server.key_file + ", alpn=\"h2,http/1.1\")");
  ASSERT_TRUE(listener) << listener.error().message();
  int port = listener->local_address()->port();
  served out;
  auto strata = on_strata_thread([&]() -> task<void> { co_await serve_connections(*listener, 2, out); },
                                 std::chrono::duration_cast<std::chrono::milliseconds>(patience));
  std::string url = "https://localhost:" + std::to_string(port) + "/secure";
  std::string resolve = "localhost:" + std::to_string(port) + ":127.0.0.1";
  for (auto [flag, version] : {std::pair<std::string, std::string>{"--http2", "2"}, {"--http1.1", "1.1"}}) {
    auto curl = peer_process::start({"curl", "-sS", "-w", "|%{http_version}", flag, "--cacert",
                                     pki().ca.cert_file, "--resolve", resolve, url});
    ASSERT_TRUE(curl);
    EXPECT_EQ(curl.wait_exit(patience), 0) << curl.output();
    EXPECT_EQ(curl.output(), "hello /secure\n|" + version) << flag;
  }
  strata.join();
  EXPECT_TRUE(out.errors.empty()) << (out.errors.empty() ? "" : out.errors[0].message());
  EXPECT_EQ(count_protocol(out, http::protocol::http2_alpn), 1u);
  EXPECT_EQ(count_protocol(out, http::protocol::http1), 1u);
}

TEST(Http2Interop, NghttpAndH2loadAgainstTheServer) {
  auto listener = strata::listen("tcp-listen:127.0.0.1:0");
  ASSERT_TRUE(listener) << listener.error().message();
  int port = listener->local_address()->port();
  served out;
  auto strata = on_strata_thread([&]() -> task<void> { co_await serve_connections(*listener, 5, out); },
                                 std::chrono::duration_cast<std::chrono::milliseconds>(patience));
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  {
    auto nghttp = peer_process::start({"nghttp", "-v", base + "/n"});
    ASSERT_TRUE(nghttp);
    EXPECT_EQ(nghttp.wait_exit(patience), 0) << nghttp.output();
    EXPECT_NE(nghttp.output().find("hello /n"), std::string::npos) << nghttp.output();
    EXPECT_NE(nghttp.output().find(":status: 200"), std::string::npos) << nghttp.output();
  }
  {
    auto h2load = peer_process::start({"h2load", "-n", "2000", "-c", "4", "-m", "10", base + "/load"});
    ASSERT_TRUE(h2load);
    EXPECT_EQ(h2load.wait_exit(patience), 0) << h2load.output();
    EXPECT_NE(h2load.output().find("2000 total, 2000 started, 2000 done, 2000 succeeded"), std::string::npos)
        << h2load.output();
  }
  strata.join();
  EXPECT_TRUE(out.errors.empty()) << (out.errors.empty() ? "" : out.errors[0].message());
  std::uint64_t requests = 0;
  for (const auto& s : out.stats) requests += s.requests;
  EXPECT_EQ(requests, 2001u);
}

/// nghttpd_dir makes a document root with one file.
std::filesystem::path nghttpd_dir(const std::string& body) {
  auto dir = std::filesystem::temp_directory_path() / ("strata-nghttpd-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "file.txt") << body;
  return dir;
}

task<void> fetch_with_client(std::string spec, std::string authority, std::string scheme,
                             result<std::string>& body, int& status) {
  auto dl = deadline::after(patience);
  auto conn = co_await strata::connect(spec, dl);
  if (!conn) {
    body = unexpected(conn.error().code());
    co_return;
  }
  http2::client_options o;
  o.authority = authority;
  o.scheme = scheme;
  http2::client c(conn->take_stream(), o);
  http2::client::outgoing get;
  get.target = "/file.txt";
  auto r = co_await c.request(get, dl);
  if (!r) {
    body = unexpected(r.error());
    co_return;
  }
  status = r->status();
  body = co_await r->read_body(1 << 20, dl);
  (void)co_await c.close(dl);
}

TEST(Http2Interop, ClientAgainstNghttpdInCleartextAndOverTls) {
  std::string content(100000, 'x');
  content += "end\n";
  auto dir = nghttpd_dir(content);
  int port = test::free_loopback_port(SOCK_STREAM);
  ASSERT_NE(port, 0);
  {
    auto nghttpd = peer_process::start(
        {"nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", dir.string(), std::to_string(port)});
    ASSERT_TRUE(nghttpd);
    ASSERT_TRUE(test::wait_tcp_listening(port, patience)) << nghttpd.output();
    result<std::string> body = errc::closed;
    int status = 0;
    auto strata = on_strata_thread([&]() -> task<void> {
      co_await fetch_with_client("tcp:127.0.0.1:" + std::to_string(port), "127.0.0.1", "http", body, status);
    });
    strata.join();
    ASSERT_TRUE(body) << body.error().message();
    EXPECT_EQ(status, 200);
    EXPECT_TRUE(*body == content) << body->size();
  }
  int tls_port = test::free_loopback_port(SOCK_STREAM);
  {
    auto nghttpd =
        peer_process::start({"nghttpd", "-a", "127.0.0.1", "-d", dir.string(), std::to_string(tls_port),
                             pki().server.key_file, pki().server.cert_file});
    ASSERT_TRUE(nghttpd);
    ASSERT_TRUE(test::wait_tcp_listening(tls_port, patience)) << nghttpd.output();
    result<std::string> body = errc::closed;
    int status = 0;
    auto strata = on_strata_thread([&]() -> task<void> {
      co_await fetch_with_client("tcp:127.0.0.1:" + std::to_string(tls_port) +
                                     " | tls(sni=localhost, alpn=h2, ca=" + pki().ca.cert_file + ")",
                                 "localhost", "https", body, status);
    });
    strata.join();
    ASSERT_TRUE(body) << body.error().message();
    EXPECT_EQ(status, 200);
    EXPECT_TRUE(*body == content) << body->size();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace strata
