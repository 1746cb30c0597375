// Fuzz target for crlf_decoder (the receive side of `crlf` and `term`) and for
// check_crlf_message (the send side's delimiter search across gather parts).
//
// Input: byte 0 picks the delimiter ("\r\n", "\n", or 1..16 bytes taken from the input),
// byte 1 picks max_message, byte 2 seeds the chunking; the rest is the received stream.
// The stream is decoded once whole and once fed in random pieces, as the driver feeds it.
// Invariants (abort() on violation): frames lie inside the input, payloads respect
// max_message and contain no delimiter, every frame is payload + delimiter, both feedings
// agree, errors happen only when max_message bytes passed without a delimiter and are
// sticky, every decoded message is accepted by check_crlf_message, and
// check_crlf_message agrees with a naive search whatever the gather-list split.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "strata/adapt/crlf.hpp"

namespace {

using strata::decode_step;

struct outcome {
  std::vector<std::pair<std::size_t, std::size_t>> messages;  // absolute payload offset, length
  std::size_t consumed = 0;
  decode_step::status last = decode_step::status::need_more;
};

void check(bool ok) {
  if (!ok) std::abort();
}

std::string_view text(strata::const_buffer b) { return strata::as_text(b); }

// Checks one decode step against the input it saw.
void check_step(const decode_step& s, strata::const_buffer in, const strata::crlf_options& o) {
  const std::string_view d = o.delimiter;
  switch (s.state) {
    case decode_step::status::message: {
      check(s.offset == 0);
      check(s.frame == s.length + d.size());
      check(s.frame <= in.size());
      check(s.length <= o.max_message);
      check(text(in.subspan(s.length, d.size())) == d);
      // The delimiter found is the first one.
      check(text(in.first(s.frame)).find(d) == s.length);
      break;
    }
    case decode_step::status::need_more:
      check(s.need >= 1);
      // No complete message can be in the input yet.
      check(text(in).substr(0, o.max_message + d.size()).find(d) == std::string_view::npos);
      break;
    case decode_step::status::error:
      check(s.error == strata::errc::message_too_large);
      check(in.size() >= o.max_message + d.size());
      check(text(in).substr(0, o.max_message + d.size()).find(d) == std::string_view::npos);
      break;
  }
}

outcome decode_whole(const strata::crlf_options& o, strata::const_buffer in) {
  outcome out;
  strata::crlf_decoder d(o);
  for (;;) {
    auto rest = in.subspan(out.consumed);
    auto s = d.decode(rest);
    check_step(s, rest, o);
    out.last = s.state;
    if (s.state == decode_step::status::message) {
      // Asking again without consuming (a recv with a too small buffer) gives the same.
      auto again = d.decode(rest);
      check(again.state == s.state && again.length == s.length && again.frame == s.frame);
      out.messages.emplace_back(out.consumed, s.length);
      out.consumed += s.frame;
      d.reset();
      continue;
    }
    if (s.state == decode_step::status::error) {
      check(d.failed());
      d.reset();
      check(d.decode(rest).state == decode_step::status::error);
    }
    return out;
  }
}

outcome decode_chunked(const strata::crlf_options& o, strata::const_buffer in, std::uint32_t seed) {
  outcome out;
  strata::crlf_decoder d(o);
  std::vector<std::byte> buffer;
  std::size_t buffer_base = 0;
  std::size_t fed = 0;
  std::uint32_t x = seed | 1;
  while (true) {
    for (;;) {
      auto s = d.decode(buffer);
      check_step(s, buffer, o);
      out.last = s.state;
      if (s.state != decode_step::status::message) break;
      out.messages.emplace_back(buffer_base, s.length);
      out.consumed += s.frame;
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(s.frame));
      buffer_base += s.frame;
      d.reset();
    }
    if (out.last == decode_step::status::error || fed == in.size()) return out;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    auto piece = std::min<std::size_t>(in.size() - fed, 1 + x % 9);
    buffer.insert(buffer.end(), in.begin() + static_cast<std::ptrdiff_t>(fed),
                  in.begin() + static_cast<std::ptrdiff_t>(fed + piece));
    fed += piece;
  }
}

// check_crlf_message on `message` split into pieces by `x`, against a naive search.
void check_sender(const strata::crlf_options& o, strata::const_buffer message, std::uint32_t x) {
  std::vector<strata::const_buffer> parts;
  std::size_t at = 0;
  x |= 1;  // xorshift never leaves 0
  while (at < message.size()) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    auto piece = std::min<std::size_t>(message.size() - at, x % 5);  // empty parts too
    parts.push_back(message.subspan(at, piece));
    at += piece;
  }
  auto verdict = strata::check_crlf_message(o, parts);
  const std::string_view d = o.delimiter;
  std::string wire(text(message));
  wire += d.substr(0, d.size() - 1);
  if (message.size() > o.max_message) {
    check(verdict.error() == strata::errc::message_too_large);
  } else if (wire.find(d) != std::string::npos) {
    check(verdict.error() == strata::errc::invalid_argument);
  } else {
    check(static_cast<bool>(verdict));
  }
}

constexpr std::array<std::size_t, 8> max_sizes{0, 1, 2, 5, 16, 100, 4096, 64 * 1024};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  strata::crlf_options o;
  std::size_t header = 3;
  switch (data[0] & 3u) {
    case 0:
      o.delimiter = "\r\n";
      break;
    case 1:
      o.delimiter = "\n";
      break;
    default: {
      std::size_t length = 1 + ((data[0] >> 2) & 15u);
      if (size < header + length) return 0;
      o.delimiter.assign(reinterpret_cast<const char*>(data + header), length);
      header += length;
      break;
    }
  }
  o.max_message = max_sizes[data[1] & 7u];
  std::uint32_t seed = data[2];
  strata::const_buffer in(reinterpret_cast<const std::byte*>(data + header), size - header);

  auto whole = decode_whole(o, in);
  auto chunked = decode_chunked(o, in, seed);
  check(whole.messages == chunked.messages);
  check(whole.consumed == chunked.consumed);
  check(whole.last == chunked.last);
  check(whole.consumed <= in.size());

  // Every decoded message can be sent back unchanged, and the frames tile the input.
  std::size_t expected_offset = 0;
  for (auto [offset, length] : whole.messages) {
    check(offset == expected_offset);
    auto message = in.subspan(offset, length);
    check(static_cast<bool>(strata::check_crlf_message(o, message)));
    expected_offset = offset + length + o.delimiter.size();
  }
  check(expected_offset == whole.consumed);

  // The sender's check on the raw input as a message, split into random gather parts.
  check_sender(o, in.first(std::min<std::size_t>(in.size(), 4096)), seed * 2654435761u + 1);
  return 0;
}
