// Fuzz target for websocket's peer-input parsers: the receiver (frames, masking,
// fragmentation, control frames, close payloads, UTF-8, permessage-deflate) and the
// opening handshake's header checks (check_request, extension negotiation both ways).
//
// Input: byte 0 picks the mode and options (bit 0: the receiver is a server; bit 1:
// deflate agreed; bit 2: the peer resets its context; bit 3: the rest is handshake text,
// not frames), byte 1 the size of the pieces the rest is fed in (1..64; the connection's
// reads), byte 2 max_message (16 << (byte % 14)). The rest is what a peer sent.
// Invariants (abort() on violation): whole and piecewise feeding give the same events;
// every step consumes at most what it was given and asks for at least one byte when it
// needs more; a message is at most max_message, and text is UTF-8; a close code is
// valid (or 1005 for none) and its reason UTF-8; the reassembly buffer never holds much
// more than max_message (a deflate bomb included); a message re-encoded by a sender of
// the other role decodes to itself; errors are sticky.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "strata/app/http1.hpp"
#include "strata/app/websocket.hpp"

namespace {

namespace ws = strata::websocket;
namespace http1 = strata::http1;
using event_type = ws::receiver::event::type;

void check(bool ok) {
  if (!ok) std::abort();
}

struct record {
  event_type what;
  ws::message_kind kind;
  std::string data;
  std::uint16_t code;
  std::string reason;
  ws::error failure;
  bool operator==(const record&) const = default;
};

struct settings {
  ws::role local;
  ws::deflate_params deflate;
  ws::receive_limits limits;
};

std::vector<record> decode(const settings& s, std::string_view input, std::size_t piece) {
  ws::receiver r(s.local, s.deflate, s.limits);
  std::vector<record> out;
  std::vector<std::byte> buffered;
  std::size_t fed = 0;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto ev = r.next(buffered);
    check(ev.consumed <= buffered.size());
    check(r.buffered_capacity() <= 2 * s.limits.max_message + 64 * 1024);
    if (ev.what == event_type::need_more) {
      check(ev.need >= 1);
      buffered.erase(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(ev.consumed));
      if (fed == input.size()) return out;
      auto n = std::min(piece, input.size() - fed);
      auto more = strata::as_bytes(input.substr(fed, n));
      buffered.insert(buffered.end(), more.begin(), more.end());
      fed += n;
      continue;
    }
    record rec{ev.what,   ev.kind, std::string(strata::as_text(ev.data)), ev.code, std::string(ev.reason),
               ev.failure};
    if (ev.what == event_type::message) {
      check(ev.data.size() <= s.limits.max_message);
      if (ev.kind == ws::message_kind::text) check(ws::is_utf8(ev.data));
    }
    if (ev.what == event_type::ping || ev.what == event_type::pong) check(ev.data.size() <= 125);
    if (ev.what == event_type::close) {
      check(ev.code == ws::close_code::no_status || ws::valid_close_code(ev.code));
      check(ws::is_utf8(strata::as_bytes(ev.reason)));
    }
    out.push_back(std::move(rec));
    buffered.erase(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(ev.consumed));
    if (ev.what == event_type::close || ev.what == event_type::error) {
      // Sticky: the same answer again, whatever follows.
      auto again = r.next(buffered);
      check(again.what == ev.what && again.consumed == 0);
      return out;
    }
  }
  std::abort();  // no progress
}

/// reencode sends the messages again from the peer's role and decodes them.
void reencode(const settings& s, const std::vector<record>& events) {
  auto peer_role = s.local == ws::role::server ? ws::role::client : ws::role::server;
  auto peer_deflate = s.deflate;
  std::swap(peer_deflate.no_context_takeover, peer_deflate.peer_no_context_takeover);
  ws::send_options so;
  so.fragment_size = 100;
  ws::sender tx(peer_role, peer_deflate, so);
  tx.keys() = ws::mask_keys(7);
  strata::byte_buffer wire;
  std::vector<std::string> sent;
  for (const auto& e : events) {
    if (e.what != event_type::message) continue;
    check(static_cast<bool>(tx.encode_message(e.kind, strata::as_bytes(e.data), wire)));
    sent.push_back(e.data);
  }
  auto bytes = wire.readable();
  settings back = s;
  back.limits.max_message = s.limits.max_message;
  auto decoded = decode(back, strata::as_text(bytes), bytes.size() + 1);
  check(decoded.size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    check(decoded[i].what == event_type::message);
    check(decoded[i].data == sent[i]);
  }
}

/// handshake_text runs the header checks over `text`: as a request head, and as
/// Sec-WebSocket-Extensions values for both sides.
void handshake_text(std::string_view text) {
  http1::head_parser parser;
  http1::request_head head;
  if (parser.parse_request(text, head) == http1::head_parser::status::complete) {
    auto key = ws::check_request(head);
    if (key) check(key->size() == 24);
  }
  ws::deflate_options o;
  o.enabled = true;
  std::vector<std::string_view> offers{text};
  auto answer = ws::negotiate_deflate(offers, o);
  if (answer) {
    check(answer->params.window_bits >= 9 && answer->params.window_bits <= 15);
    check(answer->params.peer_window_bits >= 8 && answer->params.peer_window_bits <= 15);
    // The server's response is one a client accepts, for an offer that allowed it.
    ws::deflate_options client;
    client.enabled = true;
    client.no_context_takeover = answer->params.peer_no_context_takeover;
    auto accepted = ws::accept_deflate(answer->response, client);
    check(static_cast<bool>(accepted));
    check(accepted->peer_no_context_takeover == answer->params.no_context_takeover);
  }
  auto params = ws::accept_deflate(text, o);
  if (params) check(params->window_bits >= 9 && params->window_bits <= 15);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);
  if (data[0] & 8) {
    handshake_text(input);
    return 0;
  }
  settings s;
  s.local = (data[0] & 1) ? ws::role::server : ws::role::client;
  s.deflate.enabled = (data[0] & 2) != 0;
  s.deflate.peer_no_context_takeover = (data[0] & 4) != 0;
  s.limits.max_message = std::size_t{16} << (data[2] % 14);
  std::size_t piece = 1 + data[1] % 64;
  auto whole = decode(s, input, input.size() + 1);
  auto pieces = decode(s, input, piece);
  check(whole == pieces);
  reencode(s, whole);
  return 0;
}
