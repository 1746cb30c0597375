// websocket: WebSocket (RFC 6455) over TCP on 127.0.0.1 next to prefix(4) on the same
// kind of connection, in the same run.
//
//   echo_64B, echo_16K   the client sends one message and waits for the server's echo,
//                        serially: round trips per second (each round one sample) and
//                        the round-trip time of every message (p50/p99 over all of them).
//   c2s_16K              the client sends 16 KiB messages one way as fast as it can; the
//                        server receives them: messages per second from the first send to
//                        the last message received. Target: websocket >= 0.8x prefix(4).
//
//   websocket  strata's websocket::connection on both ends (the client masks, the server
//              unmasks; binary messages; no compression), after the HTTP upgrade, which
//              is not timed.
//   prefix4    strata's prefix<any_stream> (4-byte header) on both ends: the same
//              coroutine runtime and socket, the framing of a length header only.
//
// Each end runs on its own thread with its own strata::run. Every message carries its
// sequence number, which the receiver checks. Rounds alternate websocket and prefix4
// (which goes first alternates too) on fresh connections.
#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "strata/adapt/prefix.hpp"
#include "strata/app/http1.hpp"
#include "strata/app/websocket.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"

namespace {

using bench::clock;
using bench::ns_between;
using namespace std::chrono_literals;
namespace ws = strata::websocket;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "bench_websocket: %s\n", what);
  std::exit(1);
}

void put_seq(std::byte* payload, std::uint64_t seq) { std::memcpy(payload, &seq, sizeof seq); }
std::uint64_t get_seq(const std::byte* payload) {
  std::uint64_t seq;
  std::memcpy(&seq, payload, sizeof seq);
  return seq;
}

enum class framing { websocket, prefix4 };

// -- making the two ends -------------------------------------------------------------------

struct upgrade_state {
  std::optional<ws::connection> conn;
};

strata::task<strata::result<void>> upgrade_one(upgrade_state& st, strata::http1::request& req,
                                               strata::http1::response& res) {
  ws::options o;
  o.max_message = 1 << 20;
  auto c = co_await ws::accept(req, res, std::move(o), strata::deadline::after(10s));
  if (c) st.conn.emplace(std::move(*c));
  co_return strata::result<void>{};
}

/// server_end accepts one connection and makes it a message socket of `kind`.
strata::task<strata::any_message> server_end(strata::tcp::listener& l, framing kind) {
  auto s = co_await l.accept(strata::deadline::after(10s));
  if (!s) die("accept");
  if (kind == framing::prefix4) {
    strata::prefix_options po;
    po.max_message = 1 << 20;
    co_return strata::any_message(strata::prefix<strata::any_stream>(strata::any_stream(std::move(*s)), po));
  }
  upgrade_state st;
  strata::http1::server_options so;
  so.max_requests = 1;
  auto* shared = &st;
  strata::http1::handler h = [shared](strata::http1::request& req, strata::http1::response& res) {
    return upgrade_one(*shared, req, res);
  };
  (void)co_await strata::http1::serve(strata::any_stream(std::move(*s)), std::move(h), so);
  if (!st.conn) die("websocket accept");
  co_return strata::any_message(std::move(*st.conn));
}

/// client_end connects and makes the connection a message socket of `kind`.
strata::task<strata::any_message> client_end(std::uint16_t port, framing kind) {
  strata::tcp::connect_options to;
  auto s =
      co_await strata::tcp::connect("127.0.0.1:" + std::to_string(port), strata::deadline::after(10s), to);
  if (!s) die("connect");
  if (kind == framing::prefix4) {
    strata::prefix_options po;
    po.max_message = 1 << 20;
    co_return strata::any_message(strata::prefix<strata::any_stream>(strata::any_stream(std::move(*s)), po));
  }
  ws::options o;
  o.max_message = 1 << 20;
  auto c = co_await ws::connect(strata::any_stream(std::move(*s)), "127.0.0.1", "/bench", std::move(o),
                                strata::deadline::after(10s));
  if (!c) die("websocket connect");
  co_return strata::any_message(std::move(*c));
}

// -- echo ----------------------------------------------------------------------------------

strata::task<void> echo_server(strata::tcp::listener& l, framing kind, std::size_t size) {
  auto m = co_await server_end(l, kind);
  std::vector<std::byte> buf(size);
  for (;;) {
    auto n = co_await m.recv(buf, strata::deadline::never());
    if (!n) break;  // the client closed
    if (!co_await m.send(strata::const_buffer(buf.data(), *n), strata::deadline::never())) die("echo send");
  }
  (void)co_await m.close(strata::deadline::after(10s));
}

struct echo_outcome {
  double rate = 0;           // round trips per second
  std::vector<double> rtts;  // microseconds, one per message
};

strata::task<echo_outcome> echo_client(std::uint16_t port, framing kind, std::size_t size,
                                       std::size_t count) {
  auto m = co_await client_end(port, kind);
  std::vector<std::byte> out(size), in(size);
  echo_outcome o;
  o.rtts.reserve(count);
  auto start = clock::now();
  for (std::size_t i = 0; i < count; ++i) {
    put_seq(out.data(), i);
    auto t0 = clock::now();
    if (!co_await m.send(strata::const_buffer(out), strata::deadline::never())) die("send");
    auto n = co_await m.recv(in, strata::deadline::never());
    if (!n || *n != size || get_seq(in.data()) != i) die("echo");
    o.rtts.push_back(ns_between(t0, clock::now()) / 1000.0);
  }
  o.rate = static_cast<double>(count) * 1e9 / ns_between(start, clock::now());
  (void)co_await m.close(strata::deadline::after(10s));
  co_return o;
}

echo_outcome echo_round(framing kind, std::size_t size, std::size_t count) {
  auto l = strata::tcp::listener::bind("127.0.0.1:0");
  if (!l) die("listen");
  auto port = l->local_address()->port();
  std::thread server([&] { strata::run(echo_server(*l, kind, size)); });
  auto o = strata::run(echo_client(port, kind, size, count));
  server.join();
  return o;
}

// -- one way -------------------------------------------------------------------------------

// mark is when one side started (sender) or finished (receiver) and the CPU time its
// thread spent in its loop.
struct mark {
  clock::time_point at;
  double cpu_ns = 0;
};

strata::task<mark> sink_server(strata::tcp::listener& l, framing kind, std::size_t size, std::size_t count) {
  auto m = co_await server_end(l, kind);
  std::vector<std::byte> buf(size);
  mark last{{}, bench::thread_cpu_ns()};
  for (std::size_t got = 0; got < count; ++got) {
    auto n = co_await m.recv(buf, strata::deadline::never());
    if (!n || *n != size || get_seq(buf.data()) != got) die("sink recv");
  }
  last.at = clock::now();
  last.cpu_ns = bench::thread_cpu_ns() - last.cpu_ns;
  (void)co_await m.close(strata::deadline::after(10s));
  co_return last;
}

strata::task<mark> source_client(std::uint16_t port, framing kind, std::size_t size, std::size_t count) {
  auto m = co_await client_end(port, kind);
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>(i * 31);
  mark first{clock::now(), bench::thread_cpu_ns()};
  for (std::size_t i = 0; i < count; ++i) {
    put_seq(out.data(), i);
    if (!co_await m.send(strata::const_buffer(out), strata::deadline::never())) die("source send");
  }
  first.cpu_ns = bench::thread_cpu_ns() - first.cpu_ns;
  (void)co_await m.close(strata::deadline::after(10s));
  co_return first;
}

struct one_way_outcome {
  double rate = 0;          // messages per second, first send to last receive
  double sender_cpu = 0;    // ns per message
  double receiver_cpu = 0;  // ns per message
};

one_way_outcome one_way_round(framing kind, std::size_t size, std::size_t count) {
  auto l = strata::tcp::listener::bind("127.0.0.1:0");
  if (!l) die("listen");
  auto port = l->local_address()->port();
  mark last;
  std::thread server([&] { last = strata::run(sink_server(*l, kind, size, count)); });
  auto first = strata::run(source_client(port, kind, size, count));
  server.join();
  auto n = static_cast<double>(count);
  return {n * 1e9 / ns_between(first.at, last.at), first.cpu_ns / n, last.cpu_ns / n};
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = bench::parse_options(argc, argv);
  struct {
    int rounds;
    std::size_t echo_small, echo_large, one_way;
  } p = opt.quick ? decltype(p){2, 2'000, 500, 2'000} : decltype(p){10, 20'000, 5'000, 20'000};
  bench::report rep("websocket", opt);

  // Warm-up: page in, let the frame pools and socket buffers reach their steady size.
  (void)echo_round(framing::websocket, 64, p.echo_small / 4);
  (void)echo_round(framing::prefix4, 64, p.echo_small / 4);

  auto echo_figures = [&](const std::string& name, std::size_t size, std::size_t count) {
    std::vector<double> ws_rate, pf_rate, ws_rtt, pf_rtt;
    for (int r = 0; r < p.rounds; ++r) {
      for (int k = 0; k < 2; ++k) {
        bool websocket_now = (r % 2 == 0) == (k == 0);
        auto o = echo_round(websocket_now ? framing::websocket : framing::prefix4, size, count);
        (websocket_now ? ws_rate : pf_rate).push_back(o.rate);
        auto& rtts = websocket_now ? ws_rtt : pf_rtt;
        rtts.insert(rtts.end(), o.rtts.begin(), o.rtts.end());
      }
    }
    bench::figure rate;
    rate.name = name;
    rate.unit = "msg/s";
    rate.higher_is_better = true;
    rate.value = bench::summarize(ws_rate);
    rate.baseline_name = "prefix4_echo";
    rate.baseline = bench::summarize(pf_rate);
    rep.add(rate);
    bench::figure rtt;
    rtt.name = name + "_rtt";
    rtt.unit = "us";
    rtt.value = bench::summarize(ws_rtt);
    rtt.baseline_name = "prefix4_rtt";
    rtt.baseline = bench::summarize(pf_rtt);
    rep.add(rtt);
  };
  if (rep.wanted("echo_64B")) echo_figures("echo_64B", 64, p.echo_small);
  if (rep.wanted("echo_16K")) echo_figures("echo_16K", 16 * 1024, p.echo_large);
  if (rep.wanted("c2s_16K")) {
    std::vector<double> ws_rate, pf_rate, ws_send, pf_send, ws_recv, pf_recv;
    for (int r = 0; r < p.rounds; ++r) {
      for (int k = 0; k < 2; ++k) {
        bool websocket_now = (r % 2 == 0) == (k == 0);
        auto o = one_way_round(websocket_now ? framing::websocket : framing::prefix4, 16 * 1024, p.one_way);
        (websocket_now ? ws_rate : pf_rate).push_back(o.rate);
        (websocket_now ? ws_send : pf_send).push_back(o.sender_cpu);
        (websocket_now ? ws_recv : pf_recv).push_back(o.receiver_cpu);
      }
    }
    bench::figure f;
    f.name = "c2s_16K";
    f.unit = "msg/s";
    f.higher_is_better = true;
    f.value = bench::summarize(ws_rate);
    f.baseline_name = "prefix4_16K";
    f.baseline = bench::summarize(pf_rate);
    f.target_text = "ratio >= 0.8";
    f.target = 0.8;
    f.target_on_ratio = true;
    rep.add(f);
    // CPU time per message of each thread, which other processes disturb far less than
    // the wall-clock rate: what masking (client) and unmasking (server) cost.
    auto cpu = [&](std::string name, std::string base, const std::vector<double>& w,
                   const std::vector<double>& pf) {
      bench::figure c;
      c.name = std::move(name);
      c.unit = "cpu ns/msg";
      c.value = bench::summarize(w);
      c.baseline_name = std::move(base);
      c.baseline = bench::summarize(pf);
      rep.add(c);
    };
    cpu("c2s_16K_cpu_client", "prefix4_sender", ws_send, pf_send);
    cpu("c2s_16K_cpu_server", "prefix4_receiver", ws_recv, pf_recv);
  }
  return rep.print("echo: rounds of " + std::to_string(p.echo_small) + " (64 B) / " +
                   std::to_string(p.echo_large) +
                   " (16 KiB) round trips, rtt over every message; c2s: rounds of " +
                   std::to_string(p.one_way) + " messages; msg/s: higher is better");
}
