// A real lossy IP link for tests and benchmarks, without netem: in a forked child that
// unshares its network namespace (we run as root), a TUN device `strata0` with address
// 10.77.0.1/24 and a forwarder thread that reads every IPv4 packet the kernel routes into
// it, drops it with the configured probability, delays it (a one-way delay and an optional
// rate limit with a bounded queue), swaps its source and destination addresses and writes
// it back. Swapping the two addresses keeps the IP header checksum and the TCP/UDP
// checksums (whose pseudo-header sums both) valid, so a socket bound to 10.77.0.1 that
// talks to 10.77.0.2:P reaches the socket bound on 10.77.0.1:P, which sees it as a peer at
// 10.77.0.2 — a real path through the kernel's IP, UDP and TCP code with loss in the
// middle. Only addresses inside the namespace the child creates are used.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace strata::test {

/// netns_local is the address sockets bind to inside the namespace; netns_remote the
/// address they talk to (which the link turns back into netns_local).
inline constexpr const char* netns_local = "10.77.0.1";
inline constexpr const char* netns_remote = "10.77.0.2";

/// netns_link_options describe the link (both directions share it).
struct netns_link_options {
  double loss = 0;                         ///< probability each packet is dropped
  std::chrono::microseconds delay{0};      ///< added to every packet
  std::uint64_t rate_bits_per_second = 0;  ///< 0: no rate limit
  /// queue_packets bounds what waits for the rate limit, in full-size (1500-byte) packets'
  /// transmission time; beyond it packets are dropped (tail drop). The delay line does
  /// not count.
  std::size_t queue_packets = 1000;
  std::uint64_t seed = 1;
};

/// netns_link_counters are what the forwarder did (inside the child).
struct netns_link_counters {
  std::uint64_t forwarded = 0;
  std::uint64_t lost = 0;      ///< dropped by the loss probability
  std::uint64_t overflow = 0;  ///< dropped because the queue was full
  std::uint64_t largest = 0;   ///< the largest packet seen, in bytes
};

/// netns_unavailable is why the link cannot be made here ("" when it can): not root, no
/// /dev/net/tun, unshare refused.
std::string netns_unavailable();

/// run_in_netns forks a child that makes a network namespace with the link and runs
/// `body` in it (on the child's main thread; the forwarder runs on a thread of its own),
/// then exits with body's return value. The parent waits at most `limit` (then kills the
/// child) and returns the child's exit status: 0 for success, 100 + n for a setup failure
/// (the reason on stderr), 200 when it was killed or died by a signal. `counters`, when
/// given, is called in the child after `body` with the forwarder's counters.
int run_in_netns(const netns_link_options& options, const std::function<int()>& body,
                 std::chrono::seconds limit,
                 const std::function<void(const netns_link_counters&)>& counters = {});

}  // namespace strata::test
