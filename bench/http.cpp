// http: requests per second of strata's HTTP server next to nginx (HTTP/1.1) and nghttpd
// (HTTP/2) on the same machine, in the same run, with the same worker count (one).
//
//   h1_keepalive  wrk -t1 -c50 --latency: small GET requests on 50 kept-alive connections,
//                 against strata (http::serve on one thread, one event loop) and against
//                 nginx-light (worker_processes 1, master_process off, access_log off,
//                 `return 200 "hello world\n"`). Both answer 12 bytes of text/plain.
//   h1_pipelined  the same with 16 requests pipelined per write (a wrk script), which
//                 strata answers with one write per batch.
//   h2            h2load -t1 -c50 -m10 against strata (HTTP/2 prior knowledge, same
//                 handler) and against nghttpd --no-tls serving the same 12-byte file.
//   raw floor     h1_keepalive also runs against raw_floor_server (below), the least a
//                 server can do per request, and reports each server's CPU time per
//                 request and the load generator's CPU: what this machine lets any
//                 server reach.
//
// Placement: every server on CPU 0 (strata's thread by pthread_setaffinity_np, the peers by
// taskset), every load generator on CPU 1. Rounds alternate strata and its peer; a sample
// is one round's requests per second (latency p50/p99 from wrk's distribution). The
// peers are Debian's nginx-light, wrk, nghttp2-server and nghttp2-client (scripts/quickstart
// installs them); the program exits 1 when one is missing or fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "strata/app/http.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_http: %s\n", what.c_str());
  std::exit(1);
}

/// child is a process started by spawn(); its stdout (and stderr) arrive on `out`.
struct child {
  pid_t pid = -1;
  int out = -1;
};

child spawn(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  child c;
  int rc = posix_spawnp(&c.pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) die("cannot start " + argv[0] + " (is it installed? scripts/quickstart setup)");
  c.out = pipe_fds[0];
  return c;
}

/// run_to_end runs argv and returns its output; dies when it fails.
std::string run_to_end(const std::vector<std::string>& argv) {
  auto c = spawn(argv);
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::read(c.out, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(c.out);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die(argv[0] + " failed:\n" + out);
  return out;
}

void stop(child& c) {
  if (c.pid <= 0) return;
  ::kill(c.pid, SIGTERM);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  ::close(c.out);
  c.pid = -1;
}

/// wait_listening waits (bounded) until something accepts on 127.0.0.1:port.
void wait_listening(std::uint16_t port) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
    ::close(fd);
    if (ok) return;
    ::usleep(10'000);  // a peer starting up; bounded to 5 s in all
  }
  die("peer did not start listening on port " + std::to_string(port));
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof at;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&at), &len) != 0) {
    die("no free port");
  }
  ::close(fd);
  return ntohs(at.sin_port);
}

// -- strata's server -------------------------------------------------------------------------

strata::http::handlers hello() {
  return strata::http::both([](auto&, auto& res) -> strata::task<strata::result<void>> {
    (void)res.set_header("Content-Type", "text/plain");
    co_return co_await res.send(200, "hello world\n", strata::deadline::after(10s));
  });
}

strata::task<void> serve_connection(strata::tcp::stream s, strata::http::handlers h) {
  (void)co_await strata::http::serve(strata::any_stream(std::move(s)), std::move(h));
}

strata::task<void> strata_server(strata::tcp::listener& l, std::atomic<bool>& stopping) {
  strata::scope connections;
  auto h = hello();
  while (!stopping.load()) {
    auto s = co_await l.accept(strata::deadline::after(100ms));
    if (!s) continue;
    connections.spawn(serve_connection(std::move(*s), h));
  }
  connections.cancel();
  (void)co_await connections.join();
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// -- the floor --------------------------------------------------------------------------------

/// raw_floor_server is the least an HTTP/1.1 keep-alive server can do per request, as a
/// yardstick: one epoll loop, one recv per readable connection, and for every request
/// end (CRLF CRLF) in what it read the same 12-byte answer strata and nginx give, from a
/// constant, in one send. It parses nothing and checks nothing: no real server can be
/// cheaper per request with one recv and one send, so its rate is the ceiling this
/// machine and load generator allow.
struct raw_floor_server {
  int lfd = -1;
  int ep = -1;
  std::uint16_t port = 0;
  std::atomic<bool> stopping{false};
  std::thread t;

  raw_floor_server() {
    lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof at;
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 || ::listen(lfd, 512) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&at), &len) != 0) {
      die("raw floor server: bind");
    }
    port = ntohs(at.sin_port);
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    t = std::thread([this] { run(); });
  }
  ~raw_floor_server() {
    stopping = true;
    t.join();
    ::close(ep);
    ::close(lfd);
  }

  void run() {
    pin_to_cpu(0);
    static constexpr char answer[] =
        "HTTP/1.1 200 OK\r\nServer: raw\r\nDate: Sat, 05 Dec 2026 10:00:00 GMT\r\n"
        "Content-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n";
    constexpr std::size_t answer_size = sizeof answer - 1;
    std::vector<char> in(16384), out;
    std::vector<std::uint32_t> tail(65536, 0);  // the last bytes of each connection, by fd
    epoll_event events[64];
    std::vector<int> open;
    while (!stopping) {
      int n = ::epoll_wait(ep, events, 64, 100);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == lfd) {
          for (int c; (c = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
            if (static_cast<std::size_t>(c) >= tail.size()) {
              ::close(c);
              continue;
            }
            int one = 1;
            ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLET;
            ev.data.fd = c;
            ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
            tail[static_cast<std::size_t>(c)] = 0;
            open.push_back(c);
          }
          continue;
        }
        auto got = ::recv(fd, in.data(), in.size(), 0);
        if (got <= 0) {
          if (got < 0 && errno == EAGAIN) continue;
          ::close(fd);
          std::erase(open, fd);
          continue;
        }
        // Count request ends, carrying the last four bytes over from the previous read.
        std::uint32_t last = tail[static_cast<std::size_t>(fd)];
        std::size_t requests = 0;
        for (ssize_t k = 0; k < got; ++k) {
          last = (last << 8) | static_cast<unsigned char>(in[static_cast<std::size_t>(k)]);
          if (last == 0x0d0a0d0a) ++requests;
        }
        tail[static_cast<std::size_t>(fd)] = last;
        if (requests == 0) continue;
        out.clear();
        for (std::size_t r = 0; r < requests; ++r) out.insert(out.end(), answer, answer + answer_size);
        (void)::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
      }
    }
    for (int c : open) ::close(c);
  }
};

// -- CPU time ---------------------------------------------------------------------------------

/// cpu_busy reads the busy and total jiffies of one CPU from /proc/stat.
struct cpu_ticks {
  std::uint64_t busy = 0, total = 0;
};
cpu_ticks read_cpu(int cpu) {
  std::ifstream stat("/proc/stat");
  std::string line, want = "cpu" + std::to_string(cpu) + " ";
  while (std::getline(stat, line)) {
    if (line.rfind(want, 0) != 0) continue;
    std::istringstream words(line.substr(want.size()));
    cpu_ticks t;
    std::uint64_t v = 0;
    for (int field = 0; words >> v; ++field) {
      t.total += v;
      if (field != 3 && field != 4) t.busy += v;  // idle and iowait are not busy
    }
    return t;
  }
  return {};
}
double busy_between(const cpu_ticks& a, const cpu_ticks& b) {
  auto total = b.total - a.total;
  return total == 0 ? 0 : static_cast<double>(b.busy - a.busy) / static_cast<double>(total);
}

// -- load generators -------------------------------------------------------------------------

struct load_result {
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double server_cpu_busy = 0;  ///< CPU 0 (the servers') busy fraction during the run
  double load_cpu_busy = 0;    ///< CPU 1 (the load generator's)
};

double parse_duration_ms(const std::string& text) {
  double v = std::atof(text.c_str());
  if (text.find("us") != std::string::npos) return v / 1000;
  if (text.find("ms") != std::string::npos) return v;
  if (text.find('s') != std::string::npos) return v * 1000;
  return v;
}

/// value_after finds `label` in `text` and returns the next whitespace-separated word.
std::string value_after(const std::string& text, const std::string& label) {
  auto at = text.find(label);
  if (at == std::string::npos) return {};
  at += label.size();
  while (at < text.size() && (text[at] == ' ' || text[at] == '\t')) ++at;
  auto end = text.find_first_of(" \t\n,", at);
  return text.substr(at, end - at);
}

load_result wrk(std::uint16_t port, const std::string& duration, const std::string& script) {
  std::vector<std::string> argv{"taskset", "-c", "1", "wrk", "-t1", "-c50", "-d" + duration, "--latency"};
  if (!script.empty()) {
    argv.push_back("-s");
    argv.push_back(script);
  }
  argv.push_back("http://127.0.0.1:" + std::to_string(port) + "/");
  auto server_before = read_cpu(0), load_before = read_cpu(1);
  auto out = run_to_end(argv);
  load_result r;
  r.server_cpu_busy = busy_between(server_before, read_cpu(0));
  r.load_cpu_busy = busy_between(load_before, read_cpu(1));
  r.rps = std::atof(value_after(out, "Requests/sec:").c_str());
  r.p50_ms = parse_duration_ms(value_after(out, " 50%"));
  r.p99_ms = parse_duration_ms(value_after(out, " 99%"));
  if (r.rps <= 0 || out.find("Non-2xx") != std::string::npos ||
      out.find("Socket errors") != std::string::npos) {
    die("wrk failed or saw errors:\n" + out);
  }
  return r;
}

load_result h2load(std::uint16_t port, const std::string& duration) {
  auto out = run_to_end({"taskset", "-c", "1", "h2load", "-t1", "-c50", "-m10", "-D", duration,
                         "http://127.0.0.1:" + std::to_string(port) + "/"});
  load_result r;
  auto finished = out.find("finished in");
  if (finished == std::string::npos) die("h2load failed:\n" + out);
  auto comma = out.find(',', finished);
  r.rps = std::atof(out.c_str() + comma + 1);
  // h2load prints min/max/mean of the time per request, not percentiles: p50 stands for the mean here.
  auto line = out.find("time for request:");
  if (line != std::string::npos) {
    std::istringstream words(out.substr(line + 17, 120));
    std::string min, max, mean;
    words >> min >> max >> mean;
    r.p50_ms = parse_duration_ms(mean);
    r.p99_ms = parse_duration_ms(max);
  }
  if (out.find(" 0 failed, 0 errored") == std::string::npos) die("h2load saw failures:\n" + out);
  return r;
}

// -- peers -----------------------------------------------------------------------------------

child start_nginx(const fs::path& dir, std::uint16_t port) {
  std::ofstream(dir / "nginx.conf")
      << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
      << "pid " << (dir / "nginx.pid").string() << ";\n"
      << "error_log " << (dir / "error.log").string() << " error;\n"
      << "events { worker_connections 1024; }\n"
      << "http {\n  access_log off;\n  keepalive_requests 1000000;\n"
      << "  client_body_temp_path " << dir.string() << ";\n"
      << "  server {\n    listen 127.0.0.1:" << port << ";\n"
      << "    location / { default_type text/plain; return 200 \"hello world\\n\"; }\n"
      << "  }\n}\n";
  auto c = spawn({"taskset", "-c", "0", "nginx", "-p", dir.string(), "-c", (dir / "nginx.conf").string(),
                  "-e", (dir / "error.log").string()});
  wait_listening(port);
  return c;
}

child start_nghttpd(const fs::path& dir, std::uint16_t port) {
  std::ofstream(dir / "index.html") << "hello world\n";
  auto c = spawn({"taskset", "-c", "0", "nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", dir.string(),
                  std::to_string(port)});
  wait_listening(port);
  return c;
}

void add_rps(bench::report& rep, const std::string& name, const std::string& baseline,
             const std::vector<load_result>& ours, const std::vector<load_result>& theirs, double target) {
  bench::figure f;
  f.name = name;
  f.unit = "req/s";
  f.higher_is_better = true;
  std::vector<double> a, b, p50, p99, bp50, bp99;
  for (const auto& r : ours) {
    a.push_back(r.rps);
    p50.push_back(r.p50_ms);
    p99.push_back(r.p99_ms);
  }
  for (const auto& r : theirs) {
    b.push_back(r.rps);
    bp50.push_back(r.p50_ms);
    bp99.push_back(r.p99_ms);
  }
  f.value = bench::summarize(a);
  f.baseline_name = baseline;
  f.baseline = bench::summarize(b);
  char text[32];
  std::snprintf(text, sizeof text, "ratio >= %.1f", target);
  f.target_text = text;
  f.target = target;
  f.target_on_ratio = true;
  rep.add(f);
  bench::figure lat;
  lat.name = name + "_latency_p50";
  lat.unit = "ms";
  lat.value = bench::summarize(p50);
  lat.baseline_name = baseline;
  lat.baseline = bench::summarize(bp50);
  rep.add(lat);
  // wrk prints 0 for the 99th percentile of a script that pipelines (its histogram
  // holds too few samples): no figure then rather than a false one.
  auto has_zero = [](const std::vector<double>& v) { return std::find(v.begin(), v.end(), 0.0) != v.end(); };
  if (has_zero(p99) || has_zero(bp99)) return;
  lat.name = name + "_latency_p99";
  lat.value = bench::summarize(p99);
  lat.baseline = bench::summarize(bp99);
  rep.add(lat);
}

/// add_floor adds what the raw floor server says about h1_keepalive: the most any server
/// reached here (its rate against nginx's), strata against it, each server's CPU time
/// per request (CPU 0's busy time over the requests) and how busy the load generator's
/// CPU was (a load generator at 100% caps every server's figure).
void add_floor(bench::report& rep, const std::vector<load_result>& ours,
               const std::vector<load_result>& nginx, const std::vector<load_result>& floor) {
  using runs = std::vector<load_result>;
  auto add = [&](const char* name, const char* unit, bool higher, double (*of)(const load_result&),
                 const runs& value, const char* baseline_name, const runs& baseline) {
    auto summary = [of](const runs& v) {
      std::vector<double> out;
      for (const auto& r : v) out.push_back(of(r));
      return bench::summarize(out);
    };
    bench::figure f;
    f.name = name;
    f.unit = unit;
    f.higher_is_better = higher;
    f.value = summary(value);
    f.baseline_name = baseline_name;
    f.baseline = summary(baseline);
    rep.add(f);
  };
  auto rate = [](const load_result& r) { return r.rps; };
  auto cpu_us = [](const load_result& r) { return r.server_cpu_busy * 1e6 / r.rps; };
  auto load_busy = [](const load_result& r) { return r.load_cpu_busy * 100; };
  add("h1_keepalive_raw_floor", "req/s", true, rate, floor, "nginx_1worker", nginx);
  add("h1_keepalive_vs_raw_floor", "req/s", true, rate, ours, "raw_floor", floor);
  add("h1_keepalive_server_cpu", "us/req", false, cpu_us, ours, "nginx_1worker", nginx);
  add("h1_keepalive_raw_floor_server_cpu", "us/req", false, cpu_us, floor, "nginx_1worker", nginx);
  add("h1_keepalive_loadgen_cpu_busy", "%", false, load_busy, ours, "nginx_1worker", nginx);
  add("h1_keepalive_raw_floor_loadgen_cpu_busy", "%", false, load_busy, floor, "nginx_1worker", nginx);
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  auto opt = bench::parse_options(argc, argv, "  --rounds N   rounds per figure (default 3)\n");
  int rounds = opt.quick ? 1 : 3;
  std::string duration = opt.quick ? "1s" : "5s";
  bench::report rep("http", opt);

  auto dir = fs::temp_directory_path() / ("strata-bench-http-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "pipeline.lua") << "init = function(args)\n  local r = {}\n"
                                      << "  for i = 1, 16 do r[i] = wrk.format(nil, \"/\") end\n"
                                      << "  req = table.concat(r)\nend\n"
                                      << "request = function() return req end\n";

  auto listener = strata::tcp::listener::bind("127.0.0.1:0");
  if (!listener) die("strata listen");
  auto strata_port = listener->local_address()->port();
  std::atomic<bool> stopping{false};
  std::thread server([&] {
    pin_to_cpu(0);
    strata::run(strata_server(*listener, stopping));
  });
  wait_listening(strata_port);

  auto nginx_port = free_port();
  auto nginx = start_nginx(dir, nginx_port);
  auto nghttpd_port = free_port();
  auto nghttpd = start_nghttpd(dir, nghttpd_port);

  struct figure_runs {
    std::vector<load_result> ours, theirs;
  };
  figure_runs keepalive, pipelined, h2;
  std::vector<load_result> floor_runs;
  raw_floor_server floor;
  wait_listening(floor.port);
  for (int round = 0; round < rounds; ++round) {
    if (rep.wanted("h1_keepalive")) {
      keepalive.ours.push_back(wrk(strata_port, duration, ""));
      keepalive.theirs.push_back(wrk(nginx_port, duration, ""));
      floor_runs.push_back(wrk(floor.port, duration, ""));
    }
    if (rep.wanted("h1_pipelined")) {
      pipelined.ours.push_back(wrk(strata_port, duration, (dir / "pipeline.lua").string()));
      pipelined.theirs.push_back(wrk(nginx_port, duration, (dir / "pipeline.lua").string()));
    }
    if (rep.wanted("h2")) {
      h2.ours.push_back(h2load(strata_port, duration));
      h2.theirs.push_back(h2load(nghttpd_port, duration));
    }
  }
  stop(nginx);
  stop(nghttpd);
  stopping = true;
  server.join();
  fs::remove_all(dir);

  if (!keepalive.ours.empty()) {
    add_rps(rep, "h1_keepalive", "nginx_1worker", keepalive.ours, keepalive.theirs, 1.5);
    add_floor(rep, keepalive.ours, keepalive.theirs, floor_runs);
  }
  if (!pipelined.ours.empty())
    add_rps(rep, "h1_pipelined16", "nginx_1worker", pipelined.ours, pipelined.theirs, 1.5);
  if (!h2.ours.empty()) add_rps(rep, "h2_m10", "nghttpd", h2.ours, h2.theirs, 1.0);
  return rep.print("servers on CPU 0, load generators (wrk -t1 -c50, h2load -t1 -c50 -m10) on CPU 1");
}
