// dccp next to the UDP it runs on, over loopback, in the same run:
//
//   rtt_64B     round trips of a 64-byte message (us, p50/p99), client and server tasks on
//               one event loop: dccp::connection<udp::connected> against udp::connected.
//   bulk_1k     one-way 1 KiB messages as fast as the sender may send: goodput, messages
//               delivered per second from the first send to the last delivery. dccp's
//               sender waits for CCID 2's window; UDP's never waits, so what the
//               receiver's socket buffer cannot hold is lost. The delivered share of both is
//               printed.
//
// Usage: bench_dccp [--quick] [--json FILE] [--only NAME]
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "strata/adapt/dccp.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/udp.hpp"

namespace {

using namespace std::chrono_literals;
namespace dccp = strata::dccp;
using strata::deadline;
using strata::task;

[[noreturn]] void die(const std::string& what, std::error_code ec) {
  std::fprintf(stderr, "bench_dccp: %s: %s\n", what.c_str(), ec.message().c_str());
  std::exit(1);
}

std::pair<strata::udp::connected, strata::udp::connected> udp_pair() {
  auto a = strata::udp::socket::bind("127.0.0.1:0");
  auto b = strata::udp::socket::bind("127.0.0.1:0");
  if (!a || !b) die("bind", a ? b.error() : a.error());
  auto a_at = a->local_address();
  auto b_at = b->local_address();
  auto ca = std::move(*a).connect(*b_at);
  auto cb = std::move(*b).connect(*a_at);
  if (!ca || !cb) die("connect", ca ? cb.error() : ca.error());
  return {std::move(*ca), std::move(*cb)};
}

dccp::config bench_config() {
  dccp::config c;
  c.retransmit = 100ms;
  return c;
}

using dccp_end = dccp::connection<strata::udp::connected>;

/// dccp_pair connects two DCCP ends over a UDP pair (both handshakes on this loop).
task<std::pair<dccp_end, dccp_end>> dccp_pair() {
  auto ends = udp_pair();
  std::optional<dccp_end> server, client;
  co_await strata::with_scope([&](strata::scope& s) -> task<void> {
    s.spawn([](strata::udp::connected lower, std::optional<dccp_end>& out) -> task<void> {
      auto c = co_await dccp::accept(std::move(lower), bench_config(), deadline::after(5s));
      if (!c) die("accept", c.error());
      out.emplace(std::move(*c));
    }(std::move(ends.second), server));
    s.spawn([](strata::udp::connected lower, std::optional<dccp_end>& out) -> task<void> {
      auto c = co_await dccp::connect(std::move(lower), bench_config(), deadline::after(5s));
      if (!c) die("connect", c.error());
      out.emplace(std::move(*c));
    }(std::move(ends.first), client));
    co_return;
  });
  co_return std::pair<dccp_end, dccp_end>{std::move(*client), std::move(*server)};
}

template <class M>
task<void> echo(M& m, int count) {
  std::vector<std::byte> buf(2048);
  for (int i = 0; i < count; ++i) {
    auto n = co_await m.recv(buf, deadline::after(2s));
    if (!n) co_return;
    (void)co_await m.send(strata::const_buffer(buf.data(), *n), deadline::after(2s));
  }
}

template <class M>
task<void> ping(M& m, int count, std::vector<double>& us) {
  std::vector<std::byte> msg(64, std::byte{'p'});
  std::vector<std::byte> buf(2048);
  for (int i = 0; i < count; ++i) {
    auto t0 = bench::clock::now();
    auto sent = co_await m.send(strata::const_buffer(msg), deadline::after(2s));
    if (!sent) die("ping send", sent.error());
    auto n = co_await m.recv(buf, deadline::after(2s));
    if (!n) die("ping recv", n.error());
    us.push_back(bench::ns_between(t0, bench::clock::now()) / 1000.0);
  }
}

template <class A, class B>
task<void> pingpong(A& a, B& b, int count, std::vector<double>& us) {
  co_await strata::with_scope([&](strata::scope& s) -> task<void> {
    s.spawn(echo(b, count));
    s.spawn(ping(a, count, us));
    co_return;
  });
}

struct bulk_result {
  double msg_per_s = 0;
  std::uint64_t delivered = 0;
};

template <class M>
task<void> blast(M& m, int count) {
  std::vector<std::byte> msg(1024, std::byte{'b'});
  for (int i = 0; i < count; ++i) {
    auto sent = co_await m.send(strata::const_buffer(msg), deadline::after(5s));
    if (!sent) co_return;
  }
}

template <class M>
task<void> drain(M& m, int count, bulk_result& out) {
  std::vector<std::byte> buf(2048);
  const auto start = bench::clock::now();
  auto last = start;
  for (std::uint64_t got = 0; got < static_cast<std::uint64_t>(count); ++got) {
    auto n = co_await m.recv(buf, deadline::after(300ms));
    if (!n) break;
    last = bench::clock::now();
    ++out.delivered;
  }
  // Goodput: messages delivered per second from the first send to the last delivery.
  const double secs = bench::ns_between(start, last) / 1e9;
  out.msg_per_s = secs > 0 ? static_cast<double>(out.delivered) / secs : 0;
}

template <class A, class B>
task<void> bulk(A& a, B& b, int count, bulk_result& out) {
  co_await strata::with_scope([&](strata::scope& s) -> task<void> {
    s.spawn(drain(b, count, out));
    s.spawn(blast(a, count));
    co_return;
  });
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = bench::parse_options(argc, argv);
  bench::report rep("dccp", opt);
  const int rounds = opt.quick ? 3 : 9;
  const int pings = opt.quick ? 200 : 2000;
  const int messages = opt.quick ? 2000 : 20000;

  if (rep.wanted("rtt_64B")) {
    std::vector<double> d_us, u_us;
    for (int r = 0; r < rounds; ++r) {
      strata::run([&]() -> task<void> {
        auto ends = udp_pair();
        co_await pingpong(ends.first, ends.second, pings, u_us);
      }());
      strata::run([&]() -> task<void> {
        auto ends = co_await dccp_pair();
        co_await pingpong(ends.first, ends.second, pings, d_us);
        (void)co_await ends.first.close(deadline::after(1s));
      }());
    }
    bench::figure f;
    f.name = "rtt_64B";
    f.unit = "us";
    f.value = bench::summarize(d_us);
    f.baseline_name = "udp";
    f.baseline = bench::summarize(u_us);
    rep.add(f);
  }
  std::string delivered;
  if (rep.wanted("bulk_1k")) {
    std::vector<double> d_rate, u_rate;
    std::uint64_t d_got = 0, u_got = 0;
    for (int r = 0; r < rounds; ++r) {
      bulk_result u, d;
      strata::run([&]() -> task<void> {
        auto ends = udp_pair();
        co_await bulk(ends.first, ends.second, messages, u);
      }());
      strata::run([&]() -> task<void> {
        auto ends = co_await dccp_pair();
        co_await bulk(ends.first, ends.second, messages, d);
        (void)co_await ends.first.close(deadline::after(1s));
      }());
      u_rate.push_back(u.msg_per_s);
      d_rate.push_back(d.msg_per_s);
      u_got += u.delivered;
      d_got += d.delivered;
    }
    bench::figure f;
    f.name = "bulk_1k";
    f.unit = "msg/s";
    f.higher_is_better = true;
    f.value = bench::summarize(d_rate);
    f.baseline_name = "udp";
    f.baseline = bench::summarize(u_rate);
    rep.add(f);
    const double sent = static_cast<double>(messages) * rounds;
    char line[200];
    std::snprintf(line, sizeof line, "bulk_1k delivered: dccp %.1f%%, udp %.1f%% of %d messages per round",
                  100.0 * static_cast<double>(d_got) / sent, 100.0 * static_cast<double>(u_got) / sent,
                  messages);
    delivered = line;
  }
  return rep.print(delivered);
}
