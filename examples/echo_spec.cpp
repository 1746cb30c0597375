// The same echo server and client, with the stack written as spec strings and checked
// at run time. Change the specs (e.g. "unix-listen:@echo | crlf") without recompiling.
//
//   example_echo_spec                          server and client in one process
//   example_echo_spec 'SERVER SPEC' 'CLIENT SPEC'
#include <array>
#include <cstdio>
#include <string>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

strata::task<void> echo(strata::any_message conn) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    auto n = co_await conn.recv(buf, strata::deadline::after(30s));
    if (!n) break;
    if (!co_await conn.send(strata::const_buffer(buf.data(), *n), strata::deadline::after(5s))) break;
  }
  (void)co_await conn.close(strata::deadline::after(1s));
}

strata::task<int> run_pair(std::string server_spec, std::string client_spec) {
  strata::pipeline_error error;
  auto server = strata::pipeline::parse(server_spec, error);
  if (!server) {
    std::fprintf(stderr, "%s\n", error.render(server_spec).c_str());
    co_return 2;
  }
  std::printf("server stack:\n%s", server->describe().c_str());
  auto listener = server->listen();
  if (!listener) co_return 1;
  // An ephemeral TCP port is only known after binding: fill it into the client spec.
  auto bound = listener->local_address();
  if (bound && bound->is_ip()) {
    auto at = client_spec.find(":0");
    if (at != std::string::npos) client_spec.replace(at, 2, ":" + std::to_string(bound->port()));
  }
  auto client = strata::pipeline::parse(client_spec, error);
  if (!client) {
    std::fprintf(stderr, "%s\n", error.render(client_spec).c_str());
    co_return 2;
  }
  std::printf("client stack:\n%s", client->describe().c_str());
  int status = 1;
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn([](strata::any_listener& l) -> strata::task<void> {
      auto conn = co_await l.accept(strata::deadline::after(5s));
      if (conn && conn->is_message()) co_await echo(conn->take_message());
    }(*listener));
    auto dl = strata::deadline::after(5s);
    auto conn = co_await client->connect(dl);
    if (!conn || !conn->is_message()) co_return;
    auto& messages = conn->message();
    std::array<std::byte, 4096> buf;
    for (std::string text : {"hello", "from", "a spec string"}) {
      if (!co_await messages.send(strata::as_bytes(text), dl)) co_return;
      auto n = co_await messages.recv(buf, dl);
      if (!n) co_return;
      std::printf("echo: %.*s\n", static_cast<int>(*n), reinterpret_cast<const char*>(buf.data()));
    }
    (void)co_await messages.close(dl);
    status = 0;
  });
  co_return status;
}

int main(int argc, char** argv) {
  if (argc == 3) return strata::run(run_pair(argv[1], argv[2]));
  return strata::run(run_pair("tcp-listen:127.0.0.1:0 | prefix(4)", "tcp:127.0.0.1:0 | prefix(4)"));
}
