// bridge: forwarding throughput of `strata bridge` (TCP -> Unix, TCP -> shm) next to socat
// doing the same forwarding in the same run, the gateway's throughput (strata bridge --mux
// and --demux: TCP -> one mux channel on a Unix socket -> Unix) next to two socats
// chained the same way, and the gateway's round-trip latency next to a direct TCP
// connection.
//
//   source  a thread writes `bytes` to 127.0.0.1:PORT (TCP) in 1 MiB writes, then
//           shuts down; the sample ends when the sink has read everything
//   sink    a thread reads the Unix socket (or, for shm, a strata loop reads the shm
//           stream) to its end
//   forwarders are separate processes started by PID and killed at the end:
//     strata bridge -k tcp-listen:127.0.0.1:P unix:SINK      (spliced)
//     strata bridge -k tcp-listen:127.0.0.1:P shm:NAME       (copied: shm has no descriptor)
//     socat TCP-LISTEN:P,reuseaddr,fork UNIX-CONNECT:SINK    (baseline, default 8 KiB buffer)
//     strata bridge --mux tcp-listen:P unix:G + strata bridge --demux unix-listen:G unix:SINK
//     socat TCP-LISTEN:P -> UNIX-CONNECT:G + socat UNIX-LISTEN:G -> UNIX-CONNECT:SINK
//   latency: 64-byte ping-pong, one sample per round trip, every service a process of its
//           own (this program started again with --serve): straight to a TCP echo process
//           (the baseline); through --mux and --demux to it; through --mux alone to a
//           backend process that terminates the mux channel (unix or shm) and echoes each
//           stream; through one socat, and through a minimal blocking forwarder (a thread
//           per direction, read then write), to a Unix echo process.
// Targets: bridge >= 3x socat's throughput; the gateway adds <= 20% latency at p50.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "strata/runtime.hpp"
#include "strata/strata.hpp"

extern char** environ;

namespace {

using bench::clock;
using bench::ns_between;
using namespace std::chrono_literals;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "bench_bridge: %s failed: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// -- processes -------------------------------------------------------------------------

struct child {
  pid_t pid = -1;
  ~child() { stop(); }
  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
};

void start(child& c, std::vector<std::string> argv) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  if (posix_spawnp(&c.pid, args[0], &fa, nullptr, args.data(), environ) != 0) die(argv[0].c_str());
  posix_spawn_file_actions_destroy(&fa);
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("bind");
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

int tcp_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/// wait_port waits until something accepts on `port` (the forwarder is up). The probe
/// connection is closed at once: a `-k` forwarder serves it and moves on.
void wait_port(int port) {
  for (int i = 0; i < 1000; ++i) {
    int fd = tcp_connect(port);
    if (fd >= 0) {
      ::close(fd);
      return;
    }
    std::this_thread::sleep_for(5ms);
  }
  die("waiting for the forwarder");
}

int unix_listen(const std::string& path) {
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("bind unix");
  if (::listen(fd, 128) < 0) die("listen unix");
  return fd;
}

// -- throughput ---------------------------------------------------------------------------

/// unix_sink accepts connections on `lfd` and reads each to its end; `got` counts the
/// bytes of the connection in progress, `done` the finished connections with bytes.
struct unix_sink {
  int lfd;
  std::atomic<std::uint64_t> last{0};
  std::atomic<int> done{0};
  std::thread t;
  explicit unix_sink(int fd) : lfd(fd) {
    t = std::thread([this] {
      std::vector<char> buf(1 << 20);
      for (;;) {
        int c = ::accept(lfd, nullptr, nullptr);
        if (c < 0) return;
        std::uint64_t n = 0;
        for (;;) {
          auto r = ::read(c, buf.data(), buf.size());
          if (r <= 0) break;
          n += static_cast<std::uint64_t>(r);
        }
        ::close(c);
        if (n > 0) {
          last = n;
          ++done;
        }
      }
    });
  }
  ~unix_sink() {
    ::shutdown(lfd, SHUT_RDWR);
    ::close(lfd);
    t.join();
  }
};

/// push writes `bytes` to `port` and waits until `finished()` says the sink has them;
/// returns MB/s.
template <class Finished>
double push(int port, std::uint64_t bytes, Finished finished) {
  std::vector<char> buf(1 << 20, 'b');
  int fd = tcp_connect(port);
  if (fd < 0) die("connect");
  auto t0 = clock::now();
  for (std::uint64_t sent = 0; sent < bytes;) {
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), bytes - sent));
    auto n = ::write(fd, buf.data(), want);
    if (n <= 0) die("write");
    sent += static_cast<std::uint64_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  while (!finished()) std::this_thread::yield();
  auto t1 = clock::now();
  ::close(fd);
  return static_cast<double>(bytes) / 1e6 / (ns_between(t0, t1) / 1e9);
}

double push_unix(int port, std::uint64_t bytes, unix_sink& sink) {
  int before = sink.done.load();
  double mbps = push(port, bytes, [&] { return sink.done.load() > before; });
  if (sink.last.load() != bytes) die("byte count");
  return mbps;
}

/// shm_sink runs a strata loop on its own thread that accepts shm streams on NAME and
/// reads each to its end.
struct shm_sink {
  std::atomic<std::uint64_t> last{0};
  std::atomic<int> done{0};
  std::atomic<bool> ready{false};
  std::string name;
  std::thread t;
  std::atomic<bool> quit{false};
  explicit shm_sink(std::string n) : name(std::move(n)) {
    t = std::thread([this] { strata::run(body()); });
    while (!ready) std::this_thread::yield();
  }
  strata::task<void> body() {
    auto l = strata::listen("shm-listen:" + name);
    if (!l) die("shm-listen");
    ready = true;
    std::vector<std::byte> buf(1 << 20);
    while (!quit) {
      auto c = co_await l->accept(strata::deadline::after(200ms));
      if (!c) continue;
      std::uint64_t n = 0;
      for (;;) {
        auto r = co_await c->stream().read_some(buf, strata::deadline::after(30s));
        if (!r) break;
        n += *r;
      }
      (void)co_await c->close(strata::deadline::after(1s));
      if (n > 0) {
        last = n;
        ++done;
      }
    }
    l->close();
  }
  ~shm_sink() {
    quit = true;
    t.join();
  }
};

// -- latency ---------------------------------------------------------------------------

/// copy_until_end reads `from` and writes what it read to `to` until either fails.
void copy_until_end(int from, int to) {
  char buf[4096];
  for (;;) {
    auto n = ::read(from, buf, sizeof buf);
    if (n <= 0 || ::write(to, buf, static_cast<std::size_t>(n)) != n) break;
  }
  ::shutdown(to, SHUT_WR);
}

/// echo_until_end writes back to `fd` what it reads from it until either fails, then
/// closes it.
void echo_until_end(int fd) {
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0 || ::write(fd, buf, static_cast<std::size_t>(n)) != n) break;
  }
  ::close(fd);
}

/// threaded_server accepts connections on `lfd` (a listening socket it owns) and runs
/// `serve` for each on a thread of its own (blocking calls throughout).
struct threaded_server {
  int lfd;
  std::thread t;
  std::vector<std::thread> conns;
  threaded_server(int listening, std::function<void(int)> serve) : lfd(listening) {
    t = std::thread([this, serve = std::move(serve)] {
      for (int c; (c = ::accept(lfd, nullptr, nullptr)) >= 0;) conns.emplace_back(serve, c);
    });
  }
  ~threaded_server() {
    ::shutdown(lfd, SHUT_RDWR);
    ::close(lfd);
    t.join();
    for (auto& c : conns) c.join();
  }
};

/// tcp_listen_on listens on 127.0.0.1:`port` (0: any free port, written back).
int tcp_listen_on(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("bind echo");
  ::listen(fd, 128);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  port = ntohs(sa.sin_port);
  return fd;
}

/// tcp_echo answers every TCP connection with what it sends.
void tcp_echo(int c) {
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  echo_until_end(c);
}

/// forward_to_unix joins TCP connection `c` to a new connection of the Unix socket
/// `path`, a blocking read and write per piece in each direction (a thread each).
void forward_to_unix(int c, const std::string& path) {
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int u = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  if (::connect(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect forward");
  std::thread back([c, u] { copy_until_end(u, c); });
  copy_until_end(c, u);
  back.join();
  ::close(u);
  ::close(c);
}

/// mux_echo_backend is a backend process's service terminating the channel itself: a
/// strata loop on its own thread accepts channels on `listen_spec` (unix-listen: or
/// shm-listen:), runs a mux session on each and echoes every stream it accepts. With it
/// the gateway is the only hop between a client and the service.
struct mux_echo_backend {
  std::string spec;
  std::atomic<bool> ready{false};
  std::thread t;
  std::atomic<bool> quit{false};
  explicit mux_echo_backend(std::string listen_spec) : spec(std::move(listen_spec)) {
    t = std::thread([this] { strata::run(body()); });
    while (!ready) std::this_thread::yield();
  }
  static strata::task<void> echo(strata::mux::stream s) {
    std::vector<std::byte> buf(4096);
    for (;;) {
      auto n = co_await s.read_some(buf, strata::deadline::after(60s));
      if (!n || *n == 0) break;
      auto w = co_await s.write(strata::const_buffer(buf.data(), *n), strata::deadline::after(5s));
      if (!w) break;
    }
    (void)co_await s.close(strata::deadline::after(1s));
  }
  static strata::task<void> channel(strata::any_connection c) {
    strata::mux::session session(c.take_stream(), strata::mux::role::server, {});
    co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
      for (;;) {
        auto in = co_await session.accept(strata::deadline::never());
        if (!in) break;
        s.spawn(echo(std::move(*in)));
      }
    });
  }
  strata::task<void> body() {
    auto l = strata::listen(spec);
    if (!l) die("backend listen");
    ready = true;
    co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
      while (!quit) {
        auto c = co_await l->accept(strata::deadline::after(200ms));
        if (c) s.spawn(channel(std::move(*c)));
      }
      s.cancel();
    });
    l->close();
  }
  ~mux_echo_backend() {
    quit = true;
    t.join();
  }
};

/// ping_pong measures `rounds` round trips of 64 bytes through `port` (us each).
std::vector<double> ping_pong(int port, int rounds) {
  int fd = tcp_connect(port);
  if (fd < 0) die("connect");
  char msg[64];
  std::memset(msg, 'p', sizeof msg);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds + 200; ++i) {  // the first 200 warm up
    auto t0 = clock::now();
    if (::write(fd, msg, sizeof msg) != sizeof msg) die("ping write");
    std::size_t got = 0;
    while (got < sizeof msg) {
      auto n = ::read(fd, msg + got, sizeof msg - got);
      if (n <= 0) die("ping read");
      got += static_cast<std::size_t>(n);
    }
    if (i >= 200) us.push_back(ns_between(t0, clock::now()) / 1e3);
  }
  ::close(fd);
  return us;
}

}  // namespace

/// serve runs one of the latency benchmark's services as a process of its own (the
/// benchmark starts itself again with `--serve KIND WHERE`) until SIGTERM, so that no
/// round trip is between two threads of one process.
[[noreturn]] void serve(const std::string& kind, const std::string& where) {
  ::signal(SIGPIPE, SIG_IGN);
  std::optional<threaded_server> server;
  std::optional<mux_echo_backend> backend;
  if (kind == "tcp-echo") {
    int port = std::stoi(where);
    server.emplace(tcp_listen_on(port), tcp_echo);
  } else if (kind == "unix-echo") {
    server.emplace(unix_listen(where), echo_until_end);
  } else if (kind == "forward") {
    // The least a forwarding process can do (`where` is PORT:PATH).
    auto colon = where.find(':');
    int port = std::stoi(where.substr(0, colon));
    server.emplace(tcp_listen_on(port),
                   [path = where.substr(colon + 1)](int c) { forward_to_unix(c, path); });
  } else if (kind == "mux-echo") {
    backend.emplace(where);
  } else {
    std::fprintf(stderr, "bench_bridge: unknown service %s\n", kind.c_str());
    std::exit(2);
  }
  for (;;) ::pause();
}

void wait_path(const std::string& path) {
  for (int i = 0; i < 1000 && ::access(path.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(5ms);
}

int main(int argc, char** argv) {
  if (argc == 4 && std::string_view(argv[1]) == "--serve") serve(argv[2], argv[3]);
  auto opt = bench::parse_options(argc, argv);
  bench::report rep("bridge", opt);
  ::signal(SIGPIPE, SIG_IGN);
  const std::string cli = STRATA_CLI_PATH;
  const std::string dir = "/tmp/strata-bench-bridge-" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0700);
  const std::uint64_t bytes = opt.quick ? (16u << 20) : (512u << 20);
  const int rounds = opt.quick ? 1 : 5;
  const int pings = opt.quick ? 500 : 20000;

  const std::string sink_path = dir + "/sink.sock";
  unix_sink sink(unix_listen(sink_path));

  // Forwarders: each its own process, started once and reused by every round.
  int p_strata = free_port(), p_socat = free_port(), p_shm = free_port(), p_gw = free_port(),
      p_chain = free_port();
  child strata_fw, socat_fw, shm_fw, gw, backend, chain_front, chain_back;
  start(strata_fw,
        {cli, "bridge", "-k", "tcp-listen:127.0.0.1:" + std::to_string(p_strata), "unix:" + sink_path});
  start(socat_fw, {"socat", "TCP-LISTEN:" + std::to_string(p_socat) + ",bind=127.0.0.1,reuseaddr,fork",
                   "UNIX-CONNECT:" + sink_path});
  std::string shm_name = "strata-bench-bridge-" + std::to_string(::getpid());
  shm_sink shm(shm_name);
  start(shm_fw, {cli, "bridge", "-k", "tcp-listen:127.0.0.1:" + std::to_string(p_shm), "shm:" + shm_name});
  const std::string channel = dir + "/gw.sock";
  start(backend, {cli, "bridge", "--demux", "unix-listen:" + channel, "unix:" + sink_path});
  start(gw, {cli, "bridge", "--mux", "tcp-listen:127.0.0.1:" + std::to_string(p_gw), "unix:" + channel});
  const std::string middle = dir + "/chain.sock";
  start(chain_back, {"socat", "UNIX-LISTEN:" + middle + ",fork", "UNIX-CONNECT:" + sink_path});
  start(chain_front, {"socat", "TCP-LISTEN:" + std::to_string(p_chain) + ",bind=127.0.0.1,reuseaddr,fork",
                      "UNIX-CONNECT:" + middle});
  for (int p : {p_strata, p_socat, p_shm, p_gw, p_chain}) wait_port(p);

  std::vector<double> v_strata, v_socat, v_shm, v_gw, v_chain;
  for (int r = 0; r < rounds; ++r) {
    v_socat.push_back(push_unix(p_socat, bytes, sink));
    v_strata.push_back(push_unix(p_strata, bytes, sink));
    int before = shm.done.load();
    v_shm.push_back(push(p_shm, bytes, [&] { return shm.done.load() > before; }));
    if (shm.last.load() != bytes) die("shm byte count");
    v_chain.push_back(push_unix(p_chain, bytes, sink));
    v_gw.push_back(push_unix(p_gw, bytes, sink));
  }
  auto add = [&](const char* name, std::vector<double>& v, const char* base_name, std::vector<double>& base,
                 const char* target_text, double target) {
    bench::figure f;
    f.name = name;
    f.unit = "MB/s";
    f.higher_is_better = true;
    f.value = bench::summarize(v);
    f.baseline_name = base_name;
    f.baseline = bench::summarize(base);
    if (target_text) {
      f.target_text = target_text;
      f.target = target;
      f.target_on_ratio = true;
    }
    rep.add(f);
  };
  add("bridge_tcp_to_unix", v_strata, "socat_tcp_to_unix", v_socat, ">= 3x socat", 3.0);
  add("bridge_tcp_to_shm", v_shm, "socat_tcp_to_unix", v_socat, ">= 3x socat", 3.0);
  add("gateway_tcp_mux_unix", v_gw, "socat_chain_2_hops", v_chain, nullptr, 0);

  // Latency through the gateway (to a TCP echo service) against the same echo directly.
  // Every service is a process of its own, as a client's server would be.
  {
    char self_buf[4096];
    auto self_len = ::readlink("/proc/self/exe", self_buf, sizeof self_buf - 1);
    if (self_len <= 0) die("readlink /proc/self/exe");
    const std::string self(self_buf, static_cast<std::size_t>(self_len));
    struct {
      int port;
    } echo{free_port()};
    child echo_process;
    start(echo_process, {self, "--serve", "tcp-echo", std::to_string(echo.port)});
    wait_port(echo.port);
    child lat_backend, lat_gw;
    const std::string lat_channel = dir + "/lat.sock";
    int p_lat = free_port();
    start(lat_backend, {cli, "bridge", "--demux", "unix-listen:" + lat_channel,
                        "tcp:127.0.0.1:" + std::to_string(echo.port)});
    start(lat_gw,
          {cli, "bridge", "--mux", "tcp-listen:127.0.0.1:" + std::to_string(p_lat), "unix:" + lat_channel});
    // The same two hops with socat: TCP -> a unix socket -> TCP.
    child chain_a, chain_b;
    const std::string lat_middle = dir + "/latchain.sock";
    int p_lat_chain = free_port();
    start(chain_b,
          {"socat", "UNIX-LISTEN:" + lat_middle + ",fork", "TCP:127.0.0.1:" + std::to_string(echo.port)});
    start(chain_a,
          {"socat", "TCP-LISTEN:" + std::to_string(p_lat_chain) + ",bind=127.0.0.1,reuseaddr,fork,nodelay",
           "UNIX-CONNECT:" + lat_middle});
    wait_port(p_lat);
    wait_port(p_lat_chain);
    // The gateway alone: its channel ends in a backend that is the service.
    std::string lat_shm = "strata-bench-gw-" + std::to_string(::getpid());
    child unix_service, shm_service;
    start(unix_service, {self, "--serve", "mux-echo", "unix-listen:" + dir + "/latsvc.sock"});
    start(shm_service, {self, "--serve", "mux-echo", "shm-listen:" + lat_shm});
    wait_path(dir + "/latsvc.sock");
    child gw_unix, gw_shm;
    int p_gw_unix = free_port(), p_gw_shm = free_port();
    start(gw_unix, {cli, "bridge", "--mux", "tcp-listen:127.0.0.1:" + std::to_string(p_gw_unix),
                    "unix:" + dir + "/latsvc.sock"});
    start(gw_shm,
          {cli, "bridge", "--mux", "tcp-listen:127.0.0.1:" + std::to_string(p_gw_shm), "shm:" + lat_shm});
    // One socat hop to a Unix echo service: the least one forwarding process costs.
    child unix_echo, socat_one, plain_forward;
    start(unix_echo, {self, "--serve", "unix-echo", dir + "/latecho.sock"});
    wait_path(dir + "/latecho.sock");
    int p_socat_one = free_port();
    start(socat_one,
          {"socat", "TCP-LISTEN:" + std::to_string(p_socat_one) + ",bind=127.0.0.1,reuseaddr,fork,nodelay",
           "UNIX-CONNECT:" + dir + "/latecho.sock"});
    wait_port(p_gw_unix);
    wait_port(p_gw_shm);
    int p_plain = free_port();
    start(plain_forward, {self, "--serve", "forward", std::to_string(p_plain) + ":" + dir + "/latecho.sock"});
    wait_port(p_socat_one);
    wait_port(p_plain);
    std::vector<double> direct, through, chained, one_unix, one_shm, one_socat, one_plain;
    auto sample = [&](int port, std::vector<double>& into) {
      auto v = ping_pong(port, pings / 2);
      into.insert(into.end(), v.begin(), v.end());
    };
    for (int r = 0; r < 2; ++r) {
      sample(echo.port, direct);
      sample(p_lat, through);
      sample(p_gw_unix, one_unix);
      sample(p_gw_shm, one_shm);
      sample(p_socat_one, one_socat);
      sample(p_plain, one_plain);
      sample(p_lat_chain, chained);
    }
    auto add_rtt = [&](const char* name, const std::vector<double>& v, const char* base_name,
                       const std::vector<double>& base, bool target) {
      bench::figure f;
      f.name = name;
      f.unit = "us";
      f.value = bench::summarize(v);
      f.baseline_name = base_name;
      f.baseline = bench::summarize(base);
      if (target) {
        f.target_text = "<= 1.2x direct";
        f.target = 1.2;
        f.target_on_ratio = true;
      }
      rep.add(f);
    };
    add_rtt("gateway_rtt_64B_vs_socat", through, "socat_chain_2_hops_rtt", chained, false);
    add_rtt("gateway_rtt_64B", through, "direct_tcp_rtt", direct, true);
    add_rtt("gateway_unix_to_mux_service_rtt_64B", one_unix, "direct_tcp_rtt", direct, true);
    add_rtt("gateway_shm_to_mux_service_rtt_64B", one_shm, "direct_tcp_rtt", direct, true);
    add_rtt("gateway_unix_to_mux_service_rtt_64B_vs_socat", one_unix, "socat_one_hop_rtt", one_socat, false);
    // The floor of one forwarding hop on this machine, whatever the forwarder.
    add_rtt("blocking_forwarder_one_hop_rtt_64B", one_plain, "direct_tcp_rtt", direct, false);
    chain_a.stop();
    chain_b.stop();
    ::unlink(lat_middle.c_str());
    plain_forward.stop();
    socat_one.stop();
    ::unlink((dir + "/latecho.sock").c_str());
    ::unlink((dir + "/latsvc.sock").c_str());
    gw_unix.stop();
    gw_shm.stop();
    lat_gw.stop();
    lat_backend.stop();
  }
  for (auto* c : {&gw, &backend, &chain_front, &chain_back, &strata_fw, &socat_fw, &shm_fw}) c->stop();
  ::unlink(sink_path.c_str());
  ::unlink(channel.c_str());
  ::unlink(middle.c_str());
  ::rmdir(dir.c_str());
  return rep.print(
      "forwarders are separate processes; source and sink threads in this process; 2 cores shared");
}
