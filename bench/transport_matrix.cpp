// transport_matrix: one program, one run — RTT p50/p99 for 1 B, 64 B, 4 KiB and 64 KiB and
// one-way throughput (4 KiB messages) for every transport of issue 3, each strata transport
// next to a raw loop over the same kind of kernel object measured in the same run; plus
// the shm broadcast producer rate with 1, 2, 4 and 8 subscribers.
//
//   strata  each side runs its own strata::run on its own thread.
//   raw     two plain threads making blocking syscalls (write/read, send/recv,
//           mq_send/mq_receive) on the same kind of object (socketpair, pipe(2), mq_open,
//           a pair of connected UDP sockets, a loopback TCP connection).
//   epoll   the 1-byte RTT is also measured against the raw loop made evented
//           (non-blocking, epoll_wait on EAGAIN): what any event loop must do.
//   shm     has no kernel object on its data path: its baseline is two threads spinning
//           on one shared cache line (the hardware limit of any shared-memory RTT), and
//           in default (sleeping) mode it is compared with strata's Unix stream RTT.
//
// The client alternates raw and strata rounds (and which goes first) so that drift and
// the other load on this shared machine hit both alike. An echo server answers every
// message (stream: whatever it read); the sink server of the throughput phase answers one
// byte per group of messages (UDP: per 8 messages, so loopback UDP never overflows the
// receive buffer and loses nothing). A lost, short or corrupt message makes the program
// exit 1; a slow figure never does.
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/mq.hpp"
#include "strata/transport/pipe.hpp"
#include "strata/transport/shm.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/udp.hpp"
#include "strata/transport/unix.hpp"
#include "strata/transport/unix_dgram.hpp"
#include "transport/shm_ring.hpp"  // src/: the ring cores core_spin measures

namespace {

using bench::clock;
using bench::ns_between;
using namespace std::chrono_literals;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "transport_matrix: %s (errno %d: %s)\n", what.c_str(), errno, std::strerror(errno));
  std::exit(1);
}
[[noreturn]] void die_ec(const std::string& what, std::error_code ec) {
  std::fprintf(stderr, "transport_matrix: %s: %s\n", what.c_str(), ec.message().c_str());
  std::exit(1);
}

constexpr std::size_t rtt_sizes[] = {1, 64, 4096, 65536};
constexpr std::size_t tput_size = 4096;
constexpr std::size_t max_buf = 65536 + 64;
// A client wait longer than this means a message was lost (loopback never takes seconds).
constexpr auto lost_after = 10s;

struct plan {
  int warmup;        // round trips per side and size before measuring
  int rounds;        // alternating rounds per side and size
  int per_round;     // round trips per round
  int tput_samples;  // per side; one sample moves tput_groups * tput_per_group messages
  int bcast_batches;
  int bcast_msgs;   // messages per batch (one sample)
  double budget_s;  // per transport, size and phase: stop measuring rounds after this
                    // (a spinning side that the scheduler preempts takes ms per RTT)
};

std::string size_name(std::size_t n) {
  if (n >= 1024) return std::to_string(n / 1024) + "KiB";
  return std::to_string(n) + "B";
}

std::vector<std::string> notes;  // n/a cells and skipped rows, printed after the table

// -- thread placement ----------------------------------------------------------------------

// Where the client and server threads of an RTT run. A ping-pong's latency depends on it
// more than on any code path: across two CPUs each message pays a cross-CPU wake-up (on
// a VM, an idle vCPU's exit too: 40-70 us here), on one CPU a context switch. Unpinned,
// the scheduler picks per thread and the raw and strata pairs can land differently, so
// figures of one run differed by 4x for reasons that are not the code. Every comparison
// is therefore made with both sides in the same placement:
//   auto (default): kernel transports and their raw loops on one CPU (what is measured
//         is the code path: system calls and switches); shm, which spins for its peer,
//         and the cache-line limit on two CPUs, and the Unix stream it is compared with
//         is measured again on two CPUs for that comparison;
//   same / split / none: everything on one CPU / on two CPUs / where the scheduler puts it
//         (spinning pairs always split: one CPU cannot spin for itself).
enum class pin_mode { automatic, none, split, same };
// Atomic: a server thread may give up pinning (pinning_failed) while the client reads them.
std::atomic<pin_mode> requested{pin_mode::automatic};
std::atomic<pin_mode> placement{pin_mode::same};  // of the transport being measured

// placement_for resolves the requested mode for one transport.
pin_mode placement_for(bool cross_cpu) {
  if (requested == pin_mode::automatic) return cross_cpu ? pin_mode::split : pin_mode::same;
  return requested;
}
const char* placement_name(pin_mode m) {
  switch (m) {
    case pin_mode::split:
      return "split";
    case pin_mode::same:
      return "same";
    case pin_mode::none:
      return "none";
    case pin_mode::automatic:
      break;
  }
  return "auto";
}

// The two CPUs used: the first two this process may run on (a CI container's cpuset need
// not start at 0). Fewer than two: no pinning at all (a note says so).
cpu_set_t allowed_cpus;
int cpu_a = -1, cpu_b = -1;

void find_cpus() {
  CPU_ZERO(&allowed_cpus);
  if (::sched_getaffinity(0, sizeof allowed_cpus, &allowed_cpus) != 0) return;
  for (int c = 0; c < CPU_SETSIZE && cpu_b < 0; ++c) {
    if (!CPU_ISSET(c, &allowed_cpus)) continue;
    (cpu_a < 0 ? cpu_a : cpu_b) = c;
  }
}

// pinning_failed gives up pinning for the rest of the run (a container may refuse it);
// the figures are then taken wherever the scheduler puts the threads, and a note says so.
void pinning_failed(int err) {
  static std::atomic<bool> said{false};
  if (!said.exchange(true))
    std::fprintf(stderr, "transport_matrix: pthread_setaffinity_np: %s; not pinning\n", std::strerror(err));
  requested = pin_mode::none;
  placement = pin_mode::none;
}

void pin_to(int cpu) {
  if (placement == pin_mode::none || cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (int err = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set)) pinning_failed(err);
}
// The client (the measuring thread) runs on the first CPU; servers on the second (split)
// or the first (same). Two spinning threads never share a CPU: they always split.
void pin_client() { pin_to(cpu_a); }
void pin_server(bool spinning = false) { pin_to(placement == pin_mode::split || spinning ? cpu_b : cpu_a); }
// unpin lets the calling thread (and the threads it starts) run where it could before.
void unpin() {
  if (placement == pin_mode::none || cpu_a < 0) return;
  if (int err = ::pthread_setaffinity_np(::pthread_self(), sizeof allowed_cpus, &allowed_cpus))
    pinning_failed(err);
}

// -- raw ends ------------------------------------------------------------------------------

enum class raw_kind { stream, dgram, mq };

struct raw_end {
  raw_kind kind = raw_kind::stream;
  int rd = -1;
  int wr = -1;
  int ep = -1;  // >= 0: evented (non-blocking descriptors, epoll on rd): see make_evented

  /// make_evented switches to what an event loop does: non-blocking descriptors, try the
  /// call first and epoll_wait only when it would block.
  void make_evented() {
    for (int fd : {rd, wr}) {
      if (kind == raw_kind::mq) {
        mq_attr a{};
        a.mq_flags = O_NONBLOCK;
        if (::mq_setattr(fd, &a, nullptr) < 0) die("mq_setattr");
      } else if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        die("fcntl");
      }
    }
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = rd;
    if (ep < 0 || ::epoll_ctl(ep, EPOLL_CTL_ADD, rd, &ev) < 0) die("epoll");
  }
  void wait_in() const {
    epoll_event ev;
    int n = ::epoll_wait(ep, &ev, 1, 10000);
    if (n == 0) die("raw epoll: nothing for 10 s (lost message?)");
    if (n < 0 && errno != EINTR) die("epoll_wait");
  }
  void wait_out() const {
    pollfd pfd{wr, POLLOUT, 0};
    if (::poll(&pfd, 1, 10000) == 0) die("raw poll out: stuck for 10 s");
  }

  void send(const std::byte* p, std::size_t n) const {
    if (kind == raw_kind::mq) {
      while (::mq_send(wr, reinterpret_cast<const char*>(p), n, 0) != 0) {
        if (errno == EAGAIN && ep >= 0) {
          wait_out();
        } else if (errno != EINTR) {
          die("raw mq_send");
        }
      }
    } else if (kind == raw_kind::dgram) {
      for (;;) {
        ssize_t w = ::write(wr, p, n);
        if (w == static_cast<ssize_t>(n)) break;
        if (w < 0 && errno == EAGAIN && ep >= 0) {
          wait_out();
        } else if (w >= 0 || errno != EINTR) {
          die("raw send");
        }
      }
    } else {
      while (n > 0) {
        ssize_t w = ::write(wr, p, n);
        if (w < 0 && errno == EAGAIN && ep >= 0) {
          wait_out();
          continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("raw write");
        p += w;
        n -= static_cast<std::size_t>(w);
      }
    }
  }
  // recv_some: stream: up to cap bytes (0 at end); message: one message (mq, dgram).
  ssize_t recv_some(std::byte* p, std::size_t cap) const {
    for (;;) {
      ssize_t r = kind == raw_kind::mq ? ::mq_receive(rd, reinterpret_cast<char*>(p), cap, nullptr)
                                       : ::read(rd, p, cap);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN && ep >= 0) {
        wait_in();
        continue;
      }
      return r;
    }
  }
  // stop tells the server to finish: end of stream, or an empty message.
  void stop() const {
    if (kind == raw_kind::stream) {
      if (::shutdown(wr, SHUT_WR) < 0) ::close(wr);  // a pipe is no socket: close ends it
    } else {
      std::byte none{};
      send(&none, 0);
    }
  }
};

// raw_serve echoes (or, sink, acks each group) until stopped. Runs on its own thread.
void raw_serve(raw_end e, bool sink, std::size_t group) {
  std::vector<std::byte> buf(max_buf);
  std::size_t count = 0;
  std::byte ack{'a'};
  for (;;) {
    ssize_t r = e.recv_some(buf.data(), buf.size());
    if (r < 0) die("raw server recv");
    if (r == 0) break;
    if (!sink) {
      e.send(buf.data(), static_cast<std::size_t>(r));
      continue;
    }
    count += e.kind == raw_kind::stream ? static_cast<std::size_t>(r) : 1;
    while (count >= group) {
      count -= group;
      e.send(&ack, 1);
    }
  }
}

void check_echo(const std::byte* in, std::size_t got, std::size_t n, std::byte tag, const char* who) {
  if (got != n || in[0] != tag || in[n - 1] != tag) {
    std::fprintf(stderr, "transport_matrix: %s: corrupt echo (%zu of %zu bytes)\n", who, got, n);
    std::exit(1);
  }
}

void raw_rtt(const raw_end& e, std::vector<std::byte>& out, std::vector<std::byte>& in, std::size_t n,
             int count, std::vector<double>* samples, clock::time_point stop_at = clock::time_point::max()) {
  for (int i = 0; i < count && clock::now() < stop_at; ++i) {
    auto tag = static_cast<std::byte>(i & 0x7f);
    out[0] = out[n - 1] = tag;
    auto t0 = clock::now();
    e.send(out.data(), n);
    std::size_t got = 0;
    if (e.kind == raw_kind::stream) {
      while (got < n) {
        ssize_t r = e.recv_some(in.data() + got, n - got);
        if (r <= 0) die("raw client read");
        got += static_cast<std::size_t>(r);
      }
    } else {
      ssize_t r = e.recv_some(in.data(), in.size());
      if (r < 0) die("raw client recv (lost message?)");
      got = static_cast<std::size_t>(r);
    }
    auto t1 = clock::now();
    check_echo(in.data(), got, n, tag, "raw");
    if (samples) samples->push_back(ns_between(t0, t1) / 1000.0);
  }
}

void raw_tput(const raw_end& e, std::vector<std::byte>& out, std::vector<std::byte>& in, int groups,
              int per_group, std::vector<double>* samples) {
  auto t0 = clock::now();
  for (int g = 0; g < groups; ++g) {
    for (int m = 0; m < per_group; ++m) e.send(out.data(), tput_size);
    if (e.recv_some(in.data(), in.size()) != 1) die("raw ack (lost message?)");
  }
  auto t1 = clock::now();
  double mib = static_cast<double>(groups) * per_group * tput_size / (1024.0 * 1024.0);
  if (samples) samples->push_back(mib / (ns_between(t0, t1) / 1e9));
}

// -- strata ends ---------------------------------------------------------------------------

template <class S>
constexpr bool is_stream = requires(S& s, strata::mutable_buffer b) {
  s.read_some(b, strata::deadline::never());
};

// s_send and s_recv hand back the transport's own task (no coroutine of their own), so
// the harness adds no frame to what a user's code would await.
template <class S>
strata::task<strata::result<void>> s_send(S& s, const std::byte* p, std::size_t n, strata::deadline dl) {
  if constexpr (is_stream<S>) {
    return s.write(strata::const_buffer(p, n), dl);
  } else {
    return s.send(strata::const_buffer(p, n), dl);
  }
}

template <class S>
strata::task<strata::result<std::size_t>> s_recv(S& s, std::byte* p, std::size_t cap, strata::deadline dl) {
  if constexpr (is_stream<S>) {
    return s.read_some(strata::mutable_buffer(p, cap), dl);
  } else {
    return s.recv(strata::mutable_buffer(p, cap), dl);
  }
}

template <class S>
strata::task<void> s_serve(S& s, bool sink, std::size_t group) {
  std::vector<std::byte> buf(max_buf);
  std::size_t count = 0;
  std::byte ack{'a'};
  for (;;) {
    auto r = co_await s_recv(s, buf.data(), buf.size(), strata::deadline::never());
    if (!r) {
      if constexpr (!is_stream<S>) die_ec("strata server recv", r.error());
      break;  // stream: end_of_stream when the client stops
    }
    if (*r == 0) break;  // message transports: the empty stop message
    if (!sink) {
      if (auto w = co_await s_send(s, buf.data(), *r, strata::deadline::never()); !w)
        die_ec("strata server send", w.error());
      continue;
    }
    count += is_stream<S> ? *r : 1;
    while (count >= group) {
      count -= group;
      if (auto w = co_await s_send(s, &ack, 1, strata::deadline::never()); !w)
        die_ec("strata ack", w.error());
    }
  }
  (void)co_await s.close(strata::deadline::after(1s));
}

template <class S>
strata::task<void> s_rtt(S& s, std::vector<std::byte>& out, std::vector<std::byte>& in, std::size_t n,
                         int count, std::vector<double>* samples,
                         clock::time_point stop_at = clock::time_point::max()) {
  for (int i = 0; i < count && clock::now() < stop_at; ++i) {
    auto tag = static_cast<std::byte>(i & 0x7f);
    out[0] = out[n - 1] = tag;
    auto dl = strata::deadline::after(lost_after);
    auto t0 = clock::now();
    if (auto w = co_await s_send(s, out.data(), n, dl); !w) die_ec("strata send", w.error());
    std::size_t got = 0;
    if constexpr (is_stream<S>) {
      while (got < n) {
        auto r = co_await s.read_some(strata::mutable_buffer(in.data() + got, n - got), dl);
        if (!r) die_ec("strata read", r.error());
        got += *r;
      }
    } else {
      auto r = co_await s.recv(strata::mutable_buffer(in.data(), in.size()), dl);
      if (!r) die_ec("strata recv (lost message?)", r.error());
      got = *r;
    }
    auto t1 = clock::now();
    check_echo(in.data(), got, n, tag, "strata");
    if (samples) samples->push_back(ns_between(t0, t1) / 1000.0);
  }
}

template <class S>
strata::task<void> s_tput(S& s, std::vector<std::byte>& out, std::vector<std::byte>& in, int groups,
                          int per_group, std::vector<double>* samples) {
  auto t0 = clock::now();
  for (int g = 0; g < groups; ++g) {
    auto dl = strata::deadline::after(lost_after);
    for (int m = 0; m < per_group; ++m) {
      if (auto w = co_await s_send(s, out.data(), tput_size, dl); !w) die_ec("strata send", w.error());
    }
    auto r = co_await s_recv(s, in.data(), in.size(), dl);
    if (!r || *r != 1) die_ec("strata ack (lost message?)", r.error());
  }
  auto t1 = clock::now();
  double mib = static_cast<double>(groups) * per_group * tput_size / (1024.0 * 1024.0);
  if (samples) samples->push_back(mib / (ns_between(t0, t1) / 1e9));
}

template <class S>
strata::task<void> s_stop(S& s) {
  if constexpr (is_stream<S>) {
    (void)co_await s.shutdown_write(strata::deadline::after(1s));
    std::byte b[16];
    (void)co_await s.read_some(strata::mutable_buffer(b, sizeof b), strata::deadline::after(2s));
  } else {
    (void)co_await s.send(strata::const_buffer(), strata::deadline::after(1s));
  }
  (void)co_await s.close(strata::deadline::after(1s));
}

// -- one transport -------------------------------------------------------------------------

/// transport describes one row group: how to make its ends for a phase (echo or sink).
template <class S>
struct transport {
  std::string name;
  std::size_t max_message = 0;  // 0: any size
  std::string max_reason;
  bool kernel = true;        // a raw loop exists: compare with it
  bool spinning = false;     // the strata ends spin (never share a CPU)
  bool cross_cpu = false;    // --pin auto puts the two ends on two CPUs
  int tput_per_group = 256;  // messages per ack
  int tput_groups = 1;
  /// make_raw returns {client end, server end} (only when kernel).
  std::function<std::pair<raw_end, raw_end>()> make_raw;
  /// server_end runs on the server thread's loop: bind/accept or hand over a made end;
  /// it sets `ready` once a client may connect.
  std::function<strata::task<strata::result<S>>(int phase, std::atomic<bool>& ready)> server_end;
  std::function<strata::task<strata::result<S>>(int phase)> client_end;
};

struct results {
  std::vector<std::vector<double>> raw_rtt, s_rtt;  // per size
  std::vector<double> ep_rtt;                       // raw evented loop, 1 byte
  std::vector<double> raw_tput, s_tput;
};

template <class S>
strata::task<void> client_phase(transport<S>& t, const plan& p, int phase, const raw_end* raw,
                                const raw_end* ep, results& res) {
  auto c = co_await t.client_end(phase);
  if (!c) die_ec(t.name + " strata connect", c.error());
  std::vector<std::byte> out(max_buf, std::byte{'x'}), in(max_buf);
  if (phase == 0) {
    res.raw_rtt.resize(std::size(rtt_sizes));
    res.s_rtt.resize(std::size(rtt_sizes));
    for (std::size_t i = 0; i < std::size(rtt_sizes); ++i) {
      std::size_t n = rtt_sizes[i];
      if (t.max_message && n > t.max_message) continue;
      const raw_end* evented = i == 0 ? ep : nullptr;  // the evented baseline: 1 byte only
      auto budget = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(p.budget_s));
      auto stop_at = clock::now() + budget / 4;
      for (int w = 0; w < p.warmup && clock::now() < stop_at; w += 50) {
        if (raw) raw_rtt(*raw, out, in, n, 50, nullptr, stop_at);
        if (evented) raw_rtt(*evented, out, in, n, 50, nullptr, stop_at);
        co_await s_rtt(*c, out, in, n, 50, nullptr, stop_at);
      }
      // Each round ends early once the budget is spent, so a preempted spinner cannot
      // stretch the run; the first two rounds may use twice the budget.
      stop_at = clock::now() + budget;
      for (int r = 0; r < p.rounds && (r < 2 || clock::now() < stop_at); ++r) {
        auto until = r < 2 ? stop_at + budget : stop_at;
        if (r % 2 == 0 && raw) raw_rtt(*raw, out, in, n, p.per_round, &res.raw_rtt[i], until);
        if (r % 2 == 0 && evented) raw_rtt(*evented, out, in, n, p.per_round, &res.ep_rtt, until);
        co_await s_rtt(*c, out, in, n, p.per_round, &res.s_rtt[i], until);
        if (r % 2 == 1 && evented) raw_rtt(*evented, out, in, n, p.per_round, &res.ep_rtt, until);
        if (r % 2 == 1 && raw) raw_rtt(*raw, out, in, n, p.per_round, &res.raw_rtt[i], until);
      }
    }
  } else {
    if (raw) raw_tput(*raw, out, in, t.tput_groups, t.tput_per_group, nullptr);
    co_await s_tput(*c, out, in, t.tput_groups, t.tput_per_group, nullptr);
    auto start = clock::now();
    for (int r = 0; r < p.tput_samples && (r < 2 || ns_between(start, clock::now()) / 1e9 < p.budget_s);
         ++r) {
      if (r % 2 == 0 && raw) raw_tput(*raw, out, in, t.tput_groups, t.tput_per_group, &res.raw_tput);
      co_await s_tput(*c, out, in, t.tput_groups, t.tput_per_group, &res.s_tput);
      if (r % 2 == 1 && raw) raw_tput(*raw, out, in, t.tput_groups, t.tput_per_group, &res.raw_tput);
    }
  }
  if (raw) raw->stop();
  if (ep) ep->stop();
  co_await s_stop(*c);
}

template <class S>
results run_transport(transport<S>& t, const plan& p) {
  results res;
  placement = placement_for(t.cross_cpu);
  pin_client();
  for (int phase = 0; phase < 2; ++phase) {
    bool sink = phase == 1;
    std::size_t group = static_cast<std::size_t>(t.tput_per_group);
    std::size_t stream_group = group * tput_size;
    std::thread raw_thread, ep_thread;
    raw_end raw_client{}, ep_client{};
    if (t.kernel) {
      auto [cli, srv] = t.make_raw();
      raw_client = cli;
      raw_thread = std::thread([srv = srv, sink, group, stream_group] {
        pin_server();
        raw_serve(srv, sink, srv.kind == raw_kind::stream ? stream_group : group);
      });
      if (!sink) {
        auto [ecli, esrv] = t.make_raw();
        ecli.make_evented();
        esrv.make_evented();
        ep_client = ecli;
        ep_thread = std::thread([esrv = esrv, group] {
          pin_server();
          raw_serve(esrv, false, group);
        });
      }
    }
    std::atomic<bool> ready{false};
    std::thread strata_thread([&] {
      pin_server(t.spinning);
      strata::run([&]() -> strata::task<void> {
        auto s = co_await t.server_end(phase, ready);
        if (!s) die_ec(t.name + " strata server end", s.error());
        co_await s_serve(*s, sink, is_stream<S> ? stream_group : group);
      }());
    });
    while (!ready.load()) std::this_thread::sleep_for(1ms);
    strata::run(client_phase(t, p, phase, t.kernel ? &raw_client : nullptr,
                             t.kernel && !sink ? &ep_client : nullptr, res));
    strata_thread.join();
    if (t.kernel) {
      raw_thread.join();
      ::close(raw_client.rd);
      if (raw_client.wr != raw_client.rd) ::close(raw_client.wr);
    }
    if (ep_thread.joinable()) {
      ep_thread.join();
      ::close(ep_client.rd);
      if (ep_client.wr != ep_client.rd) ::close(ep_client.wr);
      ::close(ep_client.ep);
    }
  }
  unpin();
  return res;
}

template <class S>
void report_transport(bench::report& rep, transport<S>& t, const results& res) {
  for (std::size_t i = 0; i < std::size(rtt_sizes); ++i) {
    std::size_t n = rtt_sizes[i];
    std::string fig = t.name + ".rtt_" + size_name(n);
    if (t.max_message && n > t.max_message) {
      notes.push_back(fig + ": n/a (" + t.max_reason + ")");
      continue;
    }
    bench::figure f;
    f.name = fig;
    f.unit = "us";
    f.value = bench::summarize(res.s_rtt[i]);
    if (t.kernel) {
      f.baseline_name = "raw_" + t.name;
      f.baseline = bench::summarize(res.raw_rtt[i]);
      f.target_text = "ratio p50 <= 1.1";
      f.target = 1.1;
      f.target_on_ratio = true;
    }
    rep.add(f);
    if (i == 0 && t.kernel) {
      // The same strata figure against an evented raw loop (non-blocking + epoll, as any
      // event loop must do): how much of the gap is the event-loop pattern itself.
      f.name = fig + "_vs_epoll";
      f.baseline_name = "raw_epoll_" + t.name;
      f.baseline = bench::summarize(res.ep_rtt);
      rep.add(f);
    }
  }
  bench::figure f;
  f.name = t.name + ".tput_4KiB";
  f.unit = "MiB/s";
  f.higher_is_better = true;
  f.value = bench::summarize(res.s_tput);
  if (t.kernel) {
    f.baseline_name = "raw_" + t.name;
    f.baseline = bench::summarize(res.raw_tput);
  }
  rep.add(f);
}

template <class S>
results bench_transport(bench::report& rep, const plan& p, transport<S> t) {
  if (!rep.wanted(t.name)) return {};
  std::fprintf(stderr, "  %s ...\n", t.name.c_str());
  auto res = run_transport(t, p);
  report_transport(rep, t, res);
  return res;
}

// -- set-ups -------------------------------------------------------------------------------

std::string unique_name(const char* what) {
  return std::string("strata-bench-") + std::to_string(::getpid()) + "-" + what;
}

std::pair<raw_end, raw_end> raw_socketpair(int type) {
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  auto k = type == SOCK_STREAM ? raw_kind::stream : raw_kind::dgram;
  return {raw_end{k, sv[0], sv[0]}, raw_end{k, sv[1], sv[1]}};
}

std::pair<raw_end, raw_end> raw_tcp() {
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || ::listen(l, 4) < 0) die("raw tcp listen");
  socklen_t len = sizeof sa;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &len);
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("raw tcp connect");
  int s = ::accept(l, nullptr, nullptr);
  if (s < 0) die("raw tcp accept");
  ::close(l);
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return {raw_end{raw_kind::stream, c, c}, raw_end{raw_kind::stream, s, s}};
}

std::pair<raw_end, raw_end> raw_udp() {
  int a = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int b = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{}, sb{};
  sa.sin_family = sb.sin_family = AF_INET;
  sa.sin_addr.s_addr = sb.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (::bind(a, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 ||
      ::bind(b, reinterpret_cast<sockaddr*>(&sb), sizeof sb) < 0)
    die("raw udp bind");
  ::getsockname(a, reinterpret_cast<sockaddr*>(&sa), &len);
  len = sizeof sb;
  ::getsockname(b, reinterpret_cast<sockaddr*>(&sb), &len);
  if (::connect(a, reinterpret_cast<sockaddr*>(&sb), sizeof sb) < 0 ||
      ::connect(b, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
    die("raw udp connect");
  timeval tv{10, 0};  // a lost datagram fails the run instead of hanging it
  ::setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return {raw_end{raw_kind::dgram, a, a}, raw_end{raw_kind::dgram, b, b}};
}

std::pair<raw_end, raw_end> raw_pipes() {
  int ab[2], ba[2];
  if (::pipe2(ab, O_CLOEXEC) < 0 || ::pipe2(ba, O_CLOEXEC) < 0) die("pipe2");
  return {raw_end{raw_kind::stream, ba[0], ab[1]}, raw_end{raw_kind::stream, ab[0], ba[1]}};
}

std::pair<raw_end, raw_end> raw_mq() {
  static int seq = 0;
  std::string a = "/" + unique_name("rawa") + std::to_string(seq),
              b = "/" + unique_name("rawb") + std::to_string(seq);
  ++seq;
  mq_attr attr{};
  attr.mq_maxmsg = 10;
  attr.mq_msgsize = 8192;
  mqd_t qa = ::mq_open(a.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &attr);
  mqd_t qb = ::mq_open(b.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &attr);
  int err = errno;
  // Unlink first: a queue must not outlive the program when the other open failed.
  if (qa >= 0) ::mq_unlink(a.c_str());
  if (qb >= 0) ::mq_unlink(b.c_str());
  errno = err;
  if (qa < 0 || qb < 0) die("raw mq_open");
  // Both ends use both descriptors (one process): client sends on a, receives on b.
  int qa2 = ::dup(qa), qb2 = ::dup(qb);
  return {raw_end{raw_kind::mq, qb, qa}, raw_end{raw_kind::mq, qa2, qb2}};
}

// Pairs made on the main thread are handed to the two loops (fd-based ends register with
// the loop of the thread that first waits on them).
template <class S>
struct pair_holder {
  std::vector<S> server, client;  // index: phase
};

template <class S>
void pair_ends(transport<S>& t, std::shared_ptr<pair_holder<S>> h) {
  t.server_end = [h](int phase, std::atomic<bool>& ready) -> strata::task<strata::result<S>> {
    ready = true;
    co_return std::move(h->server[static_cast<std::size_t>(phase)]);
  };
  t.client_end = [h](int phase) -> strata::task<strata::result<S>> {
    co_return std::move(h->client[static_cast<std::size_t>(phase)]);
  };
}

// -- cache-line spin limit -----------------------------------------------------------------

struct alignas(64) spin_line {
  std::atomic<std::uint64_t> v{0};
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// spin_pair measures round trips between this thread and a spinning server thread on
// another CPU: `serve(stop)` runs on the server until `stop` is set, `round_trip()` is
// one timed round trip on this thread.
template <class Serve, class RoundTrip>
std::vector<double> spin_pair(const plan& p, Serve serve, RoundTrip round_trip) {
  std::atomic<bool> stop{false};
  placement = placement_for(true);
  pin_client();
  std::thread server([&] {
    pin_server(true);
    serve(stop);
  });
  std::vector<double> samples;
  int total = p.warmup + p.rounds * p.per_round;
  auto start = clock::now();
  for (int i = 0; i < total && (i < 2 * p.warmup || ns_between(start, clock::now()) / 1e9 < p.budget_s);
       ++i) {
    auto t0 = clock::now();
    round_trip();
    auto t1 = clock::now();
    if (i >= p.warmup) samples.push_back(ns_between(t0, t1) / 1000.0);
  }
  stop.store(true, std::memory_order_release);  // the servers poll it between requests
  server.join();
  unpin();
  return samples;
}

// cacheline_spin: one shared cache line bounced between two CPUs, the floor of any
// round trip through shared memory.
std::vector<double> cacheline_spin(const plan& p) {
  spin_line line;
  std::uint64_t seq = 1;
  return spin_pair(
      p,
      [&](std::atomic<bool>& stop) {
        std::uint64_t want = 1;
        while (!stop.load(std::memory_order_relaxed)) {
          if (line.v.load(std::memory_order_acquire) != want) {
            cpu_relax();
            continue;
          }
          line.v.store(want + 1, std::memory_order_release);
          want += 2;
        }
      },
      [&] {
        line.v.store(seq, std::memory_order_release);
        while (line.v.load(std::memory_order_acquire) != seq + 1) cpu_relax();
        seq += 2;
      });
}

// ring_spin: a 1-byte echo through two minimal SPSC rings laid out like strata's (the
// producer's index, the consumer's index and the data each on lines of their own), with
// no event loop, coroutine or validation: the floor of this ring design. Each direction
// moves two lines (index, data) where cacheline_spin moves one.
struct alignas(128) bare_ring {
  alignas(128) std::atomic<std::uint64_t> tail{0};
  alignas(128) std::atomic<std::uint64_t> head{0};
  alignas(128) std::byte data[4096];
};

std::vector<double> ring_spin(const plan& p) {
  auto rings = std::make_unique<std::array<bare_ring, 2>>();
  auto& up = (*rings)[0];
  auto& down = (*rings)[1];
  std::uint64_t sent = 0;
  return spin_pair(
      p,
      [&](std::atomic<bool>& stop) {
        std::uint64_t got = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          if (up.tail.load(std::memory_order_acquire) == got) {
            cpu_relax();
            continue;
          }
          std::byte b = up.data[got & 4095];
          ++got;
          up.head.store(got, std::memory_order_release);
          down.data[(got - 1) & 4095] = b;
          down.tail.store(got, std::memory_order_release);
        }
      },
      [&] {
        up.data[sent & 4095] = std::byte{'x'};
        ++sent;
        up.tail.store(sent, std::memory_order_release);
        while (down.tail.load(std::memory_order_acquire) != sent) cpu_relax();
        if (down.data[(sent - 1) & 4095] != std::byte{'x'}) die("ring_spin: corrupt echo");
        down.head.store(sent, std::memory_order_release);
      });
}

// core_spin: the same echo through strata's own sans-I/O ring core (shm_ring.hpp:
// spsc_reader/spsc_writer with their validation, cached indices and prefetch, both sides
// declared spinning) driven by a plain loop: what the stream adds on top of it is the task
// interface (a coroutine per read and write, the event loop between polls).
std::vector<double> core_spin(const plan& p) {
  auto shape = strata::shm::make_layout(strata::shm::segment_kind::stream, strata::shm::min_ring_bytes, 0,
                                        strata::shm::overflow_policy::block, 0);
  if (!shape) die("core_spin: layout");
  std::size_t bytes =
      (shape->size + strata::shm::line_size - 1) / strata::shm::line_size * strata::shm::line_size;
  std::unique_ptr<std::byte, decltype(&std::free)> mem(
      static_cast<std::byte*>(std::aligned_alloc(strata::shm::line_size, bytes)), &std::free);
  if (!mem) die("core_spin: memory");
  std::memset(mem.get(), 0, bytes);
  auto control = [&](int r) {
    return reinterpret_cast<strata::shm::spsc_control*>(mem.get() + shape->ring[r]);
  };
  auto data = [&](int r) { return mem.get() + shape->ring[r] + sizeof(strata::shm::spsc_control); };
  auto ring_bytes = shape->capacity;
  auto make_side = [&](int rx_ring, int tx_ring) {
    std::pair<strata::shm::spsc_reader, strata::shm::spsc_writer> side{
        strata::shm::spsc_reader(control(rx_ring), data(rx_ring), ring_bytes),
        strata::shm::spsc_writer(control(tx_ring), data(tx_ring), ring_bytes)};
    side.first.declare_spinning();
    side.second.declare_spinning();
    return side;
  };
  auto client = make_side(1, 0);
  auto server = make_side(0, 1);
  // take moves what `rx` holds into `sink`; put publishes `n` bytes on `tx`.
  auto take = [](strata::shm::spsc_reader& rx, std::byte* sink) -> std::size_t {
    auto avail = rx.available();
    if (!avail) die("core_spin: ring state");
    if (*avail == 0) return 0;
    std::size_t n = rx.read(strata::mutable_buffer(sink, 64), *avail);
    (void)rx.writer_needs_wake();
    return n;
  };
  auto put = [](strata::shm::spsc_writer& tx, const std::byte* from, std::size_t n) {
    auto room = tx.space(n);
    if (!room || *room < n) die("core_spin: ring full");
    tx.write(strata::const_buffer(from, n), *room);
    tx.publish();
    (void)tx.reader_needs_wake();
  };
  std::byte out{'x'};
  return spin_pair(
      p,
      [&](std::atomic<bool>& stop) {
        std::byte buf[64];
        while (!stop.load(std::memory_order_relaxed)) {
          std::size_t n = take(server.first, buf);
          if (n == 0) {
            cpu_relax();
            continue;
          }
          put(server.second, buf, n);
        }
      },
      [&] {
        put(client.second, &out, 1);
        std::byte in[64];
        while (take(client.first, in) == 0) cpu_relax();
        if (in[0] != out) die("core_spin: corrupt echo");
      });
}

// -- shm broadcast -------------------------------------------------------------------------

constexpr std::size_t bcast_size = 64;

struct bcast_result {
  std::vector<double> rate;  // producer msg/s per batch
  std::vector<double> cpu;   // producer thread CPU ns per message, per batch
  std::uint64_t lost = 0;
  std::uint64_t received = 0;
};

bcast_result broadcast(const plan& p, int subscribers, int attempt) {
  bcast_result res;
  std::string name = unique_name("bcast") + "-" + std::to_string(subscribers) + "-" + std::to_string(attempt);
  std::atomic<std::uint64_t> lost{0}, received{0};
  std::vector<std::thread> subs;
  // The publisher on one CPU, every subscriber on the other (auto/split): the producer's
  // rate is then its own, not its share of two CPUs among N + 1 threads.
  placement = placement_for(true);
  pin_client();
  strata::run([&]() -> strata::task<void> {
    strata::shm::publish_options po;
    po.policy = strata::shm::overflow_policy::overwrite;
    po.slots = 1024;
    po.max_message = 256;
    auto pub = strata::shm::publisher::bind(name, po);
    if (!pub) die_ec("shm publisher bind", pub.error());
    for (int i = 0; i < subscribers; ++i) {
      subs.emplace_back([&] {
        pin_server(true);
        strata::run([&]() -> strata::task<void> {
          auto s = co_await strata::shm::subscribe(name, strata::deadline::after(10s));
          if (!s) die_ec("shm subscribe (" + std::to_string(subscribers) + " subscribers)", s.error());
          std::vector<std::byte> buf(256);
          for (;;) {
            auto d = co_await s->receive(buf, strata::deadline::after(lost_after));
            if (!d) {
              if (d.error() == strata::errc::end_of_stream) break;
              die_ec("shm subscriber receive", d.error());
            }
            if (d->size != bcast_size || buf[0] != std::byte{'b'}) die("shm broadcast: corrupt message");
            lost += d->lost;
            ++received;
          }
          (void)co_await s->close(strata::deadline::after(1s));
        }());
      });
    }
    // Everyone joins at once; the figure is the producer's rate once all have joined.
    auto wait_dl = strata::deadline::after(10s);
    while (pub->subscribers() < static_cast<std::size_t>(subscribers)) {
      if (wait_dl.expired()) die("shm broadcast: subscribers did not attach");
      co_await strata::sleep_for(1ms);
    }
    std::vector<std::byte> msg(bcast_size, std::byte{'b'});
    for (int b = -1; b < p.bcast_batches; ++b) {  // batch -1 warms up
      auto t0 = clock::now();
      double c0 = bench::thread_cpu_ns();
      for (int i = 0; i < p.bcast_msgs; ++i) {
        if (auto w = co_await pub->send(strata::const_buffer(msg), strata::deadline::after(lost_after)); !w)
          die_ec("shm publisher send", w.error());
      }
      auto t1 = clock::now();
      double c1 = bench::thread_cpu_ns();
      if (b >= 0) {
        res.rate.push_back(p.bcast_msgs / (ns_between(t0, t1) / 1e9));
        res.cpu.push_back((c1 - c0) / p.bcast_msgs);
      }
    }
    (void)co_await pub->shutdown_write(strata::deadline::after(1s));
    for (auto& t : subs) t.join();
    (void)co_await pub->close(strata::deadline::after(1s));
  }());
  unpin();
  res.lost = lost;
  res.received = received;
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  // --pin is this program's own flag; the rest are every benchmark's.
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--pin") && i + 1 < argc) {
      std::string_view mode = argv[++i];
      if (mode == "split") {
        requested = pin_mode::split;
      } else if (mode == "same") {
        requested = pin_mode::same;
      } else if (mode == "none") {
        requested = pin_mode::none;
      } else if (mode == "auto") {
        requested = pin_mode::automatic;
      } else {
        std::fprintf(stderr, "transport_matrix: --pin takes auto, split, same or none, not '%s'\n", argv[i]);
        return 2;
      }
      continue;
    }
    args.push_back(argv[i]);
  }
  auto opt =
      bench::parse_options(static_cast<int>(args.size()), args.data(), " [--pin auto|split|same|none]");
  find_cpus();
  if (requested != pin_mode::none && cpu_b < 0) {
    notes.push_back("fewer than two CPUs allowed: nothing pinned (as --pin none)");
    requested = pin_mode::none;
  }
  plan p = opt.quick ? plan{100, 4, 100, 4, 3, 5000, 0.2} : plan{300, 20, 250, 20, 10, 20000, 1.5};
  bench::report rep("transport_matrix", opt);
  std::fprintf(stderr, "transport_matrix%s: running\n", opt.quick ? " --quick" : "");

  // TCP
  {
    transport<strata::tcp::stream> t;
    t.name = "tcp";
    t.make_raw = raw_tcp;
    auto port = std::make_shared<std::atomic<int>>(0);
    t.server_end = [port](int,
                          std::atomic<bool>& ready) -> strata::task<strata::result<strata::tcp::stream>> {
      auto l = strata::tcp::listener::bind("127.0.0.1:0");
      if (!l) co_return strata::unexpected(l.error());
      *port = l->local_address()->port();
      ready = true;
      co_return co_await l->accept(strata::deadline::after(10s));
    };
    t.client_end = [port](int) -> strata::task<strata::result<strata::tcp::stream>> {
      co_return co_await strata::tcp::connect("127.0.0.1:" + std::to_string(port->load()),
                                              strata::deadline::after(10s));
    };
    bench_transport(rep, p, std::move(t));
  }

  // Unix stream
  auto uds_transport = [](std::string name, bool cross_cpu) {
    transport<strata::uds::stream> t;
    t.name = std::move(name);
    t.cross_cpu = cross_cpu;
    t.make_raw = [] { return raw_socketpair(SOCK_STREAM); };
    auto h = std::make_shared<pair_holder<strata::uds::stream>>();
    for (int i = 0; i < 2; ++i) {
      auto pr = strata::uds::stream::pair();
      if (!pr) die_ec("uds pair", pr.error());
      h->client.push_back(std::move(pr->first));
      h->server.push_back(std::move(pr->second));
    }
    pair_ends(t, h);
    return t;
  };
  results uds_res = bench_transport(rep, p, uds_transport("uds", false));

  // Unix datagram
  {
    transport<strata::unix_dgram::connected> t;
    t.name = "unix_dgram";
    t.make_raw = [] { return raw_socketpair(SOCK_DGRAM); };
    auto h = std::make_shared<pair_holder<strata::unix_dgram::connected>>();
    for (int i = 0; i < 2; ++i) {
      auto pr = strata::unix_dgram::connected::pair();
      if (!pr) die_ec("unix_dgram pair", pr.error());
      h->client.push_back(std::move(pr->first));
      h->server.push_back(std::move(pr->second));
    }
    pair_ends(t, h);
    bench_transport(rep, p, std::move(t));
  }

  // pipe (a duplex pair of pipes)
  {
    transport<strata::pipe::duplex> t;
    t.name = "pipe";
    t.make_raw = raw_pipes;
    auto h = std::make_shared<pair_holder<strata::pipe::duplex>>();
    for (int i = 0; i < 2; ++i) {
      auto pr = strata::pipe::duplex::pair();
      if (!pr) die_ec("pipe duplex pair", pr.error());
      h->client.push_back(std::move(pr->first));
      h->server.push_back(std::move(pr->second));
    }
    pair_ends(t, h);
    bench_transport(rep, p, std::move(t));
  }

  // POSIX mq (two queues)
  {
    transport<strata::mq::duplex> t;
    t.name = "mq";
    t.max_message = 8192;
    t.max_reason = "mq msgsize limit 8192 bytes here (/proc/sys/fs/mqueue/msgsize_max)";
    t.make_raw = raw_mq;
    auto h = std::make_shared<pair_holder<strata::mq::duplex>>();
    for (int i = 0; i < 2; ++i) {
      std::string a = "/" + unique_name("a") + std::to_string(i),
                  b = "/" + unique_name("b") + std::to_string(i);
      strata::mq::open_options o;
      o.create = true;
      o.exclusive = true;
      o.attr = {10, 8192};
      auto qa = strata::mq::queue::open(a, o), qb = strata::mq::queue::open(b, o);
      if (!qa || !qb) die_ec("mq open", qa ? qb.error() : qa.error());
      auto qa2 = strata::mq::queue::open(a, {}), qb2 = strata::mq::queue::open(b, {});
      if (!qa2 || !qb2) die_ec("mq reopen", qa2 ? qb2.error() : qa2.error());
      (void)strata::mq::unlink(a);
      (void)strata::mq::unlink(b);
      h->client.emplace_back(std::move(*qa), std::move(*qb));
      h->server.emplace_back(std::move(*qb2), std::move(*qa2));
    }
    pair_ends(t, h);
    bench_transport(rep, p, std::move(t));
  }

  // UDP over loopback (two connected sockets)
  {
    transport<strata::udp::connected> t;
    t.name = "udp";
    t.max_message = strata::udp::max_ipv4_message;
    t.max_reason = "UDP/IPv4 carries at most 65507 bytes";
    t.tput_per_group = 8;
    t.tput_groups = 32;
    t.make_raw = raw_udp;
    auto h = std::make_shared<pair_holder<strata::udp::connected>>();
    for (int i = 0; i < 2; ++i) {
      auto a = strata::udp::socket::bind("127.0.0.1:0"), b = strata::udp::socket::bind("127.0.0.1:0");
      if (!a || !b) die_ec("udp bind", a ? b.error() : a.error());
      auto aa = a->local_address(), ba = b->local_address();
      if (!aa || !ba) die("udp local_address");
      auto ca = std::move(*a).connect(*ba), cb = std::move(*b).connect(*aa);
      if (!ca || !cb) die_ec("udp connect", ca ? cb.error() : ca.error());
      h->client.push_back(std::move(*ca));
      h->server.push_back(std::move(*cb));
    }
    pair_ends(t, h);
    bench_transport(rep, p, std::move(t));
  }

  // shm stream: default (sleeping) mode and spin mode
  for (bool spin : {false, true}) {
    transport<strata::shm::stream> t;
    t.name = spin ? "shm_spin" : "shm";
    t.kernel = false;
    t.spinning = spin;
    t.cross_cpu = true;
    auto name = std::make_shared<std::string>();
    t.server_end = [name, spin](
                       int phase,
                       std::atomic<bool>& ready) -> strata::task<strata::result<strata::shm::stream>> {
      *name = unique_name(spin ? "shmspin" : "shm") + std::to_string(phase);
      strata::shm::listen_options lo;
      lo.wait.spin = spin;
      auto l = strata::shm::listener::bind(*name, lo);
      if (!l) co_return strata::unexpected(l.error());
      ready = true;
      co_return co_await l->accept(strata::deadline::after(10s));
    };
    t.client_end = [name, spin](int) -> strata::task<strata::result<strata::shm::stream>> {
      strata::shm::wait_options w;
      w.spin = spin;
      co_return co_await strata::shm::connect(*name, strata::deadline::after(10s), w);
    };
    if (!rep.wanted(t.name)) continue;
    std::vector<double> spin_limit, ring_limit, core_limit;
    if (spin) {
      std::fprintf(stderr, "  cache-line spin limit ...\n");
      spin_limit = cacheline_spin(p);
      ring_limit = ring_spin(p);
      core_limit = core_spin(p);
    }
    std::fprintf(stderr, "  %s ...\n", t.name.c_str());
    auto res = run_transport(t, p);
    report_transport(rep, t, res);
    // Targets on the 1-byte RTT (the rows above carry no baseline of their own).
    bench::figure f;
    f.unit = "us";
    f.value = bench::summarize(res.s_rtt[0]);
    if (spin) {
      // Informative: the same figure against the bare ring (what the ring design costs
      // versus what strata's code adds on top of it).
      bench::figure g;
      g.unit = "us";
      g.value = f.value;
      g.name = "shm_spin.rtt_1B_vs_ring";
      g.baseline_name = "ring_spin";
      g.baseline = bench::summarize(ring_limit);
      rep.add(g);
      g.name = "shm_spin.rtt_1B_vs_core";
      g.baseline_name = "core_spin";
      g.baseline = bench::summarize(core_limit);
      rep.add(g);
      f.name = "shm_spin.rtt_1B_vs_line";
      f.baseline_name = "cacheline_spin";
      f.baseline = bench::summarize(spin_limit);
      // A spin limit of microseconds means the scheduler preempted a spinner (more runnable
      // threads than cores): then neither figure measures the ring, so give no verdict.
      if (f.baseline.p50 < 5.0) {
        f.target_text = "ratio p50 <= 1.5";
        f.target = 1.5;
      } else {
        char buf[200];
        std::snprintf(buf, sizeof buf,
                      "shm_spin.rtt_1B_vs_line: no verdict: the cache-line spin limit itself took %.1f us "
                      "(spinners preempted: more runnable threads than cores)",
                      f.baseline.p50);
        notes.push_back(buf);
      }
    } else {
      f.name = "shm.rtt_1B_vs_uds";
      f.baseline_name = "strata_uds_rtt_1B";
      // The Unix stream in the placement shm had (auto: measured again, on two CPUs).
      results uds_here;
      if (placement_for(true) != placement_for(false)) {
        f.baseline_name = "strata_uds_split_rtt_1B";
        auto t2 = uds_transport("uds_split", true);
        std::fprintf(stderr, "  %s ...\n", t2.name.c_str());
        uds_here = run_transport(t2, p);  // also under --only shm: it is this row's baseline
        report_transport(rep, t2, uds_here);
      } else {
        uds_here = uds_res;
      }
      if (uds_here.s_rtt.empty() || uds_here.s_rtt[0].empty()) {
        notes.push_back("shm.rtt_1B_vs_uds: not measured (uds did not run: --only)");
        continue;
      }
      f.baseline = bench::summarize(uds_here.s_rtt[0]);
      f.target_text = "ratio p50 <= 0.1";
      f.target = 0.1;
    }
    f.target_on_ratio = true;
    rep.add(f);
  }

  // shm broadcast: producer rate with 1, 2, 4, 8 subscribers (policy overwrite, so the
  // producer never waits and its rate is its own cost).
  if (rep.wanted("bcast")) {
    std::fprintf(stderr, "  shm broadcast ...\n");
    bench::stats one, one_cpu;
    for (int n : {1, 2, 4, 8}) {
      auto r = broadcast(p, n, 0);
      bench::figure f;
      f.name = "bcast.sub" + std::to_string(n);
      f.unit = "msg/s";
      f.higher_is_better = true;
      f.value = bench::summarize(r.rate);
      if (n == 1) {
        one = f.value;
      } else {
        f.baseline_name = "bcast.sub1";
        f.baseline = one;
      }
      if (n == 8) {
        f.target_text = "ratio p50 >= 0.9";
        f.target = 0.9;
        f.target_on_ratio = true;
      }
      rep.add(f);
      // The producer's own CPU per message: what "cost does not grow with N" is about;
      // the wall rate above also counts the time the 2 cores spend on N subscribers.
      bench::figure c;
      c.name = "bcast.sub" + std::to_string(n) + ".cpu";
      c.unit = "ns/msg";
      c.value = bench::summarize(r.cpu);
      if (n == 1) {
        one_cpu = c.value;
      } else {
        c.baseline_name = "bcast.sub1.cpu";
        c.baseline = one_cpu;
      }
      if (n == 8) {
        c.target_text = "ratio p50 <= 1.11";
        c.target = 1.0 / 0.9;
        c.target_on_ratio = true;
      }
      rep.add(c);
      char buf[160];
      std::snprintf(buf, sizeof buf, "bcast.sub%d: subscribers received %llu messages, lost %llu (overwrite)",
                    n, static_cast<unsigned long long>(r.received), static_cast<unsigned long long>(r.lost));
      notes.push_back(buf);
    }
  }

  notes.push_back(std::string("placement (--pin): ") + placement_name(requested) +
                  (requested == pin_mode::automatic
                       ? ": kernel transports and raw loops on one CPU; shm, shm_spin, cacheline_spin and "
                         "uds_split on two; bcast: publisher on one CPU, subscribers on the other"
                       : ""));
  int rc = rep.print(
      "RTT in us (client write -> echo read back complete); tput = one-way 4 KiB messages, MiB/s; "
      "raw = blocking syscalls on two plain threads; bcast = 64-byte messages, producer rate");
  for (const auto& n : notes) std::printf("note: %s\n", n.c_str());
  return rc;
}
