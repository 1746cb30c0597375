// demux (pipeline/demux.hpp): the sniffer (a sans-I/O state machine over the first
// bytes), the bounded ClientHello parser, replay, routes and the listener that drives them.
#include "strata/pipeline/demux.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>

#include "../core/ascii.hpp"
#include "strata/pipeline/bridge.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/scope.hpp"

namespace strata::demux {
namespace {

class demux_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "demux"; }
  std::string message(int value) const override {
    switch (static_cast<error>(value)) {
      case error::sniff_timeout:
        return "demux: the first bytes did not come before the sniff deadline";
      case error::sniff_limit:
        return "demux: no protocol recognised within the sniff limit";
      case error::bad_client_hello:
        return "demux: malformed TLS ClientHello";
      case error::ended_early:
        return "demux: the client ended before its protocol was recognised";
      case error::no_route:
        return "demux: no route takes the connection";
    }
    return "demux error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    switch (static_cast<error>(value)) {
      case error::sniff_timeout:
        return errc::timed_out;
      case error::sniff_limit:
        return errc::message_too_large;
      case error::bad_client_hello:
        return errc::protocol_error;
      case error::ended_early:
        return errc::end_of_stream;
      case error::no_route:
        return errc::not_supported;
    }
    return errc{};
  }
};

constexpr std::string_view h2_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::uint8_t tls_handshake = 22;
constexpr std::uint8_t client_hello = 1;
constexpr std::size_t tls_record_max = 16384 + 256;  // a TLSPlaintext fragment, with slack
constexpr std::uint16_t ext_server_name = 0;
constexpr std::uint16_t ext_alpn = 16;

std::uint8_t at(const_buffer b, std::size_t i) noexcept { return static_cast<std::uint8_t>(b[i]); }

/// reader reads big-endian integers and slices from a bounded buffer; any read past the
/// end sets `bad` and returns zeros / empty slices.
struct reader {
  const_buffer b;
  std::size_t pos = 0;
  bool bad = false;
  std::size_t left() const noexcept { return bad ? 0 : b.size() - pos; }
  std::uint32_t uint(std::size_t bytes) noexcept {
    if (left() < bytes) {
      bad = true;
      return 0;
    }
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) v = (v << 8) | at(b, pos + i);
    pos += bytes;
    return v;
  }
  const_buffer slice(std::size_t n) noexcept {
    if (left() < n) {
      bad = true;
      return {};
    }
    auto s = b.subspan(pos, n);
    pos += n;
    return s;
  }
};

using strata::detail::ascii_lower;
using strata::detail::iequals;

std::string lowered(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = ascii_lower(c);
  return out;
}

/// name_matches: exact (case-insensitive) or "*.suffix" for names with at least one
/// label before ".suffix".
bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    auto suffix = pattern.substr(1);  // ".example.org"
    return name.size() > suffix.size() && iequals(name.substr(name.size() - suffix.size()), suffix);
  }
  return iequals(pattern, name);
}

bool is_token_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

/// host_name_ok: what SNI and Host may carry (no controls, no space, not empty).
bool host_name_ok(std::string_view s) noexcept {
  if (s.empty() || s.size() > 255) return false;
  for (char c : s)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  return true;
}

/// parse_head reads a complete HTTP/1 request head into `out`; false when it is not
/// one (the sniffer then says unknown).
bool parse_head(std::string_view head, sniffed& out) {
  auto eol = head.find("\r\n");
  auto line = head.substr(0, eol);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0) return false;
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (version.substr(0, 5) != "HTTP/" || target.empty()) return false;
  for (char c : method)
    if (!is_token_char(c)) return false;
  out.method = std::string(method);
  out.target = std::string(target);
  int hosts = 0;
  std::string_view host;
  auto rest = head.substr(eol + 2);
  while (!rest.empty()) {
    auto end = rest.find("\r\n");
    auto field = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 2);
    auto colon = field.find(':');
    if (colon == std::string_view::npos) continue;
    if (!iequals(field.substr(0, colon), "host")) continue;
    auto value = field.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    ++hosts;
    host = value;
  }
  // Two Host fields are a request to refuse (RFC 9112 3.2): route it by none.
  if (hosts == 1) {
    if (!host.empty() && host.front() == '[') {
      auto close = host.find(']');
      host = close == std::string_view::npos ? std::string_view{} : host.substr(0, close + 1);
    } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
      host = host.substr(0, colon);
    }
    if (host_name_ok(host)) out.host = lowered(host);
  }
  out.kind = kind::http1;
  return true;
}

}  // namespace

const std::error_category& category() noexcept {
  static const demux_error_category c;
  return c;
}

std::string_view kind_name(kind k) noexcept {
  switch (k) {
    case kind::tls:
      return "tls";
    case kind::http2:
      return "http2";
    case kind::http1:
      return "http1";
    case kind::unknown:
      break;
  }
  return "unknown";
}

// -- the ClientHello ---------------------------------------------------------------------

result<void> parse_client_hello(const_buffer body, sniffed& out) {
  const auto bad = make_error_code(error::bad_client_hello);
  reader r{body};
  (void)r.uint(2);    // legacy_version
  (void)r.slice(32);  // random
  auto sid = r.uint(1);
  if (sid > 32) return unexpected(bad);
  (void)r.slice(sid);
  auto suites = r.uint(2);
  if (suites < 2 || suites % 2 != 0) return unexpected(bad);
  (void)r.slice(suites);
  auto compression = r.uint(1);
  if (compression < 1) return unexpected(bad);
  (void)r.slice(compression);
  if (r.bad) return unexpected(bad);
  if (r.left() == 0) return {};  // no extensions (SSL 3 / TLS 1.0 style)
  auto ext_total = r.uint(2);
  if (r.bad || ext_total != r.left()) return unexpected(bad);
  bool seen_sni = false;
  bool seen_alpn = false;
  while (r.left() > 0) {
    auto type = r.uint(2);
    auto len = r.uint(2);
    auto data = r.slice(len);
    if (r.bad) return unexpected(bad);
    if (type == ext_server_name) {
      if (seen_sni) return unexpected(bad);
      seen_sni = true;
      reader e{data};
      auto list = e.uint(2);
      if (e.bad || list != e.left() || list == 0) return unexpected(bad);
      while (e.left() > 0) {
        auto name_type = e.uint(1);
        auto name_len = e.uint(2);
        auto name = e.slice(name_len);
        if (e.bad) return unexpected(bad);
        if (name_type != 0 || !out.sni.empty()) continue;  // the first host_name counts
        auto text = as_text(name);
        if (!host_name_ok(text)) return unexpected(bad);
        out.sni = lowered(text);
      }
    } else if (type == ext_alpn) {
      if (seen_alpn) return unexpected(bad);
      seen_alpn = true;
      reader e{data};
      auto list = e.uint(2);
      if (e.bad || list != e.left() || list < 2) return unexpected(bad);
      while (e.left() > 0) {
        auto plen = e.uint(1);
        auto proto = e.slice(plen);
        if (e.bad || plen == 0) return unexpected(bad);
        if (out.alpn.size() >= max_alpn_protocols) return unexpected(bad);
        out.alpn.emplace_back(as_text(proto));
      }
    }
  }
  return {};
}

// -- the sniffer -------------------------------------------------------------------------

result<sniffer::status> sniffer::feed(const_buffer prefix) {
  if (failed_) return unexpected(failed_);
  if (prefix.empty() || prefix.size() < need_) {
    if (prefix.size() >= max_) return unexpected(failed_ = make_error_code(error::sniff_limit));
    return status::need_more;
  }
  auto fail = [&](error e) -> result<status> { return unexpected(failed_ = make_error_code(e)); };
  result<status> r = status::need_more;
  if (at(prefix, 0) == tls_handshake) {
    r = feed_tls(prefix);
  } else {
    auto seen = std::min(prefix.size(), h2_preface.size());
    if (std::memcmp(prefix.data(), h2_preface.data(), seen) == 0) {
      if (prefix.size() >= h2_preface.size()) {
        out_.kind = kind::http2;
        return status::done;
      }
      need_ = prefix.size() + 1;  // a later byte may still tell it apart
      r = status::need_more;
    } else if (is_token_char(static_cast<char>(at(prefix, 0))) && at(prefix, 0) >= 'A' &&
               at(prefix, 0) <= 'Z') {
      r = feed_http1(prefix);
    } else {
      out_.kind = kind::unknown;
      return status::done;
    }
  }
  if (!r) return r;
  if (*r == status::need_more && (prefix.size() >= max_ || need_ > max_)) return fail(error::sniff_limit);
  return r;
}

result<sniffer::status> sniffer::feed_tls(const_buffer prefix) {
  // Walk the records in the prefix; the handshake message may span several of them.
  // (Re-walked on each call that brings a whole new record; at most max_ bytes.)
  std::vector<std::byte> hs;
  std::size_t off = 0;
  while (off + 5 <= prefix.size()) {
    if (at(prefix, off) != tls_handshake || at(prefix, off + 1) != 3)
      return unexpected(failed_ = make_error_code(error::bad_client_hello));
    std::size_t len = (std::size_t(at(prefix, off + 3)) << 8) | at(prefix, off + 4);
    if (len == 0 || len > tls_record_max)
      return unexpected(failed_ = make_error_code(error::bad_client_hello));
    if (off + 5 + len > prefix.size()) {
      need_ = off + 5 + len;
      return status::need_more;
    }
    auto payload = prefix.subspan(off + 5, len);
    hs.insert(hs.end(), payload.begin(), payload.end());
    off += 5 + len;
    if (hs.size() >= 4) {
      if (static_cast<std::uint8_t>(hs[0]) != client_hello)
        return unexpected(failed_ = make_error_code(error::bad_client_hello));
      std::size_t body = (std::size_t(hs[1]) << 16) | (std::size_t(hs[2]) << 8) | std::size_t(hs[3]);
      if (4 + body > max_) return unexpected(failed_ = make_error_code(error::sniff_limit));
      if (hs.size() >= 4 + body) {
        sniffed got;
        got.kind = kind::tls;
        auto parsed = parse_client_hello(const_buffer(hs.data() + 4, body), got);
        if (!parsed) return unexpected(failed_ = parsed.error());
        out_ = std::move(got);
        return status::done;
      }
    }
  }
  need_ = off + 5;
  return status::need_more;
}

result<sniffer::status> sniffer::feed_http1(const_buffer prefix) {
  auto text = as_text(prefix);
  // The method must be a token up to its space: otherwise this is some other protocol.
  auto sp = text.find(' ');
  auto method_end = sp == std::string_view::npos ? text.size() : sp;
  for (std::size_t i = 0; i < method_end; ++i) {
    if (!is_token_char(text[i])) {
      out_.kind = kind::unknown;
      return status::done;
    }
  }
  if (method_end > 32) {  // no method is that long (decided the same on any prefix)
    out_.kind = kind::unknown;
    return status::done;
  }
  // Once the first line is complete it must be a request line ("... HTTP/x.y").
  if (auto nl = text.find('\n'); nl != std::string_view::npos) {
    auto line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto version = line.size() >= 8 ? line.substr(line.size() - 8) : std::string_view{};
    if (version.substr(0, 5) != "HTTP/" || line.find(' ') == std::string_view::npos) {
      out_.kind = kind::unknown;
      return status::done;
    }
  }
  auto from = scanned_ > 3 ? scanned_ - 3 : 0;
  auto end = text.find("\r\n\r\n", from);
  if (end == std::string_view::npos) {
    scanned_ = text.size();
    need_ = text.size() + 1;
    return status::need_more;
  }
  sniffed got;
  if (!parse_head(text.substr(0, end + 2), got)) {
    out_.kind = kind::unknown;
    return status::done;
  }
  out_ = std::move(got);
  return status::done;
}

result<sniffer::status> sniffer::finish(const_buffer prefix) {
  if (failed_) return unexpected(failed_);
  if (prefix.empty()) return unexpected(failed_ = make_error_code(error::ended_early));
  // What is there decides: an incomplete ClientHello or request head is not one.
  out_ = sniffed{};
  out_.kind = kind::unknown;
  return status::done;
}

// -- replay ------------------------------------------------------------------------------

namespace {

class replayed {
 public:
  replayed(any_stream s, std::vector<std::byte> first) : s_(std::move(s)), first_(std::move(first)) {}

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) {
    if (pos_ < first_.size()) return from_first(buf);
    return s_.read_some(buf, dl);
  }
  task<result<void>> write(const_buffers bufs, deadline dl) { return s_.write(bufs, dl); }
  task<result<void>> shutdown_write(deadline dl) { return s_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return s_.close(dl); }
  const any_stream& next_layer() const noexcept { return s_; }
  properties runtime_capabilities() const { return s_.runtime_capabilities(); }

 private:
  task<result<std::size_t>> from_first(mutable_buffer buf) {
    auto n = std::min(buf.size(), first_.size() - pos_);
    if (n > 0) std::memcpy(buf.data(), first_.data() + pos_, n);
    pos_ += n;
    if (pos_ == first_.size()) {
      first_.clear();
      first_.shrink_to_fit();
      pos_ = 0;
    }
    co_return n;
  }
  any_stream s_;
  std::vector<std::byte> first_;
  std::size_t pos_ = 0;
};

}  // namespace

any_stream replay(any_stream s, std::vector<std::byte> first) {
  if (first.empty()) return s;
  return any_stream(replayed(std::move(s), std::move(first)));
}

// -- routes ------------------------------------------------------------------------------

bool matches(const route& r, const sniffed& info, const_buffer bytes) {
  if (r.kind && *r.kind != info.kind) return false;
  if (!r.sni.empty() && (info.kind != kind::tls || !name_matches(r.sni, info.sni))) return false;
  if (!r.alpn.empty() && std::find(info.alpn.begin(), info.alpn.end(), r.alpn) == info.alpn.end())
    return false;
  if (!r.host.empty() && (info.kind != kind::http1 || !name_matches(r.host, info.host))) return false;
  if (r.predicate && !r.predicate(info, bytes)) return false;
  return true;
}

handler to_pipeline(pipeline target, std::chrono::milliseconds connect_timeout) {
  auto shared = std::make_shared<const pipeline>(std::move(target));
  return [shared, connect_timeout](connection c) -> task<void> {
    auto to = co_await shared->connect(deadline::after(connect_timeout));
    if (!to || !to->is_stream() || !c.conn.is_stream()) {
      reset_tcp(c.conn);
      (void)co_await c.conn.close(deadline::after(std::chrono::milliseconds(100)));
      if (to) (void)co_await to->close(deadline::after(std::chrono::milliseconds(100)));
      co_return;
    }
    // The sniffed bytes go first; then the raw connections are bridged (and spliced
    // where both are bare descriptors).
    auto sent = co_await to->stream().write(const_buffer(c.sniffed_bytes.data(), c.sniffed_bytes.size()),
                                            deadline::after(connect_timeout));
    if (!sent) {
      reset_tcp(c.conn);
      (void)co_await c.conn.close(deadline::after(std::chrono::milliseconds(100)));
      (void)co_await to->close(deadline::after(std::chrono::milliseconds(100)));
      co_return;
    }
    c.sniffed_bytes = {};
    bridge_options b;
    b.reset_on_failure = true;
    (void)co_await bridge(c.conn, *to, b);
  };
}

// -- sniff and the listener --------------------------------------------------------------

task<result<connection>> sniff(any_connection c, std::size_t max_sniff, deadline dl) {
  // A connection that fails its sniff is reset: it was never served.
  auto failed = [&c](std::error_code ec) -> task<result<connection>> {
    reset_tcp(c);
    (void)co_await c.close(deadline::after(std::chrono::milliseconds(100)));
    co_return unexpected(ec);
  };
  if (!c.is_stream()) co_return co_await failed(make_error_code(error::no_route));
  connection out;
  sniffer s(max_sniff);
  auto& stream = c.stream();
  std::vector<std::byte> got;
  std::array<std::byte, 4096> buf;
  for (;;) {
    auto room = std::min(buf.size(), max_sniff - std::min(max_sniff, got.size()));
    if (room == 0) co_return co_await failed(make_error_code(error::sniff_limit));
    auto n = co_await stream.read_some(mutable_buffer(buf.data(), room), dl);
    result<sniffer::status> st = sniffer::status::need_more;
    if (!n) {
      if (n.error() == errc::timed_out) co_return co_await failed(make_error_code(error::sniff_timeout));
      if (n.error() != errc::end_of_stream) co_return co_await failed(n.error());
      st = s.finish(const_buffer(got.data(), got.size()));
    } else {
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
      st = s.feed(const_buffer(got.data(), got.size()));
    }
    if (!st) co_return co_await failed(st.error());
    if (*st == sniffer::status::done) break;
  }
  out.info = s.result_value();
  auto peer = c.peer_address();
  out.peer = peer ? peer->to_string() : std::string();
  out.sniffed_bytes = std::move(got);
  out.conn = std::move(c);
  co_return out;
}

struct listener::state {
  state(any_listener l, options o) : lower(std::move(l)), opts(std::move(o)) {}
  any_listener lower;
  options opts;
  std::vector<std::pair<route, handler>> routes;
  demux::stats counts;
  std::size_t pending = 0;
  event room;  // a sniff ended below max_pending

  task<void> one(any_connection c, scope& s);
};

task<void> listener::state::one(any_connection c, scope& s) {
  struct pending_count {
    state& st;
    ~pending_count() {
      --st.pending;
      st.room.set();
    }
  } counted{*this};
  ++pending;
  auto peer = c.peer_address();
  auto sniffed = co_await sniff(std::move(c), opts.max_sniff, deadline::after(opts.sniff_timeout));
  if (!sniffed) {
    auto ec = sniffed.error();
    if (ec == error::sniff_timeout) {
      ++counts.timed_out;
    } else if (ec == error::sniff_limit) {
      ++counts.too_long;
    } else if (ec == error::bad_client_hello) {
      ++counts.malformed;
    } else if (ec != errc::operation_canceled) {
      ++counts.ended;
    }
    if (opts.log && ec != errc::operation_canceled)
      opts.log((peer ? peer->to_string() : std::string("?")) + ": " + ec.message());
    co_return;  // the connection went with the failed sniff (closed when destroyed)
  }
  for (auto& [r, h] : routes) {
    if (!matches(r, sniffed->info,
                 const_buffer(sniffed->sniffed_bytes.data(), sniffed->sniffed_bytes.size())))
      continue;
    ++counts.routed;
    s.spawn(h(std::move(*sniffed)));
    co_return;
  }
  ++counts.no_route;
  if (opts.log) opts.log(sniffed->peer + ": " + make_error_code(error::no_route).message());
  reset_tcp(sniffed->conn);
  (void)co_await sniffed->conn.close(deadline::after(std::chrono::milliseconds(100)));
}

listener::listener(any_listener lower, options o)
    : state_(std::make_unique<state>(std::move(lower), std::move(o))) {}
listener::~listener() = default;

void listener::add(route r, handler h) { state_->routes.emplace_back(std::move(r), std::move(h)); }

const demux::stats& listener::counters() const noexcept { return state_->counts; }
result<address> listener::local_address() const { return state_->lower.local_address(); }

task<result<void>> listener::serve() {
  auto& st = *state_;
  std::error_code failure;
  co_await with_scope([&](scope& s) -> task<void> {
    for (;;) {
      while (st.pending >= st.opts.max_pending) {
        st.room.reset();
        if (!co_await st.room.wait(deadline::never())) co_return;
      }
      auto conn = co_await st.lower.accept(deadline::never());
      if (!conn) {
        if (conn.error() != errc::operation_canceled) failure = conn.error();
        s.cancel();
        co_return;
      }
      ++st.counts.accepted;
      s.spawn(st.one(std::move(*conn), s));
    }
  });
  if (failure) co_return unexpected(failure);
  co_return result<void>{};
}

}  // namespace strata::demux
