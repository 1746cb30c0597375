// The run-time checker: accepted stacks and what they offer, refused stacks with the
// key words of the message and the position it points at, and the adapter search.
#include <gtest/gtest.h>

#include <string>

#include "strata/adapt/crlf.hpp"
#include "strata/adapt/prefix.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/transport/tcp.hpp"

namespace strata {
namespace {

pipeline accepted(std::string_view text) {
  pipeline_error error;
  auto p = pipeline::parse(text, error);
  EXPECT_TRUE(p.has_value()) << error.render(text);
  return p ? *p : pipeline{};
}

pipeline_error refused(std::string_view text) {
  pipeline_error error;
  auto p = pipeline::parse(text, error);
  EXPECT_FALSE(p.has_value()) << "accepted: " << text;
  EXPECT_LE(error.position, text.size());
  return error;
}

void expect_words(const pipeline_error& error, const std::vector<std::string_view>& words) {
  for (auto w : words)
    EXPECT_NE(error.message.find(w), std::string::npos) << "'" << w << "' not in: " << error.message;
}

TEST(Check, TcpPrefixOffersMessagesOverTheNet) {
  auto p = accepted("tcp:127.0.0.1:7000 | prefix(4)");
  ASSERT_EQ(p.layers().size(), 2u);
  EXPECT_FALSE(p.is_listener());
  EXPECT_EQ(p.layers()[0].offers.unit, unit::stream);
  EXPECT_EQ(p.layers()[0].entry->name, "tcp");
  auto top = p.top();
  EXPECT_EQ(top.unit, unit::message);
  EXPECT_EQ(top.connection, connection::based);
  EXPECT_TRUE(top.reliable);
  EXPECT_TRUE(top.ordered);
  EXPECT_EQ(top.domain, domain::net);
  EXPECT_EQ(top.max_message, std::size_t{1} << 20);
  // The checker's answer is the typed stack's: the same row, the same stack_on.
  EXPECT_EQ(describe(top), describe(prefix<tcp::stream>::capabilities));
}

TEST(Check, ParametersRefineMaxMessage) {
  EXPECT_EQ(accepted("tcp:127.0.0.1:1 | prefix(bytes=2, order=little, max=1k)").top().max_message, 1024u);
  EXPECT_EQ(accepted("tcp:127.0.0.1:1 | prefix(1)").top().max_message, 255u);  // default capped by the header
  EXPECT_EQ(accepted("tcp:127.0.0.1:1 | prefix(8, max=1g)").top().max_message, std::size_t{1} << 30);
  EXPECT_EQ(accepted("tcp:127.0.0.1:1 | crlf").top().max_message, 64u * 1024);
  EXPECT_EQ(accepted("tcp:127.0.0.1:1 | crlf(max=4096, delim=\"\\n\")").top().max_message, 4096u);
  EXPECT_EQ(accepted("tcp:127.0.0.1:1 | crlf(max=2M)").top().max_message, 2u << 20);
  EXPECT_EQ(accepted("unix:@x | term(\"\\0\", max=100)").top().max_message, 100u);
}

TEST(Check, TransportsAndListeners) {
  auto l = accepted("tcp-listen:[::1]:0(reuseport=1, backlog=16, nodelay=0) | crlf");
  EXPECT_TRUE(l.is_listener());
  auto u = accepted("unix-listen:/tmp/strata.sock(backlog=4) | term(delim=\"\\n\")");
  EXPECT_TRUE(u.is_listener());
  EXPECT_EQ(u.layers()[0].offers.domain, domain::ipc);
  EXPECT_TRUE(u.layers()[0].offers.fd_passing);
  EXPECT_FALSE(u.top().fd_passing);  // the framing adapters do not carry descriptors
  EXPECT_EQ(accepted("tcp:localhost:80(nodelay=0)").top().unit, unit::stream);
  EXPECT_EQ(accepted("unix:@abstract").top().domain, domain::ipc);
}

TEST(Check, MessageBelowStreamAdapterNamesPairAndProperty) {
  std::string text = "tcp:127.0.0.1:1 | prefix(4) | crlf";
  auto e = refused(text);
  expect_words(e, {"crlf needs a stream below it, but prefix(4) provides message", "unit",
                   "insert bytes between them: `prefix(4) | bytes | crlf`"});
  EXPECT_EQ(e.position, text.find("crlf"));
}

TEST(Check, AdapterFirstSaysATransportComesFirst) {
  auto e = refused("prefix(4) | tcp");
  EXPECT_EQ(e.position, 0u);
  expect_words(e, {"prefix needs a stream below it", "first layer", "starts with a transport",
                   "(tcp, tcp-listen, unix, unix-listen,", "tcp must be the first layer",
                   "`tcp:HOST:PORT | prefix(4)`"});
  // Only transports that give what prefix needs are offered: no message transports.
  EXPECT_EQ(e.message.find("udp"), std::string::npos) << e.message;
  auto alone = refused("crlf");
  expect_words(alone, {"crlf needs a stream below it", "e.g. `tcp:HOST:PORT | crlf`"});
}

TEST(Check, TransportAboveTheBottom) {
  std::string text = "tcp:1.2.3.4:5 | unix-listen:@x";
  auto e = refused(text);
  EXPECT_EQ(e.position, text.find("unix"));
  expect_words(e,
               {"unix-listen is a transport (listener)", "must be the first layer", "above tcp:1.2.3.4:5"});
}

TEST(Check, UnknownProtocolSuggestsTheClosestName) {
  auto e = refused("tcpp:1.2.3.4:5");
  EXPECT_EQ(e.message, "unknown protocol 'tcpp'; did you mean 'tcp'?");
  EXPECT_EQ(e.position, 0u);
  std::string text = "tcp:1.2.3.4:5 | prefx(4)";
  auto p = refused(text);
  EXPECT_EQ(p.message, "unknown protocol 'prefx'; did you mean 'prefix'?");
  EXPECT_EQ(p.position, text.find("prefx"));
  expect_words(refused("unix-listn:@x"), {"did you mean 'unix-listen'?"});
  auto far = refused("quic:1.2.3.4:5");
  expect_words(far, {"unknown protocol 'quic'", "known protocols: tcp, tcp-listen"});
}

TEST(Check, MissingAndBadTargets) {
  auto e = refused("tcp");
  expect_words(e, {"tcp needs a target HOST:PORT"});
  EXPECT_EQ(e.position, 3u);
  expect_words(refused("unix-listen | crlf"), {"unix-listen needs a target PATH or @NAME"});

  auto no_port = refused("tcp:1.2.3.4");
  EXPECT_EQ(no_port.message, "tcp: " + address::explain_ip("1.2.3.4"));
  EXPECT_EQ(no_port.position, 4u);
  expect_words(refused("tcp:1.2.3.4:99999"), {"bad port"});
  expect_words(refused("tcp-listen:::1:80"), {"brackets"});
  expect_words(refused("tcp:example.org:80"), {"not a numeric"});
  expect_words(refused("tcp:1.2.3.4:0"), {"port 0"});
  EXPECT_TRUE(pipeline::parse("tcp-listen:1.2.3.4:0", e).has_value());

  expect_words(refused("unix:@"), {"empty abstract name"});
  expect_words(refused("unix:/" + std::string(200, 'x')), {"path too long (201 bytes; at most 107)"});
  expect_words(refused("unix:@" + std::string(108, 'x')),
               {"abstract name too long (108 bytes; at most 107)"});
  expect_words(refused("unix:\"a\\0b\""), {"NUL"});

  std::string text = "tcp:1.2.3.4:5 | prefix:x";
  auto target = refused(text);
  expect_words(target, {"prefix takes no target"});
  EXPECT_EQ(target.position, text.find(':', 14));
}

TEST(Check, ParameterErrorsNameTheParameterAndPointAtIt) {
  struct bad {
    std::string adapter;
    std::string param;  // the text the error must point at
    std::vector<std::string_view> words;
  };
  std::vector<bad> cases = {
      {"prefix(foo=1)", "foo", {"prefix has no parameter 'foo'; it takes bytes, order, max"}},
      {"prefix(9)", "9", {"prefix: bytes must be a number from 1 to 8, got '9'"}},
      {"prefix(bytes=x)", "bytes", {"bytes", "got 'x'"}},
      {"prefix(4, bytes=2)", "bytes", {"'bytes' is given twice"}},
      {"prefix(4, 2)", "2", {"one positional value (bytes)"}},
      {"prefix(order=middle)", "order", {"order must be big or little, got 'middle'"}},
      {"prefix(2, max=64k)", "max", {"max 64k does not fit a 2-byte header (at most 65535)"}},
      {"prefix(max=2g)", "max", {"prefix: max must be 1 to 1g, got '2g'"}},
      {"crlf(4)", "4", {"crlf takes no positional value", "crlf(max=4)"}},
      {"crlf(max=0)", "max", {"crlf: max must be 1 to 1g, got '0'"}},
      {"crlf(max=99999999999999999999k)", "max", {"crlf: max", "is too large"}},
      {"crlf(max=18446744073709551615k)", "max", {"is too large"}},
      {"crlf(max=2t)", "max", {"'2t' is not a size"}},
      {"crlf(max=k)", "max", {"'k' is not a size"}},
      {"crlf(delim=\"\")", "delim", {"crlf: delim must be 1 to 16 bytes, got 0"}},
      {"crlf(delim=\"12345678901234567\")", "delim", {"got 17"}},
      {"term(\"\")", "\"\"", {"term: delim must be 1 to 16 bytes"}},
      {"term(max=1k, max=2k)", "max=2k", {"'max' is given twice"}},
  };
  for (const auto& c : cases) {
    std::string text = "tcp:127.0.0.1:1 | " + c.adapter;
    auto e = refused(text);
    expect_words(e, c.words);
    EXPECT_EQ(e.position, text.rfind(c.param)) << text << "\n" << e.render(text);
  }
  auto missing = refused("tcp:127.0.0.1:1 | term");
  expect_words(missing, {"term needs parameter 'delim'"});
  expect_words(refused("tcp:1.2.3.4:5(nodelay=2)"), {"tcp: nodelay must be 0 or 1, got '2'"});
  expect_words(refused("tcp-listen:1.2.3.4:5(backlog=0)"), {"backlog must be a number from 1 to 65535"});
  expect_words(refused("tcp:1.2.3.4:5(backlog=1)"), {"tcp has no parameter 'backlog'; it takes nodelay"});
  expect_words(refused("unix:@x(backlog=1)"), {"unix has no parameter 'backlog'; it takes none"});
}

TEST(Check, ParseErrorsComeThroughWithTheirPosition) {
  auto e = refused("tcp:1.2.3.4:5 ||");
  EXPECT_EQ(e.position, 15u);
  expect_words(e, {"empty layer"});
  EXPECT_EQ(e.render("tcp:1.2.3.4:5 ||"),
            e.message + "\n  tcp:1.2.3.4:5 ||\n" + std::string(2 + 15, ' ') + "^");
}

TEST(Check, CheckStackOnAParsedSpec) {
  spec parsed;
  spec_error perr;
  ASSERT_TRUE(parse_spec("unix:@a | crlf | crlf", parsed, perr));
  std::vector<pipeline_layer> layers;
  pipeline_error error;
  EXPECT_FALSE(check_stack(parsed, layers, error));
  expect_words(error, {"crlf needs a stream below it, but crlf provides message"});
  EXPECT_EQ(error.position, parsed.layers[2].position);
  spec empty;
  EXPECT_FALSE(check_stack(empty, layers, error));
}

// -- adapter search, over a registry made for the test ----------------------------------

constexpr capability_row bytes_row{
    .name = "bytes",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::message, .reliable = true, .ordered = true},
    .provided = prop::unit,
    .provided_value = {.unit = unit::stream},
    .passed = prop_set::all() - prop::unit,
};
constexpr capability_row arq_row{
    .name = "reliable",
    .required = prop::unit,
    .required_value = {.unit = unit::message},
    .provided = prop::reliable | prop::ordered,
    .provided_value = {.reliable = true, .ordered = true},
    .passed = prop_set::all() - (prop::reliable | prop::ordered),
};
constexpr capability_row datagram_row{
    .name = "udp",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::less, .unit = unit::message, .domain = domain::net},
    .passed = {},
};

std::vector<protocol_entry> fake_registry() {
  auto adapter = [](std::string_view name, const capability_row* row) {
    protocol_entry e{};
    e.name = name;
    e.protocol = name;
    e.layer = "adapt";
    e.role = layer_role::adapter;
    e.row = row;
    return e;
  };
  return {adapter("prefix", &prefix_row), adapter("bytes", &bytes_row), adapter("reliable", &arq_row)};
}

TEST(FindAdapters, OneAdapterBridgesMessagesToAStream) {
  auto entries = fake_registry();
  auto below = stack_on(transport_properties(tcp::row), prefix_row);
  auto chain = find_adapters(below, crlf_row, entries);
  ASSERT_EQ(chain.size(), 1u);
  EXPECT_EQ(chain[0]->name, "bytes");
}

TEST(FindAdapters, TwoAdaptersWhenOneIsNotEnough) {
  auto entries = fake_registry();
  auto chain = find_adapters(transport_properties(datagram_row), crlf_row, entries);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[0]->name, "reliable");
  EXPECT_EQ(chain[1]->name, "bytes");
}

TEST(FindAdapters, NothingWhenNothingFits) {
  std::vector<protocol_entry> entries = {fake_registry()[0]};
  EXPECT_TRUE(find_adapters(transport_properties(datagram_row), crlf_row, entries).empty());
  // The real registry's message -> stream adapter is bytes.
  auto real = find_adapters(prefix<tcp::stream>::capabilities, crlf_row);
  ASSERT_EQ(real.size(), 1u);
  EXPECT_EQ(real[0]->name, "bytes");
}

}  // namespace
}  // namespace strata
