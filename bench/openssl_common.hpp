// Shared pieces of the programs that measure strata's secure layers next to raw OpenSSL
// (bench/tls.cpp, bench/dtls.cpp): exits on errors, the process-wide OpenSSL
// configuration that chooses the cipher suite, the self-signed credential both sides use,
// where the client and server threads run, and the strata-vs-raw figure.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "bench_common.hpp"
#include "strata/secure/tls.hpp"

namespace bench::openssl {

/// program prefixes every message: main sets it to the program's stem.
inline const char* program = "bench";

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program, what.c_str());
  std::exit(1);
}
[[noreturn]] inline void die_errno(const char* what) { die(std::string(what) + ": " + std::strerror(errno)); }
[[noreturn]] inline void die_ec(const char* what, std::error_code ec) {
  die(std::string(what) + ": " + ec.message());
}
[[noreturn]] inline void die_ssl(const char* what) {
  std::string out = what;
  while (auto code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    out += std::string("; ") + text;
  }
  die(out);
}

/// configure_ssl applies `directive` (one line of an OpenSSL configuration's
/// system_default section, e.g. "Ciphersuites = TLS_AES_128_GCM_SHA256" or "CipherString
/// = ECDHE-ECDSA-AES128-GCM-SHA256") to every SSL_CTX this process creates, strata's
/// included: strata's context_options have no cipher suite setting. It must run before
/// anything else initialises OpenSSL.
inline void configure_ssl(const std::string& directive) {
  char path[] = "/tmp/strata-bench-ssl-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) die_errno("mkstemp");
  std::string conf =
      "openssl_conf = bench_init\n[bench_init]\nssl_conf = bench_ssl\n[bench_ssl]\n"
      "system_default = bench_system\n[bench_system]\n" +
      directive + "\n";
  if (::write(fd, conf.data(), conf.size()) != static_cast<ssize_t>(conf.size())) die_errno("write config");
  ::close(fd);
  OPENSSL_INIT_SETTINGS* settings = OPENSSL_INIT_new();
  OPENSSL_INIT_set_config_filename(settings, path);
  OPENSSL_INIT_set_config_file_flags(settings, 0);  // a bad file is an error, not ignored
  int ok = OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, settings);
  OPENSSL_INIT_free(settings);
  ::unlink(path);
  if (ok != 1) die_ssl(("loading the OpenSSL configuration \"" + directive + "\"").c_str());
}

/// pki is the server's key and self-signed certificate (tls::self_signed: an ECDSA P-256
/// key made at startup), which clients trust directly: PEM for strata, parsed for raw.
struct pki {
  std::string cert_pem;
  std::string key_pem;
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
};

inline pki make_pki(const std::string& server_name) {
  const std::string names[] = {server_name};
  auto made = strata::tls::self_signed(names);
  if (!made) die_ec("tls::self_signed", made.error());
  pki p{made->cert_pem, made->key_pem};
  BIO* cert = BIO_new_mem_buf(p.cert_pem.data(), static_cast<int>(p.cert_pem.size()));
  BIO* key = BIO_new_mem_buf(p.key_pem.data(), static_cast<int>(p.key_pem.size()));
  p.cert = PEM_read_bio_X509(cert, nullptr, nullptr, nullptr);
  p.key = PEM_read_bio_PrivateKey(key, nullptr, nullptr, nullptr);
  BIO_free(cert);
  BIO_free(key);
  if (!p.cert || !p.key) die_ssl("reading the self-signed credential");
  return p;
}

/// contexts are one configuration on both sides, for strata and for raw OpenSSL.
struct contexts {
  strata::tls::context strata_server;
  strata::tls::context strata_client;
  SSL_CTX* raw_server = nullptr;
  SSL_CTX* raw_client = nullptr;

  contexts() = default;
  contexts(const contexts&) = delete;
  contexts& operator=(const contexts&) = delete;
  ~contexts() {
    SSL_CTX_free(raw_server);
    SSL_CTX_free(raw_client);
  }
};

/// raw_context makes a raw SSL_CTX configured as strata's make_context does: no
/// renegotiation, compression or tickets, the server's cipher preference, buffers
/// released when idle, exactly protocol `version`, plus `options`. The server has `p`'s
/// certificate and verifies no client; the client trusts `p` and verifies the server.
inline SSL_CTX* raw_context(bool is_server, const SSL_METHOD* method, int version, std::uint64_t options,
                            const pki& p) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (!ctx) die_ssl("SSL_CTX_new");
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET | options |
                               (is_server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  if (is_server) {
    if (SSL_CTX_use_cert_and_key(ctx, p.cert, p.key, nullptr, 1) != 1) die_ssl("SSL_CTX_use_cert_and_key");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    static const unsigned char id[] = "strata";
    SSL_CTX_set_session_id_context(ctx, id, sizeof id - 1);
  } else {
    if (X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), p.cert) != 1) die_ssl("X509_STORE_add_cert");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  return ctx;
}

// -- placement -----------------------------------------------------------------------

// Where the two threads run decides more than the code does: on two CPUs they overlap
// (a pipeline's rate up to twice that on one), but every wake-up of the other CPU costs
// an idle vCPU's exit on this VM (40-70 us), and under other builders' load the second
// CPU is the one they take. Both implementations are always measured in the same
// placement: by default both threads on the first CPU this process may use (`same`: each
// figure then follows the CPU cost of the code path, and is steady under load), or the
// client on the first and the server on the second (`split`), or wherever the scheduler
// puts them (`none`). With one CPU, split falls back to same; a refusal to pin turns
// pinning off (a message says so; the table's note names the placement used).
enum class pin_mode { split, same, none };
inline pin_mode placement = pin_mode::same;
inline int cpu_a = -1;
inline int cpu_b = -1;

/// parse_placement sets the placement from --pin's value.
inline void parse_placement(const std::string& v) {
  if (v == "split") {
    placement = pin_mode::split;
  } else if (v == "same") {
    placement = pin_mode::same;
  } else if (v == "none") {
    placement = pin_mode::none;
  } else {
    die("--pin takes split, same or none, not " + v);
  }
}

inline void pin_to(int cpu) {
  if (placement == pin_mode::none) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (int err = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set)) {
    std::fprintf(stderr, "%s: pthread_setaffinity_np: %s; not pinning\n", program, std::strerror(err));
    placement = pin_mode::none;
  }
}

/// setup_placement finds the CPUs and pins the calling (main) thread, every
/// measurement's client.
inline void setup_placement() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    for (int c = 0; c < CPU_SETSIZE && cpu_b < 0; ++c) {
      if (CPU_ISSET(c, &allowed)) (cpu_a < 0 ? cpu_a : cpu_b) = c;
    }
  }
  if (cpu_a < 0) placement = pin_mode::none;
  if (cpu_b < 0 && placement == pin_mode::split) placement = pin_mode::same;
  pin_to(cpu_a);
}

/// pin_server places a server thread (call it first thing in the thread).
inline void pin_server() { pin_to(placement == pin_mode::split ? cpu_b : cpu_a); }

inline const char* placement_name() {
  switch (placement) {
    case pin_mode::split:
      return "split (client and server on two CPUs)";
    case pin_mode::same:
      return "same (client and server on one CPU)";
    case pin_mode::none:
      break;
  }
  return "none (the scheduler places the threads)";
}

// -- options and measurements ---------------------------------------------------------

/// own_options walks argv for a program's own options and keeps the others in place for
/// bench::parse_options (argc counts them at the end). --pin (the placement) is handled
/// here for every program.
///   for (own_options o(argc, argv); o.next();) {
///     if (o.name() == "--round") round = o.number(); else o.keep();
///   }
class own_options {
 public:
  own_options(int& argc, char** argv) : argc_(argc), total_(argc), argv_(argv) {}

  /// next moves to the next option; false at the end.
  bool next() {
    while (++at_ < total_) {
      name_ = argv_[at_];
      if (name_ != "--pin") return true;
      parse_placement(value());
    }
    argc_ = kept_;
    return false;
  }
  const std::string& name() const { return name_; }
  /// value is the option's value (the next argument).
  std::string value() {
    if (at_ + 1 >= total_) die("option " + name_ + " needs a value");
    return argv_[++at_];
  }
  /// number is the option's value as a positive integer.
  std::uint64_t number() {
    std::string v = value();
    char* end = nullptr;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || *end || n == 0) die("option " + name_ + " needs a positive number, not " + v);
    return n;
  }
  /// keep leaves the option for bench::parse_options.
  void keep() { argv_[kept_++] = argv_[at_]; }

 private:
  int& argc_;
  int total_;
  char** argv_;
  int at_ = 0;
  int kept_ = 1;
  std::string name_;
};

/// alternate calls run(raw) for `rounds` rounds of both implementations, raw first in
/// even rounds and strata first in odd ones, so that drift over a run hits both alike.
template <class Run>
void alternate(std::size_t rounds, Run run) {
  for (std::size_t r = 0; r < rounds; ++r) {
    for (int k = 0; k < 2; ++k) run((k == 0) == (r % 2 == 0));
  }
}

/// compare is a figure of strata's samples with raw OpenSSL's as the baseline.
inline figure compare(std::string name, std::string unit, bool higher_is_better,
                      const std::vector<double>& strata, const std::vector<double>& raw) {
  figure f;
  f.name = std::move(name);
  f.unit = std::move(unit);
  f.higher_is_better = higher_is_better;
  f.value = summarize(strata);
  f.baseline_name = "raw_openssl";
  f.baseline = summarize(raw);
  return f;
}

/// handshake_batch is what one batch of handshakes, one at a time, measured.
struct handshake_batch {
  double per_s = 0;                // handshakes per second over the batch
  double cpu_us = 0;               // client + server thread CPU per handshake
  std::vector<double> latency_us;  // each handshake, client side
};

/// finish_batch fills in the rate and CPU of a batch of `count` handshakes that began
/// at `begin`.
inline handshake_batch finish_batch(handshake_batch out, int count, clock::time_point begin,
                                    double client_cpu_ns, double server_cpu_ns) {
  out.per_s = count / (ns_between(begin, clock::now()) / 1e9);
  out.cpu_us = (client_cpu_ns + server_cpu_ns) / 1e3 / count;
  return out;
}

/// add_handshake_figures runs `batches` batches of each implementation, alternating
/// (batch(raw) makes one), and adds `name` (handshakes/s per batch), `name`_latency
/// (every handshake) and `name`_cpu (per batch).
template <class Batch>
void add_handshake_figures(report& rep, const std::string& name, int batches, Batch batch) {
  std::vector<double> raw_rate, strata_rate, raw_cpu, strata_cpu, raw_latency, strata_latency;
  alternate(static_cast<std::size_t>(batches), [&](bool raw) {
    handshake_batch out = batch(raw);
    (raw ? raw_rate : strata_rate).push_back(out.per_s);
    (raw ? raw_cpu : strata_cpu).push_back(out.cpu_us);
    auto& lat = raw ? raw_latency : strata_latency;
    lat.insert(lat.end(), out.latency_us.begin(), out.latency_us.end());
  });
  rep.add(compare(name, "handshake/s", true, strata_rate, raw_rate));
  rep.add(compare(name + "_latency", "us", false, strata_latency, raw_latency));
  rep.add(compare(name + "_cpu", "cpu us/hs", false, strata_cpu, raw_cpu));
}

}  // namespace bench::openssl
