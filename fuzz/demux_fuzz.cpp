// Fuzz target for demux: the sniffer (TLS ClientHello, HTTP/2 preface, HTTP/1 head) and
// the ClientHello parser behind it.
//
// Input: byte 0 picks the chunking (low 4 bits: the growth step of the prefix, 0 = the
// whole input at once) and the sniff limit (high 4 bits: 64 bytes << n, at most 16 KiB);
// the rest is what the client sent. The prefix is fed growing as a client sends it, and
// separately whole. Invariants (abort() on violation): a decision never needs more than
// the limit; both feedings agree on the decision and on what they learned; errors are
// sticky; SNI and host names are bounded and have no control bytes; at most 32 ALPN
// protocols, none empty. The bytes are also handed to parse_client_hello as a body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "strata/pipeline/demux.hpp"

namespace {

namespace demux = strata::demux;
using strata::const_buffer;

void check(bool ok) {
  if (!ok) std::abort();
}

void check_sane(const demux::sniffed& s) {
  check(s.sni.size() <= 255 && s.host.size() <= 255);
  for (char c : s.sni) check(static_cast<unsigned char>(c) > 0x20 && c != 0x7f);
  for (char c : s.host) check(static_cast<unsigned char>(c) > 0x20 && c != 0x7f);
  check(s.alpn.size() <= demux::max_alpn_protocols);
  for (const auto& p : s.alpn) check(!p.empty() && p.size() <= 255);
  if (s.kind != demux::kind::tls) check(s.sni.empty() && s.alpn.empty());
  if (s.kind != demux::kind::http1) check(s.host.empty());
}

struct outcome {
  bool decided = false;
  std::error_code error;
  demux::sniffed info;
};

outcome run(const_buffer data, std::size_t limit, std::size_t step) {
  outcome out;
  demux::sniffer s(limit);
  std::size_t fed = 0;
  while (fed < data.size()) {
    fed = step == 0 ? data.size() : std::min(data.size(), fed + step);
    auto st = s.feed(data.first(fed));
    if (!st) {
      out.error = st.error();
      // Sticky: a second look fails the same way.
      auto again = s.feed(data.first(fed));
      check(!again && again.error() == out.error);
      return out;
    }
    if (*st == demux::sniffer::status::done) {
      out.decided = true;
      out.info = s.result_value();
      check_sane(out.info);
      return out;
    }
  }
  auto st = s.finish(data);
  if (!st) {
    out.error = st.error();
  } else {
    out.decided = true;
    out.info = s.result_value();
    check_sane(out.info);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size < 1) return 0;
  const auto control = bytes[0];
  const std::size_t step = control & 0x0f;
  const std::size_t limit =
      std::min<std::size_t>(std::size_t{64} << (control >> 4), demux::default_max_sniff);
  // The driver never feeds more than the limit.
  auto data = const_buffer(reinterpret_cast<const std::byte*>(bytes + 1), std::min(size - 1, limit));

  auto growing = run(data, limit, step == 0 ? 1 : step);
  auto whole = run(data, limit, 0);
  // A decision made on a prefix is the decision on the whole; errors likewise, except that
  // a prefix can still be undecided when the whole has failed on later bytes.
  if (growing.decided && whole.decided) {
    check(growing.info.kind == whole.info.kind);
    check(growing.info.sni == whole.info.sni);
    check(growing.info.alpn == whole.info.alpn);
    check(growing.info.host == whole.info.host);
  }
  if (growing.error && whole.error) check(growing.error == whole.error);

  demux::sniffed direct;
  direct.kind = demux::kind::tls;
  auto parsed = demux::parse_client_hello(data, direct);
  if (parsed) check_sane(direct);
  return 0;
}
