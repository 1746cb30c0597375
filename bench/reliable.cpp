// reliable: goodput of `reliable | bytes` over real UDP next to TCP over the same lossy IP
// link, at 0%, 1% and 10% loss, in the same run.
//
// The link is the tests' netns link (tests/support/netns_link.hpp): a forked child in a
// network namespace of its own with a TUN device whose forwarder thread drops packets at
// random, holds them to a rate limit with a bounded queue and a one-way delay, and writes
// them back with source and destination swapped — netem-like, built here because the
// machine has no netem. Both protocols cross the kernel's IP stack and the same
// forwarder, one after the other in alternating rounds, inside the same child.
//
//   tcp        tcp-listen:10.77.0.1:P and tcp:10.77.0.2:P (Linux's TCP), 64 KiB writes,
//              once with each congestion control: bbr (the kernel's default here) and
//              reno, set through the namespace's own sysctl.
//   reliable   udp-listen:10.77.0.1:P | reliable(mtu=1472) | bytes and udp:10.77.0.2:P |
//              reliable(mtu=1472) | bytes (1440-byte messages: the payload TCP's 1448-byte
//              segments carry), the same writes; once with each congestion control:
//              newreno (the default, figures loss_N%_vs_ALGO) and rate (cc=rate, figures
//              loss_N%_rate_vs_ALGO).
//
// A sample is the goodput in Mbit/s of one transfer: the sender writes for `seconds`, then
// shuts down; the receiver counts the bytes until the end of stream. Target: reliable >=
// 0.8x tcp at 1% loss. Root is needed (unshare); without it the program says so and exits 0.
#include <sys/mman.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/netns_link.hpp"

namespace {

using bench::clock;
using namespace std::chrono_literals;
namespace t = strata::test;

constexpr std::size_t chunk = 64 * 1024;

// call runs a capturing lambda coroutine in a task that owns it (tests/support/co_test.hpp).
template <class F>
strata::task<void> call(F f) {
  co_await f();
}
constexpr int max_rounds = 16;

// The TCP congestion controls measured: the kernel's default here (bbr) and reno, the
// loss-based AIMD that reliable's NewReno-like control is. (cubic is listed as available
// on this kernel but a namespace cannot select it: the sysctl write fails with EIO.)
constexpr std::array<const char*, 2> algorithms{"bbr", "reno"};

// What a child measured, in memory shared with the parent.
struct shared_results {
  double tcp[algorithms.size()][max_rounds];
  double reliable[max_rounds];
  double reliable_rate[max_rounds];
  int rounds;
  char default_algorithm[32];
  std::uint64_t lost;
  std::uint64_t forwarded;
  std::uint64_t overflow;
  std::uint64_t udp_rcvbuf_errors;  // datagrams the kernel dropped at a full socket buffer
  std::uint64_t largest;            // the largest packet the link carried
};

// udp_rcvbuf_errors reads Udp: RcvbufErrors from /proc/net/snmp (this namespace's).
std::uint64_t udp_rcvbuf_errors() {
  std::ifstream snmp("/proc/net/snmp");
  std::string line;
  std::vector<std::string> names;
  while (std::getline(snmp, line)) {
    if (line.rfind("Udp: ", 0) != 0) continue;
    std::vector<std::string> fields;
    std::size_t pos = 5;
    while (pos < line.size()) {
      auto next = line.find(' ', pos);
      if (next == std::string::npos) next = line.size();
      fields.push_back(line.substr(pos, next - pos));
      pos = next + 1;
    }
    if (names.empty()) {
      names = fields;
      continue;
    }
    for (std::size_t i = 0; i < names.size() && i < fields.size(); ++i) {
      if (names[i] == "RcvbufErrors") return std::stoull(fields[i]);
    }
  }
  return 0;
}

struct transfer {
  std::uint64_t bytes = 0;
  double seconds = 0;
  bool ok = false;
};

// measure sends for `duration` over a connection made from `client_spec` to a listener
// made from `listen_spec`, and returns what the receiver counted.
strata::task<transfer> measure(std::string listen_spec, std::string client_spec,
                               std::chrono::milliseconds duration) {
  transfer out;
  auto dl = strata::deadline::after(duration + 60s);
  auto listener = strata::listen(listen_spec);
  if (!listener) {
    std::fprintf(stderr, "listen %s: %s\n", listen_spec.c_str(), listener.error().message().c_str());
    co_return out;
  }
  auto port = std::to_string(listener->local_address()->port());
  auto pos = client_spec.find("PORT");
  client_spec.replace(pos, 4, port);
  auto conn = co_await strata::connect(client_spec, dl);
  if (!conn) {
    std::fprintf(stderr, "connect %s: %s\n", client_spec.c_str(), conn.error().message().c_str());
    co_return out;
  }
  auto client = conn->take_stream();
  auto start = clock::now();
  clock::time_point end{};
  bool receiver_ok = false;
  strata::scope s;
  s.spawn(call([&]() -> strata::task<void> {
    auto peer = co_await listener->accept(dl);
    if (!peer) co_return;
    auto st = peer->take_stream();
    std::vector<std::byte> buf(chunk);
    for (;;) {
      auto n = co_await st.read_some(buf, dl);
      if (!n) {
        receiver_ok = n.error() == strata::errc::end_of_stream;
        break;
      }
      out.bytes += *n;
    }
    end = clock::now();
    (void)co_await st.close(strata::deadline::after(5s));
  }));
  std::vector<std::byte> data(chunk, std::byte{'r'});
  bool sender_ok = true;
  while (clock::now() - start < duration) {
    auto w = co_await client.write(strata::const_buffer(data), dl);
    if (!w) {
      std::fprintf(stderr, "write: %s\n", w.error().message().c_str());
      sender_ok = false;
      break;
    }
  }
  (void)co_await client.shutdown_write(dl);
  (void)co_await s.join(dl);
  (void)co_await client.close(strata::deadline::after(5s));
  listener->close();
  out.seconds = bench::ns_between(start, end) / 1e9;
  out.ok = sender_ok && receiver_ok && out.seconds > 0;
  co_return out;
}

double mbit(const transfer& x) { return static_cast<double>(x.bytes) * 8 / x.seconds / 1e6; }

}  // namespace

int main(int argc, char** argv) {
  auto opt = bench::parse_options(argc, argv);
  bench::report rep("bench_reliable", opt);
  if (auto why = t::netns_unavailable(); !why.empty()) {
    std::printf("bench_reliable: skipped: %s\n", why.c_str());
    return 0;
  }
  const int rounds = opt.quick ? 1 : 3;
  const auto duration = opt.quick ? 300ms : 3000ms;
  auto* shared = static_cast<shared_results*>(
      ::mmap(nullptr, sizeof(shared_results), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (shared == MAP_FAILED) return 1;

  // The link: 100 Mbit/s, 5 ms each way (RTT 10 ms), a queue of 2x the bandwidth-delay
  // product (~170 packets of 1500 bytes).
  const std::uint64_t rate = 100'000'000;
  const auto delay = 5ms;
  std::string note = "link: 100 Mbit/s, one-way delay 5 ms, queue 170 packets, random loss as named";
  for (double loss : {0.0, 0.01, 0.10}) {
    char name[32];
    std::snprintf(name, sizeof name, "loss_%g%%", loss * 100);
    if (!rep.wanted(name)) continue;
    *shared = shared_results{};
    t::netns_link_options link;
    link.loss = loss;
    link.delay = delay;
    link.rate_bits_per_second = rate;
    link.queue_packets = 170;
    link.seed = 42;
    int rc = t::run_in_netns(
        link,
        [&]() -> int {
          {
            std::ifstream cc("/proc/sys/net/ipv4/tcp_congestion_control");
            std::string algo;
            cc >> algo;
            std::snprintf(shared->default_algorithm, sizeof shared->default_algorithm, "%s", algo.c_str());
          }
          const std::string local = t::netns_local;
          const std::string remote = t::netns_remote;
          const std::string rel = " | reliable(mtu=1472) | bytes";
          const std::string rel_rate = " | reliable(mtu=1472, cc=rate) | bytes";
          for (int r = 0; r < rounds; ++r) {
            for (std::size_t a = 0; a < algorithms.size(); ++a) {
              // The namespace's own sysctl: only this child's sockets see it.
              std::ofstream("/proc/sys/net/ipv4/tcp_congestion_control") << algorithms[a] << "\n";
              std::ifstream check("/proc/sys/net/ipv4/tcp_congestion_control");
              std::string now;
              check >> now;
              if (now != algorithms[a]) {
                std::fprintf(stderr, "bench_reliable: cannot select tcp %s here\n", algorithms[a]);
                return 2;
              }
              auto x =
                  strata::run(measure("tcp-listen:" + local + ":0", "tcp:" + remote + ":PORT", duration));
              if (!x.ok) return 1;
              shared->tcp[a][r] = mbit(x);
            }
            auto b = strata::run(
                measure("udp-listen:" + local + ":0" + rel, "udp:" + remote + ":PORT" + rel, duration));
            if (!b.ok) return 1;
            shared->reliable[r] = mbit(b);
            auto c = strata::run(measure("udp-listen:" + local + ":0" + rel_rate,
                                         "udp:" + remote + ":PORT" + rel_rate, duration));
            if (!c.ok) return 1;
            shared->reliable_rate[r] = mbit(c);
            shared->rounds = r + 1;
          }
          shared->udp_rcvbuf_errors = udp_rcvbuf_errors();
          return 0;
        },
        std::chrono::seconds(60 + 4 * rounds * 4 * (opt.quick ? 1 : 4)),
        [&](const t::netns_link_counters& c) {
          shared->lost = c.lost;
          shared->forwarded = c.forwarded;
          shared->overflow = c.overflow;
          shared->largest = c.largest;
        });
    if (rc != 0) {
      std::fprintf(stderr, "bench_reliable: the run at %g%% loss failed (%d)\n", loss * 100, rc);
      return 1;
    }
    for (std::size_t i = 0; i < 2 * algorithms.size(); ++i) {
      const std::size_t a = i % algorithms.size();
      const bool rate_control = i >= algorithms.size();
      const double* samples = rate_control ? shared->reliable_rate : shared->reliable;
      bench::figure f;
      f.name = std::string(name) + (rate_control ? "_rate_vs_" : "_vs_") + algorithms[a];
      f.unit = "Mbit/s";
      f.higher_is_better = true;
      f.value = bench::summarize(std::vector<double>(samples, samples + shared->rounds));
      f.baseline_name = std::string("tcp ") + algorithms[a] +
                        (std::string(algorithms[a]) == shared->default_algorithm ? " (default)" : "");
      f.baseline = bench::summarize(std::vector<double>(shared->tcp[a], shared->tcp[a] + shared->rounds));
      if (loss == 0.01) {
        f.target_text = ">= 0.8x tcp";
        f.target = 0.8;
        f.target_on_ratio = true;
      }
      rep.add(f);
    }
    std::printf(
        "  %s: link forwarded %llu packets, dropped %llu (loss) and %llu (queue full); udp receive buffer "
        "overflows %llu; largest packet %llu bytes\n",
        name, static_cast<unsigned long long>(shared->forwarded),
        static_cast<unsigned long long>(shared->lost), static_cast<unsigned long long>(shared->overflow),
        static_cast<unsigned long long>(shared->udp_rcvbuf_errors),
        static_cast<unsigned long long>(shared->largest));
  }
  return rep.print(note);
}
