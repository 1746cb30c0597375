// websocket handshake: the key and accept values, permessage-deflate negotiation, and
// the opening handshakes of both sides over http1 (include/strata/app/websocket.hpp).
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "../core/ascii.hpp"
#include "strata/app/websocket.hpp"

namespace strata::websocket {
namespace {

constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

using strata::detail::iequals;
using strata::detail::trim_ows;

bool is_tchar(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) noexcept { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

std::string base64(const_buffer bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  auto n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool is_base64_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/// list_items calls `f` with each trimmed, non-empty element of a comma-separated list;
/// a quoted-string keeps its commas.
template <class F>
void list_items(std::string_view list, F&& f) {
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= list.size(); ++i) {
    if (i < list.size()) {
      char c = list[i];
      if (quoted && c == '\\') {
        ++i;
        continue;
      }
      if (c == '"') quoted = !quoted;
      if (quoted || c != ',') continue;
    }
    auto item = trim_ows(list.substr(start, i - start));
    if (!item.empty()) f(item);
    start = i + 1;
  }
}

/// extension is one element of Sec-WebSocket-Extensions: a name and its parameters.
struct extension {
  std::string_view name;
  struct param {
    std::string_view name;
    std::optional<std::string> value;
  };
  std::vector<param> params;
  bool malformed = false;
};

/// parse_extension reads `name; p1; p2=v; p3="v"` (RFC 6455 9.1).
extension parse_extension(std::string_view item) {
  extension e;
  bool first = true;
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= item.size(); ++i) {
    if (i < item.size()) {
      char c = item[i];
      if (quoted && c == '\\') {
        ++i;
        continue;
      }
      if (c == '"') quoted = !quoted;
      if (quoted || c != ';') continue;
    }
    auto part = trim_ows(item.substr(start, i - start));
    start = i + 1;
    if (first) {
      first = false;
      e.name = part;
      if (!is_token(part)) e.malformed = true;
      continue;
    }
    auto eq = part.find('=');
    extension::param p;
    p.name = trim_ows(part.substr(0, eq));
    if (!is_token(p.name)) e.malformed = true;
    if (eq != std::string_view::npos) {
      auto v = trim_ows(part.substr(eq + 1));
      std::string value;
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
        for (std::size_t j = 1; j + 1 < v.size(); ++j) {
          if (v[j] == '\\' && j + 2 < v.size()) ++j;
          value += v[j];
        }
      } else {
        value.assign(v);
      }
      if (!is_token(value)) e.malformed = true;
      p.value = std::move(value);
    }
    e.params.push_back(std::move(p));
  }
  if (quoted) e.malformed = true;
  return e;
}

/// window_bits reads a window size: 8..15, digits without a leading zero.
std::optional<int> window_bits(const std::optional<std::string>& v) {
  if (!v || v->empty() || v->size() > 2 || (*v)[0] == '0') return std::nullopt;
  int n = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n < 8 || n > 15) return std::nullopt;
  return n;
}

/// deflate_request is a permessage-deflate element's parameters, checked.
struct deflate_request {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::optional<int> server_max_window_bits;
  bool client_max_window_bits = false;  ///< present (with or without a value)
  std::optional<int> client_max_window_bits_value;
};

/// read_deflate checks the parameters of a permessage-deflate element: known ones only,
/// each once, with valid values (RFC 7692 7.1). `client_bits_value_required` holds for a
/// server's response, where client_max_window_bits needs a value.
std::optional<deflate_request> read_deflate(const extension& e, bool response) {
  if (e.malformed) return std::nullopt;
  deflate_request r;
  std::array<bool, 4> seen{};
  for (const auto& p : e.params) {
    int which = iequals(p.name, "server_no_context_takeover")   ? 0
                : iequals(p.name, "client_no_context_takeover") ? 1
                : iequals(p.name, "server_max_window_bits")     ? 2
                : iequals(p.name, "client_max_window_bits")     ? 3
                                                                : -1;
    if (which < 0 || seen[static_cast<std::size_t>(which)]) return std::nullopt;
    seen[static_cast<std::size_t>(which)] = true;
    switch (which) {
      case 0:
        if (p.value) return std::nullopt;
        r.server_no_context_takeover = true;
        break;
      case 1:
        if (p.value) return std::nullopt;
        r.client_no_context_takeover = true;
        break;
      case 2:
        r.server_max_window_bits = window_bits(p.value);
        if (!r.server_max_window_bits) return std::nullopt;
        break;
      default:
        r.client_max_window_bits = true;
        if (p.value || response) {
          r.client_max_window_bits_value = window_bits(p.value);
          if (!r.client_max_window_bits_value) return std::nullopt;
        }
        break;
    }
  }
  return r;
}

/// field_values collects the values of every field named `name`, in order.
std::vector<std::string_view> field_values(const http1::fields& f, std::string_view name) {
  std::vector<std::string_view> out;
  for (const auto& item : f.all()) {
    if (iequals(item.name, name)) out.push_back(item.value);
  }
  return out;
}

/// choose_protocol is the first of `ours` the client offered (Sec-WebSocket-Protocol).
std::string choose_protocol(const http1::fields& f, const std::vector<std::string>& ours) {
  std::vector<std::string_view> offered;
  for (auto v : field_values(f, "sec-websocket-protocol")) {
    list_items(v, [&](std::string_view item) { offered.push_back(item); });
  }
  for (const auto& p : ours) {
    if (std::find(offered.begin(), offered.end(), p) != offered.end()) return p;
  }
  return {};
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

}  // namespace

// -- keys ------------------------------------------------------------------------------------

std::string make_key() {
  std::array<std::byte, 16> nonce{};
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) != 1) {
    std::abort();  // no CSPRNG: no safe key
  }
  return base64(nonce);
}

std::string accept_key(std::string_view key) {
  std::string text;
  text.reserve(key.size() + guid.size());
  text.append(key).append(guid);
  std::array<unsigned char, SHA_DIGEST_LENGTH> digest{};
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return base64(std::as_bytes(std::span(digest)));
}

result<std::string_view> check_request(const http1::request_head& head) {
  const auto& f = head.fields;
  if (!f.has_token("upgrade", "websocket") || !f.has_token("connection", "upgrade")) {
    return unexpected(make_error_code(error::upgrade_required));
  }
  if (head.method != "GET" || head.minor_version < 1)
    return unexpected(make_error_code(error::bad_handshake));
  if (head.framing != http1::framing::none) return unexpected(make_error_code(error::bad_handshake));
  if (f.count("sec-websocket-version") != 1 || trim_ows(*f.get("sec-websocket-version")) != "13") {
    return unexpected(make_error_code(error::version_not_supported));
  }
  if (f.count("sec-websocket-key") != 1) return unexpected(make_error_code(error::bad_handshake));
  auto key = trim_ows(*f.get("sec-websocket-key"));
  // 16 bytes in base64: 22 characters and "==".
  if (key.size() != 24 || key.substr(22) != "==" ||
      !std::all_of(key.begin(), key.begin() + 22, is_base64_char)) {
    return unexpected(make_error_code(error::bad_handshake));
  }
  return key;
}

// -- permessage-deflate ----------------------------------------------------------------------

std::string deflate_offer(const deflate_options& o) {
  std::string out = "permessage-deflate";
  if (o.peer_no_context_takeover) out += "; server_no_context_takeover";
  if (o.no_context_takeover) out += "; client_no_context_takeover";
  if (o.peer_max_window_bits >= 8 && o.peer_max_window_bits < 15) {
    out += "; server_max_window_bits=" + std::to_string(o.peer_max_window_bits);
  }
  out += "; client_max_window_bits";
  int own = std::clamp(o.max_window_bits, 9, 15);
  if (own < 15) out += "=" + std::to_string(own);
  return out;
}

std::optional<deflate_answer> negotiate_deflate(std::span<const std::string_view> offers,
                                                const deflate_options& o) {
  if (!o.enabled) return std::nullopt;
  std::optional<deflate_answer> chosen;
  for (auto value : offers) {
    list_items(value, [&](std::string_view item) {
      if (chosen) return;
      auto e = parse_extension(item);
      if (!iequals(e.name, "permessage-deflate")) return;
      auto r = read_deflate(e, false);
      if (!r) return;  // declined: the next offer may do
      deflate_answer a;
      a.params.enabled = true;
      a.params.level = o.level;
      a.params.min_size = o.min_size;
      // Our (the server's) compressor: its window within the client's request; zlib
      // cannot deflate with an 8-bit window, so such an offer is declined.
      int own = std::clamp(o.max_window_bits, 9, 15);
      if (r->server_max_window_bits) own = std::min(own, *r->server_max_window_bits);
      if (own < 9) return;
      a.params.window_bits = own;
      a.params.no_context_takeover = o.no_context_takeover || r->server_no_context_takeover;
      a.params.peer_no_context_takeover = r->client_no_context_takeover || o.peer_no_context_takeover;
      // The client's compressor: it may be asked for less only when it offered
      // client_max_window_bits.
      int peer = r->client_max_window_bits_value.value_or(15);
      bool ask_peer = r->client_max_window_bits && o.peer_max_window_bits < peer;
      if (ask_peer) peer = std::max(8, o.peer_max_window_bits);
      a.params.peer_window_bits = peer;
      a.response = "permessage-deflate";
      if (a.params.no_context_takeover) a.response += "; server_no_context_takeover";
      if (a.params.peer_no_context_takeover) a.response += "; client_no_context_takeover";
      if (r->server_max_window_bits) a.response += "; server_max_window_bits=" + std::to_string(own);
      if (ask_peer) a.response += "; client_max_window_bits=" + std::to_string(peer);
      chosen = std::move(a);
    });
    if (chosen) break;
  }
  return chosen;
}

result<deflate_params> accept_deflate(std::string_view value, const deflate_options& o) {
  auto bad = unexpected(make_error_code(error::bad_negotiation));
  std::vector<std::string_view> items;
  list_items(value, [&](std::string_view item) { items.push_back(item); });
  if (items.size() != 1) return bad;
  auto e = parse_extension(items.front());
  if (!iequals(e.name, "permessage-deflate")) return bad;
  auto r = read_deflate(e, true);
  if (!r) return bad;
  deflate_params p;
  p.enabled = true;
  p.level = o.level;
  p.min_size = o.min_size;
  // What we asked of the server must be granted (RFC 7692 7.1.1.1, 7.1.2.1).
  if (o.peer_no_context_takeover && !r->server_no_context_takeover) return bad;
  bool asked_window = o.peer_max_window_bits >= 8 && o.peer_max_window_bits < 15;
  if (asked_window && (!r->server_max_window_bits || *r->server_max_window_bits > o.peer_max_window_bits)) {
    return bad;
  }
  p.peer_no_context_takeover = r->server_no_context_takeover;
  p.peer_window_bits = r->server_max_window_bits.value_or(15);
  p.no_context_takeover = o.no_context_takeover || r->client_no_context_takeover;
  int own = std::clamp(o.max_window_bits, 9, 15);
  if (r->client_max_window_bits_value) {
    if (*r->client_max_window_bits_value > own) return bad;  // more than we offered
    own = *r->client_max_window_bits_value;
    if (own < 9) return bad;  // zlib cannot deflate with an 8-bit window
  }
  p.window_bits = own;
  return p;
}

// -- opening handshakes ----------------------------------------------------------------------

namespace {

// The handshakes are coroutines that take their options through a pointer: GCC 12
// destroys an aggregate passed by value to a coroutine from a co_await expression twice,
// so the public functions (plain functions) take them by value and pass them on here.

task<result<connection>> accept_upgrade(http1::request& req, http1::response& res,
                                        std::unique_ptr<options> given, deadline dl) {
  const auto& o = *given;
  const auto& head = req.head();
  auto key = check_request(head);
  if (!key) {
    auto e = key.error();
    int status = 400;
    if (e == make_error_code(error::version_not_supported) || e == make_error_code(error::upgrade_required)) {
      // RFC 6455 4.4: the versions we speak; RFC 9110 15.5.22: 426 names the upgrade.
      status = 426;
      (void)res.set_header("Sec-WebSocket-Version", "13");
      (void)res.set_header("Upgrade", "websocket");
    }
    auto text = e.message() + "\n";
    (void)co_await res.send(status, text, dl);
    co_return unexpected(e);
  }
  session s;
  s.role = role::server;
  s.protocol = choose_protocol(head.fields, o.protocols);
  auto offers = field_values(head.fields, "sec-websocket-extensions");
  auto deflate = negotiate_deflate(offers, o.deflate);
  (void)res.set_header("Sec-WebSocket-Accept", accept_key(*key));
  if (!s.protocol.empty()) (void)res.set_header("Sec-WebSocket-Protocol", s.protocol);
  if (deflate) {
    s.deflate = deflate->params;
    (void)res.set_header("Sec-WebSocket-Extensions", deflate->response);
  }
  for (const auto& h : o.headers) {
    if (auto ok = res.set_header(h.name, h.value); !ok) co_return unexpected(ok.error());
  }
  auto taken = co_await res.upgrade("websocket", dl);
  if (!taken) co_return unexpected(taken.error());
  co_return connection(std::move(taken->lower), std::move(s), o, std::move(taken->unread));
}

task<result<connection>> connect_upgrade(any_stream stream, std::string host, std::string path,
                                         std::unique_ptr<options> given, deadline dl) {
  const auto& o = *given;
  http1::client c(std::move(stream));
  c.set_host(std::move(host));
  auto key = make_key();
  http1::client::outgoing r;
  r.method = "GET";
  r.target = std::move(path);
  r.headers.push_back({"Upgrade", "websocket"});
  r.headers.push_back({"Connection", "Upgrade"});
  r.headers.push_back({"Sec-WebSocket-Key", key});
  r.headers.push_back({"Sec-WebSocket-Version", "13"});
  if (!o.protocols.empty()) r.headers.push_back({"Sec-WebSocket-Protocol", join(o.protocols)});
  if (o.deflate.enabled) r.headers.push_back({"Sec-WebSocket-Extensions", deflate_offer(o.deflate)});
  for (const auto& h : o.headers) r.headers.push_back(h);
  auto head = co_await c.send(r, dl);
  std::error_code failure;
  session s;
  s.role = role::client;
  if (!head) {
    failure = head.error();
  } else if (head->status != 101) {
    failure = make_error_code(error::handshake_refused);
  } else if (!head->fields.has_token("upgrade", "websocket") ||
             !head->fields.has_token("connection", "upgrade")) {
    failure = make_error_code(error::bad_handshake);
  } else if (head->fields.count("sec-websocket-accept") != 1 ||
             trim_ows(*head->fields.get("sec-websocket-accept")) != accept_key(key)) {
    failure = make_error_code(error::bad_accept);
  } else {
    auto protocols = field_values(head->fields, "sec-websocket-protocol");
    if (protocols.size() > 1) {
      failure = make_error_code(error::bad_negotiation);
    } else if (protocols.size() == 1) {
      auto p = trim_ows(protocols.front());
      if (std::find(o.protocols.begin(), o.protocols.end(), p) == o.protocols.end()) {
        failure = make_error_code(error::bad_negotiation);
      }
      s.protocol.assign(p);
    }
    auto extensions = field_values(head->fields, "sec-websocket-extensions");
    if (!failure && !extensions.empty()) {
      if (extensions.size() > 1 || !o.deflate.enabled) {
        failure = make_error_code(error::bad_negotiation);
      } else if (auto params = accept_deflate(extensions.front(), o.deflate); !params) {
        failure = params.error();
      } else {
        s.deflate = *params;
      }
    }
  }
  if (failure) {
    (void)co_await c.close(dl);
    co_return unexpected(failure);
  }
  auto taken = c.take_stream();
  if (!taken) co_return unexpected(taken.error());
  co_return connection(std::move(taken->lower), std::move(s), o, std::move(taken->unread));
}

}  // namespace

task<result<connection>> accept(http1::request& req, http1::response& res, options o, deadline dl) {
  return accept_upgrade(req, res, std::make_unique<options>(std::move(o)), dl);
}

task<result<connection>> accept(http1::request& req, http1::response& res, deadline dl) {
  return accept_upgrade(req, res, std::make_unique<options>(), dl);
}

task<result<connection>> connect(any_stream stream, std::string host, std::string path, options o,
                                 deadline dl) {
  return connect_upgrade(std::move(stream), std::move(host), std::move(path),
                         std::make_unique<options>(std::move(o)), dl);
}

task<result<connection>> connect(any_stream stream, std::string host, std::string path, deadline dl) {
  return connect_upgrade(std::move(stream), std::move(host), std::move(path), std::make_unique<options>(),
                         dl);
}

}  // namespace strata::websocket
