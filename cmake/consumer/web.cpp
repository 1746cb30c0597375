// A small web service written against an installed strata, as a user would write it: one
// listener answers HTTP/1.1 and HTTP/2 alike (http::serve chooses per connection), and
// strata's own HTTP/1.1 and HTTP/2 clients fetch a page from it. Exit status 0 when both
// answers are right. cmake/install_test.cmake builds and runs it.
#include <cstdio>
#include <string>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

namespace {

strata::http::handlers site() {
  return strata::http::both([](auto& req, auto& res) -> strata::task<strata::result<void>> {
    auto dl = strata::deadline::after(5s);
    (void)res.set_header("Content-Type", "text/plain");
    std::string body = "hello " + std::string(req.target()) + "\n";
    co_return co_await res.send(200, body, dl);
  });
}

strata::task<void> serve(strata::any_listener& listener, int connections) {
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    for (int i = 0; i < connections; ++i) {
      auto conn = co_await listener.accept(strata::deadline::after(5s));
      if (!conn) co_return;
      s.spawn([](strata::any_connection c) -> strata::task<void> {
        auto served = co_await strata::http::serve(c.take_stream(), site());
        if (!served) std::fprintf(stderr, "web: serve: %s\n", served.error().message().c_str());
      }(std::move(*conn)));
    }
  });
}

strata::task<std::string> fetch_http1(const std::string& where, const std::string& target) {
  auto dl = strata::deadline::after(5s);
  auto conn = co_await strata::connect("tcp:" + where, dl);
  if (!conn) co_return "connect: " + conn.error().message();
  strata::http1::client client(conn->take_stream());
  client.set_host(where);
  strata::http1::client::outgoing request;
  request.target = target;
  auto head = co_await client.send(request, dl);
  if (!head) co_return "send: " + head.error().message();
  auto body = co_await client.read_body(1 << 20, dl);
  (void)co_await client.close(dl);
  if (!body) co_return "body: " + body.error().message();
  co_return std::to_string(head->status) + " " + *body;
}

strata::task<std::string> fetch_http2(const std::string& where, const std::string& target) {
  auto dl = strata::deadline::after(5s);
  auto conn = co_await strata::connect("tcp:" + where, dl);
  if (!conn) co_return "connect: " + conn.error().message();
  strata::http2::client client(conn->take_stream());
  client.set_host(where);
  strata::http2::client::outgoing request;
  request.target = target;
  auto response = co_await client.request(request, dl);
  if (!response) co_return "request: " + response.error().message();
  auto body = co_await response->read_body(1 << 20, dl);
  (void)co_await client.close(dl);
  if (!body) co_return "body: " + body.error().message();
  co_return std::to_string(response->status()) + " " + *body;
}

strata::task<int> run_site() {
  auto listener = strata::listen("tcp-listen:127.0.0.1:0");
  if (!listener) {
    std::fprintf(stderr, "web: %s\n", listener.error().message().c_str());
    co_return 1;
  }
  std::string where = "127.0.0.1:" + std::to_string(listener->local_address()->port());
  std::string one;
  std::string two;
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn(serve(*listener, 2));
    one = co_await fetch_http1(where, "/one");
    two = co_await fetch_http2(where, "/two");
  });
  listener->close();
  std::printf("web: HTTP/1.1 said '%s', HTTP/2 said '%s'\n", one.c_str(), two.c_str());
  co_return one == "200 hello /one\n" && two == "200 hello /two\n" ? 0 : 1;
}

}  // namespace

int main() { return strata::run(run_site()); }
