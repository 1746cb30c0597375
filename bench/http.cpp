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
//
// Placement: every server on CPU 0 (strata's thread by pthread_setaffinity_np, the peers by
// taskset), every load generator on CPU 1. Rounds alternate strata and its peer; a sample
// is one round's requests per second (latency p50/p99 from wrk's distribution). The
// peers are Debian's nginx-light, wrk, nghttp2-server and nghttp2-client (scripts/quickstart
// installs them); the program exits 1 when one is missing or fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

// -- load generators -------------------------------------------------------------------------

struct load_result {
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
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
  auto out = run_to_end(argv);
  load_result r;
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
  lat.name = name + "_latency_p99";
  lat.value = bench::summarize(p99);
  lat.baseline = bench::summarize(bp99);
  rep.add(lat);
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
  for (int round = 0; round < rounds; ++round) {
    if (rep.wanted("h1_keepalive")) {
      keepalive.ours.push_back(wrk(strata_port, duration, ""));
      keepalive.theirs.push_back(wrk(nginx_port, duration, ""));
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

  if (!keepalive.ours.empty())
    add_rps(rep, "h1_keepalive", "nginx_1worker", keepalive.ours, keepalive.theirs, 1.5);
  if (!pipelined.ours.empty())
    add_rps(rep, "h1_pipelined16", "nginx_1worker", pipelined.ours, pipelined.theirs, 1.5);
  if (!h2.ours.empty()) add_rps(rep, "h2_m10", "nghttpd", h2.ours, h2.theirs, 1.0);
  return rep.print("servers on CPU 0, load generators (wrk -t1 -c50, h2load -t1 -c50 -m10) on CPU 1");
}
