// The peer-process harness (support/peer_process.hpp) itself: output is captured,
// exit codes and signals are reported, waits end at their deadlines and not before,
// stop() and the destructor leave no child behind, and a missing program fails loudly.
#include "support/peer_process.hpp"

#include <arpa/inet.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

namespace {

using namespace std::chrono_literals;
using strata::test::find_program;
using strata::test::peer_options;
using strata::test::peer_process;
using clock_type = std::chrono::steady_clock;

// gone: no process `pid` exists any more (it was reaped).
bool gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

TEST(PeerProcess, CapturesStdoutAndStderrAndReportsTheExitCode) {
  auto p = peer_process::start({"sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p.wait_exit(10s), 3);
  EXPECT_NE(p.output().find("to-stdout\n"), std::string::npos) << p.output();
  EXPECT_NE(p.output().find("to-stderr\n"), std::string::npos) << p.output();
  EXPECT_TRUE(p.exited());
}

TEST(PeerProcess, ReportsADeathBySignalAs128PlusTheSignal) {
  auto p = peer_process::start({"sh", "-c", "kill -USR1 $$"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p.wait_exit(10s), 128 + SIGUSR1);
}

TEST(PeerProcess, WaitForOutputSeesALineWrittenWhileWaiting) {
  peer_options options;
  options.stdin_pipe = true;
  // The line comes only once the test has written to stdin: the wait really waits.
  auto p = peer_process::start({"sh", "-c", "echo ready; read line; echo got $line"}, options);
  ASSERT_TRUE(p);
  ASSERT_TRUE(p.wait_for_output("ready", 10s)) << p.output();
  EXPECT_EQ(p.output().find("got"), std::string::npos);
  ASSERT_TRUE(p.write_stdin("hello\n"));
  EXPECT_TRUE(p.wait_for_output("got hello\n", 10s)) << p.output();
  EXPECT_EQ(p.wait_exit(10s), 0);
}

TEST(PeerProcess, CloseStdinGivesThePeerEndOfFile) {
  peer_options options;
  options.stdin_pipe = true;
  auto p = peer_process::start({"cat"}, options);
  ASSERT_TRUE(p);
  ASSERT_TRUE(p.write_stdin("one\ntwo\n"));
  EXPECT_TRUE(p.wait_for_output("two\n", 10s)) << p.output();
  EXPECT_FALSE(p.wait_exit(0ms).has_value());  // cat still reads
  p.close_stdin();
  EXPECT_EQ(p.wait_exit(10s), 0);
  EXPECT_EQ(p.output(), "one\ntwo\n");
}

TEST(PeerProcess, WithoutAStdinPipeThePeerReadsEndOfFile) {
  auto p = peer_process::start({"cat"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p.wait_exit(10s), 0);
  EXPECT_EQ(p.output(), "");
  EXPECT_FALSE(p.write_stdin("nobody reads this"));
}

TEST(PeerProcess, WaitForOutputTimesOutHonestly) {
  auto p = peer_process::start({"sleep", "1000"});
  ASSERT_TRUE(p);
  auto begin = clock_type::now();
  EXPECT_FALSE(p.wait_for_output("never written", 200ms));
  auto waited = clock_type::now() - begin;
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 5s);
  EXPECT_FALSE(p.exited());
}

TEST(PeerProcess, WaitForOutputGivesUpAtOnceWhenThePeerExitedWithoutIt) {
  auto p = peer_process::start({"sh", "-c", "echo something else"});
  ASSERT_TRUE(p);
  auto begin = clock_type::now();
  EXPECT_FALSE(p.wait_for_output("never written", 60s));
  EXPECT_LT(clock_type::now() - begin, 30s);
  EXPECT_NE(p.output().find("something else"), std::string::npos) << p.output();
}

TEST(PeerProcess, WaitExitTimesOutWhileThePeerRuns) {
  auto p = peer_process::start({"sleep", "1000"});
  ASSERT_TRUE(p);
  auto begin = clock_type::now();
  EXPECT_FALSE(p.wait_exit(100ms).has_value());
  EXPECT_GE(clock_type::now() - begin, 100ms);
}

TEST(PeerProcess, StopKillsASleepingPeerWithSigterm) {
  auto p = peer_process::start({"sleep", "1000"});
  ASSERT_TRUE(p);
  pid_t pid = p.pid();
  auto begin = clock_type::now();
  EXPECT_EQ(p.stop(), 128 + SIGTERM);
  EXPECT_LT(clock_type::now() - begin, 2s);
  EXPECT_TRUE(gone(pid));
  EXPECT_EQ(p.stop(), 128 + SIGTERM);  // a second stop only reports
}

TEST(PeerProcess, StopFallsBackToSigkillAfterTheGrace) {
  // SIGTERM ignored: sleep inherits the ignored disposition across exec.
  auto p = peer_process::start({"sh", "-c", "trap '' TERM; echo ready; exec sleep 1000"});
  ASSERT_TRUE(p);
  ASSERT_TRUE(p.wait_for_output("ready", 10s)) << p.output();
  pid_t pid = p.pid();
  auto begin = clock_type::now();
  EXPECT_EQ(p.stop(300ms), 128 + SIGKILL);
  EXPECT_GE(clock_type::now() - begin, 300ms);
  EXPECT_TRUE(gone(pid));
}

TEST(PeerProcess, TheDestructorStopsTheChild) {
  pid_t pid = -1;
  {
    auto p = peer_process::start({"sleep", "1000"});
    ASSERT_TRUE(p);
    pid = p.pid();
    EXPECT_FALSE(gone(pid));
  }
  EXPECT_TRUE(gone(pid));
}

TEST(PeerProcess, MovingKeepsOneOwner) {
  auto p = peer_process::start({"sleep", "1000"});
  ASSERT_TRUE(p);
  pid_t pid = p.pid();
  peer_process q = std::move(p);
  EXPECT_FALSE(p);  // NOLINT(bugprone-use-after-move): moved-from is documented as empty
  EXPECT_EQ(q.pid(), pid);
  q = peer_process();  // assigning over a running peer stops it
  EXPECT_TRUE(gone(pid));
}

TEST(PeerProcess, LargeOutputIsReadWhileWaitingForTheExit) {
  // 2 MB is far more than a pipe holds: the peer finishes only if wait_exit reads.
  auto p = peer_process::start({"head", "-c", "2000000", "/dev/zero"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p.wait_exit(30s), 0);
  EXPECT_EQ(p.output().size(), 2000000u);
}

TEST(PeerProcess, PassesEnvironmentAndWorkingDirectory) {
  peer_options options;
  options.env = {{"STRATA_PEER_TEST", "forty-two"}, {"HOME", "/nonexistent-home"}};
  options.working_directory = "/";
  auto p = peer_process::start({"sh", "-c", "echo \"$STRATA_PEER_TEST $HOME $(pwd)\""}, options);
  ASSERT_TRUE(p);
  EXPECT_EQ(p.wait_exit(10s), 0);
  EXPECT_EQ(p.output(), "forty-two /nonexistent-home /\n");
}

TEST(PeerProcess, AMissingProgramFailsTheTestNamingIt) {
  peer_process p;
  EXPECT_NONFATAL_FAILURE(p = peer_process::start({"strata-no-such-peer", "-v"}),
                          "peer program 'strata-no-such-peer' is not installed");
  EXPECT_FALSE(p);
  EXPECT_EQ(p.pid(), -1);
}

TEST(PeerProcess, AMissingWorkingDirectoryFailsTheTest) {
  peer_options options;
  options.working_directory = "/nonexistent/strata";
  peer_process p;
  EXPECT_NONFATAL_FAILURE(p = peer_process::start({"true"}, options), "in /nonexistent/strata");
  EXPECT_FALSE(p);
}

TEST(FindProgram, ReturnsAnAbsolutePathOrNothing) {
  auto sh = find_program("sh");
  ASSERT_FALSE(sh.empty());
  EXPECT_EQ(sh.front(), '/');
  EXPECT_EQ(::access(sh.c_str(), X_OK), 0);
  EXPECT_EQ(find_program(sh), sh);
  EXPECT_EQ(find_program("strata-no-such-peer"), "");
  EXPECT_EQ(find_program("/nonexistent/sh"), "");
  EXPECT_EQ(find_program(""), "");
}

TEST(LoopbackPorts, AFreePortCanBeBound) {
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    int port = strata::test::free_loopback_port(type);
    ASSERT_GT(port, 0);
    int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
    ::close(fd);
  }
}

TEST(LoopbackPorts, WaitTcpListeningSeesAListenerAndTimesOutWithoutOne) {
  int port = 0;
  int listener = strata::test::loopback_socket(SOCK_STREAM, 4, port);
  ASSERT_GE(listener, 0);
  EXPECT_TRUE(strata::test::wait_tcp_listening(port, 5s));
  ::close(listener);

  int closed = strata::test::free_loopback_port(SOCK_STREAM);
  auto begin = clock_type::now();
  EXPECT_FALSE(strata::test::wait_tcp_listening(closed, 150ms));
  auto waited = clock_type::now() - begin;
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 5s);
}

TEST(LoopbackPorts, WaitTcpListeningWaitsForAPeerThatStartsLater) {
  int port = strata::test::free_loopback_port(SOCK_STREAM);
  ASSERT_GT(port, 0);
  // socat binds only after the shell has read a line from stdin.
  peer_options options;
  options.stdin_pipe = true;
  auto p = peer_process::start(
      {"sh", "-c",
       "read go; exec socat TCP-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr STDIO"},
      options);
  ASSERT_TRUE(p);
  EXPECT_FALSE(strata::test::wait_tcp_listening(port, 100ms));
  ASSERT_TRUE(p.write_stdin("go\n"));
  EXPECT_TRUE(strata::test::wait_tcp_listening(port, 10s)) << p.output();
}

}  // namespace
