// Bound pipelines (udp-bind, unix-dgram-bind): one connection-less endpoint built from a
// spec string receives from many senders, each with its address, and answers each with
// send_to; the checker refuses layers above it; facts are asked through any_datagram.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

deadline soon() { return deadline::after(5s); }

/// exchange_report is what one run of serve_three saw.
struct exchange_report {
  std::map<std::string, std::string> received;  ///< text -> the sender address the endpoint saw
  std::map<std::string, std::string> senders;   ///< text -> the sender's own local address
  std::vector<std::string> answers;             ///< what each sender got back, in sender order
  std::vector<std::string> answered_from;       ///< whom each answer came from
  std::string endpoint_address;
  std::string failure;
};

/// serve_three binds `bound_spec`, has three senders (pipelines made from
/// `sender_spec(endpoint address)`) each send one datagram, receives all three with their
/// senders' addresses, answers each sender with send_to and checks each got its answer.
task<exchange_report> serve_three(std::string bound_spec, std::string (*sender_spec)(const address&)) {
  exchange_report report;
  auto endpoint = strata::bind(bound_spec);
  if (!endpoint) {
    report.failure = "bind: " + endpoint.error().message();
    co_return report;
  }
  auto here = query<fact::local_address>(*endpoint);
  if (!here) {
    report.failure = "local_address: " + here.error().message();
    co_return report;
  }
  report.endpoint_address = here->to_string();
  std::vector<any_connection> senders;
  for (int i = 0; i < 3; ++i) {
    auto c = co_await strata::connect(sender_spec(*here), soon());
    if (!c || !c->is_message()) {
      report.failure = "connect: " + (c ? std::string("not a message socket") : c.error().message());
      co_return report;
    }
    auto local = c->local_address();
    std::string text = "datagram " + std::to_string(i);
    report.senders[text] = local ? local->to_string() : "?";
    if (auto sent = co_await c->message().send(as_bytes(text), soon()); !sent) {
      report.failure = "send: " + sent.error().message();
      co_return report;
    }
    senders.push_back(std::move(*c));
  }
  std::array<std::byte, 256> buf;
  for (int i = 0; i < 3; ++i) {
    auto got = co_await endpoint->recv_from(buf, soon());
    if (!got) {
      report.failure = "recv_from: " + got.error().message();
      co_return report;
    }
    std::string text(as_text(const_buffer(buf.data(), got->size)));
    report.received[text] = got->from.to_string();
    std::string answer = "re: " + text;
    if (auto sent = co_await endpoint->send_to(as_bytes(answer), got->from, soon()); !sent) {
      report.failure = "send_to " + got->from.to_string() + ": " + sent.error().message();
      co_return report;
    }
  }
  for (auto& s : senders) {
    auto n = co_await s.message().recv(buf, soon());
    report.answers.emplace_back(n ? std::string(as_text(const_buffer(buf.data(), *n))) : n.error().message());
    auto peer = s.peer_address();
    report.answered_from.push_back(peer ? peer->to_string() : peer.error().message());
    (void)co_await s.close(soon());
  }
  (void)co_await endpoint->close(soon());
  co_return report;
}

void expect_three_served(const exchange_report& r) {
  ASSERT_TRUE(r.failure.empty()) << r.failure;
  EXPECT_EQ(r.received.size(), 3u);
  EXPECT_EQ(r.received, r.senders) << "each datagram arrives with its own sender's address";
  std::set<std::string> distinct;
  for (const auto& [text, from] : r.received) distinct.insert(from);
  EXPECT_EQ(distinct.size(), 3u) << "three different senders";
  EXPECT_EQ(r.answers, (std::vector<std::string>{"re: datagram 0", "re: datagram 1", "re: datagram 2"}));
  for (const auto& from : r.answered_from) EXPECT_EQ(from, r.endpoint_address);
}

TEST(BoundPipeline, UdpReceivesFromThreeSendersAndAnswersEach) {
  auto report = run(serve_three(
      "udp-bind:127.0.0.1:0", [](const address& a) { return "udp:127.0.0.1:" + std::to_string(a.port()); }));
  expect_three_served(report);
  EXPECT_NE(report.endpoint_address, "127.0.0.1:0") << "the real port after port 0";
}

TEST(BoundPipeline, UnixDgramReceivesFromThreeSendersAndAnswersEach) {
  std::string name = "@strata-bound-test-" + std::to_string(::getpid());
  auto report = run(
      serve_three("unix-dgram-bind:" + name, [](const address& a) { return "unix-dgram:" + a.to_string(); }));
  expect_three_served(report);
  EXPECT_EQ(report.endpoint_address, name);
}

TEST(BoundPipeline, FactsThroughAnyDatagram) {
  auto endpoint = strata::bind("udp-bind:127.0.0.1:0(reuseport=1, rcvbuf=64k)");
  ASSERT_TRUE(endpoint) << endpoint.error().message();
  auto here = query<fact::local_address>(*endpoint);
  ASSERT_TRUE(here);
  EXPECT_EQ(here->kind(), address::family::ipv4);
  EXPECT_NE(here->port(), 0);
  EXPECT_EQ(endpoint->local_address()->to_string(), here->to_string());
  auto max = query<fact::max_message>(*endpoint);
  ASSERT_TRUE(max);
  EXPECT_EQ(*max, udp::max_ipv4_message);
  EXPECT_EQ(query<fact::peer_credentials>(*endpoint).error(), errc::not_supported);
  auto caps = endpoint->runtime_capabilities();
  EXPECT_EQ(caps.connection, connection::less);
  EXPECT_EQ(caps.unit, unit::message);

  // An IPv6 endpoint carries the larger IPv6 datagrams (the entry's refine).
  pipeline_error error;
  auto v6 = pipeline::parse("udp-bind:[::1]:0", error);
  ASSERT_TRUE(v6) << error.message;
  EXPECT_EQ(v6->top().max_message, udp::max_ipv6_message);
  EXPECT_TRUE(v6->is_bound());
  EXPECT_FALSE(v6->is_listener());
  EXPECT_EQ(v6->describe(), "udp-bind:[::1]:0  ->  " + describe(v6->top()) + "\n");
}

TEST(BoundPipeline, CheckerRefusesLayersAboveABoundEndpoint) {
  pipeline_error error;
  std::string text = "udp-bind:127.0.0.1:0 | prefix";
  EXPECT_FALSE(pipeline::parse(text, error));
  EXPECT_EQ(
      error.message,
      "prefix cannot stand on udp-bind:127.0.0.1:0: a bound endpoint is connection-less (it receives from "
      "any sender and sends to any address), and no layer stacks on a bound endpoint yet; for a "
      "connection that layers stack on, use udp or udp-listen");
  EXPECT_EQ(error.position, text.find("prefix"));

  text = "unix-dgram-bind:@x | crlf";
  EXPECT_FALSE(pipeline::parse(text, error));
  EXPECT_NE(
      error.message.find("crlf cannot stand on unix-dgram-bind:@x: a bound endpoint is connection-less"),
      std::string::npos)
      << error.message;
  EXPECT_NE(error.message.find("use unix-dgram or unix-dgram-listen"), std::string::npos) << error.message;

  // The free bind reports the checker's message, naming the operation and the spec.
  auto refused = strata::bind("udp-bind:127.0.0.1:0 | crlf");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::invalid_argument);
  EXPECT_EQ(refused.error().message().rfind("bind udp-bind:127.0.0.1:0 | crlf: crlf cannot stand on", 0), 0u)
      << refused.error().message();

  // An adapter first is told of the transports it can stand on: not the bound ones.
  EXPECT_FALSE(pipeline::parse("prefix | udp-bind:127.0.0.1:0", error));
  EXPECT_EQ(error.message.find("udp-bind"), std::string::npos) << error.message;
}

TEST(BoundPipeline, WrongRolesAndBindErrorsNameTheLayer) {
  pipeline_error error;
  auto bound = pipeline::parse("udp-bind:127.0.0.1:0", error);
  ASSERT_TRUE(bound);
  EXPECT_EQ(bound->listen().error(), errc::invalid_argument);
  auto wrong = run([](const pipeline& p) -> task<std::error_code> {
    auto c = co_await p.connect(soon());
    co_return c.error();
  }(*bound));
  EXPECT_EQ(wrong, errc::invalid_argument);
  auto listener = pipeline::parse("udp-listen:127.0.0.1:0", error);
  ASSERT_TRUE(listener);
  EXPECT_FALSE(listener->is_bound());
  EXPECT_EQ(listener->bind().error(), errc::invalid_argument);
  EXPECT_NE(listener->bind().error().message().find("use listen"), std::string::npos);

  auto first = strata::bind("udp-bind:127.0.0.1:0");
  ASSERT_TRUE(first);
  std::string taken = "udp-bind:" + first->local_address()->to_string();
  auto second = strata::bind(taken);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), std::error_code(EADDRINUSE, std::system_category()));
  EXPECT_EQ(second.error().layer(), "udp-bind");
  EXPECT_EQ(second.error().where(), "bind " + taken + ": udp-bind");
}

}  // namespace
}  // namespace strata
