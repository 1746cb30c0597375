// The lossy link in a private network namespace (netns_link.hpp).
#include "support/netns_link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <random>
#include <thread>
#include <vector>

namespace strata::test {

namespace {

using clock = std::chrono::steady_clock;

bool set_flags_up(int sock, const char* name, std::string& why) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) {
    why = std::string("SIOCGIFFLAGS ") + name + ": " + std::strerror(errno);
    return false;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) {
    why = std::string("SIOCSIFFLAGS ") + name + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool set_address(int sock, const char* name, unsigned long request, const char* addr, std::string& why) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  ::inet_pton(AF_INET, addr, &sin->sin_addr);
  if (::ioctl(sock, request, &ifr) < 0) {
    why = std::string("setting ") + addr + " on " + name + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

// make_link brings lo up and creates strata0 with 10.77.0.1/24; returns the TUN fd.
int make_link(std::string& why) {
  if (::unshare(CLONE_NEWNET) < 0) {
    why = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
    return -1;
  }
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    why = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int tun = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (tun < 0) {
    why = std::string("open /dev/net/tun: ") + std::strerror(errno);
    ::close(sock);
    return -1;
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, "strata0", IFNAMSIZ - 1);
  bool ok = true;
  if (::ioctl(tun, TUNSETIFF, &ifr) < 0) {
    why = std::string("TUNSETIFF: ") + std::strerror(errno);
    ok = false;
  }
  ok = ok && set_flags_up(sock, "lo", why) && set_address(sock, "strata0", SIOCSIFADDR, netns_local, why) &&
       set_address(sock, "strata0", SIOCSIFNETMASK, "255.255.255.0", why) &&
       set_flags_up(sock, "strata0", why);
  ::close(sock);
  if (!ok) {
    ::close(tun);
    return -1;
  }
  return tun;
}

struct queued {
  clock::time_point due;
  std::vector<unsigned char> packet;
};

// forward runs until `stop` is readable.
void forward(int tun, int stop, const netns_link_options& o, netns_link_counters& counters) {
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> chance(0, 1);
  std::deque<queued> queue;
  clock::time_point next_free = clock::now();
  std::vector<unsigned char> buf(65536);
  const auto max_backlog = o.rate_bits_per_second > 0
                               ? std::chrono::nanoseconds(static_cast<std::int64_t>(
                                     static_cast<double>(o.queue_packets) * 1500 * 8e9 /
                                     static_cast<double>(o.rate_bits_per_second)))
                               : std::chrono::nanoseconds::max();
  for (;;) {
    int timeout = -1;
    if (!queue.empty()) {
      auto wait = std::chrono::duration_cast<std::chrono::microseconds>(queue.front().due - clock::now());
      timeout = wait.count() <= 0 ? 0 : static_cast<int>((wait.count() + 999) / 1000);
    }
    pollfd fds[2] = {{tun, POLLIN, 0}, {stop, POLLIN, 0}};
    int r = ::poll(fds, 2, timeout);
    if (r < 0 && errno != EINTR) return;
    if (fds[1].revents) return;
    // Take everything the kernel has queued.
    for (int i = 0; i < 256; ++i) {
      ssize_t n = ::read(tun, buf.data(), buf.size());
      if (n < 0) break;
      if (n < 20 || (buf[0] >> 4) != 4) continue;  // IPv4 only
      counters.largest = std::max<std::uint64_t>(counters.largest, static_cast<std::uint64_t>(n));
      if (o.loss > 0 && chance(rng) < o.loss) {
        ++counters.lost;
        continue;
      }
      auto now = clock::now();
      auto leave = now;
      if (o.rate_bits_per_second > 0) {
        // The queue is what waits for the rate limit (not the delay line): at most
        // queue_packets full-size packets' worth of transmission time.
        if (next_free > now && next_free - now > max_backlog) {
          ++counters.overflow;
          continue;
        }
        leave = std::max(now, next_free);
        auto tx = std::chrono::nanoseconds(static_cast<std::int64_t>(
            static_cast<double>(n) * 8e9 / static_cast<double>(o.rate_bits_per_second)));
        next_free = leave + tx;
        leave = next_free;
      }
      queued q{leave + o.delay, std::vector<unsigned char>(buf.begin(), buf.begin() + n)};
      // Swap the IPv4 source (bytes 12-15) and destination (16-19): every checksum holds.
      for (int k = 0; k < 4; ++k) std::swap(q.packet[12 + k], q.packet[16 + k]);
      queue.push_back(std::move(q));
    }
    auto now = clock::now();
    while (!queue.empty() && queue.front().due <= now) {
      auto& p = queue.front().packet;
      if (::write(tun, p.data(), p.size()) == static_cast<ssize_t>(p.size())) ++counters.forwarded;
      queue.pop_front();
    }
  }
}

}  // namespace

std::string netns_unavailable() {
  if (::geteuid() != 0) return "not root (unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN)";
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) return "/dev/net/tun is missing";
  return {};
}

int run_in_netns(const netns_link_options& options, const std::function<int()>& body,
                 std::chrono::seconds limit,
                 const std::function<void(const netns_link_counters&)>& counters) {
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) return 100;
  if (pid == 0) {
    std::string why;
    int tun = make_link(why);
    if (tun < 0) {
      std::fprintf(stderr, "netns link: %s\n", why.c_str());
      std::fflush(stderr);
      ::_exit(101);
    }
    ::fcntl(tun, F_SETFL, ::fcntl(tun, F_GETFL) | O_NONBLOCK);
    int stop = ::eventfd(0, EFD_CLOEXEC);
    netns_link_counters c;
    std::thread forwarder([&] { forward(tun, stop, options, c); });
    int rc = body();
    std::uint64_t one = 1;
    (void)::write(stop, &one, sizeof one);
    forwarder.join();
    if (counters) counters(c);
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(rc);
  }
  // Wait for the child's exit (a pidfd turns readable) or the limit.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  auto until = clock::now() + limit;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (pidfd >= 0) ::close(pidfd);
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 200;
    }
    if (r < 0) return 200;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      if (pidfd >= 0) ::close(pidfd);
      std::fprintf(stderr, "netns link: the child did not finish within %llds\n",
                   static_cast<long long>(limit.count()));
      return 200;
    }
    pollfd p{pidfd, POLLIN, 0};
    // Without a pidfd (old kernels) this polls nothing and waits in slices of 10 ms.
    ::poll(pidfd >= 0 ? &p : nullptr, pidfd >= 0 ? 1 : 0, pidfd >= 0 ? static_cast<int>(left.count()) : 10);
  }
}

}  // namespace strata::test
