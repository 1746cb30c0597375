// bridge_memory: what one idle bridged connection costs `strata bridge -k` in user space,
// and what the process keeps after a burst of connections has come and gone.
//
// The bridge runs as a child (the real CLI): SPEC1 a TCP listener on loopback, SPEC2 a
// Unix socket served by an echo thread of this program. N clients connect, each sends a
// byte that comes back through both legs (so every bridge is established and both of its
// directions have moved data), then all sit idle: the child's resident set over its own
// resident set before the first client, divided by N, is the figure. Then every client
// pushes 16 KiB each way and resets; once the child has closed all its descriptors, its
// resident set is compared with the same baseline.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;

std::string (*bridge_errors)() = nullptr;  // the bridge's latest stderr, once it runs

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bridge_memory: %s: %s\n", what.c_str(), std::strerror(errno));
  if (bridge_errors) std::fprintf(stderr, "the bridge said:\n%s\n", bridge_errors().c_str());
  std::_Exit(1);
}

// resident_kib is VmRSS of `pid` in KiB.
long resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      long kib = 0;
      status >> kib;
      return kib;
    }
    status.ignore(1 << 20, '\n');
  }
  return -1;
}

std::size_t open_descriptors(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    ++n;
  return n;
}

// echo_server answers every byte on every accepted connection of a Unix listener and
// counts connections that ended.
class echo_server {
 public:
  explicit echo_server(const std::string& path) {
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || ::listen(listener_, 4096) < 0)
      die("echo server bind " + path);
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    ::pipe2(stop_, O_CLOEXEC | O_NONBLOCK);
    add(listener_);
    add(stop_[0]);
    thread_ = std::thread([this] { run(); });
  }
  ~echo_server() {
    (void)::write(stop_[1], "x", 1);
    thread_.join();
    ::close(listener_);
    ::close(epoll_);
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  std::size_t accepted() const { return accepted_.load(); }
  std::size_t ended() const { return ended_.load(); }

 private:
  void add(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  }
  void run() {
    std::vector<epoll_event> events(256);
    std::vector<char> buf(64 * 1024);
    for (;;) {
      int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), -1);
      for (int i = 0; i < n; ++i) {
        int fd = events[static_cast<std::size_t>(i)].data.fd;
        if (fd == stop_[0]) return;
        if (fd == listener_) {
          for (;;) {
            int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) break;
            add(c);
            ++accepted_;
          }
          continue;
        }
        ssize_t got = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (got <= 0) {
          if (got < 0 && errno == EAGAIN) continue;
          ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
          ::close(fd);
          ++ended_;
          continue;
        }
        for (ssize_t off = 0; off < got;) {
          ssize_t w = ::send(fd, buf.data() + off, static_cast<std::size_t>(got - off), MSG_NOSIGNAL);
          if (w <= 0) break;
          off += w;
        }
      }
    }
  }

  int listener_ = -1;
  int epoll_ = -1;
  int stop_[2] = {-1, -1};
  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::size_t> ended_{0};
  std::thread thread_;
};

// bridge_child runs `strata bridge -k` and learns its port from stderr.
struct bridge_child {
  pid_t pid = -1;
  int err = -1;
  int port = 0;

  bridge_child(const std::string& cli, const std::string& spec1, const std::string& spec2) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) < 0) die("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
    std::vector<std::string> args{cli, "bridge", "-k", spec1, spec2};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid, cli.c_str(), &actions, nullptr, argv.data(), environ) != 0) die("spawn " + cli);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipefd[1]);
    err = pipefd[0];
    std::string text;
    char c;
    auto until = bench::clock::now() + 10s;
    while (text.find('\n') == std::string::npos && bench::clock::now() < until) {
      pollfd p{err, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0 && ::read(err, &c, 1) == 1) text += c;
    }
    auto colon = text.rfind(':');
    if (text.find("listening on") == std::string::npos || colon == std::string::npos) {
      std::fprintf(stderr, "bridge_memory: the bridge did not start: %s\n", text.c_str());
      std::exit(1);
    }
    port = std::atoi(text.c_str() + colon + 1);
    // Keep draining stderr (a failing connection is reported there): a full pipe would
    // stop the bridge.
    drain = std::thread([this] {
      char buf[4096];
      for (;;) {
        ssize_t n = ::read(err, buf, sizeof buf);
        if (n <= 0) return;
        std::lock_guard lock(mutex);
        errors.append(buf, static_cast<std::size_t>(n));
        if (errors.size() > 64 * 1024) errors.erase(0, errors.size() - 64 * 1024);
      }
    });
  }
  ~bridge_child() {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    drain.join();
    ::close(err);
  }
  std::string stderr_tail() {
    std::lock_guard lock(mutex);
    return errors.size() > 2000 ? errors.substr(errors.size() - 2000) : errors;
  }

  std::thread drain;
  std::mutex mutex;
  std::string errors;
};

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect");
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void exchange(int fd, std::size_t size) {
  std::vector<char> out(size, 'b');
  std::vector<char> in(size);
  std::size_t sent = 0;
  std::size_t got = 0;
  while (got < size) {
    if (sent < size) {
      ssize_t w = ::send(fd, out.data() + sent, std::min<std::size_t>(size - sent, 4096), MSG_NOSIGNAL);
      if (w < 0) die("send");
      sent += static_cast<std::size_t>(w);
    }
    ssize_t r = ::recv(fd, in.data() + got, size - got, sent < size ? MSG_DONTWAIT : 0);
    if (r == 0) die("the bridge closed a connection");
    if (r < 0 && errno != EAGAIN) die("recv");
    if (r > 0) got += static_cast<std::size_t>(r);
  }
}

template <class Pred>
bool wait_for(Pred done, std::chrono::seconds limit) {
  auto until = bench::clock::now() + limit;
  while (!done()) {
    if (bench::clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);  // polling another process's state: no event to wait on
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = bench::parse_options(argc, argv);
  const std::size_t clients = opt.quick ? 100 : 2000;
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;  // both this program and the child hold a descriptor per client
  ::setrlimit(RLIMIT_NOFILE, &lim);
  ::signal(SIGPIPE, SIG_IGN);

  auto dir = std::filesystem::temp_directory_path() / ("strata-bridge-memory-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto sock = (dir / "echo.sock").string();
  bench::report rep("bridge_memory", opt);
  {
    echo_server echo(sock);
    bridge_child bridge(STRATA_CLI_PATH, "tcp-listen:127.0.0.1:0", "unix:" + sock);
    static bridge_child* running = &bridge;
    bridge_errors = [] { return running->stderr_tail(); };
    auto base_fds = open_descriptors(bridge.pid);
    double base_kib = static_cast<double>(resident_kib(bridge.pid));

    std::vector<int> fds;
    for (std::size_t i = 0; i < clients; ++i) {
      fds.push_back(connect_to(bridge.port));
      exchange(fds.back(), 1);
    }
    double idle_kib = static_cast<double>(resident_kib(bridge.pid));
    double per_connection = (idle_kib - base_kib) * 1024.0 / static_cast<double>(clients);

    for (int fd : fds) exchange(fd, 16 * 1024);
    double busy_kib = static_cast<double>(resident_kib(bridge.pid));
    for (int fd : fds) {
      linger reset{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      ::close(fd);
    }
    if (!wait_for([&] { return echo.ended() >= clients && open_descriptors(bridge.pid) <= base_fds; }, 30s)) {
      std::fprintf(stderr, "bridge_memory: the bridge did not close its connections (%zu of %zu ended)\n%s\n",
                   echo.ended(), clients, bridge.stderr_tail().c_str());
      return 1;
    }
    double after_kib = static_cast<double>(resident_kib(bridge.pid));

    auto one = [](double v) {
      bench::stats s;
      s.mean = s.p50 = s.p99 = s.min = s.max = v;
      s.count = 1;
      return s;
    };
    auto figure = [&](std::string name, std::string unit, double value, bool with_baseline) {
      bench::figure f;
      f.name = std::move(name);
      f.unit = std::move(unit);
      f.value = one(value);
      if (with_baseline) {
        f.baseline_name = "rss_before_clients";
        f.baseline = one(base_kib);
      }
      return f;
    };
    auto idle = figure("idle_bridged_connection", "bytes/conn", per_connection, false);
    idle.target_text = "<= 4096 bytes/conn";
    idle.target = 4096;
    rep.add(idle);
    rep.add(figure("rss_after_16k_each_way", "KiB", busy_kib, true));
    auto after = figure("rss_after_burst_closed", "KiB", after_kib, true);
    after.target_text = "<= 2x baseline";
    after.target = 2;
    after.target_on_ratio = true;
    rep.add(after);
    std::printf(
        "%zu clients; bridge RSS before %.0f KiB, idle %.0f KiB, after 16 KiB each way %.0f KiB, "
        "after all reset %.0f KiB\n",
        clients, base_kib, idle_kib, busy_kib, after_kib);
  }
  std::filesystem::remove_all(dir);
  return rep.print();
}
