// http1_files and response::send_file: target decoding (percent escapes, "..", absolute
// form), Range parsing against sizes, the three HTTP-date forms, content types; the file
// server over an in-memory stream (pread + write) and over loopback TCP (sendfile(2),
// counted in serve_stats), with ranges, conditional requests, HEAD, directories,
// traversal and symbolic links out of the directory refused.
#include "strata/app/http1_files.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/mem_stream.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace {

namespace fs = std::filesystem;
using http1::decode_path;
using http1::parse_range;
using http1::path_error;
using http1::range_request;

// -- the pieces ------------------------------------------------------------------------------

TEST(Http1Files, DecodesTargetsIntoRelativePaths) {
  auto p = decode_path("/a/b%20c/./d//e.txt?x=1#frag");
  EXPECT_EQ(p.error, path_error::none);
  EXPECT_EQ(p.relative, "a/b c/d/e.txt");
  EXPECT_EQ(p.raw_path, "/a/b%20c/./d//e.txt");
  EXPECT_EQ(p.query, "x=1");
  EXPECT_FALSE(p.trailing_slash);
  EXPECT_EQ(decode_path("/").relative, "");
  EXPECT_TRUE(decode_path("/dir/").trailing_slash);
  EXPECT_EQ(decode_path("/dir/").relative, "dir");
  EXPECT_EQ(decode_path("http://example.org/x/y?q").relative, "x/y");
  EXPECT_EQ(decode_path("http://example.org").relative, "");
  // Escapes are decoded once: %252e stays "%2e", a name, not a dot.
  EXPECT_EQ(decode_path("/%252e%252e/x").relative, "%2e%2e/x");
}

TEST(Http1Files, RefusesTraversalAndMalformedTargets) {
  EXPECT_EQ(decode_path("/../etc/passwd").error, path_error::traversal);
  EXPECT_EQ(decode_path("/a/../../b").error, path_error::traversal);
  EXPECT_EQ(decode_path("/a/%2e%2e/%2E%2E/b").error, path_error::traversal);
  EXPECT_EQ(decode_path("/a/..").error, path_error::traversal);
  EXPECT_EQ(decode_path("/a/%2e./b").error, path_error::traversal);
  EXPECT_EQ(decode_path("/a%2f..%2fb").error, path_error::traversal);  // an escaped '/' is a '/'
  EXPECT_EQ(decode_path("/a%00b").error, path_error::malformed);
  EXPECT_EQ(decode_path("/a%2").error, path_error::malformed);
  EXPECT_EQ(decode_path("/a%zz").error, path_error::malformed);
  EXPECT_EQ(decode_path("*").error, path_error::malformed);
  EXPECT_EQ(decode_path("example.org:443").error, path_error::malformed);
  EXPECT_EQ(decode_path("").error, path_error::malformed);
  // "..." and "..x" are names.
  EXPECT_EQ(decode_path("/.../..x").relative, ".../..x");
}

TEST(Http1Files, ParsesRangesAgainstTheSize) {
  auto r = parse_range("bytes=0-99", 1000);
  EXPECT_EQ(r.what, range_request::partial);
  EXPECT_EQ(r.range.first, 0u);
  EXPECT_EQ(r.range.length, 100u);
  r = parse_range("bytes=900-", 1000);
  EXPECT_EQ(r.range.first, 900u);
  EXPECT_EQ(r.range.length, 100u);
  r = parse_range("bytes=-300", 1000);
  EXPECT_EQ(r.range.first, 700u);
  EXPECT_EQ(r.range.length, 300u);
  r = parse_range("bytes=-5000", 1000);  // a suffix longer than the file: all of it
  EXPECT_EQ(r.range.first, 0u);
  EXPECT_EQ(r.range.length, 1000u);
  r = parse_range("bytes=990-5000", 1000);  // the last position is clamped
  EXPECT_EQ(r.range.length, 10u);
  r = parse_range("Bytes = 5-5", 1000);
  EXPECT_EQ(r.what, range_request::partial);
  EXPECT_EQ(r.range.length, 1u);
  EXPECT_EQ(parse_range("bytes=1000-", 1000).what, range_request::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=-0", 1000).what, range_request::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=0-", 0).what, range_request::unsatisfiable);
  // Ignored: malformed, another unit, first > last, several ranges.
  EXPECT_EQ(parse_range("bytes=a-b", 1000).what, range_request::whole);
  EXPECT_EQ(parse_range("items=0-1", 1000).what, range_request::whole);
  EXPECT_EQ(parse_range("bytes=5-1", 1000).what, range_request::whole);
  EXPECT_EQ(parse_range("bytes=0-1,5-6", 1000).what, range_request::whole);
  EXPECT_EQ(parse_range("bytes=", 1000).what, range_request::whole);
  EXPECT_EQ(parse_range("bytes=99999999999999999999-", 1000).what, range_request::whole);
}

TEST(Http1Files, ParsesTheThreeDateForms) {
  auto t = http1::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 784111777);
  EXPECT_EQ(http1::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
  EXPECT_EQ(http1::parse_http_date("Sun Nov  6 08:49:37 1994"), t);
  EXPECT_EQ(http1::format_http_date(*t), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_FALSE(http1::parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"));
  EXPECT_FALSE(http1::parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"));
  EXPECT_FALSE(http1::parse_http_date("Sun, 06 Nov 1994 28:49:37 GMT"));
  EXPECT_FALSE(http1::parse_http_date("yesterday"));
  EXPECT_FALSE(http1::parse_http_date(""));
}

TEST(Http1Files, ContentTypesByExtension) {
  EXPECT_EQ(http1::content_type("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(http1::content_type("a/b/STYLE.CSS"), "text/css; charset=utf-8");
  EXPECT_EQ(http1::content_type("x.png"), "image/png");
  EXPECT_EQ(http1::content_type("app.wasm"), "application/wasm");
  EXPECT_EQ(http1::content_type("README"), "application/octet-stream");
  EXPECT_EQ(http1::content_type(".hidden"), "application/octet-stream");
  EXPECT_EQ(http1::content_type("dir.d/file"), "application/octet-stream");
}

// -- the server ------------------------------------------------------------------------------

/// site is a temporary directory of files to serve, and one outside it.
struct site {
  fs::path base;
  fs::path root;
  std::string big;  // 300 KiB of a pattern
  site() {
    std::string tmpl = (fs::temp_directory_path() / "strata-files-XXXXXX").string();
    base = mkdtemp(tmpl.data());
    root = base / "www";
    fs::create_directories(root / "docs" / "empty");
    write(root / "hello.txt", "hello, world\n");
    write(root / "index.html", "<h1>home</h1>\n");
    write(root / "docs" / "index.html", "<h1>docs</h1>\n");
    for (int i = 0; big.size() < 300 * 1024; ++i) big += "line " + std::to_string(i) + "\n";
    write(root / "big.bin", big);
    write(base / "secret.txt", "outside\n");
    fs::create_symlink("../secret.txt", root / "escape.txt");
    fs::create_symlink(base, root / "escape-dir");
    fs::create_symlink("hello.txt", root / "alias.txt");
    ::mkfifo((root / "fifo").c_str(), 0600);
  }
  ~site() { fs::remove_all(base); }
  static void write(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
  }
};

/// reply is one parsed response: status, head text and body.
struct reply {
  int status = 0;
  std::string head;
  std::string body;
  bool has(std::string_view field_line) const {
    return head.find(std::string(field_line) + "\r\n") != std::string::npos;
  }
};

reply split(const std::string& raw) {
  reply r;
  auto end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || end == std::string::npos) return r;
  r.status = std::atoi(raw.substr(9, 3).c_str());
  r.head = raw.substr(0, end + 2);
  r.body = raw.substr(end + 4);
  return r;
}

task<std::string> read_all(any_stream& s, deadline dl) {
  std::string got;
  std::array<std::byte, 16384> buf{};
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) break;
    got.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  co_return got;
}

/// fetch sends one request ("Connection: close" added) to a file server over `client`
/// and returns the response; `server_end` is served by `files`.
task<void> fetch_over(any_stream client, any_stream server_end, http1::file_server files, std::string request,
                      reply& out, http1::serve_stats& stats) {
  scope s;
  s.spawn(call([&]() -> task<void> {
    auto served = co_await http1::serve(std::move(server_end), files.as_handler());
    if (served) stats = *served;
  }));
  auto dl = deadline::after(5s);
  auto w = co_await client.write(as_bytes(request), dl);
  EXPECT_TRUE(w.has_value());
  out = split(co_await read_all(client, dl));
  (void)co_await client.close(dl);
  (void)co_await s.join(dl);
}

reply fetch_mem(const http1::file_server& files, std::string method, std::string target,
                std::string extra = {}, http1::serve_stats* stats_out = nullptr) {
  reply out;
  http1::serve_stats stats;
  std::string request =
      method + " " + target + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + "\r\n";
  run_test([&]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    co_await fetch_over(any_stream(std::move(a)), any_stream(std::move(b)), files, request, out, stats);
  });
  if (stats_out) *stats_out = stats;
  return out;
}

http1::file_server open_site(const site& s) {
  auto files = http1::file_server::open(s.root.string());
  EXPECT_TRUE(files.has_value());
  return *files;
}

TEST(Http1FileServer, ServesAFileWithItsTypeAndDate) {
  site s;
  auto files = open_site(s);
  http1::serve_stats stats;
  auto r = fetch_mem(files, "GET", "/hello.txt", {}, &stats);
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body, "hello, world\n");
  EXPECT_TRUE(r.has("Content-Type: text/plain; charset=utf-8")) << r.head;
  EXPECT_TRUE(r.has("Content-Length: 13"));
  EXPECT_TRUE(r.has("Accept-Ranges: bytes"));
  auto mtime = fs::last_write_time(s.root / "hello.txt");
  (void)mtime;
  EXPECT_NE(r.head.find("\r\nLast-Modified: "), std::string::npos);
  // Over an in-memory stream there is no descriptor: pread + write.
  EXPECT_EQ(stats.sendfile_bytes, 0u);
  EXPECT_EQ(fetch_mem(files, "GET", "/big.bin").body, s.big);
  EXPECT_EQ(fetch_mem(files, "GET", "/alias.txt").body, "hello, world\n");  // a link inside
}

TEST(Http1FileServer, HeadGetsTheHeadOnly) {
  site s;
  auto r = fetch_mem(open_site(s), "HEAD", "/big.bin", "Range: bytes=0-9\r\n");
  EXPECT_EQ(r.status, 200);  // Range applies to GET only
  EXPECT_TRUE(r.has("Content-Length: " + std::to_string(s.big.size())));
  EXPECT_EQ(r.body, "");
}

TEST(Http1FileServer, AnswersRanges) {
  site s;
  auto files = open_site(s);
  auto r = fetch_mem(files, "GET", "/big.bin", "Range: bytes=100-199\r\n");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, s.big.substr(100, 100));
  EXPECT_TRUE(r.has("Content-Range: bytes 100-199/" + std::to_string(s.big.size()))) << r.head;
  EXPECT_TRUE(r.has("Content-Length: 100"));
  r = fetch_mem(files, "GET", "/big.bin", "Range: bytes=-10\r\n");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, s.big.substr(s.big.size() - 10));
  r = fetch_mem(files, "GET", "/hello.txt", "Range: bytes=13-\r\n");
  EXPECT_EQ(r.status, 416);
  EXPECT_TRUE(r.has("Content-Range: bytes */13")) << r.head;
  r = fetch_mem(files, "GET", "/hello.txt", "Range: bytes=0-1,3-4\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello, world\n");
  // If-Range with another date: the whole file.
  r = fetch_mem(files, "GET", "/hello.txt",
                "Range: bytes=0-4\r\nIf-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
  EXPECT_EQ(r.status, 200);
}

TEST(Http1FileServer, AnswersIfModifiedSinceWith304) {
  site s;
  auto files = open_site(s);
  auto first = fetch_mem(files, "GET", "/hello.txt");
  auto at = first.head.find("Last-Modified: ");
  ASSERT_NE(at, std::string::npos);
  auto date = first.head.substr(at + 15, 29);
  auto r = fetch_mem(files, "GET", "/hello.txt", "If-Modified-Since: " + date + "\r\n");
  EXPECT_EQ(r.status, 304) << r.head;
  EXPECT_EQ(r.body, "");
  EXPECT_TRUE(r.has("Last-Modified: " + date));
  r = fetch_mem(files, "GET", "/hello.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
  EXPECT_EQ(r.status, 200);
  r = fetch_mem(files, "GET", "/hello.txt", "If-Modified-Since: garbage\r\n");
  EXPECT_EQ(r.status, 200);
}

TEST(Http1FileServer, DirectoriesRedirectAndServeTheirIndex) {
  site s;
  auto files = open_site(s);
  EXPECT_EQ(fetch_mem(files, "GET", "/").body, "<h1>home</h1>\n");
  auto r = fetch_mem(files, "GET", "/docs/");
  EXPECT_EQ(r.body, "<h1>docs</h1>\n");
  EXPECT_TRUE(r.has("Content-Type: text/html; charset=utf-8"));
  r = fetch_mem(files, "GET", "/docs?x=1");
  EXPECT_EQ(r.status, 301);
  EXPECT_TRUE(r.has("Location: /docs/?x=1")) << r.head;
  EXPECT_EQ(fetch_mem(files, "GET", "/docs/empty/").status, 404);  // no index, no listing
}

TEST(Http1FileServer, RefusesWhatIsNotAFileOfTheDirectory) {
  site s;
  auto files = open_site(s);
  EXPECT_EQ(fetch_mem(files, "GET", "/missing.txt").status, 404);
  EXPECT_EQ(fetch_mem(files, "GET", "/hello.txt/x").status, 404);
  EXPECT_EQ(fetch_mem(files, "GET", "/../secret.txt").status, 403);
  EXPECT_EQ(fetch_mem(files, "GET", "/docs/%2e%2e/%2e%2e/secret.txt").status, 403);
  EXPECT_EQ(fetch_mem(files, "GET", "/escape.txt").status, 403);  // a link out of the directory
  EXPECT_EQ(fetch_mem(files, "GET", "/escape-dir/secret.txt").status, 403);
  EXPECT_EQ(fetch_mem(files, "GET", "/fifo").status, 403);
  EXPECT_EQ(fetch_mem(files, "GET", "/a%zz").status, 400);
  auto r = fetch_mem(files, "POST", "/hello.txt");
  EXPECT_EQ(r.status, 405);
  EXPECT_TRUE(r.has("Allow: GET, HEAD"));
  EXPECT_EQ(fetch_mem(files, "DELETE", "/hello.txt").status, 405);
}

TEST(Http1FileServer, OpeningAMissingDirectoryFails) {
  auto files = http1::file_server::open("/nonexistent/strata/www");
  ASSERT_FALSE(files.has_value());
  EXPECT_EQ(files.error(), std::errc::no_such_file_or_directory);
}

TEST(Http1FileServer, UsesSendfileOverAPlainSocketAndNotOverFraming) {
  site s;
  auto files = open_site(s);
  reply r;
  http1::serve_stats stats;
  run_test([&]() -> task<void> {
    auto listener = strata::listen("tcp-listen:127.0.0.1:0");
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    auto dl = deadline::after(5s);
    auto client = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port), dl);
    CO_ASSERT_OK(client);
    auto accepted = co_await listener->accept(dl);
    CO_ASSERT_OK(accepted);
    std::string request = "GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\nRange: bytes=10-\r\n\r\n";
    co_await fetch_over(client->take_stream(), accepted->take_stream(), files, request, r, stats);
    listener->close();
  });
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, s.big.substr(10));
  EXPECT_EQ(stats.sendfile_bytes, s.big.size() - 10);
}

TEST(Http1FileServer, SendFileWritesChunkedBodiesAndRefusesTooMuch) {
  site s;
  int fd = ::open((s.root / "hello.txt").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string raw;
  run_test([&]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    auto h = [fd](http1::request&, http1::response& res) -> task<result<void>> {
      auto dl = deadline::after(5s);
      auto st = co_await res.start(200, std::nullopt, dl);
      if (!st) co_return st;
      auto sent = co_await res.send_file(fd, 0, 5, dl);
      if (!sent) co_return sent;
      sent = co_await res.send_file(fd, 5, 8, dl);
      if (!sent) co_return sent;
      // The file ends before the 20 bytes asked for: the body is cut.
      auto past = co_await res.send_file(fd, 10, 20, dl);
      EXPECT_EQ(past.error(), errc::end_of_stream);
      auto finished = co_await res.finish(dl);  // refused: the body was cut
      EXPECT_EQ(finished.error(), errc::invalid_argument);
      co_return result<void>{};
    };
    scope sc;
    sc.spawn(call([&]() -> task<void> { (void)co_await http1::serve(any_stream(std::move(b)), h); }));
    any_stream client(std::move(a));
    auto dl = deadline::after(5s);
    std::string request = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    (void)co_await client.write(as_bytes(request), dl);
    raw = co_await read_all(client, dl);
    (void)co_await sc.join(dl);
  });
  ::close(fd);
  EXPECT_NE(raw.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << raw;
  EXPECT_NE(raw.find("\r\n\r\n5\r\nhello\r\n8\r\n, world\n\r\n14\r\n"), std::string::npos) << raw;
  EXPECT_EQ(raw.substr(raw.size() - 7), "14\r\nld\n") << "a cut body has no last chunk";
}

TEST(Http1FileServer, SendFileBeforeStartIsRefused) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    bool checked = false;
    auto h = [&checked](http1::request&, http1::response& res) -> task<result<void>> {
      auto dl = deadline::after(5s);
      auto refused = co_await res.send_file(0, 0, 1, dl);
      EXPECT_EQ(refused.error(), errc::invalid_argument);
      auto st = co_await res.start(200, std::uint64_t{1}, dl);
      if (!st) co_return st;
      auto too_long = co_await res.send_file(0, 0, 2, dl);
      EXPECT_EQ(too_long.error(), errc::invalid_argument);
      checked = true;
      co_return co_await res.send_file(-1, 0, 1, dl);
    };
    scope sc;
    sc.spawn(call([&]() -> task<void> { (void)co_await http1::serve(any_stream(std::move(b)), h); }));
    any_stream client(std::move(a));
    auto dl = deadline::after(5s);
    std::string request = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    (void)co_await client.write(as_bytes(request), dl);
    (void)co_await read_all(client, dl);
    (void)co_await sc.join(dl);
    EXPECT_TRUE(checked);
  });
}

}  // namespace
}  // namespace strata::test
