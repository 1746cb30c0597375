// End-to-end tests of what the `strata` tool makes of hostile or careless input: options
// without values, huge specs, specs and peers that fail in ways whose cause the report
// must name, and signals that must unwind like SIGTERM. The built binary
// (STRATA_CLI_PATH) runs as a child with pipes on its standard streams; the test waits on
// poll() against a deadline, never on sleeps, and kills the child by its PID in teardown.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// child is one run of the CLI with its standard streams on pipes.
class child {
 public:
  explicit child(std::vector<std::string> args) {
    args.insert(args.begin(), STRATA_CLI_PATH);
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigfillset(&defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, argv[0], &actions, &attr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
    if (pid_ > 0) pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_, out_, err_, pidfd_})
      if (fd >= 0) ::close(fd);
  }

  bool started() const { return pid_ > 0 && pidfd_ >= 0; }
  pid_t pid() const { return pid_; }
  const std::string& err() const { return err_data_; }
  /// code is the exit status, or 128 + the signal that killed the child.
  int code() const { return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_); }
  void write_stdin(const std::string& data) {
    if (in_ >= 0 && !data.empty()) (void)!::write(in_, data.data(), data.size());
  }
  void close_stdin() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }

  /// wait_until drives the child's output and exit until `done()` or the deadline.
  bool wait_until(steady::time_point until, const std::function<bool()>& done) {
    while (!done()) {
      auto now = steady::now();
      if (now >= until) return false;
      pollfd fds[3] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}, {exited_ ? -1 : pidfd_, POLLIN, 0}};
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
      if (::poll(fds, 3, static_cast<int>(ms)) < 0 && errno != EINTR) return false;
      if (fds[0].revents) drain(out_, out_data_);
      if (fds[1].revents) drain(err_, err_data_);
      if (fds[2].revents && ::waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    }
    return true;
  }
  /// wait_exit waits for the exit and for the end of both outputs.
  bool wait_exit(steady::time_point until) {
    return wait_until(until, [&] { return exited_ && out_ < 0 && err_ < 0; });
  }
  /// wait_line waits for a complete stderr line containing `needle`.
  bool wait_line(steady::time_point until, const std::string& needle) {
    auto has = [&] {
      auto at = err_data_.find(needle);
      return at != std::string::npos && err_data_.find('\n', at) != std::string::npos;
    };
    return wait_until(until, [&] { return has() || (exited_ && err_ < 0); }) && has();
  }

 private:
  static void drain(int& fd, std::string& sink) {
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      sink.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      ::close(fd);
      fd = -1;
    }
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1, pidfd_ = -1;
  std::string out_data_, err_data_;
  int status_ = 0;
  bool exited_ = false;
};

// tcp_socket returns a loopback TCP socket: listening when `backlog` >= 0 (its port in
// `port`), else connected to `port`.
int tcp_socket(int backlog, int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  bool ok = fd >= 0;
  if (ok && backlog >= 0) {
    ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && ::listen(fd, backlog) == 0 &&
         ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0;
    port = ntohs(sa.sin_port);
  } else if (ok) {
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  if (!ok && fd >= 0) {
    ::close(fd);
    fd = -1;
  }
  return fd;
}

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

  // run runs the CLI with `args` and `input` on stdin (then closed) to its end.
  std::unique_ptr<child> run(std::vector<std::string> args, const std::string& input = {}) {
    auto c = std::make_unique<child>(std::move(args));
    EXPECT_TRUE(c->started());
    c->write_stdin(input);
    c->close_stdin();
    EXPECT_TRUE(c->wait_exit(until_)) << "strata did not finish; stderr: " << c->err();
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
      {"connect", "--timeout"}, {"connect", "--idle"},        {"connect", "tcp:127.0.0.1:1", "--linger"},
      {"listen", "--idle"},     {"listen", "-k", "--linger"}, {"bridge", "--timeout"},
      {"bridge", "--idle"},     {"demo", "--size"},
  };
  for (const auto& args : cases) {
    auto c = run(args);
    EXPECT_EQ(c->code(), 2) << args[0] << " " << args.back();
    EXPECT_NE(c->err().find("strata: " + args[0] + ": " + args.back() + " needs a value"), std::string::npos)
        << c->err();
  }
}

TEST_F(CliInput, AnOptionGivenWithEqualsAndNoValueIsADurationError) {
  auto c = run({"connect", "--timeout=", "tcp:127.0.0.1:1"});
  EXPECT_EQ(c->code(), 2);
  EXPECT_NE(c->err().find("--timeout: not a duration: ''"), std::string::npos) << c->err();
}

TEST_F(CliInput, AHugeSpecIsShownAsAWindowAroundTheCaret) {
  // A 105 KB spec echoed 109 KB of stderr; now at most 60 bytes either side of the caret.
  std::string huge = "tcp:" + std::string(105000, 'a') + " | prefix(4) | crlf";
  auto c = run({"connect", huge});
  EXPECT_EQ(c->code(), 2);
  EXPECT_LT(c->err().size(), 1024u) << c->err().substr(0, 300);
  EXPECT_NE(c->err().find("spec is too long"), std::string::npos) << c->err().substr(0, 300);
}

TEST_F(CliInput, ACaretInTheMiddleOfALongSpecKeepsItsColumn) {
  // The checker refuses the crlf 120 bytes into the spec; the window shows the text
  // around it with "..." on the left and the caret under the 'c' of crlf.
  std::string spec = "unix:@" + std::string(100, 'n') + " | prefix(4) | crlf | prefix(2)";
  auto c = run({"connect", spec});
  EXPECT_EQ(c->code(), 2);
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
  EXPECT_EQ(c->code(), 2);
  EXPECT_NE(c->err().find("mq:/NAME"), std::string::npos) << c->err();
  EXPECT_EQ(c->err().find("HOST:PORT"), std::string::npos) << c->err();
}

TEST_F(CliInput, FifoReadOnARegularFileSaysItIsNotAFifo) {
  std::string path = dir_ + "/regular";
  if (std::FILE* f = std::fopen(path.c_str(), "w")) std::fclose(f);
  auto c = run({"connect", "fifo-read:" + path});
  EXPECT_EQ(c->code(), 1);
  EXPECT_NE(c->err().find("not a FIFO"), std::string::npos) << c->err();
  EXPECT_EQ(c->err().find("invalid argument"), std::string::npos) << c->err();
}

TEST_F(CliInput, AMessageContainingTheDelimiterSaysSo) {
  // The connection completes in the backlog of a socket that never accepts; the line
  // "a;b" cannot be sent over term(";").
  int port = 0;
  int listener = tcp_socket(4, port);
  ASSERT_GE(listener, 0);
  auto c = run({"connect", "tcp:127.0.0.1:" + std::to_string(port) + " | term(\";\")"}, "a;b\n");
  ::close(listener);
  EXPECT_EQ(c->code(), 1);
  EXPECT_NE(c->err().find("message contains the delimiter"), std::string::npos) << c->err();
}

TEST_F(CliInput, AResetConnectionIsNamedWithThePeerAddressEveryTime) {
  // listen -k -v; each client waits for "connection from" (so strata accepted it) and
  // then resets. Every report names the reset and the peer, not only the first.
  auto c = std::make_unique<child>(std::vector<std::string>{"listen", "-k", "-v", "tcp-listen:127.0.0.1:0"});
  ASSERT_TRUE(c->started());
  ASSERT_TRUE(c->wait_line(until_, "listening on")) << c->err();
  int port = listening_port(c->err()).value_or(0);
  ASSERT_GT(port, 0) << c->err();
  for (int i = 0; i < 3; ++i) {
    int fd = tcp_socket(-1, port);
    ASSERT_GE(fd, 0);
    std::string peer = "127.0.0.1:" + std::to_string(local_port(fd));
    ASSERT_TRUE(c->wait_line(until_, "connection from " + peer + "\n")) << c->err();
    reset(fd);
    std::string report = "connection from " + peer + ": read: connection reset by peer";
    EXPECT_TRUE(c->wait_line(until_, report)) << "missing '" << report << "' in: " << c->err();
  }
  EXPECT_EQ(c->err().find("connection broken"), std::string::npos) << c->err();
}

// A connection reset while it waits in the accept queue has no address left for
// getpeername(): the stream keeps the one accept4() reported.
TEST_F(CliInput, AConnectionResetBeforeItIsAcceptedKeepsItsPeerAddress) {
  // listen -k serves one connection at a time: the second waits in the accept queue
  // while the first is served, and is reset there before strata accepts it.
  auto c = std::make_unique<child>(std::vector<std::string>{"listen", "-k", "-v", "tcp-listen:127.0.0.1:0"});
  ASSERT_TRUE(c->started());
  c->close_stdin();  // later connections get end of stream at once
  ASSERT_TRUE(c->wait_line(until_, "listening on")) << c->err();
  int port = listening_port(c->err()).value_or(0);
  int first = tcp_socket(-1, port);
  ASSERT_GE(first, 0);
  ASSERT_TRUE(c->wait_line(until_, "connection from 127.0.0.1:" + std::to_string(local_port(first))))
      << c->err();
  int second = tcp_socket(-1, port);
  ASSERT_GE(second, 0);
  std::string peer = "127.0.0.1:" + std::to_string(local_port(second));
  reset(second);
  ::close(first);  // the first relay ends; strata accepts the reset one
  std::string report = "connection from " + peer + ": read: connection reset by peer";
  EXPECT_TRUE(c->wait_line(until_, report)) << "missing '" << report << "' in: " << c->err();
}

TEST_F(CliInput, SighupRemovesTheUnixSocketFileLikeSigterm) {
  std::string path = dir_ + "/hup.sock";
  auto c = std::make_unique<child>(std::vector<std::string>{"listen", "unix-listen:" + path});
  ASSERT_TRUE(c->started());
  ASSERT_TRUE(c->wait_line(until_, "listening on")) << c->err();
  ASSERT_TRUE(std::filesystem::exists(path));
  ASSERT_EQ(::kill(c->pid(), SIGHUP), 0);
  ASSERT_TRUE(c->wait_exit(until_)) << c->err();
  EXPECT_EQ(c->code(), 128 + SIGHUP);
  EXPECT_FALSE(std::filesystem::exists(path)) << "the socket file outlived SIGHUP";
}

}  // namespace
