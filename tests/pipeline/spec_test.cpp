// The spec-string parser: every form of the grammar, and bad specs with the exact
// offset each error points at.
#include <gtest/gtest.h>

#include <string>

#include "strata/pipeline/spec.hpp"

namespace strata {
namespace {

spec parse_ok(std::string_view text) {
  spec out;
  spec_error error;
  EXPECT_TRUE(parse_spec(text, out, error)) << error.render(text);
  return out;
}

spec_error parse_bad(std::string_view text) {
  spec out;
  spec_error error;
  EXPECT_FALSE(parse_spec(text, out, error)) << "accepted: " << text;
  EXPECT_LE(error.position, text.size());
  return error;
}

TEST(SpecParse, TransportAndAdapter) {
  auto s = parse_ok("tcp:127.0.0.1:7000 | prefix(4)");
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.text, "tcp:127.0.0.1:7000 | prefix(4)");
  EXPECT_EQ(s.layers[0].name, "tcp");
  EXPECT_EQ(s.layers[0].target, "127.0.0.1:7000");
  EXPECT_EQ(s.layers[0].position, 0u);
  EXPECT_EQ(s.layers[0].target_position, 4u);
  EXPECT_EQ(s.layers[0].length, 18u);
  EXPECT_TRUE(s.layers[0].params.empty());
  EXPECT_EQ(s.layers[1].name, "prefix");
  EXPECT_EQ(s.layers[1].position, 21u);
  EXPECT_EQ(s.layers[1].length, 9u);
  EXPECT_TRUE(s.layers[1].target.empty());
  ASSERT_EQ(s.layers[1].params.size(), 1u);
  EXPECT_EQ(s.layers[1].params[0].key, "");
  EXPECT_EQ(s.layers[1].params[0].value, "4");
  EXPECT_EQ(s.layers[1].params[0].position, 28u);
}

TEST(SpecParse, KeyedParametersAndAbstractTarget) {
  auto s = parse_ok("unix-listen:@demo | crlf(max=4096, delim=\"\\n\")");
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.layers[0].name, "unix-listen");
  EXPECT_EQ(s.layers[0].target, "@demo");
  ASSERT_EQ(s.layers[1].params.size(), 2u);
  EXPECT_EQ(s.layers[1].params[0].key, "max");
  EXPECT_EQ(s.layers[1].params[0].value, "4096");
  EXPECT_EQ(s.layers[1].params[0].position, 25u);
  EXPECT_EQ(s.layers[1].params[1].key, "delim");
  EXPECT_EQ(s.layers[1].params[1].value, "\n");
}

TEST(SpecParse, Ipv6TargetAndNulDelimiter) {
  auto s = parse_ok("tcp-listen:[::1]:0 | term(delim=\"\\0\")");
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.layers[0].target, "[::1]:0");
  ASSERT_EQ(s.layers[1].params.size(), 1u);
  EXPECT_EQ(s.layers[1].params[0].value, std::string(1, '\0'));
}

TEST(SpecParse, EveryEscape) {
  auto s = parse_ok(R"(term("\"\\\n\r\t\0\x41\x7e\xFF"))");
  ASSERT_EQ(s.layers.size(), 1u);
  ASSERT_EQ(s.layers[0].params.size(), 1u);
  EXPECT_EQ(s.layers[0].params[0].value, std::string("\"\\\n\r\t\0A~\xff", 9));
}

TEST(SpecParse, WhitespaceEverywhereItMayStand) {
  auto s = parse_ok(" \t tcp:1.2.3.4:5\n|  crlf ( max = 4k ,\tdelim = \"\\n\" )  |prefix ( ) ");
  ASSERT_EQ(s.layers.size(), 3u);
  EXPECT_EQ(s.layers[0].position, 3u);
  EXPECT_EQ(s.layers[0].target, "1.2.3.4:5");
  EXPECT_EQ(s.layers[1].name, "crlf");
  ASSERT_EQ(s.layers[1].params.size(), 2u);
  EXPECT_EQ(s.layers[1].params[0].key, "max");
  EXPECT_EQ(s.layers[1].params[0].value, "4k");
  EXPECT_EQ(s.layers[1].params[1].key, "delim");
  EXPECT_EQ(s.layers[1].params[1].value, "\n");
  EXPECT_EQ(s.layers[2].name, "prefix");
  EXPECT_TRUE(s.layers[2].params.empty());
  EXPECT_EQ(s.canonical_text(), "tcp:1.2.3.4:5 | crlf(max=4k, delim=\"\\n\") | prefix");
}

TEST(SpecParse, QuotedTargetAndBareUtf8) {
  auto s = parse_ok("unix:\"/tmp/my sock\" | term(\xc3\xa9t\xc3\xa9)");
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.layers[0].target, "/tmp/my sock");
  EXPECT_EQ(s.layers[0].target_position, 5u);
  EXPECT_EQ(s.layers[1].params[0].value, "\xc3\xa9t\xc3\xa9");
  EXPECT_EQ(s.layers[0].text(), "unix:\"/tmp/my sock\"");
}

TEST(SpecParse, ParamLookup) {
  auto s = parse_ok("prefix(2, order=little, 7)");
  const auto& layer = s.layers[0];
  ASSERT_NE(layer.param("order"), nullptr);
  EXPECT_EQ(layer.param("order")->value, "little");
  ASSERT_NE(layer.param("bytes", 0), nullptr);
  EXPECT_EQ(layer.param("bytes", 0)->value, "2");
  ASSERT_NE(layer.param("whatever", 1), nullptr);
  EXPECT_EQ(layer.param("whatever", 1)->value, "7");
  EXPECT_EQ(layer.param("bytes"), nullptr);
  EXPECT_EQ(layer.param("bytes", 2), nullptr);
}

TEST(SpecParse, TextRoundTripsAwkwardValues) {
  auto s = parse_ok(R"x(term("a=b", x="", y="with space", z="\x01|,()"))x");
  auto text = s.canonical_text();
  EXPECT_EQ(text, R"x(term("a=b", x="", y="with space", z="\x01|,()"))x");
  auto again = parse_ok(text);
  ASSERT_EQ(again.layers.size(), 1u);
  ASSERT_EQ(again.layers[0].params.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(again.layers[0].params[i].key, s.layers[0].params[i].key);
    EXPECT_EQ(again.layers[0].params[i].value, s.layers[0].params[i].value);
  }
  EXPECT_EQ(quote_spec_value("plain"), "plain");
  EXPECT_EQ(quote_spec_value(""), "\"\"");
  EXPECT_EQ(quote_spec_value("a\"b"), "\"a\\\"b\"");
}

TEST(SpecParse, BoundsAreInclusive) {
  std::string layers = "tcp:1.2.3.4:5";
  for (std::size_t i = 1; i < max_spec_layers; ++i) layers += " | crlf";
  EXPECT_EQ(parse_ok(layers).layers.size(), max_spec_layers);

  std::string params = "prefix(";
  for (std::size_t i = 0; i < max_spec_params; ++i) params += i ? ",1" : "1";
  params += ")";
  EXPECT_EQ(parse_ok(params).layers[0].params.size(), max_spec_params);

  std::string longest = "tcp:" + std::string(max_spec_length - 4, 'a');
  EXPECT_EQ(parse_ok(longest).layers[0].target.size(), max_spec_length - 4);
}

struct bad_case {
  const char* text;
  std::size_t position;
  const char* words;
};

class SpecParseBad : public ::testing::TestWithParam<bad_case> {};

TEST_P(SpecParseBad, NamesTheProblemAndPointsAtIt) {
  const auto& c = GetParam();
  auto error = parse_bad(c.text);
  EXPECT_EQ(error.position, c.position) << error.render(c.text);
  EXPECT_NE(error.message.find(c.words), std::string::npos) << error.message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SpecParseBad,
    ::testing::Values(
        bad_case{"", 0, "empty pipeline"}, bad_case{"   ", 3, "empty pipeline"},
        bad_case{"tcp:1.2.3.4:5 ||", 15, "empty layer"},
        bad_case{"tcp:1.2.3.4:5 |", 15, "empty layer after '|'"}, bad_case{"| crlf", 0, "empty layer"},
        bad_case{"prefix(4", 8, "missing ')'"},
        bad_case{"prefix(4 | crlf", 9, "missing ')' to close the '(' at offset 6"},
        bad_case{"prefix(", 7, "missing ')'"}, bad_case{"prefix(4))", 9, "no matching '('"},
        bad_case{"prefix((4))", 7, "unexpected '('"}, bad_case{"prefix 4)", 7, "separated by '|'"},
        bad_case{"term(\"abc", 5, "unterminated"}, bad_case{"term(\"a\\qb\")", 7, "unknown escape"},
        bad_case{"term(\"\\x4\")", 6, "two hex digits"}, bad_case{"term(\"\\", 5, "unterminated"},
        bad_case{"prefix(4,)", 9, "empty parameter"}, bad_case{"prefix(,4)", 7, "empty parameter"},
        bad_case{"crlf(max=)", 9, "missing value for 'max'"},
        bad_case{"crlf(\"max\"=4)", 5, "cannot be quoted"}, bad_case{"crlf(=4)", 5, "missing parameter name"},
        bad_case{"crlf(a=b=c)", 8, "'='"}, bad_case{"crlf(max=4 4)", 11, "expected ',' or ')'"},
        bad_case{"tcp:", 4, "missing target"}, bad_case{"tcp: 1.2.3.4:5", 4, "missing target"},
        bad_case{"tcp:\"\"", 4, "empty target"}, bad_case{"4tcp", 0, "expected a protocol name"},
        bad_case{"\"tcp\"", 0, "cannot be quoted"}, bad_case{"(4)", 0, "missing protocol name"},
        bad_case{"tcp:a\x01z", 5, "byte 0x01"}, bad_case{"tcp :x", 4, "':'"},
        bad_case{"crlf(a b)", 7, "expected ',' or ')'"}));

TEST(SpecParse, TooLong) {
  std::string text = "tcp:" + std::string(max_spec_length, 'a');
  auto error = parse_bad(text);
  EXPECT_EQ(error.position, max_spec_length);
  EXPECT_NE(error.message.find("too long"), std::string::npos);
}

TEST(SpecParse, TooManyLayers) {
  std::string text = "tcp:1.2.3.4:5";
  for (std::size_t i = 1; i < max_spec_layers; ++i) text += " | crlf";
  std::size_t extra = text.size() + 3;
  text += " | crlf";
  auto error = parse_bad(text);
  EXPECT_EQ(error.position, extra);
  EXPECT_NE(error.message.find("too many layers"), std::string::npos);
}

TEST(SpecParse, TooManyParameters) {
  std::string text = "prefix(";
  for (std::size_t i = 0; i < max_spec_params; ++i) text += "1,";
  std::size_t extra = text.size();
  text += "1)";
  auto error = parse_bad(text);
  EXPECT_EQ(error.position, extra);
  EXPECT_NE(error.message.find("too many parameters"), std::string::npos);
}

TEST(SpecError, RenderPutsTheCaretUnderThePosition) {
  spec_error e{"boom", 4};
  EXPECT_EQ(e.render("tcp:x"), "boom\n  tcp:x\n      ^");
  spec_error end{"end", 5};
  EXPECT_EQ(end.render("tcp:x"), "end\n  tcp:x\n       ^");
  // Tabs are copied so the caret lines up; a multi-byte character takes one column.
  spec_error tab{"t", 2};
  EXPECT_EQ(tab.render("\ta"), "t\n  \ta\n  \t ^");
  spec_error utf8{"u", 3};
  EXPECT_EQ(utf8.render("\xc3\xa9xy"), "u\n  \xc3\xa9xy\n    ^");
  spec_error newline{"n", 2};
  EXPECT_EQ(newline.render("a\nb"), "n\n  a b\n    ^");
}

}  // namespace
}  // namespace strata
