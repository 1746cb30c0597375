// An in-process lossy message link for tests of protocols over unreliable layers: a
// seeded random generator decides, per datagram, loss, duplication and delay (a random
// extra delay reorders). Two forms:
//   sim_link    one direction in virtual time, for sans-I/O engines (push/pop_due);
//   lossy_pair  two connected message_sockets on the current event loop (real time).
// Everything is deterministic for a seed (the real-time pair up to the timing of the
// loop), so a failing run can be replayed.
#pragma once

#include <openssl/evp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::test {

/// link_config says what a lossy link does to each datagram.
struct link_config {
  double loss = 0;                        ///< probability a datagram is dropped
  double duplicate = 0;                   ///< probability a datagram is delivered twice
  double reorder = 0;                     ///< probability a datagram gets an extra delay of up to `jitter`
  std::chrono::microseconds delay{1000};  ///< one-way delay of every datagram
  std::chrono::microseconds jitter{5000};
  std::uint64_t seed = 1;
  std::size_t max_message = 1200;  ///< larger sends fail with message_too_large
};

/// link_rng makes the per-datagram decisions of one direction.
class link_rng {
 public:
  explicit link_rng(const link_config& c, std::uint64_t salt) : config_(c) {
    std::seed_seq seq{c.seed, salt, std::uint64_t{0x5eed}};
    rng_.seed(seq);
  }
  /// deliveries is the delays after which copies of a datagram arrive (none: lost).
  std::vector<std::chrono::microseconds> deliveries() {
    std::vector<std::chrono::microseconds> out;
    if (chance() < config_.loss) return out;
    out.push_back(one_delay());
    if (chance() < config_.duplicate) out.push_back(one_delay());
    return out;
  }

 private:
  double chance() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  std::chrono::microseconds one_delay() {
    auto d = config_.delay;
    if (chance() < config_.reorder && config_.jitter.count() > 0)
      d += std::chrono::microseconds(
          std::uniform_int_distribution<std::int64_t>(0, config_.jitter.count())(rng_));
    return d;
  }
  link_config config_;
  std::mt19937_64 rng_;
};

/// sim_link is one direction of a lossy link in virtual time.
class sim_link {
 public:
  using time_point = deadline::clock::time_point;
  sim_link(const link_config& c, std::uint64_t salt) : rng_(c, salt) {}

  void push(const_buffer datagram, time_point now) {
    for (auto d : rng_.deliveries()) {
      queue_.emplace(now + d, std::vector<std::byte>(datagram.begin(), datagram.end()));
    }
    ++pushed_;
  }
  /// pop_due takes the next datagram due at `now`, if any.
  std::optional<std::vector<std::byte>> pop_due(time_point now) {
    if (queue_.empty() || queue_.begin()->first > now) return std::nullopt;
    auto v = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    return v;
  }
  time_point next_due() const { return queue_.empty() ? time_point::max() : queue_.begin()->first; }
  std::size_t pushed() const { return pushed_; }
  /// cut drops everything in flight and every later datagram (a dead peer).
  void cut() {
    cut_ = true;
    queue_.clear();
  }
  void push_checked(const_buffer datagram, time_point now) {
    if (!cut_) push(datagram, now);
  }

 private:
  link_rng rng_;
  std::multimap<time_point, std::vector<std::byte>> queue_;
  std::size_t pushed_ = 0;
  bool cut_ = false;
};

namespace detail {
struct lossy_shared {
  explicit lossy_shared(const link_config& c) : config(c), rng{link_rng(c, 1), link_rng(c, 2)} {}
  link_config config;
  link_rng rng[2];
  std::multimap<deadline::clock::time_point, std::vector<std::byte>> inbox[2];
  event arrived[2];
  bool closed[2] = {false, false};
  bool cut = false;
  std::size_t sent[2] = {0, 0};
  std::function<bool(const_buffer)> drop_from[2];  ///< drops what a side sends when true
};
}  // namespace detail

/// lossy_end is one end of a lossy_pair: a message_socket (unreliable, unordered,
/// duplicating). Both ends must live on one thread's loop.
class lossy_end {
 public:
  static constexpr properties capabilities{.connection = connection::less, .unit = unit::message};

  lossy_end(std::shared_ptr<detail::lossy_shared> s, int side) : s_(std::move(s)), side_(side) {}
  lossy_end(lossy_end&&) noexcept = default;
  lossy_end& operator=(lossy_end&&) noexcept = default;

  task<result<void>> send(const_buffers bufs, deadline) {
    if (!s_ || s_->closed[side_]) co_return errc::closed;
    if (bufs.total_size() > s_->config.max_message) co_return errc::message_too_large;
    ++s_->sent[side_];
    if (s_->cut) co_return result<void>{};
    std::vector<std::byte> data;
    bufs.copy_to(data);
    if (s_->drop_from[side_] && s_->drop_from[side_](const_buffer(data))) co_return result<void>{};
    int peer = 1 - side_;
    auto now = deadline::clock::now();
    for (auto d : s_->rng[side_].deliveries()) s_->inbox[peer].emplace(now + d, data);
    s_->arrived[peer].set();
    co_return result<void>{};
  }

  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) {
    auto keep = s_;
    if (!keep || keep->closed[side_]) co_return errc::closed;
    auto& box = keep->inbox[side_];
    for (;;) {
      auto now = deadline::clock::now();
      if (!box.empty() && box.begin()->first <= now) {
        auto& v = box.begin()->second;
        if (v.size() > buf.size()) {
          box.erase(box.begin());
          co_return errc::message_too_large;
        }
        std::size_t n = v.size();
        if (n > 0) std::memcpy(buf.data(), v.data(), n);
        box.erase(box.begin());
        co_return n;
      }
      auto wait = dl;
      if (!box.empty()) wait = deadline::earlier(dl, deadline::at(box.begin()->first));
      keep->arrived[side_].reset();
      auto w = co_await keep->arrived[side_].wait(wait);
      if (keep->closed[side_]) co_return errc::closed;
      if (!w && !(w.error() == errc::timed_out && wait != dl)) co_return unexpected(w.error());
    }
  }

  task<result<void>> close(deadline) {
    if (!s_ || s_->closed[side_]) co_return errc::closed;
    s_->closed[side_] = true;
    s_->arrived[side_].set();
    co_return result<void>{};
  }

  std::size_t max_message() const noexcept { return s_->config.max_message; }
  /// cut makes the link drop everything from now on, both ways (a dead peer).
  void cut() { s_->cut = true; }
  /// drop_sent_if drops every datagram this end sends for which `drop` says true.
  void drop_sent_if(std::function<bool(const_buffer)> drop) { s_->drop_from[side_] = std::move(drop); }
  /// sent counts the datagrams this end sent.
  std::size_t sent() const { return s_->sent[side_]; }

 private:
  std::shared_ptr<detail::lossy_shared> s_;
  int side_;
};

/// lossy_pair makes the two ends of one lossy link.
inline std::pair<lossy_end, lossy_end> lossy_pair(const link_config& c) {
  auto s = std::make_shared<detail::lossy_shared>(c);
  return {lossy_end(s, 0), lossy_end(s, 1)};
}

/// sha256 hashes incrementally (for "every byte in order" checks).
class sha256 {
 public:
  sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~sha256() { EVP_MD_CTX_free(ctx_); }
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;
  void update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  void update(const_buffer b) { update(b.data(), b.size()); }
  std::string hex() {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
      out += digits[md[i] >> 4];
      out += digits[md[i] & 15];
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

/// message_bytes is message number `i` of a test transfer: its size and contents depend on
/// `seed` and `i` only, so sender and receiver agree without sharing state.
inline std::vector<std::byte> message_bytes(std::uint64_t seed, std::uint64_t i, std::size_t max_size) {
  std::mt19937_64 rng(seed * 1000003u + i);
  std::size_t size = std::uniform_int_distribution<std::size_t>(0, max_size)(rng);
  std::vector<std::byte> out(size);
  for (auto& b : out) b = std::byte(rng() & 0xff);
  return out;
}

}  // namespace strata::test
