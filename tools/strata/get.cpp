// strata get URL: fetch a URL over any pipeline that ends in an HTTP application, and
// write the body (with -i, the response head first) to stdout or a file, like curl.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "strata/app/http1.hpp"
#include "strata/app/http2.hpp"
#include "strata/pipeline/application.hpp"

namespace strata::cli {

const std::string_view get_help = R"(usage: strata get [options] URL

Fetch URL over HTTP/1.1 or HTTP/2 and write the response body to stdout, like curl.

Without --via the URL picks the pipeline: http://HOST:PORT/PATH connects with
'tcp:HOST:PORT | http1', https://HOST:PORT/PATH with
'tcp:HOST:PORT | tls(sni=HOST, alpn="h2,http/1.1") | http': HTTP/2 when the server
agrees (ALPN), else HTTP/1.1 (the server's certificate is checked against the system's
CAs, or --ca FILE). HOST is a numeric IPv4 address, a bracketed IPv6
address or localhost (strata does not resolve names yet). With --via SPEC the request
goes over SPEC, any connector pipeline that ends in '| http1', '| http2' (prior
knowledge) or '| http' (HTTP/2 when TLS negotiated h2) — a unix socket, tls with its own
CA, ...; the URL then gives the path and the Host field (:authority in HTTP/2).

Redirects are not followed: a 3xx is written as it is. The body of an error response
(4xx, 5xx) is written too, and strata exits with 22 (curl -f's code).

options:
  --via SPEC            the pipeline to the server, ending in '| http1', '| http2' or '| http'
  -i, --include         write the status line and the header fields before the body
  -o, --output FILE     write the body (and -i's head) to FILE instead of stdout
  -X, --request METHOD  the method (default GET, or POST with -d)
  -d, --data DATA       send DATA as the request body ('@FILE': the contents of FILE);
                        POST unless -X, Content-Type application/x-www-form-urlencoded
                        unless -H sets one
  -H, --header 'NAME: VALUE'   add a header field (repeatable); Host replaces the URL's
  --ca FILE             https without --via: trust the CAs in FILE
  -k, --insecure        https without --via: do not check the server's certificate
  --timeout DURATION    for the connection and each wait for the server (default 30s)
  -v, --verbose         write the pipeline, the request head and the response head to
                        stderr ('> ' and '< ' lines)
  -h, --help            show this help

exit status: 0 a response with status below 400; 22 a response with status 400 or
more (its body is still written); 1 runtime failure (refused, reset, timeout, a
malformed or cut response, cannot write the output); 2 usage error, bad URL or
refused SPEC; 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM.

examples:
  strata get http://127.0.0.1:8080/index.html
  strata get -i -o page.html http://localhost:8080/
  strata get --via 'unix:/run/app.sock | http1' http://localhost/status
  strata get --via 'tcp:127.0.0.1:8443 | tls(sni=localhost, ca=ca.pem) | http' https://localhost/
  strata get --via 'tcp:127.0.0.1:8080 | http2' http://127.0.0.1:8080/
  strata get -d 'name=value' -H 'X-Trace: 1' http://127.0.0.1:8080/form
)";

namespace {

/// exit_http_error is the exit status for a response of status 400 or more (curl -f's).
constexpr int exit_http_error = 22;

/// url is an http or https URL taken apart.
struct url {
  bool https = false;
  std::string host;        // as written: "127.0.0.1", "[::1]", "localhost"
  std::uint16_t port = 0;  // the URL's, or the scheme's default
  bool port_given = false;
  std::string target;  // path and query: "/a?b"
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

/// parse_url reads "http[s]://HOST[:PORT][/PATH][?QUERY][#FRAGMENT]"; empty `why` on
/// success.
std::optional<url> parse_url(std::string_view text, std::string& why) {
  url out;
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    why = "not a URL: '" + std::string(text) + "' (expected http://HOST[:PORT]/PATH)";
    return std::nullopt;
  }
  auto scheme = text.substr(0, scheme_end);
  if (iequals(scheme, "https")) {
    out.https = true;
  } else if (!iequals(scheme, "http")) {
    why = "unsupported scheme '" + std::string(scheme) + "' (http or https)";
    return std::nullopt;
  }
  auto rest = text.substr(scheme_end + 3);
  auto authority_end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    why = "credentials in the URL are not supported";
    return std::nullopt;
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "unterminated '[' in the URL's host";
      return std::nullopt;
    }
    out.host = std::string(authority.substr(0, close + 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "unexpected '" + std::string(after) + "' after the URL's host";
        return std::nullopt;
      }
      port_text = after.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty() || out.host == "[]") {
    why = "the URL has no host";
    return std::nullopt;
  }
  for (char c : out.host) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '"' || c == '|' || c == '(' || c == ')' ||
        c == ',') {
      why = "invalid character in the URL's host";
      return std::nullopt;
    }
  }
  out.port = out.https ? 443 : 80;
  if (!port_text.empty()) {
    unsigned long value = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || value > 65535) {
        why = "invalid port '" + std::string(port_text) + "' in the URL";
        return std::nullopt;
      }
      value = value * 10 + static_cast<unsigned long>(c - '0');
    }
    if (value == 0 || value > 65535) {
      why = "invalid port '" + std::string(port_text) + "' in the URL";
      return std::nullopt;
    }
    out.port = static_cast<std::uint16_t>(value);
    out.port_given = true;
  }
  auto fragment = rest.find('#');
  rest = rest.substr(0, fragment);
  out.target = rest.empty() || rest.front() == '?' ? "/" + std::string(rest) : std::string(rest);
  for (unsigned char c : out.target) {
    if (c <= 0x20 || c >= 0x7f) {
      why = "the URL's path must be percent-encoded (no spaces or control characters)";
      return std::nullopt;
    }
  }
  return out;
}

/// quoted renders a spec parameter value, quoted when it holds anything but plain
/// characters (see docs/pipeline.md for the escapes).
std::string quoted(std::string_view value) {
  bool plain = !value.empty();
  for (unsigned char c : value) {
    if (!(std::isalnum(c) || c == '.' || c == '/' || c == '-' || c == '_' || c == ':' || c == '@' ||
          c == '+'))
      plain = false;
  }
  if (plain) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool is_ip_literal(std::string_view host) {
  if (!host.empty() && host.front() == '[') return true;
  return !host.empty() && host.find_first_not_of("0123456789.") == std::string_view::npos;
}

/// get_request is everything the command line asks for.
struct get_request {
  url where;
  std::string host_field;  // Host: the URL's authority
  std::string method;
  std::vector<http1::header> headers;
  std::string body;
  bool include = false;
  bool verbose = false;
  std::string output;  // empty: stdout
  duration timeout = std::chrono::seconds(30);
};

/// sink is where the response goes: stdout or the -o file.
struct sink {
  pollable_fd* fd = nullptr;
  std::string label;
  task<result<void>> write(std::string_view text, deadline dl) {
    co_return co_await write_fd(*fd, as_bytes(text), dl);
  }
};

std::string head_text(const http1::response_head& head) {
  std::string out = "HTTP/1." + std::to_string(head.minor_version) + " " + std::to_string(head.status);
  if (!head.reason.empty()) out.append(" ").append(head.reason);
  out += "\r\n";
  for (const auto& f : head.fields.all()) out.append(f.name).append(": ").append(f.value).append("\r\n");
  return out + "\r\n";
}

void verbose_lines(std::string_view prefix, std::string_view head) {
  while (!head.empty()) {
    auto end = head.find("\r\n");
    auto line = head.substr(0, end);
    std::fprintf(stderr, "%.*s%.*s\n", static_cast<int>(prefix.size()), prefix.data(),
                 static_cast<int>(line.size()), line.data());
    if (end == std::string_view::npos || (line.empty() && end + 2 == head.size())) break;
    head.remove_prefix(end + 2);
  }
  std::fflush(stderr);
}

/// copy_body writes the body `read_some` gives, as it arrives, to `out`; false after
/// reporting a failure to read it or to write it.
template <class ReadSome>
task<bool> copy_body(ReadSome read_some, sink& out, const get_request& r) {
  std::array<std::byte, 64 * 1024> buf{};
  for (;;) {
    auto n = co_await read_some(mutable_buffer(buf), deadline::after(r.timeout));
    if (!n) {
      if (n.error() == errc::end_of_stream) co_return true;
      report("get " + r.where.target + ": body", n.error());
      co_return false;
    }
    auto w = co_await write_fd(*out.fd, const_buffer(buf.data(), *n), deadline::after(r.timeout));
    if (!w) {
      report("write " + out.label, w.error());
      co_return false;
    }
  }
}

/// get_http1 sends the request over `conn` with the http1 client and writes the response.
task<int> get_http1(any_connection& conn, const http1_settings& settings, const get_request& r, sink& out) {
  if (!conn.is_stream()) co_return exit_failure;
  http1::client client(conn.take_stream(), settings.client);
  client.set_host(r.host_field);
  http1::client::outgoing request;
  request.method = r.method;
  request.target = r.where.target;
  request.headers = r.headers;
  request.body = r.body;
  if (r.verbose) {
    std::string shown = request.method + " " + request.target + " HTTP/1.1\r\n";
    bool host_given = false;
    for (const auto& h : request.headers) host_given = host_given || iequals(h.name, "host");
    if (!host_given) shown += "Host: " + r.host_field + "\r\n";
    for (const auto& h : request.headers) shown += h.name + ": " + h.value + "\r\n";
    verbose_lines("> ", shown);
  }
  auto head = co_await client.send(request, deadline::after(r.timeout));
  if (!head) {
    report("get " + r.where.target, head.error());
    (void)co_await client.close(deadline::after(std::chrono::milliseconds(100)));
    co_return exit_failure;
  }
  int status = head->status;
  auto shown = head_text(*head);
  if (r.verbose) verbose_lines("< ", shown);
  if (r.include) {
    if (auto w = co_await out.write(shown, deadline::after(r.timeout)); !w) {
      report("write " + out.label, w.error());
      co_return exit_failure;
    }
  }
  auto copied =
      co_await copy_body([&](mutable_buffer buf, deadline dl) { return client.read_some(buf, dl); }, out, r);
  if (!copied) {
    (void)co_await client.close(deadline::after(std::chrono::milliseconds(100)));
    co_return exit_failure;
  }
  (void)co_await client.close(deadline::after(std::chrono::seconds(1)));
  co_return status >= 400 ? exit_http_error : exit_ok;
}

/// get_http2 sends the request over `conn` with the http2 client and writes the response.
task<int> get_http2(any_connection& conn, const http2::client_options& settings, const get_request& r,
                    sink& out) {
  if (!conn.is_stream()) co_return exit_failure;
  auto options = settings;
  options.authority = r.host_field;
  options.scheme = r.where.https ? "https" : "http";
  http2::client client(conn.take_stream(), options);
  http2::client::outgoing request;
  request.method = r.method;
  request.target = r.where.target;
  for (const auto& h : r.headers) {
    if (iequals(h.name, "host")) continue;  // :authority carries it
    request.headers.push_back(h);
  }
  request.body = r.body;
  if (r.verbose) {
    std::string shown =
        request.method + " " + request.target + " HTTP/2\r\n:authority: " + r.host_field + "\r\n";
    for (const auto& h : request.headers) shown += h.name + ": " + h.value + "\r\n";
    verbose_lines("> ", shown);
  }
  auto response = co_await client.request(request, deadline::after(r.timeout));
  if (!response) {
    report("get " + r.where.target, response.error());
    (void)co_await client.close(deadline::after(std::chrono::milliseconds(100)));
    co_return exit_failure;
  }
  int status = response->status();
  std::string shown = "HTTP/2 " + std::to_string(status) + "\r\n";
  for (const auto& f : response->fields().all())
    shown.append(f.name).append(": ").append(f.value).append("\r\n");
  shown += "\r\n";
  if (r.verbose) verbose_lines("< ", shown);
  if (r.include) {
    if (auto w = co_await out.write(shown, deadline::after(r.timeout)); !w) {
      report("write " + out.label, w.error());
      co_return exit_failure;
    }
  }
  auto copied = co_await copy_body(
      [&](mutable_buffer buf, deadline dl) { return response->read_some(buf, dl); }, out, r);
  if (!copied) {
    (void)co_await client.close(deadline::after(std::chrono::milliseconds(100)));
    co_return exit_failure;
  }
  (void)co_await client.close(deadline::after(std::chrono::seconds(1)));
  co_return status >= 400 ? exit_http_error : exit_ok;
}

/// read_data reads -d's value: the text, or @FILE's contents.
bool read_data(std::string_view value, std::string& out, std::string& why) {
  if (value.empty() || value.front() != '@') {
    out = std::string(value);
    return true;
  }
  if (parse_only()) return true;  // no file is read (the argument fuzzer could name /dev/zero)
  std::string path(value.substr(1));
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    why = "-d @" + path + ": " + error_text(std::error_code(errno, std::generic_category()));
    return false;
  }
  std::array<char, 65536> chunk{};
  std::size_t n = 0;
  while ((n = std::fread(chunk.data(), 1, chunk.size(), f)) > 0) out.append(chunk.data(), n);
  std::fclose(f);
  return true;
}

}  // namespace

int get_main(args& a, signal_guard& signals) {
  get_request r;
  std::optional<std::string_view> via;
  std::optional<std::string_view> method;
  std::optional<std::string> data;
  std::string ca;
  bool insecure = false;
  std::string_view url_text;
  bool have_url = false;
  while (!a.empty()) {
    bool missing = false;
    if (auto v = option_value(a, "--via", missing)) {
      via = *v;
      continue;
    }
    if (auto v = option_value(a, "-o", missing);
        v || (!missing && (v = option_value(a, "--output", missing)))) {
      if (v->empty()) return usage_error("get", "-o needs a file name");
      r.output = std::string(*v);
      continue;
    }
    if (auto v = option_value(a, "-X", missing);
        v || (!missing && (v = option_value(a, "--request", missing)))) {
      method = *v;
      continue;
    }
    if (auto v = option_value(a, "-d", missing);
        v || (!missing && (v = option_value(a, "--data", missing)))) {
      std::string why;
      std::string body;
      if (!read_data(*v, body, why)) return usage_error("get", why);
      data = std::move(body);
      continue;
    }
    if (auto v = option_value(a, "-H", missing);
        v || (!missing && (v = option_value(a, "--header", missing)))) {
      auto colon = v->find(':');
      if (colon == std::string_view::npos || colon == 0)
        return usage_error("get", "-H '" + std::string(*v) + "': expected 'NAME: VALUE'");
      std::string name(v->substr(0, colon));
      auto value = v->substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
          iequals(name, "connection"))
        return usage_error("get", "-H " + name + ": strata sets it itself");
      r.headers.push_back({std::move(name), std::string(value)});
      continue;
    }
    if (auto v = option_value(a, "--ca", missing)) {
      ca = std::string(*v);
      continue;
    }
    if (auto v = option_value(a, "--timeout", missing)) {
      auto d = parse_duration(*v);
      if (!d || d->count() == 0)
        return usage_error("get", "--timeout: not a duration: '" + std::string(*v) + "'");
      r.timeout = *d;
      continue;
    }
    if (missing) return usage_error("get", std::string(a.peek()) + " needs a value");
    std::string_view arg = a.next();
    if (arg == "-i" || arg == "--include") {
      r.include = true;
    } else if (arg == "-k" || arg == "--insecure") {
      insecure = true;
    } else if (arg == "-v" || arg == "--verbose") {
      r.verbose = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage_error("get", "unknown option '" + std::string(arg) + "'");
    } else if (have_url) {
      return usage_error("get", "one URL expected");
    } else {
      url_text = arg;
      have_url = true;
    }
  }
  if (!have_url) return usage_error("get", "missing URL");
  std::string why;
  auto where = parse_url(url_text, why);
  if (!where) return usage_error("get", why);
  r.where = *where;
  r.host_field = where->host + (where->port_given ? ":" + std::to_string(where->port) : "");
  r.method = method ? std::string(*method) : data ? "POST" : "GET";
  if (r.method.empty() || r.method.find_first_of(" \t\r\n:/") != std::string::npos)
    return usage_error("get", "-X '" + r.method + "': not a method");
  if (data) {
    r.body = std::move(*data);
    bool typed = false;
    for (const auto& h : r.headers) typed = typed || iequals(h.name, "content-type");
    if (!typed) r.headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
  }
  bool agent = false, accept = false;
  for (const auto& h : r.headers) {
    agent = agent || iequals(h.name, "user-agent");
    accept = accept || iequals(h.name, "accept");
  }
  if (!agent) r.headers.push_back({"User-Agent", "strata/0.1.0"});
  if (!accept) r.headers.push_back({"Accept", "*/*"});

  std::string spec_text;
  if (via) {
    if (!ca.empty() || insecure)
      return usage_error("get", "--ca and -k apply without --via (put them in its tls layer)");
    spec_text = std::string(*via);
  } else {
    spec_text = "tcp:" + where->host + ":" + std::to_string(where->port);
    if (where->https) {
      std::string tls_params;
      auto add = [&](std::string p) { tls_params += (tls_params.empty() ? "" : ", ") + p; };
      if (!is_ip_literal(where->host)) add("sni=" + quoted(where->host));
      if (!ca.empty()) add("ca=" + quoted(ca));
      if (insecure) add("verify=0");
      add("alpn=\"h2,http/1.1\"");
      spec_text += " | tls(" + tls_params + ") | http";
    } else if (!ca.empty() || insecure) {
      return usage_error("get", "--ca and -k apply to https URLs");
    } else {
      spec_text += " | http1";
    }
  }
  auto p = parse_pipeline("get", spec_text);
  if (!p) return exit_usage;
  if (p->is_listener() || p->is_bound())
    return usage_error("get", "'" + spec_text + "' does not connect; --via needs a connector SPEC");
  const auto* app = p->application();
  if (app == nullptr) {
    return usage_error("get", "'" + spec_text + "' does not end in an HTTP application; add '| http1' to it");
  }
  // One branch per application protocol; `http` picks by what TLS negotiated.
  const auto* http = http1_settings_of(*app);
  const auto* both = http_settings_of(*app);
  const auto* h2 = http2_settings_of(*app);
  if (http == nullptr && h2 == nullptr)
    return usage_error("get", "'" + app->spec.name + "' is not an HTTP application");
  if (r.verbose) {
    std::fprintf(stderr, "* %s\n", p->text().c_str());
    std::fflush(stderr);
  }

  std::optional<stdio_guard> stdio;
  int file = -1;
  if (r.output.empty()) {
    stdio.emplace();
  } else if (!parse_only()) {
    file = ::open(r.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (file < 0) {
      report("get: -o " + r.output, std::error_code(errno, std::generic_category()));
      return exit_failure;
    }
  }
  return run_command(signals, [&]() -> task<int> {
    pollable_fd output_file;
    sink out;
    if (stdio) {
      out.fd = &stdio->out();
      out.label = "stdout";
    } else {
      auto adopted = pollable_fd::adopt(file);
      if (!adopted) {
        ::close(file);
        report("get: -o " + r.output, adopted.error());
        co_return exit_failure;
      }
      output_file = std::move(*adopted);
      out.fd = &output_file;
      out.label = r.output;
    }
    auto conn = co_await p->connect(deadline::after(r.timeout));
    if (!conn) {
      if (conn.error() == errc::timed_out) {
        report("connect " + p->text() + ": timed out after " + format_duration(r.timeout));
      } else if (conn.error() != errc::operation_canceled) {
        report(conn.error().where(), conn.error());
      }
      co_return exit_failure;
    }
    if (h2 != nullptr) co_return co_await get_http2(*conn, h2->client, r, out);
    if (both != nullptr && conn->is_stream()) {
      auto negotiated = query<fact::alpn>(conn->stream());
      if (negotiated && *negotiated == "h2") co_return co_await get_http2(*conn, both->client2, r, out);
    }
    co_return co_await get_http1(*conn, *http, r, out);
  });
}

}  // namespace strata::cli
