// Fuzz target for dtls::session (the sans-I/O engine of `dtls`): the input is a sequence
// of datagrams from a peer, each behind a 2-byte big-endian length, fed to a server
// session (byte 0's low bit 0) or a client session (1). Between datagrams the target
// fires the retransmission timer when byte 0's bit 1 is set, as a driver would after a
// silence. With byte 0's bit 2 set every datagram goes to a listener's cookie gate
// (dtls::cookie_gate) from one sender first, and to the server session only when the
// gate admits it, as a gated listener does. The server's certificate is made in memory
// (tls::self_signed).
//
// Invariants (abort() on violation): no crash or sanitizer report; plaintext never
// exceeds what was fed; every datagram the session produces fits the MTU; read errors are
// sticky; a failed handshake never claims to be done; the gate answers only refusals, each
// with one HelloVerifyRequest record that fits the MTU.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "strata/secure/dtls.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::size_t mtu = 1200;

struct contexts {
  strata::tls::context server;
  strata::tls::context client;
};

const contexts& made() {
  static const contexts c = [] {
    std::vector<std::string> names{"localhost"};
    auto cred = *strata::tls::self_signed(names);
    contexts out;
    out.server = *strata::dtls::server_context({.certificates = {cred}, .alpn = {"coap"}});
    out.client = *strata::dtls::client_context({.verify_peer = false, .alpn = {"coap"}});
    return out;
  }();
  return c;
}

void drain(strata::dtls::session& s) {
  while (s.has_output()) check(s.next_output().size() <= mtu);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  bool as_client = data[0] & 1;
  bool fire_timer = data[0] & 2;
  bool gated = !as_client && (data[0] & 4);
  ++data;
  --size;
  strata::dtls::link_options link{.mtu = mtu};
  strata::tls::client_options to{.server_name = "localhost"};
  auto s = as_client ? strata::dtls::session::client(made().client, to, {}, link)
                     : strata::dtls::session::server(made().server, "192.0.2.1:5684", link);
  check(static_cast<bool>(s));
  if (as_client) {
    (void)s->handshake();  // the ClientHello the input answers
    drain(*s);
  }
  static const strata::address sender = *strata::address::parse_ip("192.0.2.1:5684");
  strata::admission_gate gate;
  if (gated) gate = *strata::dtls::cookie_gate(made().server);
  bool admitted = false;
  std::vector<std::byte> reply;
  std::size_t fed = 0;
  std::size_t plaintext = 0;
  std::vector<std::byte> buf(16 * 1024 + 2048);
  while (size >= 2) {
    std::size_t len = (std::size_t{data[0]} << 8) | data[1];
    data += 2;
    size -= 2;
    if (len > size) len = size;
    strata::const_buffer datagram(reinterpret_cast<const std::byte*>(data), len);
    if (gated && !admitted) {
      reply.clear();
      admitted = gate(sender, datagram, reply) == strata::admission::admit;
      if (admitted) {
        check(reply.empty());
      } else if (!reply.empty()) {
        check(reply.size() > 13 && reply.size() <= mtu);
        check(std::to_integer<int>(reply[0]) == 22 && std::to_integer<int>(reply[13]) == 3);
      }
      if (!admitted) {
        data += len;
        size -= len;
        continue;
      }
    }
    s->feed(datagram);
    data += len;
    size -= len;
    fed += len;
    if (!s->handshake_done()) {
      auto step = s->handshake();
      drain(*s);
      if (!step) {
        check(!s->handshake_done());
        return 0;
      }
    } else {
      for (;;) {
        auto n = s->read(strata::mutable_buffer(buf));
        drain(*s);
        if (!n) {
          check(s->read(strata::mutable_buffer(buf)).error() == n.error());
          return 0;
        }
        if (*n == 0) break;
        plaintext += *n;
      }
    }
    check(plaintext <= fed);
    if (fire_timer && s->retransmit_in()) {
      s->on_timeout();
      drain(*s);
    }
  }
  return 0;
}
