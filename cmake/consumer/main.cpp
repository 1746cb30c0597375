// A program outside the tree, built against an installed strata, that does what a user's
// program would: it writes its own handshaking layer, registers it next to the built-in
// protocols, and runs a stack with it from spec strings — then asks the stack for the
// peer's credentials through the query interface.
//
// `knock` makes the client send a shared secret before the stream is handed up; the
// server refuses anyone who does not know it. First it says hello over TLS.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

namespace {

struct knock_options {
  std::string secret = "open sesame";
};

constexpr strata::capability_row knock_row{
    .name = "knock",
    .required = strata::prop::unit | strata::prop::reliable | strata::prop::ordered,
    .required_value = {.unit = strata::unit::stream, .reliable = true, .ordered = true},
    .provided = {},
    .provided_value = {},
    .passed = strata::prop_set::all(),
};

strata::task<strata::result<strata::any_connection>> knock(strata::any_connection lower,
                                                           const knock_options& o, strata::layer_side side,
                                                           strata::deadline dl) {
  auto& s = lower.stream();
  std::string line = o.secret + "\n";
  std::error_code failure;
  if (side == strata::layer_side::client) {
    if (auto w = co_await s.write(strata::as_bytes(line), dl); !w) failure = w.error();
  } else {
    std::string heard(line.size(), '\0');
    auto r = co_await strata::read_exact(
        s, strata::mutable_buffer(reinterpret_cast<std::byte*>(heard.data()), heard.size()), dl);
    if (!r) {
      failure = r.error();
    } else if (heard != line) {
      failure = make_error_code(strata::errc::protocol_error);
    }
  }
  if (failure) {
    (void)co_await s.close(strata::deadline::after(100ms));
    co_return strata::unexpected(failure);
  }
  co_return std::move(lower);
}

strata::task<int> knock_and_greet(const strata::protocol_registry& protocols, std::string name) {
  auto listener = strata::listen("unix-listen:@" + name + " | knock | crlf", {}, protocols);
  if (!listener) {
    std::fprintf(stderr, "%s\n", listener.error().message().c_str());
    co_return 1;
  }
  int status = 1;
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn([](strata::any_listener& l) -> strata::task<void> {
      auto conn = co_await l.accept(strata::deadline::after(5s));
      if (!conn) co_return;
      auto creds = strata::query<strata::fact::peer_credentials>(*conn);
      std::string greeting = creds ? "hello pid " + std::to_string(creds->pid) : "hello stranger";
      (void)co_await conn->message().send(strata::as_bytes(greeting), strata::deadline::after(5s));
      (void)co_await conn->close(strata::deadline::after(5s));
    }(*listener));
    auto conn =
        co_await strata::connect("unix:@" + name + " | knock | crlf", strata::deadline::after(5s), protocols);
    if (!conn) {
      std::fprintf(stderr, "%s\n", conn.error().message().c_str());
      co_return;
    }
    std::array<std::byte, 64> buf;
    auto n = co_await conn->message().recv(buf, strata::deadline::after(5s));
    std::string got = n ? std::string(strata::as_text(strata::const_buffer(buf.data(), *n))) : "";
    std::printf("consumer: server said '%s'\n", got.c_str());
    if (got == "hello pid " + std::to_string(::getpid())) status = 0;
    (void)co_await conn->close(strata::deadline::after(5s));
  });
  listener->close();
  co_return status;
}

}  // namespace

// secure_hello runs TLS over an in-process stream pair with a certificate made for the
// occasion: the installed package's secure layer, and its link to OpenSSL, work.
strata::task<int> secure_hello() {
  std::vector<std::string> names{"localhost"};
  auto made = strata::tls::self_signed(names);
  if (!made) co_return 1;
  auto server_ctx = strata::tls::context::server({.certificates = {*made}});
  auto client_ctx = strata::tls::context::client({.ca_pem = made->cert_pem});
  if (!server_ctx || !client_ctx) co_return 1;
  auto [a, b] = strata::inproc::stream_pair();
  auto dl = strata::deadline::after(std::chrono::seconds(5));
  strata::tls::client_options to{.server_name = "localhost"};
  std::string said;
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn(
        [](strata::inproc::stream lower, strata::tls::context ctx, strata::deadline d) -> strata::task<void> {
          auto t = co_await strata::tls::accept(std::move(lower), std::move(ctx), d);
          if (t) (void)co_await t->write(strata::as_bytes(std::string_view("secret hello")), d);
          if (t) (void)co_await t->close(d);
        }(std::move(b), *server_ctx, dl));
    auto t = co_await strata::tls::connect(std::move(a), *client_ctx, to, dl);
    if (!t) co_return;
    std::array<char, 64> buf{};
    auto n = co_await t->read_some(std::as_writable_bytes(std::span(buf.data(), buf.size())), dl);
    if (n) said.assign(buf.data(), *n);
    (void)co_await t->close(dl);
  });
  std::printf("consumer: tls said '%s'\n", said.c_str());
  co_return said == "secret hello" ? 0 : 1;
}

int main() {
  if (strata::run(secure_hello()) != 0) return 1;
  strata::protocol_registry protocols;
  auto added = protocols.add(strata::adapter_entry<knock_options>({
      .name = "knock",
      .summary = "the client says a shared secret before the stream is ready",
      .row = &knock_row,
      .params = {strata::field<&knock_options::secret>("secret", "the shared secret")},
      .wrap = knock,
  }));
  if (!added) return 1;
  strata::pipeline_error error;
  auto p = strata::pipeline::parse("tcp:127.0.0.1:7 | knock(secret=x) | prefix", error, protocols);
  if (!p) return 1;
  std::fputs(p->describe().c_str(), stdout);
  return strata::run(knock_and_greet(protocols, "strata-consumer-" + std::to_string(::getpid())));
}
