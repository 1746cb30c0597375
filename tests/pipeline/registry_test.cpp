// The registry: every entry is complete and consistent, and every protocol it names has
// its docs page, its test file and (when it decodes peer input) its fuzz target.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "strata/pipeline/pipeline.hpp"
#include "strata/pipeline/registry.hpp"
#include "strata/strata.hpp"  // the umbrella header compiles on its own

namespace strata {
namespace {

namespace fs = std::filesystem;

const fs::path source_dir = STRATA_SOURCE_DIR;

TEST(Registry, ListsTheExpectedSpecNames) {
  std::vector<std::string_view> names;
  for (const auto& e : registry()) names.push_back(e.name);
  // Transports first, then adapters: the order `strata caps` prints.
  std::vector<std::string_view> expected = {"tcp",
                                            "tcp-listen",
                                            "unix",
                                            "unix-listen",
                                            "udp",
                                            "udp-listen",
                                            "udp-bind",
                                            "unix-dgram",
                                            "unix-dgram-listen",
                                            "unix-dgram-bind",
                                            "seqpacket",
                                            "seqpacket-listen",
                                            "exec",
                                            "fifo-read",
                                            "fifo-write",
                                            "mq",
                                            "mq-listen",
                                            "inproc",
                                            "inproc-listen",
                                            "shm",
                                            "shm-listen",
                                            "shm-pub",
                                            "shm-sub",
                                            "shm-queue",
                                            "prefix",
                                            "buffered",
                                            "crlf",
                                            "term",
                                            "mux",
                                            "dccp",
                                            "reliable",
                                            "bytes",
                                            "tls",
                                            "dtls",
                                            "websocket",
                                            "http1",
                                            "http",
                                            "http2"};
  EXPECT_EQ(names, expected);
}

TEST(Registry, EntriesAreCompleteAndConsistent) {
  std::set<std::string_view> names;
  for (const auto& e : registry()) {
    SCOPED_TRACE(std::string(e.name));
    EXPECT_TRUE(names.insert(e.name).second) << "duplicate spec name";
    EXPECT_EQ(find_protocol(e.name), &e);
    EXPECT_FALSE(e.protocol.empty());
    EXPECT_FALSE(e.layer.empty());
    EXPECT_FALSE(e.summary.empty());
    ASSERT_NE(e.row, nullptr);
    EXPECT_NE(e.configure, nullptr);
    switch (e.role) {
      case layer_role::connector:
        EXPECT_NE(e.connect, nullptr);
        EXPECT_FALSE(e.target_help.empty());
        EXPECT_EQ(e.row->required.bits, 0u) << "a bottom layer requires nothing";
        break;
      case layer_role::listener:
        EXPECT_NE(e.listen, nullptr);
        EXPECT_FALSE(e.target_help.empty());
        EXPECT_EQ(e.row->required.bits, 0u) << "a bottom layer requires nothing";
        break;
      case layer_role::adapter:
        EXPECT_NE(e.wrap, nullptr);
        EXPECT_TRUE(e.target_help.empty());
        break;
      case layer_role::application:
        EXPECT_EQ(e.wrap, nullptr) << "the program runs an application; nothing wraps it";
        EXPECT_TRUE(e.target_help.empty());
        break;
      case layer_role::bound:
        EXPECT_NE(e.bind, nullptr);
        EXPECT_FALSE(e.target_help.empty());
        EXPECT_EQ(e.row->required.bits, 0u) << "a bottom layer requires nothing";
        EXPECT_EQ(e.row->provided_value.connection, connection::less)
            << "a bound endpoint is connection-less";
        break;
    }
    std::set<std::string_view> params;
    int positional = 0;
    for (const auto& p : e.params) {
      EXPECT_TRUE(params.insert(p.name).second) << "parameter " << p.name << " listed twice";
      EXPECT_FALSE(p.help.empty()) << p.name;
      EXPECT_EQ(e.param_named(p.name), &p);
      positional += p.positional;
    }
    EXPECT_LE(positional, 1);
  }
  EXPECT_EQ(find_protocol("nope"), nullptr);
}

TEST(Registry, EveryEntryAcceptsItsDefaults) {
  // A minimal use of each entry (its target, its required parameters) passes the
  // checker, on top of a connector for adapters.
  for (const auto& e : registry()) {
    SCOPED_TRACE(std::string(e.name));
    std::string layer(e.name);
    bool stacked = e.role == layer_role::adapter || e.role == layer_role::application;
    if (!stacked) {
      layer += e.protocol == "unix" ? ":@strata-registry-test" : ":127.0.0.1:1";
    }
    std::string required;
    for (const auto& p : e.params) {
      if (!p.default_value.empty() || p.optional) continue;
      required += (required.empty() ? "" : ", ") + std::string(p.name) + "=x";
    }
    if (!required.empty()) layer += "(" + required + ")";
    // Adapters stand on what they need: a message layer (udp) or a stream (tcp).
    bool needs_messages = e.row->required.has(prop::unit) && e.row->required_value.unit == unit::message;
    bool needs_reliable = e.row->required.has(prop::reliable);
    std::string below = !needs_messages  ? "tcp:127.0.0.1:1 | "
                        : needs_reliable ? "udp:127.0.0.1:1 | reliable | "
                                         : "udp:127.0.0.1:1 | ";
    std::string text = stacked ? below + layer : layer;
    pipeline_error error;
    auto p = pipeline::parse(text, error);
    ASSERT_TRUE(p) << error.render(text);
    EXPECT_EQ(p->layers().back().entry, &e);
    EXPECT_EQ(p->is_listener(), e.role == layer_role::listener);
    EXPECT_EQ(p->is_bound(), e.role == layer_role::bound);
  }
}

TEST(Registry, ClosestProtocol) {
  EXPECT_EQ(closest_protocol("tcpp"), "tcp");
  EXPECT_EQ(closest_protocol("TCP"), "");  // three edits: a different word
  EXPECT_EQ(closest_protocol("unx"), "unix");
  EXPECT_EQ(closest_protocol("tcp_listen"), "tcp-listen");
  EXPECT_EQ(closest_protocol("crfl"), "crlf");
  EXPECT_EQ(closest_protocol("tcp"), "");  // an exact name is not a suggestion
  EXPECT_EQ(closest_protocol("websokcet"), "websocket");
  EXPECT_EQ(closest_protocol(""), "");
  EXPECT_EQ(to_string(layer_role::listener), "listener");
  EXPECT_EQ(to_string(layer_role::bound), "bound");
  EXPECT_EQ(to_string(layer_role::application), "application");
}

// The completeness check (STYLE.md rule 11): a protocol without its docs page, test
// file or fuzz target fails here, naming the missing file.
TEST(Registry, EveryProtocolHasDocsTestsAndFuzzTarget) {
  ASSERT_TRUE(fs::is_directory(source_dir)) << source_dir;
  for (const auto& e : registry()) {
    SCOPED_TRACE(std::string(e.name));
    std::string protocol(e.protocol);
    auto docs = source_dir / "docs" / "protocols" / (protocol + ".md");
    EXPECT_TRUE(fs::is_regular_file(docs)) << "missing " << docs.string();
    auto test = source_dir / "tests" / std::string(e.layer) / (protocol + "_test.cpp");
    EXPECT_TRUE(fs::is_regular_file(test)) << "missing " << test.string();
    if (e.parses_peer_input) {
      auto fuzz = source_dir / "fuzz" / (protocol + "_fuzz.cpp");
      EXPECT_TRUE(fs::is_regular_file(fuzz)) << "missing " << fuzz.string();
      auto corpus = source_dir / "fuzz" / "corpus" / protocol;
      EXPECT_TRUE(fs::is_directory(corpus) && !fs::is_empty(corpus))
          << "missing seed corpus " << corpus.string();
    }
  }
}

TEST(Registry, PipelineDocsNameEveryEntry) {
  auto path = source_dir / "docs" / "pipeline.md";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing " << path.string();
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& e : registry()) {
    EXPECT_NE(text.find("`" + std::string(e.name)), std::string::npos)
        << e.name << " is not in docs/pipeline.md";
    for (const auto& p : e.params) {
      EXPECT_NE(text.find(std::string(p.name)), std::string::npos) << e.name << " parameter " << p.name;
    }
  }
}

}  // namespace
}  // namespace strata
