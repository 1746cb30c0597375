// http1: the head parser on valid and malformed requests and responses (every smuggling
// and framing case of RFC 9112 we know, each with its status), heads and chunked bodies
// split at every byte, the chunked decoder's limits; the server over in-memory streams
// (keep-alive, pipelined responses in one write, bodies both ways, 100-continue, HEAD,
// closes, timeouts, limits) and the client against it.
#include "strata/app/http1.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/mem_stream.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace {

using http1::error;
using status = http1::head_parser::status;

struct parsed_request {
  status st;
  http1::request_head head;
  error failure{};
  std::size_t consumed = 0;
};

parsed_request parse(std::string_view text, http1::limits l = {}) {
  http1::head_parser p(l);
  parsed_request out;
  out.st = p.parse_request(text, out.head);
  out.failure = p.failure();
  out.consumed = p.consumed();
  return out;
}

TEST(Http1Parser, ParsesARequestHead) {
  std::string text =
      "GET /a?b=c HTTP/1.1\r\nHost: example.org\r\nAccept:  text/html \r\nX-Empty:\r\n\r\nbody";
  auto r = parse(text);
  ASSERT_EQ(r.st, status::complete);
  EXPECT_EQ(r.consumed, text.size() - 4);
  EXPECT_EQ(r.head.method, "GET");
  EXPECT_EQ(r.head.target, "/a?b=c");
  EXPECT_EQ(r.head.minor_version, 1);
  ASSERT_EQ(r.head.fields.size(), 3u);
  EXPECT_EQ(r.head.fields.get("host"), "example.org");
  EXPECT_EQ(r.head.fields.get("ACCEPT"), "text/html");
  EXPECT_EQ(r.head.fields.get("x-empty"), "");
  EXPECT_FALSE(r.head.fields.get("missing"));
  EXPECT_EQ(r.head.framing, http1::framing::none);
  EXPECT_TRUE(r.head.keep_alive);
}

TEST(Http1Parser, KeepAliveFollowsVersionAndConnection) {
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").head.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").head.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n").head.keep_alive);
  auto up = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(up.head.upgrade, "websocket");
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").head.upgrade, "");
  // A higher minor version is served as 1.1 (RFC 9110 2.5).
  EXPECT_EQ(parse("GET / HTTP/1.7\r\nHost: a\r\n\r\n").head.minor_version, 1);
}

TEST(Http1Parser, FramingOfRequests) {
  auto cl = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
  EXPECT_EQ(cl.head.framing, http1::framing::content_length);
  EXPECT_EQ(cl.head.content_length, 12u);
  // A repeated, identical length is one length (RFC 9110 8.6).
  auto same = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n");
  EXPECT_EQ(same.st, status::complete);
  EXPECT_EQ(same.head.content_length, 5u);
  auto chunked = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
  EXPECT_EQ(chunked.head.framing, http1::framing::chunked);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").head.framing,
            http1::framing::none);
  EXPECT_TRUE(parse("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n").head.expect_continue);
  // An HTTP/1.0 client cannot wait for 100: the expectation is ignored.
  EXPECT_FALSE(parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").head.expect_continue);
}

TEST(Http1Parser, TargetForms) {
  EXPECT_EQ(parse("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n").st, status::complete);
  EXPECT_EQ(parse("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n").st, status::complete);
  EXPECT_EQ(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").st, status::complete);
}

TEST(Http1Parser, SkipsEmptyLinesBeforeTheRequestLine) {
  auto r = parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.st, status::complete);
  EXPECT_EQ(r.head.method, "GET");
}

struct malformed_case {
  const char* name;
  std::string text;
  error expected;
  int status;
};

// Each case is answered with its status and a close. Sources: RFC 9112 sections 2.2,
// 3, 5, 6, 7 and the request smuggling cases of RFC 9112 6.3 / 11.2.
std::vector<malformed_case> malformed_requests() {
  std::string big_target(9000, 'a');
  std::string many_fields;
  for (int i = 0; i < 101; ++i) many_fields += "X-" + std::to_string(i) + ": v\r\n";
  return {
      {"no version", "GET /\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", error::bad_version, 400},
      {"version 2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", error::version_not_supported, 505},
      {"version garbage", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", error::bad_version, 400},
      {"method not a token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"asterisk for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"CONNECT origin-form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"control char in target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_request_line, 400},
      {"bare LF line", "GET / HTTP/1.1\nHost: a\r\n\r\n", error::bad_line_ending, 400},
      {"bare LF field", "GET / HTTP/1.1\r\nHost: a\n\r\n", error::bad_line_ending, 400},
      {"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", error::bad_field, 400},
      {"NUL in value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35), error::bad_field,
       400},
      {"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", error::bad_field, 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", error::whitespace_before_colon, 400},
      {"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", error::whitespace_before_colon, 400},
      {"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", error::bad_field, 400},
      {"empty name", "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", error::bad_field, 400},
      {"name not a token", "GET / HTTP/1.1\r\nHo\"st: a\r\n\r\n", error::bad_field, 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", error::obsolete_line_folding, 400},
      {"whitespace before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", error::obsolete_line_folding,
       400},
      {"missing host", "GET / HTTP/1.1\r\n\r\n", error::bad_host, 400},
      {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", error::bad_host, 400},
      {"bad host", "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", error::bad_host, 400},
      {"CL not a number", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
       error::bad_content_length, 400},
      {"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", error::bad_content_length,
       400},
      {"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", error::bad_content_length,
       400},
      {"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", error::bad_content_length, 400},
      {"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
       error::bad_content_length, 400},
      {"CL differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       error::bad_content_length, 400},
      {"CL differing list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
       error::bad_content_length, 400},
      {"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       error::conflicting_framing, 400},
      {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", error::conflicting_framing,
       400},
      {"TE chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
       error::bad_transfer_encoding, 400},
      {"TE chunked twice",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
       error::bad_transfer_encoding, 400},
      {"TE without chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
       error::bad_transfer_encoding, 400},
      {"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", error::bad_transfer_encoding,
       400},
      {"TE unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
       error::unknown_transfer_coding, 501},
      {"TE chunked lookalike", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
       error::bad_transfer_encoding, 400},
      {"expect other", "GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", error::expectation_failed,
       417},
      {"request line too long", "GET /" + big_target + " HTTP/1.1\r\nHost: a\r\n\r\n", error::uri_too_long,
       414},
      {"header block too large", "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(70000, 'v') + "\r\n\r\n",
       error::header_too_large, 431},
      {"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + many_fields + "\r\n", error::too_many_fields,
       431},
      {"LF first", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", error::bad_line_ending, 400},
  };
}

TEST(Http1Parser, RejectsEveryMalformedRequestWithItsStatus) {
  for (const auto& c : malformed_requests()) {
    auto r = parse(c.text);
    EXPECT_EQ(r.st, status::failed) << c.name;
    EXPECT_EQ(r.failure, c.expected) << c.name << ": " << make_error_code(r.failure).message();
    EXPECT_EQ(http1::status_for(c.expected), c.status) << c.name;
  }
}

TEST(Http1Parser, ErrorsRefineStrataErrc) {
  EXPECT_TRUE(make_error_code(error::bad_field) == errc::protocol_error);
  EXPECT_TRUE(make_error_code(error::header_too_large) == errc::message_too_large);
  EXPECT_TRUE(make_error_code(error::header_timeout) == errc::timed_out);
  EXPECT_TRUE(make_error_code(error::truncated) == errc::broken);
  EXPECT_EQ(make_error_code(error::obsolete_line_folding).message(),
            "HTTP field folded over lines (obs-fold)");
}

TEST(Http1Parser, AHeadSplitAtEveryByteParsesTheSame) {
  std::string text =
      "\r\nPOST /upload HTTP/1.1\r\nHost: a.example:8080\r\nContent-Length: 4\r\nX-A: 1\r\nConnection: "
      "keep-alive\r\n\r\n";
  http1::head_parser p;
  http1::request_head head;
  for (std::size_t n = 0; n < text.size(); ++n) {
    ASSERT_EQ(p.parse_request(std::string_view(text).substr(0, n), head), status::incomplete) << n;
  }
  ASSERT_EQ(p.parse_request(text, head), status::complete);
  EXPECT_EQ(p.consumed(), text.size());
  EXPECT_EQ(head.target, "/upload");
  EXPECT_EQ(head.content_length, 4u);
  EXPECT_EQ(head.fields.size(), 4u);
}

TEST(Http1Parser, AnUnterminatedHeadFailsAtItsLimitNotLater) {
  http1::limits l;
  l.max_header_block = 1024;
  http1::head_parser p(l);
  http1::request_head head;
  std::string text = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  while (text.size() <= 1024) {
    ASSERT_EQ(p.parse_request(text, head), status::incomplete);
    text.append(100, 'v');
  }
  EXPECT_EQ(p.parse_request(text, head), status::failed);
  EXPECT_EQ(p.failure(), error::header_too_large);
}

struct parsed_response {
  status st;
  http1::response_head head;
  error failure{};
};

parsed_response parse_response(std::string_view text, std::string_view method = "GET") {
  http1::head_parser p;
  parsed_response out;
  out.st = p.parse_response(text, method, out.head);
  out.failure = p.failure();
  return out;
}

TEST(Http1Parser, FramingOfResponses) {
  auto ok = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  ASSERT_EQ(ok.st, status::complete);
  EXPECT_EQ(ok.head.status, 200);
  EXPECT_EQ(ok.head.reason, "OK");
  EXPECT_EQ(ok.head.framing, http1::framing::content_length);
  EXPECT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD").head.framing,
            http1::framing::none);
  EXPECT_EQ(parse_response("HTTP/1.1 204 No Content\r\n\r\n").head.framing, http1::framing::none);
  EXPECT_EQ(parse_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").head.framing,
            http1::framing::none);
  EXPECT_EQ(parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").head.framing,
            http1::framing::chunked);
  auto eof = parse_response("HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(eof.head.framing, http1::framing::until_close);
  EXPECT_FALSE(eof.head.keep_alive);
  auto both = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(both.head.framing, http1::framing::chunked);
  EXPECT_FALSE(both.head.keep_alive);
  EXPECT_EQ(parse_response("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").head.reason, "");
  EXPECT_EQ(parse_response("HTTP/1.1 2x0 OK\r\n\r\n").failure, error::bad_status_line);
  EXPECT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").failure,
            error::bad_content_length);
  EXPECT_EQ(parse_response("HTTP/2 200 OK\r\n\r\n").failure, error::bad_status_line);
}

// -- chunked decoder -------------------------------------------------------------------------

struct decoded {
  std::string body;
  bool done = false;
  bool failed = false;
  error failure{};
  http1::fields trailers;
  std::vector<std::pair<std::string, std::string>> trailer_copy;
};

/// decode_all feeds `text` to a decoder `piece` bytes at a time, keeping unconsumed bytes
/// like a connection does.
decoded decode_all(std::string_view text, std::size_t piece, http1::limits l = {}) {
  http1::chunked_decoder d(l);
  decoded out;
  std::string pending;
  std::size_t fed = 0;
  for (;;) {
    auto step = d.decode(pending);
    out.body.append(step.data);
    pending.erase(0, step.consumed);
    if (step.failed) {
      out.failed = true;
      out.failure = d.failure();
      return out;
    }
    if (step.done) {
      out.done = true;
      for (const auto& f : d.trailers().all()) out.trailer_copy.emplace_back(f.name, f.value);
      return out;
    }
    if (step.consumed == 0) {
      if (fed == text.size()) return out;
      auto n = std::min(piece, text.size() - fed);
      pending.append(text.substr(fed, n));
      fed += n;
    }
  }
}

TEST(Http1Chunked, DecodesChunksExtensionsAndTrailers) {
  std::string text = "5;name=value\r\nhello\r\n7 ; x\r\n, world\r\n0\r\nX-Sum: 12\r\nX-B: b\r\n\r\n";
  for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{7}, text.size()}) {
    auto d = decode_all(text, piece);
    EXPECT_TRUE(d.done) << piece;
    EXPECT_FALSE(d.failed) << piece << ": " << make_error_code(d.failure).message();
    EXPECT_EQ(d.body, "hello, world") << piece;
    ASSERT_EQ(d.trailer_copy.size(), 2u) << piece;
    EXPECT_EQ(d.trailer_copy[0].first, "X-Sum");
    EXPECT_EQ(d.trailer_copy[0].second, "12");
  }
  auto upper = decode_all("A\r\n0123456789\r\n0\r\n\r\n", 3);
  EXPECT_TRUE(upper.done);
  EXPECT_EQ(upper.body, "0123456789");
}

TEST(Http1Chunked, RejectsMalformedChunks) {
  struct chunk_case {
    const char* name;
    std::string text;
    error expected;
  };
  std::vector<chunk_case> cases = {
      {"no size", "\r\nabc\r\n0\r\n\r\n", error::bad_chunk},
      {"not hex", "g\r\nabc\r\n0\r\n\r\n", error::bad_chunk},
      {"negative", "-1\r\n0\r\n\r\n", error::bad_chunk},
      {"bare LF after size", "3\nabc\r\n0\r\n\r\n", error::bad_chunk},
      {"no CRLF after data", "3\r\nabcX\r\n0\r\n\r\n", error::bad_chunk},
      {"data longer than size", "3\r\nabcd\r\n0\r\n\r\n", error::bad_chunk},
      {"garbage after size", "3 x\r\nabc\r\n0\r\n\r\n", error::bad_chunk},
      {"control char in extension", "3;a\x01\r\nabc\r\n0\r\n\r\n", error::bad_chunk},
      {"size overflow", "1ffffffffffffffff\r\n", error::bad_chunk},
      {"size over the body limit", "ffffffffffffffff\r\n", error::body_too_large},
      {"size line too long", "3;" + std::string(5000, 'x') + "\r\nabc\r\n0\r\n\r\n", error::bad_chunk},
      {"obs-fold in trailer", "0\r\nX: a\r\n b\r\n\r\n", error::obsolete_line_folding},
      {"bad trailer", "0\r\nX a\r\n\r\n", error::bad_field},
      {"trailers too large", "0\r\nX: " + std::string(17000, 'v') + "\r\n\r\n", error::header_too_large},
  };
  for (const auto& c : cases) {
    for (std::size_t piece : {std::size_t{1}, c.text.size()}) {
      auto d = decode_all(c.text, piece);
      EXPECT_TRUE(d.failed) << c.name << " piece " << piece;
      EXPECT_EQ(d.failure, c.expected)
          << c.name << " piece " << piece << ": " << make_error_code(d.failure).message();
    }
  }
}

TEST(Http1Chunked, EnforcesTheBodyLimitAcrossChunks) {
  http1::limits l;
  l.max_body = 10;
  EXPECT_TRUE(decode_all("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 4, l).done);
  auto over = decode_all("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", 4, l);
  EXPECT_TRUE(over.failed);
  EXPECT_EQ(over.failure, error::body_too_large);
}

TEST(Http1Chunked, LimitsDataToWhatTheCallerTakes) {
  http1::chunked_decoder d;
  std::string text = "a\r\n0123456789\r\n0\r\n\r\n";
  auto step = d.decode(text, 4);
  EXPECT_EQ(step.data, "0123");
  text.erase(0, step.consumed);
  step = d.decode(text, 100);
  EXPECT_EQ(step.data, "456789");
}

// -- server ----------------------------------------------------------------------------------

/// exchange writes `request` to a server running `h` over an in-memory stream and
/// returns everything the server sent until it closed the connection.
struct exchange_result {
  std::string reply;
  result<http1::serve_stats> stats = errc::closed;
};

task<void> run_server(mem_stream s, http1::handler h, http1::server_options o, exchange_result& out) {
  out.stats = co_await http1::serve(any_stream(std::move(s)), std::move(h), o);
}

task<std::string> read_until_end(mem_stream& s, deadline dl) {
  std::string got;
  std::array<std::byte, 4096> buf{};
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) break;
    got.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  co_return got;
}

task<void> exchange_body(std::string request, http1::handler h, http1::server_options o, bool half_close,
                         exchange_result& out) {
  auto [client, server] = mem_stream::pair();
  scope s;
  s.spawn(run_server(std::move(server), std::move(h), o, out));
  auto dl = deadline::after(5s);
  auto w = co_await client.write(as_bytes(request), dl);
  EXPECT_TRUE(w.has_value());
  if (half_close) (void)co_await client.shutdown_write(dl);
  out.reply = co_await read_until_end(client, dl);
  (void)co_await s.join(dl);
}

exchange_result exchange(std::string request, http1::handler h, http1::server_options o = {},
                         bool half_close = true) {
  exchange_result out;
  run_test([&]() -> task<void> { return exchange_body(request, h, o, half_close, out); });
  return out;
}

http1::handler hello_handler() {
  return [](http1::request& req, http1::response& res) -> task<result<void>> {
    (void)res.set_header("Content-Type", "text/plain");
    std::string body = "hello " + std::string(req.target());
    co_return co_await res.send(200, body, deadline::after(5s));
  };
}

std::size_t count(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string_view::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Http1Server, AnswersARequest) {
  auto r = exchange("GET /x HTTP/1.1\r\nHost: a\r\n\r\n", hello_handler());
  EXPECT_EQ(r.reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r.reply;
  EXPECT_NE(r.reply.find("\r\nContent-Type: text/plain\r\n"), std::string::npos);
  EXPECT_NE(r.reply.find("\r\nContent-Length: 8\r\n"), std::string::npos);
  EXPECT_NE(r.reply.find("\r\nDate: "), std::string::npos);
  EXPECT_NE(r.reply.find("\r\nServer: strata\r\n"), std::string::npos);
  EXPECT_EQ(r.reply.substr(r.reply.size() - 8), "hello /x");
  ASSERT_TRUE(r.stats);
  EXPECT_EQ(r.stats->requests, 1u);
}

TEST(Http1Server, PipelinedResponsesLeaveInOneWrite) {
  std::string requests;
  for (int i = 0; i < 16; ++i) requests += "GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: a\r\n\r\n";
  auto r = exchange(requests, hello_handler());
  EXPECT_EQ(count(r.reply, "HTTP/1.1 200 OK"), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_NE(r.reply.find("hello /" + std::to_string(i)), std::string::npos) << i;
  ASSERT_TRUE(r.stats);
  EXPECT_EQ(r.stats->requests, 16u);
  EXPECT_EQ(r.stats->writes, 1u);
}

TEST(Http1Server, PipeliningSplitAtEveryByteStillAnswersEach) {
  std::string requests = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
  exchange_result out;
  run_test([&]() -> task<void> {
    mem_options bytewise{.max_read_chunk = 1, .max_write_chunk = 1};
    auto [client, server] = mem_stream::pair(bytewise, bytewise);
    scope s;
    s.spawn(run_server(std::move(server), hello_handler(), http1::server_options{}, out));
    auto dl = deadline::after(5s);
    (void)co_await client.write(as_bytes(requests), dl);
    (void)co_await client.shutdown_write(dl);
    out.reply = co_await read_until_end(client, dl);
    (void)co_await s.join(dl);
  });
  EXPECT_EQ(count(out.reply, "HTTP/1.1 200 OK"), 2u);
  EXPECT_NE(out.reply.find("hello /b"), std::string::npos);
}

http1::handler echo_handler() {
  return [](http1::request& req, http1::response& res) -> task<result<void>> {
    auto body = co_await req.read_body(1 << 20, deadline::after(5s));
    if (!body) co_return unexpected(body.error());
    std::string reply = "got " + *body;
    for (const auto& t : req.trailers().all())
      reply += " " + std::string(t.name) + "=" + std::string(t.value);
    co_return co_await res.send(200, reply, deadline::after(5s));
  };
}

TEST(Http1Server, ReadsContentLengthAndChunkedBodies) {
  auto cl = exchange("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", echo_handler());
  EXPECT_NE(cl.reply.find("\r\n\r\ngot hello"), std::string::npos) << cl.reply;
  auto chunked = exchange(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: "
      "1\r\n\r\n",
      echo_handler());
  EXPECT_NE(chunked.reply.find("\r\n\r\ngot abcde X-T=1"), std::string::npos) << chunked.reply;
}

TEST(Http1Server, UnreadBodiesAreSkippedToTheNextRequest) {
  auto r = exchange(
      "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /2 HTTP/1.1\r\nHost: a\r\n"
      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
      hello_handler());
  EXPECT_EQ(count(r.reply, "HTTP/1.1 200 OK"), 3u) << r.reply;
  EXPECT_NE(r.reply.find("hello /3"), std::string::npos);
}

TEST(Http1Server, StreamsAChunkedResponseWithTrailers) {
  auto h = [](http1::request&, http1::response& res) -> task<result<void>> {
    auto dl = deadline::after(5s);
    auto started = co_await res.start(200, std::nullopt, dl);
    if (!started) co_return started;
    std::string big(20000, 'x');
    for (std::string_view piece : {std::string_view("abc"), std::string_view(big)}) {
      auto w = co_await res.write(as_bytes(piece), dl);
      if (!w) co_return w;
    }
    std::vector<http1::header> trailers;
    trailers.push_back({"X-Done", "yes"});
    co_return co_await res.finish(trailers, dl);
  };
  auto r = exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", h);
  EXPECT_NE(r.reply.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << r.reply.substr(0, 200);
  auto body_at = r.reply.find("\r\n\r\n") + 4;
  auto d = decode_all(std::string_view(r.reply).substr(body_at), 1000);
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "abc" + std::string(20000, 'x'));
  ASSERT_EQ(d.trailer_copy.size(), 1u);
  EXPECT_EQ(d.trailer_copy[0].second, "yes");
}

TEST(Http1Server, HeadGetsTheLengthButNoBody) {
  auto r = exchange("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n", hello_handler());
  auto first_end = r.reply.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos);
  EXPECT_NE(r.reply.substr(0, first_end).find("Content-Length: 8"), std::string::npos);
  // The next response follows the head at once: no body in between.
  EXPECT_EQ(r.reply.compare(first_end + 4, 17, "HTTP/1.1 200 OK\r\n"), 0) << r.reply;
  EXPECT_NE(r.reply.find("hello /y"), std::string::npos);
}

TEST(Http1Server, ClosesWhenAskedAndForHttp10) {
  auto close =
      exchange("GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
               hello_handler(), {}, false);
  EXPECT_EQ(count(close.reply, "HTTP/1.1 200"), 1u);
  EXPECT_NE(close.reply.find("Connection: close\r\n"), std::string::npos);
  auto old = exchange("GET /a HTTP/1.0\r\n\r\n", hello_handler(), {}, false);
  EXPECT_NE(old.reply.find("hello /a"), std::string::npos);
  EXPECT_NE(old.reply.find("Connection: close\r\n"), std::string::npos);
  auto kept = exchange("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
                       hello_handler(), {}, false);
  EXPECT_EQ(count(kept.reply, "HTTP/1.1 200"), 2u);
  EXPECT_NE(kept.reply.find("Connection: keep-alive\r\n"), std::string::npos);
}

TEST(Http1Server, AnswersMalformedRequestsWithTheirStatusAndCloses) {
  for (const auto& c : malformed_requests()) {
    auto r = exchange(c.text + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n", hello_handler());
    auto expected = "HTTP/1.1 " + std::to_string(c.status) + " ";
    EXPECT_EQ(r.reply.rfind(expected, 0), 0u) << c.name << ": " << r.reply.substr(0, 60);
    EXPECT_NE(r.reply.find("Connection: close\r\n"), std::string::npos) << c.name;
    EXPECT_EQ(r.reply.find("hello /next"), std::string::npos) << c.name;
    ASSERT_TRUE(r.stats) << c.name;
    EXPECT_EQ(r.stats->errors_answered, 1u) << c.name;
  }
}

TEST(Http1Server, RefusesABodyOverTheLimit) {
  http1::server_options o;
  o.limits.max_body = 10;
  auto cl =
      exchange("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n01234567890", echo_handler(), o);
  EXPECT_EQ(cl.reply.rfind("HTTP/1.1 413 ", 0), 0u) << cl.reply;
  auto chunked = exchange(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
      "chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n",
      echo_handler(), o);
  EXPECT_EQ(chunked.reply.rfind("HTTP/1.1 413 ", 0), 0u) << chunked.reply;
  auto bad_chunk =
      exchange("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", echo_handler());
  EXPECT_EQ(bad_chunk.reply.rfind("HTTP/1.1 400 ", 0), 0u) << bad_chunk.reply;
}

TEST(Http1Server, AHandlerThatSendsNothingGets500) {
  auto silent = [](http1::request&, http1::response&) -> task<result<void>> { co_return result<void>{}; };
  auto r = exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", silent);
  EXPECT_EQ(r.reply.rfind("HTTP/1.1 500 ", 0), 0u) << r.reply;
  auto failing = [](http1::request&, http1::response&) -> task<result<void>> {
    co_return errc::invalid_argument;
  };
  EXPECT_EQ(exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", failing).reply.rfind("HTTP/1.1 500 ", 0), 0u);
}

TEST(Http1Server, RefusesHeadersThatWouldSplitTheResponse) {
  std::vector<std::error_code> refused;
  auto h = [&](http1::request&, http1::response& res) -> task<result<void>> {
    for (auto [name, value] : {std::pair<std::string_view, std::string_view>{"X", "a\r\nSet-Cookie: evil"},
                               {"Bad Name", "v"},
                               {"Content-Length", "3"},
                               {"X-Nul", std::string_view("a\0b", 3)}}) {
      auto r = res.set_header(name, value);
      if (!r) refused.push_back(r.error());
    }
    co_return co_await res.send(200, "ok", deadline::after(5s));
  };
  auto r = exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", h);
  EXPECT_EQ(refused.size(), 4u);
  EXPECT_EQ(r.reply.find("evil"), std::string::npos);
}

TEST(Http1Server, AnIncompleteHeadTimesOutWith408) {
  http1::server_options o;
  o.header_timeout = 100ms;
  auto start = deadline::clock::now();
  auto r = exchange("GET / HTTP/1.1\r\nHost: a\r\n", hello_handler(), o, false);
  EXPECT_EQ(r.reply.rfind("HTTP/1.1 408 ", 0), 0u) << r.reply;
  EXPECT_LT(elapsed_since(start), 3s);
}

TEST(Http1Server, AnIdleConnectionClosesQuietly) {
  http1::server_options o;
  o.idle_timeout = 100ms;
  auto r = exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", hello_handler(), o, false);
  EXPECT_EQ(count(r.reply, "HTTP/1.1 "), 1u);
  ASSERT_TRUE(r.stats);
  EXPECT_EQ(r.stats->requests, 1u);
}

TEST(Http1Server, ExpectContinueSendsTheInterimResponseBeforeTheBody) {
  std::string reply;
  run_test([&]() -> task<void> {
    auto [client, server] = mem_stream::pair();
    exchange_result out;
    scope s;
    s.spawn(run_server(std::move(server), echo_handler(), http1::server_options{}, out));
    auto dl = deadline::after(5s);
    std::string head = "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    (void)co_await client.write(as_bytes(head), dl);
    std::array<std::byte, 256> buf{};
    std::string interim;
    while (interim.find("\r\n\r\n") == std::string::npos) {
      auto n = co_await client.read_some(buf, dl);
      CO_ASSERT_TRUE(n.has_value());
      interim.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    (void)co_await client.write(as_bytes(std::string_view("data")), dl);
    (void)co_await client.shutdown_write(dl);
    reply = co_await read_until_end(client, dl);
    (void)co_await s.join(dl);
  });
  EXPECT_NE(reply.find("got data"), std::string::npos) << reply;
}

TEST(Http1Server, ExpectContinueAnsweredWithoutReadingClosesTheConnection) {
  auto r = exchange("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
                    hello_handler(), {}, false);
  EXPECT_EQ(r.reply.find("100 Continue"), std::string::npos);
  EXPECT_NE(r.reply.find("Connection: close\r\n"), std::string::npos) << r.reply;
}

TEST(Http1Server, UpgradeHandsTheStreamOverWithTheBytesThatFollowed) {
  auto h = [](http1::request& req, http1::response& res) -> task<result<void>> {
    auto dl = deadline::after(5s);
    if (req.head().upgrade != "echo") co_return co_await res.send(426, "", dl);
    (void)res.set_header("X-Proto", "echo/1");
    auto taken = co_await res.upgrade("echo", dl);
    if (!taken) co_return unexpected(taken.error());
    // The new protocol: echo what came, the early bytes first, until the client ends.
    auto& stream = taken->lower;
    if (!taken->unread.empty()) (void)co_await stream.write(const_buffer(taken->unread), dl);
    std::array<std::byte, 256> buf{};
    for (;;) {
      auto n = co_await stream.read_some(buf, dl);
      if (!n) break;
      (void)co_await stream.write(const_buffer(buf.data(), *n), dl);
    }
    (void)co_await stream.close(dl);
    co_return result<void>{};
  };
  auto r = exchange("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nEARLY+late", h);
  EXPECT_EQ(r.reply.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << r.reply;
  EXPECT_NE(r.reply.find("X-Proto: echo/1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nEARLY+late"),
            std::string::npos)
      << r.reply;
  auto refused = exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", h);
  EXPECT_EQ(refused.reply.rfind("HTTP/1.1 426 ", 0), 0u);
}

// -- client ----------------------------------------------------------------------------------

TEST(Http1Client, SendsRequestsAndReadsResponsesOnOneConnection) {
  run_test([]() -> task<void> {
    auto [client_end, server_end] = mem_stream::pair();
    exchange_result out;
    scope s;
    auto h = [](http1::request& req, http1::response& res) -> task<result<void>> {
      auto dl = deadline::after(5s);
      auto body = co_await req.read_body(1 << 20, dl);
      if (!body) co_return unexpected(body.error());
      if (req.target() == "/chunked") {
        auto st = co_await res.start(200, std::nullopt, dl);
        if (!st) co_return st;
        auto w = co_await res.write(as_bytes(std::string_view("part1,")), dl);
        if (!w) co_return w;
        w = co_await res.write(as_bytes(std::string_view("part2")), dl);
        if (!w) co_return w;
        co_return co_await res.finish(dl);
      }
      std::string reply = std::string(req.method()) + " " + std::string(req.target()) + " " + *body;
      co_return co_await res.send(201, reply, dl);
    };
    s.spawn(run_server(std::move(server_end), h, http1::server_options{}, out));
    http1::client c(any_stream(std::move(client_end)));
    c.set_host("example.org");
    auto dl = deadline::after(5s);
    http1::client::outgoing get;
    get.target = "/one";
    auto head = co_await c.send(get, dl);
    CO_ASSERT_OK(head);
    EXPECT_EQ(head->status, 201);
    EXPECT_EQ(head->fields.get("server"), std::string_view("strata"));
    auto body = co_await c.read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("GET /one "));
    EXPECT_TRUE(c.reusable());

    http1::client::outgoing post;
    post.method = "POST";
    post.target = "/two";
    post.body = "payload";
    head = co_await c.send(post, dl);
    CO_ASSERT_OK(head);
    body = co_await c.read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("POST /two payload"));

    http1::client::outgoing chunked;
    chunked.target = "/chunked";
    head = co_await c.send(chunked, dl);
    CO_ASSERT_OK(head);
    EXPECT_EQ(head->framing, http1::framing::chunked);
    body = co_await c.read_body(1024, dl);
    CO_ASSERT_OK(body);
    EXPECT_EQ(*body, std::string("part1,part2"));
    EXPECT_TRUE(c.reusable());

    // A body over the caller's limit is refused, and the connection is not reused.
    head = co_await c.send(post, dl);
    CO_ASSERT_OK(head);
    body = co_await c.read_body(4, dl);
    EXPECT_FALSE(body.has_value());
    if (!body) {
      EXPECT_EQ(body.error(), make_error_code(error::body_too_large));
    }
    EXPECT_FALSE(c.reusable());
    (void)co_await c.close(dl);
    (void)co_await s.join(dl);
    CO_ASSERT_TRUE(out.stats.has_value());
    EXPECT_EQ(out.stats->requests, 4u);
  });
}

TEST(Http1Client, RefusesBadRequestsBeforeSendingAnything) {
  run_test([]() -> task<void> {
    auto [client_end, server_end] = mem_stream::pair();
    http1::client c(any_stream(std::move(client_end)));
    auto dl = deadline::after(5s);
    http1::client::outgoing r;
    r.headers.push_back({"X", "a\r\nInjected: 1"});
    c.set_host("a");
    auto head = co_await c.send(r, dl);
    EXPECT_FALSE(head.has_value());
    http1::client::outgoing no_host;
    http1::client bare(any_stream(std::move(server_end)));
    head = co_await bare.send(no_host, dl);
    EXPECT_FALSE(head.has_value());
  });
}

TEST(Http1Client, ReportsAMalformedResponse) {
  run_test([]() -> task<void> {
    auto [client_end, server_end] = mem_stream::pair();
    http1::client c(any_stream(std::move(client_end)));
    c.set_host("a");
    auto dl = deadline::after(5s);
    (void)co_await server_end.write(as_bytes(std::string_view("HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n")),
                                    dl);
    http1::client::outgoing r;
    auto head = co_await c.send(r, dl);
    CO_ASSERT_TRUE(!head.has_value());
    EXPECT_EQ(head.error(), make_error_code(error::bad_field));
    EXPECT_FALSE(c.reusable());
  });
}

}  // namespace
}  // namespace strata::test
