// mux: bulk transfer over N concurrent streams of one TCP connection (mux) against N TCP
// connections (baseline), N = 1, 10, 100, on 127.0.0.1.
//
//   mux   one tcp connection, a mux::session on each end; the client opens N streams and
//         writes `per_stream` bytes on each (64 KiB writes), then FIN; the server accepts
//         them and reads every stream to its end.
//   tcp   N tcp connections (strata::tcp::stream), the same writes and reads.
//
// Both ends run on one thread and one event loop, as do both variants, so the figure is
// the cost of the mux layer (frames, windows, copies) against the kernel doing the same
// demultiplexing. Rounds alternate tcp, mux, tcp, ...; a sample is MB/s from the first
// write to the last byte read. Target: mux >= 0.9x tcp for 100 streams.
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "strata/adapt/mux.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"

namespace {

using bench::clock;
using bench::ns_between;
using namespace std::chrono_literals;

constexpr std::size_t chunk = 64 * 1024;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "bench_mux: %s failed\n", what);
  std::exit(1);
}

template <class S>
strata::task<void> send_all(S s, std::size_t bytes, int& done) {
  std::vector<std::byte> buf(chunk, std::byte{'m'});
  auto dl = strata::deadline::after(60s);
  for (std::size_t sent = 0; sent < bytes; sent += chunk) {
    std::size_t n = std::min(chunk, bytes - sent);
    if (!co_await s.write(strata::const_buffer(buf.data(), n), dl)) die("write");
  }
  if (!co_await s.shutdown_write(dl)) die("shutdown_write");
  (void)co_await s.close(dl);
  ++done;
}

template <class S>
strata::task<void> read_all(S s, std::size_t bytes, int& done) {
  std::vector<std::byte> buf(chunk);
  auto dl = strata::deadline::after(60s);
  std::size_t got = 0;
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) {
      if (n.error() != strata::errc::end_of_stream) die("read");
      break;
    }
    got += *n;
  }
  if (got != bytes) die("byte count");
  (void)co_await s.close(dl);
  ++done;
}

strata::task<void> tcp_round(strata::tcp::listener& l, std::uint16_t port, int streams,
                             std::size_t per_stream, double& seconds) {
  auto dl = strata::deadline::after(60s);
  std::vector<strata::tcp::stream> clients, servers;
  for (int i = 0; i < streams; ++i) {
    auto c = co_await strata::tcp::connect("127.0.0.1:" + std::to_string(port), dl);
    if (!c) die("connect");
    auto s = co_await l.accept(dl);
    if (!s) die("accept");
    clients.push_back(std::move(*c));
    servers.push_back(std::move(*s));
  }
  int done = 0;
  strata::scope sc;
  auto t0 = clock::now();
  for (int i = 0; i < streams; ++i) {
    sc.spawn(read_all(std::move(servers[static_cast<std::size_t>(i)]), per_stream, done));
    sc.spawn(send_all(std::move(clients[static_cast<std::size_t>(i)]), per_stream, done));
  }
  (void)co_await sc.join(dl);
  seconds = ns_between(t0, clock::now()) / 1e9;
  if (done != 2 * streams) die("tcp round");
}

strata::task<void> close_session(strata::mux::session& s) {
  (void)co_await s.close(strata::deadline::after(10s));
}

strata::task<void> mux_round(strata::tcp::listener& l, std::uint16_t port, int streams,
                             std::size_t per_stream, double& seconds) {
  auto dl = strata::deadline::after(60s);
  auto c = co_await strata::tcp::connect("127.0.0.1:" + std::to_string(port), dl);
  if (!c) die("connect");
  auto s = co_await l.accept(dl);
  if (!s) die("accept");
  strata::mux::session client(strata::any_stream(std::move(*c)), strata::mux::role::client);
  strata::mux::session server(strata::any_stream(std::move(*s)), strata::mux::role::server);
  int done = 0;
  strata::scope sc;
  auto t0 = clock::now();
  for (int i = 0; i < streams; ++i) {
    auto out = co_await client.open(dl);
    if (!out) die("open");
    sc.spawn(send_all(std::move(*out), per_stream, done));
  }
  for (int i = 0; i < streams; ++i) {
    auto in = co_await server.accept(dl);
    if (!in) die("mux accept");
    sc.spawn(read_all(std::move(*in), per_stream, done));
  }
  (void)co_await sc.join(dl);
  seconds = ns_between(t0, clock::now()) / 1e9;
  if (done != 2 * streams) die("mux round");
  // Both at once: a transport's close waits for the peer's end.
  strata::scope closing;
  closing.spawn(close_session(client));
  closing.spawn(close_session(server));
  (void)co_await closing.join(dl);
}

strata::task<void> measure(strata::tcp::listener& l, std::uint16_t port, int streams, std::size_t total,
                           int rounds, std::vector<double>& tcp_mbs, std::vector<double>& mux_mbs) {
  std::size_t per_stream = total / static_cast<std::size_t>(streams);
  double mb = static_cast<double>(per_stream * static_cast<std::size_t>(streams)) / 1e6;
  for (int r = 0; r < rounds; ++r) {
    double t = 0;
    if (r % 2 == 0) {
      co_await tcp_round(l, port, streams, per_stream, t);
      tcp_mbs.push_back(mb / t);
      co_await mux_round(l, port, streams, per_stream, t);
      mux_mbs.push_back(mb / t);
    } else {
      co_await mux_round(l, port, streams, per_stream, t);
      mux_mbs.push_back(mb / t);
      co_await tcp_round(l, port, streams, per_stream, t);
      tcp_mbs.push_back(mb / t);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = bench::parse_options(argc, argv);
  std::size_t total = opt.quick ? (4u << 20) : (64u << 20);
  int rounds = opt.quick ? 2 : 8;
  bench::report rep("mux", opt);
  auto listener = strata::tcp::listener::bind("127.0.0.1:0");
  if (!listener) die("listen");
  auto port = listener->local_address()->port();
  for (int streams : {1, 10, 100}) {
    std::string name = "mux_" + std::to_string(streams) + "_streams";
    if (!rep.wanted(name)) continue;
    std::vector<double> tcp_mbs, mux_mbs;
    strata::run(measure(*listener, port, streams, total, rounds, tcp_mbs, mux_mbs));
    bench::figure f;
    f.name = name;
    f.unit = "MB/s";
    f.higher_is_better = true;
    f.value = bench::summarize(mux_mbs);
    f.baseline_name = "tcp_" + std::to_string(streams) + "_conns";
    f.baseline = bench::summarize(tcp_mbs);
    if (streams == 100) {
      f.target_text = ">= 0.9x tcp";
      f.target = 0.9;
      f.target_on_ratio = true;
    }
    rep.add(f);
  }
  return rep.print();
}
