// The test PKI (support/pki.hpp), checked by a verifier the project did not write: the
// openssl command-line tool (run through peer_process) verifies every chain, host name,
// IP address and purpose, and finds the faults the negative credentials are made for.
// A mutual TLS handshake between openssl s_server and s_client shows that the keys fit
// their certificates and that the PKI works for TLS as a whole.
#include "support/pki.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/peer_process.hpp"

namespace {

using namespace std::chrono_literals;
using strata::test::credential;
using strata::test::peer_process;
using strata::test::pki;

struct run_result {
  int code = -1;
  std::string output;
};

// openssl runs the openssl tool with `args` to its end.
run_result openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  auto p = peer_process::start(std::move(args));
  if (!p) return {};
  auto code = p.wait_exit(30s);
  EXPECT_TRUE(code.has_value()) << p.command_line() << " did not finish: " << p.output();
  return {code.value_or(-1), p.output()};
}

// verify runs `openssl verify -CAfile <ca> [options...] <leaf>`.
run_result verify(const credential& ca, const credential& leaf, std::vector<std::string> options) {
  std::vector<std::string> args = {"verify", "-CAfile", ca.cert_file};
  args.insert(args.end(), options.begin(), options.end());
  args.push_back(leaf.cert_file);
  return openssl(std::move(args));
}

// verifies: openssl verify accepts `leaf` as issued by `ca` (with `options`).
::testing::AssertionResult verifies(const credential& ca, const credential& leaf,
                                    std::vector<std::string> options = {}) {
  auto r = verify(ca, leaf, std::move(options));
  if (r.code == 0 && r.output.find(leaf.cert_file + ": OK") != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "openssl verify exited with " << r.code << ":\n" << r.output;
}

// rejected_for: openssl verify rejects `leaf` against `ca` (with `options`), saying `reason`.
::testing::AssertionResult rejected_for(const std::string& reason, const credential& ca,
                                        const credential& leaf, std::vector<std::string> options = {}) {
  auto r = verify(ca, leaf, std::move(options));
  if (r.code != 0 && r.output.find(reason) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "openssl verify exited with " << r.code << ", not for '" << reason << "':\n"
         << r.output;
}

// text is `openssl x509 -noout -text` of the certificate.
std::string text(const credential& c) {
  auto r = openssl({"x509", "-noout", "-text", "-in", c.cert_file});
  EXPECT_EQ(r.code, 0) << r.output;
  return r.output;
}

std::string file_contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// serve_options are s_server's: it quits at end of file on stdin, so it gets a pipe
// that stays open.
strata::test::peer_options serve_options() {
  strata::test::peer_options options;
  options.stdin_pipe = true;
  return options;
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)
#define EXPECT_LACKS(haystack, needle) EXPECT_EQ((haystack).find(needle), std::string::npos) << (haystack)

TEST(Pki, IsGeneratedOnceIntoAPrivateTemporaryDirectory) {
  const auto& p = pki();
  EXPECT_EQ(&p, &pki());
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp && *tmp ? tmp : "/tmp";
  EXPECT_EQ(p.directory.rfind(base + "/strata-pki-", 0), 0u) << p.directory;
  struct stat st {};
  ASSERT_EQ(::stat(p.directory.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const credential* c :
       {&p.ca, &p.server, &p.other_name_server, &p.client, &p.expired_server, &p.rogue_ca, &p.rogue_server}) {
    EXPECT_EQ(std::filesystem::path(c->cert_file).parent_path(), p.directory);
    EXPECT_EQ(file_contents(c->cert_file), c->cert_pem);
    EXPECT_EQ(file_contents(c->key_file), c->key_pem);
    EXPECT_EQ(c->cert_pem.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u) << c->cert_pem;
    EXPECT_EQ(c->key_pem.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << c->cert_file;
    ASSERT_EQ(::stat(c->key_file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << c->key_file;
  }
}

TEST(Pki, TheCaSignedChainsVerify) {
  const auto& p = pki();
  for (const credential* c : {&p.server, &p.other_name_server, &p.client}) EXPECT_TRUE(verifies(p.ca, *c));
}

TEST(Pki, TheServerIsValidForLocalhostAndBothLoopbackAddresses) {
  const auto& p = pki();
  EXPECT_TRUE(verifies(p.ca, p.server, {"-purpose", "sslserver", "-verify_hostname", "localhost"}));
  EXPECT_TRUE(verifies(p.ca, p.server, {"-purpose", "sslserver", "-verify_ip", "127.0.0.1"}));
  EXPECT_TRUE(verifies(p.ca, p.server, {"-purpose", "sslserver", "-verify_ip", "::1"}));
  EXPECT_TRUE(rejected_for("hostname mismatch", p.ca, p.server, {"-verify_hostname", "other.test"}));
}

TEST(Pki, TheOtherNameServerIsValidOnlyForOtherTest) {
  const auto& p = pki();
  EXPECT_TRUE(verifies(p.ca, p.other_name_server, {"-verify_hostname", "other.test"}));
  EXPECT_TRUE(
      rejected_for("hostname mismatch", p.ca, p.other_name_server, {"-verify_hostname", "localhost"}));
  EXPECT_TRUE(rejected_for("IP address mismatch", p.ca, p.other_name_server, {"-verify_ip", "127.0.0.1"}));
}

TEST(Pki, TheExpiredServerFailsAsExpired) {
  const auto& p = pki();
  EXPECT_TRUE(
      rejected_for("certificate has expired", p.ca, p.expired_server, {"-verify_hostname", "localhost"}));
}

TEST(Pki, TheRogueServerFailsAgainstTheCaAndVerifiesAgainstTheRogueCa) {
  const auto& p = pki();
  EXPECT_TRUE(rejected_for("unable to get local issuer certificate", p.ca, p.rogue_server));
  // The rogue chain is sound in itself: an unknown CA is its only fault.
  EXPECT_TRUE(verifies(p.rogue_ca, p.rogue_server, {"-verify_hostname", "localhost"}));
  // And the real CA does not vouch for the rogue CA either.
  EXPECT_TRUE(rejected_for("self-signed certificate", p.ca, p.rogue_ca));
}

TEST(Pki, ClientAndServerCertificatesHaveTheirPurposesOnly) {
  const auto& p = pki();
  EXPECT_TRUE(verifies(p.ca, p.client, {"-purpose", "sslclient"}));
  EXPECT_TRUE(rejected_for("unsuitable certificate purpose", p.ca, p.client, {"-purpose", "sslserver"}));
  EXPECT_TRUE(rejected_for("unsuitable certificate purpose", p.ca, p.server, {"-purpose", "sslclient"}));

  std::string client = text(p.client);
  EXPECT_HAS(client, "Subject: O = strata tests, CN = strata test client");
  EXPECT_HAS(client, "TLS Web Client Authentication");
  EXPECT_LACKS(client, "TLS Web Server Authentication");
}

TEST(Pki, CertificatesAreV3EcdsaP256Sha256WithTheRequestedExtensions) {
  const auto& p = pki();
  std::string ca = text(p.ca);
  EXPECT_HAS(ca, "Version: 3 (0x2)");
  EXPECT_HAS(ca, "Issuer: O = strata tests, CN = strata test CA");
  EXPECT_HAS(ca, "Subject: O = strata tests, CN = strata test CA");
  EXPECT_HAS(ca, "X509v3 Basic Constraints: critical\n                CA:TRUE");
  EXPECT_HAS(ca, "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign");
  EXPECT_HAS(ca, "X509v3 Subject Key Identifier");
  EXPECT_HAS(ca, "X509v3 Authority Key Identifier");

  std::string server = text(p.server);
  EXPECT_HAS(server, "Signature Algorithm: ecdsa-with-SHA256");
  EXPECT_HAS(server, "NIST CURVE: P-256");
  EXPECT_HAS(server, "Issuer: O = strata tests, CN = strata test CA");
  EXPECT_HAS(server, "Subject: O = strata tests, CN = localhost");
  EXPECT_HAS(server, "X509v3 Basic Constraints: critical\n                CA:FALSE");
  EXPECT_HAS(server, "X509v3 Key Usage: critical\n                Digital Signature");
  EXPECT_HAS(server, "X509v3 Extended Key Usage: \n                TLS Web Server Authentication\n");
  EXPECT_HAS(server, "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n");

  std::string other = text(p.other_name_server);
  EXPECT_HAS(other, "X509v3 Subject Alternative Name: \n                DNS:other.test\n");

  std::string rogue = text(p.rogue_server);
  EXPECT_HAS(rogue, "Issuer: O = strata tests, CN = strata rogue CA");
}

TEST(Pki, MakeCredentialIssuesMoreCertificates) {
  const auto& p = pki();
  static int runs = 0;  // one name per run (--gtest_repeat)
  const std::string name = "pki_test_extra_" + std::to_string(++runs);
  auto c = strata::test::make_credential({.name = name,
                                          .common_name = "extra",
                                          .dns_names = {"extra.test"},
                                          .server_auth = true,
                                          .client_auth = true,
                                          .issuer = &p.ca});
  EXPECT_EQ(std::filesystem::path(c.cert_file).parent_path(), p.directory);
  EXPECT_TRUE(verifies(p.ca, c, {"-verify_hostname", "extra.test", "-purpose", "sslclient"}));
  EXPECT_HAS(text(c), "TLS Web Server Authentication, TLS Web Client Authentication");
  // A name is used once: the files are never overwritten.
  EXPECT_THROW(strata::test::make_credential({.name = name, .issuer = &p.ca}), std::runtime_error);
  EXPECT_THROW(strata::test::make_credential({.name = "../escape"}), std::runtime_error);
}

TEST(Pki, MutualTlsHandshakeWithOpensslSucceeds) {
  const auto& p = pki();
  int port = strata::test::free_loopback_port(SOCK_STREAM);
  ASSERT_GT(port, 0);
  auto server = peer_process::start({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port),
                                     "-naccept", "1", "-cert", p.server.cert_file, "-key", p.server.key_file,
                                     "-CAfile", p.ca.cert_file, "-Verify", "1", "-verify_return_error"},
                                    serve_options());
  ASSERT_TRUE(server);
  ASSERT_TRUE(server.wait_for_output("ACCEPT", 10s)) << server.output();
  auto client = peer_process::start({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
                                     "-CAfile", p.ca.cert_file, "-verify_return_error", "-verify_hostname",
                                     "localhost", "-cert", p.client.cert_file, "-key", p.client.key_file});
  ASSERT_TRUE(client);
  EXPECT_EQ(client.wait_exit(30s), 0) << client.output();
  EXPECT_HAS(client.output(), "Verify return code: 0 (ok)");
  EXPECT_HAS(client.output(), "subject=O = strata tests, CN = localhost");
  EXPECT_TRUE(server.wait_for_output("subject=O = strata tests, CN = strata test client", 10s))
      << server.output();
  EXPECT_EQ(server.wait_exit(10s), 0) << server.output();
}

TEST(Pki, AClientTrustingTheCaRejectsTheRogueServer) {
  const auto& p = pki();
  int port = strata::test::free_loopback_port(SOCK_STREAM);
  ASSERT_GT(port, 0);
  auto server =
      peer_process::start({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-naccept",
                           "1", "-cert", p.rogue_server.cert_file, "-key", p.rogue_server.key_file},
                          serve_options());
  ASSERT_TRUE(server);
  ASSERT_TRUE(server.wait_for_output("ACCEPT", 10s)) << server.output();
  auto client = peer_process::start({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
                                     "-CAfile", p.ca.cert_file, "-verify_return_error"});
  ASSERT_TRUE(client);
  EXPECT_NE(client.wait_exit(30s), 0) << client.output();
  EXPECT_HAS(client.output(), "unable to get local issuer certificate");
}

}  // namespace
