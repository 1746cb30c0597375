// End-to-end tests of what the `strata` tool makes of hostile or careless input: options
// without values, huge specs, specs and peers that fail in ways whose cause the report
// must name, and signals that must unwind like SIGTERM. The built binary
// (STRATA_CLI_PATH) runs as a child with pipes on its standard streams; the test waits on
// poll() against a deadline, never on sleeps, and kills the child by its PID in teardown
// (the harness in cli_support.hpp).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli_support.hpp"

namespace {

using namespace std::chrono_literals;
using namespace strata::test::cli;

// local_port is the port a connected socket was bound to (what strata calls the peer).
int local_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// reset closes `fd` with a TCP reset (SO_LINGER 0) instead of an orderly FIN.
void reset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

std::optional<int> listening_port(const std::string& text) {
  auto at = text.find("listening on 127.0.0.1:");
  if (at == std::string::npos || text.find('\n', at) == std::string::npos) return std::nullopt;
  return std::atoi(text.c_str() + at + std::string("listening on 127.0.0.1:").size());
}

class CliInput : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    until_ = steady::now() + 10s;
    char pattern[] = "/tmp/strata-cli-input-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // start starts the CLI with `args`; null (and a failure) when it cannot.
  static std::unique_ptr<process> start(std::vector<std::string> args) {
    args.insert(args.begin(), STRATA_CLI_PATH);
    auto c = process::start(std::move(args));
    EXPECT_NE(c, nullptr) << "cannot start " << STRATA_CLI_PATH;
    return c;
  }

  // run runs the CLI with `args` and `input` on stdin (then closed) to its end.
  std::unique_ptr<process> run(std::vector<std::string> args, const std::string& input = {}) {
    auto c = start(std::move(args));
    if (!c) return c;
    c->send(input, true);
    EXPECT_TRUE(c->wait_finished(until_)) << "strata did not finish; stderr: " << c->err();
    return c;
  }

  steady::time_point until_;
  std::string dir_;
};

// -- item 5: the tool's own input ----------------------------------------------------

TEST_F(CliInput, AnOptionWithoutItsValueIsNamed) {
  // The last argument is an option that takes a value: the report names it (it printed
  // "connect:  needs a value" after reading past the end of the argument list).
  const std::vector<std::vector<std::string>> cases = {
      {"connect", "--timeout"},
      {"connect", "--idle"},
      {"connect", "tcp:127.0.0.1:1", "--linger"},
      {"listen", "--idle"},
      {"listen", "-k", "--linger"},
      {"bridge", "--timeout"},
      {"bridge", "--idle"},
      {"demo", "--size"},
      {"listen", "--handshake"},
      {"bridge", "--mux", "--wait"},
      {"bridge", "--mux", "--give-up"},
  };
  for (const auto& args : cases) {
    auto c = run(args);
    EXPECT_EQ(c->exit_code(), 2) << args[0] << " " << args.back();
    EXPECT_NE(c->err().find("strata: " + args[0] + ": " + args.back() + " needs a value"), std::string::npos)
        << c->err();
  }
}

TEST_F(CliInput, AnOptionGivenWithEqualsAndNoValueIsADurationError) {
  auto c = run({"connect", "--timeout=", "tcp:127.0.0.1:1"});
  EXPECT_EQ(c->exit_code(), 2);
  EXPECT_NE(c->err().find("--timeout: not a duration: ''"), std::string::npos) << c->err();
}

TEST_F(CliInput, AZeroHandshakeDeadlineIsRefused) {
  auto c = run({"listen", "--handshake", "0", "tcp-listen:127.0.0.1:0 | prefix"});
  EXPECT_EQ(c->exit_code(), 2);
  EXPECT_NE(c->err().find("--handshake: not a duration: '0'"), std::string::npos) << c->err();
}

TEST_F(CliInput, AHugeSpecIsShownAsAWindowAroundTheCaret) {
  // A 105 KB spec echoed 109 KB of stderr; now at most 60 bytes either side of the caret.
  std::string huge = "tcp:" + std::string(105000, 'a') + " | prefix(4) | crlf";
  auto c = run({"connect", huge});
  EXPECT_EQ(c->exit_code(), 2);
  EXPECT_LT(c->err().size(), 1024u) << c->err().substr(0, 300);
  EXPECT_NE(c->err().find("spec is too long"), std::string::npos) << c->err().substr(0, 300);
}

TEST_F(CliInput, ACaretInTheMiddleOfALongSpecKeepsItsColumn) {
  // The checker refuses the crlf 120 bytes into the spec; the window shows the text
  // around it with "..." on the left and the caret under the 'c' of crlf.
  std::string spec = "unix:@" + std::string(100, 'n') + " | prefix(4) | crlf | prefix(2)";
  auto c = run({"connect", spec});
  EXPECT_EQ(c->exit_code(), 2);
  const std::string& err = c->err();
  auto caret = err.rfind('^');
  ASSERT_NE(caret, std::string::npos) << err;
  auto caret_line = err.rfind('\n', caret) + 1;
  auto shown_end = caret_line - 1;
  auto shown_line = err.rfind('\n', shown_end - 1) + 1;
  std::string shown = err.substr(shown_line, shown_end - shown_line);
  std::size_t column = caret - caret_line;
  EXPECT_LE(shown.size(), 2u + 3 + 60 + 60 + 3) << shown;
  EXPECT_EQ(shown.substr(0, 5), "  ...") << shown;
  ASSERT_LT(column, shown.size()) << err;
  EXPECT_EQ(shown.substr(column, 4), "crlf") << err;
}

// -- item 6: errors that name the cause -------------------------------------------------

TEST_F(CliInput, MqWithoutATargetSuggestsTheQueueNameForm) {
  auto c = run({"connect", "mq:"});
  EXPECT_EQ(c->exit_code(), 2);
  EXPECT_NE(c->err().find("mq:/NAME"), std::string::npos) << c->err();
  EXPECT_EQ(c->err().find("HOST:PORT"), std::string::npos) << c->err();
}

TEST_F(CliInput, FifoReadOnARegularFileSaysItIsNotAFifo) {
  std::string path = dir_ + "/regular";
  if (std::FILE* f = std::fopen(path.c_str(), "w")) std::fclose(f);
  auto c = run({"connect", "fifo-read:" + path});
  EXPECT_EQ(c->exit_code(), 1);
  EXPECT_NE(c->err().find("not a FIFO"), std::string::npos) << c->err();
  EXPECT_EQ(c->err().find("invalid argument"), std::string::npos) << c->err();
}

TEST_F(CliInput, AMessageContainingTheDelimiterSaysSo) {
  // The connection completes in the backlog of a socket that never accepts; the line
  // "a;b" cannot be sent over term(";").
  int port = 0;
  int listener = loopback_socket(4, port);
  ASSERT_GE(listener, 0);
  auto c = run({"connect", "tcp:127.0.0.1:" + std::to_string(port) + " | term(\";\")"}, "a;b\n");
  ::close(listener);
  EXPECT_EQ(c->exit_code(), 1);
  EXPECT_NE(c->err().find("message contains the delimiter"), std::string::npos) << c->err();
}

TEST_F(CliInput, AResetConnectionIsNamedWithThePeerAddressEveryTime) {
  // listen -k -v; each client waits for "connection from" (so strata accepted it) and
  // then resets. Every report names the reset and the peer, not only the first.
  auto c = start({"listen", "-k", "-v", "tcp-listen:127.0.0.1:0"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->wait_err_line(until_, "listening on")) << c->err();
  int port = listening_port(c->err()).value_or(0);
  ASSERT_GT(port, 0) << c->err();
  for (int i = 0; i < 3; ++i) {
    int fd = loopback_connect(port);
    ASSERT_GE(fd, 0);
    std::string peer = "127.0.0.1:" + std::to_string(local_port(fd));
    ASSERT_TRUE(c->wait_err_line(until_, "connection from " + peer + "\n")) << c->err();
    reset(fd);
    std::string report = "connection from " + peer + ": read: connection reset by peer";
    EXPECT_TRUE(c->wait_err_line(until_, report)) << "missing '" << report << "' in: " << c->err();
  }
  EXPECT_EQ(c->err().find("connection broken"), std::string::npos) << c->err();
}

// A connection reset while it waits in the accept queue has no address left for
// getpeername(): the stream keeps the one accept4() reported.
TEST_F(CliInput, AConnectionResetBeforeItIsAcceptedKeepsItsPeerAddress) {
  // listen -k serves one connection at a time: the second waits in the accept queue
  // while the first is served, and is reset there before strata accepts it.
  auto c = start({"listen", "-k", "-v", "tcp-listen:127.0.0.1:0"});
  ASSERT_NE(c, nullptr);
  c->close_stdin();  // later connections get end of stream at once
  ASSERT_TRUE(c->wait_err_line(until_, "listening on")) << c->err();
  int port = listening_port(c->err()).value_or(0);
  int first = loopback_connect(port);
  ASSERT_GE(first, 0);
  ASSERT_TRUE(c->wait_err_line(until_, "connection from 127.0.0.1:" + std::to_string(local_port(first))))
      << c->err();
  int second = loopback_connect(port);
  ASSERT_GE(second, 0);
  std::string peer = "127.0.0.1:" + std::to_string(local_port(second));
  reset(second);
  ::close(first);  // the first relay ends; strata accepts the reset one
  std::string report = "connection from " + peer + ": read: connection reset by peer";
  EXPECT_TRUE(c->wait_err_line(until_, report)) << "missing '" << report << "' in: " << c->err();
}

TEST_F(CliInput, SighupRemovesTheUnixSocketFileLikeSigterm) {
  std::string path = dir_ + "/hup.sock";
  auto c = start({"listen", "unix-listen:" + path});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->wait_err_line(until_, "listening on")) << c->err();
  ASSERT_TRUE(std::filesystem::exists(path));
  ASSERT_EQ(::kill(c->pid(), SIGHUP), 0);
  ASSERT_TRUE(c->wait_finished(until_)) << c->err();
  EXPECT_EQ(c->exit_code(), 128 + SIGHUP);
  EXPECT_FALSE(std::filesystem::exists(path)) << "the socket file outlived SIGHUP";
}

}  // namespace
