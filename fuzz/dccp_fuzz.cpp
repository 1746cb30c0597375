// Fuzz target for dccp: the packet codec, the options parser and the state machine.
//
// Input: byte 0 picks the mode and seeds the time steps; the rest is a sequence of
// datagrams, each behind a 2-byte big-endian length. Every datagram is decoded (checksum
// not verified, so the fuzzer reaches what lies behind it); a decoded one is re-encoded
// and must decode to the same header, options and payload. Then the datagrams go to a
// DCCP server engine — in LISTEN (mode bit 0 clear) or on an established connection made
// by a real handshake with a client engine (bit 0 set) — with checksums not verified,
// the virtual clock moving and the timers running between them. Invariants (abort() on
// violation): whatever the engine sends decodes with a good checksum, the receive
// history stays within its bound, and the engine's state stays one of the nine.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "strata/adapt/dccp.hpp"

namespace {

namespace dccp = strata::dccp;
using namespace std::chrono_literals;

void check(bool ok) {
  if (!ok) std::abort();
}

const dccp::endpoints client_path = [] {
  dccp::endpoints e;
  e.source_ip = {127, 0, 0, 1};
  e.dest_ip = {127, 0, 0, 1};
  e.source_port = 40000;
  e.dest_port = 5000;
  return e;
}();
const dccp::endpoints server_path = client_path.reversed();

void roundtrip(const std::uint8_t* data, std::size_t size) {
  const strata::const_buffer in(reinterpret_cast<const std::byte*>(data), size);
  auto d = dccp::decode(in, client_path, false);
  if (!d) return;
  check(d->options.size() + d->payload.size() <= size);
  (void)dccp::parse_options(d->options);
  if (d->options.size() > dccp::max_options) return;
  auto again = dccp::encode(d->h, d->options, d->payload, client_path);
  auto d2 = dccp::decode(again, client_path, true);
  check(static_cast<bool>(d2));
  check(d2->h.type == d->h.type && d2->h.seq == d->h.seq && d2->h.cscov == d->h.cscov);
  if (dccp::has_ack(d->h.type)) check(d2->h.ack == d->h.ack);
  check(d2->options.size() == d->options.size() &&
        std::memcmp(d2->options.data(), d->options.data(), d->options.size()) == 0);
  check(d2->payload.size() == d->payload.size() &&
        std::memcmp(d2->payload.data(), d->payload.data(), d->payload.size()) == 0);
}

void drain(dccp::engine& e, const dccp::endpoints& path,
           std::vector<std::vector<std::byte>>* keep = nullptr) {
  while (e.has_output()) {
    auto out = e.next_output();
    check(static_cast<bool>(dccp::decode(out, path, true)));
    if (keep) keep->push_back(std::move(out));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::vector<std::pair<const std::uint8_t*, std::size_t>> datagrams;
  for (std::size_t i = 1; i + 2 <= size;) {
    std::size_t len = (std::size_t(data[i]) << 8) | data[i + 1];
    i += 2;
    len = std::min(len, size - i);
    datagrams.emplace_back(data + i, len);
    i += len;
  }
  for (auto [p, n] : datagrams) roundtrip(p, n);

  dccp::config cfg;
  cfg.verify_checksum = false;
  cfg.iss = 1000;
  cfg.retransmit = 100ms;
  cfg.min_rto = 100ms;
  cfg.initial_rto = 100ms;
  cfg.max_history = 256;
  auto now = dccp::clock::time_point{} + 1000s;
  auto server = dccp::engine::server(cfg, server_path, now);
  if (mode & 1) {
    // A real handshake first, so the datagrams meet an established connection.
    auto ccfg = cfg;
    ccfg.iss = 5000;
    auto client = dccp::engine::client(ccfg, client_path, now);
    for (int round = 0; round < 8 && (client.has_output() || server.has_output()); ++round) {
      std::vector<std::vector<std::byte>> to_server, to_client;
      drain(client, client_path, &to_server);
      for (auto& d : to_server) (void)server.on_datagram(d, now);
      drain(server, server_path, &to_client);
      for (auto& d : to_client) (void)client.on_datagram(d, now);
    }
    check(server.current() == dccp::state::open);
  }
  std::uint32_t steps = mode;
  for (auto [p, n] : datagrams) {
    (void)server.on_datagram(strata::const_buffer(reinterpret_cast<const std::byte*>(p), n), now);
    drain(server, server_path);
    steps = steps * 1103515245u + 12345u;
    now += std::chrono::milliseconds((steps >> 16) % 300);
    server.on_timer(now);
    drain(server, server_path);
    if (server.can_send() && (steps & 0x10000)) (void)server.send(strata::as_bytes("reply"), now);
    drain(server, server_path);
    check(server.ack_history() <= cfg.max_history);
    check(static_cast<int>(server.current()) <= static_cast<int>(dccp::state::timewait));
    std::vector<std::byte> buf(64);
    while (server.has_message()) {
      auto r = server.read(buf);
      if (!r && r.error() == strata::errc::message_too_large) buf.resize(buf.size() * 4 + 65536);
      if (!r && r.error() != strata::errc::message_too_large) break;
    }
  }
  return 0;
}
