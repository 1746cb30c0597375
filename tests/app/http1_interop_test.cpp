// http1 against implementations the project did not write: curl --http1.1 against
// strata's server (a `tcp-listen | http1` pipeline, and `tcp-listen | tls | http1`), and
// strata's client against nginx.
//
// Every peer is started here, on a 127.0.0.1 port, and stopped by its PID
// (support/peer_process.hpp); a missing peer fails the test. The strata side runs on a
// thread of its own with its own event loop (test::on_strata_thread), because waiting
// for a peer blocks the test thread. Nothing sleeps: the test thread waits for the
// peers' exit or output, the strata thread for its sockets, all under deadlines.
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "strata/app/http1.hpp"
#include "strata/app/http1_files.hpp"
#include "strata/pipeline/application.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"
#include "support/co_test.hpp"
#include "support/peer_process.hpp"
#include "support/pki.hpp"

namespace strata {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using test::peer_process;
using test::pki;

/// patience bounds every wait of these tests, on either thread.
constexpr auto patience = 10s;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

/// scratch is a private temporary directory, removed with everything in it.
struct scratch {
  fs::path dir;
  scratch() {
    std::string tmpl = (fs::temp_directory_path() / "strata-http1-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
  }
  ~scratch() { fs::remove_all(dir); }
};

/// pattern_text is `size` bytes of numbered lines.
std::string pattern_text(std::size_t size) {
  std::string out;
  for (int i = 0; out.size() < size; ++i) out += "line " + std::to_string(i) + " of the test file\n";
  out.resize(size);
  return out;
}

// -- strata's server ---------------------------------------------------------------------------

/// server runs a listener pipeline ending in http1 on a strata thread: /echo answers
/// with what the request carried, /stop closes the listener (and so ends the thread once
/// its connections are done), everything else is a file of `files`. The counters are
/// read by the test thread after join().
class server {
 public:
  server(const std::string& spec, const fs::path& root) {
    pipeline_error error;
    auto p = pipeline::parse(spec, error);
    EXPECT_TRUE(p) << error.message;
    if (!p) return;
    settings_ = http1_settings_of(*p->application())->server;
    auto l = p->listen();
    EXPECT_TRUE(l) << l.error().message();
    if (!l) return;
    listener_.emplace(std::move(*l));
    port = listener_->local_address()->port();
    auto f = http1::file_server::open(root.string());
    EXPECT_TRUE(f);
    files_.emplace(*f);
    thread_ = test::on_strata_thread([this]() -> task<void> { return run(); }, 30s);
  }
  ~server() { stop(); }

  /// stop asks the server to end (a request for /stop) and waits for its thread.
  void stop() {
    if (!thread_.joinable()) return;
    if (!stopped_) {
      auto curl = peer_process::start(
          {"curl", "-sk", "--http1.1", scheme + "://127.0.0.1:" + std::to_string(port) + "/stop"});
      (void)curl.wait_exit(patience);
    }
    thread_.join();
  }

  int port = 0;
  std::string scheme = "http";
  std::atomic<int> connections{0};
  std::atomic<int> requests{0};
  std::atomic<std::uint64_t> sendfile_bytes{0};
  // What /echo saw last (written on the strata thread, read after stop()).
  std::string echo_framing;
  bool echo_expected_continue = false;

 private:
  task<void> run() {
    co_await with_scope([&](scope& s) -> task<void> {
      for (;;) {
        auto conn = co_await listener_->accept(deadline::never());
        if (!conn) break;
        ++connections;
        s.spawn(serve_one(std::move(*conn)));
      }
    });
  }

  task<void> serve_one(any_connection conn) {
    auto h = [this](http1::request& req, http1::response& res) -> task<result<void>> {
      ++requests;
      auto dl = deadline::after(patience);
      if (req.target() == "/stop") {
        stopped_ = true;
        listener_->close();
        res.close_after();
        co_return co_await res.send(200, "stopping\n", dl);
      }
      if (req.target() == "/echo") {
        const auto& head = req.head();
        echo_framing = head.framing == http1::framing::chunked          ? "chunked"
                       : head.framing == http1::framing::content_length ? "length"
                                                                        : "none";
        echo_expected_continue = head.expect_continue;
        auto body = co_await req.read_body(16 << 20, dl);
        if (!body) co_return unexpected(body.error());
        (void)res.set_header("Content-Type", "application/octet-stream");
        (void)res.set_header("X-Method", req.method());
        (void)res.set_header("X-Framing", echo_framing);
        co_return co_await res.send(200, *body, dl);
      }
      auto done = co_await files_->serve(req, res);
      if (!done) co_return unexpected(done.error());
      co_return result<void>{};
    };
    auto served = co_await http1::serve(conn.take_stream(), h, settings_);
    if (served) sendfile_bytes += served->sendfile_bytes;
  }

  std::optional<any_listener> listener_;
  std::optional<http1::file_server> files_;
  http1::server_options settings_;
  std::atomic<bool> stopped_{false};
  std::jthread thread_;
};

/// curl runs curl --http1.1 with `args` and returns it once it exited (its exit code
/// checked by the caller through `code`).
struct curl_run {
  int code = -1;
  std::string output;  // stdout and stderr, interleaved
};

curl_run curl(std::vector<std::string> args) {
  std::vector<std::string> argv = {"curl", "-sS", "--http1.1"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = peer_process::start(argv);
  curl_run out;
  if (!p) return out;
  auto code = p.wait_exit(patience);
  EXPECT_TRUE(code.has_value()) << "curl did not finish: " << p.command_line();
  out.code = code.value_or(-1);
  out.output = p.output();
  return out;
}

/// same compares two (possibly large) texts and, when they differ, says where rather
/// than printing them.
testing::AssertionResult same(const std::string& got, const std::string& want) {
  if (got == want) return testing::AssertionSuccess();
  std::size_t at = 0;
  while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
  return testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                     << "; first difference at byte " << at;
}

std::size_t count(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string_view::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

/// site is a directory to serve: a small text file, a 1 MiB file and an index.
struct site {
  scratch tmp;
  fs::path root;
  std::string big = pattern_text(1 << 20);
  site() {
    root = tmp.dir / "www";
    fs::create_directories(root);
    write_file(root / "hello.txt", "hello from strata\n");
    write_file(root / "big.txt", big);
    write_file(root / "index.html", "<h1>strata</h1>\n");
  }
};

TEST(Http1Interop, CurlGetsFilesOverKeptAliveConnections) {
  site s;
  server srv("tcp-listen:127.0.0.1:0 | http1", s.root);
  ASSERT_NE(srv.port, 0);
  std::string base = "http://127.0.0.1:" + std::to_string(srv.port);
  auto one = curl(
      {"-o", (s.tmp.dir / "hello.out").string(), "-w", "%{http_code} %{content_type}", base + "/hello.txt"});
  EXPECT_EQ(one.code, 0) << one.output;
  EXPECT_EQ(one.output, "200 text/plain; charset=utf-8");
  EXPECT_EQ(read_file(s.tmp.dir / "hello.out"), "hello from strata\n");

  // Three URLs in one curl command: one connection, reused twice.
  int before = srv.connections;
  auto three = curl({"-v", "-o", (s.tmp.dir / "1.out").string(), base + "/hello.txt", "-o",
                     (s.tmp.dir / "2.out").string(), base + "/big.txt", "-o", (s.tmp.dir / "3.out").string(),
                     base + "/"});
  EXPECT_EQ(three.code, 0) << three.output;
  EXPECT_EQ(count(three.output, "Re-using existing connection"), 2u) << three.output;
  EXPECT_TRUE(same(read_file(s.tmp.dir / "2.out"), s.big));
  EXPECT_EQ(read_file(s.tmp.dir / "3.out"), "<h1>strata</h1>\n");
  EXPECT_EQ(srv.connections - before, 1);

  auto missing = curl({"-o", "/dev/null", "-w", "%{http_code}", base + "/missing.txt"});
  EXPECT_EQ(missing.output, "404");
  srv.stop();
  // The files went out with sendfile(2): nothing lies between http1 and the socket.
  EXPECT_GE(srv.sendfile_bytes, s.big.size());
}

TEST(Http1Interop, CurlHeadRangeAndConditionalRequests) {
  site s;
  server srv("tcp-listen:127.0.0.1:0 | http", s.root);
  ASSERT_NE(srv.port, 0);
  std::string base = "http://127.0.0.1:" + std::to_string(srv.port);

  auto head = curl({"-I", base + "/big.txt"});
  EXPECT_EQ(head.code, 0) << head.output;
  EXPECT_EQ(head.output.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head.output;
  EXPECT_NE(head.output.find("Content-Length: 1048576\r\n"), std::string::npos) << head.output;
  EXPECT_NE(head.output.find("Accept-Ranges: bytes\r\n"), std::string::npos);

  auto range =
      curl({"-r", "100-199", "-D", "-", "-o", (s.tmp.dir / "range.out").string(), base + "/big.txt"});
  EXPECT_EQ(range.code, 0) << range.output;
  EXPECT_EQ(range.output.rfind("HTTP/1.1 206 Partial Content\r\n", 0), 0u) << range.output;
  EXPECT_NE(range.output.find("Content-Range: bytes 100-199/1048576\r\n"), std::string::npos) << range.output;
  EXPECT_EQ(read_file(s.tmp.dir / "range.out"), s.big.substr(100, 100));

  auto past = curl({"-r", "2000000-", "-o", "/dev/null", "-w", "%{http_code}", base + "/big.txt"});
  EXPECT_EQ(past.output, "416");

  // -z FILE sends If-Modified-Since with the file's time: the served file's own.
  auto same = curl(
      {"-z", (s.root / "hello.txt").string(), "-o", "/dev/null", "-w", "%{http_code}", base + "/hello.txt"});
  EXPECT_EQ(same.output, "304");
  auto older = curl(
      {"-z", "Sun, 06 Nov 1994 08:49:37 GMT", "-o", "/dev/null", "-w", "%{http_code}", base + "/hello.txt"});
  EXPECT_EQ(older.output, "200");
}

TEST(Http1Interop, CurlUploadsWithLengthChunkedAndExpectContinue) {
  site s;
  server srv("tcp-listen:127.0.0.1:0 | http1(max-body=4m)", s.root);
  ASSERT_NE(srv.port, 0);
  std::string url = "http://127.0.0.1:" + std::to_string(srv.port) + "/echo";
  auto upload = s.tmp.dir / "upload.bin";
  write_file(upload, pattern_text(300 * 1024));

  auto post = curl({"--data-binary", "@" + upload.string(), "-D", (s.tmp.dir / "post.head").string(), "-o",
                    (s.tmp.dir / "post.out").string(), url});
  EXPECT_EQ(post.code, 0) << post.output;
  EXPECT_TRUE(same(read_file(s.tmp.dir / "post.out"), read_file(upload)));
  auto post_head = read_file(s.tmp.dir / "post.head");
  EXPECT_NE(post_head.find("X-Method: POST\r\n"), std::string::npos) << post_head;
  EXPECT_NE(post_head.find("X-Framing: length\r\n"), std::string::npos) << post_head;

  auto chunked =
      curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + upload.string(), "-D",
            (s.tmp.dir / "chunked.head").string(), "-o", (s.tmp.dir / "chunked.out").string(), url});
  EXPECT_EQ(chunked.code, 0) << chunked.output;
  EXPECT_TRUE(same(read_file(s.tmp.dir / "chunked.out"), read_file(upload)));
  EXPECT_NE(read_file(s.tmp.dir / "chunked.head").find("X-Framing: chunked\r\n"), std::string::npos);

  // curl waits for our 100 Continue before the body (it would wait a second otherwise,
  // and -v shows the interim response).
  auto expect = curl({"-v", "-H", "Expect: 100-continue", "--expect100-timeout", "5", "--data-binary",
                      "@" + upload.string(), "-o", (s.tmp.dir / "expect.out").string(), url});
  EXPECT_EQ(expect.code, 0) << expect.output;
  EXPECT_NE(expect.output.find("< HTTP/1.1 100 Continue"), std::string::npos) << expect.output;
  EXPECT_TRUE(same(read_file(s.tmp.dir / "expect.out"), read_file(upload)));
  srv.stop();
  EXPECT_TRUE(srv.echo_expected_continue);

  // Over the body limit: 413, and curl is told to close.
  server small("tcp-listen:127.0.0.1:0 | http1(max-body=1k)", s.root);
  auto big = curl({"--data-binary", "@" + upload.string(), "-o", "/dev/null", "-w", "%{http_code}",
                   "http://127.0.0.1:" + std::to_string(small.port) + "/echo"});
  EXPECT_EQ(big.output, "413") << big.output;
}

TEST(Http1Interop, CurlOverTlsGetsFilesThroughTheStreamNotSendfile) {
  site s;
  server srv("tcp-listen:127.0.0.1:0 | tls(cert=" + pki().server.cert_file +
                 ", key=" + pki().server.key_file + ") | http1",
             s.root);
  ASSERT_NE(srv.port, 0);
  srv.scheme = "https";
  std::string port = std::to_string(srv.port);
  // Two transfers in one command (--next): the second reuses the connection.
  std::vector<std::string> args = {"--cacert",
                                   pki().ca.cert_file,
                                   "--resolve",
                                   "localhost:" + port + ":127.0.0.1",
                                   "-w",
                                   "%{http_code} %{ssl_verify_result}",
                                   "-o",
                                   (s.tmp.dir / "big.out").string(),
                                   "https://localhost:" + port + "/big.txt",
                                   "--next"};
  args.insert(args.end(), {"--http1.1", "--cacert", pki().ca.cert_file, "--resolve",
                           "localhost:" + port + ":127.0.0.1", "-w", " %{http_code}", "-r", "10-19", "-o",
                           (s.tmp.dir / "range.out").string(), "https://localhost:" + port + "/big.txt"});
  auto got = curl(args);
  EXPECT_EQ(got.code, 0) << got.output;
  EXPECT_EQ(got.output, "200 0 206");
  EXPECT_TRUE(same(read_file(s.tmp.dir / "big.out"), s.big));
  EXPECT_EQ(read_file(s.tmp.dir / "range.out"), s.big.substr(10, 10));
  srv.stop();
  EXPECT_EQ(srv.connections, 2);  // curl's two transfers on one connection, and the stop request
  EXPECT_EQ(srv.sendfile_bytes, 0u) << "tls lies between http1 and the socket";
}

// -- strata's client against nginx -------------------------------------------------------------

/// nginx runs nginx-light with a private configuration in `dir`: one process (no
/// daemon, no master), listening on 127.0.0.1:`port`, logs and pid file in `dir`,
/// serving `dir`/www, with /chunked/ passed through sub_filter (which drops the length,
/// so nginx sends the body chunked).
struct nginx_peer {
  peer_process process;
  int port = 0;

  nginx_peer(const fs::path& dir) {
    port = test::free_loopback_port(SOCK_STREAM);
    fs::create_directories(dir / "tmp");
    std::string d = dir.string();
    write_file(dir / "nginx.conf",
               "daemon off;\nmaster_process off;\nworker_processes 1;\n"
               "error_log " +
                   d + "/error.log info;\npid " + d +
                   "/nginx.pid;\n"
                   "events { worker_connections 64; }\n"
                   "http {\n"
                   "  access_log off;\n"
                   "  client_body_temp_path " +
                   d +
                   "/tmp/body;\n"
                   "  proxy_temp_path " +
                   d +
                   "/tmp/proxy;\n"
                   "  fastcgi_temp_path " +
                   d +
                   "/tmp/fastcgi;\n"
                   "  uwsgi_temp_path " +
                   d +
                   "/tmp/uwsgi;\n"
                   "  scgi_temp_path " +
                   d +
                   "/tmp/scgi;\n"
                   "  types { text/plain txt; text/html html; }\n"
                   "  server {\n"
                   "    listen 127.0.0.1:" +
                   std::to_string(port) +
                   ";\n"
                   "    root " +
                   d +
                   "/www;\n"
                   "    location /chunked/ {\n"
                   "      sub_filter 'line' 'LINE';\n"
                   "      sub_filter_once off;\n"
                   "      sub_filter_types text/plain;\n"
                   "    }\n"
                   "  }\n"
                   "}\n");
    process = peer_process::start({"nginx", "-p", d, "-c", d + "/nginx.conf", "-e", d + "/error.log"});
  }
};

/// fetch_all sends GETs for `targets` one after another on one connection to
/// 127.0.0.1:`port` with strata's client, and records each response.
struct fetched {
  int status = 0;
  http1::framing framing = http1::framing::none;
  std::string body;
  std::string server;
  bool reusable = false;
};

task<void> fetch_all(int port, std::vector<std::string> targets, std::vector<fetched>& out) {
  auto dl = deadline::after(patience);
  auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port) + " | http1", dl);
  CO_ASSERT_OK(conn);
  http1::client c(conn->take_stream());
  c.set_host("localhost");
  for (const auto& target : targets) {
    http1::client::outgoing get;
    get.target = target;
    auto head = co_await c.send(get, dl);
    CO_ASSERT_OK(head);
    fetched one;
    one.status = head->status;
    one.framing = head->framing;
    one.server = std::string(head->fields.get("server").value_or(""));
    auto body = co_await c.read_body(4 << 20, dl);
    CO_ASSERT_OK(body);
    one.body = std::move(*body);
    one.reusable = c.reusable();
    out.push_back(std::move(one));
  }
  (void)co_await c.close(dl);
}

TEST(Http1Interop, ClientFetchesFilesAndAChunkedResponseFromNginx) {
  scratch tmp;
  fs::create_directories(tmp.dir / "www" / "chunked");
  auto text = pattern_text(200 * 1024);
  write_file(tmp.dir / "www" / "file.txt", text);
  write_file(tmp.dir / "www" / "chunked" / "file.txt", text);
  nginx_peer nginx(tmp.dir);
  ASSERT_TRUE(nginx.process);
  ASSERT_TRUE(test::wait_tcp_listening(nginx.port, patience)) << read_file(tmp.dir / "error.log");
  std::vector<fetched> got;
  {
    auto strata_side = test::on_strata_thread([&]() -> task<void> {
      return fetch_all(nginx.port, {"/file.txt", "/chunked/file.txt", "/missing.txt", "/file.txt"}, got);
    });
  }
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].status, 200);
  EXPECT_EQ(got[0].framing, http1::framing::content_length);
  EXPECT_TRUE(same(got[0].body, text));
  EXPECT_EQ(got[0].server.rfind("nginx", 0), 0u) << got[0].server;
  EXPECT_TRUE(got[0].reusable);
  EXPECT_EQ(got[1].status, 200);
  EXPECT_EQ(got[1].framing, http1::framing::chunked);
  std::string replaced = text;
  for (auto at = replaced.find("line"); at != std::string::npos; at = replaced.find("line", at + 4))
    replaced.replace(at, 4, "LINE");
  EXPECT_TRUE(same(got[1].body, replaced));
  EXPECT_EQ(got[2].status, 404);
  EXPECT_TRUE(same(got[3].body, text));  // still the same connection
  EXPECT_EQ(nginx.process.stop(), 0);
}

}  // namespace
}  // namespace strata
