// The CLI's HTTP commands end to end: `strata listen SPEC --serve DIR` (a file server on
// a pipeline that ends in '| http') against curl and `strata get`, and `strata get`
// over plain, unix and TLS pipelines, with its options and exit codes. The built binary
// (STRATA_CLI_PATH) runs as a child process (cli_support.hpp); a request/echo server for
// the methods the file server refuses runs in this process on a strata thread.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"
#include "strata/app/http1.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "support/co_test.hpp"
#include "support/pki.hpp"

namespace {

using namespace std::chrono_literals;
using namespace strata::test::cli;
namespace fs = std::filesystem;

const std::string strata_cli = STRATA_CLI_PATH;

std::optional<int> listening_port(const std::string& text) {
  auto at = text.find("listening on");
  if (at == std::string::npos) return std::nullopt;
  auto eol = text.find('\n', at);
  if (eol == std::string::npos) return std::nullopt;
  auto colon = text.rfind(':', eol);
  if (colon == std::string::npos || colon < at) return std::nullopt;
  int port = std::atoi(text.c_str() + colon + 1);
  if (port <= 0) return std::nullopt;
  return port;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

/// read_to_end reads `fd` until its end (or an error: give it a receive timeout).
std::string read_to_end(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return got;
    got.append(buf, static_cast<std::size_t>(n));
  }
}

class HttpCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    until_ = steady::now() + 15s;
    char pattern[] = "/tmp/strata-http-cli-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    www_ = dir_ / "www";
    fs::create_directories(www_ / "sub");
    write_file(www_ / "hello.txt", "hello over http\n");
    write_file(www_ / "index.html", "<h1>index</h1>\n");
    write_file(www_ / "sub" / "index.html", "<h1>sub</h1>\n");
    for (int i = 0; big_.size() < 512 * 1024; ++i) big_ += "row " + std::to_string(i) + "\n";
    write_file(www_ / "big.txt", big_);
    write_file(dir_ / "secret.txt", "not served\n");
    ASSERT_EQ(::access(strata_cli.c_str(), X_OK), 0) << "the CLI is not built: " << strata_cli;
    ASSERT_FALSE(strata::test::find_program("curl").empty()) << "curl is not installed";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<process> strata(std::vector<std::string> args) {
    args.insert(args.begin(), strata_cli);
    auto p = process::start(std::move(args));
    EXPECT_NE(p, nullptr);
    return p;
  }

  /// run starts strata with `args` and waits for it to finish.
  std::unique_ptr<process> run(std::vector<std::string> args) {
    auto p = strata(std::move(args));
    if (!p) return p;
    p->close_stdin();
    EXPECT_TRUE(p->wait_finished(until_)) << "strata did not finish; stderr: " << p->err();
    return p;
  }

  /// curl runs curl with `args` and waits for it to finish.
  std::unique_ptr<process> curl(std::vector<std::string> args) {
    args.insert(args.begin(), strata::test::find_program("curl"));
    auto p = process::start(std::move(args));
    EXPECT_NE(p, nullptr);
    if (!p) return p;
    p->close_stdin();
    EXPECT_TRUE(p->wait_finished(until_)) << "curl did not finish; stderr: " << p->err();
    return p;
  }

  /// serve starts `strata listen -v SPEC --serve www` and returns it with its port.
  std::unique_ptr<process> serve(const std::string& spec, int& port) {
    auto p = strata({"listen", "-v", spec, "--serve", www_.string()});
    if (!p) return p;
    bool ok = process::drive({p.get()}, until_,
                             [&] { return listening_port(p->err()).has_value() || p->exited(); });
    EXPECT_TRUE(ok && listening_port(p->err())) << "no 'listening on' line; stderr: " << p->err();
    port = listening_port(p->err()).value_or(0);
    return p;
  }

  /// stop ends a server with SIGTERM and checks that it exits with 143.
  void stop(process& p) {
    ASSERT_EQ(::kill(p.pid(), SIGTERM), 0);
    ASSERT_TRUE(p.wait_finished(until_)) << p.err();
    EXPECT_EQ(p.exit_code(), 128 + SIGTERM) << p.err();
  }

  steady::time_point until_;
  fs::path dir_;
  fs::path www_;
  std::string big_;
};

TEST_F(HttpCli, ServeAnswersCurlAndGet) {
  int port = 0;
  auto server = serve("tcp-listen:127.0.0.1:0 | http", port);
  ASSERT_NE(port, 0);
  std::string base = "http://127.0.0.1:" + std::to_string(port);

  auto get = run({"get", base + "/hello.txt"});
  EXPECT_EQ(get->exit_code(), 0) << get->err();
  EXPECT_EQ(get->out(), "hello over http\n");

  auto included = run({"get", "-i", base + "/"});
  EXPECT_EQ(included->exit_code(), 0) << included->err();
  EXPECT_EQ(included->out().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << included->out();
  EXPECT_NE(included->out().find("\r\nContent-Type: text/html; charset=utf-8\r\n"), std::string::npos);
  EXPECT_TRUE(included->out().ends_with("\r\n\r\n<h1>index</h1>\n")) << included->out();

  auto to_file = run({"get", "-o", (dir_ / "big.out").string(), base + "/big.txt"});
  EXPECT_EQ(to_file->exit_code(), 0) << to_file->err();
  EXPECT_EQ(to_file->out(), "");
  EXPECT_TRUE(read_file(dir_ / "big.out") == big_) << "the -o file differs";

  // A missing file: the error page is written, and the exit status is 22 (curl -f's).
  auto missing = run({"get", base + "/missing.txt"});
  EXPECT_EQ(missing->exit_code(), 22);
  EXPECT_EQ(missing->out(), "404 Not Found\n");

  auto range = curl({"-sS", "--http1.1", "-r", "4-9", "-w", " %{http_code}", base + "/big.txt"});
  EXPECT_EQ(range->out(), big_.substr(4, 6) + " 206");
  auto head = curl({"-sS", "--http1.1", "-I", base + "/sub/"});
  EXPECT_EQ(head->out().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head->out();
  auto redirect =
      curl({"-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", base + "/sub"});
  EXPECT_EQ(redirect->out(), "301 " + base + "/sub/");
  auto traversal = curl(
      {"-sS", "--http1.1", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", base + "/../secret.txt"});
  EXPECT_EQ(traversal->out(), "403");
  auto post = run({"get", "-d", "x=1", base + "/hello.txt"});
  EXPECT_EQ(post->exit_code(), 22);
  EXPECT_EQ(post->out(), "405 Method Not Allowed\n");

  stop(*server);
  // -v: one line per request, PEER METHOD TARGET STATUS BYTES.
  EXPECT_NE(server->err().find(" GET /hello.txt 200 16\n"), std::string::npos) << server->err();
  EXPECT_NE(server->err().find(" GET /missing.txt 404 "), std::string::npos) << server->err();
  EXPECT_NE(server->err().find(" POST /hello.txt 405 "), std::string::npos) << server->err();
  EXPECT_NE(server->err().find(" GET /big.txt 206 6\n"), std::string::npos) << server->err();
}

TEST_F(HttpCli, ServeHandlesConnectionsConcurrently) {
  int port = 0;
  auto server = serve("tcp-listen:127.0.0.1:0 | http1(header-timeout=10s)", port);
  ASSERT_NE(port, 0);
  // Two clients hold connections open, one silent and one half-way through a head; a
  // third is still answered at once.
  int silent = loopback_connect(port);
  int half = loopback_connect(port);
  ASSERT_GE(silent, 0);
  ASSERT_GE(half, 0);
  timeval patience{5, 0};  // every read below has a deadline
  ASSERT_EQ(::setsockopt(half, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience), 0);
  std::string partial = "GET /hello.txt HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::write(half, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  auto get = run({"get", "--timeout", "5s", "http://127.0.0.1:" + std::to_string(port) + "/hello.txt"});
  EXPECT_EQ(get->exit_code(), 0) << get->err();
  EXPECT_EQ(get->out(), "hello over http\n");
  // The half-way client finishes its request and is answered too.
  std::string rest = "Connection: close\r\n\r\n";
  ASSERT_EQ(::write(half, rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  std::string reply = read_to_end(half);
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply;
  EXPECT_EQ(reply.substr(reply.size() - 16), "hello over http\n");
  ::close(silent);
  ::close(half);
  stop(*server);
}

// --max-connections 2: two idle clients hold both places; a third connects (the kernel
// queues it) but is served only once one of the two has gone.
TEST_F(HttpCli, ServeWaitsAtMaxConnectionsUntilOneEnds) {
  auto server = strata(
      {"listen", "-v", "--max-connections", "2", "tcp-listen:127.0.0.1:0 | http1", "--serve", www_.string()});
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(process::drive({server.get()}, until_, [&] {
    return listening_port(server->err()).has_value();
  })) << server->err();
  int port = listening_port(server->err()).value_or(0);
  int first = loopback_connect(port);
  int second = loopback_connect(port);
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  // Both are accepted (and served) before the limit holds the next one back.
  ASSERT_TRUE(process::drive({server.get()}, until_, [&] {
    return server->err().find("serving 2 connections (--max-connections)") != std::string::npos;
  })) << server->err();
  int third = loopback_connect(port);
  ASSERT_GE(third, 0);
  std::string request = "GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(third, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  pollfd waiting{third, POLLIN, 0};
  EXPECT_EQ(::poll(&waiting, 1, 300), 0) << "the third connection was served past the limit";
  ::close(first);
  timeval patience{5, 0};
  ASSERT_EQ(::setsockopt(third, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience), 0);
  std::string reply = read_to_end(third);
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply;
  EXPECT_TRUE(reply.ends_with("hello over http\n")) << reply;
  ::close(second);
  ::close(third);
  stop(*server);

  auto refused =
      run({"listen", "--max-connections", "0", "tcp-listen:127.0.0.1:0 | http1", "--serve", www_.string()});
  EXPECT_EQ(refused->exit_code(), 2);
  EXPECT_NE(refused->err().find("--max-connections: not a count"), std::string::npos) << refused->err();
  auto without_serve = run({"listen", "--max-connections", "5", "tcp-listen:127.0.0.1:0"});
  EXPECT_EQ(without_serve->exit_code(), 2);
  EXPECT_NE(without_serve->err().find("--max-connections applies to --serve"), std::string::npos)
      << without_serve->err();
}

TEST_F(HttpCli, GetOverAUnixSocketPipeline) {
  auto sock = (dir_ / "http.sock").string();
  int port = 0;
  auto server = strata({"listen", "unix-listen:" + sock + " | http1", "--serve", www_.string()});
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->wait_err_line(until_, "listening on")) << server->err();
  (void)port;
  auto get = run({"get", "--via", "unix:" + sock + " | http", "http://localhost/sub/"});
  EXPECT_EQ(get->exit_code(), 0) << get->err();
  EXPECT_EQ(get->out(), "<h1>sub</h1>\n");
  // curl agrees on the same socket.
  auto c = curl({"-sS", "--http1.1", "--unix-socket", sock, "http://localhost/hello.txt"});
  EXPECT_EQ(c->out(), "hello over http\n");
  stop(*server);
  EXPECT_FALSE(fs::exists(sock)) << "the socket file is removed on exit";
}

// `| http` serves HTTP/2 to clients that ask for it (prior knowledge, the h2c Upgrade, ALPN
// h2 under tls) on the same listener as HTTP/1.1; `| http2` serves only HTTP/2; `strata
// get` speaks HTTP/2 over `| http2` and over https when the server agrees.
TEST_F(HttpCli, ServeAndGetSpeakHttp2) {
  const auto& pki = strata::test::pki();
  int port = 0;
  auto server = serve("tcp-listen:127.0.0.1:0 | http", port);
  ASSERT_NE(port, 0);
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  for (const char* mode : {"--http2-prior-knowledge", "--http2", "--http1.1"}) {
    auto c = curl({"-sS", mode, "-w", "|%{http_version}", base + "/hello.txt"});
    EXPECT_EQ(c->out(), std::string("hello over http\n|") + (std::string(mode) == "--http1.1" ? "1.1" : "2"))
        << mode << ": " << c->err();
  }
  auto range =
      curl({"-sS", "--http2-prior-knowledge", "-r", "4-9", "-w", " %{http_code}", base + "/big.txt"});
  EXPECT_EQ(range->out(), big_.substr(4, 6) + " 206");
  auto get =
      run({"get", "-i", "--via", "tcp:127.0.0.1:" + std::to_string(port) + " | http2", base + "/big.txt"});
  EXPECT_EQ(get->exit_code(), 0) << get->err();
  EXPECT_EQ(get->out().rfind("HTTP/2 200\r\n", 0), 0u) << get->out().substr(0, 200);
  EXPECT_TRUE(get->out().ends_with("\r\n\r\n" + big_)) << get->out().size();
  auto missing =
      run({"get", "--via", "tcp:127.0.0.1:" + std::to_string(port) + " | http2", base + "/missing"});
  EXPECT_EQ(missing->exit_code(), 22);
  stop(*server);
  EXPECT_NE(server->err().find(" GET /big.txt 206 6\n"), std::string::npos) << server->err();

  int h2_port = 0;
  auto only_h2 = serve("tcp-listen:127.0.0.1:0 | http2", h2_port);
  ASSERT_NE(h2_port, 0);
  auto prior = curl({"-sS", "--http2-prior-knowledge", "-w", "|%{http_version}",
                     "http://127.0.0.1:" + std::to_string(h2_port) + "/hello.txt"});
  EXPECT_EQ(prior->out(), "hello over http\n|2") << prior->err();
  stop(*only_h2);

  int tls_port = 0;
  auto secure = serve("tcp-listen:127.0.0.1:0 | tls(cert=" + pki.server.cert_file +
                          ", key=" + pki.server.key_file + ", alpn=\"h2,http/1.1\") | http",
                      tls_port);
  ASSERT_NE(tls_port, 0);
  auto https = run({"get", "-i", "--ca", pki.ca.cert_file,
                    "https://localhost:" + std::to_string(tls_port) + "/hello.txt"});
  EXPECT_EQ(https->exit_code(), 0) << https->err();
  EXPECT_EQ(https->out().rfind("HTTP/2 200\r\n", 0), 0u) << https->out();
  EXPECT_TRUE(https->out().ends_with("hello over http\n")) << https->out();
  stop(*secure);
}

TEST_F(HttpCli, GetOverTlsChecksTheCertificate) {
  const auto& pki = strata::test::pki();
  int port = 0;
  auto server = serve("tcp-listen:127.0.0.1:0 | tls(cert=" + pki.server.cert_file +
                          ", key=" + pki.server.key_file + ") | http",
                      port);
  ASSERT_NE(port, 0);
  std::string url = "https://localhost:" + std::to_string(port) + "/hello.txt";
  auto trusted = run({"get", "--ca", pki.ca.cert_file, url});
  EXPECT_EQ(trusted->exit_code(), 0) << trusted->err();
  EXPECT_EQ(trusted->out(), "hello over http\n");
  // The same through --via, by IP address (checked against the certificate's IP SAN).
  auto via = run({"get", "--via",
                  "tcp:127.0.0.1:" + std::to_string(port) + " | tls(ca=" + pki.ca.cert_file + ") | http1",
                  "https://127.0.0.1/big.txt"});
  EXPECT_EQ(via->exit_code(), 0) << via->err();
  EXPECT_TRUE(via->out() == big_) << "got " << via->out().size() << " bytes";
  // Without the CA the system store does not know the test CA.
  auto untrusted = run({"get", url});
  EXPECT_EQ(untrusted->exit_code(), 1);
  EXPECT_NE(untrusted->err().find("not trusted"), std::string::npos) << untrusted->err();
  auto insecure = run({"get", "-k", url});
  EXPECT_EQ(insecure->exit_code(), 0) << insecure->err();
  auto c = curl({"-sS", "--http1.1", "--cacert", pki.ca.cert_file, url});
  EXPECT_EQ(c->out(), "hello over http\n");
  stop(*server);
}

/// echo_server answers one connection's requests on a strata thread with what each
/// carried: "METHOD TARGET\n", the request's X- fields and Content-Type, then the body.
class echo_server {
 public:
  echo_server() {
    auto l = strata::listen("tcp-listen:127.0.0.1:0 | http1");
    EXPECT_TRUE(l);
    if (!l) return;
    listener_.emplace(std::move(*l));
    port = listener_->local_address()->port();
    thread_ = strata::test::on_strata_thread([this]() -> strata::task<void> { return run(); }, 15s);
  }
  int port = 0;

 private:
  strata::task<void> run() {
    auto conn = co_await listener_->accept(strata::deadline::after(10s));
    listener_->close();
    if (!conn) co_return;
    auto h = [](strata::http1::request& req,
                strata::http1::response& res) -> strata::task<strata::result<void>> {
      auto dl = strata::deadline::after(5s);
      auto body = co_await req.read_body(1 << 20, dl);
      if (!body) co_return strata::unexpected(body.error());
      std::string out = std::string(req.method()) + " " + std::string(req.target()) + "\n";
      for (const auto& f : req.head().fields.all()) {
        if (f.name.rfind("X-", 0) == 0 || f.name == "Content-Type" || f.name == "User-Agent")
          out += std::string(f.name) + ": " + std::string(f.value) + "\n";
      }
      out += *body;
      co_return co_await res.send(req.target() == "/fail" ? 500 : 200, out, dl);
    };
    (void)co_await strata::http1::serve(conn->take_stream(), h);
  }
  std::optional<strata::any_listener> listener_;
  std::jthread thread_;
};

TEST_F(HttpCli, GetSendsMethodsHeadersAndData) {
  {
    echo_server echo;
    ASSERT_NE(echo.port, 0);
    auto p = run({"get", "-X", "PUT", "-H", "X-One: 1", "--header", "X-Two:  two ", "-d", "payload=yes",
                  "http://127.0.0.1:" + std::to_string(echo.port) + "/put/here?q=1"});
    EXPECT_EQ(p->exit_code(), 0) << p->err();
    EXPECT_EQ(p->out(),
              "PUT /put/here?q=1\nX-One: 1\nX-Two: two\nContent-Type: application/x-www-form-urlencoded\n"
              "User-Agent: strata/0.1.0\npayload=yes");
  }
  {
    echo_server echo;
    write_file(dir_ / "data.json", "{\"a\": 1}");
    auto p =
        run({"get", "-v", "-H", "Content-Type: application/json", "-d", "@" + (dir_ / "data.json").string(),
             "http://127.0.0.1:" + std::to_string(echo.port) + "/fail"});
    EXPECT_EQ(p->exit_code(), 22) << p->err();
    EXPECT_EQ(p->out(), "POST /fail\nContent-Type: application/json\nUser-Agent: strata/0.1.0\n{\"a\": 1}");
    EXPECT_NE(p->err().find("> POST /fail HTTP/1.1\n"), std::string::npos) << p->err();
    EXPECT_NE(p->err().find("< HTTP/1.1 500 Internal Server Error\n"), std::string::npos) << p->err();
  }
}

TEST_F(HttpCli, RefusalsAreUsageErrors) {
  auto no_url = run({"get"});
  EXPECT_EQ(no_url->exit_code(), 2);
  EXPECT_NE(no_url->err().find("missing URL"), std::string::npos) << no_url->err();
  auto scheme = run({"get", "ftp://127.0.0.1/x"});
  EXPECT_EQ(scheme->exit_code(), 2);
  auto udp = run({"get", "--via", "udp:127.0.0.1:9 | http1", "http://x/"});
  EXPECT_EQ(udp->exit_code(), 2);
  EXPECT_NE(udp->err().find("http1 needs a stream below it, but udp:127.0.0.1:9 provides message"),
            std::string::npos)
      << udp->err();
  auto no_app = run({"get", "--via", "tcp:127.0.0.1:9", "http://x/"});
  EXPECT_EQ(no_app->exit_code(), 2);
  EXPECT_NE(no_app->err().find("add '| http1'"), std::string::npos) << no_app->err();
  auto refused = run({"get", "http://127.0.0.1:1/"});
  EXPECT_EQ(refused->exit_code(), 1);
  EXPECT_NE(refused->err().find("connection refused"), std::string::npos) << refused->err();

  auto no_serve = run({"listen", "tcp-listen:127.0.0.1:0 | http"});
  EXPECT_EQ(no_serve->exit_code(), 2);
  EXPECT_NE(no_serve->err().find("add --serve DIR"), std::string::npos) << no_serve->err();
  auto no_http = run({"listen", "tcp-listen:127.0.0.1:0", "--serve", www_.string()});
  EXPECT_EQ(no_http->exit_code(), 2);
  auto no_dir = run({"listen", "tcp-listen:127.0.0.1:0 | http", "--serve", (dir_ / "nope").string()});
  EXPECT_EQ(no_dir->exit_code(), 2);
  EXPECT_NE(no_dir->err().find("no such file or directory"), std::string::npos) << no_dir->err();
  auto connect = run({"connect", "tcp:127.0.0.1:9 | http"});
  EXPECT_EQ(connect->exit_code(), 2);
  EXPECT_NE(connect->err().find("strata get"), std::string::npos) << connect->err();

  auto help = run({"get", "--help"});
  EXPECT_EQ(help->exit_code(), 0);
  EXPECT_EQ(help->out().rfind("usage: strata get", 0), 0u);
}

TEST_F(HttpCli, CapsListsTheApplicationProtocols) {
  auto p = run({"caps"});
  ASSERT_EQ(p->exit_code(), 0);
  for (const char* name : {"\nhttp1 ", "\nhttp "}) {
    auto at = p->out().find(name);
    ASSERT_NE(at, std::string::npos) << name;
    auto line = p->out().substr(at + 1, p->out().find('\n', at + 1) - at - 1);
    EXPECT_NE(line.find("application"), std::string::npos) << line;
    EXPECT_NE(line.find("stream reliable ordered"), std::string::npos) << line;
    EXPECT_NE(line.find("max-body=16m"), std::string::npos) << line;
  }
  auto detail = run({"caps", "http"});
  EXPECT_NE(detail->out().find("role:      application (layer app, protocol http)"), std::string::npos)
      << detail->out();
  auto h2 = run({"caps", "http2"});
  EXPECT_NE(h2->out().find("role:      application (layer app, protocol http2)"), std::string::npos)
      << h2->out();
}

}  // namespace
