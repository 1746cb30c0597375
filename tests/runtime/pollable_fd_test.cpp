// pollable_fd: the try / wait for readiness / retry loop every fd transport runs through.
// A call that would block parks on the loop, which retries it on each edge; a spurious
// edge parks it again; deadlines, cancellation and close end a parked call with nothing
// consumed.
#include "strata/runtime/pollable_fd.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

using test::call;

struct fd_pair {
  pollable_fd a, b;
  fd_pair() {
    int fd[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0);
    a = pollable_fd(fd[0]);
    b = pollable_fd(fd[1]);
  }
};

ssize_t put(pollable_fd& fd, const char* s, std::size_t n) { return ::send(fd.get(), s, n, MSG_NOSIGNAL); }

TEST(PollableFd, ReadWaitsForDataThenReturnsIt) {
  run([]() -> task<void> {
    fd_pair p;
    std::array<char, 16> buf{};
    result<std::size_t> got = errc::protocol_error;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        got = co_await p.b.perform_read([&] { return ::recv(p.b.get(), buf.data(), buf.size(), 0); },
                                        buf.size(), deadline::after(5s));
      }));
      co_await yield();
      EXPECT_EQ(got.error(), make_error_code(errc::protocol_error));  // parked
      EXPECT_EQ(put(p.a, "hello", 5), 5);
    });
    EXPECT_TRUE(got);
    if (!got) co_return;
    EXPECT_EQ(*got, 5u);
    EXPECT_EQ(std::string_view(buf.data(), 5), "hello");
  }());
}

// A call that still would block after an edge stays parked; the loop retries it on the
// next edge without resuming the task in between.
TEST(PollableFd, SpuriousEdgeParksTheCallAgain) {
  run([]() -> task<void> {
    fd_pair p;
    std::array<char, 16> buf{};
    int calls = 0;
    bool refuse = true;
    result<std::size_t> got = errc::protocol_error;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        got = co_await p.b.perform_read(
            [&]() -> ssize_t {
              ++calls;
              if (refuse) {
                errno = EAGAIN;
                return -1;
              }
              return ::recv(p.b.get(), buf.data(), buf.size(), 0);
            },
            deadline::after(5s));
      }));
      co_await yield();
      EXPECT_EQ(put(p.a, "a", 1), 1);
      while (calls < 2) co_await sleep_for(1ms);  // the edge came and the call refused
      EXPECT_EQ(got.error(), make_error_code(errc::protocol_error));
      refuse = false;
      EXPECT_EQ(put(p.a, "b", 1), 1);
    });
    EXPECT_TRUE(got);
    if (!got) co_return;
    EXPECT_EQ(*got, 2u);
  }());
}

TEST(PollableFd, DeadlineCancelAndCloseEndAParkedCall) {
  run([]() -> task<void> {
    fd_pair p;
    std::array<char, 4> buf{};
    auto read = [&](deadline dl) {
      return p.b.perform_read([&] { return ::recv(p.b.get(), buf.data(), buf.size(), 0); }, dl);
    };
    auto r = co_await read(deadline::after(10ms));
    EXPECT_EQ(r.error(), make_error_code(errc::timed_out));

    result<std::size_t> canceled = errc::protocol_error;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { canceled = co_await read(deadline::after(5s)); }));
      co_await yield();
      s.cancel();
    });
    EXPECT_EQ(canceled.error(), make_error_code(errc::operation_canceled));

    result<std::size_t> closed = errc::protocol_error;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { closed = co_await read(deadline::after(5s)); }));
      co_await yield();
      p.b.abort_waits();
    });
    EXPECT_EQ(closed.error(), make_error_code(errc::closed));
    // Nothing was consumed: the data sent now is all there.
    EXPECT_EQ(put(p.a, "xyz", 3), 3);
    r = co_await read(deadline::after(5s));
    EXPECT_TRUE(r);
    if (!r) co_return;
    EXPECT_EQ(*r, 3u);
    p.b.close();
    r = co_await read(deadline::after(5s));
    EXPECT_EQ(r.error(), make_error_code(errc::closed));
  }());
}

TEST(PollableFd, WriteWaitsForRoom) {
  run([]() -> task<void> {
    fd_pair p;
    std::array<char, 65536> big{};
    // Fill the socket buffer.
    while (put(p.a, big.data(), big.size()) > 0) {
    }
    result<std::size_t> wrote = errc::protocol_error;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        wrote = co_await p.a.perform_write([&] { return put(p.a, "z", 1); }, deadline::after(5s));
      }));
      co_await yield();
      EXPECT_EQ(wrote.error(), make_error_code(errc::protocol_error));
      std::array<char, 65536> sink{};
      while (::recv(p.b.get(), sink.data(), sink.size(), 0) > 0) {
      }
    });
    EXPECT_TRUE(wrote);
    if (!wrote) co_return;
    EXPECT_EQ(*wrote, 1u);
  }());
}

TEST(PollableFd, AdoptMakesTheDescriptorNonBlocking) {
  int fd[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
  auto a = pollable_fd::adopt(fd[0]);
  ASSERT_TRUE(a);
  std::array<char, 1> buf{};
  EXPECT_LT(::recv(a->get(), buf.data(), 1, 0), 0);
  EXPECT_EQ(errno, EAGAIN);
  ::close(fd[1]);
  EXPECT_FALSE(pollable_fd::adopt(-1));
}

}  // namespace
}  // namespace strata
