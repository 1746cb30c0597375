// Fuzz target for tls::session (the sans-I/O engine of `tls`): the input is what a peer
// sends, fed to a server session (byte 0's low bit 0) or a client session (1), in pieces
// whose sizes byte 1 seeds. The server's certificate and key are made in memory when the
// target starts (tls::self_signed; no key is committed).
//
// Invariants (abort() on violation): no crash or sanitizer report; the session never
// returns more plaintext than it received; its pending records stay bounded (an answer
// is never larger than a few records per input record); an error, once reported by
// read, is reported again (sticky); a failed handshake never claims to be done.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "strata/secure/tls.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

struct contexts {
  strata::tls::context server;
  strata::tls::context client;
};

const contexts& made() {
  static const contexts c = [] {
    std::vector<std::string> names{"localhost"};
    auto cred = *strata::tls::self_signed(names);
    contexts out;
    out.server = *strata::tls::context::server({.certificates = {cred}, .alpn = {"h2", "http/1.1"}});
    out.client = *strata::tls::context::client({.verify_peer = false, .alpn = {"h2"}});
    return out;
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  bool as_client = data[0] & 1;
  std::uint32_t seed = data[1] | 1u;
  data += 2;
  size -= 2;
  auto s = as_client ? strata::tls::session::client(made().client, {.server_name = "localhost"})
                     : strata::tls::session::server(made().server);
  check(static_cast<bool>(s));
  std::size_t fed = 0;
  std::size_t plaintext = 0;
  std::error_code failed;
  std::byte out[4096];
  while (fed < size && !failed) {
    seed = seed * 1103515245u + 12345u;
    std::size_t piece = 1 + (seed >> 16) % 2048;
    if (piece > size - fed) piece = size - fed;
    auto space = s->input_space(piece);
    check(space.size() >= piece);
    std::memcpy(space.data(), data + fed, piece);
    s->commit_input(piece);
    fed += piece;
    if (!s->handshake_done()) {
      auto step = s->handshake();
      if (!step) {
        failed = step.error();
        check(!s->handshake_done());
        break;
      }
    }
    if (s->handshake_done()) {
      for (;;) {
        auto n = s->read(strata::mutable_buffer(out, sizeof out));
        if (!n) {
          failed = n.error();
          // Sticky: asking again reports the same.
          check(s->read(strata::mutable_buffer(out, sizeof out)).error() == failed);
          break;
        }
        if (*n == 0) break;
        plaintext += *n;
      }
    }
    check(plaintext <= fed);
    // Records we produced in answer: a flight of handshake messages or alerts, never
    // growing with the input's size beyond a small multiple of it.
    check(s->pending_output().size() <= 64 * 1024 + 4 * fed);
    s->consume_output(s->pending_output().size());
  }
  if (!failed && fed == size) {
    s->end_input();
    if (!s->handshake_done()) {
      auto step = s->handshake();
      check(!step || !s->handshake_done() || *step == strata::tls::want::nothing);
    }
  }
  return 0;
}
