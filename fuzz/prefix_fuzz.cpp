// Fuzz target for prefix_decoder (the receive side of `prefix`) and the header encoder.
//
// Input: byte 0 picks header_bytes (1..8) and the byte order, byte 1 picks max_message,
// byte 2 seeds the chunking; the rest is the received stream. The stream is decoded once
// whole and once fed in random pieces, as the driver feeds it. Invariants (abort() on
// violation): frames lie inside the input, payloads respect max_message and what the
// header can count, both feedings agree message by message, re-encoding the decoded
// messages reproduces the consumed bytes exactly, and errors are sticky.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "strata/adapt/prefix.hpp"

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

// Checks one decode step against the input it saw.
void check_step(const decode_step& s, std::size_t available, const strata::prefix_options& o) {
  switch (s.state) {
    case decode_step::status::message:
      check(s.offset == o.header_bytes);
      check(s.frame == s.offset + s.length);
      check(s.frame <= available);
      check(s.length <= strata::prefix_limit(o));
      check(s.length <= o.max_message);
      break;
    case decode_step::status::need_more:
      check(s.need >= 1);
      break;
    case decode_step::status::error:
      check(s.error == strata::errc::message_too_large);
      check(available >= o.header_bytes);
      break;
  }
}

outcome decode_whole(const strata::prefix_options& o, strata::const_buffer in) {
  outcome out;
  strata::prefix_decoder d(o);
  for (;;) {
    auto s = d.decode(in.subspan(out.consumed));
    check_step(s, in.size() - out.consumed, o);
    out.last = s.state;
    if (s.state == decode_step::status::message) {
      out.messages.emplace_back(out.consumed + s.offset, s.length);
      out.consumed += s.frame;
      d.reset();
      continue;
    }
    if (s.state == decode_step::status::need_more) {
      // A frame's size is known from its header, so `need` is exact: the header or the
      // frame would end exactly `need` bytes after the input.
      auto available = in.size() - out.consumed;
      if (available < o.header_bytes) check(available + s.need == o.header_bytes);
    } else {
      // Sticky: the same answer again, even for other input.
      auto again = d.decode(in.subspan(out.consumed));
      check(again.state == decode_step::status::error);
      check(d.failed());
    }
    return out;
  }
}

outcome decode_chunked(const strata::prefix_options& o, strata::const_buffer in, std::uint32_t seed) {
  outcome out;
  strata::prefix_decoder d(o);
  std::vector<std::byte> buffer;
  std::size_t buffer_base = 0;  // absolute offset of buffer[0]
  std::size_t fed = 0;
  std::uint32_t x = seed | 1;
  while (true) {
    for (;;) {
      auto s = d.decode(buffer);
      check_step(s, buffer.size(), o);
      out.last = s.state;
      if (s.state != decode_step::status::message) break;
      out.messages.emplace_back(buffer_base + s.offset, s.length);
      out.consumed += s.frame;
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(s.frame));
      buffer_base += s.frame;
      d.reset();
    }
    if (out.last == decode_step::status::error || fed == in.size()) return out;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    auto piece = std::min<std::size_t>(in.size() - fed, 1 + x % 7);
    buffer.insert(buffer.end(), in.begin() + static_cast<std::ptrdiff_t>(fed),
                  in.begin() + static_cast<std::ptrdiff_t>(fed + piece));
    fed += piece;
  }
}

constexpr std::array<std::size_t, 8> max_sizes{0, 1, 2, 16, 255, 256, 65536, 1 << 20};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  strata::prefix_options o{
      .header_bytes = 1 + (data[0] & 7u),
      .byte_order = (data[0] & 8u) ? std::endian::little : std::endian::big,
      .max_message = max_sizes[data[1] & 7u],
  };
  std::uint32_t seed = data[2];
  strata::const_buffer in(reinterpret_cast<const std::byte*>(data + 3), size - 3);

  auto whole = decode_whole(o, in);
  auto chunked = decode_chunked(o, in, seed);
  check(whole.messages == chunked.messages);
  check(whole.consumed == chunked.consumed);
  check(whole.last == chunked.last);
  check(whole.consumed <= in.size());

  // Re-encoding the messages gives back exactly the consumed bytes.
  std::vector<std::byte> encoded;
  for (auto [offset, length] : whole.messages) {
    std::array<std::byte, 8> header;
    auto n = strata::encode_prefix_header(o, length, header);
    check(static_cast<bool>(n) && *n == o.header_bytes);
    encoded.insert(encoded.end(), header.begin(), header.begin() + static_cast<std::ptrdiff_t>(*n));
    auto payload = in.subspan(offset, length);
    encoded.insert(encoded.end(), payload.begin(), payload.end());
  }
  check(encoded.size() == whole.consumed);
  check(encoded.empty() || std::memcmp(encoded.data(), in.data(), encoded.size()) == 0);
  return 0;
}
