// Descriptor readiness: wait_readable/wait_writable, forget_fd, and the edge-triggered
// readiness hints (io_ready/io_drained) under short reads and bursty writers, where a lost
// edge would show up as a hang (every wait has a deadline, so as a failure).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

using test::call;

struct socket_pair {
  int fd[2] = {-1, -1};
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0); }
  ~socket_pair() {
    for (int f : fd) close_one(f);
  }
  static void close_one(int& f) {
    if (f < 0) return;
    if (auto* loop = event_loop::current()) loop->forget_fd(f);
    ::close(f);
    f = -1;
  }
};

TEST(IoReadiness, WaitReadableWakesOnData) {
  run([]() -> task<void> {
    socket_pair sp;
    std::error_code seen = make_error_code(errc::protocol_error);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { seen = co_await wait_readable(sp.fd[1], deadline::after(5s)); }));
      co_await yield();
      EXPECT_EQ(seen, make_error_code(errc::protocol_error));  // still waiting
      EXPECT_EQ(::write(sp.fd[0], "x", 1), 1);
    });
    EXPECT_EQ(seen, std::error_code{});
  }());
}

// The loop watches writability only while writes block: a write edge that finds no
// writer waiting drops the interest (Unix sockets raise one each time the peer reads),
// and the next writer that waits must still be woken. Three rounds of block, wake, drop.
TEST(IoReadiness, WriterIsWokenAfterTheWriteInterestWasDropped) {
  run([]() -> task<void> {
    socket_pair sp;
    auto* loop = event_loop::current();
    std::array<char, 4096> chunk{};
    auto fill = [&] {
      while (::write(sp.fd[0], chunk.data(), chunk.size()) > 0) {
      }
      EXPECT_EQ(errno, EAGAIN);
      loop->io_drained(sp.fd[0], true);
    };
    auto drain = [&] {
      std::array<char, 65536> sink;
      while (::read(sp.fd[1], sink.data(), sink.size()) > 0) {
      }
    };
    for (int round = 0; round < 3; ++round) {
      SCOPED_TRACE(round);
      fill();
      std::error_code seen = make_error_code(errc::protocol_error);
      co_await with_scope([&](scope& s) -> task<void> {
        s.spawn(call([&]() -> task<void> { seen = co_await wait_writable(sp.fd[0], deadline::after(5s)); }));
        co_await yield();
        EXPECT_EQ(seen, make_error_code(errc::protocol_error));  // still waiting
        drain();
      });
      EXPECT_EQ(seen, std::error_code{});
      // Traffic with nobody waiting to write: the peer's reads raise write edges that the
      // loop sees while it sleeps, and it stops watching writability.
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(::write(sp.fd[0], "x", 1), 1);
        drain();
        (void)co_await sleep_for(1ms);  // let the loop poll (and see the edge)
      }
    }
  }());
}

TEST(IoReadiness, WaitReadableTimesOut) {
  run([]() -> task<void> {
    socket_pair sp;
    auto start = deadline::clock::now();
    auto ec = co_await wait_readable(sp.fd[1], deadline::after(15ms));
    EXPECT_EQ(ec, make_error_code(errc::timed_out));
    EXPECT_GE(deadline::clock::now() - start, 15ms);
  }());
}

TEST(IoReadiness, WaitWritableOnAFreshSocketCompletes) {
  run([]() -> task<void> {
    socket_pair sp;
    EXPECT_EQ(co_await wait_writable(sp.fd[0], deadline::after(5s)), std::error_code{});
  }());
}

TEST(IoReadiness, SecondWaiterOnOneDirectionIsRefused) {
  run([]() -> task<void> {
    socket_pair sp;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { (void)co_await wait_readable(sp.fd[1], deadline::after(5s)); }));
      co_await yield();
      EXPECT_EQ(co_await wait_readable(sp.fd[1], deadline::after(5s)),
                make_error_code(errc::invalid_argument));
      // The other direction is independent.
      EXPECT_EQ(co_await wait_writable(sp.fd[1], deadline::after(5s)), std::error_code{});
      s.cancel();
    });
  }());
}

TEST(IoReadiness, WaitingOnABadDescriptorIsAnErrorNotAnAbort) {
  run([]() -> task<void> {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_EQ(co_await wait_readable(fds[0], deadline::after(1s)),
              std::error_code(EBADF, std::system_category()));
    EXPECT_EQ(co_await wait_writable(-1, deadline::after(1s)), make_error_code(errc::invalid_argument));
  }());
}

TEST(IoReadiness, ForgetFdWakesWaitersWithClosed) {
  run([]() -> task<void> {
    socket_pair sp;
    std::error_code seen = make_error_code(errc::protocol_error);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { seen = co_await wait_readable(sp.fd[1], deadline::after(5s)); }));
      co_await yield();
      event_loop::current()->forget_fd(sp.fd[1]);
    });
    EXPECT_EQ(seen, make_error_code(errc::closed));
    // Registration starts afresh: waiting again works.
    EXPECT_EQ(::write(sp.fd[0], "x", 1), 1);
    EXPECT_EQ(co_await wait_readable(sp.fd[1], deadline::after(5s)), std::error_code{});
  }());
}

TEST(IoReadiness, PeerCloseWakesAReader) {
  run([]() -> task<void> {
    socket_pair sp;
    std::error_code seen = make_error_code(errc::protocol_error);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { seen = co_await wait_readable(sp.fd[1], deadline::after(5s)); }));
      co_await yield();
      socket_pair::close_one(sp.fd[0]);
    });
    EXPECT_EQ(seen, std::error_code{});
    char c;
    EXPECT_EQ(::read(sp.fd[1], &c, 1), 0);
  }());
}

// pattern_byte is the i-th byte of the test stream: any loss, duplication or reordering
// shows up as a mismatch.
std::byte pattern_byte(std::size_t i) { return static_cast<std::byte>((i * 131 + (i >> 8)) & 0xff); }

// read_all reads `total` bytes with random buffer sizes (often larger than what is
// available, so reads come back short and clear the readiness hint).
task<std::size_t> read_all(tcp::stream& s, std::size_t total, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> buf(8192);
  std::size_t got = 0;
  auto dl = deadline::after(10s);
  while (got < total) {
    std::size_t want = 1 + rng() % buf.size();
    auto n = co_await s.read_some(mutable_buffer(buf.data(), want), dl);
    if (!n) {
      ADD_FAILURE() << "read_some after " << got << " of " << total << " bytes: " << n.error().message();
      co_return got;
    }
    for (std::size_t i = 0; i < *n; ++i) {
      if (buf[i] != pattern_byte(got + i)) {
        ADD_FAILURE() << "byte " << got + i << " differs";
        co_return got;
      }
    }
    got += *n;
  }
  co_return got;
}

struct connected {
  tcp::stream client, server;
};

task<result<connected>> connect_pair() {
  auto l = tcp::listener::bind("127.0.0.1:0");
  if (!l) co_return unexpected(l.error());
  auto where = "127.0.0.1:" + std::to_string(l->local_address()->port());
  auto c = co_await tcp::connect(where, deadline::after(5s));
  if (!c) co_return unexpected(c.error());
  auto a = co_await l->accept(deadline::after(5s));
  if (!a) co_return unexpected(a.error());
  co_return connected{std::move(*c), std::move(*a)};
}

TEST(IoReadiness, ShortReadsWithABurstyWriterOnTheSameLoop) {
  constexpr std::size_t total = 1 << 20;
  auto got = run([]() -> task<std::size_t> {
    auto pair = co_await connect_pair();
    if (!pair) {
      ADD_FAILURE() << pair.error().message();
      co_return 0;
    }
    std::size_t got = 0;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        std::mt19937 rng(1);
        std::vector<std::byte> chunk;
        std::size_t sent = 0;
        while (sent < total) {
          // A burst of a few writes, then a pause of a few loop turns or a short sleep.
          int writes = 1 + static_cast<int>(rng() % 4);
          for (int w = 0; w < writes && sent < total; ++w) {
            std::size_t n = std::min<std::size_t>(total - sent, 1 + rng() % 20000);
            chunk.resize(n);
            for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern_byte(sent + i);
            auto r = co_await pair->client.write(const_buffer(chunk.data(), n), deadline::after(10s));
            if (!r) {
              ADD_FAILURE() << "write: " << r.error().message();
              co_return;
            }
            sent += n;
          }
          if (rng() % 8 == 0) {
            (void)co_await sleep_for(std::chrono::microseconds(100));
          } else {
            for (int y = static_cast<int>(rng() % 3); y > 0; --y) co_await yield();
          }
        }
      }));
      got = co_await read_all(pair->server, total, 2);
    });
    co_return got;
  }());
  EXPECT_EQ(got, total);
}

TEST(IoReadiness, ShortReadsWithABurstyWriterOnAnotherThread) {
  // The writer runs on its own thread with blocking writes in bursts, so data arrives
  // at any moment relative to this loop's reads and epoll_wait calls.
  constexpr std::size_t total = 1 << 20;
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  std::thread writer([fd = fds[0]] {
    std::mt19937 rng(3);
    std::vector<std::byte> chunk;
    std::size_t sent = 0;
    while (sent < total) {
      std::size_t n = std::min<std::size_t>(total - sent, 1 + rng() % 3000);
      chunk.resize(n);
      for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern_byte(sent + i);
      std::size_t off = 0;
      while (off < n) {
        auto w = ::write(fd, chunk.data() + off, n - off);
        if (w <= 0) return;
        off += static_cast<std::size_t>(w);
      }
      sent += n;
      if (rng() % 4 == 0) std::this_thread::yield();
    }
  });
  auto got = run([](int fd) -> task<std::size_t> {
    // tcp::stream is only the owner of a stream descriptor here; the socket is AF_UNIX.
    auto s = tcp::stream::adopt(fd);
    if (!s) co_return 0;
    co_return co_await read_all(*s, total, 4);
  }(fds[1]));
  writer.join();
  ::close(fds[0]);
  EXPECT_EQ(got, total);
}

TEST(IoReadiness, DataAndHangUpInOneEdgeStillReportEndOfStream) {
  // The peer's last bytes and its FIN arrive before the loop polls, so one edge reports
  // both; the short read that takes the bytes must not make the next read wait for an
  // edge that will never come.
  auto outcome = run([]() -> task<std::error_code> {
    auto pair = co_await connect_pair();
    if (!pair) co_return pair.error();
    std::error_code end = make_error_code(errc::protocol_error);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        std::array<std::byte, 100> buf;
        std::size_t got = 0;
        for (;;) {
          auto n = co_await pair->server.read_some(buf, deadline::after(2s));
          if (!n) {
            end = n.error();
            break;
          }
          got += *n;
        }
        EXPECT_EQ(got, 3u);
      }));
      co_await yield();  // the reader waits for its first edge
      (void)co_await pair->client.write(as_bytes("abc"), deadline::after(1s));
      (void)co_await pair->client.shutdown_write(deadline::after(1s));
    });
    co_return end;
  }());
  EXPECT_EQ(outcome, make_error_code(errc::end_of_stream));
}

TEST(IoReadiness, PingPongOfSmallMessagesNeverStalls) {
  // Many tiny exchanges: each read consumes everything available, so every round depends
  // on a fresh readiness edge.
  constexpr int rounds = 2000;
  auto done = run([]() -> task<int> {
    auto pair = co_await connect_pair();
    if (!pair) co_return 0;
    int finished = 0;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        std::array<std::byte, 64> buf;
        for (int i = 0; i < rounds; ++i) {
          auto n = co_await pair->server.read_some(buf, deadline::after(5s));
          if (!n) {
            ADD_FAILURE() << "server read " << i << ": " << n.error().message();
            co_return;
          }
          if (!co_await pair->server.write(const_buffer(buf.data(), *n), deadline::after(5s))) co_return;
        }
      }));
      std::array<std::byte, 64> buf;
      for (int i = 0; i < rounds; ++i) {
        if (!co_await pair->client.write(as_bytes("ping"), deadline::after(5s))) break;
        std::size_t got = 0;
        while (got < 4) {
          auto n =
              co_await pair->client.read_some(mutable_buffer(buf.data(), buf.size()), deadline::after(5s));
          if (!n) {
            ADD_FAILURE() << "client read " << i << ": " << n.error().message();
            co_return;
          }
          got += *n;
        }
        ++finished;
      }
    });
    co_return finished;
  }());
  EXPECT_EQ(done, rounds);
}

}  // namespace
}  // namespace strata
