// strata demo: servers and clients over several pipelines in one process on loopback,
// each transfer verified by a checksum computed where the data is sent and again where
// it is received.
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bridge.hpp"
#include "commands.hpp"
#include "strata/secure/tls.hpp"

namespace strata::cli {

const std::string_view demo_help = R"(usage: strata demo [options]

Run servers and clients over several pipelines inside this one process, on loopback
only, and verify every transfer:

  1. tcp byte stream: 'tcp-listen:127.0.0.1:0' <- 'tcp:127.0.0.1:PORT', one way
     (64 MiB by default)
  2. length-prefixed messages: the same with '| prefix(4)', 100000 messages of
     64..4096 random bytes, each echoed back by the server
  3. lines over an abstract Unix socket: 'unix-listen:@strata-demo-PID | crlf',
     50000 printable lines of 16..1024 characters, echoed back
  4. an in-process bridge: client -> tcp -> bridge -> unix -> echo server and back
     (16 MiB by default)
  5. messages over TLS: 'tcp-listen:127.0.0.1:0 | tls(cert=..., key=...) | prefix(4)',
     20000 messages of 64..4096 bytes, echoed; the certificate is made for this run
     (self-signed, for localhost) in a private temporary directory, removed afterwards,
     and the client verifies the server against it
  6. datagrams over DTLS: 'seqpacket-listen:@strata-demo-PID-dtls | dtls(...)', 5000
     messages of 16..1100 bytes (each one record in one datagram of at most 1200),
     echoed, with the same certificate

For each it prints the stack of both ends (each layer with the properties it offers),
the size, a 64-bit checksum computed on the sending side and one computed on the
receiving side (and, for echoes, on the sender again after the round trip), 'ok' or
'MISMATCH', the duration and the throughput.

options:
  --size BYTES   bytes for transfer 1 (default 64M); transfer 4 moves a quarter of it.
                 Accepts suffixes k, M, G (binary).
  --quick        small sizes (about a second in all), as the tests use
  -h, --help     show this help

exit status: 0 every checksum matched; 1 a transfer failed (error printed);
2 usage error; 3 a checksum did not match.
)";

namespace {

using clock_type = std::chrono::steady_clock;

struct demo_sizes {
  std::uint64_t stream_bytes = 64ull << 20;
  std::uint64_t messages = 100000;
  std::uint64_t lines = 50000;
  std::uint64_t bridge_bytes = 16ull << 20;
  std::uint64_t tls_messages = 20000;
  std::uint64_t dtls_messages = 5000;
};

/// demo_certificate is a self-signed certificate for localhost in a private temporary
/// directory, removed when it goes.
struct demo_certificate {
  std::string directory;
  std::string cert_file;
  std::string key_file;
  std::string problem;  ///< why there is none

  demo_certificate() {
    std::vector<std::string> names{"localhost", "127.0.0.1"};
    auto made = tls::self_signed(names);
    if (!made) {
      problem = "cannot make a certificate: " + made.error().message();
      return;
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/strata-demo-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      problem = "cannot make a temporary directory in " + pattern;
      return;
    }
    directory = pattern;  // mode 0700: the key is ours alone
    cert_file = directory + "/localhost.cert.pem";
    key_file = directory + "/localhost.key.pem";
    std::ofstream(cert_file) << made->cert_pem;
    std::ofstream(key_file) << made->key_pem;
    if (!std::ifstream(cert_file) || !std::ifstream(key_file)) problem = "cannot write into " + directory;
  }
  demo_certificate(const demo_certificate&) = delete;
  demo_certificate& operator=(const demo_certificate&) = delete;
  ~demo_certificate() {
    std::error_code ignored;
    if (!directory.empty()) std::filesystem::remove_all(directory, ignored);
  }
};

// outcome is what one transfer reports.
struct outcome {
  std::string title;
  std::vector<std::pair<std::string, std::string>> stacks;  // role, pipeline::describe()
  std::vector<std::pair<std::string, checksum>> sums;       // where computed, checksum
  std::uint64_t messages = 0;
  double seconds = 0;
  std::string what;
  std::error_code error;

  void fail(std::string where, std::error_code ec) {
    if (ec == errc::operation_canceled && error) return;
    if (!error) {
      what = std::move(where);
      error = ec;
    }
  }
};

std::string hex(std::uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "%016" PRIx64, v);
  return text;
}

std::string mib(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

std::optional<pipeline> demo_pipeline(const std::string& text, outcome& out) {
  pipeline_error error;
  auto p = pipeline::parse(text, error);
  if (!p) out.fail("spec " + text + ": " + error.message, errc::invalid_argument);
  return p;
}

// port_of returns the bound port of a listener as text.
std::string port_of(const any_listener& l) {
  auto where = l.local_address();
  return where ? std::to_string(where->port()) : "0";
}

// -- 1. a byte stream one way ---------------------------------------------------------

task<void> stream_sink(any_listener& listener, checksum& sum, outcome& out, deadline dl) {
  auto conn = co_await listener.accept(dl);
  if (!conn) co_return out.fail("server: accept", conn.error());
  std::vector<std::byte> buf(256 * 1024);
  for (;;) {
    auto n = co_await conn->stream().read_some(buf, dl);
    if (!n) {
      if (n.error() != errc::end_of_stream) out.fail("server: read", n.error());
      break;
    }
    sum.update(const_buffer(buf.data(), *n));
  }
  (void)co_await conn->close(dl);
}

task<outcome> stream_transfer(std::uint64_t size, deadline dl) {
  outcome out;
  out.title = "tcp byte stream, " + mib(size) + " one way";
  auto server = demo_pipeline("tcp-listen:127.0.0.1:0", out);
  if (!server) co_return out;
  auto listener = server->listen();
  if (!listener) {
    out.fail("listen " + server->text(), listener.error());
    co_return out;
  }
  auto client = demo_pipeline("tcp:127.0.0.1:" + port_of(*listener), out);
  if (!client) co_return out;
  out.stacks = {{"server", server->describe()}, {"client", client->describe()}};
  checksum sent, received;
  auto start = clock_type::now();
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(stream_sink(*listener, received, out, dl));
    auto conn = co_await client->connect(dl);
    if (!conn) co_return out.fail("client: connect", conn.error());
    std::vector<std::byte> buf(256 * 1024);
    pattern gen(0x5eed0001);
    for (std::uint64_t done = 0; done < size;) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - done));
      gen.fill(mutable_buffer(buf.data(), n));
      sent.update(const_buffer(buf.data(), n));
      auto w = co_await conn->stream().write(const_buffer(buf.data(), n), dl);
      if (!w) {
        out.fail("client: write", w.error());
        s.cancel();
        co_return;
      }
      done += n;
    }
    if (auto r = co_await conn->stream().shutdown_write(dl); !r) out.fail("client: shutdown", r.error());
    // The server closes once it has read everything: wait for that end.
    auto n = co_await conn->stream().read_some(buf, dl);
    if (n) out.fail("client: read", errc::protocol_error);  // the sink sends nothing
    (void)co_await conn->close(dl);
  });
  out.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  listener->close();
  out.sums = {{"sent (client)", sent}, {"received (server)", received}};
  co_return out;
}

// -- 2 and 3. messages echoed -------------------------------------------------------------

// message_source generates the demo messages: random bytes, or printable lines.
struct message_source {
  pattern gen;
  std::size_t min_size;
  std::size_t max_size;
  bool printable;

  std::size_t next(std::vector<std::byte>& buf) {
    std::size_t size = min_size + static_cast<std::size_t>(gen.next() % (max_size - min_size + 1));
    buf.resize(size);
    gen.fill(buf);
    if (printable) {
      for (auto& b : buf) b = static_cast<std::byte>(' ' + static_cast<unsigned>(b) % 95);  // ' '..'~'
    }
    return size;
  }
};

task<void> echo_messages(any_listener& listener, checksum& sum, outcome& out, deadline dl) {
  auto conn = co_await listener.accept(dl);
  if (!conn) co_return out.fail("server: accept", conn.error());
  auto& m = conn->message();
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    auto n = co_await m.recv(buf, dl);
    if (!n) {
      if (n.error() != errc::end_of_stream) co_return out.fail("server: receive", n.error());
      break;
    }
    sum.update_message(const_buffer(buf.data(), *n));
    if (auto w = co_await m.send(const_buffer(buf.data(), *n), dl); !w)
      co_return out.fail("server: send", w.error());
  }
  if (auto r = co_await m.shutdown_write(dl); !r) out.fail("server: shutdown", r.error());
  (void)co_await conn->close(dl);
}

task<void> receive_echoes(any_message& m, checksum& sum, std::uint64_t& count, outcome& out, deadline dl) {
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    auto n = co_await m.recv(buf, dl);
    if (!n) {
      if (n.error() != errc::end_of_stream) out.fail("client: receive", n.error());
      co_return;
    }
    sum.update_message(const_buffer(buf.data(), *n));
    ++count;
  }
}

task<outcome> message_transfer(std::string title, std::string server_spec, std::string client_base,
                               std::string client_suffix, std::uint64_t count, message_source source,
                               deadline dl) {
  outcome out;
  out.title = std::move(title);
  auto server = demo_pipeline(server_spec, out);
  if (!server) co_return out;
  auto listener = server->listen();
  if (!listener) {
    out.fail("listen " + server->text(), listener.error());
    co_return out;
  }
  // A tcp client needs the ephemeral port; a unix client names the socket itself.
  std::string client_text = client_base.ends_with(":") ? client_base + port_of(*listener) : client_base;
  auto client = demo_pipeline(client_text + client_suffix, out);
  if (!client) co_return out;
  out.stacks = {{"server", server->describe()}, {"client", client->describe()}};
  checksum sent, received, echoed;
  std::uint64_t echoes = 0;
  // Declared outside the scope: the receiving task uses it until the scope has joined.
  result<any_connection> conn = errc::closed;
  auto start = clock_type::now();
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(echo_messages(*listener, received, out, dl));
    conn = co_await client->connect(dl);
    if (!conn) co_return out.fail("client: connect", conn.error());
    auto& m = conn->message();
    s.spawn(receive_echoes(m, echoed, echoes, out, dl));
    std::vector<std::byte> buf;
    for (std::uint64_t i = 0; i < count; ++i) {
      source.next(buf);
      sent.update_message(buf);
      if (auto w = co_await m.send(const_buffer(buf), dl); !w) {
        out.fail("client: send", w.error());
        s.cancel();
        co_return;
      }
    }
    if (auto r = co_await m.shutdown_write(dl); !r) out.fail("client: shutdown", r.error());
    // receive_echoes ends at the server's end of stream; close after the scope joins.
    (void)co_await s.join(dl);
    (void)co_await conn->close(dl);
  });
  out.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  listener->close();
  out.messages = echoes;
  out.sums = {{"sent (client)", sent}, {"received (server)", received}, {"echoed back (client)", echoed}};
  co_return out;
}

// -- 4. an in-process bridge ----------------------------------------------------------------

task<void> echo_stream(any_listener& listener, checksum& sum, outcome& out, deadline dl) {
  auto conn = co_await listener.accept(dl);
  if (!conn) co_return out.fail("echo server: accept", conn.error());
  auto& st = conn->stream();
  std::vector<std::byte> buf(128 * 1024);
  for (;;) {
    auto n = co_await st.read_some(buf, dl);
    if (!n) {
      if (n.error() != errc::end_of_stream) co_return out.fail("echo server: read", n.error());
      break;
    }
    sum.update(const_buffer(buf.data(), *n));
    if (auto w = co_await st.write(const_buffer(buf.data(), *n), dl); !w)
      co_return out.fail("echo server: write", w.error());
  }
  if (auto r = co_await st.shutdown_write(dl); !r) out.fail("echo server: shutdown", r.error());
  (void)co_await conn->close(dl);
}

task<void> bridge_one(any_listener& front, const pipeline& back, outcome& out, deadline dl) {
  auto a = co_await front.accept(dl);
  if (!a) co_return out.fail("bridge: accept", a.error());
  auto b = co_await back.connect(dl);
  if (!b) co_return out.fail("bridge: connect " + back.text(), b.error());
  // A named variable, not a temporary inside the co_await: g++ 12 mishandles aggregate
  // temporaries with non-trivial members there (it copies them bitwise).
  bridge_options options;
  options.label_a = "bridge tcp side";
  options.label_b = "bridge unix side";
  auto r = co_await bridge(*a, *b, options);
  if (r.error) out.fail(r.what, r.error);
}

task<void> read_stream(any_stream& st, checksum& sum, outcome& out, deadline dl) {
  std::vector<std::byte> buf(128 * 1024);
  for (;;) {
    auto n = co_await st.read_some(buf, dl);
    if (!n) {
      if (n.error() != errc::end_of_stream) out.fail("client: read", n.error());
      co_return;
    }
    sum.update(const_buffer(buf.data(), *n));
  }
}

task<outcome> bridge_transfer(std::uint64_t size, deadline dl) {
  outcome out;
  out.title = "bridge, " + mib(size) + " echoed: client -> tcp -> bridge -> unix -> echo server";
  std::string name = "@strata-demo-" + std::to_string(::getpid()) + "-echo";
  auto echo_spec = demo_pipeline("unix-listen:" + name, out);
  auto front_spec = demo_pipeline("tcp-listen:127.0.0.1:0", out);
  auto back_spec = demo_pipeline("unix:" + name, out);
  if (!echo_spec || !front_spec || !back_spec) co_return out;
  auto echo_listener = echo_spec->listen();
  if (!echo_listener) {
    out.fail("listen " + echo_spec->text(), echo_listener.error());
    co_return out;
  }
  auto front = front_spec->listen();
  if (!front) {
    out.fail("listen " + front_spec->text(), front.error());
    co_return out;
  }
  auto client = demo_pipeline("tcp:127.0.0.1:" + port_of(*front), out);
  if (!client) co_return out;
  out.stacks = {{"client", client->describe()},
                {"bridge SPEC1", front_spec->describe()},
                {"bridge SPEC2", back_spec->describe()},
                {"echo server", echo_spec->describe()}};
  checksum sent, at_server, echoed;
  // Declared outside the scope: the reading task uses it until the scope has joined.
  result<any_connection> conn = errc::closed;
  auto start = clock_type::now();
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(echo_stream(*echo_listener, at_server, out, dl));
    s.spawn(bridge_one(*front, *back_spec, out, dl));
    conn = co_await client->connect(dl);
    if (!conn) co_return out.fail("client: connect", conn.error());
    auto& st = conn->stream();
    s.spawn(read_stream(st, echoed, out, dl));
    std::vector<std::byte> buf(128 * 1024);
    pattern gen(0x5eed0004);
    for (std::uint64_t done = 0; done < size;) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - done));
      gen.fill(mutable_buffer(buf.data(), n));
      sent.update(const_buffer(buf.data(), n));
      if (auto w = co_await st.write(const_buffer(buf.data(), n), dl); !w) {
        out.fail("client: write", w.error());
        s.cancel();
        co_return;
      }
      done += n;
    }
    if (auto r = co_await st.shutdown_write(dl); !r) out.fail("client: shutdown", r.error());
    (void)co_await s.join(dl);
    (void)co_await conn->close(dl);
  });
  out.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  front->close();
  echo_listener->close();
  out.sums = {
      {"sent (client)", sent}, {"received (echo server)", at_server}, {"echoed back (client)", echoed}};
  co_return out;
}

// -- report -----------------------------------------------------------------------------------

// print_outcome prints one transfer and returns exit_ok, exit_failure or exit_mismatch.
int print_outcome(int index, const outcome& out) {
  std::printf("[%d] %s\n", index, out.title.c_str());
  for (const auto& [role, stack] : out.stacks) {
    std::printf("    %s:\n", role.c_str());
    std::size_t begin = 0;
    while (begin < stack.size()) {
      auto end = stack.find('\n', begin);
      if (end == std::string::npos) end = stack.size();
      if (end > begin) std::printf("      %s\n", stack.substr(begin, end - begin).c_str());
      begin = end + 1;
    }
  }
  int code = exit_ok;
  if (!out.sums.empty()) {
    const auto& reference = out.sums.front().second;
    std::size_t width = 0;
    for (const auto& [where, sum] : out.sums) width = std::max(width, where.size());
    for (const auto& [where, sum] : out.sums) {
      bool match = sum.value() == reference.value() && sum.bytes() == reference.bytes();
      std::printf("    %-*s %12" PRIu64 " bytes  checksum %s  %s\n", static_cast<int>(width), where.c_str(),
                  sum.bytes(), hex(sum.value()).c_str(),
                  &sum == &reference ? "" : (match ? "ok" : "MISMATCH"));
      if (!match) code = exit_mismatch;
    }
  }
  if (out.error) {
    std::printf("    FAILED: %s: %s\n", out.what.c_str(), error_text(out.error).c_str());
    code = exit_failure;
  } else {
    double bytes = out.sums.empty() ? 0 : static_cast<double>(out.sums.front().second.bytes());
    double secs = std::max(out.seconds, 1e-9);
    std::printf("    %.3f s  %.1f MiB/s", out.seconds, bytes / (1024.0 * 1024.0) / secs);
    if (out.messages) std::printf("  %.0f msg/s", static_cast<double>(out.messages) / secs);
    std::printf("\n");
  }
  std::printf("\n");
  std::fflush(stdout);
  return code;
}

}  // namespace

int demo_main(args& a, signal_guard& signals) {
  demo_sizes sizes;
  bool quick = false;
  std::optional<std::uint64_t> size;
  while (!a.empty()) {
    bool missing = false;
    if (auto v = option_value(a, "--size", missing)) {
      size = parse_size(*v);
      if (!size || *size == 0) return usage_error("demo", "--size: not a size: '" + std::string(*v) + "'");
      continue;
    }
    if (missing) return usage_error("demo", std::string(a.peek()) + " needs a value");
    auto arg = a.next();
    if (arg == "--quick") {
      quick = true;
    } else {
      return usage_error("demo", "unknown argument '" + std::string(arg) + "'");
    }
  }
  if (quick) sizes = demo_sizes{1ull << 20, 2000, 1000, 1ull << 20, 1000, 500};
  if (size) {
    sizes.stream_bytes = *size;
    sizes.bridge_bytes = std::max<std::uint64_t>(1, *size / 4);
  }

  return run_command(signals, [&]() -> task<int> {
    auto dl = deadline::after(std::chrono::seconds(quick ? 30 : 120));
    std::string pid = std::to_string(::getpid());
    int failures = 0;
    int mismatches = 0;
    auto tally = [&](int code) {
      if (code == exit_failure) ++failures;
      if (code == exit_mismatch) ++mismatches;
    };
    auto start = clock_type::now();
    auto first = co_await stream_transfer(sizes.stream_bytes, dl);
    tally(print_outcome(1, first));
    std::string title = std::to_string(sizes.messages) + " messages of 64..4096 bytes over prefix(4), echoed";
    std::string server = "tcp-listen:127.0.0.1:0 | prefix(4)";
    std::string client = "tcp:127.0.0.1:";
    std::string suffix = " | prefix(4)";
    auto second = co_await message_transfer(title, server, client, suffix, sizes.messages,
                                            message_source{pattern(0x5eed0002), 64, 4096, false}, dl);
    tally(print_outcome(2, second));
    title = std::to_string(sizes.lines) + " lines of 16..1024 characters over crlf, echoed";
    server = "unix-listen:@strata-demo-" + pid + " | crlf";
    client = "unix:@strata-demo-" + pid;
    suffix = " | crlf";
    auto third = co_await message_transfer(title, server, client, suffix, sizes.lines,
                                           message_source{pattern(0x5eed0003), 16, 1024, true}, dl);
    tally(print_outcome(3, third));
    auto fourth = co_await bridge_transfer(sizes.bridge_bytes, dl);
    tally(print_outcome(4, fourth));
    demo_certificate certificate;
    std::string cert = quote_spec_value(certificate.cert_file);
    std::string key = quote_spec_value(certificate.key_file);
    // The secure transfers need the certificate made above; without it they fail alike.
    auto secure_transfer = [&](std::string what, std::string server_spec, std::string client_base,
                               std::string client_suffix, std::uint64_t count,
                               message_source source) -> task<outcome> {
      if (certificate.problem.empty()) {
        co_return co_await message_transfer(std::move(what), std::move(server_spec), std::move(client_base),
                                            std::move(client_suffix), count, source, dl);
      }
      outcome failed;
      failed.title = std::move(what);
      failed.fail(certificate.problem, errc::invalid_argument);
      co_return failed;
    };
    auto fifth = co_await secure_transfer(
        std::to_string(sizes.tls_messages) + " messages of 64..4096 bytes over tls | prefix(4), echoed",
        "tcp-listen:127.0.0.1:0 | tls(cert=" + cert + ", key=" + key + ") | prefix(4)",
        "tcp:127.0.0.1:", " | tls(sni=localhost, ca=" + cert + ") | prefix(4)", sizes.tls_messages,
        message_source{pattern(0x5eed0005), 64, 4096, false});
    tally(print_outcome(5, fifth));
    std::string dtls_name = "@strata-demo-" + pid + "-dtls";
    auto sixth = co_await secure_transfer(
        std::to_string(sizes.dtls_messages) + " datagrams of 16..1100 bytes over seqpacket | dtls, echoed",
        "seqpacket-listen:" + dtls_name + " | dtls(cert=" + cert + ", key=" + key + ")",
        "seqpacket:" + dtls_name, " | dtls(sni=localhost, ca=" + cert + ")", sizes.dtls_messages,
        message_source{pattern(0x5eed0006), 16, 1100, false});
    tally(print_outcome(6, sixth));
    double total = std::chrono::duration<double>(clock_type::now() - start).count();
    if (failures) {
      std::printf("demo: %d of 6 transfers FAILED (%.2f s)\n", failures, total);
      co_return exit_failure;
    }
    if (mismatches) {
      std::printf("demo: %d of 6 transfers had a checksum MISMATCH (%.2f s)\n", mismatches, total);
      co_return exit_mismatch;
    }
    std::printf("demo: all 6 transfers verified ok (%.2f s)\n", total);
    co_return exit_ok;
  });
}

}  // namespace strata::cli
