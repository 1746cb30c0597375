// Fuzz target for the HTTP/2 server session: nghttp2's frame and HPACK decoding and
// strata's callbacks around it (header collection, pseudo-headers, limits, bodies, flow
// control, stream life, trailers, extended CONNECT).
//
// Input: byte 0 sets the size of the pieces the rest arrives in (1..64), byte 1 picks
// small or default limits; the rest follows the client connection preface, as a client's
// bytes. The server runs http2::serve over an in-memory stream that delivers the input and
// then end of stream, and discards what the server writes; each request's handler reads
// the body and answers. Invariants: no crash, no sanitizer report, no hang (the session
// ends when the input does), and the server never reports more requests than HEADERS
// frames could carry.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "strata/app/http2.hpp"
#include "strata/runtime.hpp"

namespace {

using namespace std::chrono_literals;

/// feed_stream is a byte stream that reads from the fuzz input in pieces and swallows writes.
class feed_stream {
 public:
  static constexpr strata::properties capabilities = strata::transport_properties(strata::capability_row{
      .name = "fuzz-feed",
      .required = {},
      .required_value = {},
      .provided = strata::prop_set::all(),
      .provided_value = {.connection = strata::connection::based,
                         .unit = strata::unit::stream,
                         .reliable = true,
                         .ordered = true},
      .passed = {},
  });

  feed_stream(std::string_view input, std::size_t piece) : input_(input), piece_(piece) {}

  strata::task<strata::result<std::size_t>> read_some(strata::mutable_buffer buf, strata::deadline) {
    if (input_.empty()) co_return strata::errc::end_of_stream;
    auto n = std::min({buf.size(), piece_, input_.size()});
    std::copy_n(reinterpret_cast<const std::byte*>(input_.data()), n, buf.data());
    input_.remove_prefix(n);
    co_return n;
  }
  strata::task<strata::result<void>> write(strata::const_buffers, strata::deadline) {
    co_return strata::result<void>{};
  }
  strata::task<strata::result<void>> shutdown_write(strata::deadline) { co_return strata::result<void>{}; }
  strata::task<strata::result<void>> close(strata::deadline) { co_return strata::result<void>{}; }

 private:
  std::string_view input_;
  std::size_t piece_;
};

strata::task<void> serve_input(std::string input, std::size_t piece, bool small) {
  strata::http2::server_options o;
  o.idle_timeout = 1s;
  o.write_timeout = 1s;
  o.shutdown_grace = 10ms;
  if (small) {
    o.max_header_list = 512;
    o.max_fields = 8;
    o.max_body = 256;
    o.stream_window = 1024;
    o.connection_window = 65535;
    o.max_active_handlers = 4;
    o.send_buffer = 64;
  }
  auto handler = [](strata::http2::request& req,
                    strata::http2::response& res) -> strata::task<strata::result<void>> {
    auto dl = strata::deadline::after(100ms);
    auto body = co_await req.read_body(1024, dl);
    if (req.head().protocol.size() > 0) {
      auto tunnel = co_await res.tunnel(dl);
      if (tunnel) (void)co_await tunnel->close(dl);
      co_return strata::result<void>{};
    }
    (void)res.set_header("x-len", body ? std::to_string(body->size()) : "error");
    co_return co_await res.send(200, "ok", dl);
  };
  auto served = co_await strata::http2::serve(strata::any_stream(feed_stream(input, piece)), handler, o);
  if (served && served->requests > input.size() / 9 + 1) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::size_t piece = 1 + data[0] % 64;
  bool small = (data[1] & 1) != 0;
  std::string input(strata::http2::preface);
  input.append(reinterpret_cast<const char*>(data + 2), size - 2);
  strata::run(serve_input(std::move(input), piece, small));
  return 0;
}
