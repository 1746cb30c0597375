// Layering as DESIGN.md draws it, checked on the public headers' include graph: runtime
// never includes core (result and errors sit in runtime), transports that are not unix
// sockets never reach the unix header, and no public header includes an implementation
// header (those live under src/). The socket transports hold their data
// (transport/socket_state.hpp) and keep their machinery in src/ (decisions.md 42): no
// public transport class derives from an internal base.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

const fs::path include_dir = fs::path(STRATA_SOURCE_DIR) / "include";

/// direct_includes lists the "strata/..." headers `header` includes.
std::vector<std::string> direct_includes(const std::string& header) {
  std::ifstream in(include_dir / header);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find_first_not_of(" \t");
    if (at == std::string::npos || line.compare(at, 8, "#include") != 0) continue;
    auto open = line.find("\"strata/", at);
    if (open == std::string::npos) continue;
    auto close = line.find('"', open + 1);
    if (close != std::string::npos) out.push_back(line.substr(open + 1, close - open - 1));
  }
  return out;
}

/// closure is every "strata/..." header `header` reaches, itself included.
std::set<std::string> closure(const std::string& header) {
  std::set<std::string> seen;
  std::vector<std::string> todo{header};
  while (!todo.empty()) {
    auto h = todo.back();
    todo.pop_back();
    if (!seen.insert(h).second) continue;
    for (auto& next : direct_includes(h)) todo.push_back(next);
  }
  return seen;
}

std::vector<std::string> headers_under(const std::string& folder) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(include_dir / "strata" / folder)) {
    if (e.path().extension() == ".hpp")
      out.push_back("strata/" + folder + "/" + e.path().filename().string());
  }
  return out;
}

TEST(Layering, RuntimeNeverIncludesCore) {
  for (const auto& h : headers_under("runtime")) {
    for (const auto& reached : closure(h)) {
      EXPECT_EQ(reached.rfind("strata/core/", 0), std::string::npos) << h << " reaches " << reached;
      EXPECT_EQ(reached.rfind("strata/transport/", 0), std::string::npos) << h << " reaches " << reached;
    }
  }
}

TEST(Layering, OnlyUnixTransportsReachTheUnixHeader) {
  const std::set<std::string> unix_family = {"strata/transport/unix.hpp", "strata/transport/unix_dgram.hpp",
                                             "strata/transport/seqpacket.hpp", "strata/transport/shm.hpp"};
  for (const auto& h : headers_under("transport")) {
    if (unix_family.count(h)) continue;
    EXPECT_EQ(closure(h).count("strata/transport/unix.hpp"), 0u) << h << " reaches strata/transport/unix.hpp";
  }
}

TEST(Layering, ImplementationHeadersAreNotPublic) {
  const fs::path src_dir = fs::path(STRATA_SOURCE_DIR) / "src";
  EXPECT_FALSE(fs::exists(include_dir / "strata/transport/shm_ring.hpp"));
  EXPECT_TRUE(fs::exists(src_dir / "transport/shm_ring.hpp"));
  // The socket machinery: once public base classes (socket.hpp, packet_socket.hpp).
  EXPECT_FALSE(fs::exists(include_dir / "strata/transport/socket.hpp"));
  EXPECT_FALSE(fs::exists(include_dir / "strata/transport/packet_socket.hpp"));
  EXPECT_TRUE(fs::exists(src_dir / "transport/socket_io.hpp"));
  EXPECT_TRUE(fs::exists(src_dir / "transport/packet_io.hpp"));
}

/// text is the whole of a public header.
std::string text(const std::string& header) {
  std::ifstream in(include_dir / header);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// quoted_includes lists every "..." include of `header`, whatever it names. (No
/// std::regex here: with -O2 and the sanitizers GCC 12 warns inside <regex>.)
std::vector<std::string> quoted_includes(const std::string& header) {
  std::ifstream in(include_dir / header);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find_first_not_of(" \t");
    if (at == std::string::npos || line[at] != '#') continue;
    auto word = line.find_first_not_of(" \t", at + 1);
    if (word == std::string::npos || line.compare(word, 7, "include") != 0) continue;
    auto open = line.find('"', word);
    if (open == std::string::npos) continue;
    auto close = line.find('"', open + 1);
    if (close != std::string::npos) out.push_back(line.substr(open + 1, close - open - 1));
  }
  return out;
}

TEST(Layering, PublicHeadersIncludeOnlyPublicHeaders) {
  for (const auto& folder : {"runtime", "core", "transport", "adapt", "secure", "app", "pipeline"}) {
    for (const auto& h : headers_under(folder)) {
      for (const auto& target : quoted_includes(h)) {
        EXPECT_EQ(target.rfind("strata/", 0), 0u) << h << " includes \"" << target << "\"";
        EXPECT_TRUE(fs::exists(include_dir / target)) << h << " includes missing " << target;
      }
    }
  }
}

/// derives_from_detail finds a class or struct declaration in `body` whose base list
/// names a detail:: type; returns the declaration, or empty.
std::string derives_from_detail(const std::string& body) {
  for (const char* keyword : {"class ", "struct "}) {
    for (auto at = body.find(keyword); at != std::string::npos; at = body.find(keyword, at + 1)) {
      if (at > 0 && (std::isalnum(static_cast<unsigned char>(body[at - 1])) || body[at - 1] == '_')) continue;
      auto end = body.find_first_of("{;", at);
      if (end == std::string::npos) break;
      auto decl = body.substr(at, end - at);
      auto colon = decl.find(':');
      // A base list starts at a single ':' (not a '::' of a qualified name).
      while (colon != std::string::npos && colon + 1 < decl.size() && decl[colon + 1] == ':') {
        colon = decl.find(':', colon + 2);
      }
      if (colon != std::string::npos && decl.find("detail::", colon) != std::string::npos) return decl;
    }
  }
  return {};
}

TEST(Layering, TransportClassesDeriveFromNoInternalBase) {
  EXPECT_FALSE(
      derives_from_detail("class stream : public detail::socket_stream {").empty());  // the check bites
  EXPECT_TRUE(derives_from_detail("struct x { detail::state s; };").empty());
  for (const auto& h : headers_under("transport")) {
    auto found = derives_from_detail(text(h));
    EXPECT_TRUE(found.empty()) << h << ": " << found;
  }
}

TEST(Layering, SocketStateIsDataOnly) {
  // Data and its special members only: no coroutine, so no operation of the sockets.
  auto body = text("strata/transport/socket_state.hpp");
  EXPECT_EQ(body.find("task<"), std::string::npos);
  EXPECT_EQ(body.find("strata/runtime/task.hpp"), std::string::npos);
  EXPECT_EQ(body.find("strata/core/buffer.hpp"), std::string::npos);
}

}  // namespace
