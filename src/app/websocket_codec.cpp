// websocket codec: errors, frame headers, masking, UTF-8, the zlib streams of
// permessage-deflate, and the sans-I/O receiver and sender (include/strata/app/websocket.hpp).
#include <openssl/rand.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "strata/app/websocket.hpp"

namespace strata::websocket {
namespace {

// -- errors ----------------------------------------------------------------------------------

class websocket_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "websocket"; }
  std::string message(int value) const override {
    switch (static_cast<error>(value)) {
      case error::reserved_bits:
        return "WebSocket frame with reserved bits set";
      case error::reserved_opcode:
        return "WebSocket frame with a reserved opcode";
      case error::bad_control_frame:
        return "WebSocket control frame fragmented or longer than 125 bytes";
      case error::bad_continuation:
        return "WebSocket continuation frame out of sequence";
      case error::bad_masking:
        return "WebSocket frame masked wrongly for its direction";
      case error::bad_length:
        return "WebSocket frame length with its top bit set";
      case error::bad_close_frame:
        return "malformed WebSocket close frame";
      case error::invalid_utf8:
        return "WebSocket text is not valid UTF-8";
      case error::bad_compressed_data:
        return "WebSocket compressed data does not inflate";
      case error::message_too_big:
        return "WebSocket message larger than max_message";
      case error::truncated:
        return "WebSocket connection ended without a close frame";
      case error::bad_handshake:
        return "malformed WebSocket opening handshake";
      case error::version_not_supported:
        return "WebSocket version other than 13";
      case error::upgrade_required:
        return "request is not a WebSocket upgrade";
      case error::handshake_refused:
        return "WebSocket upgrade refused by the server";
      case error::bad_accept:
        return "Sec-WebSocket-Accept does not match the key";
      case error::bad_negotiation:
        return "WebSocket subprotocol or extension not offered, or bad parameters";
    }
    return "websocket error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    switch (static_cast<error>(value)) {
      case error::message_too_big:
        return errc::message_too_large;
      case error::truncated:
        return errc::broken;
      default:
        return errc::protocol_error;
    }
  }
};

std::uint16_t load16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) | std::to_integer<unsigned>(p[1]));
}

std::uint64_t load64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

// Largest raw (compressed) size of a message that may inflate to at most `max`: deflate
// never grows data by more than a few bytes per 16 KiB, so this leaves room to spare.
std::size_t compressed_bound(std::size_t max) noexcept {
  auto slack = max / 64 + 1024;
  return max > std::numeric_limits<std::size_t>::max() - slack ? max : max + slack;
}

// zlib counts in uInt: larger inputs go in pieces of this size.
constexpr std::size_t zlib_piece = std::size_t{1} << 30;

}  // namespace

const std::error_category& category() noexcept {
  static const websocket_error_category instance;
  return instance;
}

std::uint16_t close_code_for(error e) noexcept {
  switch (e) {
    case error::invalid_utf8:
    case error::bad_compressed_data:
      return close_code::invalid_payload;
    case error::message_too_big:
      return close_code::message_too_big;
    case error::truncated:
      return close_code::abnormal;
    default:
      return close_code::protocol_error;
  }
}

bool valid_close_code(std::uint16_t code) noexcept {
  if (code >= 3000 && code <= 4999) return true;
  if (code >= 1000 && code <= 1003) return true;
  return code >= 1007 && code <= 1014;
}

// -- frames ----------------------------------------------------------------------------------

std::size_t encode_header(const frame_header& h, std::span<std::byte, max_header_size> out) noexcept {
  auto b0 = static_cast<unsigned>(h.opcode) & 0x0f;
  if (h.fin) b0 |= 0x80;
  if (h.rsv1) b0 |= 0x40;
  if (h.rsv2) b0 |= 0x20;
  if (h.rsv3) b0 |= 0x10;
  out[0] = static_cast<std::byte>(b0);
  unsigned mask_bit = h.masked ? 0x80 : 0;
  std::size_t n = 2;
  if (h.length <= 125) {
    out[1] = static_cast<std::byte>(mask_bit | static_cast<unsigned>(h.length));
  } else if (h.length <= 0xffff) {
    out[1] = static_cast<std::byte>(mask_bit | 126);
    out[2] = static_cast<std::byte>(h.length >> 8);
    out[3] = static_cast<std::byte>(h.length & 0xff);
    n = 4;
  } else {
    out[1] = static_cast<std::byte>(mask_bit | 127);
    for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<std::byte>((h.length >> (56 - 8 * i)) & 0xff);
    n = 10;
  }
  if (h.masked) {
    std::memcpy(out.data() + n, h.key.data(), 4);
    n += 4;
  }
  return n;
}

// Two 64-bit words in one SSE register (GCC's and Clang's vector extension): x86-64's
// baseline, so no target flag is needed; the XOR runs at memcpy's speed (about 0.6 us
// per 16 KiB here, against 1.1 us for one 64-bit word per step).
typedef std::uint64_t mask_vector __attribute__((vector_size(16)));

std::size_t apply_mask(const_buffer in, std::byte* out, mask_key key, std::size_t phase) noexcept {
  phase &= 3;
  const std::byte* src = in.data();
  const std::size_t n = in.size();
  // The key repeated from `phase` over 16 bytes: a step of 8 or 16 bytes keeps the
  // phase (both are multiples of 4).
  std::array<std::byte, 16> wide{};
  for (std::size_t j = 0; j < wide.size(); ++j) wide[j] = key[(phase + j) & 3];
  mask_vector k16;
  std::memcpy(&k16, wide.data(), sizeof k16);
  std::uint64_t k8 = 0;
  std::memcpy(&k8, wide.data(), sizeof k8);
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    mask_vector a, b, c, d;
    std::memcpy(&a, src + i, 16);
    std::memcpy(&b, src + i + 16, 16);
    std::memcpy(&c, src + i + 32, 16);
    std::memcpy(&d, src + i + 48, 16);
    a ^= k16;
    b ^= k16;
    c ^= k16;
    d ^= k16;
    std::memcpy(out + i, &a, 16);
    std::memcpy(out + i + 16, &b, 16);
    std::memcpy(out + i + 32, &c, 16);
    std::memcpy(out + i + 48, &d, 16);
  }
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, src + i, 8);
    w ^= k8;
    std::memcpy(out + i, &w, 8);
  }
  for (; i < n; ++i) out[i] = src[i] ^ wide[i & 7];
  return (phase + n) & 3;
}

mask_key mask_keys::next() {
  mask_key key{};
  if (seeded_) {
    // splitmix64: a fixed, well-mixed sequence for tests.
    state_ += 0x9e3779b97f4a7c15ull;
    auto z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(key.data(), &z, 4);
    return key;
  }
  if (used_ + 4 > pool_.size()) {
    // RAND_bytes fails only when the CSPRNG cannot be seeded: no safe key exists then.
    if (RAND_bytes(reinterpret_cast<unsigned char*>(pool_.data()), static_cast<int>(pool_.size())) != 1) {
      std::abort();
    }
    used_ = 0;
  }
  std::memcpy(key.data(), pool_.data() + used_, 4);
  used_ += 4;
  return key;
}

// -- UTF-8 -----------------------------------------------------------------------------------

bool utf8_validator::feed(const_buffer bytes) noexcept {
  if (failed_) return false;
  const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    if (remaining_ == 0) {
      while (i + 8 <= n) {
        std::uint64_t w = 0;
        std::memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i == n) break;
      std::uint8_t c = p[i++];
      if (c < 0x80) continue;
      if (c < 0xc2) {
        failed_ = true;  // a continuation byte first, or an overlong 2-byte form (C0, C1)
      } else if (c < 0xe0) {
        remaining_ = 1;
        lower_ = 0x80;
        upper_ = 0xbf;
      } else if (c < 0xf0) {
        remaining_ = 2;
        lower_ = c == 0xe0 ? 0xa0 : 0x80;  // E0: no overlong 3-byte forms
        upper_ = c == 0xed ? 0x9f : 0xbf;  // ED: no surrogates
      } else if (c < 0xf5) {
        remaining_ = 3;
        lower_ = c == 0xf0 ? 0x90 : 0x80;  // F0: no overlong 4-byte forms
        upper_ = c == 0xf4 ? 0x8f : 0xbf;  // F4: nothing above U+10FFFF
      } else {
        failed_ = true;
      }
      if (failed_) return false;
    } else {
      std::uint8_t c = p[i++];
      if (c < lower_ || c > upper_) {
        failed_ = true;
        return false;
      }
      lower_ = 0x80;
      upper_ = 0xbf;
      --remaining_;
    }
  }
  return true;
}

bool is_utf8(const_buffer bytes) noexcept {
  utf8_validator v;
  return v.feed(bytes) && v.complete();
}

// -- zlib streams ----------------------------------------------------------------------------

namespace detail {

/// inflater is the receive side's raw inflate stream.
struct inflater {
  z_stream z{};
  bool ready = false;
  /// ended: the input so far ended with a final block (BFINAL); the 00 00 ff ff a
  /// receiver appends to the message (RFC 7692 7.2.2) then belongs to no stream.
  bool ended = false;

  explicit inflater(int window_bits) { ready = inflateInit2(&z, -window_bits) == Z_OK; }
  ~inflater() {
    if (ready) inflateEnd(&z);
  }
  inflater(const inflater&) = delete;
  inflater& operator=(const inflater&) = delete;

  enum class outcome { ok, too_big, bad_data };

  /// feed inflates `in` onto `out`, never letting `out` hold more than limit + 1 bytes;
  /// `validate` sees each run of new bytes (a false answer stops at once: the caller
  /// knows why).
  template <class Validate>
  outcome feed(const_buffer in, byte_buffer& out, std::size_t limit, Validate&& validate) {
    if (!ready) return outcome::bad_data;
    const auto* next = reinterpret_cast<const Bytef*>(in.data());
    std::size_t left = in.size();
    if (left) ended = false;
    for (;;) {
      if (out.size() > limit) return outcome::too_big;
      auto piece = std::min(left, zlib_piece);
      z.next_in = const_cast<Bytef*>(next);
      z.avail_in = static_cast<uInt>(piece);
      // Room follows what came out: at most double what is held, limit + 1 in all.
      auto cap = limit + 1 - out.size();
      auto room = out.writable(std::min<std::size_t>(cap, std::max<std::size_t>(16 * 1024, out.size())));
      auto offered = std::min<std::size_t>({room.size(), cap, zlib_piece});
      z.next_out = reinterpret_cast<Bytef*>(room.data());
      z.avail_out = static_cast<uInt>(offered);
      int rc = ::inflate(&z, Z_SYNC_FLUSH);
      auto produced = offered - z.avail_out;
      auto used = piece - z.avail_in;
      next += used;
      left -= used;
      if (produced) {
        bool fine = validate(const_buffer(room.data(), produced));
        out.commit(produced);
        if (!fine) return outcome::ok;
      }
      if (rc == Z_STREAM_END) {
        // A final block (BFINAL): what follows is a new stream.
        if (inflateReset(&z) != Z_OK) return outcome::bad_data;
        if (left == 0) {
          ended = true;
          return out.size() > limit ? outcome::too_big : outcome::ok;
        }
        continue;
      }
      if (rc == Z_BUF_ERROR) {
        // No progress: more input is needed, or more room.
        if (z.avail_out == 0) continue;
        if (left == 0) return outcome::ok;
        return outcome::bad_data;
      }
      if (rc != Z_OK) return outcome::bad_data;
      // Everything taken and room left over: nothing is pending inside zlib.
      if (left == 0 && z.avail_out != 0) return outcome::ok;
    }
  }
  void reset() {
    if (ready) inflateReset(&z);
  }
};

/// deflater is the send side's raw deflate stream.
struct deflater {
  z_stream z{};
  bool ready = false;

  deflater(int level, int window_bits) {
    // memLevel 8 is zlib's default; a raw stream with an 8-bit window is refused by
    // zlib (negotiation never agrees to one).
    ready = deflateInit2(&z, level, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~deflater() {
    if (ready) deflateEnd(&z);
  }
  deflater(const deflater&) = delete;
  deflater& operator=(const deflater&) = delete;

  /// compress appends `in` compressed and flushed to a byte boundary to `out` and
  /// returns how many of the appended bytes are the message's payload: all but the
  /// 00 00 ff ff that ends a flush, which RFC 7692 7.2.1 leaves off the wire. nullopt:
  /// zlib failed.
  std::optional<std::size_t> compress(const_buffers in, byte_buffer& out, bool reset_after) {
    if (!ready) return std::nullopt;
    auto start = out.size();
    auto run = [&](const_buffer piece, int flush) -> bool {
      z.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(piece.data()));
      z.avail_in = static_cast<uInt>(piece.size());
      for (;;) {
        auto room = out.writable(std::max<std::size_t>(4096, piece.size() / 2 + 64));
        auto offered = std::min(room.size(), zlib_piece);
        z.next_out = reinterpret_cast<Bytef*>(room.data());
        z.avail_out = static_cast<uInt>(offered);
        int rc = ::deflate(&z, flush);
        out.commit(offered - z.avail_out);
        if (rc != Z_OK && rc != Z_BUF_ERROR) return false;
        // Done when the input is used and zlib had room left over (nothing pending).
        if (z.avail_in == 0 && z.avail_out != 0) return true;
      }
    };
    for (auto part : in.view()) {
      while (!part.empty()) {
        auto piece = part.first(std::min(part.size(), zlib_piece));
        if (!run(piece, Z_NO_FLUSH)) return std::nullopt;
        part = part.subspan(piece.size());
      }
    }
    if (!run(const_buffer{}, Z_SYNC_FLUSH)) return std::nullopt;
    if (reset_after) deflateReset(&z);
    auto produced = out.readable().subspan(start);
    if (produced.empty()) {
      // An empty message right after a flush: zlib has nothing to say. One empty
      // stored block's first byte stands for it (RFC 7692 7.2.3.6).
      out.append(const_buffer(&empty_block, 1));
      return 1;
    }
    static constexpr std::array<std::byte, 4> tail{std::byte{0}, std::byte{0}, std::byte{0xff},
                                                   std::byte{0xff}};
    if (produced.size() < 4 || std::memcmp(produced.data() + produced.size() - 4, tail.data(), 4) != 0) {
      return std::nullopt;
    }
    return produced.size() - 4;
  }

  static constexpr std::byte empty_block{0};
};

void deflater_deleter::operator()(deflater* d) const noexcept { delete d; }
void inflater_deleter::operator()(inflater* i) const noexcept { delete i; }

}  // namespace detail

// -- receiver --------------------------------------------------------------------------------

/// frame is one decoded frame header with where its payload is.
struct receiver::frame {
  bool fin;
  bool rsv1;
  websocket::opcode op;
  std::size_t header_size;
  std::uint64_t length;
};

receiver::receiver(websocket::role local, const deflate_params& deflate, const receive_limits& limits)
    : local_(local), deflate_(deflate), limits_(limits) {
  // The inflater always has the largest window: it decodes any smaller one.
  if (deflate_.enabled) inflater_.reset(new detail::inflater(15));
}
receiver::receiver(receiver&&) noexcept = default;
receiver& receiver::operator=(receiver&&) noexcept = default;
receiver::~receiver() = default;

receiver::event receiver::fail(error e) noexcept {
  event ev;
  ev.what = event::type::error;
  ev.failure = e;
  final_ = ev;
  in_message_ = false;
  return ev;
}

receiver::event receiver::next(mutable_buffer input) {
  if (final_) return *final_;  // no views: they pointed into an older input
  if (delivered_) {
    delivered_ = false;
    // A large message grew the buffer: give that memory back once it is delivered.
    if (message_.capacity() > 64 * 1024) {
      message_.release();
    } else {
      message_.consume(message_.size());
    }
  }
  std::size_t pos = 0;
  for (;;) {
    auto avail = input.size() - pos;
    const std::byte* p = input.data() + pos;
    event ev;
    ev.consumed = pos;
    if (avail < 2) {
      ev.need = 2 - avail;
      return ev;
    }
    auto b0 = std::to_integer<unsigned>(p[0]);
    auto b1 = std::to_integer<unsigned>(p[1]);
    frame f{};
    f.fin = b0 & 0x80;
    f.rsv1 = b0 & 0x40;
    auto op = b0 & 0x0f;
    bool masked = b1 & 0x80;
    auto len7 = b1 & 0x7f;
    switch (op) {
      case 0x0:
      case 0x1:
      case 0x2:
      case 0x8:
      case 0x9:
      case 0xa:
        break;
      default:
        return fail(error::reserved_opcode);
    }
    f.op = static_cast<websocket::opcode>(op);
    bool control = op & 0x8;
    if (b0 & 0x30) return fail(error::reserved_bits);
    // RSV1 is permessage-deflate's "compressed" bit: on a message's first frame only.
    if (f.rsv1 && !(deflate_.enabled && (op == 0x1 || op == 0x2))) return fail(error::reserved_bits);
    if (control) {
      if (!f.fin || len7 > max_control_payload) return fail(error::bad_control_frame);
    } else if (op == 0x0) {
      if (!in_message_) return fail(error::bad_continuation);
    } else if (in_message_) {
      return fail(error::bad_continuation);
    }
    // Clients mask every frame, servers none (RFC 6455 5.1).
    if (masked != (local_ == role::server)) return fail(error::bad_masking);
    f.header_size = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (avail < f.header_size) {
      ev.need = f.header_size - avail;
      return ev;
    }
    if (len7 == 126) {
      f.length = load16(p + 2);
    } else if (len7 == 127) {
      f.length = load64(p + 2);
      if (f.length >> 63) return fail(error::bad_length);
    } else {
      f.length = len7;
    }
    if (!control) {
      // Refused at the header, before its payload costs memory.
      bool compressed = op == 0x0 ? compressed_ : f.rsv1;
      std::uint64_t bound = compressed ? compressed_bound(limits_.max_message) : limits_.max_message;
      std::uint64_t so_far = op == 0x0 ? raw_size_ : 0;
      if (f.length > bound - std::min(bound, so_far)) return fail(error::message_too_big);
    }
    if (avail - f.header_size < f.length) {
      ev.need = static_cast<std::size_t>(f.length - (avail - f.header_size));
      return ev;
    }
    auto length = static_cast<std::size_t>(f.length);
    auto payload = input.subspan(pos + f.header_size, length);
    if (masked) {
      mask_key key{};
      std::memcpy(key.data(), p + f.header_size - 4, 4);
      apply_mask(payload, payload.data(), key);
    }
    auto end = pos + f.header_size + length;
    if (control) return control_frame(f, payload, end);
    if (auto done = data_frame(f, payload, end)) return *done;
    pos = end;  // a fragment, kept: go on with the next frame
  }
}

receiver::event receiver::control_frame(const frame& f, mutable_buffer payload, std::size_t end) {
  event ev;
  ev.consumed = end;
  ev.data = payload;
  if (f.op == opcode::ping) {
    ev.what = event::type::ping;
    return ev;
  }
  if (f.op == opcode::pong) {
    ev.what = event::type::pong;
    return ev;
  }
  ev.what = event::type::close;
  ev.data = {};
  if (payload.size() == 1) return fail(error::bad_close_frame);
  ev.code = close_code::no_status;
  if (payload.size() >= 2) {
    ev.code = load16(payload.data());
    if (!valid_close_code(ev.code)) return fail(error::bad_close_frame);
    auto reason = payload.subspan(2);
    if (!is_utf8(reason)) return fail(error::invalid_utf8);
    ev.reason = as_text(reason);
  }
  final_ = ev;
  final_->reason = {};
  final_->consumed = 0;
  return ev;
}

bool receiver::append_payload(const_buffer payload, bool fin, error& failure) {
  bool text = kind_ == message_kind::text;
  if (!compressed_) {
    if (text && !utf8_.feed(payload)) {
      failure = error::invalid_utf8;
      return false;
    }
    message_.append(payload);
    return true;
  }
  auto validate = [&](const_buffer fresh) { return !text || utf8_.feed(fresh); };
  auto got = inflater_->feed(payload, message_, limits_.max_message, validate);
  if (got == detail::inflater::outcome::ok && fin && !inflater_->ended) {
    static constexpr std::array<std::byte, 4> tail{std::byte{0}, std::byte{0}, std::byte{0xff},
                                                   std::byte{0xff}};
    got = inflater_->feed(tail, message_, limits_.max_message, validate);
    if (deflate_.peer_no_context_takeover) inflater_->reset();
  }
  if (utf8_.failed()) {
    failure = error::invalid_utf8;
    return false;
  }
  if (got == detail::inflater::outcome::too_big) {
    failure = error::message_too_big;
    return false;
  }
  if (got == detail::inflater::outcome::bad_data) {
    failure = error::bad_compressed_data;
    return false;
  }
  return true;
}

std::optional<receiver::event> receiver::data_frame(const frame& f, mutable_buffer payload, std::size_t end) {
  if (f.op != opcode::continuation) {
    kind_ = f.op == opcode::text ? message_kind::text : message_kind::binary;
    compressed_ = f.rsv1;
    raw_size_ = 0;
    utf8_.reset();
    if (f.fin && !compressed_) {
      // A whole message in one frame: reported from the input itself, no copy.
      if (kind_ == message_kind::text && !is_utf8(payload)) return fail(error::invalid_utf8);
      event ev;
      ev.what = event::type::message;
      ev.consumed = end;
      ev.kind = kind_;
      ev.data = payload;
      return ev;
    }
    in_message_ = true;
  }
  raw_size_ += payload.size();
  error failure{};
  if (!append_payload(payload, f.fin, failure)) return fail(failure);
  if (!f.fin) return std::nullopt;
  in_message_ = false;
  if (kind_ == message_kind::text && !utf8_.complete()) return fail(error::invalid_utf8);
  delivered_ = true;
  event ev;
  ev.what = event::type::message;
  ev.consumed = end;
  ev.kind = kind_;
  ev.data = message_.readable();
  return ev;
}

// -- sender ----------------------------------------------------------------------------------

sender::sender(websocket::role local, const deflate_params& deflate, const send_options& options)
    : local_(local), deflate_(deflate), options_(options) {
  if (deflate_.enabled) {
    deflater_.reset(new detail::deflater(deflate_.level, std::clamp(deflate_.window_bits, 9, 15)));
  }
}
sender::sender(sender&&) noexcept = default;
sender& sender::operator=(sender&&) noexcept = default;
sender::~sender() = default;

void sender::append_frame(websocket::opcode op, bool fin, bool rsv1, const_buffers payload,
                          std::size_t offset, std::size_t length, byte_buffer& out) {
  frame_header h;
  h.fin = fin;
  h.rsv1 = rsv1;
  h.opcode = op;
  h.length = length;
  h.masked = local_ == role::client;
  if (h.masked) h.key = keys_.next();
  std::array<std::byte, max_header_size> header{};
  auto header_size = encode_header(h, header);
  auto room = out.writable(header_size + length);
  std::memcpy(room.data(), header.data(), header_size);
  std::byte* to = room.data() + header_size;
  std::size_t phase = 0;
  std::size_t skip = offset;
  std::size_t left = length;
  for (auto part : payload.view()) {
    if (left == 0) break;
    if (skip >= part.size()) {
      skip -= part.size();
      continue;
    }
    auto piece = part.subspan(skip, std::min(part.size() - skip, left));
    skip = 0;
    if (h.masked) {
      phase = apply_mask(piece, to, h.key, phase);
    } else if (!piece.empty()) {
      std::memcpy(to, piece.data(), piece.size());
    }
    to += piece.size();
    left -= piece.size();
  }
  out.commit(header_size + length);
}

result<void> sender::encode_message(message_kind kind, const_buffers payload, byte_buffer& out) {
  auto size = payload.total_size();
  bool compress = deflate_.enabled && deflater_ && size >= deflate_.min_size;
  const_buffers body = payload;
  if (compress) {
    compressed_.consume(compressed_.size());
    auto length = deflater_->compress(payload, compressed_, deflate_.no_context_takeover);
    if (!length) return errc::not_supported;
    size = *length;
    body = const_buffer(compressed_.readable().first(size));
  }
  auto first_op = kind == message_kind::text ? opcode::text : opcode::binary;
  auto step = options_.fragment_size ? options_.fragment_size : std::max<std::size_t>(size, 1);
  std::size_t offset = 0;
  bool first = true;
  do {
    auto length = std::min(step, size - offset);
    bool fin = offset + length == size;
    append_frame(first ? first_op : opcode::continuation, fin, first && compress, body, offset, length, out);
    offset += length;
    first = false;
  } while (offset < size);
  // Compressing a large message grew the scratch buffer: give it back.
  if (compressed_.capacity() > 256 * 1024) compressed_.release();
  return {};
}

result<void> sender::encode_control(websocket::opcode op, const_buffer payload, byte_buffer& out) {
  if (payload.size() > max_control_payload) return errc::invalid_argument;
  if (op != opcode::ping && op != opcode::pong && op != opcode::close) return errc::invalid_argument;
  append_frame(op, true, false, payload, 0, payload.size(), out);
  return {};
}

std::size_t sender::direct_header(message_kind kind, std::size_t size,
                                  std::span<std::byte, max_header_size> out) const {
  if (local_ != role::server) return 0;
  if (deflate_.enabled && size >= deflate_.min_size) return 0;
  if (options_.fragment_size && size > options_.fragment_size) return 0;
  frame_header h;
  h.opcode = kind == message_kind::text ? opcode::text : opcode::binary;
  h.length = size;
  return encode_header(h, out);
}

std::vector<std::byte> encode_close_payload(std::uint16_t code, std::string_view reason) {
  std::vector<std::byte> out;
  if (code == close_code::no_status) return out;
  // The reason is cut at a code point boundary so the frame stays valid UTF-8.
  if (reason.size() > max_control_payload - 2) {
    std::size_t cut = max_control_payload - 2;
    while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xc0) == 0x80) --cut;
    reason = reason.substr(0, cut);
  }
  out.reserve(2 + reason.size());
  out.push_back(static_cast<std::byte>(code >> 8));
  out.push_back(static_cast<std::byte>(code & 0xff));
  auto bytes = as_bytes(reason);
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}

}  // namespace strata::websocket
