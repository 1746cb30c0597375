// tcp_pingpong: 1-byte TCP ping-pong over 127.0.0.1, round-trip time per exchange.
//
//   strata  client and server each run their own strata::run on their own thread;
//           the client writes 1 byte and read_some()s the echo, the server echoes.
//   raw     the same with two plain threads, non-blocking sockets, TCP_NODELAY and a
//           level-triggered epoll_wait + read + write loop: what a C program would do.
//
// Both pairs stay connected for the whole run and the client alternates rounds between
// them (raw round, strata round, ...), so drift (frequency, other load on the machine)
// hits both alike. Every round trip is one sample: p50/p99 are over single RTTs.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <future>
#include <string>
#include <thread>

#include "bench_common.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"

namespace {

using bench::clock;
using bench::ns_between;
using namespace std::chrono_literals;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

// Both sides read into a buffer of this size, so a 1-byte read is a short read for both.
constexpr std::size_t read_buffer = 64;

// -- raw epoll ---------------------------------------------------------------------------

void set_nodelay_nonblock(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("setsockopt");
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
}

int raw_epoll_for(int fd) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  return ep;
}

// raw_server accepts one connection and echoes until the peer closes.
void raw_server(int listen_fd) {
  int fd = ::accept(listen_fd, nullptr, nullptr);
  if (fd < 0) die("accept");
  ::close(listen_fd);
  set_nodelay_nonblock(fd);
  int ep = raw_epoll_for(fd);
  std::array<char, read_buffer> buf;
  for (;;) {
    epoll_event ev;
    int n = ::epoll_wait(ep, &ev, 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait");
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r == 0) break;
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      break;
    }
    if (::write(fd, buf.data(), static_cast<std::size_t>(r)) != r) die("write");
  }
  ::close(ep);
  ::close(fd);
}

struct raw_client {
  int fd = -1;
  int ep = -1;

  void connect(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect");
    set_nodelay_nonblock(fd);
    ep = raw_epoll_for(fd);
  }
  void round(int count, std::vector<double>* out) {
    std::array<char, read_buffer> buf{'x'};
    for (int i = 0; i < count; ++i) {
      auto t0 = clock::now();
      if (::write(fd, buf.data(), 1) != 1) die("write");
      for (;;) {
        epoll_event ev;
        int n = ::epoll_wait(ep, &ev, 1, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        ssize_t r = ::read(fd, buf.data(), buf.size());
        if (r > 0) break;
        if (r == 0) die("raw server closed");
        if (errno != EAGAIN && errno != EINTR) die("read");
      }
      auto t1 = clock::now();
      if (out) out->push_back(ns_between(t0, t1) / 1000.0);
    }
  }
  void close() {
    ::close(ep);
    ::close(fd);
  }
};

int raw_listener(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || ::listen(fd, 4) < 0) die("bind/listen");
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  port = ntohs(sa.sin_port);
  return fd;
}

// -- strata ------------------------------------------------------------------------------

strata::task<void> strata_server(strata::tcp::listener& l) {
  auto c = co_await l.accept(strata::deadline::after(10s));
  if (!c) die("strata accept");
  std::array<std::byte, read_buffer> buf;
  for (;;) {
    auto n = co_await c->read_some(buf, strata::deadline::never());
    if (!n) break;  // end_of_stream when the client closes
    if (!co_await c->write(strata::const_buffer(buf.data(), *n), strata::deadline::never())) break;
  }
  (void)co_await c->close(strata::deadline::after(1s));
}

strata::task<void> strata_round(strata::tcp::stream& s, int count, std::vector<double>* out) {
  std::array<std::byte, read_buffer> buf{std::byte{'x'}};
  for (int i = 0; i < count; ++i) {
    auto t0 = clock::now();
    if (!co_await s.write(strata::const_buffer(buf.data(), 1), strata::deadline::never()))
      die("strata write");
    auto n = co_await s.read_some(buf, strata::deadline::never());
    if (!n) die("strata read");
    auto t1 = clock::now();
    if (out) out->push_back(ns_between(t0, t1) / 1000.0);
  }
}

struct plan {
  int warmup;  // round trips per side before measuring
  int rounds;  // alternating rounds per side
  int per_round;
};

strata::task<void> client_main(const plan& p, std::uint16_t raw_port, std::uint16_t strata_port,
                               std::vector<double>& raw_rtt, std::vector<double>& strata_rtt) {
  raw_client raw;
  raw.connect(raw_port);
  auto s =
      co_await strata::tcp::connect("127.0.0.1:" + std::to_string(strata_port), strata::deadline::after(10s));
  if (!s) die("strata connect");

  raw.round(p.warmup, nullptr);
  co_await strata_round(*s, p.warmup, nullptr);
  for (int r = 0; r < p.rounds; ++r) {
    // Alternate which side goes first so that neither always follows the other's round.
    if (r % 2 == 0) {
      raw.round(p.per_round, &raw_rtt);
      co_await strata_round(*s, p.per_round, &strata_rtt);
    } else {
      co_await strata_round(*s, p.per_round, &strata_rtt);
      raw.round(p.per_round, &raw_rtt);
    }
  }
  raw.close();
  (void)co_await s->close(strata::deadline::after(1s));
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = bench::parse_options(argc, argv);
  plan p = opt.quick ? plan{500, 4, 500} : plan{2000, 100, 500};  // 50k measured RTTs per side
  bench::report rep("tcp_pingpong", opt);

  std::uint16_t raw_port = 0;
  int raw_listen = raw_listener(raw_port);
  std::thread raw_thread(raw_server, raw_listen);

  auto listener = strata::tcp::listener::bind("127.0.0.1:0");
  if (!listener) die("strata listen");
  auto strata_port = listener->local_address()->port();
  std::thread strata_thread([&] { strata::run(strata_server(*listener)); });

  std::vector<double> raw_rtt, strata_rtt;
  strata::run(client_main(p, raw_port, strata_port, raw_rtt, strata_rtt));
  raw_thread.join();
  strata_thread.join();

  bench::figure f;
  f.name = "rtt_1byte";
  f.unit = "us";
  f.value = bench::summarize(strata_rtt);
  f.baseline_name = "raw_epoll";
  f.baseline = bench::summarize(raw_rtt);
  f.target_text = "ratio p50 <= 1.05";
  f.target = 1.05;
  f.target_on_ratio = true;
  rep.add(f);

  return rep.print();
}
