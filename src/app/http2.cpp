// http2: the server and client sessions over libnghttp2 (include/strata/app/http2.hpp).
//
// One session per connection. nghttp2 does framing, HPACK and flow control in memory
// (mem_recv / mem_send); the session's reader task feeds it what arrives, its writer task
// sends what it produced in writes of up to 64 KiB, and the callbacks below move headers
// and DATA between nghttp2 and the per-stream states the request and response objects use.
// Flow control is manual (no automatic WINDOW_UPDATE): a stream's window opens only as its
// body is read, so what a peer can make us buffer is bounded by the windows we grant.
#include "strata/app/http2.hpp"

#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <ctime>
#include <deque>
#include <unordered_map>

#include "strata/runtime/scope.hpp"

namespace strata::http2 {

namespace {

class http2_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "http2"; }
  std::string message(int value) const override {
    if (value >= static_cast<int>(error::peer_error)) {
      return std::string("peer sent HTTP/2 error ") +
             nghttp2_http2_strerror(static_cast<std::uint32_t>(value - static_cast<int>(error::peer_error)));
    }
    switch (static_cast<error>(value)) {
      case error::not_http2:
        return "peer did not send the HTTP/2 connection preface";
      case error::connection_failed:
        return "HTTP/2 session failed";
      case error::going_away:
        return "HTTP/2 connection going away (GOAWAY)";
      case error::stream_reset:
        return "HTTP/2 stream reset";
      case error::refused_stream:
        return "HTTP/2 stream refused";
      case error::header_too_large:
        return "HTTP/2 header list too large";
      case error::body_too_large:
        return "HTTP/2 body too large";
      case error::enhance_your_calm:
        return "HTTP/2 peer closed for excessive load (ENHANCE_YOUR_CALM)";
      case error::bad_response:
        return "malformed HTTP/2 response";
      case error::no_authority:
        return "HTTP/2 request without an authority (set_host, client_options::authority or a Host header)";
      case error::peer_error:
        break;
    }
    return "http2 error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    if (value >= static_cast<int>(error::peer_error)) return errc::broken;
    switch (static_cast<error>(value)) {
      case error::going_away:
      case error::stream_reset:
      case error::refused_stream:
        return errc::broken;
      case error::header_too_large:
      case error::body_too_large:
        return errc::message_too_large;
      case error::no_authority:
        return errc::invalid_argument;
      default:
        return errc::protocol_error;
    }
  }
};

/// peer_code maps an RFC 9113 error code the peer (or the session) ended a stream with.
std::error_code peer_code(std::uint32_t code) {
  if (code == NGHTTP2_REFUSED_STREAM) return make_error_code(error::refused_stream);
  if (code == NGHTTP2_ENHANCE_YOUR_CALM) return make_error_code(error::enhance_your_calm);
  if (code == NGHTTP2_NO_ERROR || code == NGHTTP2_CANCEL) return make_error_code(error::stream_reset);
  return {static_cast<int>(error::peer_error) + static_cast<int>(code), category()};
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return {const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(name.data())),
          const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(value.data())), name.size(),
          value.size(), NGHTTP2_NV_FLAG_NONE};
}

bool connection_specific(std::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" || lower_name == "transfer-encoding" ||
         lower_name == "upgrade" || lower_name == "proxy-connection" || lower_name == "te";
}

/// checked_header lowercases and checks a field to send.
result<http1::header> checked_header(std::string_view name, std::string_view value) {
  http1::header h{std::string(name), std::string(value)};
  for (auto& c : h.name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  if (h.name.empty() || h.name.front() == ':' ||
      !nghttp2_check_header_name(reinterpret_cast<const std::uint8_t*>(h.name.data()), h.name.size()) ||
      !nghttp2_check_header_value_rfc9113(reinterpret_cast<const std::uint8_t*>(h.value.data()),
                                          h.value.size()) ||
      connection_specific(h.name)) {
    return errc::invalid_argument;
  }
  return h;
}

/// base64url_decode decodes RFC 4648 section 5 text, padded or not; nullopt if malformed.
std::optional<std::vector<std::uint8_t>> base64url_decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::vector<std::uint8_t> out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '-' || c == '+' ? 62
            : c == '_' || c == '/' ? 63
                                   : -1;
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<std::uint8_t>(bits >> count));
    }
  }
  if (count >= 6) return std::nullopt;  // a lone sextet cannot end base64
  return out;
}

constexpr std::size_t write_chunk = 64 * 1024;
/// SETTINGS_MAX_FRAME_SIZE's initial value (RFC 9113 6.5.2), which strata never raises.
constexpr std::size_t default_max_frame_size = 16384;
constexpr std::size_t read_chunk = 16 * 1024;

}  // namespace

const std::error_category& category() noexcept {
  static const http2_error_category instance;
  return instance;
}

// -- per-stream state ------------------------------------------------------------------------

/// stream_state is one stream's side of the session: its received head, body and
/// trailers, and the body waiting to be sent.
struct stream_state {
  std::int32_t id = 0;
  // Received fields: names and values packed in `text`, views built when a block ends.
  std::string text;
  std::vector<std::array<std::uint32_t, 4>> spans;  // name offset, length, value offset, length
  std::string pseudo_method, pseudo_scheme, pseudo_authority, pseudo_path, pseudo_protocol;
  int status = 0;
  std::uint32_t header_bytes = 0;
  std::uint32_t field_count = 0;
  bool head_done = false;
  bool head_too_large = false;  // a server's request head passed a limit: answered 431
  http1::fields fields;
  std::string trailer_text;
  std::vector<std::array<std::uint32_t, 4>> trailer_spans;
  http1::fields trailers;
  // Body received and not yet read.
  std::string in;
  std::size_t in_pos = 0;
  bool in_end = false;
  std::uint64_t in_total = 0;
  bool body_from_http1 = false;  // the h2c Upgrade's request body: no window to reopen
  // Body to send.
  std::string out;
  std::size_t out_pos = 0;
  bool out_end = false;
  bool deferred = false;
  bool has_provider = false;
  std::vector<http1::header> out_trailers;
  // Life.
  bool closed = false;
  bool handler_done = false;
  std::error_code failure{};
  event readable;
  event writable;
  event head_ready;

  std::size_t unread() const noexcept { return in.size() - in_pos; }
  std::size_t unsent() const noexcept { return out.size() - out_pos; }
  void fail(std::error_code ec) {
    if (!failure) failure = ec;
    readable.set();
    writable.set();
    head_ready.set();
  }
};

namespace {

void build_fields(const std::string& text, const std::vector<std::array<std::uint32_t, 4>>& spans,
                  http1::fields& out) {
  out.clear();
  for (const auto& s : spans) {
    out.add({std::string_view(text).substr(s[0], s[1]), std::string_view(text).substr(s[2], s[3])});
  }
}

}  // namespace

// -- the session core shared by server and client --------------------------------------------

/// session_core owns the nghttp2 session and the connection and runs their I/O.
class session_core {
 public:
  session_core(any_stream s, std::vector<std::byte> early, std::chrono::milliseconds write_timeout)
      : io(std::move(s)), unread(std::move(early)), write_timeout_(write_timeout) {}
  virtual ~session_core() {
    if (ng) nghttp2_session_del(ng);
  }
  session_core(const session_core&) = delete;
  session_core& operator=(const session_core&) = delete;

  /// reader feeds nghttp2 until the peer closes, an error, or cancellation.
  task<void> reader(std::chrono::milliseconds idle);
  /// writer sends what nghttp2 produces until the session is over.
  task<result<void>> writer(event* stop, std::chrono::milliseconds grace);

  result<void> feed(const std::byte* data, std::size_t size);
  void wake_writer() noexcept { wake.set(); }

  /// read_body_some reads a stream's received body (see request::read_some).
  task<result<std::size_t>> read_body_some(stream_state& st, mutable_buffer buf, deadline dl);
  task<result<std::string>> read_whole(stream_state& st, std::size_t max, deadline dl);
  /// queue_body appends to a stream's body to send and waits while too much is queued.
  task<result<void>> queue_body(stream_state& st, const_buffers body, std::size_t limit, deadline dl);
  void end_body(stream_state& st, std::vector<http1::header> trailers);

  // nghttp2 callbacks shared by both sides.
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t flags, void* user);
  static int on_data_chunk(nghttp2_session*, std::uint8_t flags, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t code, void* user);
  static ssize_t read_body_callback(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf,
                                    std::size_t length, std::uint32_t* flags, nghttp2_data_source* source,
                                    void* user);
  static void set_common_callbacks(nghttp2_session_callbacks* cb);

  stream_state* stream_of(std::int32_t id) {
    return static_cast<stream_state*>(nghttp2_session_get_stream_user_data(ng, id));
  }
  virtual void stream_closed(stream_state& st) = 0;
  virtual void frame_received(const nghttp2_frame& frame) = 0;

  nghttp2_session* ng = nullptr;
  any_stream io;
  std::vector<std::byte> unread;
  event wake;
  bool peer_closed = false;
  std::error_code failure{};
  std::uint32_t max_header_list = 64 * 1024;
  std::uint32_t max_fields = 100;
  std::uint64_t max_body = 16ull << 20;
  std::uint64_t writes = 0;
  std::unordered_map<std::int32_t, std::shared_ptr<stream_state>> streams;

 private:
  std::chrono::milliseconds write_timeout_;
  std::string outbuf_;

 protected:
  std::string carry_;  // the start of a frame header not complete yet
  /// bytes before the next frame header: the client preface (24) on a server, else the
  /// rest of the frame being received.
  std::size_t to_frame_header_ = 0;
  /// A server checks the identifiers of the client's HEADERS itself (RFC 9113 5.1.1):
  /// nghttp2 ignores a HEADERS on a lower identifier the client never used, which it
  /// cannot tell from the trailers of a stream it reset and forgot. So the server keeps
  /// the ranges of identifiers the client skipped (the newest few: a client skipping
  /// without end costs a bounded list, and only loses the oldest ranges' check).
  bool checks_stream_ids_ = false;
  /// A server answers a request head over max_header_list / max_fields with 431 (RFC 9113
  /// 10.5.1) instead of resetting the stream: the rest of the head is decoded (HPACK
  /// must stay in step) but not kept.
  bool answers_large_heads_ = false;
  std::uint32_t highest_peer_stream_ = 0;
  std::deque<std::pair<std::uint32_t, std::uint32_t>> skipped_ids_;  // [first, last], odd
  static constexpr std::size_t max_skipped_ranges = 32;
  /// stream_id_allowed notes the client's HEADERS on `id`; false for an identifier it
  /// skipped before (a connection error PROTOCOL_ERROR).
  /// deliver hands `bytes` to nghttp2 and turns its refusal into `failure`.
  result<void> deliver(std::string_view bytes);
  /// settings_overflow_a_window: the entries of a SETTINGS frame's payload change
  /// INITIAL_WINDOW_SIZE so that an open stream's send window passes 2^31-1.
  bool settings_overflow_a_window(const std::uint8_t* entries, std::size_t length) const;
  bool stream_id_allowed(std::uint32_t id) {
    if (id > highest_peer_stream_) {
      const std::uint32_t next = highest_peer_stream_ == 0 ? 1 : highest_peer_stream_ + 2;
      if (id % 2 == 1 && id > next) {
        skipped_ids_.emplace_back(next, id - 2);
        if (skipped_ids_.size() > max_skipped_ranges) skipped_ids_.pop_front();
      }
      highest_peer_stream_ = id;
      return true;
    }
    for (const auto& [first, last] : skipped_ids_) {
      if (id >= first && id <= last) return false;
    }
    return true;
  }
};

void session_core::set_common_callbacks(nghttp2_session_callbacks* cb) {
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cb, [](nghttp2_session*, const nghttp2_frame* frame, void* user) -> int {
        static_cast<session_core*>(user)->frame_received(*frame);
        return 0;
      });
}

int session_core::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                            std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                            std::uint8_t, void* user) {
  auto& self = *static_cast<session_core*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* st = self.stream_of(frame->hd.stream_id);
  if (!st) return 0;
  if (st->head_too_large && !st->head_done) return 0;  // decoded, not kept
  // RFC 9113 6.5.2's size: name, value and 32 bytes each. An HPACK bomb decodes to many
  // such fields from few bytes; the limit stops it after max_header_list of them.
  st->header_bytes += static_cast<std::uint32_t>(namelen + valuelen + 32);
  if (st->header_bytes > self.max_header_list || ++st->field_count > self.max_fields) {
    if (self.answers_large_heads_ && !st->head_done) {
      st->head_too_large = true;
      return 0;
    }
    st->fail(make_error_code(error::header_too_large));
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
  }
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  bool trailer = st->head_done;
  if (!trailer && !n.empty() && n.front() == ':') {
    if (n == ":method")
      st->pseudo_method = v;
    else if (n == ":scheme")
      st->pseudo_scheme = v;
    else if (n == ":authority")
      st->pseudo_authority = v;
    else if (n == ":path")
      st->pseudo_path = v;
    else if (n == ":protocol")
      st->pseudo_protocol = v;
    else if (n == ":status") {
      int code = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), code);
      st->status = ec == std::errc{} && end == v.data() + v.size() && v.size() == 3 ? code : -1;
    }
    return 0;
  }
  auto& text = trailer ? st->trailer_text : st->text;
  auto& spans = trailer ? st->trailer_spans : st->spans;
  auto at = static_cast<std::uint32_t>(text.size());
  text.append(n).append(v);
  spans.push_back({at, static_cast<std::uint32_t>(n.size()), at + static_cast<std::uint32_t>(n.size()),
                   static_cast<std::uint32_t>(v.size())});
  return 0;
}

int session_core::on_data_chunk(nghttp2_session* ng, std::uint8_t, std::int32_t stream_id,
                                const std::uint8_t* data, std::size_t len, void* user) {
  auto& self = *static_cast<session_core*>(user);
  auto* st = self.stream_of(stream_id);
  if (!st || st->failure) {
    // Nobody will read it: give the connection window back at once.
    nghttp2_session_consume_connection(ng, len);
    return 0;
  }
  st->in_total += len;
  if (st->in_total > self.max_body) {
    nghttp2_session_consume_connection(ng, len);
    st->fail(make_error_code(error::body_too_large));
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    return 0;
  }
  if (st->in_pos > 0 && st->in_pos >= st->in.size() / 2) {
    st->in.erase(0, st->in_pos);
    st->in_pos = 0;
  }
  st->in.append(reinterpret_cast<const char*>(data), len);
  st->readable.set();
  return 0;
}

int session_core::on_stream_close(nghttp2_session* ng, std::int32_t stream_id, std::uint32_t code,
                                  void* user) {
  auto& self = *static_cast<session_core*>(user);
  auto* st = self.stream_of(stream_id);
  if (!st) return 0;
  st->closed = true;
  // Bytes still buffered are read from memory from now on; the connection's window
  // need not wait for them.
  if (st->unread() > 0) nghttp2_session_consume_connection(ng, st->unread());
  if (!st->in_end || code != NGHTTP2_NO_ERROR) st->fail(peer_code(code));
  st->readable.set();
  st->writable.set();
  st->head_ready.set();
  nghttp2_session_set_stream_user_data(ng, stream_id, nullptr);
  self.stream_closed(*st);
  return 0;
}

ssize_t session_core::read_body_callback(nghttp2_session* ng, std::int32_t stream_id, std::uint8_t* buf,
                                         std::size_t length, std::uint32_t* flags, nghttp2_data_source*,
                                         void* user) {
  auto& self = *static_cast<session_core*>(user);
  auto* st = self.stream_of(stream_id);
  if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  auto n = std::min(length, st->unsent());
  if (n > 0) {
    std::memcpy(buf, st->out.data() + st->out_pos, n);
    st->out_pos += n;
    if (st->out_pos == st->out.size()) {
      st->out.clear();
      st->out_pos = 0;
    }
    st->writable.set();
  }
  if (st->unsent() == 0 && st->out_end) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!st->out_trailers.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      std::vector<nghttp2_nv> nva;
      for (const auto& t : st->out_trailers) nva.push_back(make_nv(t.name, t.value));
      nghttp2_submit_trailer(ng, stream_id, nva.data(), nva.size());
    }
    return static_cast<ssize_t>(n);
  }
  if (n == 0) {
    st->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

result<void> session_core::deliver(std::string_view bytes) {
  auto rv = nghttp2_session_mem_recv(ng, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  if (rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
    // Abuse (RFC 9113 10.5): say why before closing (5.4.1); the writer sends it last.
    nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
  }
  if (rv < 0) {
    if (!failure) {
      failure = rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? make_error_code(error::not_http2)
                                                   : make_error_code(error::connection_failed);
    }
    return unexpected(failure);
  }
  return {};
}

bool session_core::settings_overflow_a_window(const std::uint8_t* entries, std::size_t length) const {
  const auto initial = static_cast<std::int64_t>(
      nghttp2_session_get_remote_settings(ng, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE));
  for (std::size_t i = 0; i + 6 <= length; i += 6) {
    const auto* e = entries + i;
    if (((std::uint32_t{e[0]} << 8) | e[1]) != NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) continue;
    const std::int64_t value =
        (std::int64_t{e[2]} << 24) | (std::int64_t{e[3]} << 16) | (std::int64_t{e[4]} << 8) | e[5];
    if (value > NGHTTP2_MAX_WINDOW_SIZE) continue;  // nghttp2's own error (6.5.2)
    // Each entry moves every stream's send window by its difference to the initial
    // window in force before the frame (6.9.2); the entries apply in order.
    for (const auto& entry : streams) {
      const std::int64_t window = nghttp2_session_get_stream_remote_window_size(ng, entry.first);
      if (window >= 0 && window + (value - initial) > NGHTTP2_MAX_WINDOW_SIZE) return true;
    }
  }
  return false;
}

result<void> session_core::feed(const std::byte* data, std::size_t size) {
  // nghttp2 (1.52 with Debian's backported CONTINUATION limit) counts a CONTINUATION
  // once per call that delivers a piece of it, so a header block arriving in small reads
  // would look like a flood and close the connection. Header-block frames (HEADERS,
  // PUSH_PROMISE, CONTINUATION) are therefore handed over whole, and every frame header
  // too: what is incomplete waits in `carry_` — at most one frame of the default
  // SETTINGS_MAX_FRAME_SIZE; a longer one goes through at once for nghttp2 to refuse.
  //
  // Two connection errors of RFC 9113 that nghttp2 1.52 does not raise are checked here,
  // on the frame headers going by: a HEADERS on a stream identifier the client skipped
  // (5.1.1, servers) and an INITIAL_WINDOW_SIZE that takes an open stream's send window
  // past 2^31-1 (6.9.2; nghttp2 resets the stream instead). A SETTINGS frame is held
  // whole and the frames before it are delivered first, since they move the windows.
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (!carry_.empty()) {
    carry_.append(in);
    in = carry_;
  }
  std::size_t pos = 0;
  std::size_t delivered = 0;
  std::uint32_t violation = NGHTTP2_NO_ERROR;
  while (pos < in.size()) {
    if (to_frame_header_ > 0) {
      auto step = std::min<std::size_t>(to_frame_header_, in.size() - pos);
      pos += step;
      to_frame_header_ -= step;
      continue;
    }
    if (in.size() - pos < 9) break;
    auto p = reinterpret_cast<const std::uint8_t*>(in.data() + pos);
    std::size_t length = (std::size_t{p[0]} << 16) | (std::size_t{p[1]} << 8) | p[2];
    bool header_block =
        p[3] == NGHTTP2_HEADERS || p[3] == NGHTTP2_PUSH_PROMISE || p[3] == NGHTTP2_CONTINUATION;
    bool settings = p[3] == NGHTTP2_SETTINGS && !(p[4] & NGHTTP2_FLAG_ACK) && length % 6 == 0;
    if ((header_block || settings) && length <= default_max_frame_size && in.size() - pos < 9 + length) break;
    if (checks_stream_ids_ && p[3] == NGHTTP2_HEADERS) {
      const std::uint32_t id = ((std::uint32_t{p[5]} & 0x7f) << 24) | (std::uint32_t{p[6]} << 16) |
                               (std::uint32_t{p[7]} << 8) | p[8];
      if (!stream_id_allowed(id)) {
        violation = NGHTTP2_PROTOCOL_ERROR;
        break;
      }
    }
    if (settings && length <= default_max_frame_size) {
      if (pos > delivered) {
        auto before = deliver(in.substr(delivered, pos - delivered));
        delivered = pos;
        if (!before) {
          carry_.clear();
          return before;
        }
      }
      if (!streams.empty() && settings_overflow_a_window(p + 9, length)) {
        violation = NGHTTP2_FLOW_CONTROL_ERROR;
        break;
      }
    }
    to_frame_header_ = length;
    pos += 9;
  }
  // (Not even an empty call: in the middle of a header block, each one counts as well.)
  result<void> fed{};
  if (pos > delivered) fed = deliver(in.substr(delivered, pos - delivered));
  if (fed && violation != NGHTTP2_NO_ERROR) {
    // What came before the offending frame was handled; it and the rest are not.
    carry_.clear();
    nghttp2_session_terminate_session(ng, violation);
    if (!failure) failure = make_error_code(error::connection_failed);
    return unexpected(failure);
  }
  std::string rest(in.substr(pos));
  carry_ = std::move(rest);
  return fed;
}

task<void> session_core::reader(std::chrono::milliseconds idle) {
  // idle zero: a client, which never gives up on a quiet connection by itself.
  if (!unread.empty()) {
    auto early = std::move(unread);
    auto fed = feed(early.data(), early.size());
    wake_writer();
    if (!fed) co_return;
  }
  std::vector<std::byte> buf(read_chunk);
  for (;;) {
    auto dl = streams.empty() && idle.count() > 0 ? deadline::after(idle) : deadline::never();
    auto n = co_await io.read_some(buf, dl);
    if (!n) {
      if (n.error() == errc::timed_out && streams.empty()) {
        // Idle: say goodbye properly; the writer sends GOAWAY and ends the session.
        nghttp2_session_terminate_session(ng, NGHTTP2_NO_ERROR);
        wake_writer();
        continue;
      }
      if (n.error() == errc::timed_out) continue;
      peer_closed = true;
      if (n.error() != errc::end_of_stream && n.error() != errc::operation_canceled && !failure)
        failure = n.error();
      for (auto& [id, st] : streams) st->fail(make_error_code(error::stream_reset));
      wake_writer();
      co_return;
    }
    auto fed = feed(buf.data(), *n);
    wake_writer();
    if (!fed) co_return;
  }
}

task<result<void>> session_core::writer(event* stop, std::chrono::milliseconds grace) {
  bool goaway_sent = false;
  auto grace_due = deadline::never();
  for (;;) {
    wake.reset();
    if (stop && stop->is_set() && !goaway_sent) {
      goaway_sent = true;
      grace_due = deadline::after(grace);
      nghttp2_submit_goaway(ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng),
                            NGHTTP2_NO_ERROR, nullptr, 0);
    }
    for (;;) {
      const std::uint8_t* data = nullptr;
      auto n = nghttp2_session_mem_send(ng, &data);
      if (n < 0) {
        if (!failure) failure = make_error_code(error::connection_failed);
        break;
      }
      if (n == 0) break;
      outbuf_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
      if (outbuf_.size() >= write_chunk) {
        ++writes;
        auto sent = co_await io.write(as_bytes(outbuf_), deadline::after(write_timeout_));
        outbuf_.clear();
        if (!sent) co_return sent;
      }
    }
    if (!outbuf_.empty()) {
      ++writes;
      auto sent = co_await io.write(as_bytes(outbuf_), deadline::after(write_timeout_));
      outbuf_.clear();
      if (!sent) co_return sent;
    }
    if (wake.is_set()) continue;
    if (peer_closed || failure) co_return result<void>{};
    if (!nghttp2_session_want_read(ng) && !nghttp2_session_want_write(ng)) co_return result<void>{};
    if (goaway_sent && streams.empty()) co_return result<void>{};
    auto waited = co_await wake.wait(grace_due);
    if (!waited) {
      if (waited.error() == errc::timed_out) {
        // The grace is over: the streams still running are cut.
        nghttp2_session_terminate_session(ng, NGHTTP2_NO_ERROR);
        grace_due = deadline::never();
        goaway_sent = true;
        for (auto& [id, st] : streams) st->fail(make_error_code(error::going_away));
        continue;
      }
      co_return unexpected(waited.error());
    }
  }
}

task<result<std::size_t>> session_core::read_body_some(stream_state& st, mutable_buffer buf, deadline dl) {
  if (buf.empty()) co_return std::size_t{0};
  for (;;) {
    if (st.unread() > 0) {
      auto n = std::min(buf.size(), st.unread());
      std::memcpy(buf.data(), st.in.data() + st.in_pos, n);
      st.in_pos += n;
      if (st.in_pos == st.in.size()) {
        st.in.clear();
        st.in_pos = 0;
      }
      if (!st.closed && !st.body_from_http1) {
        // What was read opens the stream's and the connection's windows again.
        nghttp2_session_consume(ng, st.id, n);
        wake_writer();
      }
      co_return n;
    }
    if (st.in_end) co_return errc::end_of_stream;
    if (st.failure) co_return unexpected(st.failure);
    if (st.closed) co_return unexpected(make_error_code(error::stream_reset));
    st.readable.reset();
    auto waited = co_await st.readable.wait(dl);
    if (!waited) co_return unexpected(waited.error());
  }
}

task<result<std::string>> session_core::read_whole(stream_state& st, std::size_t max, deadline dl) {
  std::string out;
  std::array<std::byte, read_chunk> buf{};
  for (;;) {
    auto n = co_await read_body_some(st, buf, dl);
    if (!n) {
      if (n.error() == errc::end_of_stream) co_return out;
      co_return unexpected(n.error());
    }
    if (out.size() + *n > max) co_return unexpected(make_error_code(error::body_too_large));
    out.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
}

task<result<void>> session_core::queue_body(stream_state& st, const_buffers body, std::size_t limit,
                                            deadline dl) {
  for (auto piece : body.view()) {
    while (!piece.empty()) {
      if (st.failure) co_return unexpected(st.failure);
      if (st.closed) co_return unexpected(make_error_code(error::stream_reset));
      if (st.unsent() >= limit) {
        st.writable.reset();
        auto waited = co_await st.writable.wait(dl);
        if (!waited) co_return unexpected(waited.error());
        continue;
      }
      auto n = std::min(piece.size(), limit - st.unsent());
      if (st.out_pos > 0 && st.out_pos >= st.out.size() / 2) {
        st.out.erase(0, st.out_pos);
        st.out_pos = 0;
      }
      st.out.append(reinterpret_cast<const char*>(piece.data()), n);
      piece = piece.subspan(n);
      if (st.deferred) {
        st.deferred = false;
        nghttp2_session_resume_data(ng, st.id);
      }
      wake_writer();
    }
  }
  co_return result<void>{};
}

void session_core::end_body(stream_state& st, std::vector<http1::header> trailers) {
  st.out_end = true;
  st.out_trailers = std::move(trailers);
  if (st.deferred) {
    st.deferred = false;
    nghttp2_session_resume_data(ng, st.id);
  }
  wake_writer();
}

// -- server ----------------------------------------------------------------------------------

class server_session final : public session_core {
 public:
  server_session(any_stream s, std::vector<std::byte> early, handler h, const server_options& o)
      : session_core(std::move(s), std::move(early), o.write_timeout), handle(std::move(h)), options(o) {
    max_header_list = o.max_header_list;
    max_fields = o.max_fields;
    max_body = o.max_body;
    to_frame_header_ = preface.size();
    checks_stream_ids_ = true;
    answers_large_heads_ = true;
    reset_tokens = o.reset_burst;
  }

  result<void> start(const upgraded_request* first);
  task<result<serve_stats>> run(const upgraded_request* first);
  task<void> run_handler(std::shared_ptr<stream_state> st);
  void answer_head_too_large(stream_state& st);
  result<void> submit(stream_state& st, response& res, int status, std::optional<std::uint64_t> length,
                      bool body);
  void stream_closed(stream_state& st) override;
  void frame_received(const nghttp2_frame& frame) override;
  void begin_request(std::int32_t id);
  bool take_reset_token();

  handler handle;
  server_options options;
  serve_stats stats;
  scope* handlers = nullptr;
  std::uint32_t active = 0;
  std::uint64_t reset_tokens = 0;
  std::chrono::steady_clock::time_point reset_refilled = std::chrono::steady_clock::now();
};

bool server_session::take_reset_token() {
  // A token bucket: reset_burst tokens, reset_rate more each whole second.
  auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - reset_refilled);
  if (seconds.count() > 0) {
    auto n = static_cast<std::uint64_t>(seconds.count());
    auto refill = options.reset_rate > options.reset_burst / n ? options.reset_burst : options.reset_rate * n;
    reset_tokens = options.reset_burst - reset_tokens <= refill ? options.reset_burst : reset_tokens + refill;
    reset_refilled += seconds;
  }
  if (reset_tokens == 0) return false;
  --reset_tokens;
  return true;
}

void server_session::begin_request(std::int32_t id) {
  if (active >= options.max_active_handlers) {
    // Rapid reset (CVE-2023-44487) keeps handlers running on streams it already reset;
    // beyond the cap new streams are refused, whatever the stream count says.
    ++stats.refused;
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return;
  }
  auto st = std::make_shared<stream_state>();
  st->id = id;
  nghttp2_session_set_stream_user_data(ng, id, st.get());
  streams.emplace(id, std::move(st));
}

void server_session::frame_received(const nghttp2_frame& frame) {
  if (frame.hd.type == NGHTTP2_RST_STREAM) {
    ++stats.resets_received;
    if (!take_reset_token()) {
      // Rapid reset (CVE-2023-44487). We limit it, not nghttp2: its plain GOAWAY lets the
      // rest of this read open streams past the GOAWAY's last-stream-id (RFC 9113 6.8);
      // terminating ignores everything after this frame.
      nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
  }
  auto* st = stream_of(frame.hd.stream_id);
  if (!st) return;
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame.hd.type == NGHTTP2_HEADERS) {
    if (!st->head_done) {
      st->head_done = true;
      if (end_stream) st->in_end = true;
      ++stats.requests;
      if (st->head_too_large) {
        answer_head_too_large(*st);
        return;
      }
      build_fields(st->text, st->spans, st->fields);
      ++active;
      handlers->spawn(run_handler(streams.at(frame.hd.stream_id)));
    } else {
      build_fields(st->trailer_text, st->trailer_spans, st->trailers);
      if (end_stream) st->in_end = true;
      st->readable.set();
    }
  } else if (frame.hd.type == NGHTTP2_DATA && end_stream) {
    st->in_end = true;
    st->readable.set();
  }
}

void server_session::answer_head_too_large(stream_state& st) {
  // No handler runs; the stream ends with the answer (the session forgets it once closed).
  st.handler_done = true;
  st.text.clear();
  st.spans.clear();
  response res(*this, st);
  constexpr std::string_view text = "request header fields too large\n";
  (void)res.set_header("content-type", "text/plain");
  if (submit(st, res, 431, text.size(), true)) {
    st.out.assign(text);
    end_body(st, {});
  }
}

void server_session::stream_closed(stream_state& st) {
  if (st.handler_done || !st.head_done) streams.erase(st.id);
}

result<void> server_session::submit(stream_state& st, response& res, int status,
                                    std::optional<std::uint64_t> length, bool body) {
  if (status < 200 || status > 999) return errc::invalid_argument;
  if (st.closed || st.failure)
    return unexpected(st.failure ? st.failure : make_error_code(error::stream_reset));
  std::array<char, 4> code{};
  std::to_chars(code.data(), code.data() + 3, status);
  std::array<char, 24> length_text{};
  std::size_t length_size = 0;
  if (length)
    length_size = static_cast<std::size_t>(
        std::to_chars(length_text.data(), length_text.data() + 24, *length).ptr - length_text.data());
  std::vector<nghttp2_nv> nva;
  nva.reserve(res.headers_.size() + 4);
  nva.push_back(make_nv(":status", std::string_view(code.data(), 3)));
  if (!options.server_name.empty()) nva.push_back(make_nv("server", options.server_name));
  nva.push_back(make_nv("date", http1::date_now()));
  if (length && status != 204 && status != 304)
    nva.push_back(make_nv("content-length", std::string_view(length_text.data(), length_size)));
  for (const auto& h : res.headers_) nva.push_back(make_nv(h.name, h.value));
  nghttp2_data_provider provider{};
  provider.read_callback = read_body_callback;
  st.has_provider = body;
  int rv = nghttp2_submit_response(ng, st.id, nva.data(), nva.size(), body ? &provider : nullptr);
  if (rv != 0) return errc::invalid_argument;
  wake_writer();
  return {};
}

task<void> server_session::run_handler(std::shared_ptr<stream_state> st) {
  request req(*this, *st);
  req.head_.method = st->pseudo_method;
  req.head_.scheme = st->pseudo_scheme;
  req.head_.authority = st->pseudo_authority;
  req.head_.path = st->pseudo_path;
  req.head_.protocol = st->pseudo_protocol;
  req.head_.fields = st->fields;
  req.head_.stream_id = st->id;
  response res(*this, *st);
  auto handled = co_await handle(req, res);
  if (!st->closed && !st->failure) {
    if (!res.started_) {
      std::string_view text = handled ? "handler sent no response\n" : "handler failed\n";
      res.headers_.clear();
      (void)res.set_header("content-type", "text/plain");
      if (submit(*st, res, 500, text.size(), true)) {
        st->out.assign(text);
        end_body(*st, {});
      }
    } else if (!res.finished_) {
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
      wake_writer();
    }
  }
  st->handler_done = true;
  --active;
  if (st->closed) streams.erase(st->id);
  wake_writer();
}

result<void> server_session::start(const upgraded_request* first) {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return errc::invalid_argument;
  set_common_callbacks(cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(
      cb, [](nghttp2_session*, const nghttp2_frame* frame, void* user) -> int {
        auto& self = *static_cast<server_session*>(user);
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          self.begin_request(frame->hd.stream_id);
        }
        return 0;
      });
  nghttp2_session_callbacks_set_on_frame_send_callback(
      cb, [](nghttp2_session*, const nghttp2_frame* frame, void* user) -> int {
        if (frame->hd.type == NGHTTP2_GOAWAY) {
          static_cast<server_session*>(user)->stats.goaway_code = frame->goaway.error_code;
        }
        return 0;
      });
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, options.max_continuations);
  nghttp2_option_set_stream_reset_rate_limit(opt, UINT64_MAX, 0);  // ours: frame_received
  nghttp2_option_set_max_settings(opt, 32);
  int rv = nghttp2_session_server_new2(&ng, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) return errc::invalid_argument;
  std::array<nghttp2_settings_entry, 4> iv{{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(options.stream_window)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options.max_header_list},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, options.enable_connect_protocol ? 1u : 0u},
  }};
  if (nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv.data(), iv.size()) != 0)
    return errc::invalid_argument;
  if (options.connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, options.connection_window);
  }
  if (first) {
    // The HTTP2-Settings field is base64url without padding (RFC 7540 3.2.1).
    auto payload = base64url_decode(first->settings);
    if (!payload) return make_error_code(error::connection_failed);
    auto st = std::make_shared<stream_state>();
    st->id = 1;
    if (nghttp2_session_upgrade2(ng, payload->data(), payload->size(), first->method == "HEAD", nullptr) !=
        0) {
      return make_error_code(error::connection_failed);
    }
    // A server's upgrade2 ignores its stream_user_data argument.
    nghttp2_session_set_stream_user_data(ng, 1, st.get());
    st->pseudo_method = first->method;
    st->pseudo_path = first->target;
    st->pseudo_authority = first->authority;
    st->pseudo_scheme = "http";
    for (const auto& h : first->headers) {
      auto at = static_cast<std::uint32_t>(st->text.size());
      st->text.append(h.name).append(h.value);
      st->spans.push_back({at, static_cast<std::uint32_t>(h.name.size()),
                           at + static_cast<std::uint32_t>(h.name.size()),
                           static_cast<std::uint32_t>(h.value.size())});
    }
    build_fields(st->text, st->spans, st->fields);
    st->in = first->body;
    st->in_end = true;
    st->body_from_http1 = true;
    st->head_done = true;
    streams.emplace(1, st);
    highest_peer_stream_ = 1;  // the upgrade opened stream 1: it was not skipped
  }
  return {};
}

task<result<serve_stats>> server_session::run(const upgraded_request* first) {
  if (auto started = start(first); !started) {
    (void)co_await io.close(deadline::after(std::chrono::seconds(1)));
    co_return unexpected(started.error());
  }
  scope tasks;
  handlers = &tasks;
  if (first) {
    ++stats.requests;
    ++active;
    tasks.spawn(run_handler(streams.at(1)));
  }
  if (options.stop) {
    auto relay = [](event* stop, session_core* self) -> task<void> {
      (void)co_await stop->wait(deadline::never());
      self->wake_writer();
    };
    tasks.spawn(relay(options.stop, this));
  }
  tasks.spawn(reader(options.idle_timeout));
  auto written = co_await writer(options.stop, options.shutdown_grace);
  for (auto& [id, st] : streams) st->fail(make_error_code(error::going_away));
  tasks.cancel();
  (void)co_await tasks.join();
  handlers = nullptr;
  stats.writes = writes;
  (void)co_await io.close(deadline::after(std::chrono::seconds(1)));
  if (!written) co_return unexpected(written.error());
  if (failure && failure != errc::end_of_stream && stats.requests == 0) co_return unexpected(failure);
  co_return stats;
}

task<result<serve_stats>> serve(any_stream stream, std::vector<std::byte> unread, handler h,
                                server_options options) {
  auto s = std::make_unique<server_session>(std::move(stream), std::move(unread), std::move(h), options);
  co_return co_await s->run(nullptr);
}

task<result<serve_stats>> serve(any_stream stream, handler h, server_options options) {
  co_return co_await serve(std::move(stream), std::vector<std::byte>{}, std::move(h), options);
}

task<result<serve_stats>> serve(any_stream stream, handler h) {
  server_options options;
  co_return co_await serve(std::move(stream), std::vector<std::byte>{}, std::move(h), options);
}

task<result<serve_stats>> serve_upgraded(any_stream stream, std::vector<std::byte> unread,
                                         upgraded_request first, handler h, server_options options) {
  auto s = std::make_unique<server_session>(std::move(stream), std::move(unread), std::move(h), options);
  co_return co_await s->run(&first);
}

// -- request and response --------------------------------------------------------------------

task<result<std::size_t>> request::read_some(mutable_buffer buf, deadline dl) {
  return session_->read_body_some(*stream_, buf, dl);
}

task<result<std::string>> request::read_body(std::size_t max, deadline dl) {
  return session_->read_whole(*stream_, max, dl);
}

const http1::fields& request::trailers() const noexcept { return stream_->trailers; }

result<void> response::set_header(std::string_view name, std::string_view value) {
  if (started_) return errc::invalid_argument;
  auto h = checked_header(name, value);
  if (!h) return unexpected(h.error());
  if (h->name == "content-length") return errc::invalid_argument;
  headers_.push_back(std::move(*h));
  return {};
}

task<result<void>> response::send(int status, std::string_view body, deadline dl) {
  (void)dl;
  if (started_) co_return errc::invalid_argument;
  bool head = stream_->pseudo_method == "HEAD";
  bool has_body = !body.empty() && !head && status != 204 && status != 304;
  auto submitted = session_->submit(*stream_, *this, status, body.size(), has_body);
  if (!submitted) co_return submitted;
  started_ = true;
  finished_ = true;
  if (has_body) {
    stream_->out.append(body);
    session_->end_body(*stream_, {});
  }
  co_return result<void>{};
}

task<result<void>> response::start(int status, std::optional<std::uint64_t> content_length, deadline dl) {
  (void)dl;
  if (started_) co_return errc::invalid_argument;
  bool head = stream_->pseudo_method == "HEAD";
  bool has_body = !head && status != 204 && status != 304;
  auto submitted = session_->submit(*stream_, *this, status, content_length, has_body);
  if (!submitted) co_return submitted;
  started_ = true;
  if (!has_body) finished_ = true;
  co_return result<void>{};
}

task<result<void>> response::write(const_buffers body, deadline dl) {
  if (!started_) co_return errc::invalid_argument;
  if (!stream_->has_provider) co_return result<void>{};  // HEAD: the body is not sent
  if (finished_) co_return errc::invalid_argument;
  co_return co_await session_->queue_body(*stream_, body, session_->options.send_buffer, dl);
}

task<result<void>> response::finish(std::span<const http1::header> trailers, deadline dl) {
  (void)dl;
  if (!started_) co_return errc::invalid_argument;
  if (!stream_->has_provider) {
    finished_ = true;
    co_return result<void>{};
  }
  if (finished_) co_return errc::invalid_argument;
  std::vector<http1::header> checked;
  for (const auto& t : trailers) {
    auto h = checked_header(t.name, t.value);
    if (!h) co_return unexpected(h.error());
    checked.push_back(std::move(*h));
  }
  finished_ = true;
  session_->end_body(*stream_, std::move(checked));
  co_return result<void>{};
}

task<result<void>> response::finish(deadline dl) { return finish(std::span<const http1::header>{}, dl); }

task<result<void>> response::send_file(int fd, std::uint64_t offset, std::uint64_t length, deadline dl) {
  if (!started_ || fd < 0) co_return errc::invalid_argument;
  if (!stream_->has_provider) co_return result<void>{};  // HEAD: the body is not sent
  if (finished_) co_return errc::invalid_argument;
  constexpr std::size_t piece_size = 64 * 1024;
  auto piece = std::make_unique<std::byte[]>(piece_size);
  std::uint64_t sent = 0;
  while (sent < length) {
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(length - sent, piece_size));
    ssize_t n = ::pread(fd, piece.get(), want, static_cast<off_t>(offset + sent));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) co_return unexpected(from_errno(errno));
    if (n == 0) co_return errc::end_of_stream;
    auto queued = co_await session_->queue_body(
        *stream_, const_buffer(piece.get(), static_cast<std::size_t>(n)), session_->options.send_buffer, dl);
    if (!queued) co_return queued;
    sent += static_cast<std::uint64_t>(n);
  }
  co_return result<void>{};
}

// -- extended CONNECT tunnels ----------------------------------------------------------------

namespace {

/// tunnel_row: one HTTP/2 stream's DATA frames as a reliable, ordered byte stream.
inline constexpr capability_row tunnel_row{
    .name = "http2-stream",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::stream,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::net,
                       .topology = topology::p2p,
                       .direction = direction::duplex,
                       .multiplexed = true},
    .passed = {},
};

/// tunnel_stream is the byte stream of an extended CONNECT, on either side. It keeps the
/// session alive (`owner`) for as long as it lives.
class tunnel_stream {
 public:
  static constexpr properties capabilities = transport_properties(tunnel_row);

  tunnel_stream(session_core& s, std::shared_ptr<stream_state> st, std::size_t send_buffer,
                std::shared_ptr<void> owner = {})
      : session_(&s), stream_(std::move(st)), send_buffer_(send_buffer), owner_(std::move(owner)) {}

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) {
    if (!stream_) co_return errc::closed;
    co_return co_await session_->read_body_some(*stream_, buf, dl);
  }
  task<result<void>> write(const_buffers bufs, deadline dl) {
    if (!stream_ || stream_->out_end) co_return errc::closed;
    co_return co_await session_->queue_body(*stream_, bufs, send_buffer_, dl);
  }
  task<result<void>> shutdown_write(deadline) {
    if (!stream_) co_return errc::closed;
    if (!stream_->out_end) session_->end_body(*stream_, {});
    co_return result<void>{};
  }
  task<result<void>> close(deadline) {
    if (!stream_) co_return errc::closed;
    if (!stream_->out_end) session_->end_body(*stream_, {});
    stream_.reset();
    owner_.reset();
    co_return result<void>{};
  }

 private:
  session_core* session_;
  std::shared_ptr<stream_state> stream_;
  std::size_t send_buffer_;
  std::shared_ptr<void> owner_;
};

}  // namespace

task<result<any_stream>> response::tunnel(deadline dl) {
  (void)dl;
  if (started_ || stream_->pseudo_method != "CONNECT" || stream_->pseudo_protocol.empty()) {
    co_return errc::invalid_argument;
  }
  auto submitted = session_->submit(*stream_, *this, 200, std::nullopt, true);
  if (!submitted) co_return unexpected(submitted.error());
  started_ = true;
  finished_ = true;
  auto shared = session_->streams.at(stream_->id);
  co_return any_stream(tunnel_stream(*session_, std::move(shared), session_->options.send_buffer));
}

// -- client ----------------------------------------------------------------------------------

/// client_settings are what a client announces: no push, its window and header limit.
std::array<nghttp2_settings_entry, 3> client_settings(const client_options& options) {
  return {{
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(options.stream_window)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options.max_header_list},
  }};
}

class client_session final : public session_core {
 public:
  client_session(any_stream s, const client_options& o)
      : session_core(std::move(s), {}, o.write_timeout), options(o) {
    max_header_list = o.max_header_list;
    max_fields = 1000;
    max_body = o.max_body;
  }

  /// start makes the nghttp2 session: a fresh one, or (upgrade_settings given) one that
  /// continues an h2c Upgrade with `first` as stream 1.
  result<void> start(const std::vector<std::uint8_t>* upgrade_settings = nullptr,
                     const std::shared_ptr<stream_state>& first = {}, bool head_request = false);
  void start_pump() {
    tasks.spawn(reader(std::chrono::milliseconds(0)));
    tasks.spawn(pump());
  }
  task<void> pump();
  void stream_closed(stream_state& st) override { streams.erase(st.id); }
  void frame_received(const nghttp2_frame& frame) override;

  client_options options;
  scope tasks;
  bool started = false;
  bool pump_done = false;
  event pump_ended;
};

void client_session::frame_received(const nghttp2_frame& frame) {
  if (frame.hd.type == NGHTTP2_GOAWAY) {
    for (auto& [id, st] : streams) {
      if (id > frame.goaway.last_stream_id) st->fail(make_error_code(error::going_away));
    }
    return;
  }
  auto* st = stream_of(frame.hd.stream_id);
  if (!st) return;
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame.hd.type == NGHTTP2_HEADERS) {
    if (!st->head_done) {
      if (st->status >= 100 && st->status < 200) {
        // An interim response (100, 103): its fields are not the response's.
        st->status = 0;
        st->text.clear();
        st->spans.clear();
        return;
      }
      st->head_done = true;
      build_fields(st->text, st->spans, st->fields);
      if (end_stream) st->in_end = true;
      st->head_ready.set();
      st->readable.set();
    } else {
      build_fields(st->trailer_text, st->trailer_spans, st->trailers);
      if (end_stream) st->in_end = true;
      st->readable.set();
    }
  } else if (frame.hd.type == NGHTTP2_DATA && end_stream) {
    st->in_end = true;
    st->readable.set();
  }
}

result<void> client_session::start(const std::vector<std::uint8_t>* upgrade_settings,
                                   const std::shared_ptr<stream_state>& first, bool head_request) {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return errc::invalid_argument;
  set_common_callbacks(cb);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  int rv = nghttp2_session_client_new2(&ng, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) return errc::invalid_argument;
  if (upgrade_settings) {
    // h2c: the settings went in the HTTP2-Settings field; nghttp2 submits them itself,
    // and stream 1, the request sent as HTTP/1.1, is half-closed (local).
    if (nghttp2_session_upgrade2(ng, upgrade_settings->data(), upgrade_settings->size(), head_request ? 1 : 0,
                                 first.get()) != 0) {
      return make_error_code(error::connection_failed);
    }
    first->id = 1;
    streams.emplace(1, first);
  } else {
    auto iv = client_settings(options);
    if (nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv.data(), iv.size()) != 0)
      return errc::invalid_argument;
  }
  if (options.connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, options.connection_window);
  }
  started = true;
  return {};
}

task<void> client_session::pump() {
  auto written = co_await writer(nullptr, std::chrono::milliseconds(0));
  if (!written && !failure) failure = written.error();
  if (!failure) failure = make_error_code(error::going_away);
  for (auto& [id, st] : streams) st->fail(failure);
  pump_done = true;
  pump_ended.set();
}

struct client::impl {
  std::shared_ptr<client_session> session;
};

client::client(any_stream stream) : client(std::move(stream), client_options{}) {}
client::client(any_stream stream, client_options options) : impl_(std::make_shared<impl>()) {
  if (options.scheme.empty()) options.scheme = stream.runtime_capabilities().secure ? "https" : "http";
  impl_->session = std::make_shared<client_session>(std::move(stream), options);
}
client::client(client&&) noexcept = default;

void client::set_host(std::string host) {
  if (impl_) impl_->session->options.authority = std::move(host);
}
client& client::operator=(client&&) noexcept = default;
client::~client() = default;

task<result<client_response>> client::request(const outgoing& r, deadline dl) {
  if (!impl_) co_return errc::closed;
  auto& s = *impl_->session;
  if (!s.started) {
    if (auto started = s.start(); !started) co_return unexpected(started.error());
    s.start_pump();
  }
  if (s.pump_done || s.failure)
    co_return unexpected(s.failure ? s.failure : make_error_code(error::going_away));
  std::vector<http1::header> headers;
  std::string authority = s.options.authority;
  for (const auto& h : r.headers) {
    auto checked = checked_header(h.name, h.value);
    if (!checked) co_return unexpected(checked.error());
    if (checked->name == "host") {
      authority = checked->value;
      continue;
    }
    headers.push_back(std::move(*checked));
  }
  // Without an authority (set_host, client_options::authority or a Host header) servers
  // refuse the request; refusing it here says why.
  if (authority.empty()) co_return unexpected(make_error_code(error::no_authority));
  if (r.method.empty() || r.target.empty()) co_return errc::invalid_argument;
  bool tunnel = !r.protocol.empty();
  std::vector<nghttp2_nv> nva;
  nva.push_back(make_nv(":method", tunnel ? std::string_view("CONNECT") : std::string_view(r.method)));
  if (tunnel) nva.push_back(make_nv(":protocol", r.protocol));
  nva.push_back(make_nv(":scheme", s.options.scheme));
  nva.push_back(make_nv(":authority", authority));
  nva.push_back(make_nv(":path", r.target));
  std::string length = std::to_string(r.body.size());
  if (!r.body.empty()) nva.push_back(make_nv("content-length", length));
  for (const auto& h : headers) nva.push_back(make_nv(h.name, h.value));
  auto st = std::make_shared<stream_state>();
  nghttp2_data_provider provider{};
  provider.read_callback = session_core::read_body_callback;
  if (!r.body.empty() || tunnel) {
    st->out = r.body;
    st->out_end = !tunnel;  // a tunnel's DATA goes on until it is closed
    st->has_provider = true;
  }
  auto id = nghttp2_submit_request(s.ng, nullptr, nva.data(), nva.size(),
                                   st->has_provider ? &provider : nullptr, st.get());
  if (id < 0)
    co_return unexpected(make_error_code(
        id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? error::going_away : error::connection_failed));
  st->id = id;
  s.streams.emplace(id, st);
  s.wake_writer();
  while (!st->head_done && !st->failure) {
    st->head_ready.reset();
    auto waited = co_await st->head_ready.wait(dl);
    if (!waited) {
      if (!st->closed) nghttp2_submit_rst_stream(s.ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
      s.wake_writer();
      co_return unexpected(waited.error());
    }
  }
  if (!st->head_done) co_return unexpected(st->failure);
  if (st->status < 200) co_return unexpected(make_error_code(error::bad_response));
  client_response out;
  out.stream_ = st;
  out.session_ = impl_->session;
  co_return out;
}

namespace {

std::string base64url(std::span<const std::uint8_t> bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t bits = 0;
  int count = 0;
  for (auto b : bytes) {
    bits = (bits << 8) | b;
    count += 8;
    while (count >= 6) {
      count -= 6;
      out += alphabet[(bits >> count) & 63];
    }
  }
  if (count > 0) out += alphabet[(bits << (6 - count)) & 63];
  return out;
}

}  // namespace

task<result<std::pair<client, client_response>>> client::upgrade(any_stream stream, const outgoing& first,
                                                                 client_options options, deadline dl) {
  if (!first.protocol.empty() || first.method == "CONNECT") co_return errc::invalid_argument;
  auto iv = client_settings(options);
  std::vector<std::uint8_t> payload(iv.size() * 6);
  auto packed = nghttp2_pack_settings_payload(payload.data(), payload.size(), iv.data(), iv.size());
  if (packed < 0) co_return errc::invalid_argument;
  payload.resize(static_cast<std::size_t>(packed));
  http1::client h1(std::move(stream));
  h1.set_host(options.authority);
  http1::client::outgoing offer;
  offer.method = first.method;
  offer.target = first.target;
  offer.headers = first.headers;
  offer.headers.push_back({"Connection", "Upgrade, HTTP2-Settings"});
  offer.headers.push_back({"Upgrade", "h2c"});
  offer.headers.push_back({"HTTP2-Settings", base64url(payload)});
  offer.body = first.body;
  auto head = co_await h1.send(offer, dl);
  if (!head) co_return unexpected(head.error());
  if (head->status != 101 || !head->fields.has_token("upgrade", "h2c")) {
    // The server answered in HTTP/1.1: it does not switch. That answer is dropped.
    (void)co_await h1.close(dl);
    co_return errc::not_supported;
  }
  auto taken = h1.take_stream();
  if (!taken) co_return unexpected(taken.error());
  client c(std::move(taken->lower), options);
  auto& s = *c.impl_->session;
  s.unread = std::move(taken->unread);
  auto st = std::make_shared<stream_state>();
  st->pseudo_method = first.method;
  if (auto started = s.start(&payload, st, first.method == "HEAD"); !started)
    co_return unexpected(started.error());
  s.start_pump();
  while (!st->head_done && !st->failure) {
    st->head_ready.reset();
    auto waited = co_await st->head_ready.wait(dl);
    if (!waited) co_return unexpected(waited.error());
  }
  if (!st->head_done) co_return unexpected(st->failure);
  if (st->status < 200) co_return unexpected(make_error_code(error::bad_response));
  client_response r;
  r.stream_ = st;
  r.session_ = c.impl_->session;
  co_return std::pair<client, client_response>(std::move(c), std::move(r));
}

task<result<void>> client::close(deadline dl) {
  if (!impl_) co_return errc::closed;
  auto session = impl_->session;
  impl_.reset();
  auto& s = *session;
  if (s.started && !s.pump_done) {
    nghttp2_session_terminate_session(s.ng, NGHTTP2_NO_ERROR);
    s.wake_writer();
    (void)co_await s.pump_ended.wait(dl);
  }
  s.tasks.cancel();
  (void)co_await s.tasks.join(deadline::after(std::chrono::seconds(1)));
  co_return co_await s.io.close(dl);
}

client_response::client_response() = default;
client_response::client_response(client_response&&) noexcept = default;
client_response& client_response::operator=(client_response&&) noexcept = default;
client_response::~client_response() = default;

int client_response::status() const noexcept { return stream_ ? stream_->status : 0; }

result<any_stream> client_response::tunnel() {
  if (!stream_ || !stream_->has_provider || stream_->out_end || stream_->status < 200 ||
      stream_->status > 299) {
    return errc::invalid_argument;
  }
  auto* session = static_cast<client_session*>(session_.get());
  auto out = any_stream(tunnel_stream(*session, std::move(stream_), 256 * 1024, std::move(session_)));
  return out;
}

const http1::fields& client_response::fields() const noexcept {
  static const http1::fields none;
  return stream_ ? stream_->fields : none;
}

const http1::fields& client_response::trailers() const noexcept {
  static const http1::fields none;
  return stream_ ? stream_->trailers : none;
}

task<result<std::size_t>> client_response::read_some(mutable_buffer buf, deadline dl) {
  if (!stream_) co_return errc::closed;
  co_return co_await static_cast<client_session*>(session_.get())->read_body_some(*stream_, buf, dl);
}

task<result<std::string>> client_response::read_body(std::size_t max, deadline dl) {
  if (!stream_) co_return errc::closed;
  co_return co_await static_cast<client_session*>(session_.get())->read_whole(*stream_, max, dl);
}

}  // namespace strata::http2
