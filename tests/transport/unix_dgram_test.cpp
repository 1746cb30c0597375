// unix_dgram: the shared message conformance suite for socketpairs and for sockets bound
// to paths and abstract names, then the unix datagram socket's own behaviour: send_to /
// recv_from and sender names, socket files, the size limit (the send buffer), a full
// receiver queue (connected and not), descriptor passing, credentials, the socat-like
// listener, and the other processes: socat as a third-party peer and the strata CLI.
#include "strata/transport/unix_dgram.hpp"

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

namespace unix_dgram_conformance {

/// scratch_dir is a private directory for this program's socket files, removed at exit.
inline const std::string& scratch_dir() {
  struct dir {
    std::string path;
    dir() {
      char tmpl[] = "/tmp/strata-dgram-test-XXXXXX";
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
  std::string leaf = "d" + std::to_string(counter++);
  if (abstract) return "@strata-dgram-test-" + std::to_string(::getpid()) + "-" + leaf;
  return scratch_dir() + "/" + leaf + ".sock";
}

/// bound_pair binds two sockets and connects each to the other.
inline result<std::pair<unix_dgram::connected, unix_dgram::connected>> bound_pair(bool abstract, bool keep) {
  unix_dgram::bind_options options{.keep_too_large = keep};
  auto a = unix_dgram::socket::bind(unique_name(abstract), options);
  if (!a) return unexpected(a.error());
  auto b = unix_dgram::socket::bind(unique_name(abstract), options);
  if (!b) return unexpected(b.error());
  auto a_at = *a->local_address();
  auto b_at = *b->local_address();
  auto ca = std::move(*a).connect(b_at);
  if (!ca) return unexpected(ca.error());
  auto cb = std::move(*b).connect(a_at);
  if (!cb) return unexpected(cb.error());
  return std::pair<unix_dgram::connected, unix_dgram::connected>{std::move(*ca), std::move(*cb)};
}

inline result<std::pair<unix_dgram::connected, unix_dgram::connected>> kept_pair() {
  auto p = unix_dgram::connected::pair();
  if (p) {
    p->first.set_keep_too_large(true);
    p->second.set_keep_too_large(true);
  }
  return p;
}

struct socketpair_drop {
  using message_type = unix_dgram::connected;
  static constexpr std::size_t max_message = unix_dgram::default_max_message;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = false;
  static task<result<std::pair<unix_dgram::connected, unix_dgram::connected>>> make_pair(deadline) {
    co_return unix_dgram::connected::pair();
  }
};

struct socketpair_keep {
  using message_type = unix_dgram::connected;
  static constexpr std::size_t max_message = unix_dgram::default_max_message;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<unix_dgram::connected, unix_dgram::connected>>> make_pair(deadline) {
    co_return kept_pair();
  }
};

struct path_bound {
  using message_type = unix_dgram::connected;
  static constexpr std::size_t max_message = unix_dgram::default_max_message;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = false;
  static task<result<std::pair<unix_dgram::connected, unix_dgram::connected>>> make_pair(deadline) {
    co_return bound_pair(false, false);
  }
};

struct abstract_bound_keep {
  using message_type = unix_dgram::connected;
  static constexpr std::size_t max_message = unix_dgram::default_max_message;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<unix_dgram::connected, unix_dgram::connected>>> make_pair(deadline) {
    co_return bound_pair(true, true);
  }
};

using message_types = ::testing::Types<socketpair_drop, socketpair_keep, path_bound, abstract_bound_keep>;
INSTANTIATE_TYPED_TEST_SUITE_P(UnixDgram, message_conformance, message_types);

}  // namespace unix_dgram_conformance

namespace {

using dgram::child;
using unix_dgram_conformance::unique_name;

static_assert(message_socket<unix_dgram::connected>);
static_assert(datagram_socket<unix_dgram::socket>);
static_assert(listener<unix_dgram::listener>);

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string text_of(const std::vector<std::byte>& buf, std::size_t n) {
  return std::string(as_text(const_buffer(buf.data(), n)));
}

unix_dgram::socket bound(const std::string& name, unix_dgram::bind_options options = {}) {
  auto s = unix_dgram::socket::bind(name, options);
  EXPECT_TRUE(s) << name << ": " << s.error().message();
  return s ? std::move(*s) : unix_dgram::socket{};
}

TEST(UnixDgram, CapabilityRowIsReliableOrderedConnectionless) {
  constexpr auto caps = unix_dgram::socket::capabilities;
  EXPECT_EQ(caps.connection, connection::less);
  EXPECT_EQ(caps.unit, unit::message);
  EXPECT_TRUE(caps.reliable && caps.ordered && caps.fd_passing);
  EXPECT_EQ(caps.domain, domain::ipc);
  EXPECT_EQ(caps.max_message, 212960u);
}

TEST(UnixDgram, SendToAndRecvFromNameTheSender) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    for (bool abstract : {false, true}) {
      auto server_name = unique_name(abstract);
      auto client_name = unique_name(abstract);
      auto server = bound(server_name);
      auto client = bound(client_name);
      EXPECT_EQ(server.local_address()->to_string(), server_name);
      auto w = co_await client.send_to(as_bytes("question"), *server.local_address(), dl);
      CO_ASSERT_OK(w);
      std::vector<std::byte> buf(64);
      auto r = co_await server.recv_from(buf, dl);
      CO_ASSERT_OK(r);
      EXPECT_EQ(text_of(buf, r->size), "question");
      EXPECT_EQ(r->from.to_string(), client_name);
      auto back = co_await server.send_to(as_bytes("answer"), r->from, dl);
      CO_ASSERT_OK(back);
      auto r2 = co_await client.recv_from(buf, dl);
      CO_ASSERT_OK(r2);
      EXPECT_EQ(text_of(buf, r2->size), "answer");
    }
    // An unbound sender is "(unnamed)"; an autobound one gets a kernel-chosen abstract name.
    auto server = bound(unique_name(true));
    auto unnamed = unix_dgram::socket::open(false);
    CO_ASSERT_OK(unnamed);
    auto autobound = unix_dgram::socket::open(true);
    CO_ASSERT_OK(autobound);
    std::vector<std::byte> buf(64);
    auto w1 = co_await unnamed->send_to(as_bytes("1"), *server.local_address(), dl);
    CO_ASSERT_OK(w1);
    auto r1 = co_await server.recv_from(buf, dl);
    CO_ASSERT_OK(r1);
    EXPECT_EQ(r1->from.to_string(), "(unnamed)");
    auto w2 = co_await autobound->send_to(as_bytes("2"), *server.local_address(), dl);
    CO_ASSERT_OK(w2);
    auto r2 = co_await server.recv_from(buf, dl);
    CO_ASSERT_OK(r2);
    EXPECT_EQ(r2->from.kind(), address::family::unix_abstract);
    EXPECT_EQ(r2->from, *autobound->local_address());
  });
}

TEST(UnixDgram, SocketFilesAreOwnedReplacedWhenStaleAndNeverStolen) {
  auto path = unique_name(false);
  {
    auto s = bound(path);
    EXPECT_TRUE(exists(path));
    auto second = unix_dgram::socket::bind(path);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error(), std::errc::address_in_use);
    EXPECT_TRUE(exists(path)) << "a failed bind must not remove the live socket's file";
  }
  EXPECT_FALSE(exists(path)) << "the socket removes its file when destroyed";
  // A stale file (its socket gone without removing it) is replaced by default.
  {
    int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    auto where = address::unix_path(path);
    ASSERT_EQ(::bind(fd, where->data(), static_cast<socklen_t>(where->size())), 0);
    ::close(fd);
  }
  ASSERT_TRUE(exists(path));
  auto kept = unix_dgram::socket::bind(path, {.unlink_stale = false});
  EXPECT_EQ(kept.error(), std::errc::address_in_use);
  auto s = unix_dgram::socket::bind(path);
  ASSERT_TRUE(s) << s.error().message();
  run_test([&]() -> task<void> {
    auto closed = co_await s->close(deadline::after(1s));
    EXPECT_TRUE(closed);
  });
  EXPECT_FALSE(exists(path));
}

TEST(UnixDgram, MaxMessageIsTheSendBufferLessThirtyTwo) {
  run_test([]() -> task<void> {
    auto p = unix_dgram::connected::pair();
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    ::getsockopt(a.native_handle(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
    EXPECT_EQ(a.max_message(), static_cast<std::size_t>(sndbuf) - 32);
    EXPECT_EQ(a.runtime_capabilities().max_message, a.max_message());
    auto dl = deadline::after(5s);
    std::vector<std::byte> big(a.max_message() + 1, std::byte{'m'});
    auto over = co_await a.send(const_buffer(big), dl);
    EXPECT_EQ(over.error(), errc::message_too_large);
    auto at = co_await a.send(const_buffer(big.data(), a.max_message()), dl);
    CO_ASSERT_OK(at);
    std::vector<std::byte> buf(big.size());
    auto n = co_await b.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, a.max_message());
    // A smaller send buffer lowers the limit, and max_message follows.
    int small = 4096;
    ::setsockopt(a.native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ::getsockopt(a.native_handle(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
    EXPECT_EQ(a.max_message(), static_cast<std::size_t>(sndbuf) - 32);
    auto over2 = co_await a.send(const_buffer(big.data(), a.max_message() + 1), dl);
    EXPECT_EQ(over2.error(), errc::message_too_large);
  });
}

// fill_then_wait fills a receiver's queue from a connected sender, with sends whose
// deadline has passed or with try_send, then checks that a send that waits for room
// completes once the receiver takes one message, after the others and in order.
void fill_then_wait(bool with_try_send) {
  run_test([with_try_send]() -> task<void> {
    auto server = bound(unique_name(true));
    auto c = unix_dgram::connect(*server.local_address());
    CO_ASSERT_OK(c);
    auto dl = deadline::after(5s);
    // The receiver's queue holds net.unix.max_dgram_qlen (10 here) messages from a sender
    // it is not connected back to; the kernel accepts one more, then the sender waits.
    int sent = 0;
    for (; sent < 100; ++sent) {
      const auto message = "m" + std::to_string(sent);
      if (with_try_send) {
        auto w = c->try_send(as_bytes(message));
        CO_ASSERT_OK(w);
        if (!*w) break;  // it would wait: nothing was sent
      } else {
        auto w = co_await c->send(as_bytes(message), deadline::already());
        if (!w) {
          EXPECT_EQ(w.error(), errc::timed_out);
          break;
        }
      }
    }
    EXPECT_GE(sent, 10);
    EXPECT_LT(sent, 100);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([&]() -> task<void> {
        auto w = co_await c->send(as_bytes("late"), dl);
        EXPECT_TRUE(w) << w.error().message();
      });
      std::vector<std::byte> buf(16);
      for (int i = 0; i <= sent; ++i) {
        auto r = co_await server.recv_from(buf, dl);
        CO_ASSERT_OK(r);
        EXPECT_EQ(text_of(buf, r->size), i < sent ? "m" + std::to_string(i) : std::string("late"));
      }
    });
    auto again = c->try_send(as_bytes("again"));
    CO_ASSERT_OK(again);
    EXPECT_TRUE(*again) << "the queue has room again";
  });
}

TEST(UnixDgram, AConnectedSenderWaitsForRoomInAFullQueue) { fill_then_wait(false); }

// try_send says when send would wait, and sends nothing then.
TEST(UnixDgram, TrySendSaysWhenItWouldWait) { fill_then_wait(true); }

TEST(UnixDgram, AnUnconnectedSenderAlsoWaitsForRoom) {
  run_test([]() -> task<void> {
    auto server = bound(unique_name(true));
    auto to = *server.local_address();
    auto sender = unix_dgram::socket::open();
    CO_ASSERT_OK(sender);
    auto dl = deadline::after(5s);
    int sent = 0;
    for (; sent < 100; ++sent) {
      auto w = co_await sender->send_to(as_bytes("x"), to, deadline::already());
      if (!w) {
        EXPECT_EQ(w.error(), errc::timed_out);
        break;
      }
    }
    EXPECT_LT(sent, 100);
    auto start = deadline::clock::now();
    auto w = co_await sender->send_to(as_bytes("x"), to, deadline::after(30ms));
    EXPECT_EQ(w.error(), errc::timed_out);
    EXPECT_GE(elapsed_since(start), 30ms);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](unix_dgram::socket& sender, const address& to, deadline dl) -> task<void> {
        auto w = co_await sender.send_to(as_bytes("y"), to, dl);
        EXPECT_TRUE(w) << w.error().message();
      }(*sender, to, dl));
      std::vector<std::byte> buf(16);
      for (int i = 0; i <= sent; ++i) {
        auto r = co_await server.recv_from(buf, dl);
        CO_ASSERT_OK(r);
      }
    });
  });
}

TEST(UnixDgram, DescriptorsTravelWithTheirMessage) {
  run_test([]() -> task<void> {
    auto p = unix_dgram::connected::pair();
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto dl = deadline::after(5s);
    int pipe_fds[2];
    CO_ASSERT_TRUE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    std::array<int, 1> out{pipe_fds[1]};
    auto w0 = co_await a.send(as_bytes("plain"), dl);
    CO_ASSERT_OK(w0);
    auto w1 = co_await a.send_fds(as_bytes("with fd"), out, dl);
    CO_ASSERT_OK(w1);
    ::close(pipe_fds[1]);
    std::vector<std::byte> buf(32);
    std::vector<int> fds;
    auto n0 = co_await b.recv_fds(buf, fds, dl);
    CO_ASSERT_OK(n0);
    EXPECT_EQ(text_of(buf, *n0), "plain");
    EXPECT_TRUE(fds.empty()) << "descriptors belong to the message they were sent with";
    auto n1 = co_await b.recv_fds(buf, fds, dl);
    CO_ASSERT_OK(n1);
    EXPECT_EQ(text_of(buf, *n1), "with fd");
    CO_ASSERT_EQ(fds.size(), 1u);
    EXPECT_NE(::fcntl(fds[0], F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_EQ(::write(fds[0], "through", 7), 7);
    ::close(fds[0]);
    char got[16] = {};
    EXPECT_EQ(::read(pipe_fds[0], got, sizeof got), 7);
    EXPECT_EQ(std::string(got, 7), "through");
    EXPECT_EQ(::read(pipe_fds[0], got, sizeof got), 0) << "every write end is closed";
    ::close(pipe_fds[0]);

    // A plain recv of a message with descriptors closes them.
    CO_ASSERT_TRUE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    out[0] = pipe_fds[1];
    auto w2 = co_await a.send_fds(as_bytes("dropped fd"), out, dl);
    CO_ASSERT_OK(w2);
    ::close(pipe_fds[1]);
    auto n2 = co_await b.recv(buf, dl);
    CO_ASSERT_OK(n2);
    EXPECT_EQ(::read(pipe_fds[0], got, sizeof got), 0) << "the kernel closed the unread descriptor";
    ::close(pipe_fds[0]);

    // send_fds_to from a connection-less socket, recv_with on the other side.
    auto server = bound(unique_name(true));
    auto sender = unix_dgram::socket::open();
    CO_ASSERT_OK(sender);
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    std::array<int, 1> one{devnull};
    auto w3 = co_await sender->send_fds_to(as_bytes("to a name"), one, *server.local_address(), dl);
    CO_ASSERT_OK(w3);
    ::close(devnull);
    envelope env;
    auto n3 = co_await server.recv_with(buf, env, dl);
    CO_ASSERT_OK(n3);
    EXPECT_EQ(text_of(buf, *n3), "to a name");
    EXPECT_EQ(env.from, *sender->local_address());
    CO_ASSERT_EQ(env.fds.size(), 1u);
    struct stat st {};
    EXPECT_EQ(::fstat(env.fds[0], &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    ::close(env.fds[0]);
    std::vector<int> too_many(uds::max_fds_per_message + 1, 0);
    auto refused = co_await a.send_fds(as_bytes("x"), too_many, dl);
    EXPECT_EQ(refused.error(), errc::invalid_argument);
  });
}

TEST(UnixDgram, CredentialsFromPairsAndFromPassCred) {
  run_test([]() -> task<void> {
    auto p = unix_dgram::connected::pair();
    CO_ASSERT_OK(p);
    auto cred = p->first.peer_credentials();
    CO_ASSERT_OK(cred);
    EXPECT_EQ(cred->pid, ::getpid());
    EXPECT_EQ(cred->uid, ::getuid());
    // A datagram connect records no credentials...
    auto server = bound(unique_name(true), {.pass_credentials = true});
    auto c = unix_dgram::connect(*server.local_address());
    CO_ASSERT_OK(c);
    EXPECT_EQ(c->peer_credentials().error(), errc::not_supported);
    // ...but with SO_PASSCRED every message carries its sender's, checked by the kernel.
    auto dl = deadline::after(5s);
    auto w = co_await c->send(as_bytes("who am I"), dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(32);
    envelope env;
    auto n = co_await server.recv_with(buf, env, dl);
    CO_ASSERT_OK(n);
    CO_ASSERT_TRUE(env.credentials.has_value());
    EXPECT_EQ(env.credentials->pid, ::getpid());
    EXPECT_EQ(env.credentials->gid, ::getgid());
    unix_dgram::connected closed;
    EXPECT_EQ(closed.peer_credentials().error(), errc::closed);
  });
}

TEST(UnixDgram, APeerThatClosesIsNoticedBySend) {
  run_test([]() -> task<void> {
    auto server = unix_dgram::socket::bind(unique_name(false));
    CO_ASSERT_OK(server);
    auto c = unix_dgram::connect(*server->local_address());
    CO_ASSERT_OK(c);
    auto dl = deadline::after(5s);
    auto closed = co_await server->close(dl);
    CO_ASSERT_OK(closed);
    auto w = co_await c->send(as_bytes("anyone?"), dl);
    EXPECT_EQ(w.error(), std::errc::connection_refused) << w.error().message();
    auto w2 = co_await c->send(as_bytes("still there?"), dl);
    EXPECT_EQ(w2.error(), std::errc::not_connected) << w2.error().message();
    std::array<std::byte, 8> buf;
    auto r = co_await c->recv(buf, deadline::after(10ms));
    EXPECT_EQ(r.error(), errc::timed_out) << "datagrams have no end of stream";
    auto missing = unix_dgram::connect(unique_name(false));
    EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
    auto nobody = unix_dgram::connect(unique_name(true));
    EXPECT_EQ(nobody.error(), std::errc::connection_refused);
    EXPECT_EQ(unix_dgram::connect(std::string(200, 'x')).error(), errc::invalid_argument);
    EXPECT_EQ(unix_dgram::connect(*address::parse_ip("127.0.0.1:1")).error(), errc::invalid_argument);
  });
}

// -- the listener ------------------------------------------------------------------------

TEST(UnixDgram, ListenerAcceptsTheFirstSenderOnce) {
  run_test([]() -> task<void> {
    auto name = unique_name(false);
    auto l = unix_dgram::listener::bind(name);
    CO_ASSERT_OK(l);
    EXPECT_EQ(l->local_address()->to_string(), name);
    auto dl = deadline::after(5s);
    auto past = co_await l->accept(deadline::already());
    EXPECT_EQ(past.error(), errc::timed_out);
    auto first = unix_dgram::connect(name);
    CO_ASSERT_OK(first);
    auto stranger = unix_dgram::socket::open();
    CO_ASSERT_OK(stranger);
    for (auto t : {"one", "two"}) {
      auto w = co_await first->send(as_bytes(t), dl);
      CO_ASSERT_OK(w);
    }
    auto early = co_await stranger->send_to(as_bytes("stranger"), *l->local_address(), dl);
    CO_ASSERT_OK(early);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    EXPECT_EQ(*a->peer_address(), *first->local_address());
    std::vector<std::byte> buf(32);
    for (auto t : {"one", "two"}) {
      auto n = co_await a->recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
    auto none = co_await a->recv(buf, deadline::already());
    EXPECT_EQ(none.error(), errc::timed_out) << "the stranger's queued message is dropped";
    // After the accept the kernel refuses other senders.
    auto late = co_await stranger->send_to(as_bytes("late"), *l->local_address(), dl);
    EXPECT_EQ(late.error(), std::errc::operation_not_permitted) << late.error().message();
    auto w = co_await a->send(as_bytes("reply"), dl);
    CO_ASSERT_OK(w);
    auto n = co_await first->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "reply");
    auto again = co_await l->accept(dl);
    EXPECT_EQ(again.error(), errc::not_supported);
    EXPECT_EQ(l->local_address()->to_string(), name);
    // The accepted socket owns the file now and removes it when closed.
    l->close();
    EXPECT_TRUE(exists(name));
    auto c = co_await a->close(dl);
    EXPECT_TRUE(c);
    EXPECT_FALSE(exists(name));
  });
}

// With an admission gate the one accept goes to an admitted sender: a refused one is
// answered from the bound name and its message dropped.
TEST(UnixDgram, ListenerGateRefusesBeforeTheOneAccept) {
  run_test([]() -> task<void> {
    auto l = unix_dgram::listener::bind(unique_name(true));
    CO_ASSERT_OK(l);
    l->set_gate([](const address&, const_buffer datagram, std::vector<std::byte>& reply) {
      if (as_text(datagram) == "let me in") return admission::admit;
      auto no = as_bytes("no");
      reply.assign(no.begin(), no.end());
      return admission::refuse;
    });
    auto where = *l->local_address();
    auto dl = deadline::after(5s);
    auto stranger = unix_dgram::socket::open();
    CO_ASSERT_OK(stranger);
    auto w1 = co_await stranger->send_to(as_bytes("hello?"), where, dl);
    CO_ASSERT_OK(w1);
    auto friend_ = unix_dgram::connect(where);
    CO_ASSERT_OK(friend_);
    auto w2 = co_await friend_->send(as_bytes("let me in"), dl);
    CO_ASSERT_OK(w2);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    EXPECT_EQ(*a->peer_address(), *friend_->local_address());
    std::vector<std::byte> buf(32);
    auto n = co_await a->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "let me in");
    auto answer = co_await stranger->recv_from(buf, dl);
    CO_ASSERT_OK(answer);
    EXPECT_EQ(text_of(buf, answer->size), "no");
    EXPECT_EQ(answer->from.to_string(), where.to_string());
    auto stats = l->stats();
    EXPECT_EQ(stats.accepted, 1u);
    EXPECT_EQ(stats.admitted, 1u);
    EXPECT_EQ(stats.refused, 1u);
    EXPECT_EQ(stats.answered, 1u);
  });
}

TEST(UnixDgram, ListenerWithAnUnnamedSenderIsReceiveOnly) {
  run_test([]() -> task<void> {
    auto l = unix_dgram::listener::bind(unique_name(true));
    CO_ASSERT_OK(l);
    auto sender = unix_dgram::socket::open(false);
    CO_ASSERT_OK(sender);
    auto dl = deadline::after(5s);
    auto w = co_await sender->send_to(as_bytes("anonymous"), *l->local_address(), dl);
    CO_ASSERT_OK(w);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    std::vector<std::byte> buf(32);
    auto n = co_await a->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "anonymous");
    auto reply = co_await a->send(as_bytes("cannot"), dl);
    EXPECT_EQ(reply.error(), errc::not_supported);
  });
}

TEST(UnixDgram, ListenerSkipsASenderThatIsGone) {
  run_test([]() -> task<void> {
    auto l = unix_dgram::listener::bind(unique_name(true));
    CO_ASSERT_OK(l);
    auto dl = deadline::after(5s);
    {
      auto gone = unix_dgram::socket::bind(unique_name(true));
      CO_ASSERT_OK(gone);
      auto w = co_await gone->send_to(as_bytes("ghost"), *l->local_address(), dl);
      CO_ASSERT_OK(w);
    }
    auto live = unix_dgram::connect(*l->local_address());
    CO_ASSERT_OK(live);
    auto w = co_await live->send(as_bytes("alive"), dl);
    CO_ASSERT_OK(w);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    std::vector<std::byte> buf(32);
    auto n = co_await a->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "alive");
  });
}

// -- spec strings, socat and the CLI -----------------------------------------------------

TEST(UnixDgram, SpecsConnectAndListen) {
  run_test([]() -> task<void> {
    auto name = unique_name(true);
    auto l = strata::listen("unix-dgram-listen:" + name);
    CO_ASSERT_OK(l);
    auto dl = deadline::after(5s);
    auto spec = "unix-dgram:" + name;
    auto c = co_await strata::connect(spec, dl);
    CO_ASSERT_OK(c);
    CO_ASSERT_TRUE(c->is_message());
    EXPECT_TRUE(c->runtime_capabilities().reliable);
    EXPECT_EQ(c->runtime_capabilities().max_message, 212960u);
    auto w = co_await c->message().send(as_bytes("via spec"), dl);
    CO_ASSERT_OK(w);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    std::vector<std::byte> buf(32);
    auto n = co_await a->message().recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "via spec");
    auto back = co_await a->message().send(as_bytes("back"), dl);
    CO_ASSERT_OK(back);
    auto n2 = co_await c->message().recv(buf, dl);
    CO_ASSERT_OK(n2);
    EXPECT_EQ(text_of(buf, *n2), "back");
    pipeline_error error;
    for (std::string bad :
         {std::string("unix-dgram:@"), "unix-dgram:" + std::string(200, 'x'),
          std::string("unix-dgram:@x(bind=@)"), std::string("unix-dgram-listen:@x(backlog=3)")}) {
      EXPECT_FALSE(pipeline::parse(bad, error)) << bad;
    }
  });
}

TEST(UnixDgram, SocatSendsToOurSocketAndReadsTheReply) {
  run_test([]() -> task<void> {
    auto server = bound(unique_name(false));
    auto reply_to = unique_name(false);
    auto peer = child::spawn(
        {"socat", "-", "UNIX-SENDTO:" + server.local_address()->to_string() + ",bind=" + reply_to});
    CO_ASSERT_OK(peer);
    auto dl = deadline::after(5s);
    auto w = co_await peer->write_stdin("datagram from socat\n", dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(64);
    auto r = co_await server.recv_from(buf, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(text_of(buf, r->size), "datagram from socat\n");
    EXPECT_EQ(r->from.to_string(), reply_to);
    auto back = co_await server.send_to(as_bytes("reply from strata\n"), r->from, dl);
    CO_ASSERT_OK(back);
    auto got = co_await peer->read_stdout_until("reply from strata\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; socat said: " << peer->err();
  });
}

TEST(UnixDgram, SocatRecvfromEchoesOurConnectedSocket) {
  run_test([]() -> task<void> {
    for (bool abstract : {false, true}) {
      auto name = unique_name(abstract);
      // socat names an abstract socket without our '@'.
      auto socat_address = abstract ? "ABSTRACT-RECVFROM:" + name.substr(1) : "UNIX-RECVFROM:" + name;
      auto echo = child::spawn({"socat", "-d", "-d", socat_address, "PIPE"});
      CO_ASSERT_OK(echo);
      auto dl = deadline::after(5s);
      auto ready = co_await echo->read_stderr_until("receiving on", dl);
      CO_ASSERT_OK(ready);
      auto c = unix_dgram::connect(name);
      CO_ASSERT_OK(c);
      auto w = co_await c->send(as_bytes("echo me"), dl);
      CO_ASSERT_OK(w);
      std::vector<std::byte> buf(32);
      auto n = co_await c->recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), "echo me") << socat_address;
    }
  });
}

TEST(UnixDgram, CliListenWithSocatAsClient) {
  run_test([]() -> task<void> {
    auto name = unique_name(false);
    auto cli = child::spawn({dgram::cli_path(), "listen", "unix-dgram-listen:" + name});
    CO_ASSERT_OK(cli);
    auto dl = deadline::after(5s);
    auto ready = co_await cli->read_stderr_until("listening on " + name, dl);
    CO_ASSERT_OK(ready);
    auto peer = child::spawn({"socat", "-", "UNIX-SENDTO:" + name + ",bind=" + unique_name(false)});
    CO_ASSERT_OK(peer);
    auto w = co_await peer->write_stdin("hello strata\n", dl);
    CO_ASSERT_OK(w);
    auto got = co_await cli->read_stdout_until("hello strata\n\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; strata said: " << cli->err();
    auto w2 = co_await cli->write_stdin("hello socat\n", dl);
    CO_ASSERT_OK(w2);
    auto got2 = co_await peer->read_stdout_until("hello socat", dl);
    EXPECT_TRUE(got2) << got2.error().message() << "; socat said: " << peer->err();
    cli->signal(SIGTERM);
    auto code = co_await cli->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 143) << cli->err();
    EXPECT_FALSE(exists(name)) << "the CLI removes the socket file when it stops";
  });
}

TEST(UnixDgram, CliConnectToOurBoundSocket) {
  run_test([]() -> task<void> {
    auto name = unique_name(true);
    auto server = bound(name);
    auto cli = child::spawn({dgram::cli_path(), "connect", "unix-dgram:" + name});
    CO_ASSERT_OK(cli);
    auto dl = deadline::after(5s);
    auto w = co_await cli->write_stdin("first\nsecond\n", dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(32);
    address from;
    for (auto t : {"first", "second"}) {
      auto r = co_await server.recv_from(buf, dl);
      CO_ASSERT_OK(r);
      EXPECT_EQ(text_of(buf, r->size), t);
      from = r->from;
    }
    EXPECT_EQ(from.kind(), address::family::unix_abstract) << "the CLI's socket is autobound";
    auto back = co_await server.send_to(as_bytes("answer"), from, dl);
    CO_ASSERT_OK(back);
    auto got = co_await cli->read_stdout_until("answer\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; strata said: " << cli->err();
    cli->signal(SIGTERM);
    auto code = co_await cli->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 143) << cli->err();
  });
}

}  // namespace
}  // namespace strata::test
