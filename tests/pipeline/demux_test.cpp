// demux (pipeline/demux.hpp): the sniffer state machine fed by hand (ClientHellos built
// here, split byte by byte and over records; the HTTP/2 preface; HTTP/1 Host; garbage and
// limits), then the listener over real sockets with real ClientHellos from openssl
// s_client and curl, curl's HTTP/1.1 and HTTP/2 prior knowledge, a user predicate, a proxy
// route that replays every byte, and the typed errors of sniff deadlines and limits.
#include "strata/pipeline/demux.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "strata/strata.hpp"
#include "support/co_test.hpp"
#include "support/peer_process.hpp"

using namespace std::chrono_literals;

namespace strata::demux {
namespace {

deadline soon() { return deadline::after(5s); }

void u16(std::string& s, std::size_t v) {
  s.push_back(static_cast<char>((v >> 8) & 0xff));
  s.push_back(static_cast<char>(v & 0xff));
}

/// hello builds a ClientHello handshake message (header included).
std::string hello(const std::string& sni, const std::vector<std::string>& alpn, std::size_t pad = 0) {
  std::string exts;
  if (!sni.empty()) {
    std::string e;
    u16(e, sni.size() + 3);
    e.push_back(0);
    u16(e, sni.size());
    e += sni;
    u16(exts, 0);
    u16(exts, e.size());
    exts += e;
  }
  if (!alpn.empty()) {
    std::string list;
    for (const auto& p : alpn) {
      list.push_back(static_cast<char>(p.size()));
      list += p;
    }
    std::string e;
    u16(e, list.size());
    e += list;
    u16(exts, 16);
    u16(exts, e.size());
    exts += e;
  }
  if (pad > 0) {
    u16(exts, 21);
    u16(exts, pad);
    exts.append(pad, '\0');
  }
  std::string body;
  u16(body, 0x0303);
  body.append(32, 'r');
  body.push_back(0);
  u16(body, 2);
  u16(body, 0x1301);
  body.push_back(1);
  body.push_back(0);
  u16(body, exts.size());
  body += exts;
  std::string hs;
  hs.push_back(1);
  hs.push_back(static_cast<char>(body.size() >> 16));
  hs.push_back(static_cast<char>(body.size() >> 8));
  hs.push_back(static_cast<char>(body.size()));
  return hs + body;
}

/// records wraps a handshake in TLS records of at most `per` bytes each.
std::string records(const std::string& hs, std::size_t per = 16384) {
  std::string out;
  for (std::size_t off = 0; off < hs.size(); off += per) {
    auto piece = hs.substr(off, per);
    out.push_back(22);
    out.push_back(3);
    out.push_back(1);
    u16(out, piece.size());
    out += piece;
  }
  return out;
}

/// feed_bytewise feeds `data` one byte more at a time, as a slow client sends it.
result<sniffer::status> feed_bytewise(sniffer& s, const std::string& data) {
  result<sniffer::status> st = sniffer::status::need_more;
  for (std::size_t n = 1; n <= data.size(); ++n) {
    st = s.feed(as_bytes(std::string_view(data).substr(0, n)));
    if (!st || *st == sniffer::status::done) return st;
  }
  return st;
}

TEST(demux_sniffer, client_hello_gives_sni_and_alpn_in_one_piece_or_byte_by_byte) {
  auto data = records(hello("Api.Example.ORG", {"h2", "http/1.1"}));
  sniffer whole;
  auto st = whole.feed(as_bytes(data));
  ASSERT_TRUE(st.has_value()) << st.error().message();
  EXPECT_EQ(*st, sniffer::status::done);
  EXPECT_EQ(whole.result_value().kind, kind::tls);
  EXPECT_EQ(whole.result_value().sni, "api.example.org");
  EXPECT_EQ(whole.result_value().alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  sniffer slow;
  auto st2 = feed_bytewise(slow, data);
  ASSERT_TRUE(st2.has_value());
  EXPECT_EQ(*st2, sniffer::status::done);
  EXPECT_EQ(slow.result_value().sni, "api.example.org");
}

TEST(demux_sniffer, client_hello_over_several_records) {
  auto data = records(hello("multi.example", {"h2"}, 3000), 700);
  sniffer s;
  auto st = feed_bytewise(s, data);
  ASSERT_TRUE(st.has_value()) << st.error().message();
  EXPECT_EQ(*st, sniffer::status::done);
  EXPECT_EQ(s.result_value().sni, "multi.example");
}

TEST(demux_sniffer, malformed_client_hellos_are_typed_errors) {
  // An extension length beyond its block.
  auto hs = hello("x.example", {});
  auto broken = hs;
  broken[4 + 2 + 32 + 1 + 2 + 2 + 2 + 2 + 2] = static_cast<char>(0x7f);
  sniffer a;
  auto r = a.feed(as_bytes(records(broken)));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), error::bad_client_hello);
  EXPECT_EQ(r.error(), errc::protocol_error);
  // Not a ClientHello (handshake type 2).
  auto server = hs;
  server[0] = 2;
  sniffer b;
  EXPECT_EQ(b.feed(as_bytes(records(server))).error(), error::bad_client_hello);
  // A record of length 0, a record with another content type after the first.
  sniffer c;
  EXPECT_EQ(c.feed(as_bytes(std::string("\x16\x03\x01\x00\x00", 5))).error(), error::bad_client_hello);
  auto two = records(hs.substr(0, 10)) + std::string("\x17\x03\x03\x00\x01x", 6);
  sniffer d;
  EXPECT_EQ(d.feed(as_bytes(two)).error(), error::bad_client_hello);
  // An empty ALPN protocol name.
  sniffer e;
  EXPECT_EQ(e.feed(as_bytes(records(hello("", {""})))).error(), error::bad_client_hello);
  // The error is sticky.
  EXPECT_EQ(e.feed(as_bytes(records(hello("ok", {})))).error(), error::bad_client_hello);
}

TEST(demux_sniffer, a_client_hello_larger_than_the_limit_is_refused_early) {
  auto data = records(hello("big.example", {"h2"}, 20000));
  sniffer s(4096);
  // The handshake header announces more than 4 KiB: refused before the bytes arrive.
  auto st = s.feed(as_bytes(std::string_view(data).substr(0, 64)));
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error(), error::sniff_limit);
  EXPECT_EQ(st.error(), errc::message_too_large);
}

TEST(demux_sniffer, http2_preface_and_http1_host) {
  sniffer h2;
  auto st = feed_bytewise(h2, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(h2.result_value().kind, kind::http2);

  sniffer h1;
  st = feed_bytewise(
      h1, "GET /index.html HTTP/1.1\r\nUser-Agent: x\r\nhOsT:  WWW.Example.test:8080 \r\n\r\nbody");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(*st, sniffer::status::done);
  EXPECT_EQ(h1.result_value().kind, kind::http1);
  EXPECT_EQ(h1.result_value().host, "www.example.test");
  EXPECT_EQ(h1.result_value().method, "GET");
  EXPECT_EQ(h1.result_value().target, "/index.html");

  sniffer v6;
  ASSERT_TRUE(v6.feed(as_bytes("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")).has_value());
  EXPECT_EQ(v6.result_value().host, "[::1]");

  // Two Host fields: routed by no host.
  sniffer two;
  ASSERT_TRUE(two.feed(as_bytes("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")).has_value());
  EXPECT_EQ(two.result_value().kind, kind::http1);
  EXPECT_EQ(two.result_value().host, "");
}

TEST(demux_sniffer, other_bytes_are_unknown_and_limits_hold) {
  sniffer bin;
  auto st = bin.feed(as_bytes(std::string("\x00\x01\x02", 3)));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(*st, sniffer::status::done);
  EXPECT_EQ(bin.result_value().kind, kind::unknown);

  sniffer ssh;  // "SSH-2.0-..." is not a method followed by a space within the line
  ASSERT_TRUE(ssh.feed(as_bytes("SSH-2.0-OpenSSH_9.2\r\n")).has_value());
  EXPECT_EQ(ssh.result_value().kind, kind::unknown);

  sniffer endless(256);  // a request head that never ends
  std::string head = "GET / HTTP/1.1\r\n" + std::string(300, 'a');
  auto r = feed_bytewise(endless, head);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), error::sniff_limit);

  sniffer partial;
  ASSERT_TRUE(partial.feed(as_bytes("GET / HT")).has_value());
  auto fin = partial.finish(as_bytes("GET / HT"));
  ASSERT_TRUE(fin.has_value());
  EXPECT_EQ(partial.result_value().kind, kind::unknown);
  sniffer nothing;
  EXPECT_EQ(nothing.finish({}).error(), error::ended_early);
}

TEST(demux_routes, match_rules) {
  sniffed tls{kind::tls, "a.b.example", {"h2"}, "", "", ""};
  EXPECT_TRUE(matches(route{.sni = "*.example"}, tls, {}));
  EXPECT_TRUE(matches(route{.sni = "A.B.example"}, tls, {}));
  EXPECT_FALSE(matches(route{.sni = "*.a.b.example"}, tls, {}));
  EXPECT_TRUE(matches(route{.alpn = "h2"}, tls, {}));
  EXPECT_FALSE(matches(route{.alpn = "http/1.1"}, tls, {}));
  EXPECT_FALSE(matches(route{.kind = kind::http1}, tls, {}));
  EXPECT_FALSE(matches(route{.host = "a.b.example"}, tls, {}));
  EXPECT_TRUE(matches(route{}, tls, {}));
}

// -- over sockets ----------------------------------------------------------------------------

struct seen {
  std::string name;  // the route that took it
  sniffed info;
  std::string replayed;  // what replay() gave back first
};

/// recorder is a handler that notes the connection and what replay gives, then answers
/// `answer` (if any) and closes.
handler recorder(std::string name, std::vector<seen>& out, int& remaining, scope*& stop,
                 std::string answer = {}) {
  return [name, &out, &remaining, &stop, answer](connection c) -> task<void> {
    seen s{name, c.info, {}};
    auto first = c.sniffed_bytes.size();
    auto stream = replay(c.conn.take_stream(), std::move(c.sniffed_bytes));
    std::array<std::byte, 4096> buf;
    while (s.replayed.size() < first) {
      auto n = co_await stream.read_some(buf, soon());
      if (!n) break;
      s.replayed.append(as_text(const_buffer(buf.data(), *n)));
    }
    if (!answer.empty()) (void)co_await stream.write(as_bytes(answer), soon());
    (void)co_await stream.close(deadline::after(200ms));
    out.push_back(std::move(s));
    if (--remaining == 0 && stop) stop->cancel();
  };
}

TEST(demux_listener, routes_real_clients_by_sni_alpn_preface_host_and_predicate) {
  auto openssl = test::find_program("openssl");
  auto curl = test::find_program("curl");
  ASSERT_FALSE(openssl.empty()) << "openssl is not installed";
  ASSERT_FALSE(curl.empty()) << "curl is not installed";
  std::vector<seen> got;
  std::promise<int> port_promise;
  auto port_future = port_promise.get_future();
  demux::stats counts;
  {
    auto th = test::on_strata_thread(
        [&]() -> task<void> {
          auto lower = strata::listen("tcp-listen:127.0.0.1:0");
          CO_ASSERT_TRUE(lower.has_value());
          listener l(std::move(*lower));
          int remaining = 6;
          scope* stop = nullptr;
          l.add(route{.sni = "*.a.test"}, recorder("sni", got, remaining, stop));
          l.add(route{.kind = kind::tls, .alpn = "h2"}, recorder("alpn", got, remaining, stop));
          l.add(route{.kind = kind::http2}, recorder("h2", got, remaining, stop));
          l.add(route{.host = "www.web.test"},
                recorder("host", got, remaining, stop, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
          l.add(route{.predicate = [](const sniffed&,
                                      const_buffer b) { return !b.empty() && b[0] == std::byte{'X'}; }},
                recorder("predicate", got, remaining, stop));
          l.add(route{}, recorder("default", got, remaining, stop));
          port_promise.set_value(l.local_address()->port());
          co_await with_scope([&](scope& s) -> task<void> {
            stop = &s;
            (void)co_await l.serve();
          });
          counts = l.counters();
        },
        20s);
    int port = port_future.get();
    auto p = std::to_string(port);
    // TLS with SNI (openssl s_client), then TLS whose ALPN offers h2 (curl, SNI b.test).
    auto sc = test::peer_process::start({openssl, "s_client", "-connect", "127.0.0.1:" + p, "-servername",
                                         "api.a.test", "-alpn", "h2,http/1.1"});
    ASSERT_TRUE(sc);
    EXPECT_TRUE(sc.wait_exit(10s).has_value());
    auto ct = test::peer_process::start({curl, "-sk", "--max-time", "5", "--http2", "--resolve",
                                         "b.test:" + p + ":127.0.0.1", "https://b.test:" + p + "/"});
    ASSERT_TRUE(ct);
    EXPECT_TRUE(ct.wait_exit(10s).has_value());
    auto c2 = test::peer_process::start(
        {curl, "-s", "--max-time", "5", "--http2-prior-knowledge", "http://127.0.0.1:" + p + "/"});
    ASSERT_TRUE(c2);
    EXPECT_TRUE(c2.wait_exit(10s).has_value());
    auto c1 =
        test::peer_process::start({curl, "-s", "--max-time", "5", "--resolve",
                                   "www.web.test:" + p + ":127.0.0.1", "http://www.web.test:" + p + "/x"});
    ASSERT_TRUE(c1);
    EXPECT_EQ(c1.wait_exit(10s), 0);
    EXPECT_EQ(c1.output(), "ok");
    // A raw client for the predicate, and one for the default route.
    for (std::string text : {"XYZ hello\n", "\x01\x02garbage"}) {
      int fd = -1;
      fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(static_cast<std::uint16_t>(port));
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
      ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
      char b[16];
      (void)::read(fd, b, sizeof b);  // until the handler closes
      ::close(fd);
    }
  }
  ASSERT_EQ(got.size(), 6u);
  auto find = [&](const std::string& name) -> const seen* {
    for (const auto& s : got)
      if (s.name == name) return &s;
    return nullptr;
  };
  const seen* sni = find("sni");
  ASSERT_NE(sni, nullptr);
  EXPECT_EQ(sni->info.sni, "api.a.test");
  EXPECT_EQ(sni->info.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(static_cast<std::uint8_t>(sni->replayed[0]), 22);  // the ClientHello comes back first
  const seen* alpn = find("alpn");
  ASSERT_NE(alpn, nullptr);
  EXPECT_EQ(alpn->info.sni, "b.test");
  const seen* h2 = find("h2");
  ASSERT_NE(h2, nullptr);
  EXPECT_EQ(h2->replayed.substr(0, 24), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  const seen* host = find("host");
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->info.host, "www.web.test");
  EXPECT_EQ(host->replayed.rfind("GET /x HTTP/1.1\r\n", 0), 0u);
  ASSERT_NE(find("predicate"), nullptr);
  EXPECT_EQ(find("predicate")->replayed, "XYZ hello\n");
  ASSERT_NE(find("default"), nullptr);
  EXPECT_EQ(counts.routed, 6u);
  EXPECT_EQ(counts.accepted, 6u);
}

task<void> echo_one(any_connection c) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    auto n = co_await c.stream().read_some(buf, soon());
    if (!n) break;
    if (!co_await c.stream().write(const_buffer(buf.data(), *n), soon())) break;
  }
  (void)co_await c.stream().shutdown_write(soon());
  (void)co_await c.close(soon());
}

TEST(demux_listener, to_pipeline_replays_every_byte_to_the_target) {
  std::string got;
  std::string sent = "GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n" + std::string(200000, 'z');
  test::run_test([&]() -> task<void> {
    auto lower = strata::listen("tcp-listen:127.0.0.1:0");
    auto echo = strata::listen("tcp-listen:127.0.0.1:0");
    CO_ASSERT_TRUE(lower.has_value() && echo.has_value());
    pipeline_error pe;
    auto target = pipeline::parse("tcp:127.0.0.1:" + std::to_string(echo->local_address()->port()), pe);
    CO_ASSERT_TRUE(target.has_value());
    listener l(std::move(*lower));
    l.add(route{.host = "proxy.test"}, to_pipeline(*target));
    auto port = l.local_address()->port();
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> { (void)co_await l.serve(); }));
      s.spawn(test::call([&]() -> task<void> {
        auto c = co_await echo->accept(soon());
        if (c) co_await echo_one(std::move(*c));
      }));
      auto c = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
      CO_ASSERT_TRUE(c.has_value());
      co_await with_scope([&](scope& inner) -> task<void> {
        inner.spawn(test::call([&]() -> task<void> {
          (void)co_await c->stream().write(as_bytes(sent), soon());
          (void)co_await c->stream().shutdown_write(soon());
        }));
        std::array<std::byte, 16384> buf;
        for (;;) {
          auto n = co_await c->stream().read_some(buf, soon());
          if (!n) break;
          got.append(as_text(const_buffer(buf.data(), *n)));
        }
      });
      (void)co_await c->close(soon());
      s.cancel();
    });
  });
  EXPECT_TRUE(got == sent) << got.size() << " of " << sent.size();
}

TEST(demux_listener, sniff_deadline_limit_and_no_route_are_counted_and_reset) {
  demux::stats counts;
  std::vector<std::error_code> saw;
  test::run_test([&]() -> task<void> {
    auto lower = strata::listen("tcp-listen:127.0.0.1:0");
    CO_ASSERT_TRUE(lower.has_value());
    options o;
    o.sniff_timeout = 100ms;
    o.max_sniff = 512;
    listener l(std::move(*lower), o);
    l.add(route{.kind = kind::http1}, [](connection) -> task<void> { co_return; });
    auto port = std::to_string(l.local_address()->port());
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(test::call([&]() -> task<void> { (void)co_await l.serve(); }));
      for (std::string text : {std::string(), "GET / HTTP/1.1\r\n" + std::string(600, 'h'),
                               std::string("\x16\x03\x01\x00\x00", 5), std::string("\x05\x01\x00", 3)}) {
        auto c = co_await strata::connect("tcp:127.0.0.1:" + port, soon());
        CO_ASSERT_TRUE(c.has_value());
        if (!text.empty()) (void)co_await c->stream().write(as_bytes(text), soon());
        std::array<std::byte, 16> buf;
        auto n = co_await c->stream().read_some(buf, soon());
        saw.push_back(n ? std::error_code{} : n.error());
        (void)co_await c->close(deadline::after(50ms));
      }
      s.cancel();
    });
    counts = l.counters();
  });
  ASSERT_EQ(saw.size(), 4u);
  for (auto ec : saw) EXPECT_EQ(ec, errc::broken) << ec.message();  // each one reset
  EXPECT_EQ(counts.timed_out, 1u);
  EXPECT_EQ(counts.too_long, 1u);
  EXPECT_EQ(counts.malformed, 1u);
  EXPECT_EQ(counts.no_route, 1u);
  EXPECT_EQ(counts.routed, 0u);
}

}  // namespace
}  // namespace strata::demux
