// The two ways a loop waits for descriptors (epoll, io_uring): what differs between them
// must not show. Under io_uring a poll stands in the kernel until it fires or is removed,
// holding the file; a poll reports a half-closed peer whatever it asked for; and its
// completion may arrive after the descriptor's number went to another file. The whole
// suite also runs under the other backend (tests/CMakeLists.txt, STRATA_LOOP).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

struct socket_pair {
  int fd[2] = {-1, -1};
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0); }
  ~socket_pair() {
    for (int f : fd) close_one(f);
  }
  socket_pair(const socket_pair&) = delete;
  socket_pair& operator=(const socket_pair&) = delete;
  static void close_one(int& f) {
    if (f < 0) return;
    if (auto* loop = event_loop::current()) loop->forget_fd(f);
    ::close(f);
    f = -1;
  }
};

std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

std::string backend_name(loop_backend b) { return b == loop_backend::io_uring ? "io_uring" : "epoll"; }

}  // namespace

// GoogleTest prints a failing instance's parameter with this (found by ADL).
void PrintTo(loop_backend b, std::ostream* os) { *os << backend_name(b); }

namespace {

class LoopBackend : public ::testing::TestWithParam<loop_backend> {
 protected:
  // runs `body` on a loop of the backend under test; skips where the kernel refuses
  // io_uring (the loop then runs epoll, which the epoll instance tests already cover).
  template <class Body>
  void run_on_backend(Body body) {
    bool refused = false;
    run(
        [](Body& b, bool& refused_out, loop_backend wanted) -> task<void> {
          if (event_loop::current()->backend() != wanted) {
            refused_out = true;
            co_return;
          }
          co_await b();
        }(body, refused, GetParam()),
        GetParam());
    if (refused) GTEST_SKIP() << "this kernel refuses io_uring (the loop fell back to epoll)";
  }
};

TEST_P(LoopBackend, RunGivesTheLoopTheBackendAskedFor) {
  run_on_backend([this]() -> task<void> {
    EXPECT_EQ(event_loop::current()->backend(), GetParam());
    co_return;
  });
}

// A read wait that timed out leaves its poll standing (io_uring); closing the descriptor
// must still close the socket at once: the peer reads the end of the stream without
// waiting for the loop to run again.
TEST_P(LoopBackend, ACloseAfterATimedOutWaitReachesThePeerAtOnce) {
  run_on_backend([]() -> task<void> {
    socket_pair sp;
    EXPECT_EQ(co_await wait_readable(sp.fd[0], deadline::after(10ms)), make_error_code(errc::timed_out));
    socket_pair::close_one(sp.fd[0]);
    char c;
    EXPECT_EQ(::read(sp.fd[1], &c, 1), 0) << "errno " << errno << ": the socket is still open";
  });
}

// io_uring reports a half-closed peer (POLLRDHUP) to a poll for writability at once and
// for as long as it lasts; a writer waiting for room there must sleep, not spin.
TEST_P(LoopBackend, AWriterWaitingOnAHalfClosedPeerSleeps) {
  run_on_backend([]() -> task<void> {
    socket_pair sp;
    std::array<char, 4096> chunk{};
    while (::write(sp.fd[0], chunk.data(), chunk.size()) > 0) {
    }
    EXPECT_EQ(errno, EAGAIN);
    event_loop::current()->io_drained(sp.fd[0], true);
    EXPECT_EQ(::shutdown(sp.fd[1], SHUT_WR), 0);
    const auto cpu_before = thread_cpu_time();
    EXPECT_EQ(co_await wait_writable(sp.fd[0], deadline::after(200ms)), make_error_code(errc::timed_out));
    // A spinning loop would burn the whole 200 ms.
    EXPECT_LT(thread_cpu_time() - cpu_before, 100ms);
    // Room made by the peer still wakes the writer.
    std::array<char, 65536> sink;
    while (::read(sp.fd[1], sink.data(), sink.size()) > 0) {
    }
    EXPECT_EQ(co_await wait_writable(sp.fd[0], deadline::after(5s)), std::error_code{});
  });
}

// The poll of a closed descriptor may complete after its number went to a new socket:
// that completion must not wake a waiter of the new one.
TEST_P(LoopBackend, AWaitOnAReusedDescriptorNumberIsNotWokenByTheOldOne) {
  run_on_backend([]() -> task<void> {
    auto first = std::make_unique<socket_pair>();
    EXPECT_EQ(co_await wait_readable(first->fd[0], deadline::after(10ms)), make_error_code(errc::timed_out));
    const int old_number = first->fd[0];
    first.reset();  // forget_fd and close both ends: the standing poll is removed
    socket_pair second;
    EXPECT_TRUE(second.fd[0] == old_number || second.fd[1] == old_number)
        << "the kernel gave new numbers; the test would not reuse " << old_number;
    const int reused = second.fd[0] == old_number ? 0 : 1;
    EXPECT_EQ(co_await wait_readable(second.fd[reused], deadline::after(50ms)),
              make_error_code(errc::timed_out));
    EXPECT_EQ(::write(second.fd[1 - reused], "x", 1), 1);
    EXPECT_EQ(co_await wait_readable(second.fd[reused], deadline::after(5s)), std::error_code{});
  });
}

// A wait that timed out leaves its poll standing; the next wait on the descriptor is
// served by it (no second poll), and data wakes it.
TEST_P(LoopBackend, AWaitAfterATimedOutOneIsWokenByData) {
  run_on_backend([]() -> task<void> {
    socket_pair sp;
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(co_await wait_readable(sp.fd[1], deadline::after(5ms)), make_error_code(errc::timed_out));
    }
    std::error_code seen = make_error_code(errc::protocol_error);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([&]() -> task<void> { seen = co_await wait_readable(sp.fd[1], deadline::after(5s)); });
      co_await yield();
      EXPECT_EQ(::write(sp.fd[0], "x", 1), 1);
    });
    EXPECT_EQ(seen, std::error_code{});
  });
}

// Closing a ring that a thread used makes the kernel queue clean-up work on that thread
// later, with a notification that interrupts its next blocking system call; the ring
// stays with the thread for its next loop instead, so blocking calls the program makes
// after run() returns are not interrupted (a recv with SO_RCVTIMEO failed with EINTR).
TEST(LoopBackendRing, BlockingCallsAfterRunAreNotInterrupted) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    loop_backend ran = loop_backend::epoll;
    run(
        [](int fd, loop_backend& backend) -> task<void> {
          backend = event_loop::current()->backend();
          EXPECT_EQ(co_await wait_readable(fd, deadline::after(1ms)), make_error_code(errc::timed_out));
        }(fds[0], ran),
        loop_backend::io_uring);
    if (ran != loop_backend::io_uring) GTEST_SKIP() << "this kernel refuses io_uring";
    timeval patience{0, 300'000};
    ASSERT_EQ(::setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience), 0);
    char c;
    errno = 0;
    EXPECT_EQ(::recv(fds[0], &c, 1, 0), -1);
    EXPECT_EQ(errno, EAGAIN) << std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
  }
}

// Where the kernel refuses io_uring (here a seccomp filter makes io_uring_setup fail, as
// container runtimes do) a loop that asks for it runs epoll, and works; the ring it never
// got is not torn down (that once closed descriptor 0). In a forked child, which also
// drops the copy of its parent's spare ring.
TEST(LoopBackendRing, ARefusedRingFallsBackToEpoll) {
  // A ring of this thread's own first, so that the child inherits a spare one.
  run([]() -> task<void> { co_return; }(), loop_backend::io_uring);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
    if (::fcntl(0, F_GETFD) < 0) ::open("/dev/null", O_RDONLY);  // becomes descriptor 0
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(10);
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) ::_exit(11);
    int status = 0;
    for (int round = 0; round < 2 && status == 0; ++round) {
      status = run(
          []() -> task<int> {
            if (event_loop::current()->backend() != loop_backend::epoll) co_return 12;
            socket_pair sp;
            if (::write(sp.fd[0], "x", 1) != 1) co_return 13;
            if (co_await wait_readable(sp.fd[1], deadline::after(5s))) co_return 14;
            co_return 0;
          }(),
          loop_backend::io_uring);
    }
    if (status == 0 && ::fcntl(0, F_GETFD) < 0 && errno == EBADF) status = 15;  // descriptor 0 was closed
    ::_exit(status);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10/11: no seccomp; 12: not epoll; 13/14: the loop failed; 15: fd 0 closed";
}

INSTANTIATE_TEST_SUITE_P(Backends, LoopBackend,
                         ::testing::Values(loop_backend::epoll, loop_backend::io_uring),
                         [](const auto& info) { return backend_name(info.param); });

}  // namespace
}  // namespace strata
