// The seed's "Custom App": a program's own protocol in spec strings. `rpc` pairs requests
// and responses by id over any reliable message layer, after a handshake that agrees on
// the version and on how many requests may be in flight. The program registers it next
// to the built-in protocols and runs the same code over tcp, unix and shared memory by
// changing only the spec strings.
//
//   example_custom_app                       the three stacks below, server and client in-process
//   example_custom_app 'SERVER SPEC' 'CLIENT SPEC'
//
// Wire format (each message of the layer below): 4-byte big-endian id, 1 kind byte
// (0 request, 1 response), then the payload. Handshake: the client sends
// "rpc/1 pending=N", the server answers "rpc/1 ok" or closes.
#include <unistd.h>
#include <array>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "strata/strata.hpp"

using namespace std::chrono_literals;

namespace rpc {

struct options {
  std::uint64_t pending = 16;                 // requests a client may have in flight
  std::chrono::milliseconds handshake{2000};  // longest wait for the other side's hello
};

/// row: needs reliable, ordered messages below; offers the same messages (each one a
/// request or its response) and passes everything else through.
inline constexpr strata::capability_row row{
    .name = "rpc",
    .required = strata::prop::unit | strata::prop::reliable | strata::prop::ordered,
    .required_value = {.unit = strata::unit::message, .reliable = true, .ordered = true},
    .provided = {},
    .provided_value = {},
    .passed = strata::prop_set::all(),
};

constexpr std::size_t header_size = 5;
enum kind : std::uint8_t { request = 0, response = 1 };

/// channel is the layer: send() on a client is a request under a fresh id, recv() its
/// response (a response with an id that is not outstanding is a protocol_error); on a
/// server recv() is the next request and send() answers the oldest unanswered one.
class channel {
 public:
  static constexpr strata::properties capabilities{};

  channel(strata::any_message lower, bool client, std::uint64_t pending)
      : lower_(std::move(lower)), client_(client), pending_limit_(pending) {}

  strata::task<strata::result<void>> send(strata::const_buffers message, strata::deadline dl) {
    std::uint32_t id = 0;
    if (client_) {
      if (outstanding_.size() >= pending_limit_)
        co_return strata::errc::invalid_argument;  // over `pending`: wait for a response first
      id = next_id_++;
      outstanding_.push_back(id);
    } else {
      if (unanswered_.empty()) co_return strata::errc::invalid_argument;  // nothing to answer
      id = unanswered_.front();
      unanswered_.pop_front();
    }
    std::array<std::byte, header_size> header{std::byte(id >> 24), std::byte(id >> 16), std::byte(id >> 8),
                                              std::byte(id), std::byte(client_ ? request : response)};
    std::vector<strata::const_buffer> parts{strata::const_buffer(header.data(), header.size())};
    for (auto p : message.view()) parts.push_back(p);
    co_return co_await lower_.send(strata::const_buffers(parts), dl);
  }

  strata::task<strata::result<std::size_t>> recv(strata::mutable_buffer out, strata::deadline dl) {
    scratch_.resize(out.size() + header_size);
    auto n = co_await lower_.recv(scratch_, dl);
    if (!n) co_return strata::unexpected(n.error());
    if (*n < header_size) co_return strata::errc::protocol_error;
    std::uint32_t id = (std::uint32_t(scratch_[0]) << 24) | (std::uint32_t(scratch_[1]) << 16) |
                       (std::uint32_t(scratch_[2]) << 8) | std::uint32_t(scratch_[3]);
    auto k = static_cast<std::uint8_t>(scratch_[4]);
    if (client_) {
      // Responses come back in request order; anything else is the peer's error.
      if (k != response || outstanding_.empty() || outstanding_.front() != id) {
        co_return strata::errc::protocol_error;
      }
      outstanding_.pop_front();
    } else {
      if (k != request) co_return strata::errc::protocol_error;
      unanswered_.push_back(id);
    }
    std::copy_n(scratch_.begin() + header_size, *n - header_size, out.begin());
    co_return *n - header_size;
  }

  strata::task<strata::result<void>> close(strata::deadline dl) { return lower_.close(dl); }
  strata::properties runtime_capabilities() const { return lower_.runtime_capabilities(); }
  const strata::any_message& next_layer() const noexcept { return lower_; }

 private:
  strata::any_message lower_;
  bool client_;
  std::uint64_t pending_limit_;
  std::uint32_t next_id_ = 1;
  std::deque<std::uint32_t> outstanding_;  // client: ids sent, not yet answered
  std::deque<std::uint32_t> unanswered_;   // server: ids received, not yet answered
  std::vector<std::byte> scratch_;
};

/// wrap runs the handshake on `lower` and returns the ready layer.
strata::task<strata::result<strata::any_connection>> wrap(strata::any_connection lower, const options& o,
                                                          strata::layer_side side, strata::deadline dl) {
  auto m = lower.take_message();
  auto hello_dl = strata::deadline::earlier(dl, strata::deadline::after(o.handshake));
  std::array<std::byte, 64> buf;
  std::error_code failure;
  if (side == strata::layer_side::client) {
    std::string hello = "rpc/1 pending=" + std::to_string(o.pending);
    auto sent = co_await m.send(strata::as_bytes(hello), hello_dl);
    auto n =
        sent ? co_await m.recv(buf, hello_dl) : strata::result<std::size_t>(strata::unexpected(sent.error()));
    if (!n) {
      failure = n.error();
    } else if (strata::as_text(strata::const_buffer(buf.data(), *n)) != "rpc/1 ok") {
      failure = make_error_code(strata::errc::protocol_error);
    }
  } else {
    auto n = co_await m.recv(buf, hello_dl);
    if (!n) {
      failure = n.error();
    } else if (!strata::as_text(strata::const_buffer(buf.data(), *n)).starts_with("rpc/1 pending=")) {
      failure = make_error_code(strata::errc::protocol_error);
    } else if (auto ok = co_await m.send(strata::as_bytes(std::string_view("rpc/1 ok")), hello_dl); !ok) {
      failure = ok.error();
    }
  }
  if (failure) {
    (void)co_await m.close(strata::deadline::after(100ms));
    co_return strata::unexpected(failure);
  }
  co_return strata::any_connection(
      strata::any_message(channel(std::move(m), side == strata::layer_side::client, o.pending)));
}

/// add registers rpc in `protocols`.
void add(strata::protocol_registry& protocols) {
  auto added = protocols.add(strata::adapter_entry<options>({
      .name = "rpc",
      .summary = "requests and responses paired by id, after a version handshake",
      .row = &row,
      .params = {strata::field<&options::pending>("pending", "requests a client may have in flight", 1, 1024),
                 strata::field<&options::handshake>("handshake", "longest wait for the peer's hello", 1,
                                                    60'000)},
      .wrap = wrap,
  }));
  if (!added) std::fprintf(stderr, "rpc: %s\n", added.error().message().c_str());
}

}  // namespace rpc

/// serve answers each request with its payload upper-cased, until the client leaves.
strata::task<void> serve(strata::any_message conn) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    auto n = co_await conn.recv(buf, strata::deadline::after(10s));
    if (!n) break;
    for (std::size_t i = 0; i < *n; ++i) buf[i] = std::byte(std::toupper(static_cast<int>(buf[i])));
    if (!co_await conn.send(strata::const_buffer(buf.data(), *n), strata::deadline::after(5s))) break;
  }
  (void)co_await conn.close(strata::deadline::after(1s));
}

strata::task<int> run_pair(const strata::protocol_registry& protocols, std::string server_spec,
                           std::string client_spec) {
  auto listener = strata::listen(server_spec, {}, protocols);
  if (!listener) {
    std::fprintf(stderr, "%s\n", listener.error().message().c_str());
    co_return 2;
  }
  if (auto bound = listener->local_address(); bound && bound->is_ip()) {
    auto at = client_spec.find(":0");
    if (at != std::string::npos) client_spec.replace(at, 2, ":" + std::to_string(bound->port()));
  }
  int failures = 0;
  co_await strata::with_scope([&](strata::scope& s) -> strata::task<void> {
    s.spawn([](strata::any_listener& l) -> strata::task<void> {
      auto conn = co_await l.accept(strata::deadline::after(10s));
      if (conn) co_await serve(conn->take_message());
    }(*listener));
    auto conn = co_await strata::connect(client_spec, strata::deadline::after(10s), protocols);
    if (!conn) {
      std::fprintf(stderr, "%s\n", conn.error().message().c_str());
      ++failures;
      co_return;
    }
    auto& m = conn->message();
    const std::vector<std::string> words = {"alpha", "beta", "gamma", "delta"};
    std::array<std::byte, 4096> buf;
    // Two requests in flight at a time: responses still pair with their requests.
    for (std::size_t i = 0; i < words.size(); i += 2) {
      for (std::size_t j = i; j < i + 2; ++j)
        (void)co_await m.send(strata::as_bytes(words[j]), strata::deadline::after(5s));
      for (std::size_t j = i; j < i + 2; ++j) {
        auto n = co_await m.recv(buf, strata::deadline::after(5s));
        std::string want = words[j];
        for (auto& c : want) c = static_cast<char>(std::toupper(c));
        if (!n || strata::as_text(strata::const_buffer(buf.data(), *n)) != want) ++failures;
      }
    }
    (void)co_await m.close(strata::deadline::after(1s));
  });
  listener->close();
  std::printf("%-40s %s\n", client_spec.c_str(), failures ? "FAILED" : "4 calls answered");
  co_return failures ? 1 : 0;
}

int main(int argc, char** argv) {
  strata::protocol_registry protocols;
  rpc::add(protocols);
  if (argc == 3) return strata::run(run_pair(protocols, argv[1], argv[2]));
  std::string name = "strata-rpc-" + std::to_string(::getpid());
  int status = 0;
  status |= strata::run(
      run_pair(protocols, "tcp-listen:127.0.0.1:0 | prefix | rpc", "tcp:127.0.0.1:0 | prefix | rpc"));
  status |= strata::run(run_pair(protocols, "unix-listen:@" + name + " | prefix | rpc(pending=4)",
                                 "unix:@" + name + " | prefix | rpc(pending=4)"));
  status |= strata::run(
      run_pair(protocols, "shm-listen:" + name + " | prefix | rpc", "shm:" + name + " | prefix | rpc"));
  return status;
}
