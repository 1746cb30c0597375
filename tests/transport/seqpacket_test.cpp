// seqpacket: the shared message and listener conformance suites for socketpairs and
// path / abstract listeners, then the seqpacket socket's own behaviour: empty messages,
// half-close and the end of stream, too-small buffers (drop or keep), the size limit,
// descriptor passing, credentials, socket files, and the other processes: socat as a
// third-party peer (the generic socket address form) and the strata CLI.
#include "strata/transport/seqpacket.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "transport/dgram_child.hpp"

using namespace std::chrono_literals;

namespace strata::test {

namespace seqpacket_conformance {

/// scratch_dir is a private directory for this program's socket files, removed at exit.
inline const std::string& scratch_dir() {
  struct dir {
    std::string path;
    dir() {
      char tmpl[] = "/tmp/strata-seqpacket-test-XXXXXX";
      if (::mkdtemp(tmpl)) path = tmpl;
    }
    ~dir() {
      std::error_code ignored;
      if (!path.empty()) std::filesystem::remove_all(path, ignored);
    }
  };
  static dir d;
  return d.path;
}

/// unique_name returns a fresh socket name: a path in scratch_dir() or "@..." abstract.
inline std::string unique_name(bool abstract) {
  static std::atomic<int> counter{0};
  std::string leaf = "q" + std::to_string(counter++);
  if (abstract) return "@strata-seqpacket-test-" + std::to_string(::getpid()) + "-" + leaf;
  return scratch_dir() + "/" + leaf + ".sock";
}

inline task<result<std::pair<seqpacket::socket, seqpacket::socket>>> listener_pair(bool abstract, bool keep,
                                                                                   deadline dl) {
  auto l = seqpacket::listener::bind(unique_name(abstract));
  if (!l) co_return unexpected(l.error());
  auto c = co_await seqpacket::connect(*l->local_address(), dl);
  if (!c) co_return unexpected(c.error());
  auto s = co_await l->accept(dl);
  if (!s) co_return unexpected(s.error());
  c->set_keep_too_large(keep);
  s->set_keep_too_large(keep);
  co_return std::pair<seqpacket::socket, seqpacket::socket>{std::move(*c), std::move(*s)};
}

struct socketpair_drop {
  using message_type = seqpacket::socket;
  static constexpr std::size_t max_message = seqpacket::default_max_message;
  static constexpr bool supports_empty_message = false;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = false;  // the kernel discards the rest
  static task<result<std::pair<seqpacket::socket, seqpacket::socket>>> make_pair(deadline) {
    co_return seqpacket::socket::pair();
  }
};

struct socketpair_keep {
  using message_type = seqpacket::socket;
  static constexpr std::size_t max_message = seqpacket::default_max_message;
  static constexpr bool supports_empty_message = false;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<seqpacket::socket, seqpacket::socket>>> make_pair(deadline) {
    auto p = seqpacket::socket::pair();
    if (p) {
      p->first.set_keep_too_large(true);
      p->second.set_keep_too_large(true);
    }
    co_return p;
  }
};

struct path_listener {
  using message_type = seqpacket::socket;
  static constexpr std::size_t max_message = seqpacket::default_max_message;
  static constexpr bool supports_empty_message = false;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = false;
  static task<result<std::pair<seqpacket::socket, seqpacket::socket>>> make_pair(deadline dl) {
    return listener_pair(false, false, dl);
  }
};

struct abstract_listener_keep {
  using message_type = seqpacket::socket;
  static constexpr std::size_t max_message = seqpacket::default_max_message;
  static constexpr bool supports_empty_message = false;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<seqpacket::socket, seqpacket::socket>>> make_pair(deadline dl) {
    return listener_pair(true, true, dl);
  }
};

using message_types =
    ::testing::Types<socketpair_drop, socketpair_keep, path_listener, abstract_listener_keep>;
INSTANTIATE_TYPED_TEST_SUITE_P(Seqpacket, message_conformance, message_types);

/// as_stream lets the listener suite (written for byte streams) drive seqpacket sockets:
/// each write is one message, each read_some one message (the suite's reads are small
/// and its messages smaller), shutdown_write and close are the socket's own.
class as_stream {
 public:
  explicit as_stream(seqpacket::socket s) : s_(std::move(s)) {}
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) { return s_.recv(buf, dl); }
  task<result<void>> write(const_buffers bufs, deadline dl) { return s_.send(bufs, dl); }
  task<result<void>> shutdown_write(deadline dl) { return s_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return s_.close(dl); }

 private:
  seqpacket::socket s_;
};

class stream_listener {
 public:
  explicit stream_listener(seqpacket::listener l) : l_(std::move(l)) {}
  task<result<as_stream>> accept(deadline dl) {
    auto s = co_await l_.accept(dl);
    if (!s) co_return unexpected(s.error());
    co_return as_stream(std::move(*s));
  }
  result<address> local_address() const { return l_.local_address(); }
  void close() { l_.close(); }

 private:
  seqpacket::listener l_;
};

template <bool Abstract>
struct listener_traits {
  using listener_type = stream_listener;
  static result<stream_listener> make_listener() {
    auto l = seqpacket::listener::bind(unique_name(Abstract));
    if (!l) return unexpected(l.error());
    return stream_listener(std::move(*l));
  }
  static task<result<as_stream>> connect(stream_listener& l, deadline dl) {
    auto where = l.local_address();
    if (!where) co_return unexpected(where.error());
    auto s = co_await seqpacket::connect(*where, dl);
    if (!s) co_return unexpected(s.error());
    co_return as_stream(std::move(*s));
  }
};

using listener_types = ::testing::Types<listener_traits<false>, listener_traits<true>>;
INSTANTIATE_TYPED_TEST_SUITE_P(Seqpacket, listener_conformance, listener_types);

}  // namespace seqpacket_conformance

namespace {

using dgram::child;
using seqpacket_conformance::listener_pair;
using seqpacket_conformance::unique_name;

static_assert(message_socket<seqpacket::socket>);
static_assert(listener<seqpacket::listener>);
static_assert(byte_stream<seqpacket_conformance::as_stream>);

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string text_of(const std::vector<std::byte>& buf, std::size_t n) {
  return std::string(as_text(const_buffer(buf.data(), n)));
}

/// socat_address renders a unix name in socat's generic form for a seqpacket socket:
/// SOCKET-CONNECT:1:0:x<sun_path as hex> (an abstract name starts with a NUL byte; a path
/// carries its terminating NUL), with socktype=5 (SOCK_SEQPACKET).
std::string socat_address(std::string_view kind, const std::string& name) {
  std::string raw = name[0] == '@' ? std::string(1, '\0') + name.substr(1) : name + std::string(1, '\0');
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  return std::string(kind) + ":1:0:x" + hex + ",socktype=5";
}

TEST(Seqpacket, CapabilityRowIsAReliableMessageConnection) {
  constexpr auto caps = seqpacket::socket::capabilities;
  EXPECT_EQ(caps.connection, connection::based);
  EXPECT_EQ(caps.unit, unit::message);
  EXPECT_TRUE(caps.reliable && caps.ordered && caps.fd_passing);
  EXPECT_EQ(caps.domain, domain::ipc);
  EXPECT_EQ(caps.max_message, 212960u);
}

TEST(Seqpacket, EmptyMessagesAreRefused) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto dl = deadline::after(5s);
    auto w = co_await p->first.send(const_buffer{}, dl);
    EXPECT_EQ(w.error(), errc::invalid_argument);
    std::array<int, 1> fds{0};
    auto w2 = co_await p->first.send_fds(const_buffer{}, fds, dl);
    EXPECT_EQ(w2.error(), errc::invalid_argument);
    std::array<std::byte, 4> buf;
    auto r = co_await p->second.recv(buf, deadline::already());
    EXPECT_EQ(r.error(), errc::timed_out) << "nothing was sent";
  });
}

TEST(Seqpacket, TrySendSendsAWholeMessageAndRefusesAnEmptyOne) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto w = p->first.try_send(as_bytes("whole"));
    CO_ASSERT_OK(w);
    EXPECT_TRUE(*w);
    EXPECT_EQ(p->first.try_send(const_buffer{}).error(), errc::invalid_argument);
    std::array<std::byte, 16> buf;
    auto r = co_await p->second.recv(buf, deadline::after(5s));
    CO_ASSERT_OK(r);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *r), "whole");
  });
}

TEST(Seqpacket, HalfCloseEndsTheStreamAfterTheLastMessage) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto dl = deadline::after(5s);
    for (auto t : {"one", "two"}) {
      auto w = co_await a.send(as_bytes(t), dl);
      CO_ASSERT_OK(w);
    }
    auto sh = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto late = co_await a.send(as_bytes("late"), dl);
    EXPECT_FALSE(late);
    std::vector<std::byte> buf(16);
    for (auto t : {"one", "two"}) {
      auto n = co_await b.recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
    for (int i = 0; i < 2; ++i) {
      auto end = co_await b.recv(buf, dl);
      EXPECT_EQ(end.error(), errc::end_of_stream);
    }
    auto sticky = co_await b.recv(buf, deadline::already());
    EXPECT_EQ(sticky.error(), errc::end_of_stream);
    // The other direction still works, and both close in order.
    auto answer = co_await b.send(as_bytes("answer"), dl);
    CO_ASSERT_OK(answer);
    auto n = co_await a.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "answer");
    auto cb = co_await b.close(dl);
    EXPECT_TRUE(cb) << cb.error().message();
    auto end = co_await a.recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    auto ca = co_await a.close(dl);
    EXPECT_TRUE(ca) << ca.error().message();
  });
}

TEST(Seqpacket, APeerThatClosesEndsReadsAndBreaksWrites) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto dl = deadline::after(5s);
    auto c = co_await b.close(deadline::after(50ms));
    (void)c;
    std::array<std::byte, 8> buf;
    auto r = co_await a.recv(buf, dl);
    EXPECT_EQ(r.error(), errc::end_of_stream);
    auto w = co_await a.send(as_bytes("x"), dl);
    EXPECT_EQ(w.error(), errc::broken);
    auto w2 = co_await a.send(as_bytes("x"), dl);
    EXPECT_EQ(w2.error(), errc::broken) << "broken stays broken";
  });
}

TEST(Seqpacket, CloseUnblocksAReceiverAndLaterCallsFailClosed) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](seqpacket::socket& a, event& parked, std::error_code& outcome) -> task<void> {
        std::array<std::byte, 8> buf;
        parked.set();
        auto r = co_await a.recv(buf, deadline::after(5s));
        outcome = r ? std::error_code{} : r.error();
      }(a, parked, outcome));
      (void)co_await parked.wait(deadline::after(5s));
      // b finishes too, so a's orderly close completes at once.
      auto sh = co_await b.shutdown_write(deadline::after(1s));
      EXPECT_TRUE(sh);
      (void)co_await a.close(deadline::after(1s));
    });
    EXPECT_TRUE(outcome == errc::closed || outcome == errc::end_of_stream) << outcome.message();
    std::array<std::byte, 8> buf;
    auto r = co_await a.recv(buf, deadline::after(1s));
    EXPECT_EQ(r.error(), errc::closed);
    auto w = co_await a.send(as_bytes("x"), deadline::after(1s));
    EXPECT_EQ(w.error(), errc::closed);
    auto c = co_await a.close(deadline::after(1s));
    EXPECT_EQ(c.error(), errc::closed);
  });
}

TEST(Seqpacket, TooSmallBufferDiscardsTheRestOrKeepsTheMessage) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    for (bool keep : {false, true}) {
      auto p = seqpacket::socket::pair();
      CO_ASSERT_OK(p);
      auto& [a, b] = *p;
      b.set_keep_too_large(keep);
      auto w = co_await a.send(as_bytes("0123456789"), dl);
      CO_ASSERT_OK(w);
      auto w2 = co_await a.send(as_bytes("next"), dl);
      CO_ASSERT_OK(w2);
      std::vector<std::byte> small(4);
      auto r = co_await b.recv(small, dl);
      EXPECT_EQ(r.error(), errc::message_too_large);
      std::vector<std::byte> buf(32);
      auto again = co_await b.recv(buf, dl);
      CO_ASSERT_OK(again);
      EXPECT_EQ(text_of(buf, *again), keep ? "0123456789" : "next") << "keep=" << keep;
    }
  });
}

TEST(Seqpacket, MaxMessageIsTheSendBufferLessThirtyTwo) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    ::getsockopt(a.native_handle(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
    EXPECT_EQ(a.max_message(), static_cast<std::size_t>(sndbuf) - 32);
    EXPECT_EQ(a.runtime_capabilities().max_message, a.max_message());
    auto dl = deadline::after(5s);
    std::vector<std::byte> big(a.max_message() + 1, std::byte{'s'});
    auto over = co_await a.send(const_buffer(big), dl);
    EXPECT_EQ(over.error(), errc::message_too_large);
    auto fine = co_await a.send(as_bytes("still fine"), dl);
    EXPECT_TRUE(fine) << "message_too_large does not break the direction";
    std::vector<std::byte> buf(32);
    auto n = co_await b.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "still fine");
  });
}

TEST(Seqpacket, DescriptorsTravelWithExactlyTheirMessage) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto dl = deadline::after(5s);
    int pipe_fds[2];
    CO_ASSERT_TRUE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    std::array<int, 1> out{pipe_fds[1]};
    auto w0 = co_await a.send(as_bytes("before"), dl);
    CO_ASSERT_OK(w0);
    auto w1 = co_await a.send_fds(as_bytes("carrier"), out, dl);
    CO_ASSERT_OK(w1);
    auto w2 = co_await a.send(as_bytes("after"), dl);
    CO_ASSERT_OK(w2);
    ::close(pipe_fds[1]);
    std::vector<std::byte> buf(32);
    std::vector<std::vector<int>> per_message;
    for (auto t : {"before", "carrier", "after"}) {
      std::vector<int> fds;
      auto n = co_await b.recv_fds(buf, fds, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
      per_message.push_back(fds);
    }
    EXPECT_TRUE(per_message[0].empty());
    CO_ASSERT_EQ(per_message[1].size(), 1u);
    EXPECT_TRUE(per_message[2].empty());
    EXPECT_EQ(::write(per_message[1][0], "via fd", 6), 6);
    ::close(per_message[1][0]);
    char got[16];
    EXPECT_EQ(::read(pipe_fds[0], got, sizeof got), 6);
    EXPECT_EQ(::read(pipe_fds[0], got, sizeof got), 0);
    ::close(pipe_fds[0]);
  });
}

TEST(Seqpacket, CredentialsOfPairsConnectionsAndMessages) {
  run_test([]() -> task<void> {
    auto p = seqpacket::socket::pair();
    CO_ASSERT_OK(p);
    auto cred = p->first.peer_credentials();
    CO_ASSERT_OK(cred);
    EXPECT_EQ(cred->pid, ::getpid());
    auto dl = deadline::after(5s);
    auto q = co_await listener_pair(true, false, dl);
    CO_ASSERT_OK(q);
    auto client_side = q->first.peer_credentials();
    CO_ASSERT_OK(client_side);
    EXPECT_EQ(client_side->pid, ::getpid());
    auto server_side = q->second.peer_credentials();
    CO_ASSERT_OK(server_side);
    EXPECT_EQ(server_side->uid, ::getuid());
    CO_ASSERT_OK(q->second.set_pass_credentials(true));
    auto w = co_await q->first.send(as_bytes("cred"), dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(16);
    envelope env;
    auto n = co_await q->second.recv_with(buf, env, dl);
    CO_ASSERT_OK(n);
    CO_ASSERT_TRUE(env.credentials.has_value());
    EXPECT_EQ(env.credentials->pid, ::getpid());
    seqpacket::socket closed;
    EXPECT_EQ(closed.peer_credentials().error(), errc::closed);
  });
}

TEST(Seqpacket, ListenerSocketFiles) {
  auto path = unique_name(false);
  {
    auto l = seqpacket::listener::bind(path);
    ASSERT_TRUE(l) << l.error().message();
    EXPECT_TRUE(exists(path));
    EXPECT_EQ(l->local_address()->to_string(), path);
    auto second = seqpacket::listener::bind(path);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error(), std::errc::address_in_use);
    l->close();
    EXPECT_FALSE(exists(path));
  }
  {
    // A stale file is replaced; the listener removes it when destroyed.
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
    auto where = address::unix_path(path);
    ASSERT_EQ(::bind(fd, where->data(), static_cast<socklen_t>(where->size())), 0);
    ::close(fd);
    EXPECT_EQ(seqpacket::listener::bind(path, {.unlink_stale = false}).error(), std::errc::address_in_use);
    auto l = seqpacket::listener::bind(path);
    ASSERT_TRUE(l) << l.error().message();
    seqpacket::listener moved = std::move(*l);
    EXPECT_TRUE(exists(path));
  }
  EXPECT_FALSE(exists(path));
}

TEST(Seqpacket, ConnectErrors) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto missing = co_await seqpacket::connect(unique_name(false), dl);
    EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
    auto nobody = co_await seqpacket::connect(unique_name(true), dl);
    EXPECT_EQ(nobody.error(), std::errc::connection_refused);
    // A unix stream listener is not a seqpacket one.
    auto stream_name = unique_name(true);
    auto stream = uds::listener::bind(stream_name);
    CO_ASSERT_OK(stream);
    auto wrong = co_await seqpacket::connect(stream_name, dl);
    EXPECT_FALSE(wrong);
    auto ip = co_await seqpacket::connect(*address::parse_ip("127.0.0.1:1"), dl);
    EXPECT_EQ(ip.error(), errc::invalid_argument);
    auto too_long = co_await seqpacket::connect(std::string(200, 'x'), dl);
    EXPECT_EQ(too_long.error(), errc::invalid_argument);
  });
}

TEST(Seqpacket, SpecsConnectAndListen) {
  run_test([]() -> task<void> {
    auto name = unique_name(true);
    auto l = strata::listen("seqpacket-listen:" + name + "(backlog=4)");
    CO_ASSERT_OK(l);
    auto dl = deadline::after(5s);
    auto spec = "seqpacket:" + name;
    auto c = co_await strata::connect(spec, dl);
    CO_ASSERT_OK(c);
    CO_ASSERT_TRUE(c->is_message());
    auto caps = c->runtime_capabilities();
    EXPECT_EQ(caps.connection, connection::based);
    EXPECT_EQ(caps.max_message, 212960u);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    auto w = co_await c->message().send(as_bytes("via spec"), dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(16);
    // The entries keep a message that does not fit, so the caller can retry.
    auto small = co_await a->message().recv(mutable_buffer(buf.data(), 3), dl);
    EXPECT_EQ(small.error(), errc::message_too_large);
    auto n = co_await a->message().recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "via spec");
    auto sh = co_await c->message().shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto end = co_await a->message().recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    pipeline_error error;
    EXPECT_FALSE(pipeline::parse("seqpacket:@", error));
    EXPECT_FALSE(pipeline::parse("seqpacket-listen:@x(backlog=0)", error));
    EXPECT_FALSE(pipeline::parse("seqpacket:@x | crlf", error)) << "crlf needs a stream";
  });
}

// -- other processes: socat and the strata CLI --------------------------------------------

TEST(Seqpacket, SocatConnectsToOurListener) {
  run_test([]() -> task<void> {
    auto name = unique_name(true);
    auto l = seqpacket::listener::bind(name);
    CO_ASSERT_OK(l);
    auto peer = child::spawn({"socat", "-", socat_address("SOCKET-CONNECT", name)});
    CO_ASSERT_OK(peer);
    auto dl = deadline::after(5s);
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    auto w = co_await peer->write_stdin("from socat\n", dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(64);
    auto n = co_await s->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "from socat\n");
    auto back = co_await s->send(as_bytes("from strata\n"), dl);
    CO_ASSERT_OK(back);
    auto got = co_await peer->read_stdout_until("from strata\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; socat said: " << peer->err();
    // socat's stdin ends: it shuts its side down, we read the end and close in order.
    peer->close_stdin();
    auto end = co_await s->recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    auto c = co_await s->close(dl);
    EXPECT_TRUE(c) << c.error().message();
    auto code = co_await peer->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 0) << peer->err();
  });
}

TEST(Seqpacket, SocatListenerEchoesOurMessages) {
  run_test([]() -> task<void> {
    auto name = unique_name(false);
    auto echo = child::spawn({"socat", "-d", "-d", socat_address("SOCKET-LISTEN", name), "PIPE"});
    CO_ASSERT_OK(echo);
    auto dl = deadline::after(5s);
    auto ready = co_await echo->read_stderr_until("listening", dl);
    CO_ASSERT_OK(ready);
    auto c = co_await seqpacket::connect(name, dl);
    CO_ASSERT_OK(c);
    std::vector<std::byte> buf(64);
    for (auto t : {"first message", "second message"}) {
      auto w = co_await c->send(as_bytes(t), dl);
      CO_ASSERT_OK(w);
      auto n = co_await c->recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
    auto sh = co_await c->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto end = co_await c->recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    auto code = co_await echo->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 0) << echo->err();
  });
}

TEST(Seqpacket, CliListenWithOurApiAsClient) {
  run_test([]() -> task<void> {
    auto name = unique_name(true);
    auto cli = child::spawn({dgram::cli_path(), "listen", "seqpacket-listen:" + name});
    CO_ASSERT_OK(cli);
    auto dl = deadline::after(5s);
    auto ready = co_await cli->read_stderr_until("listening on " + name, dl);
    CO_ASSERT_OK(ready);
    auto c = co_await seqpacket::connect(name, dl);
    CO_ASSERT_OK(c);
    auto w = co_await c->send(as_bytes("hello cli"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await cli->read_stdout_until("hello cli\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; strata said: " << cli->err();
    auto w2 = co_await cli->write_stdin("hello api\n", dl);
    CO_ASSERT_OK(w2);
    std::vector<std::byte> buf(64);
    auto n = co_await c->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "hello api");
    // Our end of stream ends the CLI's connection; it exits 0 once its stdin ends too.
    auto sh = co_await c->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    cli->close_stdin();
    auto end = co_await c->recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    auto code = co_await cli->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 0) << cli->err();
  });
}

TEST(Seqpacket, CliConnectToOurListener) {
  run_test([]() -> task<void> {
    auto name = unique_name(false);
    auto l = seqpacket::listener::bind(name);
    CO_ASSERT_OK(l);
    auto cli = child::spawn({dgram::cli_path(), "connect", "seqpacket:" + name});
    CO_ASSERT_OK(cli);
    auto dl = deadline::after(5s);
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    auto cred = s->peer_credentials();
    CO_ASSERT_OK(cred);
    EXPECT_EQ(cred->pid, cli->pid()) << "SO_PEERCRED names the other process";
    auto w = co_await cli->write_stdin("line one\nline two\n", dl);
    CO_ASSERT_OK(w);
    cli->close_stdin();
    std::vector<std::byte> buf(64);
    for (auto t : {"line one", "line two"}) {
      auto n = co_await s->recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
    auto end = co_await s->recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream) << "the CLI shut down its side when stdin ended";
    auto back = co_await s->send(as_bytes("bye"), dl);
    CO_ASSERT_OK(back);
    auto c = co_await s->close(dl);
    EXPECT_TRUE(c) << c.error().message();
    auto out = co_await cli->read_stdout_to_end(dl);
    CO_ASSERT_OK(out);
    EXPECT_EQ(cli->out(), "bye\n");
    auto code = co_await cli->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 0) << cli->err();
  });
}

}  // namespace
}  // namespace strata::test
