// An echo server and client over a typed stack: tcp | prefix(4).
// The compiler checks the stack: putting crlf on top of prefix would not compile.
//
//   example_echo_typed                 server and client in one process (ephemeral port)
//   example_echo_typed server PORT     serve forever on 127.0.0.1:PORT
//   example_echo_typed client PORT     send three messages and print the echoes
#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "strata/strata.hpp"

using namespace std::chrono_literals;
using messages = strata::prefix<strata::tcp::stream>;

// Echo every message back until the peer finishes.
strata::task<void> echo(messages conn) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    auto n = co_await conn.recv(buf, strata::deadline::after(30s));
    if (!n) break;  // end_of_stream, timed_out, message_too_large...
    auto sent = co_await conn.send(strata::const_buffer(buf.data(), *n), strata::deadline::after(5s));
    if (!sent) break;
  }
  (void)co_await conn.close(strata::deadline::after(1s));
}

strata::task<void> serve(strata::tcp::listener& listener, int connections) {
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    for (int i = 0; connections < 0 || i < connections; ++i) {
      auto conn = co_await listener.accept(strata::deadline::never());
      if (!conn) co_return;
      s.spawn(echo(messages{std::move(*conn), {.header_bytes = 4}}));
    }
  });
}

strata::task<int> client(std::string where) {
  auto dl = strata::deadline::after(5s);  // one budget for the whole exchange
  auto tcp = co_await strata::tcp::connect(where, dl);
  if (!tcp) {
    std::fprintf(stderr, "connect %s: %s\n", where.c_str(), tcp.error().message().c_str());
    co_return 1;
  }
  messages conn{std::move(*tcp), {.header_bytes = 4}};
  std::array<std::byte, 4096> buf;
  for (std::string text : {"hello", "layered", "world"}) {
    if (auto r = co_await conn.send(strata::as_bytes(text), dl); !r) co_return 1;
    auto n = co_await conn.recv(buf, dl);
    if (!n) co_return 1;
    std::printf("echo: %.*s\n", static_cast<int>(*n), reinterpret_cast<const char*>(buf.data()));
  }
  (void)co_await conn.close(dl);
  co_return 0;
}

strata::task<int> both() {
  auto listener = strata::tcp::listener::bind("127.0.0.1:0");
  if (!listener) co_return 1;
  auto where = listener->local_address()->to_string();
  int status = 1;
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn(serve(*listener, 1));
    status = co_await client(where);
  });
  co_return status;
}

strata::task<int> server_forever(std::string where) {
  auto listener = strata::tcp::listener::bind(where);
  if (!listener) {
    std::fprintf(stderr, "listen %s: %s\n", where.c_str(), listener.error().message().c_str());
    co_return 1;
  }
  co_await serve(*listener, -1);
  co_return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "server")
    return strata::run(server_forever(std::string("127.0.0.1:") + argv[2]));
  if (argc == 3 && std::string(argv[1]) == "client")
    return strata::run(client(std::string("127.0.0.1:") + argv[2]));
  return strata::run(both());
}
