// websocket: the codec (every frame shape and length encoding, masking against a bytewise
// reference, UTF-8 with code points split at every byte, control frames, close codes,
// every protocol violation with its close code, limits checked at the header, byte-at-a-
// time input), permessage-deflate (round trips with and without context takeover, window
// sizes, a final block, a deflate bomb) and its negotiation, the opening handshake's
// checks, and the connection end to end over in-memory streams (the message conformance
// suite, kinds, fragmentation, ping/pong, the close handshake both ways and with a
// deadline, failures answered with 1002/1007/1009, subprotocols), and from spec strings.
#include "strata/app/websocket.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "support/mem_stream.hpp"

using namespace std::chrono_literals;

/// CO_ASSERT_AWAIT_OK is CO_ASSERT_OK for an awaited operation, evaluated once.
#define CO_ASSERT_AWAIT_OK(awaited)  \
  do {                               \
    auto co_assert_result = awaited; \
    CO_ASSERT_OK(co_assert_result);  \
  } while (0)

namespace strata::test {

namespace ws = strata::websocket;

// -- helpers shared with the conformance traits (outside the anonymous namespace: see
// conformance.hpp) ------------------------------------------------------------------------

namespace websocket_support {

/// accepted is what a one-request server handler shares with the test.
struct accepted {
  ws::options options{};
  deadline dl = deadline::never();
  std::optional<ws::connection> conn{};
  std::error_code failure{};
};

inline task<result<void>> accept_one(accepted& st, http1::request& req, http1::response& res) {
  auto o = st.options;
  auto c = co_await ws::accept(req, res, std::move(o), st.dl);
  if (!c) {
    st.failure = c.error();
    co_return result<void>{};
  }
  st.conn.emplace(std::move(*c));
  co_return result<void>{};
}

/// run_accept serves one request on `s` as a WebSocket server.
inline task<void> run_accept(mem_stream s, accepted& st) {
  http1::server_options so;
  so.max_requests = 1;
  auto* shared = &st;
  http1::handler h = [shared](http1::request& req, http1::response& res) {
    return accept_one(*shared, req, res);
  };
  (void)co_await http1::serve(any_stream(std::move(s)), std::move(h), so);
}

using ws_pair = std::pair<ws::connection, ws::connection>;

/// handshake_pair connects a client and a server over an in-memory stream through both
/// opening handshakes: first is the client.
inline task<result<ws_pair>> handshake_pair(ws::options client_options, ws::options server_options,
                                            mem_options memory, deadline dl) {
  auto [a, b] = mem_stream::pair(memory, memory);
  accepted st;
  st.options = std::move(server_options);
  st.dl = dl;
  result<ws::connection> client = errc::closed;
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(run_accept(std::move(b), st));
    client =
        co_await ws::connect(any_stream(std::move(a)), "example.org", "/chat", std::move(client_options), dl);
  });
  if (!client) co_return unexpected(client.error());
  if (!st.conn) co_return unexpected(st.failure ? st.failure : make_error_code(errc::protocol_error));
  co_return ws_pair{std::move(*client), std::move(*st.conn)};
}

}  // namespace websocket_support

namespace websocket_conformance {

using websocket_support::handshake_pair;

struct over_mem {
  using message_type = ws::connection;
  static constexpr std::size_t max_message = 64 * 1024;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<message_type, message_type>>> make_pair(deadline dl) {
    ws::options o;
    o.max_message = max_message;
    mem_options m;
    co_return co_await handshake_pair(o, o, m, dl);
  }
};

// Byte-at-a-time reads and writes, small fragments, compression: every frame arrives
// split at every byte, and every message is compressed and fragmented.
struct over_mem_bytewise_deflate {
  using message_type = ws::connection;
  static constexpr std::size_t max_message = 4096;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<message_type, message_type>>> make_pair(deadline dl) {
    ws::options o;
    o.max_message = max_message;
    o.fragment_size = 100;
    o.deflate.enabled = true;
    mem_options m;
    m.max_read_chunk = 1;
    m.max_write_chunk = 1;
    co_return co_await handshake_pair(o, o, m, dl);
  }
};

using message_types = ::testing::Types<over_mem, over_mem_bytewise_deflate>;
INSTANTIATE_TYPED_TEST_SUITE_P(WebSocket, message_conformance, message_types);

}  // namespace websocket_conformance

namespace {

using websocket_support::accepted;
using websocket_support::handshake_pair;
using websocket_support::run_accept;
using event_type = ws::receiver::event::type;

std::vector<std::byte> bytes(std::string_view s) {
  auto b = as_bytes(s);
  return {b.begin(), b.end()};
}

std::string text_of(const_buffer b) { return std::string(as_text(b)); }

void append(std::vector<std::byte>& to, const std::vector<std::byte>& more) {
  to.insert(to.end(), more.begin(), more.end());
}

constexpr ws::mask_key test_key{std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};

/// frame builds one frame with encode_header (masked with test_key when `masked`).
std::vector<std::byte> frame(ws::opcode op, std::string_view payload, bool masked, bool fin = true,
                             bool rsv1 = false) {
  ws::frame_header h;
  h.opcode = op;
  h.fin = fin;
  h.rsv1 = rsv1;
  h.masked = masked;
  h.key = test_key;
  h.length = payload.size();
  std::array<std::byte, ws::max_header_size> header{};
  auto n = ws::encode_header(h, header);
  std::vector<std::byte> out(header.begin(), header.begin() + static_cast<std::ptrdiff_t>(n));
  auto body = bytes(payload);
  if (masked) ws::apply_mask(body, body.data(), test_key);
  append(out, body);
  return out;
}

/// record is one receiver event, its views copied.
struct record {
  event_type what;
  ws::message_kind kind = ws::message_kind::binary;
  std::string data;
  std::uint16_t code = 0;
  std::string reason;
  ws::error failure{};
  bool operator==(const record&) const = default;
};

/// decode_all runs a receiver over `input` fed `piece` bytes at a time, as a driver
/// does, until the input is used up, a close or an error.
std::vector<record> decode_all(ws::receiver& r, const std::vector<std::byte>& input, std::size_t piece) {
  std::vector<record> out;
  std::vector<std::byte> buffered;
  std::size_t fed = 0;
  for (int guard = 0; guard < 10'000'000; ++guard) {
    auto ev = r.next(buffered);
    if (ev.what == event_type::need_more) {
      EXPECT_GE(ev.need, 1u);
      buffered.erase(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(ev.consumed));
      if (fed == input.size()) return out;
      auto n = std::min(piece, input.size() - fed);
      buffered.insert(buffered.end(), input.begin() + static_cast<std::ptrdiff_t>(fed),
                      input.begin() + static_cast<std::ptrdiff_t>(fed + n));
      fed += n;
      continue;
    }
    record rec{ev.what, ev.kind, text_of(ev.data), ev.code, std::string(ev.reason), ev.failure};
    out.push_back(rec);
    buffered.erase(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(ev.consumed));
    if (ev.what == event_type::close || ev.what == event_type::error) return out;
  }
  ADD_FAILURE() << "the receiver made no progress";
  return out;
}

ws::deflate_params no_deflate() { return {}; }

ws::receive_limits limit(std::size_t max) {
  ws::receive_limits l;
  l.max_message = max;
  return l;
}

/// decode_as decodes `input` on a `local` receiver, whole and byte by byte, and checks
/// that both give the same events.
std::vector<record> decode_as(ws::role local, const std::vector<std::byte>& input, std::size_t max = 1 << 20,
                              ws::deflate_params d = {}) {
  ws::receiver whole(local, d, limit(max));
  auto a = decode_all(whole, input, input.size() + 1);
  ws::receiver bytewise(local, d, limit(max));
  auto b = decode_all(bytewise, input, 1);
  EXPECT_EQ(a, b) << "byte-at-a-time input decoded differently";
  return a;
}

ws::error failure_of(ws::role local, const std::vector<std::byte>& input, std::size_t max = 1 << 20,
                     ws::deflate_params d = {}) {
  auto events = decode_as(local, input, max, d);
  if (events.empty() || events.back().what != event_type::error) {
    ADD_FAILURE() << "no error reported";
    return {};
  }
  return events.back().failure;
}

// -- frames ----------------------------------------------------------------------------------

TEST(WebSocketFrames, HeaderUsesTheShortestLengthForm) {
  struct shape {
    std::uint64_t length;
    bool masked;
    std::size_t size;
  };
  for (auto s : {shape{0, false, 2}, shape{125, false, 2}, shape{126, false, 4}, shape{65535, false, 4},
                 shape{65536, false, 10}, shape{std::uint64_t{1} << 40, false, 10}, shape{0, true, 6},
                 shape{126, true, 8}, shape{70000, true, 14}}) {
    ws::frame_header h;
    h.length = s.length;
    h.masked = s.masked;
    h.key = test_key;
    std::array<std::byte, ws::max_header_size> out{};
    EXPECT_EQ(ws::encode_header(h, out), s.size) << s.length;
  }
  ws::frame_header h;
  h.opcode = ws::opcode::text;
  h.fin = false;
  h.rsv1 = true;
  h.length = 300;
  std::array<std::byte, ws::max_header_size> out{};
  ASSERT_EQ(ws::encode_header(h, out), 4u);
  EXPECT_EQ(out[0], std::byte{0x41});  // FIN clear, RSV1, text
  EXPECT_EQ(out[1], std::byte{126});
  EXPECT_EQ(out[2], std::byte{0x01});
  EXPECT_EQ(out[3], std::byte{0x2c});
}

TEST(WebSocketFrames, EveryLengthFormDecodesBothWays) {
  for (std::size_t size : {0u, 1u, 125u, 126u, 127u, 65535u, 65536u, 70000u}) {
    std::string payload(size, 'p');
    for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + i % 26);
    // A server receives masked frames, a client unmasked ones.
    for (auto local : {ws::role::server, ws::role::client}) {
      ws::receiver r(local, no_deflate(), limit(1 << 20));
      auto events = decode_all(r, frame(ws::opcode::binary, payload, local == ws::role::server), 1 << 20);
      ASSERT_EQ(events.size(), 1u) << size;
      EXPECT_EQ(events[0].what, event_type::message);
      EXPECT_EQ(events[0].kind, ws::message_kind::binary);
      EXPECT_EQ(events[0].data, payload) << size;
    }
  }
}

TEST(WebSocketFrames, MaskingMatchesABytewiseReferenceAtEveryPhaseAndOffset) {
  std::vector<std::byte> source(300);
  for (std::size_t i = 0; i < source.size(); ++i) source[i] = static_cast<std::byte>(i * 7 + 3);
  for (std::size_t phase = 0; phase < 4; ++phase) {
    for (std::size_t offset = 0; offset < 9; ++offset) {
      for (std::size_t size : {0u, 1u, 3u, 7u, 8u, 9u, 31u, 32u, 33u, 64u, 200u}) {
        const_buffer in(source.data() + offset, size);
        std::vector<std::byte> out(size + 1, std::byte{0xee});
        auto next = ws::apply_mask(in, out.data(), test_key, phase);
        EXPECT_EQ(next, (phase + size) % 4);
        for (std::size_t i = 0; i < size; ++i) {
          ASSERT_EQ(out[i], in[i] ^ test_key[(phase + i) % 4]) << phase << " " << offset << " " << size;
        }
        EXPECT_EQ(out[size], std::byte{0xee}) << "wrote past the end";
        // In place, and masking twice gives the input back.
        std::vector<std::byte> copy(in.begin(), in.end());
        ws::apply_mask(copy, copy.data(), test_key, phase);
        ws::apply_mask(copy, copy.data(), test_key, phase);
        EXPECT_TRUE(std::equal(copy.begin(), copy.end(), in.begin()));
      }
    }
  }
}

TEST(WebSocketFrames, MaskKeysAreFreshAndASeededSourceRepeats) {
  ws::mask_keys random;
  std::vector<ws::mask_key> seen;
  for (int i = 0; i < 200; ++i) seen.push_back(random.next());
  std::sort(seen.begin(), seen.end());
  // 200 keys of 32 random bits: a repeat is a one in ten thousand event at worst.
  EXPECT_GE(std::unique(seen.begin(), seen.end()) - seen.begin(), 199);
  ws::mask_keys a(42), b(42), c(43);
  for (int i = 0; i < 10; ++i) {
    auto ka = a.next();
    EXPECT_EQ(ka, b.next());
    EXPECT_NE(ka, c.next());
  }
}

TEST(WebSocketFrames, ClientFramesAreMaskedWithAFreshKeyEach) {
  ws::sender tx(ws::role::client, no_deflate(), {});
  byte_buffer out;
  ASSERT_TRUE(tx.encode_message(ws::message_kind::text, as_bytes("hello"), out));
  ASSERT_TRUE(tx.encode_message(ws::message_kind::text, as_bytes("hello"), out));
  auto all = out.readable();
  ASSERT_EQ(all.size(), 2 * (2 + 4 + 5));
  EXPECT_EQ(all[0], std::byte{0x81});
  EXPECT_EQ(all[1], std::byte{0x80 | 5});
  EXPECT_FALSE(std::equal(all.begin() + 2, all.begin() + 6, all.begin() + 13)) << "the same key twice";
  EXPECT_NE(text_of(all.subspan(6, 5)), "hello") << "the payload went unmasked";
  ws::receiver rx(ws::role::server, no_deflate(), limit(100));
  auto events = decode_all(rx, {all.begin(), all.end()}, 1000);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].data, "hello");
  EXPECT_EQ(events[1].kind, ws::message_kind::text);
}

TEST(WebSocketFrames, FragmentsReassembleWithControlFramesBetween) {
  std::vector<std::byte> in;
  append(in, frame(ws::opcode::text, "Hel", true, false));
  append(in, frame(ws::opcode::ping, "are you there", true));
  append(in, frame(ws::opcode::continuation, "lo, ", true, false));
  append(in, frame(ws::opcode::pong, "", true));
  append(in, frame(ws::opcode::continuation, "world", true, true));
  append(in, frame(ws::opcode::binary, std::string("\0\1\2", 3), true));
  auto events = decode_as(ws::role::server, in);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].what, event_type::ping);
  EXPECT_EQ(events[0].data, "are you there");
  EXPECT_EQ(events[1].what, event_type::pong);
  EXPECT_EQ(events[2].what, event_type::message);
  EXPECT_EQ(events[2].kind, ws::message_kind::text);
  EXPECT_EQ(events[2].data, "Hello, world");
  EXPECT_EQ(events[3].kind, ws::message_kind::binary);
  EXPECT_EQ(events[3].data, std::string("\0\1\2", 3));
}

TEST(WebSocketFrames, SenderFragmentsAtTheThresholdAndTheReceiverReassembles) {
  ws::send_options so;
  so.fragment_size = 10;
  std::string message(95, 'x');
  for (std::size_t i = 0; i < message.size(); ++i) message[i] = static_cast<char>('A' + i % 26);
  for (auto local : {ws::role::client, ws::role::server}) {
    ws::sender tx(local, no_deflate(), so);
    byte_buffer out;
    std::array<const_buffer, 3> parts{as_bytes(std::string_view(message).substr(0, 7)),
                                      as_bytes(std::string_view(message).substr(7, 50)),
                                      as_bytes(std::string_view(message).substr(57))};
    ASSERT_TRUE(tx.encode_message(ws::message_kind::text, std::span<const const_buffer>(parts), out));
    std::size_t header = local == ws::role::client ? 6 : 2;
    EXPECT_EQ(out.size(), 10 * header + message.size());  // ten frames
    auto first = out.readable();
    EXPECT_EQ(first[0], std::byte{0x01});  // text, not final
    auto peer = local == ws::role::client ? ws::role::server : ws::role::client;
    auto events = decode_as(peer, {first.begin(), first.end()});
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].data, message);
  }
}

TEST(WebSocketFrames, ControlFramesAndCloseCodes) {
  auto close_of = [](std::uint16_t code, std::string_view reason) {
    auto payload = ws::encode_close_payload(code, reason);
    return frame(ws::opcode::close, text_of(payload), true);
  };
  auto events = decode_as(ws::role::server, close_of(1000, "bye"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].what, event_type::close);
  EXPECT_EQ(events[0].code, 1000);
  EXPECT_EQ(events[0].reason, "bye");
  auto empty = decode_as(ws::role::server, frame(ws::opcode::close, "", true));
  EXPECT_EQ(empty[0].code, ws::close_code::no_status);
  for (std::uint16_t good :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}) {
    EXPECT_TRUE(ws::valid_close_code(good)) << good;
    EXPECT_EQ(decode_as(ws::role::server, close_of(good, ""))[0].what, event_type::close) << good;
  }
  for (std::uint16_t bad : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
    EXPECT_FALSE(ws::valid_close_code(bad)) << bad;
    std::string payload{static_cast<char>(bad >> 8), static_cast<char>(bad & 0xff)};
    EXPECT_EQ(failure_of(ws::role::server, frame(ws::opcode::close, payload, true)),
              ws::error::bad_close_frame)
        << bad;
  }
  EXPECT_EQ(failure_of(ws::role::server, frame(ws::opcode::close, "x", true)), ws::error::bad_close_frame);
  EXPECT_EQ(failure_of(ws::role::server, frame(ws::opcode::close, "\x03\xe8\xff", true)),
            ws::error::invalid_utf8);
  // After the close nothing more is decoded.
  auto rest = close_of(1000, "");
  append(rest, frame(ws::opcode::text, "late", true));
  EXPECT_EQ(decode_as(ws::role::server, rest).size(), 1u);
}

TEST(WebSocketFrames, CloseReasonIsCutAtACodePointBoundary) {
  std::string reason;
  for (int i = 0; i < 60; ++i) reason += "\xc3\xa9";  // 120 bytes of é
  reason += "\xe2\x82\xac";                           // 123 bytes
  reason += "\xe2\x82\xac";                           // 126: one too many
  auto payload = ws::encode_close_payload(1000, reason);
  EXPECT_EQ(payload.size(), 2u + 123u);
  EXPECT_TRUE(ws::is_utf8(const_buffer(payload).subspan(2)));
  EXPECT_TRUE(ws::encode_close_payload(ws::close_code::no_status, "x").empty());
  ws::sender tx(ws::role::server, no_deflate(), {});
  byte_buffer out;
  std::vector<std::byte> big(126);
  EXPECT_EQ(tx.encode_control(ws::opcode::ping, big, out).error(), errc::invalid_argument);
  EXPECT_TRUE(out.empty());
}

TEST(WebSocketFrames, EveryViolationFailsWithItsCode) {
  struct violation {
    const char* name;
    ws::role local;
    std::vector<std::byte> input;
    ws::error expected;
  };
  auto raw = [](std::initializer_list<int> b) {
    std::vector<std::byte> out;
    for (int v : b) out.push_back(static_cast<std::byte>(v));
    return out;
  };
  auto in_message = [](std::vector<std::byte> then) {
    auto out = frame(ws::opcode::text, "a", true, false);
    append(out, then);
    return out;
  };
  std::vector<violation> cases;
  for (int op : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15}) {
    cases.push_back({"reserved opcode", ws::role::client, raw({0x80 | op, 0}), ws::error::reserved_opcode});
  }
  cases.push_back({"rsv2", ws::role::client, raw({0xa2, 0}), ws::error::reserved_bits});
  cases.push_back({"rsv3", ws::role::client, raw({0x92, 0}), ws::error::reserved_bits});
  cases.push_back({"rsv1 without deflate", ws::role::client, raw({0xc2, 0}), ws::error::reserved_bits});
  cases.push_back({"fragmented ping", ws::role::client, raw({0x09, 0}), ws::error::bad_control_frame});
  cases.push_back({"long ping", ws::role::client, raw({0x89, 126, 0, 126}), ws::error::bad_control_frame});
  cases.push_back({"continuation first", ws::role::client, raw({0x80, 0}), ws::error::bad_continuation});
  cases.push_back({"text inside a message", ws::role::server, in_message(frame(ws::opcode::text, "b", true)),
                   ws::error::bad_continuation});
  cases.push_back({"binary inside a message", ws::role::server,
                   in_message(frame(ws::opcode::binary, "b", true)), ws::error::bad_continuation});
  cases.push_back({"unmasked client frame", ws::role::server, frame(ws::opcode::text, "a", false),
                   ws::error::bad_masking});
  cases.push_back(
      {"masked server frame", ws::role::client, frame(ws::opcode::text, "a", true), ws::error::bad_masking});
  cases.push_back({"length top bit", ws::role::client, raw({0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}),
                   ws::error::bad_length});
  cases.push_back(
      {"invalid text", ws::role::client, frame(ws::opcode::text, "a\xff", false), ws::error::invalid_utf8});
  for (const auto& c : cases) {
    EXPECT_EQ(failure_of(c.local, c.input), c.expected) << c.name;
  }
  EXPECT_EQ(ws::close_code_for(ws::error::bad_masking), 1002);
  EXPECT_EQ(ws::close_code_for(ws::error::reserved_opcode), 1002);
  EXPECT_EQ(ws::close_code_for(ws::error::invalid_utf8), 1007);
  EXPECT_EQ(ws::close_code_for(ws::error::bad_compressed_data), 1007);
  EXPECT_EQ(ws::close_code_for(ws::error::message_too_big), 1009);
  EXPECT_TRUE(make_error_code(ws::error::bad_masking) == errc::protocol_error);
  EXPECT_TRUE(make_error_code(ws::error::message_too_big) == errc::message_too_large);
  EXPECT_TRUE(make_error_code(ws::error::truncated) == errc::broken);
}

TEST(WebSocketFrames, SizesAreRefusedAtTheHeaderBeforeThePayloadCostsMemory) {
  // A header claiming 1 GiB, with nothing behind it.
  std::vector<std::byte> claim{std::byte{0x82}, std::byte{127}};
  for (int i = 0; i < 8; ++i) claim.push_back(static_cast<std::byte>(i == 4 ? 0x40 : 0));
  ws::receiver r(ws::role::client, no_deflate(), limit(1 << 20));
  auto ev = r.next(claim);
  EXPECT_EQ(ev.what, event_type::error);
  EXPECT_EQ(ev.failure, ws::error::message_too_big);
  // Exactly the limit passes; one more fails.
  EXPECT_EQ(decode_as(ws::role::client, frame(ws::opcode::binary, std::string(100, 'x'), false), 100)[0].what,
            event_type::message);
  EXPECT_EQ(failure_of(ws::role::client, frame(ws::opcode::binary, std::string(101, 'x'), false), 100),
            ws::error::message_too_big);
  // Fragments add up.
  std::vector<std::byte> parts;
  append(parts, frame(ws::opcode::binary, std::string(60, 'x'), false, false));
  append(parts, frame(ws::opcode::continuation, std::string(41, 'x'), false, true));
  EXPECT_EQ(failure_of(ws::role::client, parts, 100), ws::error::message_too_big);
  // A half-received frame below the limit asks for what is missing.
  auto big = frame(ws::opcode::binary, std::string(1000, 'x'), false);
  ws::receiver partial(ws::role::client, no_deflate(), limit(1 << 20));
  std::vector<std::byte> half(big.begin(), big.begin() + 500);
  auto step = partial.next(half);
  EXPECT_EQ(step.what, event_type::need_more);
  EXPECT_EQ(step.need, 1000 + 4 - 500);
}

// -- UTF-8 -----------------------------------------------------------------------------------

TEST(WebSocketUtf8, AcceptsValidTextSplitAnywhere) {
  std::vector<std::string> valid{"",
                                 "plain ascii, long enough for the 8-byte path",
                                 "\xc2\x80\xdf\xbf",
                                 "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf",
                                 "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
                                 "Stra\xc3\x9f"
                                 "e \xe2\x82\xac \xf0\x9f\x98\x80 end"};
  for (const auto& t : valid) {
    EXPECT_TRUE(ws::is_utf8(as_bytes(t))) << t;
    for (std::size_t cut = 0; cut <= t.size(); ++cut) {
      ws::utf8_validator v;
      EXPECT_TRUE(v.feed(as_bytes(std::string_view(t).substr(0, cut))));
      EXPECT_TRUE(v.feed(as_bytes(std::string_view(t).substr(cut))));
      EXPECT_TRUE(v.complete()) << t << " cut at " << cut;
    }
  }
}

TEST(WebSocketUtf8, RefusesOverlongSurrogatesAndOutOfRange) {
  std::vector<std::string> invalid{"\x80",
                                   "\xbf",
                                   "\xc0\x80",
                                   "\xc1\xbf",
                                   "\xe0\x80\x80",
                                   "\xe0\x9f\xbf",
                                   "\xed\xa0\x80",
                                   "\xed\xbf\xbf",
                                   "\xf0\x80\x80\x80",
                                   "\xf0\x8f\xbf\xbf",
                                   "\xf4\x90\x80\x80",
                                   "\xf5\x80\x80\x80",
                                   "\xff",
                                   "\xc2\x41",
                                   "\xe2\x82\x41",
                                   "abcdefgh\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
                                   "edited"};
  for (const auto& t : invalid) {
    EXPECT_FALSE(ws::is_utf8(as_bytes(t))) << t;
    for (std::size_t cut = 0; cut <= t.size(); ++cut) {
      ws::utf8_validator v;
      bool ok = v.feed(as_bytes(std::string_view(t).substr(0, cut)));
      ok = v.feed(as_bytes(std::string_view(t).substr(cut))) && ok;
      EXPECT_FALSE(ok && v.complete()) << t << " cut at " << cut;
    }
  }
  // Cut short: valid so far, not complete.
  ws::utf8_validator v;
  EXPECT_TRUE(v.feed(as_bytes("\xe2\x82")));
  EXPECT_FALSE(v.complete());
}

TEST(WebSocketUtf8, TextSplitInsideACodePointAcrossFragments) {
  // "€" (E2 82 AC) split over three frames: valid. A bad continuation in the second
  // fragment fails at once, before the message ends.
  std::vector<std::byte> good;
  append(good, frame(ws::opcode::text, "a\xe2", true, false));
  append(good, frame(ws::opcode::continuation, "\x82", true, false));
  append(good, frame(ws::opcode::continuation, "\xac", true, true));
  auto events = decode_as(ws::role::server, good);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a\xe2\x82\xac");
  std::vector<std::byte> bad;
  append(bad, frame(ws::opcode::text, "a\xe2", true, false));
  append(bad, frame(ws::opcode::continuation, "\x41", true, false));
  EXPECT_EQ(failure_of(ws::role::server, bad), ws::error::invalid_utf8);
  std::vector<std::byte> cut;
  append(cut, frame(ws::opcode::text, "a\xe2", true, false));
  append(cut, frame(ws::opcode::continuation, "\x82", true, true));
  EXPECT_EQ(failure_of(ws::role::server, cut), ws::error::invalid_utf8);
  // Binary messages are not text.
  EXPECT_EQ(decode_as(ws::role::server, frame(ws::opcode::binary, "\xff", true))[0].what,
            event_type::message);
}

// -- permessage-deflate ----------------------------------------------------------------------

ws::deflate_params deflate_with(bool own_no_context, bool peer_no_context, int bits) {
  ws::deflate_params p;
  p.enabled = true;
  p.no_context_takeover = own_no_context;
  p.peer_no_context_takeover = peer_no_context;
  p.window_bits = bits;
  return p;
}

/// round_trip sends `messages` from a `from` sender to the other side's receiver.
std::vector<std::string> round_trip(ws::role from, const ws::deflate_params& d, std::size_t fragment,
                                    const std::vector<std::string>& messages, std::size_t* wire = nullptr) {
  ws::send_options so;
  so.fragment_size = fragment;
  ws::sender tx(from, d, so);
  byte_buffer out;
  for (const auto& m : messages) EXPECT_TRUE(tx.encode_message(ws::message_kind::text, as_bytes(m), out));
  if (wire) *wire = out.size();
  auto to = from == ws::role::client ? ws::role::server : ws::role::client;
  auto peer = d;
  std::swap(peer.no_context_takeover, peer.peer_no_context_takeover);
  auto input = out.readable();
  auto events = decode_as(to, {input.begin(), input.end()}, 1 << 20, peer);
  std::vector<std::string> got;
  for (const auto& e : events) {
    EXPECT_EQ(e.what, event_type::message)
        << (e.what == event_type::error ? make_error_code(e.failure).message() : "");
    got.push_back(e.data);
  }
  return got;
}

TEST(WebSocketDeflate, RoundTripsWithAndWithoutContextTakeover) {
  std::vector<std::string> messages{"",
                                    "a",
                                    "hello hello hello hello",
                                    std::string(5000, 'z'),
                                    "hello hello hello hello",
                                    "\xe2\x82\xac uni \xf0\x9f\x98\x80",
                                    ""};  // empty right after a flush: zlib writes nothing
  std::string varied;
  for (int i = 0; i < 3000; ++i) varied += std::to_string(i * 7919 % 1000) + ",";
  messages.push_back(varied);
  for (bool own : {false, true}) {
    for (auto from : {ws::role::client, ws::role::server}) {
      for (std::size_t fragment : {0u, 7u, 1000u}) {
        for (int bits : {9, 12, 15}) {
          EXPECT_EQ(round_trip(from, deflate_with(own, false, bits), fragment, messages), messages)
              << own << " " << fragment << " " << bits;
        }
      }
    }
  }
  // Context takeover makes a repeated message cheaper the second time.
  std::vector<std::string> twice{varied, varied};
  std::size_t with_context = 0, without = 0;
  round_trip(ws::role::server, deflate_with(false, false, 15), 0, twice, &with_context);
  round_trip(ws::role::server, deflate_with(true, false, 15), 0, twice, &without);
  EXPECT_LT(with_context + 1000, without);
}

TEST(WebSocketDeflate, AnEmptyCompressedMessageIsOneByte) {
  ws::sender tx(ws::role::server, deflate_with(false, false, 15), {});
  byte_buffer out;
  ASSERT_TRUE(tx.encode_message(ws::message_kind::binary, const_buffer{}, out));
  auto all = out.readable();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0], std::byte{0xc2});  // FIN, RSV1, binary
  EXPECT_EQ(all[2], std::byte{0x00});  // RFC 7692 7.2.3.6
}

/// raw_deflate compresses `text` with zlib directly (another implementation's choices:
/// `finish` ends the stream with a final block).
std::string raw_deflate(const std::string& text, bool finish) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(text.size() + 1024, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_NE(deflate(&z, finish ? Z_FINISH : Z_SYNC_FLUSH), Z_STREAM_ERROR);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  if (!finish && out.size() >= 4) out.resize(out.size() - 4);
  return out;
}

TEST(WebSocketDeflate, InflatesAFinalBlockAndRefusesGarbage) {
  auto d = deflate_with(false, false, 15);
  std::string message = "final block from another deflater";
  std::vector<std::byte> in = frame(ws::opcode::text, raw_deflate(message, true), false, true, true);
  append(in, frame(ws::opcode::text, raw_deflate(message, false), false, true, true));
  auto events = decode_as(ws::role::client, in, 1 << 20, d);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, message);
  EXPECT_EQ(events[1].data, message);
  EXPECT_EQ(failure_of(ws::role::client, frame(ws::opcode::binary, "\xff\xff\xff\xff", false, true, true),
                       1 << 20, d),
            ws::error::bad_compressed_data);
  // RSV1 belongs on the first frame only, and never on a control frame.
  std::vector<std::byte> rsv_on_continuation =
      frame(ws::opcode::text, raw_deflate("ab", false), false, false, true);
  append(rsv_on_continuation, frame(ws::opcode::continuation, "", false, true, true));
  EXPECT_EQ(failure_of(ws::role::client, rsv_on_continuation, 1 << 20, d), ws::error::reserved_bits);
  EXPECT_EQ(failure_of(ws::role::client, frame(ws::opcode::ping, "", false, true, true), 1 << 20, d),
            ws::error::reserved_bits);
  // Compressed text is validated after inflating.
  EXPECT_EQ(failure_of(ws::role::client,
                       frame(ws::opcode::text, raw_deflate("ok \xff", false), false, true, true), 1 << 20, d),
            ws::error::invalid_utf8);
}

TEST(WebSocketDeflate, ABombStopsAtMaxMessage) {
  // 64 MiB of zeros compress to about 64 KiB; the receiver allows 1 MiB.
  std::vector<std::byte> zeros(64 << 20);
  ws::sender tx(ws::role::server, deflate_with(false, false, 15), {});
  byte_buffer out;
  ASSERT_TRUE(tx.encode_message(ws::message_kind::binary, const_buffer(zeros), out));
  EXPECT_LT(out.size(), 128u * 1024);
  auto input = out.readable();
  ws::receiver rx(ws::role::client, deflate_with(false, false, 15), limit(1 << 20));
  std::vector<std::byte> copy(input.begin(), input.end());
  auto ev = rx.next(copy);
  EXPECT_EQ(ev.what, event_type::error);
  EXPECT_EQ(ev.failure, ws::error::message_too_big);
  EXPECT_LE(rx.buffered_capacity(), std::size_t{3} << 20) << "the receiver held more than the limit allows";
  // The same message within the limit inflates whole.
  ws::receiver roomy(ws::role::client, deflate_with(false, false, 15), limit(64 << 20));
  auto whole = roomy.next(copy);
  ASSERT_EQ(whole.what, event_type::message);
  EXPECT_EQ(whole.data.size(), zeros.size());
}

TEST(WebSocketDeflate, NegotiationFromTheServersSide) {
  ws::deflate_options o;
  o.enabled = true;
  auto answer = [&](std::vector<std::string_view> offers) { return ws::negotiate_deflate(offers, o); };
  auto plain = answer({"permessage-deflate"});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->response, "permessage-deflate");
  EXPECT_EQ(plain->params.window_bits, 15);
  auto python = answer({"permessage-deflate; client_max_window_bits"});
  ASSERT_TRUE(python);
  EXPECT_EQ(python->response, "permessage-deflate");
  auto full =
      answer({"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=10; client_max_window_bits=12"});
  ASSERT_TRUE(full);
  EXPECT_EQ(full->response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10");
  EXPECT_TRUE(full->params.no_context_takeover);
  EXPECT_TRUE(full->params.peer_no_context_takeover);
  EXPECT_EQ(full->params.window_bits, 10);
  EXPECT_EQ(full->params.peer_window_bits, 12);
  // Declined offers fall through to the next one.
  auto fallback =
      answer({"permessage-deflate; server_max_window_bits=8, permessage-deflate; bogus, "
              "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
              "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=\"11\""});
  ASSERT_TRUE(fallback);
  EXPECT_EQ(fallback->params.window_bits, 11);
  EXPECT_FALSE(answer({"permessage-deflate; server_max_window_bits"}));
  EXPECT_FALSE(answer({"permessage-deflate; server_max_window_bits=16"}));
  EXPECT_FALSE(answer({"permessage-deflate; server_max_window_bits=09"}));
  EXPECT_FALSE(answer({"permessage-deflate; client_no_context_takeover=1"}));
  EXPECT_FALSE(answer({"other-extension"}));
  // The server asks for less when the client allows it.
  o.peer_max_window_bits = 10;
  o.peer_no_context_takeover = true;
  auto asked = answer({"permessage-deflate; client_max_window_bits"});
  ASSERT_TRUE(asked);
  EXPECT_EQ(asked->response, "permessage-deflate; client_no_context_takeover; client_max_window_bits=10");
  auto not_offered = answer({"permessage-deflate"});
  ASSERT_TRUE(not_offered);
  EXPECT_EQ(not_offered->response, "permessage-deflate; client_no_context_takeover");
  o.enabled = false;
  EXPECT_FALSE(answer({"permessage-deflate"}));
}

TEST(WebSocketDeflate, NegotiationFromTheClientsSide) {
  ws::deflate_options o;
  o.enabled = true;
  EXPECT_EQ(ws::deflate_offer(o), "permessage-deflate; client_max_window_bits");
  auto p = ws::accept_deflate("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", o);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->window_bits, 12);
  EXPECT_EQ(p->peer_window_bits, 12);
  EXPECT_FALSE(p->no_context_takeover);
  auto nc =
      ws::accept_deflate("permessage-deflate; client_no_context_takeover; server_no_context_takeover", o);
  ASSERT_TRUE(nc);
  EXPECT_TRUE(nc->no_context_takeover);
  EXPECT_TRUE(nc->peer_no_context_takeover);
  for (auto bad :
       {"permessage-deflate; client_max_window_bits=8", "permessage-deflate; client_max_window_bits",
        "permessage-deflate; unknown", "permessage-deflate, permessage-deflate", "other",
        "permessage-deflate; server_max_window_bits=16"}) {
    EXPECT_FALSE(ws::accept_deflate(bad, o)) << bad;
  }
  o.no_context_takeover = true;
  o.peer_no_context_takeover = true;
  o.max_window_bits = 11;
  o.peer_max_window_bits = 10;
  EXPECT_EQ(ws::deflate_offer(o),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; "
            "client_max_window_bits=11");
  // What we asked must be granted, and no more than we offered may be used.
  EXPECT_FALSE(ws::accept_deflate("permessage-deflate; server_max_window_bits=10", o));
  EXPECT_FALSE(ws::accept_deflate("permessage-deflate; server_no_context_takeover", o));
  EXPECT_FALSE(
      ws::accept_deflate("permessage-deflate; server_no_context_takeover; server_max_window_bits=11", o));
  auto granted =
      ws::accept_deflate("permessage-deflate; server_no_context_takeover; server_max_window_bits=9", o);
  ASSERT_TRUE(granted);
  EXPECT_EQ(granted->window_bits, 11);
  EXPECT_TRUE(granted->no_context_takeover);
  EXPECT_FALSE(ws::accept_deflate(
      "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12",
      o));
}

// -- opening handshake -----------------------------------------------------------------------

TEST(WebSocketHandshake, AcceptValueOfRfc6455) {
  EXPECT_EQ(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  auto key = ws::make_key();
  EXPECT_EQ(key.size(), 24u);
  EXPECT_NE(key, ws::make_key());
}

http1::request_head request_of(const std::string& text) {
  http1::head_parser p;
  http1::request_head head;
  EXPECT_EQ(p.parse_request(text, head), http1::head_parser::status::complete) << text;
  return head;
}

TEST(WebSocketHandshake, ChecksTheUpgradeRequest) {
  std::string base = "GET /chat HTTP/1.1\r\nHost: a\r\n";
  std::string good = base +
                     "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: "
                     "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  auto head = request_of(good);
  auto key = ws::check_request(head);
  ASSERT_TRUE(key);
  EXPECT_EQ(*key, "dGhlIHNhbXBsZSBub25jZQ==");
  struct bad_case {
    std::string text;
    ws::error expected;
  };
  std::string up = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
  std::string key_line = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  std::vector<bad_case> cases{
      {base + "Sec-WebSocket-Version: 13\r\n" + key_line + "\r\n", ws::error::upgrade_required},
      {base + "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" + key_line + "\r\n",
       ws::error::upgrade_required},
      {base + up + "Sec-WebSocket-Version: 8\r\n" + key_line + "\r\n", ws::error::version_not_supported},
      {base + up + key_line + "\r\n", ws::error::version_not_supported},
      {base + up + "Sec-WebSocket-Version: 13\r\n\r\n", ws::error::bad_handshake},
      {base + up + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n",
       ws::error::bad_handshake},
      {base + up + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=\r\n\r\n",
       ws::error::bad_handshake},
      {base + up + "Sec-WebSocket-Version: 13\r\n" + key_line + key_line + "\r\n", ws::error::bad_handshake},
      {"POST /chat HTTP/1.1\r\nHost: a\r\n" + up + "Sec-WebSocket-Version: 13\r\n" + key_line + "\r\n",
       ws::error::bad_handshake},
      {"GET /chat HTTP/1.0\r\n" + up + "Sec-WebSocket-Version: 13\r\n" + key_line + "\r\n",
       ws::error::bad_handshake},
      {base + up + "Content-Length: 3\r\nSec-WebSocket-Version: 13\r\n" + key_line + "\r\n",
       ws::error::bad_handshake},
  };
  for (const auto& c : cases) {
    auto r = ws::check_request(request_of(c.text));
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.error(), make_error_code(c.expected)) << c.text;
  }
}

/// refusal is the server's answer to a raw `request`.
std::string refusal(const std::string& request) {
  std::string reply;
  run_test([&]() -> task<void> {
    auto [client, server] = mem_stream::pair();
    accepted st;
    st.dl = deadline::after(5s);
    scope s;
    s.spawn(run_accept(std::move(server), st));
    auto dl = deadline::after(5s);
    (void)co_await client.write(as_bytes(request), dl);
    std::array<std::byte, 4096> buf{};
    while (reply.find("\r\n\r\n") == std::string::npos) {
      auto n = co_await client.read_some(buf, dl);
      if (!n) break;
      reply.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    (void)co_await client.close(dl);
    (void)co_await s.join(dl);
    EXPECT_FALSE(st.conn.has_value());
  });
  return reply;
}

TEST(WebSocketHandshake, RefusalsCarryTheirStatusAndVersion) {
  auto v8 = refusal(
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
      "8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  EXPECT_EQ(v8.rfind("HTTP/1.1 426 ", 0), 0u) << v8;
  EXPECT_NE(v8.find("Sec-WebSocket-Version: 13\r\n"), std::string::npos) << v8;
  auto plain = refusal("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(plain.rfind("HTTP/1.1 426 ", 0), 0u) << plain;
  EXPECT_NE(plain.find("Upgrade: websocket\r\n"), std::string::npos) << plain;
  auto bad_key = refusal(
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
      "13\r\nSec-WebSocket-Key: short\r\n\r\n");
  EXPECT_EQ(bad_key.rfind("HTTP/1.1 400 ", 0), 0u) << bad_key;
}

/// fake_server answers a client's request with `reply_for(key)` and keeps the stream.
task<void> fake_server(mem_stream& s, std::string (*reply_for)(const std::string& key), deadline dl) {
  std::string request;
  std::array<std::byte, 4096> buf{};
  while (request.find("\r\n\r\n") == std::string::npos) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) co_return;
    request.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  auto at = request.find("Sec-WebSocket-Key: ");
  std::string key = at == std::string::npos ? "" : request.substr(at + 19, 24);
  (void)co_await s.write(as_bytes(reply_for(key)), dl);
}

std::error_code client_against(std::string (*reply_for)(const std::string& key), ws::options o) {
  std::error_code outcome;
  run_test([&]() -> task<void> {
    auto [client, server] = mem_stream::pair();
    auto dl = deadline::after(5s);
    scope s;
    s.spawn(fake_server(server, reply_for, dl));
    auto c = co_await ws::connect(any_stream(std::move(client)), "a", "/", std::move(o), dl);
    outcome = c ? std::error_code{} : c.error();
    (void)co_await s.join(dl);
  });
  return outcome;
}

std::string upgrade_reply(const std::string& accept, const std::string& extra) {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
         "Upgrade\r\nSec-WebSocket-Accept: " +
         accept + "\r\n" + extra + "\r\n";
}

TEST(WebSocketHandshake, TheClientChecksTheServersAnswer) {
  ws::options plain;
  EXPECT_FALSE(
      client_against([](const std::string& k) { return upgrade_reply(ws::accept_key(k), ""); }, plain));
  EXPECT_EQ(client_against(
                [](const std::string&) { return upgrade_reply("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ""); }, plain),
            make_error_code(ws::error::bad_accept));
  EXPECT_EQ(client_against(
                [](const std::string&) {
                  return std::string("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
                },
                plain),
            make_error_code(ws::error::handshake_refused));
  EXPECT_EQ(client_against(
                [](const std::string& k) {
                  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: " +
                         ws::accept_key(k) + "\r\n\r\n";
                },
                plain),
            make_error_code(ws::error::bad_handshake));
  EXPECT_EQ(client_against(
                [](const std::string& k) {
                  return upgrade_reply(ws::accept_key(k), "Sec-WebSocket-Protocol: chat\r\n");
                },
                plain),
            make_error_code(ws::error::bad_negotiation));
  EXPECT_EQ(client_against(
                [](const std::string& k) {
                  return upgrade_reply(ws::accept_key(k), "Sec-WebSocket-Extensions: permessage-deflate\r\n");
                },
                plain),
            make_error_code(ws::error::bad_negotiation));
  ws::options offered;
  offered.deflate.enabled = true;
  EXPECT_FALSE(client_against(
      [](const std::string& k) {
        return upgrade_reply(ws::accept_key(k), "Sec-WebSocket-Extensions: permessage-deflate\r\n");
      },
      offered));
}

// -- the connection end to end ---------------------------------------------------------------

TEST(WebSocketConnection, KindsSubprotocolAndTheFirstFrameBehindTheRequest) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    ws::options co;
    co.protocols = {"v1.chat", "v2.chat"};
    ws::options so;
    so.protocols = {"v3.chat", "v2.chat", "v1.chat"};
    mem_options m;
    auto p = co_await handshake_pair(co, so, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    EXPECT_EQ(client.protocol(), std::string("v2.chat"));
    EXPECT_EQ(server.protocol(), std::string("v2.chat"));
    EXPECT_EQ(query<ws::subprotocol>(any_message(std::move(client))).value(), std::string("v2.chat"));
  });
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    ws::options o;
    mem_options m;
    auto p = co_await handshake_pair(o, o, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    EXPECT_EQ(client.protocol(), std::string());
    EXPECT_FALSE(client.compressed());
    CO_ASSERT_AWAIT_OK(co_await client.send(ws::message_kind::text, as_bytes("text"), dl));
    CO_ASSERT_AWAIT_OK(co_await client.send(ws::message_kind::binary, as_bytes("bin"), dl));
    std::array<std::byte, 64> buf{};
    auto a = co_await server.recv_message(buf, dl);
    CO_ASSERT_OK(a);
    EXPECT_EQ(a->kind, ws::message_kind::text);
    EXPECT_EQ(text_of(const_buffer(buf.data(), a->size)), "text");
    auto b = co_await server.recv_message(buf, dl);
    CO_ASSERT_OK(b);
    EXPECT_EQ(b->kind, ws::message_kind::binary);
    // Text that is not UTF-8 is refused before anything is sent.
    auto bad = co_await client.send(ws::message_kind::text, as_bytes("\xff"), dl);
    EXPECT_EQ(bad.error(), errc::invalid_argument);
    auto caps = server.runtime_capabilities();
    EXPECT_EQ(caps.unit, unit::message);
    EXPECT_EQ(caps.max_message, std::size_t{1} << 20);
  });
}

TEST(WebSocketConnection, FramesThatArriveWithTheRequestAreNotLost) {
  run_test([]() -> task<void> {
    auto [client, server] = mem_stream::pair();
    accepted st;
    st.dl = deadline::after(5s);
    scope s;
    s.spawn(run_accept(std::move(server), st));
    auto dl = deadline::after(5s);
    std::string request =
        "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: "
        "Upgrade\r\nSec-WebSocket-Version: "
        "13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    auto early = frame(ws::opcode::text, "early", true);
    std::array<const_buffer, 2> parts{as_bytes(request), const_buffer(early)};
    CO_ASSERT_AWAIT_OK(co_await client.write(std::span<const const_buffer>(parts), dl));
    (void)co_await s.join(dl);
    CO_ASSERT_TRUE(st.conn.has_value());
    std::array<std::byte, 64> buf{};
    auto n = co_await st.conn->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(const_buffer(buf.data(), *n)), "early");
  });
}

TEST(WebSocketConnection, PingIsAnsweredAndPongSeen) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    ws::options o;
    mem_options m;
    auto p = co_await handshake_pair(o, o, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    co_await with_scope([&](scope& s) -> task<void> {
      // The server echoes messages; its recv answers pings on the way.
      s.spawn([](ws::connection& server, deadline dl) -> task<void> {
        std::array<std::byte, 256> buf{};
        for (;;) {
          auto n = co_await server.recv(buf, dl);
          if (!n) co_return;
          (void)co_await server.send(const_buffer(buf.data(), *n), dl);
        }
      }(server, dl));
      CO_ASSERT_AWAIT_OK(co_await client.ping(as_bytes("are you there"), dl));
      CO_ASSERT_AWAIT_OK(co_await client.send(as_bytes("echo me"), dl));
      std::array<std::byte, 256> buf{};
      auto n = co_await client.recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(const_buffer(buf.data(), *n)), "echo me");
      EXPECT_EQ(client.pongs_received(), 1u);
      EXPECT_EQ(text_of(client.last_pong()), "are you there");
      std::vector<std::byte> big(126);
      EXPECT_EQ((co_await client.ping(big, dl)).error(), errc::invalid_argument);
      CO_ASSERT_AWAIT_OK(co_await client.close(dl));
    });
    EXPECT_EQ(server.peer_close()->code, ws::close_code::normal);
  });
}

TEST(WebSocketConnection, CloseHandshakeBothWaysWithCodeAndReason) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    ws::options o;
    mem_options m;
    auto p = co_await handshake_pair(o, o, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    CO_ASSERT_AWAIT_OK(co_await server.send(as_bytes("last words"), dl));
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](ws::connection& client, deadline dl) -> task<void> {
        auto closed = co_await client.close(4000, "done here", dl);
        EXPECT_TRUE(closed) << closed.error().message();
      }(client, dl));
      // The server's recv sees the message sent before the close, then the close.
      std::array<std::byte, 64> buf{};
      auto n = co_await server.recv(buf, dl);
      EXPECT_EQ(n.error(), errc::end_of_stream);
      CO_ASSERT_TRUE(server.peer_close().has_value());
      EXPECT_EQ(server.peer_close()->code, 4000);
      EXPECT_EQ(server.peer_close()->reason, std::string("done here"));
      auto again = co_await server.recv(buf, dl);
      EXPECT_EQ(again.error(), errc::end_of_stream);
      EXPECT_EQ((co_await server.send(as_bytes("too late"), dl)).error(), errc::closed);
      CO_ASSERT_AWAIT_OK(co_await server.close(dl));
    });
    CO_ASSERT_TRUE(client.peer_close().has_value());
    EXPECT_EQ(client.peer_close()->code, 4000);  // echoed
    std::array<std::byte, 16> buf{};
    EXPECT_EQ((co_await client.recv(buf, dl)).error(), errc::closed);
    EXPECT_EQ((co_await client.close(dl)).error(), errc::closed);
    EXPECT_EQ((co_await client.close(1005, "", dl)).error(), errc::closed);
  });
}

TEST(WebSocketConnection, CloseWithARecvPendingInAnotherTask) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    ws::options o;
    mem_options m;
    auto p = co_await handshake_pair(o, o, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    std::error_code pending_outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      // The client waits for messages in one task and closes from another: the pending
      // recv reads the server's close reply, close() waits for it.
      s.spawn([](ws::connection& c, event& parked, std::error_code& out, deadline dl) -> task<void> {
        std::array<std::byte, 64> buf{};
        parked.set();
        auto n = co_await c.recv(buf, dl);
        out = n ? std::error_code{} : n.error();
      }(client, parked, pending_outcome, dl));
      s.spawn([](ws::connection& server, deadline dl) -> task<void> {
        std::array<std::byte, 64> buf{};
        auto n = co_await server.recv(buf, dl);
        EXPECT_EQ(n.error(), errc::end_of_stream);
        auto closed = co_await server.close(dl);
        EXPECT_TRUE(closed) << closed.error().message();
      }(server, dl));
      (void)co_await parked.wait(dl);
      auto closed = co_await client.close(3001, "from the side", dl);
      EXPECT_TRUE(closed) << closed.error().message();
      std::array<std::byte, 16> buf{};
      EXPECT_EQ((co_await client.recv(buf, dl)).error(), errc::closed);
    });
    EXPECT_EQ(pending_outcome, errc::end_of_stream);
    EXPECT_EQ(server.peer_close()->code, 3001);
  });
}

TEST(WebSocketConnection, APongNeverCutsIntoAMessageBeingWritten) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    ws::options o;
    o.max_message = 1 << 20;
    mem_options m;
    m.max_write_chunk = 1000;  // every write is handed over in pieces...
    m.buffer_limit = 4096;     // ...and waits for the reader: the send stays in progress
    auto p = co_await handshake_pair(o, o, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    std::string big(300'000, 'b');
    for (std::size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>('a' + i % 26);
    CO_ASSERT_AWAIT_OK(co_await client.ping(as_bytes("in the middle"), dl));
    co_await with_scope([&](scope& s) -> task<void> {
      // The server's send starts the big message and waits for room; its recv then
      // finds the ping and must leave the pong to the sender, after the message.
      s.spawn([](ws::connection& server, const std::string& big, deadline dl) -> task<void> {
        auto sent = co_await server.send(as_bytes(big), dl);
        EXPECT_TRUE(sent) << sent.error().message();
        sent = co_await server.send(as_bytes("after"), dl);
        EXPECT_TRUE(sent);
      }(server, big, dl));
      s.spawn([](ws::connection& server, deadline dl) -> task<void> {
        std::array<std::byte, 64> buf{};
        (void)co_await server.recv(buf, dl);
      }(server, dl));
      std::vector<std::byte> buf(1 << 20);
      auto n = co_await client.recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_TRUE(text_of(const_buffer(buf.data(), *n)) == big) << "the big message changed in transit";
      n = co_await client.recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(const_buffer(buf.data(), *n)), "after");
      if (client.pongs_received() == 0) (void)co_await client.recv(buf, deadline::after(300ms));
      EXPECT_EQ(client.pongs_received(), 1u);
      CO_ASSERT_AWAIT_OK(co_await client.close(dl));
    });
  });
}

TEST(WebSocketConnection, CloseWaitsForThePeerOnlyUntilTheDeadline) {
  run_test([]() -> task<void> {
    auto [near, far] = mem_stream::pair();
    ws::session s;
    s.role = ws::role::server;
    ws::options o;
    ws::connection server(any_stream(std::move(near)), s, o, {});
    auto start = deadline::clock::now();
    auto closed = co_await server.close(deadline::after(100ms));
    EXPECT_EQ(closed.error(), errc::timed_out);
    EXPECT_LT(elapsed_since(start), 2s);
    // The peer saw our close frame: 1000, then the end.
    std::array<std::byte, 64> buf{};
    auto n = co_await far.read_some(buf, deadline::after(1s));
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(const_buffer(buf.data(), *n)), std::string("\x88\x02\x03\xe8", 4));
    auto bad = co_await server.close(999, "", deadline::after(1s));
    EXPECT_EQ(bad.error(), errc::closed);
  });
}

/// failure_reply sends `input` to a server connection from a raw peer and returns what
/// the server's recv said and the close frame it sent.
struct failure_reply {
  std::error_code recv_error;
  std::string frame;
};

failure_reply provoke(std::vector<std::byte> input, std::size_t max = 1 << 20, bool deflate = false) {
  failure_reply out;
  run_test([&]() -> task<void> {
    auto [near, far] = mem_stream::pair();
    ws::session s;
    s.role = ws::role::server;
    s.deflate.enabled = deflate;
    ws::options o;
    o.max_message = max;
    ws::connection server(any_stream(std::move(near)), s, o, {});
    auto dl = deadline::after(5s);
    CO_ASSERT_AWAIT_OK(co_await far.write(const_buffer(input), dl));
    std::array<std::byte, 256> buf{};
    auto n = co_await server.recv(buf, dl);
    CO_ASSERT_TRUE(!n.has_value());
    out.recv_error = n.error();
    auto got = co_await far.read_some(buf, dl);
    CO_ASSERT_OK(got);
    out.frame = text_of(const_buffer(buf.data(), *got));
    // Sending after the failure is refused.
    EXPECT_EQ((co_await server.send(as_bytes("x"), dl)).error(), errc::closed);
  });
  return out;
}

std::uint16_t code_of(const std::string& close_frame) {
  if (close_frame.size() < 4 || close_frame[0] != '\x88') return 0;
  return static_cast<std::uint16_t>((static_cast<unsigned char>(close_frame[2]) << 8) |
                                    static_cast<unsigned char>(close_frame[3]));
}

TEST(WebSocketConnection, ViolationsCloseWith1002And1007And1009) {
  auto unmasked = provoke(frame(ws::opcode::text, "hi", false));
  EXPECT_EQ(unmasked.recv_error, make_error_code(ws::error::bad_masking));
  EXPECT_EQ(code_of(unmasked.frame), 1002);
  auto opcode =
      provoke({std::byte{0x83}, std::byte{0x80}, std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}});
  EXPECT_EQ(code_of(opcode.frame), 1002);
  auto utf8 = provoke(frame(ws::opcode::text, "\xc0\xaf", true));
  EXPECT_EQ(utf8.recv_error, make_error_code(ws::error::invalid_utf8));
  EXPECT_EQ(code_of(utf8.frame), 1007);
  auto big = provoke(frame(ws::opcode::binary, std::string(200, 'x'), true), 100);
  EXPECT_EQ(big.recv_error, make_error_code(ws::error::message_too_big));
  EXPECT_TRUE(big.recv_error == errc::message_too_large);
  EXPECT_EQ(code_of(big.frame), 1009);
  auto garbage = provoke(frame(ws::opcode::binary, "\xff\xff\xff\xff", true, true, true), 1 << 20, true);
  EXPECT_EQ(code_of(garbage.frame), 1007);
}

TEST(WebSocketConnection, AStreamEndWithoutACloseFrameIsTruncated) {
  run_test([]() -> task<void> {
    auto [near, far] = mem_stream::pair();
    ws::session s;
    s.role = ws::role::client;
    ws::options o;
    ws::connection client(any_stream(std::move(near)), s, o, {});
    auto dl = deadline::after(5s);
    auto half = frame(ws::opcode::text, "cut short", false);
    half.resize(5);
    CO_ASSERT_AWAIT_OK(co_await far.write(const_buffer(half), dl));
    (void)co_await far.close(dl);
    std::array<std::byte, 64> buf{};
    auto n = co_await client.recv(buf, dl);
    EXPECT_EQ(n.error(), make_error_code(ws::error::truncated));
    EXPECT_TRUE(n.error() == errc::broken);
  });
}

TEST(WebSocketConnection, FragmentedCompressedMessagesBothWays) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    ws::options co;
    co.deflate.enabled = true;
    co.deflate.no_context_takeover = true;
    co.deflate.max_window_bits = 10;
    co.fragment_size = 300;
    ws::options so;
    so.deflate.enabled = true;
    so.deflate.peer_max_window_bits = 12;
    so.fragment_size = 1000;
    mem_options m;
    m.max_read_chunk = 777;
    auto p = co_await handshake_pair(co, so, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    EXPECT_TRUE(client.compressed());
    EXPECT_TRUE(server.compressed());
    std::string big;
    for (int i = 0; i < 20000; ++i) big += std::to_string(i % 97) + " ";
    std::vector<std::byte> buf(1 << 20);
    for (int round = 0; round < 3; ++round) {
      CO_ASSERT_AWAIT_OK(co_await client.send(ws::message_kind::text, as_bytes(big), dl));
      auto n = co_await server.recv_message(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(n->kind, ws::message_kind::text);
      CO_ASSERT_TRUE(text_of(const_buffer(buf.data(), n->size)) == big);
      CO_ASSERT_AWAIT_OK(co_await server.send(as_bytes(big), dl));
      auto back = co_await client.recv(buf, dl);
      CO_ASSERT_OK(back);
      CO_ASSERT_TRUE(text_of(const_buffer(buf.data(), *back)) == big);
    }
  });
}

TEST(WebSocketConnection, IdleConnectionHoldsNoReceiveBuffer) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    ws::options o;
    mem_options m;
    auto p = co_await handshake_pair(o, o, m, dl);
    CO_ASSERT_OK(p);
    auto& [client, server] = *p;
    std::vector<std::byte> msg(60'000);  // within the in-memory stream's buffer: no peer needed to send
    std::vector<std::byte> buf(100'000);
    CO_ASSERT_AWAIT_OK(co_await client.send(const_buffer(msg), dl));
    CO_ASSERT_AWAIT_OK(co_await server.recv(buf, dl));
    auto idle = co_await server.recv(buf, deadline::after(150ms));
    EXPECT_EQ(idle.error(), errc::timed_out);
    EXPECT_EQ(server.buffered_capacity(), 0u);
  });
}

// -- from spec strings -----------------------------------------------------------------------

task<void> echo_listener(any_listener& l, deadline dl) {
  auto conn = co_await l.accept(dl);
  if (!conn) co_return;
  auto& m = conn->message();
  std::vector<std::byte> buf(1 << 16);
  for (;;) {
    auto n = co_await m.recv(buf, dl);
    if (!n) break;
    (void)co_await m.send(const_buffer(buf.data(), *n), dl);
  }
  (void)co_await m.close(dl);
}

TEST(WebSocketSpec, ClientAndServerFromSpecStrings) {
  auto listener =
      strata::listen("tcp-listen:127.0.0.1:0 | websocket(path=/chat, protocols=\"b,a\", deflate=1, max=64k)");
  ASSERT_TRUE(listener) << listener.error().message();
  auto port = listener->local_address()->port();
  run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(echo_listener(*listener, dl));
      auto spec = "tcp:127.0.0.1:" + std::to_string(port) +
                  " | websocket(path=\"/chat?x=1\", protocols=a, deflate=1, kind=text)";
      auto conn = co_await strata::connect(spec, dl);
      CO_ASSERT_TRUE(conn.has_value());
      CO_ASSERT_TRUE(conn->is_message());
      EXPECT_EQ(conn->runtime_capabilities().max_message, std::size_t{1} << 20);
      EXPECT_EQ(query<ws::subprotocol>(*conn).value(), std::string("a"));
      auto& m = conn->message();
      std::string hello(5000, 'h');
      CO_ASSERT_AWAIT_OK(co_await m.send(as_bytes(hello), dl));
      std::vector<std::byte> buf(1 << 16);
      auto n = co_await m.recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(const_buffer(buf.data(), *n)), hello);
      CO_ASSERT_AWAIT_OK(co_await m.close(dl));
    });
  });
  // Another path is refused with 404.
  run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](any_listener& l, deadline dl) -> task<void> { (void)co_await l.accept(dl); }(*listener, dl));
      auto spec = "tcp:127.0.0.1:" + std::to_string(port) + " | websocket(path=/other)";
      auto conn = co_await strata::connect(spec, dl);
      CO_ASSERT_TRUE(!conn.has_value());
      EXPECT_NE(conn.error().message().find("refused"), std::string::npos) << conn.error().message();
      s.cancel();
    });
  });
  listener->close();
}

TEST(WebSocketSpec, TheCheckerAndTheParametersRefuseWhatCannotWork) {
  pipeline_error error;
  EXPECT_FALSE(pipeline::parse("udp:127.0.0.1:9 | websocket", error));
  EXPECT_NE(error.message.find("websocket"), std::string::npos) << error.message;
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:9 | prefix | websocket", error));
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:9 | websocket(path=chat)", error));
  EXPECT_NE(error.message.find("path"), std::string::npos) << error.message;
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:9 | websocket(protocols=\"a b\")", error));
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:9 | websocket(kind=utf8)", error));
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:9 | websocket(max=2g)", error));
  auto ok = pipeline::parse("tcp:127.0.0.1:9 | websocket(max=16k) | dtls", error);
  EXPECT_TRUE(ok) << error.message;
  auto p = pipeline::parse("tcp:127.0.0.1:9 | websocket(max=16k)", error);
  ASSERT_TRUE(p) << error.message;
  EXPECT_EQ(p->top().max_message, 16u * 1024);
  EXPECT_EQ(p->top().unit, unit::message);
  EXPECT_TRUE(p->top().reliable);
}

}  // namespace
}  // namespace strata::test
