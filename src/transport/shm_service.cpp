// The service thread of rings with many members (broadcast, queue): it answers the
// rendezvous while the owner's tasks are busy or idle, and turns the hang-up of a
// member's control connection into a call of `leave`. It shares nothing with the owner's
// thread but the segment (atomics) and eventfds, exactly like a member in another
// process, so the same reasoning covers both.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "io_parts.hpp"
#include "shm_internal.hpp"

namespace strata::shm::detail {
namespace {

// A joining process gets this long to send its request (joiners are served side by side:
// a silent one holds a descriptor, nothing else).
constexpr int request_timeout_ms = 1000;
// How often claims that could not be resolved yet are retried.
constexpr int retry_interval_ms = 5;

// send_hello_fds writes a hello with descriptors in one sendmsg (a fresh connection's
// send buffer always has room for 32 bytes).
bool send_hello_fds(int fd, const hello& h, std::span<const int> fds) noexcept {
  std::array<std::byte, hello_size> wire;
  encode_hello(h, wire);
  iovec iov{wire.data(), wire.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, strata::detail::fd_control_bytes(max_hello_fds)> control{};
  strata::detail::attach_fds(msg, control, fds);
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(wire.size())) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

}  // namespace

result<void> service::start(uds::listener listener, std::vector<int> fds, hooks h) {
  listener_ = std::move(listener);
  int s = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s < 0) return from_errno(errno);
  stop_ = pollable_fd(s);
  int f = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (f < 0) return from_errno(errno);
  fan_out_ = pollable_fd(f);
  int e = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e < 0) return from_errno(errno);
  end_ = pollable_fd(e);
  fds_ = std::move(fds);
  hooks_ = std::move(h);
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

void service::stop() noexcept {
  if (!thread_.joinable()) return;
  wake(stop_.get());
  thread_.join();
  // The thread closed the members' connections; the listener and the stop eventfd
  // are closed by their owners (a path listener removes its socket file).
  listener_.close();
  stop_.close();
  fan_out_.close();
  end_.close();
}

void service::announce_end(std::uint64_t position) noexcept {
  if (!thread_.joinable()) return;
  std::unique_lock lock(end_mutex_);
  if (end_position_) return;
  end_position_ = position;
  wake(end_.get());
  // The thread answers within one turn of its poll loop; the bound only guards against
  // a thread that is gone.
  end_done_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return end_done_; });
}

void service::serve_end() noexcept {
  std::uint64_t count;
  [[maybe_unused]] auto r = ::read(end_.get(), &count, sizeof count);
  {
    std::lock_guard lock(end_mutex_);
    if (!end_position_ || ended_) return;
    ended_ = end_position_;
  }
  for (auto& m : connected_) send_end(m.ctrl.get(), {end_kind::fin, *ended_});
  std::lock_guard lock(end_mutex_);
  end_done_ = true;
  end_done_cv_.notify_all();
}

void service::drop_departed(std::span<const pollfd> member_polls) noexcept {
  for (std::size_t i = std::min(connected_.size(), member_polls.size()); i-- > 0;) {
    auto ev = member_polls[i].revents;
    if (!(ev & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) continue;
    std::uint32_t member = connected_[i].index;
    // The connection is closed before the entry is freed: a member's death is final.
    ::close(connected_[i].ctrl.release());
    connected_.erase(connected_.begin() + static_cast<std::ptrdiff_t>(i));
    if (!hooks_.leave(member)) pending_leaves_.push_back(member);
  }
  members_.store(connected_.size(), std::memory_order_relaxed);
}

void service::serve_fan_out() noexcept {
  std::uint64_t count;
  [[maybe_unused]] auto r = ::read(fan_out_.get(), &count, sizeof count);
  if (hooks_.fan_out) hooks_.fan_out();
}

service::hello_progress service::read_hello(joiner& j) noexcept {
  while (j.got < j.wire.size()) {
    ssize_t n = ::recv(j.conn.get(), j.wire.data() + j.got, j.wire.size() - j.got, MSG_DONTWAIT);
    if (n > 0) {
      j.got += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return hello_progress::partial;
    return hello_progress::failed;  // end of stream before the whole hello, or an error
  }
  return hello_progress::complete;
}

void service::admit(joiner& j) noexcept {
  int fd = j.conn.get();
  auto req = decode_hello(j.wire);
  if (!req) return;
  hello reply;
  reply.kind = hooks_.kind;
  if (req->kind != hooks_.kind) {
    reply.status = hello_status::wrong_kind;
    send_hello_fds(fd, reply, {});
    return;
  }
  auto member = hooks_.join(peer_pid(fd));
  if (!member) {
    reply.status = hello_status::full;
    send_hello_fds(fd, reply, {});
    return;
  }
  reply.member = *member;
  reply.fds = static_cast<std::uint32_t>(fds_.size());
  // Counted before the reply goes out: a member that has its answer is in members().
  members_.store(connected_.size() + 1, std::memory_order_relaxed);
  if (!send_hello_fds(fd, reply, fds_)) {
    members_.store(connected_.size(), std::memory_order_relaxed);
    if (!hooks_.leave(*member)) pending_leaves_.push_back(*member);
    return;
  }
  if (ended_) send_end(fd, {end_kind::fin, *ended_});
  connected_.push_back({std::move(j.conn), *member});
}

void service::serve_joiners(std::span<const pollfd> joiner_polls) noexcept {
  auto now = std::chrono::steady_clock::now();
  for (std::size_t i = std::min(joining_.size(), joiner_polls.size()); i-- > 0;) {
    auto& j = joining_[i];
    bool done = false;
    if (joiner_polls[i].revents) {
      auto progress = read_hello(j);
      if (progress == hello_progress::complete) admit(j);
      done = progress != hello_progress::partial;
    }
    if (!done && now >= j.until) done = true;  // silent for too long
    if (done) joining_.erase(joining_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

void service::accept_joiners() noexcept {
  while (joining_.size() < max_joining) {
    int fd = ::accept4(listener_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      joining_.push_back({pollable_fd(fd),
                          {},
                          0,
                          std::chrono::steady_clock::now() + std::chrono::milliseconds(request_timeout_ms)});
      continue;
    }
    // Out of descriptors (EMFILE...): the connection stays queued and the socket
    // readable; back off instead of spinning on poll.
    int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err != EAGAIN && err != EWOULDBLOCK)
      std::this_thread::sleep_for(std::chrono::milliseconds(retry_interval_ms));
    return;
  }
}

void service::run() noexcept {
  std::vector<pollfd> polled;
  for (;;) {
    polled.clear();
    polled.push_back({stop_.get(), POLLIN, 0});
    polled.push_back({fan_out_.get(), POLLIN, 0});
    polled.push_back({end_.get(), POLLIN, 0});
    // A full set of joiners leaves further connections queued in the kernel.
    polled.push_back(
        {listener_.native_handle(), static_cast<short>(joining_.size() < max_joining ? POLLIN : 0), 0});
    for (auto& m : connected_) polled.push_back({m.ctrl.get(), POLLRDHUP, 0});
    for (auto& j : joining_) polled.push_back({j.conn.get(), POLLIN, 0});
    int timeout = pending_leaves_.empty() ? -1 : retry_interval_ms;
    if (!joining_.empty()) {
      auto first = std::min_element(joining_.begin(), joining_.end(),
                                    [](const joiner& a, const joiner& b) { return a.until < b.until; });
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(first->until - std::chrono::steady_clock::now());
      int ms = static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
      timeout = timeout < 0 ? ms : std::min(timeout, ms);
    }
    int n = ::poll(polled.data(), polled.size(), timeout);
    if (n < 0 && errno != EINTR) break;
    if (!pending_leaves_.empty()) {
      std::erase_if(pending_leaves_, [this](std::uint32_t m) { return hooks_.leave(m); });
    }
    if (n > 0 && polled[0].revents) break;
    if (n > 0 && (polled[1].revents & POLLIN)) serve_fan_out();
    if (n > 0 && (polled[2].revents & POLLIN)) serve_end();
    const std::size_t members = connected_.size();
    auto rest = std::span<const pollfd>(polled).subspan(4);
    // Departures first: an entry freed now can serve a joiner below.
    if (n > 0) drop_departed(rest.first(members));
    serve_joiners(rest.subspan(members));  // also drops the joiners that ran out of time
    if (n > 0 && (polled[3].revents & POLLIN)) accept_joiners();
  }
  for (auto& m : connected_) ::close(m.ctrl.release());
  connected_.clear();
  joining_.clear();
  members_.store(0, std::memory_order_relaxed);
}

}  // namespace strata::shm::detail
