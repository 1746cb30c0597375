// Datagram plumbing written against an installed strata, as a user would write it:
//  1. reliable messages over UDP from spec strings (`udp-listen | reliable` echoes what
//     `udp | reliable` sends);
//  2. the IP/IPC gateway in one process: a TCP client's bytes cross strata::gateway, one
//     mux channel on a Unix socket and strata::gateway_backend to a TCP echo service.
// Exit status 0 when both round trips come back whole. cmake/install_test.cmake builds
// and runs it.
#include <unistd.h>

#include <cstdio>
#include <span>
#include <string>
#include <string_view>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

namespace {

strata::deadline soon() { return strata::deadline::after(5s); }

// -- 1. reliable over UDP ------------------------------------------------------------------

strata::task<void> echo_messages(strata::any_listener& listener) {
  auto conn = co_await listener.accept(soon());
  if (!conn) co_return;
  auto& m = conn->message();
  std::string buf(m.max_message(), '\0');  // reliable carries at most one packet's worth
  for (;;) {
    auto n = co_await m.recv(std::as_writable_bytes(std::span(buf)), soon());
    if (!n) break;  // end_of_stream once the client has closed its side
    auto sent = co_await m.send(strata::as_bytes(std::string_view(buf.data(), *n)), soon());
    if (!sent) break;
  }
  (void)co_await m.close(soon());
}

strata::task<std::string> reliable_round_trip(int port) {
  auto conn = co_await strata::connect("udp:127.0.0.1:" + std::to_string(port) + " | reliable", soon());
  if (!conn) co_return "connect: " + conn.error().message();
  auto m = conn->take_message();
  std::string question = "a message that arrives once, in order";
  auto sent = co_await m.send(strata::as_bytes(question), soon());
  if (!sent) co_return "send: " + sent.error().message();
  std::string answer(m.max_message(), '\0');
  auto n = co_await m.recv(std::as_writable_bytes(std::span(answer)), soon());
  if (!n) co_return "recv: " + n.error().message();
  answer.resize(*n);
  (void)co_await m.close(soon());
  co_return answer;
}

// -- 2. the gateway ------------------------------------------------------------------------

strata::task<void> echo_bytes(strata::any_listener& listener) {
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    for (;;) {
      auto conn = co_await listener.accept(strata::deadline::never());
      if (!conn) co_return;
      s.spawn([](strata::any_connection c) -> strata::task<void> {
        auto& stream = c.stream();
        char buf[4096];
        for (;;) {
          auto n = co_await stream.read_some(std::as_writable_bytes(std::span(buf)), soon());
          if (!n) break;
          auto w = co_await stream.write(strata::as_bytes(std::string_view(buf, *n)), soon());
          if (!w) break;
        }
        (void)co_await c.close(soon());
      }(std::move(*conn)));
    }
  });
}

strata::task<std::string> gateway_round_trip(int port, std::string question) {
  auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), soon());
  if (!conn) co_return "connect: " + conn.error().message();
  auto& stream = conn->stream();
  auto w = co_await stream.write(strata::as_bytes(question), soon());
  if (!w) co_return "write: " + w.error().message();
  std::string answer;
  char buf[4096];
  while (answer.size() < question.size()) {
    auto n = co_await stream.read_some(std::as_writable_bytes(std::span(buf)), soon());
    if (!n) co_return "read: " + n.error().message();
    answer.append(buf, *n);
  }
  (void)co_await conn->close(soon());
  co_return answer;
}

std::optional<strata::pipeline> parsed(const std::string& text) {
  strata::pipeline_error error;
  auto p = strata::pipeline::parse(text, error);
  if (!p) std::fprintf(stderr, "plumbing: %s: %s\n", text.c_str(), error.message.c_str());
  return p;
}

strata::task<int> body() {
  int failures = 0;
  auto messages = strata::listen("udp-listen:127.0.0.1:0 | reliable");
  if (!messages) {
    std::fprintf(stderr, "plumbing: %s\n", messages.error().message().c_str());
    co_return 1;
  }
  std::string reliable_answer;
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn(echo_messages(*messages));
    reliable_answer = co_await reliable_round_trip(messages->local_address()->port());
  });
  if (reliable_answer != "a message that arrives once, in order") {
    std::fprintf(stderr, "plumbing: reliable over udp: %s\n", reliable_answer.c_str());
    ++failures;
  }

  const std::string channel = "/tmp/strata-plumbing-" + std::to_string(::getpid()) + ".sock";
  auto service = strata::listen("tcp-listen:127.0.0.1:0");
  auto channels = strata::listen("unix-listen:" + channel);
  auto clients = strata::listen("tcp-listen:127.0.0.1:0");
  auto to_backend = parsed("unix:" + channel);
  auto to_service =
      service ? parsed("tcp:127.0.0.1:" + std::to_string(service->local_address()->port())) : std::nullopt;
  if (!service || !channels || !clients || !to_backend || !to_service) co_return 1;
  strata::gateway gateway(*to_backend);
  strata::gateway_backend backend(*to_service);
  std::string gateway_answer;
  const std::string question = "bytes from a TCP client, through one multiplexed IPC channel";
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn(echo_bytes(*service));
    s.spawn([&]() -> strata::task<void> { (void)co_await backend.serve(*channels); });
    s.spawn([&]() -> strata::task<void> { (void)co_await gateway.serve(*clients); });
    auto up = co_await gateway.wait_channel(soon());
    if (up) gateway_answer = co_await gateway_round_trip(clients->local_address()->port(), question);
    s.cancel();
  });
  ::unlink(channel.c_str());
  if (gateway_answer != question) {
    std::fprintf(stderr, "plumbing: gateway: %s\n", gateway_answer.c_str());
    ++failures;
  }
  if (gateway.stats().clients != 1 || backend.stats().streams != 1) {
    std::fprintf(stderr, "plumbing: gateway counted %llu clients, backend %llu streams\n",
                 static_cast<unsigned long long>(gateway.stats().clients),
                 static_cast<unsigned long long>(backend.stats().streams));
    ++failures;
  }
  co_return failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
  int code = strata::run(body());
  if (code == 0) std::puts("plumbing: reliable over udp and the gateway answered");
  return code;
}
