// pipe: the shared stream conformance suite for pipe::duplex, then typed simplex ends,
// SIGPIPE-free broken writes, back-pressure, child processes (cat round trips, exit
// statuses, kill, timeouts, the child's signal state, reaping), FIFOs by path (a reader
// before any writer, a writer waiting for a reader, socat as the third-party peer on
// both ends) and the CLI forms exec:, fifo-read: and fifo-write: through
// `strata connect` and `strata bridge`.
#include "strata/transport/pipe.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"

using namespace std::chrono_literals;

namespace strata::test {

namespace pipe_conformance {

struct duplex_traits {
  using stream_type = pipe::duplex;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static task<result<std::pair<pipe::duplex, pipe::duplex>>> make_pair(deadline) {
    co_return pipe::duplex::pair();
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Pipe, stream_conformance, ::testing::Types<duplex_traits>);

}  // namespace pipe_conformance

namespace {

// A read end has no write and a write end no read: misuse does not compile.
static_assert(byte_source<pipe::reader> && !byte_sink<pipe::reader> && !byte_stream<pipe::reader>);
static_assert(byte_sink<pipe::writer> && !byte_source<pipe::writer> && !byte_stream<pipe::writer>);
static_assert(byte_stream<pipe::duplex> && byte_stream<pipe::child>);

/// scratch_dir is a private directory for this program's FIFOs, removed at exit.
const std::string& scratch_dir() {
  struct dir {
    std::string path;
    dir() {
      char tmpl[] = "/tmp/strata-pipe-test-XXXXXX";
      if (::mkdtemp(tmpl)) path = tmpl;
    }
    ~dir() {
      std::error_code ignored;
      if (!path.empty()) std::filesystem::remove_all(path, ignored);
    }
  };
  static dir d;
  return d.path;
}

std::string unique_fifo() {
  static std::atomic<int> counter{0};
  return scratch_dir() + "/f" + std::to_string(counter++);
}

/// read_all reads until end_of_stream and returns the text.
template <class S>
task<result<std::string>> read_all(S& s, deadline dl) {
  std::string out;
  std::array<std::byte, 4096> buf;
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) {
      if (n.error() == errc::end_of_stream) co_return out;
      co_return unexpected(n.error());
    }
    out.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
}

/// read_line reads byte by byte up to and without '\n'.
template <class S>
task<result<std::string>> read_line(S& s, deadline dl) {
  std::string out;
  std::array<std::byte, 1> c;
  for (;;) {
    auto n = co_await s.read_some(c, dl);
    if (!n) co_return unexpected(n.error());
    if (c[0] == std::byte{'\n'}) co_return out;
    out.push_back(static_cast<char>(c[0]));
  }
}

bool sigpipe_pending() {
  sigset_t set;
  sigpending(&set);
  return sigismember(&set, SIGPIPE) == 1;
}

std::vector<std::string> argv_of(std::initializer_list<const char*> words) {
  return std::vector<std::string>(words.begin(), words.end());
}

TEST(Pipe, RowsSaySimplexOrDuplexAndWhoMayShare) {
  EXPECT_EQ(pipe::reader::capabilities.direction, direction::simplex);
  EXPECT_EQ(pipe::reader::capabilities.sharing, sharing::related_only);
  EXPECT_EQ(pipe::duplex::capabilities.direction, direction::duplex);
  EXPECT_EQ(pipe::duplex::capabilities.domain, domain::ipc);
  EXPECT_TRUE(pipe::duplex::capabilities.reliable && pipe::duplex::capabilities.ordered);
  auto f = transport_properties(fifo::row);
  EXPECT_EQ(f.sharing, sharing::any_process);
  EXPECT_EQ(f.direction, direction::simplex);
}

TEST(Pipe, AnonymousPipeCarriesBytesThenTheEnd) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto p = pipe::make();
    CO_ASSERT_OK(p);
    auto& [r, w] = *p;
    std::array<const_buffer, 3> parts{as_bytes("one "), as_bytes(""), as_bytes("two")};
    auto wr = co_await w.write(std::span<const const_buffer>(parts), dl);
    CO_ASSERT_OK(wr);
    auto sh = co_await w.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto late = co_await w.write(as_bytes("x"), dl);
    EXPECT_EQ(late.error(), errc::closed);
    auto all = co_await read_all(r, dl);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "one two");
    std::array<std::byte, 4> buf;
    auto again = co_await r.read_some(buf, deadline::already());
    EXPECT_EQ(again.error(), errc::end_of_stream);
    auto cw = co_await w.close(dl);
    EXPECT_TRUE(cw) << "close after shutdown_write succeeds once";
    auto cw2 = co_await w.close(dl);
    EXPECT_EQ(cw2.error(), errc::closed);
    auto cr = co_await r.close(dl);
    EXPECT_TRUE(cr);
    auto after = co_await r.read_some(buf, dl);
    EXPECT_EQ(after.error(), errc::closed);
  });
}

TEST(Pipe, WriteWithoutReaderIsBrokenAndRaisesNoSignal) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto p = pipe::make();
    CO_ASSERT_OK(p);
    auto& [r, w] = *p;
    auto c = co_await r.close(dl);
    CO_ASSERT_OK(c);
    auto first = co_await w.write(as_bytes("nobody listens"), dl);
    EXPECT_EQ(first.error(), errc::broken);
    auto second = co_await w.write(as_bytes("x"), dl);
    EXPECT_EQ(second.error(), errc::broken) << "broken is sticky";
    EXPECT_FALSE(sigpipe_pending()) << "the SIGPIPE of the failed write must be consumed";
  });
}

TEST(Pipe, FullPipeTimesTheWriterOutAndTheReaderGetsThePrefix) {
  run_test([]() -> task<void> {
    auto p = pipe::make();
    CO_ASSERT_OK(p);
    auto& [r, w] = *p;
    std::vector<std::byte> big(4 << 20, std::byte{'z'});  // far beyond a pipe's 64 KiB
    auto start = deadline::clock::now();
    auto wr = co_await w.write(const_buffer(big), deadline::after(50ms));
    auto took = elapsed_since(start);
    EXPECT_EQ(wr.error(), errc::timed_out);
    EXPECT_GE(took, 50ms);
    EXPECT_LT(took, 50ms + timing_tolerance);
    auto again = co_await w.write(as_bytes("x"), deadline::after(5s));
    EXPECT_EQ(again.error(), errc::timed_out) << "a partial write fails the writer for good";
    std::array<std::byte, 1024> buf;
    auto n = co_await r.read_some(buf, deadline::after(5s));
    CO_ASSERT_OK(n);
    EXPECT_EQ(buf[0], std::byte{'z'});
  });
}

TEST(Pipe, AdoptTakesPlainDescriptors) {
  run_test([]() -> task<void> {
    int fds[2];
    CO_ASSERT_TRUE(::pipe(fds) == 0);
    auto r = pipe::reader::adopt(fds[0]);
    CO_ASSERT_OK(r);
    auto w = pipe::writer::adopt(fds[1]);
    CO_ASSERT_OK(w);
    EXPECT_NE(::fcntl(fds[0], F_GETFL) & O_NONBLOCK, 0);
    std::array<std::byte, 4> buf;
    auto timed = co_await r->read_some(buf, deadline::after(10ms));
    EXPECT_EQ(timed.error(), errc::timed_out) << "adopted ends wait through the loop, never block";
    auto wr = co_await w->write(as_bytes("hey"), deadline::after(5s));
    CO_ASSERT_OK(wr);
    auto got = co_await r->read_some(buf, deadline::after(5s));
    CO_ASSERT_OK(got);
    EXPECT_EQ(as_text(const_buffer(buf.data(), *got)), "hey");
    int fd = w->release();
    EXPECT_EQ(fd, fds[1]);
    ::close(fd);
    auto end = co_await r->read_some(buf, deadline::after(5s));
    EXPECT_EQ(end.error(), errc::end_of_stream);
    EXPECT_FALSE(pipe::reader::adopt(-1));
  });
}

TEST(Pipe, ForkedChildWritesThroughAPipe) {
  run_test([]() -> task<void> {
    auto p = pipe::make();
    CO_ASSERT_OK(p);
    auto& [r, w] = *p;
    pid_t pid = ::fork();
    CO_ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
      // Async-signal-safe work only: write the message, then leave.
      ::close(r.native_handle());
      int flags = ::fcntl(w.native_handle(), F_GETFL);
      ::fcntl(w.native_handle(), F_SETFL, flags & ~O_NONBLOCK);
      const char msg[] = "from the child";
      ssize_t n = ::write(w.native_handle(), msg, sizeof msg - 1);
      ::_exit(n == static_cast<ssize_t>(sizeof msg - 1) ? 0 : 1);
    }
    (void)co_await w.close(deadline::never());  // only the child writes now
    auto all = co_await read_all(r, deadline::after(5s));
    int status = 0;
    ::waitpid(pid, &status, 0);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "from the child");
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  });
}

// -- child processes ----------------------------------------------------------------------

TEST(PipeSpawn, CatEchoesAMegabyteBothWaysConcurrently) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(20s);
    auto c = pipe::spawn(argv_of({"cat"}));
    CO_ASSERT_OK(c);
    EXPECT_GT(c->pid(), 0);
    constexpr std::size_t total = 1 << 20;
    stream_transfer_stats w, r;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(write_pattern(*c, total, w, dl));  // ends with shutdown_write: cat sees EOF
      co_await read_pattern(*c, r, dl);
    });
    EXPECT_FALSE(w.error) << w.error.message();
    EXPECT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.bytes, total);
    EXPECT_EQ(r.first_bad_read, SIZE_MAX);
    auto st = co_await c->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
    auto cl = co_await c->close(dl);
    EXPECT_TRUE(cl) << cl.error().message();
    auto again = co_await c->close(dl);
    EXPECT_EQ(again.error(), errc::closed);
  });
}

TEST(PipeSpawn, ExitCodesSignalsAndWaitDeadlines) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto three = pipe::spawn(argv_of({"sh", "-c", "exit 3"}));
    CO_ASSERT_OK(three);
    auto st = co_await three->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_EQ(*st, (pipe::exit_status{.exited = true, .code = 3}));
    EXPECT_EQ(st->to_string(), "exit 3");
    auto st2 = co_await three->wait(deadline::already());
    CO_ASSERT_OK(st2);
    EXPECT_EQ(*st2, *st) << "a collected status is returned again";
    EXPECT_EQ(three->kill().error(), errc::closed);

    auto sleeper = pipe::spawn(argv_of({"sleep", "30"}));
    CO_ASSERT_OK(sleeper);
    auto start = deadline::clock::now();
    auto early = co_await sleeper->wait(deadline::after(30ms));
    auto took = elapsed_since(start);
    EXPECT_EQ(early.error(), errc::timed_out);
    EXPECT_GE(took, 30ms);
    EXPECT_LT(took, 30ms + timing_tolerance);
    auto k = sleeper->kill(SIGTERM);
    CO_ASSERT_OK(k);
    auto killed = co_await sleeper->wait(dl);
    CO_ASSERT_OK(killed);
    EXPECT_EQ(*killed, (pipe::exit_status{.exited = false, .signal = SIGTERM}));
    EXPECT_EQ(killed->to_string(), "killed by signal 15");
  });
}

TEST(PipeSpawn, CloseKillsAChildThatDoesNotFinish) {
  run_test([]() -> task<void> {
    // sleep ignores its stdin: closing it does not end the child.
    auto c = pipe::spawn(argv_of({"sleep", "30"}));
    CO_ASSERT_OK(c);
    auto start = deadline::clock::now();
    auto cl = co_await c->close(deadline::after(50ms));
    EXPECT_EQ(cl.error(), errc::timed_out);
    EXPECT_LT(elapsed_since(start), 50ms + timing_tolerance);
    auto st = c->status();
    CO_ASSERT_TRUE(st.has_value());
    EXPECT_EQ(st->signal, SIGKILL);
  });
}

TEST(PipeSpawn, DestroyingAChildReapsIt) {
  pid_t pid = -1;
  run_test([&]() -> task<void> {
    auto c = pipe::spawn(argv_of({"sleep", "30"}));
    CO_ASSERT_OK(c);
    pid = c->pid();
    co_return;  // destroyed here
  });
  ASSERT_GT(pid, 0);
  // Reaped: no zombie is left for us to collect.
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(PipeSpawn, MissingProgramAndEmptyArgvAreErrors) {
  auto missing = pipe::spawn(argv_of({"/nonexistent/strata-no-such-program"}));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory) << missing.error().message();
  auto missing_path = pipe::spawn(argv_of({"strata-no-such-program-on-path"}));
  ASSERT_FALSE(missing_path);
  EXPECT_EQ(pipe::spawn(std::vector<std::string>{}).error(), errc::invalid_argument);
}

TEST(PipeSpawn, TheChildGetsAnEmptySignalMaskAndDefaultSigpipe) {
  // Block a signal in this thread and make the writer block SIGPIPE: neither may reach
  // the child.
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, &old);
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto p = pipe::make();
    CO_ASSERT_OK(p);
    auto wr = co_await p->second.write(as_bytes("x"), dl);  // blocks SIGPIPE on this thread
    CO_ASSERT_OK(wr);
    auto c = pipe::spawn(argv_of({"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}));
    CO_ASSERT_OK(c);
    auto sh = co_await c->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto blk = co_await read_line(*c, dl);
    CO_ASSERT_OK(blk);
    auto ign = co_await read_line(*c, dl);
    CO_ASSERT_OK(ign);
    EXPECT_EQ(*blk, "SigBlk:\t0000000000000000");
    // SIGPIPE (13) is bit 12 of the ignored mask.
    auto mask = std::stoull(ign->substr(ign->find('\t') + 1), nullptr, 16);
    EXPECT_EQ(mask & (1ull << (SIGPIPE - 1)), 0u) << *ign;
    auto cl = co_await c->close(dl);
    EXPECT_TRUE(cl) << cl.error().message();
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(PipeSpawn, StderrAndWorkingDirectoryOptions) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto both = pipe::spawn(argv_of({"sh", "-c", "echo out; echo err >&2; pwd"}),
                            {.error = pipe::child_stderr::to_stdout, .working_directory = "/tmp"});
    CO_ASSERT_OK(both);
    auto all = co_await read_all(*both, dl);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "out\nerr\n/tmp\n");
    auto quiet = pipe::spawn(argv_of({"sh", "-c", "echo hidden >&2; echo shown"}),
                             {.error = pipe::child_stderr::null});
    CO_ASSERT_OK(quiet);
    auto shown = co_await read_all(*quiet, dl);
    CO_ASSERT_OK(shown);
    EXPECT_EQ(*shown, "shown\n");
    (void)co_await both->close(dl);
    (void)co_await quiet->close(dl);
  });
}

TEST(PipeSpawn, SplitCommandSplitsOnBlanksOnly) {
  EXPECT_EQ(pipe::split_command("  cat  -u\tfile "), (std::vector<std::string>{"cat", "-u", "file"}));
  EXPECT_EQ(pipe::split_command("sh -c 'a b'"), (std::vector<std::string>{"sh", "-c", "'a", "b'"}));
  EXPECT_TRUE(pipe::split_command("   ").empty());
}

// -- FIFOs --------------------------------------------------------------------------------

TEST(Fifo, ReaderBeforeAnyWriterWaitsInsteadOfEnding) {
  run_test([]() -> task<void> {
    auto path = unique_fifo();
    auto r = fifo::open_reader(path);
    CO_ASSERT_OK(r);
    struct stat st {};
    CO_ASSERT_TRUE(::stat(path.c_str(), &st) == 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    EXPECT_EQ(r->runtime_capabilities().sharing, sharing::any_process);
    std::array<std::byte, 16> buf;
    auto early = co_await r->read_some(buf, deadline::after(30ms));
    EXPECT_EQ(early.error(), errc::timed_out) << "no writer yet is no end of stream";
    auto dl = deadline::after(5s);
    auto w = co_await fifo::open_writer(path, dl);
    CO_ASSERT_OK(w);
    auto wr = co_await w->write(as_bytes("through the fifo"), dl);
    CO_ASSERT_OK(wr);
    auto cw = co_await w->close(dl);
    CO_ASSERT_OK(cw);
    auto all = co_await read_all(*r, dl);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "through the fifo");
  });
}

TEST(Fifo, WriterWaitsForAReaderUntilItsDeadline) {
  run_test([]() -> task<void> {
    auto path = unique_fifo();
    auto start = deadline::clock::now();
    auto lonely = co_await fifo::open_writer(path, deadline::after(40ms));
    auto took = elapsed_since(start);
    EXPECT_EQ(lonely.error(), errc::timed_out);
    EXPECT_GE(took, 40ms);
    EXPECT_LT(took, 40ms + timing_tolerance);
    // A reader that arrives while the writer waits lets it in.
    std::optional<pipe::reader> reader;
    result<pipe::writer> w = errc::closed;
    co_await with_scope([&](scope& s) -> task<void> {
      event waiting;
      s.spawn([](const std::string& path, event& waiting, result<pipe::writer>& out) -> task<void> {
        waiting.set();
        out = co_await fifo::open_writer(path, deadline::after(5s));
      }(path, waiting, w));
      (void)co_await waiting.wait(deadline::after(5s));
      auto r = fifo::open_reader(path);
      EXPECT_TRUE(r);
      if (r) reader = std::move(*r);
      co_return;
    });
    CO_ASSERT_OK(w);
    CO_ASSERT_TRUE(reader.has_value());
    auto dl = deadline::after(5s);
    auto cr = co_await reader->close(dl);
    CO_ASSERT_OK(cr);
    auto broken = co_await w->write(as_bytes("gone"), dl);
    EXPECT_EQ(broken.error(), errc::broken);
    EXPECT_FALSE(sigpipe_pending());
  });
}

TEST(Fifo, RefusesWhatIsNotAFifoAndMissingPathsWithoutCreate) {
  run_test([]() -> task<void> {
    auto regular = scratch_dir() + "/regular";
    {
      std::FILE* f = std::fopen(regular.c_str(), "w");
      if (f) std::fclose(f);
    }
    auto r = fifo::open_reader(regular);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    auto missing = fifo::open_reader(unique_fifo(), {.create = false});
    EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
    auto w = co_await fifo::open_writer(unique_fifo(), deadline::after(1s), {.create = false});
    EXPECT_EQ(w.error(), std::errc::no_such_file_or_directory);
  });
}

TEST(Fifo, ARegularFileIsReportedAsNotAFifo) {
  // Both ends say what is wrong with the path, not a bare "invalid argument"; the code
  // still compares equal to invalid_argument.
  run_test([]() -> task<void> {
    auto regular = scratch_dir() + "/not-a-fifo";
    {
      std::FILE* f = std::fopen(regular.c_str(), "w");
      if (f) std::fclose(f);
    }
    auto r = fifo::open_reader(regular);
    EXPECT_EQ(r.error(), cause::not_a_fifo);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_EQ(r.error().message(), "not a FIFO");
    auto w = co_await fifo::open_writer(regular, deadline::after(1s));
    EXPECT_EQ(w.error(), cause::not_a_fifo);
  });
}

TEST(Fifo, SocatWritesIntoOurFifo) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto path = unique_fifo();
    auto r = fifo::open_reader(path);
    CO_ASSERT_OK(r);
    // socat opens the FIFO for writing (blocking until a reader exists: we are one) and
    // copies its stdin into it.
    auto socat = pipe::spawn(argv_of({"socat", "-u", "STDIN", ("OPEN:" + path + ",wronly").c_str()}));
    CO_ASSERT_OK(socat);
    auto wr = co_await socat->write(as_bytes("hello from socat\n"), dl);
    CO_ASSERT_OK(wr);
    auto sh = co_await socat->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto all = co_await read_all(*r, dl);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "hello from socat\n");
    auto st = co_await socat->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
  });
}

TEST(Fifo, SocatReadsFromOurFifo) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto path = unique_fifo();
    CO_ASSERT_TRUE(::mkfifo(path.c_str(), 0600) == 0);
    auto socat = pipe::spawn(argv_of({"socat", "-u", ("OPEN:" + path + ",rdonly").c_str(), "STDOUT"}));
    CO_ASSERT_OK(socat);
    auto w = co_await fifo::open_writer(path, dl);  // waits until socat has it open
    CO_ASSERT_OK(w);
    std::vector<std::byte> data(200000);
    fill_pattern(data, 0);
    std::string got;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](pipe::writer& w, const std::vector<std::byte>& data, deadline dl) -> task<void> {
        auto wr = co_await w.write(const_buffer(data), dl);
        EXPECT_TRUE(wr) << wr.error().message();
        (void)co_await w.close(dl);
      }(*w, data, dl));
      auto all = co_await read_all(*socat, dl);
      EXPECT_TRUE(all) << all.error().message();
      if (all) got = std::move(*all);
    });
    EXPECT_EQ(got.size(), data.size());
    EXPECT_TRUE(matches_pattern(as_bytes(got), 0));
    auto st = co_await socat->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
  });
}

// -- the CLI: exec:, fifo-read:, fifo-write: -----------------------------------------------

std::vector<std::string> cli(std::initializer_list<std::string> args) {
  std::vector<std::string> argv{STRATA_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

TEST(PipeCli, ConnectExecCatEchoesStdin) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto c = pipe::spawn(cli({"connect", "exec:cat"}));
    CO_ASSERT_OK(c);
    auto wr = co_await c->write(as_bytes("echo me\nand me\n"), dl);
    CO_ASSERT_OK(wr);
    auto sh = co_await c->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto all = co_await read_all(*c, dl);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "echo me\nand me\n");
    auto st = co_await c->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
  });
}

TEST(PipeCli, ConnectExecWithAShellCommandAndMessages) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    // shell=1 runs the command with /bin/sh -c; term("\n") makes each line a message.
    auto c = pipe::spawn(cli({"connect", R"(exec:"read x; echo got-$x"(shell=1) | term("\n"))"}));
    CO_ASSERT_OK(c);
    auto wr = co_await c->write(as_bytes("ping\n"), dl);
    CO_ASSERT_OK(wr);
    auto sh = co_await c->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto all = co_await read_all(*c, dl);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "got-ping\n");
    auto st = co_await c->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
  });
}

TEST(PipeCli, BridgeTcpToExecCatIsAnEchoServer) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto bridge = pipe::spawn(cli({"bridge", "tcp-listen:127.0.0.1:0", "exec:cat"}),
                              {.error = pipe::child_stderr::to_stdout});
    CO_ASSERT_OK(bridge);
    auto line = co_await read_line(*bridge, dl);
    CO_ASSERT_OK(line);
    const std::string prefix = "listening on ";
    CO_ASSERT_TRUE(line->rfind(prefix, 0) == 0);
    auto conn = co_await tcp::connect(line->substr(prefix.size()), dl);
    CO_ASSERT_OK(conn);
    auto wr = co_await conn->write(as_bytes("round trip through cat"), dl);
    CO_ASSERT_OK(wr);
    auto sh = co_await conn->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto back = co_await read_all(*conn, dl);
    CO_ASSERT_OK(back);
    EXPECT_EQ(*back, "round trip through cat");
    auto st = co_await bridge->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
  });
}

TEST(PipeCli, ConnectFifoReadAndFifoWrite) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto path = unique_fifo();
    // strata connect fifo-read:PATH prints what a writer sends, until the writer ends.
    auto reader_cli = pipe::spawn(cli({"connect", "fifo-read:" + path}));
    CO_ASSERT_OK(reader_cli);
    auto sh = co_await reader_cli->shutdown_write(dl);  // nothing to send the other way
    CO_ASSERT_OK(sh);
    // strata connect fifo-write:PATH copies its stdin into the FIFO.
    auto writer_cli = pipe::spawn(cli({"connect", "fifo-write:" + path}));
    CO_ASSERT_OK(writer_cli);
    auto wr = co_await writer_cli->write(as_bytes("fifo via two CLIs\n"), dl);
    CO_ASSERT_OK(wr);
    auto sh2 = co_await writer_cli->shutdown_write(dl);
    CO_ASSERT_OK(sh2);
    auto all = co_await read_all(*reader_cli, dl);
    CO_ASSERT_OK(all);
    EXPECT_EQ(*all, "fifo via two CLIs\n");
    auto st = co_await writer_cli->wait(dl);
    CO_ASSERT_OK(st);
    EXPECT_TRUE(st->success()) << st->to_string();
    auto st2 = co_await reader_cli->wait(dl);
    CO_ASSERT_OK(st2);
    EXPECT_TRUE(st2->success()) << st2->to_string();
  });
}

}  // namespace
}  // namespace strata::test
