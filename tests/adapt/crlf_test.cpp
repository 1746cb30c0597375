// crlf (and term, its user-delimiter form): round trips over unix and TCP sockets, the
// wire format, messages that contain the delimiter, size limits both ways, reads split
// at every byte (delimiters split too), buffering, timeouts, and detach-then-continue.
#include "strata/adapt/crlf.hpp"

#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

#include "strata/adapt/prefix.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/unix.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "support/mem_stream.hpp"
#include "support/memory.hpp"

using namespace std::chrono_literals;

// -- the shared message conformance suite (traits outside the anonymous namespace: see
// conformance.hpp) --------------------------------------------------------------------

namespace strata::test {
namespace crlf_conformance {

// The suite sends random bytes, so the delimiter must be one they practically never
// contain: 16 bytes (a chance of about 2^-128 per position).
inline crlf_options unlikely_delimiter(std::size_t max) {
  return {.delimiter = std::string("\xfe\x01strata-eom!\x02\xfd\xff"), .max_message = max};
}

struct over_unix {
  using message_type = crlf<uds::stream>;
  static constexpr std::size_t max_message = 64 * 1024;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<message_type, message_type>>> make_pair(deadline) {
    auto p = uds::stream::pair();
    if (!p) co_return unexpected(p.error());
    co_return std::pair<message_type, message_type>{
        message_type(std::move(p->first), unlikely_delimiter(max_message)),
        message_type(std::move(p->second), unlikely_delimiter(max_message))};
  }
};

// Byte-at-a-time reads and writes in memory: delimiters arrive split at every byte.
struct over_mem_bytewise {
  using message_type = crlf<mem_stream>;
  static constexpr std::size_t max_message = 4096;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<message_type, message_type>>> make_pair(deadline) {
    mem_options o{.max_read_chunk = 1, .max_write_chunk = 1};
    auto [a, b] = mem_stream::pair(o, o);
    co_return std::pair<message_type, message_type>{
        message_type(std::move(a), unlikely_delimiter(max_message)),
        message_type(std::move(b), unlikely_delimiter(max_message))};
  }
};

using message_types = ::testing::Types<over_unix, over_mem_bytewise>;
INSTANTIATE_TYPED_TEST_SUITE_P(Crlf, message_conformance, message_types);

}  // namespace crlf_conformance
}  // namespace strata::test

namespace strata {
namespace {

// -- compile-time checks ---------------------------------------------------------------

static_assert(crlf<tcp::stream>::capabilities.unit == unit::message);
static_assert(crlf<tcp::stream>::capabilities.reliable);
static_assert(crlf<tcp::stream>::capabilities.ordered);
static_assert(crlf<tcp::stream>::capabilities.domain == domain::net);
static_assert(crlf<tcp::stream>::capabilities.max_message == 64 * 1024);
static_assert(crlf<uds::stream>::capabilities.domain == domain::ipc);
static_assert(!crlf<uds::stream>::capabilities.fd_passing);
static_assert(message_socket<crlf<tcp::stream>>);
static_assert(message_socket<crlf<any_stream>>);
static_assert(!stacks_on<crlf<tcp::stream>, crlf_layer>);
static_assert(!stacks_on<prefix<tcp::stream>, crlf_layer>);
static_assert(term_row.name == "term");
static_assert(
    std::is_same_v<decltype(crlf{std::declval<uds::stream>(), {.delimiter = "\n"}}), crlf<uds::stream>>);

// -- helpers ---------------------------------------------------------------------------

deadline soon() { return deadline::after(5s); }

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = as_bytes(s);
  return {b.begin(), b.end()};
}

std::string text(std::span<const std::byte> b) { return std::string(as_text(b)); }

/// script_stream serves scripted chunks to read_some (one chunk, or what fits of it, per
/// call; then end_of_stream) and records writes: a deterministic lower layer that also
/// counts calls, so tests can check buffering and one-write-per-message.
struct script_stream {
  static constexpr properties capabilities = uds::stream::capabilities;

  script_stream() = default;
  explicit script_stream(std::vector<std::vector<std::byte>> c) : chunks(std::move(c)) {}

  std::vector<std::vector<std::byte>> chunks;
  std::size_t next = 0;
  std::size_t offset = 0;
  int reads = 0;
  int writes = 0;
  std::vector<std::byte> written;

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline) {
    ++reads;
    if (next == chunks.size()) co_return errc::end_of_stream;
    auto& c = chunks[next];
    auto n = std::min(buf.size(), c.size() - offset);
    std::copy_n(c.begin() + static_cast<std::ptrdiff_t>(offset), n, buf.begin());
    offset += n;
    if (offset == c.size()) {
      ++next;
      offset = 0;
    }
    co_return n;
  }
  task<result<void>> write(const_buffers bufs, deadline) {
    ++writes;
    bufs.copy_to(written);
    co_return result<void>{};
  }
  task<result<void>> shutdown_write(deadline) { co_return result<void>{}; }
  task<result<void>> close(deadline) { co_return result<void>{}; }
};

task<result<std::pair<tcp::stream, tcp::stream>>> tcp_pair() {
  auto l = tcp::listener::bind("127.0.0.1:0");
  if (!l) co_return unexpected(l.error());
  auto where = l->local_address();
  if (!where) co_return unexpected(where.error());
  auto c = co_await tcp::connect(*where, soon());
  if (!c) co_return unexpected(c.error());
  auto s = co_await l->accept(soon());
  if (!s) co_return unexpected(s.error());
  co_return std::pair{std::move(*c), std::move(*s)};
}

template <class A, class B>
task<void> expect_round_trip(A& a, B& b, const std::vector<std::string>& messages) {
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn([](A& a, const std::vector<std::string>& messages) -> task<void> {
      for (const auto& m : messages) {
        auto r = co_await a.send(as_bytes(m), soon());
        EXPECT_TRUE(r) << r.error().message();
        if (!r) co_return;
      }
    }(a, messages));
    std::vector<std::byte> buf(1 << 17);
    for (const auto& m : messages) {
      auto n = co_await b.recv(buf, soon());
      EXPECT_TRUE(n) << n.error().message();
      if (!n) co_return;
      EXPECT_EQ(*n, m.size());
      EXPECT_TRUE(text(std::span(buf).first(*n)) == m);
    }
  });
}

// -- round trips -----------------------------------------------------------------------

TEST(Crlf, RoundTripUnix) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    crlf a{std::move(p->first)};
    crlf b{std::move(p->second)};
    std::vector<std::string> messages{"hello", "", "\r", "\n", "a\rb\nc", std::string(64 * 1024, 'q'),
                                      "last"};
    co_await expect_round_trip(a, b, messages);
    co_await expect_round_trip(b, a, messages);
    EXPECT_TRUE(co_await a.shutdown_write(soon()));
    std::array<std::byte, 16> buf;
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::end_of_stream);
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::end_of_stream);
    // Socket close drains the peer until its end: close the side whose peer finished first.
    EXPECT_TRUE(co_await b.close(soon()));
    EXPECT_TRUE(co_await a.close(soon()));
  }());
}

TEST(Crlf, RoundTripTcpWithTermDelimiter) {
  run([]() -> task<void> {
    auto p = co_await tcp_pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    crlf_options o{.delimiter = "<<END>>", .max_message = 100000};
    crlf a{std::move(p->first), o};
    crlf b{std::move(p->second), o};
    EXPECT_EQ(query<fact::peer_address>(a)->port(), query<fact::local_address>(b)->port());
    EXPECT_EQ(query<fact::max_message>(a).value(), 100000u);
    std::vector<std::string> messages;
    for (int i = 0; i < 300; ++i)
      messages.push_back(std::string(static_cast<std::size_t>(i * 53 % 4000), '<'));
    messages.push_back("<<END>");
    messages.push_back(std::string(100000, 'z'));
    co_await expect_round_trip(a, b, messages);
    co_await expect_round_trip(b, a, messages);
    EXPECT_TRUE(co_await a.shutdown_write(soon()));
    EXPECT_TRUE(co_await b.close(soon()));
    EXPECT_TRUE(co_await a.close(soon()));
  }());
}

// -- wire format and the delimiter inside messages ------------------------------------

TEST(Crlf, WireBytesAndOneWritePerMessage) {
  run([]() -> task<void> {
    crlf a{script_stream{}};
    std::array<const_buffer, 3> parts{as_bytes("GET "), as_bytes(""), as_bytes("/")};
    EXPECT_TRUE(co_await a.send(std::span<const const_buffer>(parts), soon()));
    EXPECT_TRUE(co_await a.send(as_bytes(""), soon()));
    std::vector<const_buffer> many(12, as_bytes("ab"));
    EXPECT_TRUE(co_await a.send(many, soon()));
    EXPECT_EQ(a.next_layer().writes, 3);
    EXPECT_EQ(text(a.next_layer().written), "GET /\r\n\r\nabababababababababababab\r\n");

    crlf t{script_stream{}, {.delimiter = "\n"}};
    EXPECT_TRUE(co_await t.send(as_bytes("line"), soon()));
    EXPECT_EQ(text(t.next_layer().written), "line\n");
  }());
}

TEST(Crlf, BatchSendIsOneWriteAndOneBadMessageRefusesIt) {
  run([]() -> task<void> {
    crlf a{script_stream{}};
    std::vector<outgoing_datagram> msgs(3);
    msgs[0].data = as_bytes("one");
    msgs[1].data = as_bytes("");
    msgs[2].data = as_bytes("three");
    auto n = co_await a.send_batch(msgs, soon());
    EXPECT_TRUE(n && *n == 3u);
    EXPECT_EQ(a.next_layer().writes, 1);
    EXPECT_EQ(text(a.next_layer().written), "one\r\n\r\nthree\r\n");
    // A delimiter inside any message refuses the whole batch before a byte leaves.
    msgs[1].data = as_bytes("t\r\nwo");
    auto bad = co_await a.send_batch(msgs, soon());
    EXPECT_EQ(bad.error(), errc::invalid_argument);
    EXPECT_EQ(a.next_layer().writes, 1);
  }());
}

TEST(Crlf, MessageContainingDelimiterIsRefused) {
  run([]() -> task<void> {
    crlf a{script_stream{}};
    EXPECT_EQ((co_await a.send(as_bytes("a\r\nb"), soon())).error(), errc::invalid_argument);
    // Split across gather parts, even across an empty part.
    std::array<const_buffer, 3> parts{as_bytes("a\r"), as_bytes(""), as_bytes("\nb")};
    EXPECT_EQ((co_await a.send(std::span<const const_buffer>(parts), soon())).error(),
              errc::invalid_argument);
    EXPECT_EQ(a.next_layer().writes, 0);
    // A lone CR or LF is fine, also at the end.
    EXPECT_TRUE(co_await a.send(as_bytes("a\rb\n\r"), soon()));
    EXPECT_EQ(text(a.next_layer().written), "a\rb\n\r\r\n");

    crlf n{script_stream{}, {.delimiter = "\n"}};
    EXPECT_EQ((co_await n.send(as_bytes("two\nlines"), soon())).error(), errc::invalid_argument);
    EXPECT_TRUE(co_await n.send(as_bytes("cr\r"), soon()));
  }());
}

TEST(Crlf, DelimiterInMessageErrorNamesTheCause) {
  // The code still compares equal to invalid_argument (what callers test), and its
  // message says why, instead of a bare "invalid argument".
  run([]() -> task<void> {
    crlf a{script_stream{}};
    auto r = co_await a.send(as_bytes("a\r\nb"), soon());
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_EQ(r.error(), cause::delimiter_in_message);
    EXPECT_EQ(r.error().message(), "message contains the delimiter");
    EXPECT_TRUE(r.error() == std::errc::invalid_argument);
  }());
  auto direct = check_crlf_message({.delimiter = ";"}, as_bytes("x;y"));
  EXPECT_EQ(direct.error(), cause::delimiter_in_message);
  // Bad options stay a plain invalid_argument: the cause is not the message.
  auto bad = check_crlf_message({.delimiter = ""}, as_bytes("x"));
  EXPECT_EQ(bad.error(), make_error_code(errc::invalid_argument));
}

TEST(Crlf, CheckMessageAcrossPartsAndOverlappingDelimiters) {
  auto check = [](std::string_view delim, std::vector<std::string_view> parts) {
    std::vector<const_buffer> list;
    for (auto p : parts) list.push_back(as_bytes(p));
    return check_crlf_message({.delimiter = std::string(delim)}, list);
  };
  EXPECT_TRUE(check("<END>", {"<EN", "D"}));
  EXPECT_FALSE(check("<END>", {"<EN", "D>"}));
  EXPECT_FALSE(check("<END>", {"<", "E", "", "N", "D", ">"}));
  EXPECT_FALSE(check("<END>", {"xx<", "ENDyy", "<END>"}));
  EXPECT_TRUE(check("<END>", {"<EN", "D", "<E"}));
  // "abab" overlaps itself: "xab" + "abab" = "xabab|ab" would end the message at "x".
  EXPECT_FALSE(check("abab", {"xab"}));
  EXPECT_FALSE(check("abab", {"x", "a", "b"}));
  EXPECT_TRUE(check("abab", {"xa"}));
  EXPECT_TRUE(check("abab", {"xaba"}));  // "xaba" + "abab": first "abab" at 4, fine
  // What the decoder receives for an accepted message is that message.
  EXPECT_FALSE(check("abab", {"aab"}));  // "aab" + "abab" = "a|ababab"
  for (std::string_view m : {"xa", "xaba", "b", "bb", "aa", "abb"}) {
    ASSERT_TRUE(check("abab", {m})) << m;
    crlf_decoder d({.delimiter = "abab"});
    auto wire = std::string(m) + "abab";
    auto step = d.decode(as_bytes(wire));
    EXPECT_EQ(step.state, decode_step::status::message);
    EXPECT_EQ(step.length, m.size()) << m;
  }
}

TEST(Crlf, InvalidOptions) {
  EXPECT_EQ(validate(crlf_options{.delimiter = ""}).error(), errc::invalid_argument);
  EXPECT_EQ(validate(crlf_options{.delimiter = std::string(17, '-')}).error(), errc::invalid_argument);
  EXPECT_TRUE(validate(crlf_options{.delimiter = std::string(16, '-')}));
  EXPECT_EQ(crlf<uds::stream>::validate({.delimiter = ""}).error(), errc::invalid_argument);
  run([]() -> task<void> {
    crlf a{script_stream{{bytes_of("x\r\n")}}, {.delimiter = ""}};
    std::array<std::byte, 8> buf;
    EXPECT_EQ((co_await a.send(as_bytes("x"), soon())).error(), errc::invalid_argument);
    EXPECT_EQ((co_await a.recv(buf, soon())).error(), errc::invalid_argument);
    EXPECT_EQ(a.next_layer().writes, 0);
    EXPECT_EQ(a.next_layer().reads, 0);
  }());
}

// -- limits ----------------------------------------------------------------------------

TEST(Crlf, OversizeSendSendsNothing) {
  run([]() -> task<void> {
    crlf a{script_stream{}, {.max_message = 10}};
    EXPECT_EQ((co_await a.send(as_bytes("01234567890"), soon())).error(), errc::message_too_large);
    EXPECT_EQ(a.next_layer().writes, 0);
    EXPECT_TRUE(co_await a.send(as_bytes("0123456789"), soon()));
    EXPECT_EQ(text(a.next_layer().written), "0123456789\r\n");
    EXPECT_EQ(a.runtime_capabilities().max_message, 10u);
  }());
}

TEST(Crlf, OversizeRecvIsSticky) {
  run([]() -> task<void> {
    std::array<std::byte, 100> buf;
    // Exactly max_message bytes before the delimiter: fine.
    crlf a{script_stream{{bytes_of("0123456789\r\nok\r\n")}}, {.max_message = 10}};
    auto n = co_await a.recv(buf, soon());
    EXPECT_TRUE(n && *n == 10);
    // One more: refused, although the delimiter follows, and for good.
    crlf b{script_stream{{bytes_of("01234567890\r\nok\r\n")}}, {.max_message = 10}};
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::message_too_large);
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::message_too_large);
    // A long line with no delimiter at all is refused once max_message + delimiter
    // bytes arrived, without waiting for more.
    crlf c{script_stream{{bytes_of("0123456789ab"), bytes_of("never read")}}, {.max_message = 10}};
    EXPECT_EQ((co_await c.recv(buf, soon())).error(), errc::message_too_large);
    EXPECT_EQ(c.next_layer().reads, 1);
    // Only the read direction failed.
    EXPECT_TRUE(co_await c.send(as_bytes("ok"), soon()));
  }());
}

TEST(Crlf, SmallBufferKeepsMessage) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    crlf a{std::move(p->first)};
    crlf b{std::move(p->second)};
    std::string big(100, 'b');
    EXPECT_TRUE(co_await a.send(as_bytes(big), soon()));
    EXPECT_TRUE(co_await a.send(as_bytes("next"), soon()));
    std::array<std::byte, 10> small;
    EXPECT_EQ((co_await b.recv(small, soon())).error(), errc::message_too_large);
    EXPECT_EQ((co_await b.recv(small, soon())).error(), errc::message_too_large);
    std::array<std::byte, 100> large;
    auto n = co_await b.recv(large, soon());
    EXPECT_TRUE(n && *n == 100);
    EXPECT_EQ(text(large), big);
    n = co_await b.recv(small, soon());
    EXPECT_TRUE(n && *n == 4);
    EXPECT_EQ(text(std::span(small).first(4)), "next");
  }());
}

// -- end of stream ---------------------------------------------------------------------

TEST(Crlf, TruncatedLineIsProtocolError) {
  run([]() -> task<void> {
    std::array<std::byte, 64> buf;
    crlf a{script_stream{{bytes_of("no delimiter")}}};
    EXPECT_EQ((co_await a.recv(buf, soon())).error(), errc::protocol_error);
    EXPECT_EQ((co_await a.recv(buf, soon())).error(), errc::protocol_error);
    // Half a delimiter is still a truncated line.
    crlf b{script_stream{{bytes_of("done\r\nhalf\r")}}};
    EXPECT_TRUE(co_await b.recv(buf, soon()));
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::protocol_error);
    crlf c{script_stream{{bytes_of("done\r\n")}}};
    EXPECT_TRUE(co_await c.recv(buf, soon()));
    EXPECT_EQ((co_await c.recv(buf, soon())).error(), errc::end_of_stream);
  }());
}

TEST(Crlf, TruncatedLineOverSocket) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    auto& raw = p->first;
    crlf b{std::move(p->second)};
    EXPECT_TRUE(co_await raw.write(as_bytes("partial"), soon()));
    EXPECT_TRUE(co_await raw.shutdown_write(soon()));
    std::array<std::byte, 64> buf;
    EXPECT_EQ((co_await b.recv(buf, soon())).error(), errc::protocol_error);
  }());
}

// -- buffering and split reads ---------------------------------------------------------

TEST(Crlf, SplitAtEveryByte) {
  for (std::string delim : {"\r\n", "\n", "<END>", "abab"}) {
    std::vector<std::string> messages{"first", "", "third message", "x", "aba"};
    std::string stream;
    for (const auto& m : messages) stream += m + delim;
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
      SCOPED_TRACE(testing::Message() << "delimiter=" << delim << " cut=" << cut);
      std::vector<std::vector<std::byte>> chunks{bytes_of(std::string_view(stream).substr(0, cut)),
                                                 bytes_of(std::string_view(stream).substr(cut))};
      run([](std::string delim, std::vector<std::vector<std::byte>> chunks,
             const std::vector<std::string>& messages) -> task<void> {
        crlf p{script_stream{std::move(chunks)}, {.delimiter = delim}};
        std::array<std::byte, 64> buf;
        for (const auto& m : messages) {
          auto n = co_await p.recv(buf, soon());
          EXPECT_TRUE(n);
          if (!n) co_return;
          EXPECT_EQ(text(std::span(buf).first(*n)), m);
        }
        EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::end_of_stream);
      }(delim, std::move(chunks), messages));
    }
  }
}

TEST(Crlf, OneByteChunks) {
  run([]() -> task<void> {
    std::vector<std::vector<std::byte>> chunks;
    for (char c : std::string_view("alpha\r\nbe\rta\r\n\r\ngamma\r\n")) chunks.push_back({std::byte(c)});
    crlf p{script_stream{std::move(chunks)}};
    std::array<std::byte, 16> buf;
    for (std::string_view m : {"alpha", "be\rta", "", "gamma"}) {
      auto n = co_await p.recv(buf, soon());
      EXPECT_TRUE(n);
      if (!n) co_return;
      EXPECT_EQ(text(std::span(buf).first(*n)), m);
    }
    EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::end_of_stream);
  }());
}

TEST(Crlf, SeveralMessagesInOneRead) {
  run([]() -> task<void> {
    std::string all;
    for (int i = 0; i < 100; ++i) all += std::string(62, static_cast<char>('a' + i % 26)) + "\r\n";
    crlf p{script_stream{{bytes_of(all)}}};
    std::array<std::byte, 62> buf;
    for (int i = 0; i < 100; ++i) {
      auto n = co_await p.recv(buf, soon());
      EXPECT_TRUE(n && *n == 62);
      EXPECT_EQ(buf[61], static_cast<std::byte>('a' + i % 26));
    }
    // The small read that waits for the first bytes, then one read for all the rest:
    // the lower layer is not asked once per message.
    EXPECT_EQ(p.next_layer().reads, 2);
    EXPECT_EQ((co_await p.recv(buf, soon())).error(), errc::end_of_stream);
  }());
}

// -- memory follows the bytes that arrived ---------------------------------------------

TEST(Crlf, LongLineCostsOneCopyPlusABoundedStep) {
  // 8 MiB of a line that has not ended yet, allowed by max=1g: the receiver holds the
  // line once (no zero-filled or copied growth).
  // (In memory: an expired deadline then reads what was written, with no event loop turn.)
  run([]() -> task<void> {
    auto [raw, lower] = test::mem_stream::pair();
    crlf b{std::move(lower), {.max_message = std::size_t{1} << 30}};
    constexpr std::size_t piece = 64 * 1024;
    constexpr std::size_t line = 8u << 20;
    std::vector<std::byte> bytes(piece, std::byte{'x'});
    std::array<std::byte, 64> buf;
    auto before = test::resident_bytes();
    for (std::size_t sent = 0; sent < line; sent += piece) {
      auto w = co_await raw.write(const_buffer(bytes), soon());
      CO_ASSERT_OK(w);
      // Reads what is there, then times out without waiting: the line goes on.
      CO_ASSERT_EQ((co_await b.recv(buf, deadline::already())).error(), errc::timed_out);
    }
    auto grown = test::resident_bytes() - std::min(before, test::resident_bytes());
    EXPECT_LT(grown, line + (std::size_t{3} << 20)) << "resident memory grew by " << grown << " bytes";
    // The line is whole once its delimiter arrives.
    auto end = co_await raw.write(as_bytes("\r\n"), soon());
    CO_ASSERT_OK(end);
    std::vector<std::byte> big(line);
    auto n = co_await b.recv(big, soon());
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, line);
    EXPECT_EQ(b.buffered_capacity(), 0u) << "the memory of a consumed long line is kept";
  }());
}

// -- deadlines lose no byte ------------------------------------------------------------

TEST(Crlf, TimeoutKeepsPartialLine) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    auto& raw = p->first;
    crlf b{std::move(p->second)};
    std::array<std::byte, 64> buf;
    EXPECT_TRUE(co_await raw.write(as_bytes("pay\r"), soon()));
    EXPECT_EQ((co_await b.recv(buf, deadline::after(20ms))).error(), errc::timed_out);
    EXPECT_EQ((co_await b.recv(buf, deadline::already())).error(), errc::timed_out);
    EXPECT_TRUE(co_await raw.write(as_bytes("load\r\n"), soon()));
    auto n = co_await b.recv(buf, soon());
    EXPECT_TRUE(n);
    EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), "pay\rload");
  }());
}

// -- detach and protocol switching -----------------------------------------------------

TEST(Crlf, TextHandshakeThenBinaryFrames) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    // The peer sends a line-based greeting and, in the same write, length-prefixed frames.
    std::string wire = "HELLO strata\r\nSWITCH prefix\r\n";
    std::array<std::byte, 8> header;
    for (std::string_view m : {"bin-1", "bin-2"}) {
      auto h = encode_prefix_header({.header_bytes = 2}, m.size(), header);
      wire += as_text(std::span(header).first(h ? *h : 0));
      wire += m;
    }
    EXPECT_TRUE(co_await p->first.write(as_bytes(wire), soon()));
    EXPECT_TRUE(co_await p->first.shutdown_write(soon()));

    crlf lines{std::move(p->second)};
    std::array<std::byte, 64> buf;
    for (std::string_view m : {"HELLO strata", "SWITCH prefix"}) {
      auto n = co_await lines.recv(buf, soon());
      EXPECT_TRUE(n);
      EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), m);
    }
    auto d = lines.detach();
    EXPECT_EQ(d.unread.size(), 2 * (2 + 5u));
    EXPECT_EQ((co_await lines.recv(buf, soon())).error(), errc::closed);
    prefix frames{std::move(d.lower), {.header_bytes = 2}, std::move(d.unread)};
    for (std::string_view m : {"bin-1", "bin-2"}) {
      auto n = co_await frames.recv(buf, soon());
      EXPECT_TRUE(n);
      EXPECT_EQ(text(std::span(buf).first(n ? *n : 0)), m);
    }
    EXPECT_EQ((co_await frames.recv(buf, soon())).error(), errc::end_of_stream);
  }());
}

// -- fault injection -------------------------------------------------------------------

TEST(Crlf, InjectedFailuresSurfaceAsErrors) {
  auto outcome = test::run_until_passes([](int fail_at) -> task<result<void>> {
    auto [x, y] = test::mem_stream::pair({.max_read_chunk = 3, .fail_at_operation = fail_at},
                                         {.max_write_chunk = 5, .fail_at_operation = fail_at});
    crlf a{std::move(x)};
    crlf b{std::move(y)};
    std::vector<std::string> messages{"alpha", "", std::string(40, 'b'), "gam\rma"};
    result<void> sent;
    result<void> received;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](crlf<test::mem_stream>& a, const std::vector<std::string>& messages,
                 result<void>& sent) -> task<void> {
        for (const auto& m : messages) {
          sent = co_await a.send(as_bytes(m), soon());
          if (!sent) co_return;
        }
        sent = co_await a.shutdown_write(soon());
      }(a, messages, sent));
      std::array<std::byte, 64> buf;
      for (const auto& m : messages) {
        auto n = co_await b.recv(buf, soon());
        if (!n) {
          received = n.error();
          co_return;
        }
        if (text(std::span(buf).first(*n)) != m) {
          received = errc::protocol_error;
          ADD_FAILURE() << "message corrupted with fail_at=" << fail_at;
          co_return;
        }
      }
      auto end = co_await b.recv(buf, soon());
      received = end.error() == errc::end_of_stream ? result<void>{} : result<void>(end.error());
    });
    if (!sent) co_return sent;
    co_return received;
  });
  EXPECT_TRUE(outcome.passed);
  EXPECT_GT(outcome.failed_runs, 0);
}

// -- dynamic stacks --------------------------------------------------------------------

TEST(Crlf, OverAnyStream) {
  run([]() -> task<void> {
    auto p = uds::stream::pair();
    EXPECT_TRUE(p);
    if (!p) co_return;
    crlf a{any_stream(std::move(p->first)), {.delimiter = "\n", .max_message = 1024}};
    crlf b{any_stream(std::move(p->second)), {.delimiter = "\n", .max_message = 1024}};
    auto caps = a.runtime_capabilities();
    EXPECT_EQ(caps.unit, unit::message);
    EXPECT_EQ(caps.domain, domain::ipc);
    EXPECT_EQ(caps.max_message, 1024u);
    any_message m(std::move(b));
    std::vector<std::string> messages{"dynamic", "stack"};
    co_await expect_round_trip(a, m, messages);
  }());
}

}  // namespace
}  // namespace strata
