// mq: the shared message conformance suite over two queues (mq::duplex), then priority
// order, the system limits and their explanation, a full queue, small receive buffers,
// access modes, close, unlink, forked processes sending with priorities (one burst while
// we receive through the event loop) and receiving ours, and the mq:/mq-listen:
// pipelines and CLI forms.
#include "strata/transport/mq.hpp"

#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/pipe.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"

using namespace std::chrono_literals;

namespace strata::test {

namespace mq_conformance {

/// unique_queue returns a fresh queue name for this process.
inline std::string unique_queue() {
  static std::atomic<int> counter{0};
  return "/strata-mq-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

/// open_pair creates two queues and returns the two sides of a conversation over them;
/// the names are unlinked at once (the queues live while the descriptors are open).
inline result<std::pair<mq::duplex, mq::duplex>> open_pair(mq::attributes attr = {}) {
  auto ab = unique_queue();
  auto ba = unique_queue();
  mq::open_options create{.create = true, .exclusive = true, .attr = attr};
  auto a_out = mq::queue::open(ab, create);
  if (!a_out) return unexpected(a_out.error());
  auto b_out = mq::queue::open(ba, create);
  if (!b_out) return unexpected(b_out.error());
  auto a_in = mq::queue::open(ba, {.mode = mq::access::receive});
  auto b_in = mq::queue::open(ab, {.mode = mq::access::receive});
  (void)mq::unlink(ab);
  (void)mq::unlink(ba);
  if (!a_in) return unexpected(a_in.error());
  if (!b_in) return unexpected(b_in.error());
  return std::pair<mq::duplex, mq::duplex>{mq::duplex(std::move(*a_out), std::move(*a_in)),
                                           mq::duplex(std::move(*b_out), std::move(*b_in))};
}

struct duplex_traits {
  using message_type = mq::duplex;
  static constexpr std::size_t max_message = mq::default_message_size;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<mq::duplex, mq::duplex>>> make_pair(deadline) { co_return open_pair(); }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Mq, message_conformance, ::testing::Types<duplex_traits>);

}  // namespace mq_conformance

namespace {

using mq_conformance::open_pair;
using mq_conformance::unique_queue;

/// scoped_queue creates a queue and unlinks its name when the test ends.
struct scoped_queue {
  std::string name = unique_queue();
  mq::queue q;
  explicit scoped_queue(mq::open_options options = {.create = true, .exclusive = true}) {
    auto r = mq::queue::open(name, options);
    EXPECT_TRUE(r) << r.error().message();
    if (r) q = std::move(*r);
  }
  ~scoped_queue() { (void)mq::unlink(name); }
};

std::string text_of(const std::vector<std::byte>& buf, std::size_t n) {
  return std::string(as_text(const_buffer(buf.data(), n)));
}

TEST(Mq, RowIsConnectionLessPriorityOrderedMpmc) {
  constexpr auto caps = mq::queue::capabilities;
  EXPECT_EQ(caps.connection, connection::less);
  EXPECT_EQ(caps.unit, unit::message);
  EXPECT_TRUE(caps.reliable && caps.priority_ordered);
  EXPECT_FALSE(caps.ordered);
  EXPECT_EQ(caps.topology, topology::mpmc);
  EXPECT_EQ(caps.sharing, sharing::any_process);
  EXPECT_EQ(caps.max_message, 8192u);
}

TEST(Mq, HigherPrioritiesComeFirstAndEqualOnesInOrder) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    scoped_queue s;
    CO_ASSERT_TRUE(s.q.is_open());
    const std::pair<const char*, unsigned> sent[] = {
        {"low-1", 1}, {"high", 5}, {"low-2", 1}, {"top", 9}, {"zero", 0}};
    for (auto [text, prio] : sent) {
      auto w = co_await s.q.send(as_bytes(text), prio, dl);
      CO_ASSERT_OK(w);
    }
    auto n = s.q.queued();
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 5u);
    std::vector<std::byte> buf(8192);
    const std::pair<const char*, unsigned> expected[] = {
        {"top", 9}, {"high", 5}, {"low-1", 1}, {"low-2", 1}, {"zero", 0}};
    for (auto [text, prio] : expected) {
      auto r = co_await s.q.recv_with_priority(buf, dl);
      CO_ASSERT_OK(r);
      EXPECT_EQ(text_of(buf, r->size), text);
      EXPECT_EQ(r->priority, prio);
    }
    auto bad = co_await s.q.send(as_bytes("x"), mq::max_priority + 1, dl);
    EXPECT_EQ(bad.error(), errc::invalid_argument);
  });
}

TEST(Mq, LimitsAreRefusedWithASentenceNamingThem) {
  auto limits = mq::read_system_limits();
  ASSERT_TRUE(limits) << limits.error().message();
  EXPECT_GT(limits->msg_max, 0);
  EXPECT_GT(limits->msgsize_max, 0);
  mq::attributes too_many{.max_messages = limits->msg_max + 1};
  EXPECT_EQ(mq::explain_attributes(too_many),
            "maxmsg " + std::to_string(limits->msg_max + 1) + " exceeds the system limit " +
                std::to_string(limits->msg_max) + " (/proc/sys/fs/mqueue/msg_max)");
  mq::attributes too_big{.message_size = limits->msgsize_max + 1};
  EXPECT_EQ(mq::explain_attributes(too_big),
            "msgsize " + std::to_string(limits->msgsize_max + 1) + " exceeds the system limit " +
                std::to_string(limits->msgsize_max) + " (/proc/sys/fs/mqueue/msgsize_max)");
  EXPECT_EQ(mq::explain_attributes({}), "");
  EXPECT_EQ(mq::explain_attributes({.max_messages = 0}), "maxmsg must be at least 1, got 0");
  // The kernel agrees (this host has no privilege beyond the limits; see PEERS.md).
  auto name = unique_queue();
  auto q = mq::queue::open(name, {.create = true, .attr = too_many});
  if (q) (void)mq::unlink(name);
  EXPECT_EQ(q.error(), errc::invalid_argument);
  auto q2 = mq::queue::open(name, {.create = true, .attr = too_big});
  if (q2) (void)mq::unlink(name);
  EXPECT_EQ(q2.error(), errc::invalid_argument);
}

TEST(Mq, MemoryLimitIsNamedNotReportedAsTooManyOpenFiles) {
  // The kernel refuses a queue whose bytes exceed RLIMIT_MSGQUEUE with EMFILE, the
  // errno of a full descriptor table. Lower the soft limit to 0 for this process, so
  // any creation exceeds it, and expect the limit's name in the message.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_MSGQUEUE, &saved), 0);
  rlimit none = saved;
  none.rlim_cur = 0;
  ASSERT_EQ(::setrlimit(RLIMIT_MSGQUEUE, &none), 0);
  auto name = unique_queue();
  auto q = mq::queue::open(name, {.create = true, .exclusive = true});
  ASSERT_EQ(::setrlimit(RLIMIT_MSGQUEUE, &saved), 0);
  if (q) (void)mq::unlink(name);
  ASSERT_FALSE(q) << "the queue was created despite RLIMIT_MSGQUEUE = 0";
  EXPECT_EQ(q.error(), cause::mq_memory_limit);
  EXPECT_NE(q.error().message().find("RLIMIT_MSGQUEUE"), std::string::npos) << q.error().message();
  EXPECT_TRUE(q.error() == std::errc::too_many_files_open) << "still EMFILE as a condition";
}

TEST(Mq, FullQueueTimesTheSenderOutWithoutSendingAndAnExistingQueueKeepsItsAttributes) {
  run_test([]() -> task<void> {
    scoped_queue s({.create = true, .exclusive = true, .attr = {.max_messages = 3, .message_size = 64}});
    CO_ASSERT_TRUE(s.q.is_open());
    for (int i = 0; i < 3; ++i) {
      auto w = co_await s.q.send(as_bytes("fill"), deadline::already());
      CO_ASSERT_OK(w);
    }
    auto start = deadline::clock::now();
    auto full = co_await s.q.send(as_bytes("one too many"), deadline::after(30ms));
    EXPECT_EQ(full.error(), errc::timed_out);
    EXPECT_GE(elapsed_since(start), 30ms);
    EXPECT_EQ(*s.q.queued(), 3u);
    auto big = co_await s.q.send(const_buffer(std::vector<std::byte>(65)), deadline::already());
    EXPECT_EQ(big.error(), errc::message_too_large);
    // Opening it again (with other attributes) keeps the queue's own.
    auto again = mq::queue::open(s.name, {.create = true, .attr = {.max_messages = 5, .message_size = 100}});
    CO_ASSERT_OK(again);
    auto attr = again->get_attributes();
    CO_ASSERT_OK(attr);
    EXPECT_EQ(attr->max_messages, 3);
    EXPECT_EQ(attr->message_size, 64);
    EXPECT_EQ(again->max_message(), 64u);
    auto excl = mq::queue::open(s.name, {.create = true, .exclusive = true});
    EXPECT_EQ(excl.error(), std::errc::file_exists);
  });
}

TEST(Mq, SmallBuffersGoThroughTheQueueBufferAndKeepWhatDoesNotFit) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    scoped_queue s;
    CO_ASSERT_TRUE(s.q.is_open());
    std::vector<std::byte> hundred(100, std::byte{'h'});
    auto w1 = co_await s.q.send(const_buffer(hundred), 7, dl);
    CO_ASSERT_OK(w1);
    auto w2 = co_await s.q.send(as_bytes("tiny"), 1, dl);
    CO_ASSERT_OK(w2);
    std::vector<std::byte> small(10);
    auto r1 = co_await s.q.recv_with_priority(small, dl);
    EXPECT_EQ(r1.error(), errc::message_too_large);
    EXPECT_EQ(*s.q.queued(), 1u) << "the large message left the queue and is kept by us";
    std::vector<std::byte> enough(100);  // smaller than msgsize, large enough for it
    auto r2 = co_await s.q.recv_with_priority(enough, dl);
    CO_ASSERT_OK(r2);
    EXPECT_EQ(r2->size, 100u);
    EXPECT_EQ(r2->priority, 7u);
    EXPECT_EQ(enough, hundred);
    auto r3 = co_await s.q.recv_with_priority(small, dl);
    CO_ASSERT_OK(r3);
    EXPECT_EQ(text_of(small, r3->size), "tiny");
  });
}

TEST(Mq, AccessModesAnswerNotSupportedAndCloseWakesAReceiver) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    scoped_queue s;
    auto tx = mq::queue::open(s.name, {.mode = mq::access::send});
    CO_ASSERT_OK(tx);
    auto rx = mq::queue::open(s.name, {.mode = mq::access::receive});
    CO_ASSERT_OK(rx);
    std::vector<std::byte> buf(8192);
    auto r = co_await tx->recv(buf, dl);
    EXPECT_EQ(r.error(), errc::not_supported);
    auto w = co_await rx->send(as_bytes("x"), dl);
    EXPECT_EQ(w.error(), errc::not_supported);
    std::error_code outcome;
    co_await with_scope([&](scope& sc) -> task<void> {
      event parked;
      sc.spawn(
          [](mq::queue& q, event& parked, std::vector<std::byte>& buf, std::error_code& out) -> task<void> {
            parked.set();
            auto n = co_await q.recv(buf, deadline::after(5s));
            out = n ? std::error_code{} : n.error();
          }(*rx, parked, buf, outcome));
      (void)co_await parked.wait(dl);
      (void)co_await rx->close(dl);
      co_return;
    });
    EXPECT_EQ(outcome, errc::closed);
    auto after = co_await rx->recv(buf, dl);
    EXPECT_EQ(after.error(), errc::closed);
    EXPECT_EQ((co_await rx->close(dl)).error(), errc::closed);
  });
}

TEST(Mq, UnlinkRemovesTheNameButNotTheOpenQueue) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto name = unique_queue();
    auto q = mq::queue::open(name, {.create = true});
    CO_ASSERT_OK(q);
    auto u = q->unlink();
    CO_ASSERT_OK(u);
    auto gone = mq::queue::open(name, {});
    EXPECT_EQ(gone.error(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(mq::unlink(name).error(), std::errc::no_such_file_or_directory);
    auto w = co_await q->send(as_bytes("still here"), dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(8192);
    auto n = co_await q->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "still here");
    EXPECT_EQ(mq::queue::open("no-slash", {}).error(), errc::invalid_argument);
    EXPECT_EQ(mq::queue::open("/a/b", {}).error(), errc::invalid_argument);
    EXPECT_EQ(mq::unlink("/").error(), errc::invalid_argument);
  });
}

// -- other processes ----------------------------------------------------------------------

// child_send runs in a forked child: blocking mq_send of `count` messages "N" with
// priority N % 4, then _exit (system calls only).
[[noreturn]] void child_send(const char* name, int count) {
  mqd_t q = ::mq_open(name, O_WRONLY);
  if (q == static_cast<mqd_t>(-1)) ::_exit(2);
  for (int i = 0; i < count; ++i) {
    char text[16];
    int len = 0;
    int v = i;
    char digits[16];
    do {
      digits[len++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    for (int k = 0; k < len; ++k) text[k] = digits[len - 1 - k];
    if (::mq_send(q, text, static_cast<std::size_t>(len), static_cast<unsigned>(i % 4)) != 0) ::_exit(3);
  }
  ::_exit(0);
}

TEST(MqProcess, ForkedSenderPrioritiesArriveHighestFirst) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    scoped_queue s;
    CO_ASSERT_TRUE(s.q.is_open());
    pid_t pid = ::fork();
    CO_ASSERT_TRUE(pid >= 0);
    if (pid == 0) child_send(s.name.c_str(), 8);  // fits: 8 <= maxmsg
    int status = 0;
    CO_ASSERT_TRUE(::waitpid(pid, &status, 0) == pid);
    CO_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    std::vector<std::byte> buf(8192);
    std::vector<std::string> got;
    for (int i = 0; i < 8; ++i) {
      auto r = co_await s.q.recv_with_priority(buf, dl);
      CO_ASSERT_OK(r);
      got.push_back(text_of(buf, r->size) + "@" + std::to_string(r->priority));
    }
    EXPECT_EQ(got, (std::vector<std::string>{"3@3", "7@3", "2@2", "6@2", "1@1", "5@1", "0@0", "4@0"}));
  });
}

// child_receive runs in a forked child: mq_timedreceive of three messages, which
// must come as "c"@5, "b"@3, "a"@1; the exit code says which check failed.
[[noreturn]] void child_receive(const char* name) {
  mqd_t q = ::mq_open(name, O_RDONLY);
  if (q == static_cast<mqd_t>(-1)) ::_exit(2);
  const char expected[3] = {'c', 'b', 'a'};
  const unsigned priorities[3] = {5, 3, 1};
  char buf[8192];
  for (int i = 0; i < 3; ++i) {
    unsigned prio = 0;
    timespec until{};
    ::clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;  // never hang the test, whatever happens
    ssize_t n = ::mq_timedreceive(q, buf, sizeof buf, &prio, &until);
    if (n != 1) ::_exit(10 + i);
    if (buf[0] != expected[i] || prio != priorities[i]) ::_exit(20 + i);
  }
  ::_exit(0);
}

TEST(MqProcess, ForkedReceiverGetsOurMessagesHighestPriorityFirst) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    scoped_queue s;
    CO_ASSERT_TRUE(s.q.is_open());
    for (auto [text, prio] : {std::pair{"a", 1u}, std::pair{"b", 3u}, std::pair{"c", 5u}}) {
      auto w = co_await s.q.send(as_bytes(text), prio, dl);
      CO_ASSERT_OK(w);
    }
    pid_t pid = ::fork();
    CO_ASSERT_TRUE(pid >= 0);
    if (pid == 0) child_receive(s.name.c_str());
    int status = 0;
    CO_ASSERT_TRUE(::waitpid(pid, &status, 0) == pid);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10+i: wrong size, 20+i: wrong message or priority at i";
    EXPECT_EQ(*s.q.queued(), 0u);
  });
}

TEST(MqProcess, ForkedSenderOutrunsTheQueueWhileWeReceiveThroughTheLoop) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    scoped_queue s;
    CO_ASSERT_TRUE(s.q.is_open());
    constexpr int count = 200;  // 20 times the queue: the child blocks on a full queue
    pid_t pid = ::fork();
    CO_ASSERT_TRUE(pid >= 0);
    if (pid == 0) child_send(s.name.c_str(), count);
    std::vector<std::byte> buf(8192);
    int received = 0;
    for (; received < count; ++received) {
      auto r = co_await s.q.recv_with_priority(buf, dl);
      if (!r) {
        ADD_FAILURE() << r.error().message();
        break;
      }
    }
    if (received < count) ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_EQ(received, count);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  });
}

// -- pipelines and the CLI ----------------------------------------------------------------

// The typed form of mq-listen:/mq: (transport/mq.hpp): a listener hands out one endpoint
// at a time, closing the listener ends a pending accept, and the queues it created go
// once everything made from them is closed.
TEST(MqEndpoint, ListenerHandsOutOneEndpointAtATimeAndUnlinksWhatItCreated) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    mq::endpoint_options options{.name = unique_queue(), .reply = unique_queue(), .priority = 1};
    auto l = mq::listener::open(options);
    CO_ASSERT_OK(l);
    auto c = mq::connect(options);
    CO_ASSERT_OK(c);
    EXPECT_EQ(c->runtime_capabilities().direction, direction::duplex);
    auto sent = co_await c->send(as_bytes("one"), dl);
    CO_ASSERT_OK(sent);
    auto e = co_await l->accept(dl);
    CO_ASSERT_OK(e);
    std::vector<std::byte> buf(8192);
    auto n = co_await e->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "one");
    sent = co_await c->send(as_bytes("two"), dl);
    CO_ASSERT_OK(sent);
    EXPECT_EQ((co_await l->accept(deadline::after(20ms))).error(), errc::timed_out);  // busy
    auto closed = co_await e->close(dl);
    CO_ASSERT_OK(closed);
    auto next = co_await l->accept(dl);  // the first endpoint is closed: the next one goes
    CO_ASSERT_OK(next);
    n = co_await next->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "two");
    // A simplex endpoint answers not_supported for the missing direction.
    auto simplex = mq::connect({.name = options.name});
    CO_ASSERT_OK(simplex);
    EXPECT_EQ((co_await simplex->recv(buf, dl)).error(), errc::not_supported);
    (void)co_await next->close(dl);
    (void)co_await simplex->close(dl);
    (void)co_await c->close(dl);
    bool ended = false;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](mq::listener& l, bool& ended) -> task<void> {
        auto r = co_await l.accept(deadline::after(5s));
        ended = r.error() == errc::closed;
      }(*l, ended));
      co_await yield();
      l->close();
    });
    EXPECT_TRUE(ended);
    EXPECT_EQ(mq::queue::open(options.name, {}).error(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(mq::queue::open(options.reply, {}).error(), std::errc::no_such_file_or_directory);
  });
}

TEST(MqPipeline, ListenerAndConnectorConverseOverTwoQueues) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto req = unique_queue();
    auto resp = unique_queue();
    auto l = strata::listen("mq-listen:" + req + "(reply=" + resp + ")");
    CO_ASSERT_OK(l);
    EXPECT_EQ(l->local_address().error(), errc::not_supported);
    // accept waits for the first message.
    auto early = co_await l->accept(deadline::after(20ms));
    EXPECT_EQ(early.error(), errc::timed_out);
    auto c = co_await strata::connect("mq:" + req + "(reply=" + resp + ", prio=3)", dl);
    CO_ASSERT_OK(c);
    CO_ASSERT_TRUE(c->is_message());
    auto caps = c->runtime_capabilities();
    EXPECT_EQ(caps.direction, direction::duplex);
    EXPECT_TRUE(caps.ordered);
    EXPECT_EQ(caps.max_message, 8192u);
    auto w = co_await c->message().send(as_bytes("question"), dl);
    CO_ASSERT_OK(w);
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    std::vector<std::byte> buf(8192);
    auto n = co_await s->message().recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "question");
    auto a = co_await s->message().send(as_bytes("answer"), dl);
    CO_ASSERT_OK(a);
    auto back = co_await c->message().recv(buf, dl);
    CO_ASSERT_OK(back);
    EXPECT_EQ(text_of(buf, *back), "answer");
    // One connection at a time: the next accept waits for this one to close.
    auto busy = co_await l->accept(deadline::after(20ms));
    EXPECT_EQ(busy.error(), errc::timed_out);
    (void)co_await s->close(dl);
    (void)co_await c->close(dl);
    l->close();
    // Everything that created the queues is closed: they are gone.
    EXPECT_EQ(mq::queue::open(req, {}).error(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(mq::queue::open(resp, {}).error(), std::errc::no_such_file_or_directory);
  });
}

TEST(MqPipeline, SimplexFormsAndSpecErrors) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto name = unique_queue();
    auto none = co_await strata::connect("mq:" + name, dl);
    EXPECT_EQ(none.error(), std::errc::no_such_file_or_directory) << "mq: opens an existing queue";
    auto made = co_await strata::connect("mq:" + name.substr(1) + "(create=1, msgsize=100, maxmsg=2)", dl);
    CO_ASSERT_OK(made);  // NAME without '/' means /NAME
    EXPECT_EQ(made->runtime_capabilities().direction, direction::simplex);
    EXPECT_EQ(made->runtime_capabilities().max_message, 100u);
    std::vector<std::byte> buf(100);
    auto r = co_await made->message().recv(buf, dl);
    EXPECT_EQ(r.error(), errc::not_supported) << "a send-only connection cannot receive";
    auto w = co_await made->message().send(as_bytes("kept"), dl);
    CO_ASSERT_OK(w);
    (void)co_await made->close(dl);
    auto gone = mq::queue::open(name, {});
    EXPECT_EQ(gone.error(), std::errc::no_such_file_or_directory) << "unlink=1: the creator removed it";

    auto limits = mq::read_system_limits();
    CO_ASSERT_OK(limits);
    pipeline_error error;
    std::string too_many = "mq-listen:/x(maxmsg=" + std::to_string(limits->msg_max + 1) + ")";
    EXPECT_FALSE(pipeline::parse(too_many, error));
    EXPECT_EQ(error.message, "mq-listen: maxmsg " + std::to_string(limits->msg_max + 1) +
                                 " exceeds the system limit " + std::to_string(limits->msg_max) +
                                 " (/proc/sys/fs/mqueue/msg_max)");
    EXPECT_EQ(error.position, too_many.find("maxmsg"));
    EXPECT_FALSE(pipeline::parse("mq:/a/b", error));
    EXPECT_NE(error.message.find("without another '/'"), std::string::npos) << error.message;
    EXPECT_FALSE(pipeline::parse("mq:/a(reply=/a)", error));
    EXPECT_FALSE(pipeline::parse("mq:/a(prio=40000)", error));
    auto p = pipeline::parse("mq-listen:/a(msgsize=1k) | crlf", error);
    EXPECT_FALSE(p) << "crlf needs a stream; mq gives messages";
  });
}

std::vector<std::string> cli(std::initializer_list<std::string> args) {
  std::vector<std::string> argv{STRATA_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

template <class S>
task<result<std::string>> read_line(S& s, deadline dl) {
  std::string out;
  std::array<std::byte, 1> c;
  for (;;) {
    auto n = co_await s.read_some(c, dl);
    if (!n) co_return unexpected(n.error());
    if (c[0] == std::byte{'\n'}) co_return out;
    out.push_back(static_cast<char>(c[0]));
  }
}

TEST(MqCli, ConnectSendsEachLineAsAMessage) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    scoped_queue s;
    CO_ASSERT_TRUE(s.q.is_open());
    auto c = pipe::spawn(cli({"connect", "mq:" + s.name + "(prio=4)"}));
    CO_ASSERT_OK(c);
    auto w = co_await c->write(as_bytes("first\nsecond\n"), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await c->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto st = co_await c->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
    std::vector<std::byte> buf(8192);
    for (const char* want : {"first", "second"}) {
      auto r = co_await s.q.recv_with_priority(buf, dl);
      CO_ASSERT_OK(r);
      EXPECT_EQ(text_of(buf, r->size), want);
      EXPECT_EQ(r->priority, 4u);
    }
  });
}

TEST(MqCli, ListenPrintsEachMessageAsALine) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto name = unique_queue();
    auto l = pipe::spawn(cli({"listen", "mq-listen:" + name}), {.error = pipe::child_stderr::to_stdout});
    CO_ASSERT_OK(l);
    auto banner = co_await read_line(*l, dl);  // the queue exists from here on
    CO_ASSERT_OK(banner);
    EXPECT_EQ(*banner, "listening on mq-listen:" + name);
    auto q = mq::queue::open(name, {.mode = mq::access::send});
    CO_ASSERT_OK(q);
    auto w = co_await q->send(as_bytes("hello listener"), dl);
    CO_ASSERT_OK(w);
    auto line = co_await read_line(*l, dl);
    CO_ASSERT_OK(line);
    EXPECT_EQ(*line, "hello listener");
    // A queue never ends: the listener runs until stopped.
    auto k = l->kill(SIGTERM);
    CO_ASSERT_OK(k);
    auto st = co_await l->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_EQ(*st, (pipe::exit_status{.exited = true, .code = 128 + SIGTERM}));
    EXPECT_EQ(mq::queue::open(name, {}).error(), std::errc::no_such_file_or_directory)
        << "the listener removed the queue it created";
  });
}

}  // namespace
}  // namespace strata::test
