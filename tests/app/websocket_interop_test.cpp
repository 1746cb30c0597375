// websocket against an implementation the project did not write: Python's `websockets`
// 10.4 (Debian's python3-websockets, run with /usr/bin/python3) as the client of
// strata's server and as the server of strata's client, over 127.0.0.1, with and without
// permessage-deflate: text, binary, fragmented messages both ways (Python sends a list
// as fragments; strata's peer fragments at 1000 bytes), a 100 kB message, pings both
// ways, a subprotocol, and the close handshake with a code and reason each way.
//
// The Python peer is a child process (support/peer_process.hpp) that prints what it saw
// and exits 0 when every step passed; the strata side runs on a thread of its own
// (test::on_strata_thread). Nothing sleeps: the test thread waits for the peer's output
// and exit, the strata thread for its sockets, both under deadlines.
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "strata/app/http1.hpp"
#include "strata/app/websocket.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/transport/tcp.hpp"
#include "support/co_test.hpp"
#include "support/peer_process.hpp"

namespace strata {
namespace {

using namespace std::chrono_literals;
using test::on_strata_thread;
using test::peer_process;
namespace ws = strata::websocket;

/// patience bounds every wait of these tests, on either thread.
constexpr auto patience = 15s;

constexpr const char* python = "/usr/bin/python3";

// The client: every step prints a line; any mismatch raises, and the exit status says so.
constexpr const char* python_client = R"PY(
import asyncio, sys, websockets

async def main(uri, compression):
    async with websockets.connect(uri, compression=compression, subprotocols=["chat"],
                                  max_size=2**20, ping_interval=None) as ws:
        print("protocol", ws.subprotocol)
        print("extensions", ws.response_headers.get("Sec-WebSocket-Extensions"))
        await ws.send("hello text \u20ac")
        r = await ws.recv()
        assert r == "hello text \u20ac", r
        print("text echoed")
        await ws.send(b"\x00\x01binary\xff")
        r = await ws.recv()
        assert r == b"\x00\x01binary\xff", r
        print("binary echoed")
        await ws.send(["frag", "mented ", "text \u00e9"])
        r = await ws.recv()
        assert r == "fragmented text \u00e9", r
        print("fragments echoed")
        big = "".join(str(i % 10) for i in range(100000))
        await ws.send(big)
        r = await ws.recv()
        assert r == big, len(r)
        print("big echoed")
        pong = await ws.ping(b"py-ping")
        await asyncio.wait_for(pong, 10)
        print("pong received")
        await ws.close(code=4001, reason="py bye")
        print("closed", ws.close_code, ws.close_reason)
        assert ws.close_code == 4001, ws.close_code

asyncio.run(main(sys.argv[1], None if sys.argv[2] == "0" else "deflate"))
print("CLIENT OK")
)PY";

// The server: echoes every message of one connection, then reports the close and exits.
constexpr const char* python_server = R"PY(
import asyncio, sys, websockets

async def main(compression):
    done = asyncio.get_running_loop().create_future()
    async def handler(ws):
        print("path", ws.path, "protocol", ws.subprotocol, flush=True)
        print("extensions", ws.response_headers.get("Sec-WebSocket-Extensions"), flush=True)
        try:
            async for msg in ws:
                print("got", type(msg).__name__, len(msg), flush=True)
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass  # a close code other than 1000/1001 ends the iteration with this
        finally:
            print("closed", ws.close_code, ws.close_reason, flush=True)
            if not done.done():
                done.set_result(None)
    async with websockets.serve(handler, "127.0.0.1", 0, compression=compression,
                                subprotocols=["chat"], max_size=2**20, ping_interval=None) as server:
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.wait_for(done, 20)

asyncio.run(main(None if sys.argv[1] == "0" else "deflate"))
print("SERVER OK", flush=True)
)PY";

/// served is what strata's server saw of one connection.
struct served {
  std::error_code error{};
  std::string protocol;
  bool compressed = false;
  std::vector<std::pair<ws::message_kind, std::size_t>> messages;
  std::uint64_t pongs = 0;
  std::optional<ws::close_status> peer_close;
  bool closed_cleanly = false;
};

struct accept_state {
  ws::options options{};
  deadline dl = deadline::never();
  std::optional<ws::connection> conn{};
  std::error_code failure{};
};

task<result<void>> accept_one(accept_state& st, http1::request& req, http1::response& res) {
  auto o = st.options;
  auto c = co_await ws::accept(req, res, std::move(o), st.dl);
  if (!c) {
    st.failure = c.error();
    co_return result<void>{};
  }
  st.conn.emplace(std::move(*c));
  co_return result<void>{};
}

/// serve_python accepts one connection, upgrades it and echoes every message with its
/// kind (fragmented at 1000 bytes), pinging the client after the first.
task<void> serve_python(tcp::listener& l, bool deflate, served& out) {
  auto dl = deadline::after(patience);
  auto s = co_await l.accept(dl);
  if (!s) {
    out.error = s.error();
    co_return;
  }
  accept_state st;
  st.options.protocols = {"superchat", "chat"};
  st.options.deflate.enabled = deflate;
  st.options.fragment_size = 1000;
  st.dl = dl;
  http1::server_options so;
  so.max_requests = 1;
  auto* shared = &st;
  http1::handler h = [shared](http1::request& req, http1::response& res) {
    return accept_one(*shared, req, res);
  };
  (void)co_await http1::serve(any_stream(std::move(*s)), std::move(h), so);
  if (!st.conn) {
    out.error = st.failure ? st.failure : make_error_code(errc::protocol_error);
    co_return;
  }
  auto& c = *st.conn;
  out.protocol = c.protocol();
  out.compressed = c.compressed();
  std::vector<std::byte> buf(1 << 20);
  for (;;) {
    auto m = co_await c.recv_message(buf, dl);
    if (!m) {
      if (m.error() != errc::end_of_stream) out.error = m.error();
      break;
    }
    out.messages.emplace_back(m->kind, m->size);
    auto sent = co_await c.send(m->kind, const_buffer(buf.data(), m->size), dl);
    if (!sent) {
      out.error = sent.error();
      break;
    }
    if (out.messages.size() == 1) {
      auto pinged = co_await c.ping(as_bytes("strata-ping"), dl);
      if (!pinged) out.error = pinged.error();
    }
  }
  out.pongs = c.pongs_received();
  out.peer_close = c.peer_close();
  auto closed = co_await c.close(dl);
  out.closed_cleanly = closed.has_value();
  if (!closed && !out.error) out.error = closed.error();
}

void python_client_against_strata(bool deflate) {
  auto l = tcp::listener::bind("127.0.0.1:0");
  ASSERT_TRUE(l) << l.error().message();
  int port = l->local_address()->port();
  served seen;
  auto strata =
      on_strata_thread([&]() -> task<void> { co_await serve_python(*l, deflate, seen); }, patience + 5s);
  auto client =
      peer_process::start({python, "-u", "-c", python_client,
                           "ws://127.0.0.1:" + std::to_string(port) + "/chat", deflate ? "1" : "0"});
  ASSERT_TRUE(client);
  EXPECT_EQ(client.wait_exit(patience), 0) << client.output();
  strata.join();
  auto out = client.output();
  EXPECT_NE(out.find("CLIENT OK"), std::string::npos) << out;
  EXPECT_NE(out.find("protocol chat"), std::string::npos) << out;
  if (deflate) {
    EXPECT_NE(out.find("extensions permessage-deflate"), std::string::npos) << out;
  } else {
    EXPECT_NE(out.find("extensions None"), std::string::npos) << out;
  }
  EXPECT_FALSE(seen.error) << seen.error.message() << "\n" << out;
  EXPECT_EQ(seen.protocol, "chat");
  EXPECT_EQ(seen.compressed, deflate);
  ASSERT_EQ(seen.messages.size(), 4u) << out;
  EXPECT_EQ(seen.messages[0].first, ws::message_kind::text);
  EXPECT_EQ(seen.messages[0].second, std::string("hello text \xe2\x82\xac").size());
  EXPECT_EQ(seen.messages[1].first, ws::message_kind::binary);
  EXPECT_EQ(seen.messages[2].second, std::string("fragmented text \xc3\xa9").size());
  EXPECT_EQ(seen.messages[3].second, 100000u);
  EXPECT_EQ(seen.pongs, 1u) << "Python did not answer strata's ping";
  ASSERT_TRUE(seen.peer_close.has_value());
  EXPECT_EQ(seen.peer_close->code, 4001);
  EXPECT_EQ(seen.peer_close->reason, "py bye");
  EXPECT_TRUE(seen.closed_cleanly);
}

TEST(WebSocketInterop, PythonClientAgainstStrataServer) { python_client_against_strata(false); }
TEST(WebSocketInterop, PythonClientAgainstStrataServerWithDeflate) { python_client_against_strata(true); }

/// talked is what strata's client saw.
struct talked {
  std::error_code error{};
  std::string step;  // the step that failed
  std::string protocol;
  bool compressed = false;
  std::uint64_t pongs = 0;
  std::optional<ws::close_status> peer_close;
};

/// echo_round sends `message` as `kind` and checks that it comes back the same.
task<bool> echo_round(ws::connection& c, ws::message_kind kind, const std::string& message, talked& out,
                      const char* step, deadline dl) {
  out.step = step;
  auto sent = co_await c.send(kind, as_bytes(message), dl);
  if (!sent) {
    out.error = sent.error();
    co_return false;
  }
  std::vector<std::byte> buf(1 << 20);
  auto got = co_await c.recv_message(buf, dl);
  if (!got) {
    out.error = got.error();
    co_return false;
  }
  if (got->kind != kind || as_text(const_buffer(buf.data(), got->size)) != message) {
    out.error = make_error_code(errc::protocol_error);
    co_return false;
  }
  co_return true;
}

task<void> talk_to_python(int port, bool deflate, talked& out) {
  auto dl = deadline::after(patience);
  tcp::connect_options tcp_options;
  auto lower = co_await tcp::connect("127.0.0.1:" + std::to_string(port), dl, tcp_options);
  if (!lower) {
    out.error = lower.error();
    out.step = "tcp";
    co_return;
  }
  ws::options o;
  o.protocols = {"superchat", "chat"};
  o.deflate.enabled = deflate;
  o.fragment_size = 1000;
  auto c = co_await ws::connect(any_stream(std::move(*lower)), "127.0.0.1:" + std::to_string(port),
                                "/echo?x=1", std::move(o), dl);
  if (!c) {
    out.error = c.error();
    out.step = "handshake";
    co_return;
  }
  out.protocol = c->protocol();
  out.compressed = c->compressed();
  std::string big;
  for (int i = 0; i < 100000; ++i) big += static_cast<char>('0' + i % 10);
  if (!co_await echo_round(*c, ws::message_kind::text, "hello text \xe2\x82\xac", out, "text", dl)) co_return;
  if (!co_await echo_round(*c, ws::message_kind::binary, std::string("\0\1binary\xff", 9), out, "binary", dl))
    co_return;
  if (!co_await echo_round(*c, ws::message_kind::text, big, out, "fragmented", dl)) co_return;
  out.step = "ping";
  auto pinged = co_await c->ping(as_bytes("strata-ping"), dl);
  if (!pinged) {
    out.error = pinged.error();
    co_return;
  }
  if (!co_await echo_round(*c, ws::message_kind::text, "after the ping", out, "after ping", dl)) co_return;
  out.pongs = c->pongs_received();
  out.step = "close";
  auto closed = co_await c->close(4002, "strata bye", dl);
  if (!closed) out.error = closed.error();
  out.peer_close = c->peer_close();
  if (!out.error) out.step.clear();
}

void strata_client_against_python(bool deflate) {
  auto server = peer_process::start({python, "-u", "-c", python_server, deflate ? "1" : "0"});
  ASSERT_TRUE(server);
  ASSERT_TRUE(server.wait_for_output("PORT ", patience)) << server.output();
  ASSERT_TRUE(server.wait_for_output("\n", patience)) << server.output();
  auto text = server.output();
  int port = std::stoi(text.substr(text.find("PORT ") + 5));
  talked seen;
  auto strata =
      on_strata_thread([&]() -> task<void> { co_await talk_to_python(port, deflate, seen); }, patience + 5s);
  strata.join();
  EXPECT_EQ(server.wait_exit(patience), 0) << server.output();
  auto out = server.output();
  EXPECT_FALSE(seen.error) << seen.step << ": " << seen.error.message() << "\n" << out;
  EXPECT_EQ(seen.protocol, "chat");
  EXPECT_EQ(seen.compressed, deflate);
  EXPECT_EQ(seen.pongs, 1u);
  ASSERT_TRUE(seen.peer_close.has_value());
  EXPECT_EQ(seen.peer_close->code, 4002);
  EXPECT_NE(out.find("path /echo?x=1 protocol chat"), std::string::npos) << out;
  EXPECT_NE(out.find("got str 100000"), std::string::npos) << out;
  EXPECT_NE(out.find("got bytes 9"), std::string::npos) << out;
  EXPECT_NE(out.find("closed 4002 strata bye"), std::string::npos) << out;
  EXPECT_NE(out.find("SERVER OK"), std::string::npos) << out;
  if (deflate) {
    EXPECT_NE(out.find("extensions permessage-deflate"), std::string::npos) << out;
  } else {
    EXPECT_NE(out.find("extensions None"), std::string::npos) << out;
  }
}

TEST(WebSocketInterop, StrataClientAgainstPythonServer) { strata_client_against_python(false); }
TEST(WebSocketInterop, StrataClientAgainstPythonServerWithDeflate) { strata_client_against_python(true); }

}  // namespace
}  // namespace strata
