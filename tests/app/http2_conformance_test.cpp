// http2 conformance: our server fed, frame by frame, every malformed case of RFC 9113 we
// could find, each with the exact outcome it must produce (GOAWAY with its error code and
// last-stream-id, or RST_STREAM on the stream with its code while the connection goes on
// serving), and the abuse a peer can try on the limits (rapid reset, CONTINUATION,
// header and HPACK floods, SETTINGS and PING floods).
//
// The client here is a raw one written for the tests: frames are built by hand (9-byte
// header and payload, header blocks in HPACK literals we encode ourselves, so a test can
// send what no HTTP/2 library would), and the server's frames are decoded as they arrive
// (its header blocks with nghttp2's HPACK inflater). It runs over an in-memory stream
// pair against http2::serve.
//
// Where nghttp2 answers a stream error with a connection error, the test asserts that:
// RFC 9113 5.4.1 lets an endpoint treat any stream error as a connection error. Where
// nghttp2 does something the RFC does not allow, the test says so in its comment.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "strata/app/http2.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/mem_stream.hpp"
#include "support/memory.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace {

// -- frames we send ----------------------------------------------------------------------------

constexpr std::uint8_t end_stream = NGHTTP2_FLAG_END_STREAM;
constexpr std::uint8_t end_headers = NGHTTP2_FLAG_END_HEADERS;
constexpr std::uint8_t ack = NGHTTP2_FLAG_ACK;
constexpr std::uint32_t max_window = 0x7fffffff;  // 2^31-1 (RFC 9113 6.9.1)

void put16(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

void put32(std::string& out, std::uint32_t v) {
  put16(out, v >> 16);
  put16(out, v & 0xffff);
}

/// frame is one frame on the wire (RFC 9113 4.1): 24-bit length, type, flags, stream.
std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::string_view payload) {
  std::string out;
  auto n = static_cast<std::uint32_t>(payload.size());
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  put16(out, n & 0xffff);
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(flags));
  put32(out, stream);
  out.append(payload);
  return out;
}

/// frame_header is a frame header announcing `length` bytes, without its payload.
std::string frame_header(std::uint32_t length, std::uint8_t type, std::uint8_t flags, std::uint32_t stream) {
  auto out = frame(type, flags, stream, "");
  out[0] = static_cast<char>((length >> 16) & 0xff);
  out[1] = static_cast<char>((length >> 8) & 0xff);
  out[2] = static_cast<char>(length & 0xff);
  return out;
}

/// hpack builds a header block by hand (RFC 7541): never Huffman, never anything the
/// test did not ask for.
struct hpack {
  std::string bytes;

  /// integer is the prefix-coded integer of RFC 7541 5.1 (`first`: the bits above the prefix).
  static void integer(std::string& out, std::uint8_t first, int prefix_bits, std::uint64_t v) {
    const std::uint64_t max = (1u << prefix_bits) - 1;
    if (v < max) {
      out.push_back(static_cast<char>(first | v));
      return;
    }
    out.push_back(static_cast<char>(first | max));
    v -= max;
    while (v >= 128) {
      out.push_back(static_cast<char>(0x80 | (v & 0x7f)));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  }
  void text(std::string_view s) {
    integer(bytes, 0x00, 7, s.size());
    bytes.append(s);
  }
  /// literal: a literal field without indexing, new name (RFC 7541 6.2.2).
  hpack& literal(std::string_view name, std::string_view value) {
    bytes.push_back(0x00);
    text(name);
    text(value);
    return *this;
  }
  /// insert: a literal field with incremental indexing, new name (6.2.1): it enters the
  /// dynamic table at index 62.
  hpack& insert(std::string_view name, std::string_view value) {
    bytes.push_back(0x40);
    text(name);
    text(value);
    return *this;
  }
  /// indexed: an indexed field (6.1).
  hpack& indexed(std::uint64_t index) {
    integer(bytes, 0x80, 7, index);
    return *this;
  }
  /// table_size: a dynamic table size update (6.3).
  hpack& table_size(std::uint64_t size) {
    integer(bytes, 0x20, 5, size);
    return *this;
  }
};

/// request_fields is a valid request's pseudo-header fields.
hpack request_fields(std::string_view method, std::string_view path) {
  hpack h;
  h.literal(":method", method).literal(":scheme", "http").literal(":authority", "example.org");
  h.literal(":path", path);
  return h;
}

std::string headers(std::uint32_t stream, const hpack& block, std::uint8_t flags) {
  return frame(NGHTTP2_HEADERS, flags, stream, block.bytes);
}

/// get is a complete GET request on `stream`.
std::string get(std::uint32_t stream, std::string_view path) {
  return headers(stream, request_fields("GET", path), end_stream | end_headers);
}

/// post_open opens `stream` with a POST whose body is still to come.
std::string post_open(std::uint32_t stream, std::string_view path) {
  return headers(stream, request_fields("POST", path), end_headers);
}

std::string data(std::uint32_t stream, std::string_view payload, std::uint8_t flags) {
  return frame(NGHTTP2_DATA, flags, stream, payload);
}

std::string settings(const std::vector<std::pair<std::uint16_t, std::uint32_t>>& entries) {
  std::string payload;
  for (const auto& [id, value] : entries) {
    put16(payload, id);
    put32(payload, value);
  }
  return frame(NGHTTP2_SETTINGS, 0, 0, payload);
}

std::string one_setting(std::uint16_t id, std::uint32_t value) {
  std::vector<std::pair<std::uint16_t, std::uint32_t>> entries;
  entries.emplace_back(id, value);
  return settings(entries);
}

std::string ping(std::uint32_t stream = 0) { return frame(NGHTTP2_PING, 0, stream, "12345678"); }

std::string u32_frame(std::uint8_t type, std::uint32_t stream, std::uint32_t value) {
  std::string payload;
  put32(payload, value);
  return frame(type, 0, stream, payload);
}

std::string rst_stream(std::uint32_t stream, std::uint32_t code) {
  return u32_frame(NGHTTP2_RST_STREAM, stream, code);
}

std::string window_update(std::uint32_t stream, std::uint32_t increment) {
  return u32_frame(NGHTTP2_WINDOW_UPDATE, stream, increment);
}

std::string goaway(std::uint32_t stream, std::uint32_t last, std::uint32_t code) {
  std::string payload;
  put32(payload, last);
  put32(payload, code);
  return frame(NGHTTP2_GOAWAY, 0, stream, payload);
}

/// priority is a PRIORITY frame (RFC 9113 6.3): `stream` depends on `on`.
std::string priority(std::uint32_t stream, std::uint32_t on) {
  std::string payload;
  put32(payload, on);
  payload.push_back(15);  // weight 16
  return frame(NGHTTP2_PRIORITY, 0, stream, payload);
}

std::string code_name(std::uint32_t code) {
  return std::to_string(code) + " (" + nghttp2_http2_strerror(code) + ")";
}

// -- the raw client ----------------------------------------------------------------------------

/// received is one frame the server sent; a HEADERS frame carries its decoded block.
struct received {
  std::uint8_t type = 0;
  std::uint8_t flags = 0;
  std::uint32_t stream = 0;
  std::string payload;
  std::vector<std::pair<std::string, std::string>> fields;

  std::uint32_t word(std::size_t at) const {
    if (payload.size() < at + 4) return 0xffffffff;
    auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<std::uint8_t>(payload[i])); };
    return (b(at) << 24) | (b(at + 1) << 16) | (b(at + 2) << 8) | b(at + 3);
  }
  /// code is the error code of a RST_STREAM or GOAWAY.
  std::uint32_t code() const { return type == NGHTTP2_GOAWAY ? word(4) : word(0); }
  std::uint32_t last_stream() const { return word(0) & 0x7fffffff; }
  std::string field(std::string_view name) const {
    for (const auto& [n, v] : fields) {
      if (n == name) return v;
    }
    return {};
  }
};

/// raw_client plays the client side with hand-made frames and collects the server's.
class raw_client {
 public:
  explicit raw_client(mem_stream io) : io_(std::move(io)) { nghttp2_hd_inflate_new(&inflater_); }
  ~raw_client() { nghttp2_hd_inflate_del(inflater_); }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  /// collect reads and decodes what the server sends until it closes (or we do).
  task<void> collect() {
    std::vector<std::byte> buf(64 * 1024);
    for (;;) {
      auto n = co_await io_.read_some(buf, deadline::after(60s));
      if (!n) {
        closed = true;
        changed_.set();
        co_return;
      }
      in_.append(reinterpret_cast<const char*>(buf.data()), *n);
      parse();
      changed_.set();
    }
  }

  /// send writes bytes; after the server has closed it fails (broken), which the
  /// connection-error cases expect and ignore.
  task<result<void>> send(std::string bytes) {
    co_return co_await io_.write(as_bytes(bytes), deadline::after(10s));
  }

  /// wait_for waits until `done()` holds or the connection is closed, at most until `dl`;
  /// it returns done().
  template <class Pred>
  task<bool> wait_for(Pred done, deadline dl) {
    for (;;) {
      if (done()) co_return true;
      if (closed) co_return false;
      changed_.reset();
      auto waited = co_await changed_.wait(dl);
      if (!waited) co_return done();
    }
  }

  task<bool> wait_closed(deadline dl) {
    auto is_closed = [this] { return closed; };
    co_return co_await wait_for(is_closed, dl);
  }

  /// handshake sends the preface and an empty SETTINGS, waits for the server's SETTINGS,
  /// acknowledges them and waits for the server's acknowledgement of ours, so that both
  /// sides' settings are in force when a test starts.
  task<bool> handshake() {
    std::string hello(http2::preface);
    hello += frame(NGHTTP2_SETTINGS, 0, 0, "");
    if (!co_await send(hello)) co_return false;
    auto got_settings = [this] { return find(NGHTTP2_SETTINGS, 0, false) != nullptr; };
    if (!co_await wait_for(got_settings, deadline::after(5s))) co_return false;
    if (!co_await send(frame(NGHTTP2_SETTINGS, ack, 0, ""))) co_return false;
    auto got_ack = [this] { return find(NGHTTP2_SETTINGS, 0, true) != nullptr; };
    co_return co_await wait_for(got_ack, deadline::after(5s));
  }

  /// find is the first frame of `type` on `stream` (with or without the ACK flag for
  /// SETTINGS and PING).
  const received* find(std::uint8_t type, std::uint32_t stream, bool with_ack = false) const {
    for (const auto& f : frames) {
      if (f.type != type || f.stream != stream) continue;
      if ((type == NGHTTP2_SETTINGS || type == NGHTTP2_PING) && ((f.flags & ack) != 0) != with_ack) continue;
      return &f;
    }
    return nullptr;
  }
  const received* goaway_frame() const { return find(NGHTTP2_GOAWAY, 0); }
  const received* rst(std::uint32_t stream) const { return find(NGHTTP2_RST_STREAM, stream); }
  std::size_t count(std::uint8_t type, bool with_ack = false) const {
    std::size_t n = 0;
    for (const auto& f : frames) {
      if (f.type == type && ((f.flags & ack) != 0) == with_ack) ++n;
    }
    return n;
  }
  /// ended tells whether the server ended `stream` (END_STREAM or RST_STREAM).
  bool ended(std::uint32_t stream) const {
    for (const auto& f : frames) {
      if (f.stream != stream) continue;
      if (f.type == NGHTTP2_RST_STREAM) return true;
      if ((f.type == NGHTTP2_HEADERS || f.type == NGHTTP2_DATA) && (f.flags & end_stream)) return true;
    }
    return false;
  }
  std::string status(std::uint32_t stream) const {
    auto* h = find(NGHTTP2_HEADERS, stream);
    return h ? h->field(":status") : std::string();
  }
  std::string body(std::uint32_t stream) const {
    std::string out;
    for (const auto& f : frames) {
      if (f.type == NGHTTP2_DATA && f.stream == stream) out += f.payload;
    }
    return out;
  }

  task<void> close() { (void)co_await io_.close(deadline::after(1s)); }

  std::vector<received> frames;
  bool closed = false;
  bool garbled = false;  ///< the server sent something we could not decode

 private:
  void parse() {
    for (;;) {
      if (in_.size() < 9) return;
      auto byte = [&](std::size_t i) {
        return static_cast<std::uint32_t>(static_cast<std::uint8_t>(in_[i]));
      };
      std::uint32_t length = (byte(0) << 16) | (byte(1) << 8) | byte(2);
      if (in_.size() < 9 + length) return;
      received f;
      f.type = static_cast<std::uint8_t>(byte(3));
      f.flags = static_cast<std::uint8_t>(byte(4));
      f.stream = ((byte(5) << 24) | (byte(6) << 16) | (byte(7) << 8) | byte(8)) & 0x7fffffff;
      f.payload = in_.substr(9, length);
      in_.erase(0, 9 + length);
      if (f.type == NGHTTP2_HEADERS) {
        // Our server sends neither padding nor priority; a block may go on in CONTINUATIONs.
        if (f.flags & (NGHTTP2_FLAG_PADDED | NGHTTP2_FLAG_PRIORITY)) garbled = true;
        block_ = f.payload;
        block_frame_ = frames.size();
        if (f.flags & end_headers) {
          frames.push_back(std::move(f));
          decode_block();
          continue;
        }
        in_block_ = true;
      } else if (f.type == NGHTTP2_CONTINUATION) {
        if (!in_block_) garbled = true;
        block_ += f.payload;
        if (f.flags & end_headers) {
          in_block_ = false;
          frames.push_back(std::move(f));
          decode_block();
          continue;
        }
      }
      frames.push_back(std::move(f));
    }
  }

  void decode_block() {
    auto& fields = frames[block_frame_].fields;
    auto* p = reinterpret_cast<const std::uint8_t*>(block_.data());
    std::size_t left = block_.size();
    for (;;) {
      nghttp2_nv nv{};
      int flags = 0;
      auto n = nghttp2_hd_inflate_hd2(inflater_, &nv, &flags, p, left, 1);
      if (n < 0) {
        garbled = true;
        return;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
      if (flags & NGHTTP2_HD_INFLATE_EMIT) {
        fields.emplace_back(std::string(reinterpret_cast<const char*>(nv.name), nv.namelen),
                            std::string(reinterpret_cast<const char*>(nv.value), nv.valuelen));
      }
      if (flags & NGHTTP2_HD_INFLATE_FINAL) {
        nghttp2_hd_inflate_end_headers(inflater_);
        return;
      }
      if (n == 0 && left == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT)) {
        garbled = true;
        return;
      }
    }
  }

  mem_stream io_;
  std::string in_;
  std::string block_;
  std::size_t block_frame_ = 0;
  bool in_block_ = false;
  event changed_;
  nghttp2_hd_inflater* inflater_ = nullptr;
};

// -- the server under test ---------------------------------------------------------------------

/// server_reads tells how the server's reads cut what the client sent.
enum class server_reads { as_sent, byte_by_byte };

mem_options server_end(server_reads reads) {
  mem_options o;
  if (reads == server_reads::byte_by_byte) o.max_read_chunk = 1;
  return o;
}

/// harness runs http2::serve on one end of a mem_stream pair and a raw_client on the other.
/// Its handler answers 200 "ok <path> <body>"; a path starting with /hold first waits
/// for `release` (a handler that does not return while the test runs).
struct harness {
  explicit harness(const http2::server_options& options, server_reads reads = server_reads::as_sent)
      : harness(mem_stream::pair(mem_options{}, server_end(reads)), options) {}
  harness(std::pair<mem_stream, mem_stream> ends, const http2::server_options& options)
      : client(std::move(ends.first)) {
    tasks.spawn(run_server(std::move(ends.second), options));
    tasks.spawn(client.collect());
  }

  task<void> run_server(mem_stream s, http2::server_options options) {
    http2::handler h = [this](http2::request& req, http2::response& res) { return handle(req, res); };
    stats = co_await http2::serve(any_stream(std::move(s)), std::move(h), options);
    served.set();
  }

  task<result<void>> handle(http2::request& req, http2::response& res) {
    ++handlers_started;
    handled_streams.push_back(static_cast<std::uint32_t>(req.head().stream_id));
    std::string path(req.target());
    auto dl = deadline::after(30s);
    if (path.starts_with("/hold")) {
      auto released = co_await release.wait(dl);
      if (!released) co_return unexpected(released.error());
    }
    auto body = co_await req.read_body(1 << 20, dl);
    if (!body) co_return unexpected(body.error());
    std::string reply = "ok " + path + " " + *body;
    co_return co_await res.send(200, reply, dl);
  }

  /// serves checks that the connection still serves: a GET on `stream` gets its 200.
  task<bool> serves(std::uint32_t stream) {
    auto request = get(stream, "/after");
    if (!co_await client.send(request)) co_return false;
    auto done = [this, stream] { return client.ended(stream); };
    if (!co_await client.wait_for(done, deadline::after(5s))) co_return false;
    co_return client.status(stream) == "200" && client.body(stream) == "ok /after " && !client.goaway_frame();
  }

  /// finish lets held handlers go, closes the client and waits for the server to end.
  task<void> finish() {
    release.set();
    co_await client.close();
    auto joined = co_await tasks.join(deadline::after(5s));
    EXPECT_TRUE(joined.has_value()) << "the server did not end after the client closed";
  }

  raw_client client;
  result<http2::serve_stats> stats = errc::closed;
  event served;
  event release;
  int handlers_started = 0;
  std::vector<std::uint32_t> handled_streams;
  scope tasks;  // last: its tasks go before what they use
};

/// expect_goaway checks that the server ended the connection with GOAWAY(`code`,
/// `last_stream`) and closed it.
task<void> expect_goaway(harness& h, std::uint32_t code, std::uint32_t last_stream, std::string what) {
  bool closed = co_await h.client.wait_closed(deadline::after(5s));
  EXPECT_TRUE(closed) << what << ": the server did not close the connection";
  auto* g = h.client.goaway_frame();
  if (!g) {
    ADD_FAILURE() << what << ": no GOAWAY";
    co_return;
  }
  EXPECT_EQ(g->code(), code) << what << ": GOAWAY code " << code_name(g->code());
  EXPECT_EQ(g->last_stream(), last_stream) << what << ": GOAWAY last-stream-id";
  EXPECT_EQ(&h.client.frames.back(), g) << what << ": frames after the GOAWAY";
  EXPECT_FALSE(h.client.garbled) << what;
}

// -- connection errors -------------------------------------------------------------------------

/// connection_case is a sequence of frames the server must answer with GOAWAY.
struct connection_case {
  const char* name;
  const char* rfc;            ///< the section that says so
  std::string (*frames)();    ///< sent after the handshake
  std::uint32_t code;         ///< GOAWAY's error code
  std::uint32_t last_stream;  ///< GOAWAY's last-stream-id
  void (*tune)(http2::server_options&) = nullptr;
};

void PrintTo(const connection_case& c, std::ostream* os) { *os << c.name; }

const connection_case connection_cases[] = {
    // 4.2: a frame over SETTINGS_MAX_FRAME_SIZE (16384 here) is a FRAME_SIZE_ERROR, and a
    // connection error for frames that carry a field block.
    {"HeadersOverMaxFrameSize", "RFC 9113 4.2",
     [] { return frame_header(16385, NGHTTP2_HEADERS, end_headers, 1) + std::string(16385, '\0'); },
     NGHTTP2_FRAME_SIZE_ERROR, 0},
    // 4.2: for DATA a stream error would do; nghttp2 makes it a connection error (5.4.1).
    {"DataOverMaxFrameSize", "RFC 9113 4.2",
     [] { return post_open(1, "/hold") + frame_header(16385, NGHTTP2_DATA, 0, 1) + std::string(16385, 'd'); },
     NGHTTP2_FRAME_SIZE_ERROR, 1},
    // 6.1: DATA on stream 0.
    {"DataOnStreamZero", "RFC 9113 6.1", [] { return data(0, "x", 0); }, NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.1: padding that does not fit the payload.
    {"DataPaddingTooLong", "RFC 9113 6.1",
     [] {
       return post_open(1, "/hold") + frame(NGHTTP2_DATA, NGHTTP2_FLAG_PADDED, 1, std::string("\x05xyz", 4));
     },
     NGHTTP2_PROTOCOL_ERROR, 1},
    // 6.2: HEADERS on stream 0.
    {"HeadersOnStreamZero", "RFC 9113 6.2", [] { return get(0, "/"); }, NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.2: padding that does not fit the payload.
    {"HeadersPaddingTooLong", "RFC 9113 6.2",
     [] {
       return frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_PADDED | end_headers | end_stream, 1,
                    std::string(1, 9) + "ab");
     },
     NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.3: PRIORITY on stream 0.
    {"PriorityOnStreamZero", "RFC 9113 6.3", [] { return priority(0, 1); }, NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.3: a PRIORITY of the wrong length is a stream error FRAME_SIZE_ERROR; nghttp2 ends
    // the connection (5.4.1).
    {"PriorityWrongLength", "RFC 9113 6.3", [] { return frame(NGHTTP2_PRIORITY, 0, 1, "1234"); },
     NGHTTP2_FRAME_SIZE_ERROR, 0},
    // 5.3.1 (6.3): a stream cannot depend on itself — a stream error PROTOCOL_ERROR that
    // nghttp2 makes a connection error (5.4.1).
    {"PriorityDependsOnItself", "RFC 9113 5.3.1", [] { return priority(1, 1); }, NGHTTP2_PROTOCOL_ERROR, 0},
    {"HeadersDependOnThemselves", "RFC 9113 5.3.1",
     [] {
       std::string payload;
       put32(payload, 1);
       payload.push_back(15);
       payload += request_fields("GET", "/").bytes;
       return frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_PRIORITY | end_headers | end_stream, 1, payload);
     },
     NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.4: RST_STREAM on stream 0, on an idle stream, of the wrong length.
    {"RstStreamOnStreamZero", "RFC 9113 6.4", [] { return rst_stream(0, NGHTTP2_CANCEL); },
     NGHTTP2_PROTOCOL_ERROR, 0},
    {"RstStreamOnIdleStream", "RFC 9113 6.4", [] { return rst_stream(1, NGHTTP2_CANCEL); },
     NGHTTP2_PROTOCOL_ERROR, 0},
    {"RstStreamWrongLength", "RFC 9113 6.4",
     [] { return get(1, "/hold") + frame(NGHTTP2_RST_STREAM, 0, 1, "123"); }, NGHTTP2_FRAME_SIZE_ERROR, 1},
    // 6.5: SETTINGS on a stream, of a length not a multiple of 6, an ACK with a payload.
    {"SettingsOnStreamOne", "RFC 9113 6.5", [] { return frame(NGHTTP2_SETTINGS, 0, 1, ""); },
     NGHTTP2_PROTOCOL_ERROR, 0},
    {"SettingsLengthNotMultipleOfSix", "RFC 9113 6.5",
     [] { return frame(NGHTTP2_SETTINGS, 0, 0, std::string("\x00\x03\x00\x00\x00", 5)); },
     NGHTTP2_FRAME_SIZE_ERROR, 0},
    {"SettingsAckWithPayload", "RFC 9113 6.5",
     [] { return frame(NGHTTP2_SETTINGS, ack, 0, std::string("\x00\x03\x00\x00\x00\x64", 6)); },
     NGHTTP2_FRAME_SIZE_ERROR, 0},
    // 6.5.2: values out of range.
    {"SettingsEnablePushTwo", "RFC 9113 6.5.2", [] { return one_setting(NGHTTP2_SETTINGS_ENABLE_PUSH, 2); },
     NGHTTP2_PROTOCOL_ERROR, 0},
    {"SettingsInitialWindowTooLarge", "RFC 9113 6.5.2",
     [] { return one_setting(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, max_window + 1u); },
     NGHTTP2_FLOW_CONTROL_ERROR, 0},
    {"SettingsMaxFrameSizeTooSmall", "RFC 9113 6.5.2",
     [] { return one_setting(NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 16383); }, NGHTTP2_PROTOCOL_ERROR, 0},
    {"SettingsMaxFrameSizeTooLarge", "RFC 9113 6.5.2",
     [] { return one_setting(NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1u << 24); }, NGHTTP2_PROTOCOL_ERROR, 0},
    // RFC 8441 3: SETTINGS_ENABLE_CONNECT_PROTOCOL is 0 or 1.
    {"SettingsEnableConnectProtocolTwo", "RFC 8441 3",
     [] { return one_setting(NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 2); }, NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.7: PING on a stream, of the wrong length.
    {"PingOnStreamOne", "RFC 9113 6.7", [] { return ping(1); }, NGHTTP2_PROTOCOL_ERROR, 0},
    {"PingWrongLength", "RFC 9113 6.7", [] { return frame(NGHTTP2_PING, 0, 0, "1234567"); },
     NGHTTP2_FRAME_SIZE_ERROR, 0},
    // 6.8: GOAWAY on a stream.
    {"GoawayOnStreamOne", "RFC 9113 6.8", [] { return goaway(1, 0, NGHTTP2_NO_ERROR); },
     NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.9: a zero increment on the connection; a WINDOW_UPDATE of the wrong length.
    {"WindowUpdateZeroOnConnection", "RFC 9113 6.9", [] { return window_update(0, 0); },
     NGHTTP2_PROTOCOL_ERROR, 0},
    // 6.9: on a stream a zero increment is a stream error; nghttp2 ends the connection (5.4.1).
    {"WindowUpdateZeroOnAStream", "RFC 9113 6.9", [] { return post_open(1, "/hold") + window_update(1, 0); },
     NGHTTP2_PROTOCOL_ERROR, 1},
    {"WindowUpdateWrongLength", "RFC 9113 6.9", [] { return frame(NGHTTP2_WINDOW_UPDATE, 0, 0, "123"); },
     NGHTTP2_FRAME_SIZE_ERROR, 0},
    // 6.9.1: the connection's send window past 2^31-1.
    {"ConnectionWindowOverflow", "RFC 9113 6.9.1", [] { return window_update(0, max_window); },
     NGHTTP2_FLOW_CONTROL_ERROR, 0},
    // 6.9.1: DATA beyond the connection's receive window (65535 here; the handler does not
    // read, so no WINDOW_UPDATE reopens it).
    {"DataBeyondTheConnectionWindow", "RFC 9113 6.9.1",
     [] {
       auto out = post_open(1, "/hold");
       for (int i = 0; i < 4; ++i) out += data(1, std::string(16384, 'd'), 0);
       return out;
     },
     NGHTTP2_FLOW_CONTROL_ERROR, 1, [](http2::server_options& o) { o.connection_window = 65535; }},
    // 6.10: CONTINUATION without a HEADERS before it, after END_HEADERS, on another
    // stream; any other frame inside a field block (6.2).
    {"ContinuationWithoutHeaders", "RFC 9113 6.10",
     [] { return frame(NGHTTP2_CONTINUATION, end_headers, 1, request_fields("GET", "/").bytes); },
     NGHTTP2_PROTOCOL_ERROR, 0},
    {"ContinuationAfterEndHeaders", "RFC 9113 6.10",
     [] {
       return get(1, "/hold") + frame(NGHTTP2_CONTINUATION, end_headers, 1, hpack().literal("a", "b").bytes);
     },
     NGHTTP2_PROTOCOL_ERROR, 1},
    {"ContinuationOnAnotherStream", "RFC 9113 6.10",
     [] {
       return headers(1, request_fields("GET", "/"), end_stream) +
              frame(NGHTTP2_CONTINUATION, end_headers, 3, hpack().literal("a", "b").bytes);
     },
     NGHTTP2_PROTOCOL_ERROR, 1},
    {"FrameInsideAFieldBlock", "RFC 9113 6.2",
     [] {
       return headers(1, request_fields("GET", "/"), end_stream) + ping() +
              frame(NGHTTP2_CONTINUATION, end_headers, 1, hpack().literal("a", "b").bytes);
     },
     NGHTTP2_PROTOCOL_ERROR, 1},
    // 5.1: frames other than HEADERS and PRIORITY on an idle stream.
    {"DataOnIdleStream", "RFC 9113 5.1", [] { return data(1, "x", end_stream); }, NGHTTP2_PROTOCOL_ERROR, 0},
    {"WindowUpdateOnIdleStream", "RFC 9113 5.1", [] { return window_update(1, 1); }, NGHTTP2_PROTOCOL_ERROR,
     0},
    // 5.1: DATA on a half-closed (remote) stream is a stream error STREAM_CLOSED; nghttp2
    // ends the connection with that code (5.4.1).
    {"DataOnHalfClosedRemoteStream", "RFC 9113 5.1",
     [] { return get(1, "/hold") + data(1, "late", end_stream); }, NGHTTP2_STREAM_CLOSED, 1},
    // 5.1: so is HEADERS (trailers after END_STREAM).
    {"HeadersOnHalfClosedRemoteStream", "RFC 9113 5.1",
     [] { return get(1, "/hold") + headers(1, hpack().literal("x-t", "1"), end_stream | end_headers); },
     NGHTTP2_STREAM_CLOSED, 1},
    // 5.1: after its own RST_STREAM the client sends nothing but PRIORITY on the stream;
    // DATA is a stream error STREAM_CLOSED, here a connection error (5.4.1).
    {"DataAfterTheClientsReset", "RFC 9113 5.1",
     [] { return post_open(1, "/hold") + rst_stream(1, NGHTTP2_CANCEL) + data(1, "late", end_stream); },
     NGHTTP2_STREAM_CLOSED, 1},
    // 5.1.1: a client opens odd streams; an even one is a PROTOCOL_ERROR.
    {"EvenStreamFromClient", "RFC 9113 5.1.1", [] { return get(2, "/"); }, NGHTTP2_PROTOCOL_ERROR, 0},
    // 8.4: a client cannot push.
    {"PushPromiseFromClient", "RFC 9113 8.4",
     [] {
       std::string payload;
       put32(payload, 2);
       payload += request_fields("GET", "/").bytes;
       return get(1, "/hold") + frame(NGHTTP2_PUSH_PROMISE, end_headers, 1, payload);
     },
     NGHTTP2_PROTOCOL_ERROR, 1},
    // RFC 7541 2.3.3 and 6.1 (RFC 9113 4.3): an index past the tables, index 0.
    {"HpackIndexOutOfRange", "RFC 7541 2.3.3",
     [] { return headers(1, hpack().indexed(62 + 100), end_stream | end_headers); },
     NGHTTP2_COMPRESSION_ERROR, 1},
    {"HpackIndexZero", "RFC 7541 6.1",
     [] { return headers(1, hpack().indexed(0), end_stream | end_headers); }, NGHTTP2_COMPRESSION_ERROR, 1},
    // RFC 7541 6.3: a table size update above SETTINGS_HEADER_TABLE_SIZE (4096), and
    // 4.2: one that does not open the block.
    {"HpackTableSizeAboveTheSetting", "RFC 7541 6.3",
     [] {
       auto block = hpack().table_size(4097);
       block.bytes += request_fields("GET", "/").bytes;
       return headers(1, block, end_stream | end_headers);
     },
     NGHTTP2_COMPRESSION_ERROR, 1},
    {"HpackTableSizeUpdateAfterAField", "RFC 7541 4.2",
     [] {
       auto block = request_fields("GET", "/");
       block.table_size(0);
       return headers(1, block, end_stream | end_headers);
     },
     NGHTTP2_COMPRESSION_ERROR, 1},
};

/// Each case runs twice: with the server reading what the client wrote as it comes, and
/// one byte at a time (the outcome must not depend on how the bytes arrive).
class Http2ConformanceConnectionError
    : public testing::TestWithParam<std::tuple<connection_case, server_reads>> {};

std::string reads_suffix(server_reads reads) {
  return reads == server_reads::byte_by_byte ? "_ByteByByte" : "";
}

TEST_P(Http2ConformanceConnectionError, EndsTheConnectionWithGoaway) {
  run_test([]() -> task<void> {
    const auto& [c, reads] = GetParam();
    http2::server_options o;
    if (c.tune) c.tune(o);
    harness h(o, reads);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto bytes = c.frames();
    (void)co_await h.client.send(bytes);
    std::string what = std::string(c.name) + " (" + c.rfc + ")";
    co_await expect_goaway(h, c.code, c.last_stream, what);
    auto ended = co_await h.served.wait(deadline::after(5s));
    EXPECT_TRUE(ended.has_value()) << what << ": serve did not return";
    if (h.stats) {
      EXPECT_EQ(h.stats->goaway_code, c.code) << what << ": serve_stats::goaway_code";
    }
    co_await h.finish();
  });
}

INSTANTIATE_TEST_SUITE_P(Http2Conformance, Http2ConformanceConnectionError,
                         testing::Combine(testing::ValuesIn(connection_cases),
                                          testing::Values(server_reads::as_sent, server_reads::byte_by_byte)),
                         [](const testing::TestParamInfo<std::tuple<connection_case, server_reads>>& i) {
                           return std::string(std::get<0>(i.param).name) + reads_suffix(std::get<1>(i.param));
                         });

// -- stream errors -----------------------------------------------------------------------------

/// stream_case is a request on stream 1 the server must reset (RST_STREAM(1, code)) while
/// the connection goes on serving.
struct stream_case {
  const char* name;
  const char* rfc;
  std::string (*frames)();
  std::uint32_t code;
  void (*tune)(http2::server_options&) = nullptr;
};

void PrintTo(const stream_case& c, std::ostream* os) { *os << c.name; }
void PrintTo(server_reads r, std::ostream* os) {
  *os << (r == server_reads::byte_by_byte ? "byte by byte" : "as sent");
}

/// request_without is a GET on stream 1 with one pseudo-header field left out.
std::string request_without(std::string_view left_out) {
  hpack h;
  if (left_out != ":method") h.literal(":method", "GET");
  if (left_out != ":scheme") h.literal(":scheme", "http");
  h.literal(":authority", "example.org");
  if (left_out != ":path") h.literal(":path", "/");
  return headers(1, h, end_stream | end_headers);
}

/// request_with is a GET on stream 1 with one more field after the pseudo-header fields.
std::string request_with(std::string_view name, std::string_view value) {
  auto h = request_fields("GET", "/");
  h.literal(name, value);
  return headers(1, h, end_stream | end_headers);
}

const stream_case stream_cases[] = {
    // 8.3.1: :method, :scheme and :path are required.
    {"MissingMethod", "RFC 9113 8.3.1", [] { return request_without(":method"); }, NGHTTP2_PROTOCOL_ERROR},
    {"MissingScheme", "RFC 9113 8.3.1", [] { return request_without(":scheme"); }, NGHTTP2_PROTOCOL_ERROR},
    {"MissingPath", "RFC 9113 8.3.1", [] { return request_without(":path"); }, NGHTTP2_PROTOCOL_ERROR},
    // 8.3.1: :path must not be empty, nor appear twice (nor any pseudo-header field).
    {"EmptyPath", "RFC 9113 8.3.1",
     [] { return headers(1, request_fields("GET", ""), end_stream | end_headers); }, NGHTTP2_PROTOCOL_ERROR},
    {"DuplicatePath", "RFC 9113 8.3.1", [] { return request_with(":path", "/again"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"DuplicateMethod", "RFC 9113 8.3", [] { return request_with(":method", "POST"); },
     NGHTTP2_PROTOCOL_ERROR},
    // 8.3.1: :path is origin-form ("/..."), or "*" for OPTIONS only; :method is a token.
    {"PathNotOriginForm", "RFC 9113 8.3.1",
     [] { return headers(1, request_fields("GET", "index.html"), end_stream | end_headers); },
     NGHTTP2_PROTOCOL_ERROR},
    {"AsteriskPathOnAGet", "RFC 9113 8.3.1",
     [] { return headers(1, request_fields("GET", "*"), end_stream | end_headers); }, NGHTTP2_PROTOCOL_ERROR},
    {"MethodNotAToken", "RFC 9113 8.3.1",
     [] { return headers(1, request_fields("GE T", "/"), end_stream | end_headers); },
     NGHTTP2_PROTOCOL_ERROR},
    // 8.5: a CONNECT has :authority and neither :scheme nor :path.
    {"ConnectWithoutAuthority", "RFC 9113 8.5",
     [] { return headers(1, hpack().literal(":method", "CONNECT"), end_headers); }, NGHTTP2_PROTOCOL_ERROR},
    {"ConnectWithAPath", "RFC 9113 8.5",
     [] { return headers(1, request_fields("CONNECT", "/"), end_headers); }, NGHTTP2_PROTOCOL_ERROR},
    // 8.2.1: field names are lower case.
    {"UppercaseFieldName", "RFC 9113 8.2.1", [] { return request_with("X-Upper", "v"); },
     NGHTTP2_PROTOCOL_ERROR},
    // 8.2.1: characters a field name or value must not hold (nghttp2 1.52 resets the stream
    // when no on_invalid_header callback is set, as here).
    {"SpaceInFieldName", "RFC 9113 8.2.1", [] { return request_with("x y", "v"); }, NGHTTP2_PROTOCOL_ERROR},
    {"ColonInsideFieldName", "RFC 9113 8.2.1", [] { return request_with("x:y", "v"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"EmptyFieldName", "RFC 9113 8.2.1", [] { return request_with("", "v"); }, NGHTTP2_PROTOCOL_ERROR},
    {"NulInFieldValue", "RFC 9113 8.2.1", [] { return request_with("x-a", std::string("a\0b", 3)); },
     NGHTTP2_PROTOCOL_ERROR},
    {"CrLfInFieldValue", "RFC 9113 8.2.1", [] { return request_with("x-a", "a\r\nx-b: c"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"LeadingSpaceInFieldValue", "RFC 9113 8.2.1", [] { return request_with("x-a", " v"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"TrailingTabInFieldValue", "RFC 9113 8.2.1", [] { return request_with("x-a", "v\t"); },
     NGHTTP2_PROTOCOL_ERROR},
    // 8.3: pseudo-header fields come first; unknown ones and response ones are malformed.
    {"PseudoHeaderAfterAField", "RFC 9113 8.3",
     [] {
       hpack h;
       h.literal(":method", "GET").literal(":scheme", "http").literal("x-a", "b").literal(":path", "/");
       return headers(1, h, end_stream | end_headers);
     },
     NGHTTP2_PROTOCOL_ERROR},
    {"UnknownPseudoHeader", "RFC 9113 8.3", [] { return request_with(":foo", "bar"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"ResponsePseudoHeaderInARequest", "RFC 9113 8.3", [] { return request_with(":status", "200"); },
     NGHTTP2_PROTOCOL_ERROR},
    // 8.2.2: connection-specific fields; TE other than "trailers".
    {"ConnectionField", "RFC 9113 8.2.2", [] { return request_with("connection", "close"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"KeepAliveField", "RFC 9113 8.2.2", [] { return request_with("keep-alive", "timeout=5"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"ProxyConnectionField", "RFC 9113 8.2.2", [] { return request_with("proxy-connection", "keep-alive"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"TransferEncodingField", "RFC 9113 8.2.2", [] { return request_with("transfer-encoding", "chunked"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"UpgradeField", "RFC 9113 8.2.2", [] { return request_with("upgrade", "websocket"); },
     NGHTTP2_PROTOCOL_ERROR},
    {"TeOtherThanTrailers", "RFC 9113 8.2.2", [] { return request_with("te", "gzip"); },
     NGHTTP2_PROTOCOL_ERROR},
    // 8.1.1: content-length that the DATA frames contradict, either way.
    {"ContentLengthMoreThanTheData", "RFC 9113 8.1.1",
     [] {
       auto h = request_fields("POST", "/");
       h.literal("content-length", "10");
       return headers(1, h, end_headers) + data(1, "abc", end_stream);
     },
     NGHTTP2_PROTOCOL_ERROR},
    {"ContentLengthLessThanTheData", "RFC 9113 8.1.1",
     [] {
       auto h = request_fields("POST", "/");
       h.literal("content-length", "2");
       return headers(1, h, end_headers) + data(1, "abc", end_stream);
     },
     NGHTTP2_PROTOCOL_ERROR},
    {"ContentLengthWithoutData", "RFC 9113 8.1.1",
     [] {
       auto h = request_fields("POST", "/");
       h.literal("content-length", "5");
       return headers(1, h, end_stream | end_headers);
     },
     NGHTTP2_PROTOCOL_ERROR},
    // 8.1: trailers carry no pseudo-header field, and end the stream.
    {"PseudoHeaderInTrailers", "RFC 9113 8.1",
     [] {
       return headers(1, request_fields("POST", "/"), end_headers) + data(1, "abc", 0) +
              headers(1, hpack().literal(":path", "/x"), end_stream | end_headers);
     },
     NGHTTP2_PROTOCOL_ERROR},
    {"TrailersWithoutEndStream", "RFC 9113 8.1",
     [] {
       return headers(1, request_fields("POST", "/"), end_headers) + data(1, "abc", 0) +
              headers(1, hpack().literal("x-t", "1"), end_headers);
     },
     NGHTTP2_PROTOCOL_ERROR},
    // RFC 8441 4: :protocol only on CONNECT.
    {"ProtocolOnAGet", "RFC 8441 4", [] { return request_with(":protocol", "websocket"); },
     NGHTTP2_PROTOCOL_ERROR},
    // 6.9.1: a stream's send window past 2^31-1 is a stream error FLOW_CONTROL_ERROR.
    {"StreamWindowOverflow", "RFC 9113 6.9.1",
     [] { return post_open(1, "/hold") + window_update(1, max_window); }, NGHTTP2_FLOW_CONTROL_ERROR},
    // 6.9.1: DATA beyond the stream's receive window (100 bytes here).
    {"DataBeyondTheStreamWindow", "RFC 9113 6.9.1",
     [] { return post_open(1, "/hold") + data(1, std::string(101, 'd'), 0); }, NGHTTP2_FLOW_CONTROL_ERROR,
     [](http2::server_options& o) { o.stream_window = 100; }},
};

/// Each case runs twice, as the connection errors do.
class Http2ConformanceStreamError : public testing::TestWithParam<std::tuple<stream_case, server_reads>> {};

TEST_P(Http2ConformanceStreamError, ResetsTheStreamAndServesTheNext) {
  run_test([]() -> task<void> {
    const auto& [c, reads] = GetParam();
    http2::server_options o;
    if (c.tune) c.tune(o);
    harness h(o, reads);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto bytes = c.frames();
    (void)co_await h.client.send(bytes);
    std::string what = std::string(c.name) + " (" + c.rfc + ")";
    auto reset = [&h] { return h.client.rst(1) != nullptr; };
    bool got = co_await h.client.wait_for(reset, deadline::after(5s));
    if (!got) {
      auto* g = h.client.goaway_frame();
      ADD_FAILURE() << what << ": no RST_STREAM on stream 1"
                    << (g ? "; GOAWAY " + code_name(g->code()) : std::string());
      co_await h.finish();
      co_return;
    }
    EXPECT_EQ(h.client.rst(1)->code(), c.code)
        << what << ": RST_STREAM code " << code_name(h.client.rst(1)->code());
    EXPECT_EQ(h.client.find(NGHTTP2_HEADERS, 1), nullptr) << what << ": a response on the reset stream";
    bool serves = co_await h.serves(3);
    EXPECT_TRUE(serves) << what << ": the connection does not serve the next request";
    co_await h.finish();
  });
}

INSTANTIATE_TEST_SUITE_P(Http2Conformance, Http2ConformanceStreamError,
                         testing::Combine(testing::ValuesIn(stream_cases),
                                          testing::Values(server_reads::as_sent, server_reads::byte_by_byte)),
                         [](const testing::TestParamInfo<std::tuple<stream_case, server_reads>>& i) {
                           return std::string(std::get<0>(i.param).name) + reads_suffix(std::get<1>(i.param));
                         });

// -- the connection preface, stream identifiers, what must be ignored ---------------------------

// RFC 9113 3.4: an invalid preface is a connection error PROTOCOL_ERROR, and the GOAWAY
// may be left out (the peer does not speak HTTP/2). serve says not_http2.
TEST(Http2Conformance, ABadPrefaceClosesTheConnection) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    (void)co_await h.client.send(std::string("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"));
    bool closed = co_await h.client.wait_closed(deadline::after(5s));
    EXPECT_TRUE(closed);
    auto ended = co_await h.served.wait(deadline::after(5s));
    CO_ASSERT_TRUE(ended.has_value());
    CO_ASSERT_TRUE(!h.stats.has_value());
    EXPECT_EQ(h.stats.error(), make_error_code(http2::error::not_http2));
    if (auto* g = h.client.goaway_frame()) {
      EXPECT_EQ(g->code(), NGHTTP2_PROTOCOL_ERROR);
    }
    co_await h.finish();
  });
}

// RFC 9113 3.4: the preface is followed by SETTINGS; anything else is PROTOCOL_ERROR.
TEST(Http2Conformance, APrefaceNotFollowedBySettingsIsAProtocolError) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    auto bytes = std::string(http2::preface) + ping();
    (void)co_await h.client.send(bytes);
    co_await expect_goaway(h, NGHTTP2_PROTOCOL_ERROR, 0, "PING after the preface");
    co_await h.finish();
  });
}

// RFC 9113 3.4: the server's preface is a SETTINGS frame, its first frame; 6.5.2 the
// values it advertises are the options'. 4.1, 5.5 and 6.5.2: unknown frame types, unknown
// flags, the reserved bit and unknown settings are ignored. 6.7: a PING is answered with
// the same payload.
TEST(Http2Conformance, TheServerPrefaceAndWhatMustBeIgnored) {
  run_test([]() -> task<void> {
    http2::server_options o;
    o.max_concurrent_streams = 7;
    o.max_header_list = 12345;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    const auto& first = h.client.frames.front();
    CO_ASSERT_TRUE(first.type == NGHTTP2_SETTINGS && first.flags == 0 && first.stream == 0);
    std::uint32_t advertised_streams = 0;
    std::uint32_t advertised_list = 0;
    for (std::size_t at = 0; at + 6 <= first.payload.size(); at += 6) {
      auto id = (static_cast<std::uint8_t>(first.payload[at]) << 8) |
                static_cast<std::uint8_t>(first.payload[at + 1]);
      auto value = first.word(at + 2);
      if (id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) advertised_streams = value;
      if (id == NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE) advertised_list = value;
    }
    EXPECT_EQ(advertised_streams, 7u);
    EXPECT_EQ(advertised_list, 12345u);

    std::string bytes = frame(0xfa, 0xff, 0, "unknown type on stream 0");
    bytes += frame(0xfb, 0, 1, "unknown type on an idle stream");
    bytes += one_setting(0x00ff, 42);
    bytes += frame(NGHTTP2_PING, 0, 0, "pingpong");
    // A GET with every unused flag set and the reserved bit of its stream identifier.
    bytes += headers(0x80000001u, request_fields("GET", "/flags"),
                     0xff & ~NGHTTP2_FLAG_PADDED & ~NGHTTP2_FLAG_PRIORITY);
    (void)co_await h.client.send(bytes);
    auto done = [&h] { return h.client.ended(1) && h.client.count(NGHTTP2_SETTINGS, true) >= 2; };
    bool answered = co_await h.client.wait_for(done, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    EXPECT_EQ(h.client.status(1), std::string("200"));
    EXPECT_EQ(h.client.body(1), std::string("ok /flags "));
    auto* pong = h.client.find(NGHTTP2_PING, 0, true);
    CO_ASSERT_TRUE(pong != nullptr);
    EXPECT_EQ(pong->payload, std::string("pingpong"));
    EXPECT_EQ(h.client.goaway_frame(), nullptr);
    bool serves = co_await h.serves(3);
    EXPECT_TRUE(serves);
    co_await h.finish();
  });
}

// RFC 9113 8.2.2: TE is allowed with the value "trailers".
TEST(Http2Conformance, TeTrailersIsAllowed) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto fields = request_fields("GET", "/te");
    fields.literal("te", "trailers");
    auto bytes = headers(1, fields, end_stream | end_headers);
    (void)co_await h.client.send(bytes);
    auto done = [&h] { return h.client.ended(1); };
    bool answered = co_await h.client.wait_for(done, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    EXPECT_EQ(h.client.status(1), std::string("200"));
    co_await h.finish();
  });
}

// RFC 9113 5.1.2: a HEADERS beyond SETTINGS_MAX_CONCURRENT_STREAMS is a stream error
// PROTOCOL_ERROR or REFUSED_STREAM; once the client has acknowledged the setting nghttp2
// makes it a connection error PROTOCOL_ERROR (5.4.1), last-stream-id the last stream it
// accepted.
TEST(Http2Conformance, AStreamBeyondMaxConcurrentStreams) {
  run_test([]() -> task<void> {
    http2::server_options o;
    o.max_concurrent_streams = 2;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto bytes = get(1, "/hold") + get(3, "/hold") + get(5, "/hold");
    (void)co_await h.client.send(bytes);
    co_await expect_goaway(h, NGHTTP2_PROTOCOL_ERROR, 3, "the third of two concurrent streams");
    EXPECT_EQ(h.handlers_started, 2);
    co_await h.finish();
  });
}

// RFC 9113 5.1.1: a new stream identifier must be greater than every one the client used
// before; an unexpected one is a connection error PROTOCOL_ERROR. (nghttp2 alone ignores
// a HEADERS on a lower, never used identifier, which it cannot tell from the trailers of a
// stream it reset and forgot; the server tracks the identifiers a client skipped.)
TEST(Http2Conformance, AStreamIdentifierGoingBackwards) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto bytes = get(5, "/five") + get(3, "/three");
    (void)co_await h.client.send(bytes);
    co_await expect_goaway(h, NGHTTP2_PROTOCOL_ERROR, 5, "stream 3 after stream 5");
    co_await h.finish();
  });
}

// The check of 5.1.1 spares what is allowed: identifiers may skip ahead (1, then 7), and
// trailers end a lower stream still open (1) after higher ones (7, 9) opened; a skipped
// identifier (3) used afterwards is the error.
TEST(Http2Conformance, SkippedIdentifiersAndTrailersOnALowerStreamAreAllowed) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto bytes = post_open(1, "/one") + get(7, "/seven") + get(9, "/nine") + data(1, "abc", 0) +
                 headers(1, hpack().literal("x-trailer", "1"), end_stream | end_headers);
    (void)co_await h.client.send(bytes);
    auto done = [&h] { return h.client.ended(1) && h.client.ended(7) && h.client.ended(9); };
    bool answered = co_await h.client.wait_for(done, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    EXPECT_EQ(h.client.goaway_frame(), nullptr);
    (void)co_await h.client.send(get(3, "/three"));
    co_await expect_goaway(h, NGHTTP2_PROTOCOL_ERROR, 9, "stream 3, skipped, after stream 9");
    co_await h.finish();
  });
}

// RFC 9113 5.1.1: a stream identifier used again after its stream closed is unexpected
// (PROTOCOL_ERROR); 5.1 allows STREAM_CLOSED for a frame on a closed stream, which is
// what nghttp2 sends while it remembers the stream.
TEST(Http2Conformance, AStreamIdentifierUsedAgain) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    (void)co_await h.client.send(get(1, "/once"));
    auto done = [&h] { return h.client.ended(1); };
    bool answered = co_await h.client.wait_for(done, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    (void)co_await h.client.send(get(1, "/twice"));
    bool closed = co_await h.client.wait_closed(deadline::after(5s));
    EXPECT_TRUE(closed);
    auto* g = h.client.goaway_frame();
    CO_ASSERT_TRUE(g != nullptr);
    EXPECT_EQ(g->code(), NGHTTP2_STREAM_CLOSED) << code_name(g->code());
    EXPECT_EQ(g->last_stream(), 1u);
    co_await h.finish();
  });
}

// RFC 9113 6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE change that takes a stream's send
// window past 2^31-1 is a connection error FLOW_CONTROL_ERROR. (nghttp2 before 1.67 resets
// the stream instead; the session checks the windows itself before the SETTINGS.)
TEST(Http2Conformance, AnInitialWindowChangeThatOverflowsAStream) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto bytes = post_open(1, "/hold") + window_update(1, max_window - 65535) +
                 one_setting(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65536);
    (void)co_await h.client.send(bytes);
    co_await expect_goaway(h, NGHTTP2_FLOW_CONTROL_ERROR, 1, "INITIAL_WINDOW_SIZE overflow");
    co_await h.finish();
  });
}

// -- abuse (RFC 9113 10.5) ---------------------------------------------------------------------

// RFC 9113 10.5 and CVE-2023-44487 (rapid reset): a client opens streams and resets them at
// once, so their handlers go on running. Handlers are capped by max_active_handlers (the
// streams beyond are refused with REFUSED_STREAM, RFC 9113 8.7), and past reset_burst
// resets the server sends GOAWAY(ENHANCE_YOUR_CALM) and closes.
TEST(Http2Conformance, RapidResetIsBoundedAndEndsInGoaway) {
  run_test(
      []() -> task<void> {
        http2::server_options o;  // the shipped limits: 200 handlers, 1000 resets, 33/s
        harness h(o);
        bool ready = co_await h.client.handshake();
        CO_ASSERT_TRUE(ready);
        constexpr std::uint32_t streams = 3000;
        std::string bytes;
        for (std::uint32_t i = 0; i < streams; ++i) {
          bytes += get(2 * i + 1, "/hold");
          bytes += rst_stream(2 * i + 1, NGHTTP2_CANCEL);
        }
        auto start = deadline::clock::now();
        (void)co_await h.client.send(bytes);
        bool closed = co_await h.client.wait_closed(deadline::after(20s));
        CO_ASSERT_TRUE(closed);
        auto elapsed_s = static_cast<std::uint64_t>(elapsed_since(start).count() / 1000 + 1);
        auto* g = h.client.goaway_frame();
        CO_ASSERT_TRUE(g != nullptr);
        EXPECT_EQ(g->code(), NGHTTP2_ENHANCE_YOUR_CALM) << code_name(g->code());
        EXPECT_EQ(&h.client.frames.back(), g);
        // The GOAWAY came at the reset past reset_burst (plus what the bucket refilled): its
        // last-stream-id is that reset's stream, and nothing after it was processed.
        auto opened = (g->last_stream() + 1) / 2;
        EXPECT_GT(opened, o.reset_burst);
        EXPECT_LE(opened, o.reset_burst + o.reset_rate * elapsed_s + 1);
        EXPECT_EQ(static_cast<std::uint32_t>(h.handlers_started), o.max_active_handlers);
        for (auto id : h.handled_streams) EXPECT_LE(id, g->last_stream());
        std::size_t refused = 0;
        for (const auto& f : h.client.frames) {
          if (f.type == NGHTTP2_RST_STREAM && f.code() == NGHTTP2_REFUSED_STREAM) {
            ++refused;
            EXPECT_LE(f.stream, g->last_stream());
          }
        }
        auto ended = co_await h.served.wait(deadline::after(5s));
        CO_ASSERT_TRUE(ended.has_value());
        CO_ASSERT_OK(h.stats);
        EXPECT_EQ(h.stats->requests, o.max_active_handlers);
        EXPECT_EQ(h.stats->resets_received, opened);
        EXPECT_EQ(h.stats->refused, opened - o.max_active_handlers);
        // The GOAWAY goes before the REFUSED_STREAMs still queued (the client reset those
        // streams itself anyway).
        EXPECT_GT(refused, 0u);
        EXPECT_LE(refused, h.stats->refused);
        EXPECT_EQ(h.stats->goaway_code, static_cast<std::uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
        co_await h.finish();
      },
      30s);
}

// RFC 9113 6.8 and 10.5: when the reset limit ends the connection, no stream past the
// GOAWAY's last-stream-id has been processed — a client retries those elsewhere. Here the
// handlers answer at once (no cap in the way) and the whole burst arrives in one read.
TEST(Http2Conformance, TheResetLimitGoawayCoversEveryProcessedStream) {
  run_test([]() -> task<void> {
    http2::server_options o;
    o.reset_burst = 10;
    o.reset_rate = 1;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    std::string bytes;
    for (std::uint32_t id = 1; id < 100; id += 2) bytes += get(id, "/quick") + rst_stream(id, NGHTTP2_CANCEL);
    (void)co_await h.client.send(bytes);
    bool closed = co_await h.client.wait_closed(deadline::after(5s));
    CO_ASSERT_TRUE(closed);
    auto* g = h.client.goaway_frame();
    CO_ASSERT_TRUE(g != nullptr);
    EXPECT_EQ(g->code(), NGHTTP2_ENHANCE_YOUR_CALM) << code_name(g->code());
    EXPECT_GE(g->last_stream(), 21u);  // the 11th reset (more if a second went by)
    EXPECT_LT(g->last_stream(), 99u);
    EXPECT_FALSE(h.handled_streams.empty());
    for (auto id : h.handled_streams) EXPECT_LE(id, g->last_stream()) << "processed past the GOAWAY";
    co_await h.finish();
  });
}

// RFC 9113 8.7 and 10.5: streams beyond max_active_handlers are refused (REFUSED_STREAM:
// not processed, safe to retry) and served again once handlers finish.
TEST(Http2Conformance, HandlersBeyondTheCapAreRefused) {
  run_test([]() -> task<void> {
    http2::server_options o;
    o.max_active_handlers = 4;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    std::string bytes;
    for (std::uint32_t id = 1; id <= 11; id += 2) bytes += get(id, "/hold");
    (void)co_await h.client.send(bytes);
    auto refused = [&h] { return h.client.rst(9) && h.client.rst(11); };
    bool got = co_await h.client.wait_for(refused, deadline::after(5s));
    CO_ASSERT_TRUE(got);
    EXPECT_EQ(h.client.rst(9)->code(), NGHTTP2_REFUSED_STREAM);
    EXPECT_EQ(h.client.rst(11)->code(), NGHTTP2_REFUSED_STREAM);
    EXPECT_EQ(h.handlers_started, 4);
    h.release.set();
    auto answered = [&h] {
      for (std::uint32_t id = 1; id <= 7; id += 2) {
        if (!h.client.ended(id)) return false;
      }
      return true;
    };
    bool all = co_await h.client.wait_for(answered, deadline::after(5s));
    CO_ASSERT_TRUE(all);
    for (std::uint32_t id = 1; id <= 7; id += 2) EXPECT_EQ(h.client.status(id), std::string("200")) << id;
    bool serves = co_await h.serves(13);
    EXPECT_TRUE(serves);
    co_await h.finish();
    CO_ASSERT_OK(h.stats);
    EXPECT_EQ(h.stats->refused, 2u);
  });
}

// RFC 9113 10.5 and CVE-2025-8671 ("MadeYouReset"): streams the server itself resets
// because the client broke a rule (here a body longer than its content-length, 8.1.1) do
// not count as client resets, but their handlers are capped all the same: beyond
// max_active_handlers streams are refused, and the connection goes on.
TEST(Http2Conformance, StreamsTheServerResetsAreCappedToo) {
  run_test([]() -> task<void> {
    http2::server_options o;
    o.max_active_handlers = 4;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    std::string bytes;
    for (std::uint32_t id = 1; id <= 11; id += 2) {
      auto fields = request_fields("POST", "/hold");
      fields.literal("content-length", "1");
      bytes += headers(id, fields, end_headers) + data(id, "xx", end_stream);
    }
    (void)co_await h.client.send(bytes);
    auto all_reset = [&h] {
      for (std::uint32_t id = 1; id <= 11; id += 2) {
        if (!h.client.rst(id)) return false;
      }
      return true;
    };
    bool got = co_await h.client.wait_for(all_reset, deadline::after(5s));
    CO_ASSERT_TRUE(got);
    for (std::uint32_t id = 1; id <= 7; id += 2)
      EXPECT_EQ(h.client.rst(id)->code(), NGHTTP2_PROTOCOL_ERROR) << id;
    EXPECT_EQ(h.client.rst(9)->code(), NGHTTP2_REFUSED_STREAM);
    EXPECT_EQ(h.client.rst(11)->code(), NGHTTP2_REFUSED_STREAM);
    EXPECT_EQ(h.handlers_started, 4);
    // The held handlers find their streams reset and end; the connection serves again.
    h.release.set();
    bool serves = co_await h.serves(13);
    EXPECT_TRUE(serves);
    co_await h.finish();
  });
}

/// continued is a GET on `stream` whose field block goes on in `continuations`
/// CONTINUATION frames (the last with END_HEADERS when `finished`).
std::string continued(std::uint32_t stream, int continuations, bool finished) {
  auto bytes = headers(stream, request_fields("GET", "/continued"), end_stream);
  for (int i = 0; i < continuations; ++i) {
    bool last = finished && i == continuations - 1;
    bytes += frame(NGHTTP2_CONTINUATION, last ? end_headers : 0, stream,
                   hpack().literal("x-c" + std::to_string(i), "v").bytes);
  }
  return bytes;
}

// RFC 9113 10.5 and CVE-2024-27316 (CONTINUATION flood): max_continuations CONTINUATION
// frames in a field block are served, one more ends the connection.
// Both with the frames arriving together and one byte at a time (nghttp2 1.52 as Debian
// patched it counts pieces of frames, so the server hands it whole frames).
class Http2ConformanceContinuations : public testing::TestWithParam<server_reads> {};

TEST_P(Http2ConformanceContinuations, FloodEndsTheConnection) {
  run_test([]() -> task<void> {
    http2::server_options o;
    o.max_continuations = 8;
    harness h(o, GetParam());
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    (void)co_await h.client.send(continued(1, 8, true));
    auto done = [&h] { return h.client.ended(1); };
    bool answered = co_await h.client.wait_for(done, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    EXPECT_EQ(h.client.status(1), std::string("200"));
    (void)co_await h.client.send(continued(3, 1000, false));
    co_await expect_goaway(h, NGHTTP2_ENHANCE_YOUR_CALM, 3, "CONTINUATION flood");
    EXPECT_EQ(h.handlers_started, 1);
    auto ended = co_await h.served.wait(deadline::after(5s));
    CO_ASSERT_TRUE(ended.has_value());
    CO_ASSERT_OK(h.stats);
    EXPECT_EQ(h.stats->goaway_code, static_cast<std::uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
    co_await h.finish();
  });
}

INSTANTIATE_TEST_SUITE_P(Http2Conformance, Http2ConformanceContinuations,
                         testing::Values(server_reads::as_sent, server_reads::byte_by_byte),
                         [](const testing::TestParamInfo<server_reads>& i) {
                           return "Reads" + std::string(i.param == server_reads::byte_by_byte ? "ByteByByte"
                                                                                              : "AsSent");
                         });

/// many_fields is a GET on `stream` with `extra` fields after its pseudo-header fields.
std::string many_fields(std::uint32_t stream, int extra) {
  auto fields = request_fields("GET", "/fields");
  for (int i = 0; i < extra; ++i) fields.literal("x-f" + std::to_string(i), "v");
  return headers(stream, fields, end_stream | end_headers);
}

// RFC 9113 10.5.1: max_fields fields (pseudo-header fields included) are served; one more
// is answered 431 (Request Header Fields Too Large) without running the handler, and the
// connection goes on.
TEST(Http2Conformance, TooManyFieldsAreAnswered431) {
  run_test([]() -> task<void> {
    http2::server_options o;
    o.max_fields = 100;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    (void)co_await h.client.send(many_fields(1, 96));
    auto first = [&h] { return h.client.ended(1); };
    bool answered = co_await h.client.wait_for(first, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    EXPECT_EQ(h.client.status(1), std::string("200"));
    (void)co_await h.client.send(many_fields(3, 97));
    auto second = [&h] { return h.client.ended(3); };
    answered = co_await h.client.wait_for(second, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    EXPECT_EQ(h.client.status(3), std::string("431"));
    EXPECT_EQ(h.client.rst(3), nullptr);
    bool serves = co_await h.serves(5);
    EXPECT_TRUE(serves);
    EXPECT_EQ(h.handlers_started, 2);
    co_await h.finish();
  });
}

// RFC 9113 10.5.1 and 6.5.2 (SETTINGS_MAX_HEADER_LIST_SIZE): a field section over
// max_header_list is answered 431 (as above), after the whole block was decoded (4.3: the
// HPACK state stays in step — the next request's block decodes), and the connection goes
// on.
TEST(Http2Conformance, AHeaderListOverTheLimitIsAnswered431) {
  run_test([]() -> task<void> {
    http2::server_options o;  // max_header_list 64 KiB
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    // Five 15000-byte fields: 75 KB, one per CONTINUATION. Each enters the dynamic table
    // (emptying it: it is larger than the table), then a small one after the limit was
    // passed, which the next request refers to by its index.
    auto bytes = headers(1, request_fields("GET", "/big"), end_stream);
    for (int i = 0; i < 5; ++i) {
      auto block = hpack().insert("x-big" + std::to_string(i), std::string(15000, 'a' + i));
      if (i == 4) block.insert("x-small", "kept");
      bytes += frame(NGHTTP2_CONTINUATION, i == 4 ? end_headers : 0, 1, block.bytes);
    }
    (void)co_await h.client.send(bytes);
    auto reset = [&h] { return h.client.ended(1); };
    bool got = co_await h.client.wait_for(reset, deadline::after(5s));
    CO_ASSERT_TRUE(got);
    EXPECT_EQ(h.client.status(1), std::string("431"));
    EXPECT_EQ(h.handlers_started, 0);
    auto next = request_fields("GET", "/next");
    next.indexed(62);
    (void)co_await h.client.send(headers(3, next, end_stream | end_headers));
    auto answered = [&h] { return h.client.ended(3); };
    got = co_await h.client.wait_for(answered, deadline::after(5s));
    CO_ASSERT_TRUE(got);
    EXPECT_EQ(h.client.status(3), std::string("200"));
    EXPECT_EQ(h.client.goaway_frame(), nullptr);
    co_await h.finish();
  });
}

// RFC 7541 7.3 and RFC 9113 10.5.1 (HPACK bomb): one 4 KiB field enters the dynamic table,
// then blocks of a few bytes reference it thousands of times (each 16000-byte block
// decodes to 64 MB). Each such stream is answered 431 once its list passes
// max_header_list, nothing is kept past that, and the connection is not wedged.
TEST(Http2Conformance, AnHpackBombIsBounded) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    auto fields = request_fields("GET", "/seed");
    fields.insert("x-bomb", std::string(4000, 'b'));
    (void)co_await h.client.send(headers(1, fields, end_stream | end_headers));
    auto seeded = [&h] { return h.client.ended(1); };
    bool answered = co_await h.client.wait_for(seeded, deadline::after(5s));
    CO_ASSERT_TRUE(answered);
    EXPECT_EQ(h.client.status(1), std::string("200"));
    auto before = resident_bytes();
    constexpr std::uint32_t bombs = 20;
    std::string bytes;
    for (std::uint32_t i = 0; i < bombs; ++i) {
      auto bomb = request_fields("GET", "/bomb");
      for (int r = 0; r < 16000; ++r) bomb.indexed(62);
      bytes += headers(3 + 2 * i, bomb, end_stream | end_headers);
    }
    (void)co_await h.client.send(bytes);
    auto last = 1 + 2 * bombs;
    auto all_reset = [&h, last] { return h.client.ended(last); };
    bool got = co_await h.client.wait_for(all_reset, deadline::after(10s));
    CO_ASSERT_TRUE(got);
    for (std::uint32_t id = 3; id <= last; id += 2) EXPECT_EQ(h.client.status(id), std::string("431")) << id;
    auto grown = resident_bytes() - std::min(before, resident_bytes());
    EXPECT_LT(grown, std::size_t{16} << 20) << "the bombs decoded to " << bombs * 64 << " MB";
    EXPECT_EQ(h.handlers_started, 1);
    bool serves = co_await h.serves(last + 2);
    EXPECT_TRUE(serves);
    co_await h.finish();
  });
}

// RFC 9113 10.5: a SETTINGS frame with more entries than the server accepts (32) is
// refused with ENHANCE_YOUR_CALM.
TEST(Http2Conformance, SettingsWithTooManyEntries) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    std::vector<std::pair<std::uint16_t, std::uint32_t>> entries(32,
                                                                 {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 16384});
    (void)co_await h.client.send(settings(entries));
    auto acked = [&h] { return h.client.count(NGHTTP2_SETTINGS, true) >= 2; };
    bool got = co_await h.client.wait_for(acked, deadline::after(5s));
    EXPECT_TRUE(got) << "32 entries are fine";
    entries.emplace_back(NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 16384);
    (void)co_await h.client.send(settings(entries));
    co_await expect_goaway(h, NGHTTP2_ENHANCE_YOUR_CALM, 0, "33 SETTINGS entries");
    co_await h.finish();
  });
}

/// flood sends `count` copies of `one` at once and checks that the server gave up with
/// GOAWAY(ENHANCE_YOUR_CALM) before answering them all.
task<void> flood(harness& h, const std::string& one, int count, std::uint8_t ack_type, std::string what) {
  std::string bytes;
  bytes.reserve(one.size() * static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) bytes += one;
  auto acks_before = h.client.count(ack_type, true);
  (void)co_await h.client.send(bytes);
  bool closed = co_await h.client.wait_closed(deadline::after(10s));
  EXPECT_TRUE(closed) << what << ": the server did not close the connection";
  auto acks = h.client.count(ack_type, true) - acks_before;
  EXPECT_LT(acks, static_cast<std::size_t>(count)) << what << ": every frame was acknowledged";
  co_await expect_goaway(h, NGHTTP2_ENHANCE_YOUR_CALM, 0, what);
  auto ended = co_await h.served.wait(deadline::after(5s));
  CO_ASSERT_TRUE(ended.has_value());
  // No request was served: serve reports the failure.
  CO_ASSERT_TRUE(!h.stats.has_value());
  EXPECT_EQ(h.stats.error(), make_error_code(http2::error::connection_failed));
}

// RFC 9113 10.5 (CVE-2019-9512, CVE-2019-9515): PING and SETTINGS frames arriving faster
// than the server writes their acknowledgements end the connection once nghttp2's queue
// of unsent acknowledgements reaches its limit (1000). Here 20000 go in one write; the
// server reads and feeds them 16 KiB at a time without its writer running in between.
TEST(Http2Conformance, PingFloodEndsTheConnection) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    co_await flood(h, ping(), 20000, NGHTTP2_PING, "PING flood");
    co_await h.finish();
  });
}

TEST(Http2Conformance, SettingsFloodEndsTheConnection) {
  run_test([]() -> task<void> {
    http2::server_options o;
    harness h(o);
    bool ready = co_await h.client.handshake();
    CO_ASSERT_TRUE(ready);
    co_await flood(h, frame(NGHTTP2_SETTINGS, 0, 0, ""), 20000, NGHTTP2_SETTINGS, "SETTINGS flood");
    co_await h.finish();
  });
}

}  // namespace
}  // namespace strata::test
