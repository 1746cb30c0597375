// dccp's packet codec: the generic header, the subheaders, the checksum with its
// pseudo-header and coverage (RFC 4340 5 and 9) and the options (5.8, 6, 11.4, 13).
// The state machine is in dccp.cpp.
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "strata/adapt/dccp.hpp"

namespace strata::dccp {

namespace {

// The pseudo-header's protocol number: DCCP's own (33), as for DCCP over IP, so that the
// same packet checks out wherever it is decoded (RFC 4340 9.1; see docs/protocols/dccp.md
// for how the UDP encapsulation is carried).
constexpr std::uint32_t pseudo_protocol = 33;

std::uint16_t load16(const std::byte* p) noexcept {
  return std::uint16_t((unsigned(p[0]) << 8) | unsigned(p[1]));
}
std::uint32_t load32(const std::byte* p) noexcept {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}
std::uint64_t load48(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 6; ++i) v = (v << 8) | std::uint64_t(p[i]);
  return v;
}
void store16(std::byte* p, std::uint16_t v) noexcept {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}
void store32(std::byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (24 - 8 * i));
}
void store48(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 6; ++i) p[i] = std::byte(v >> (40 - 8 * i));
}

/// sum16 adds `data` as big-endian 16-bit words (a last odd byte padded with zero).
std::uint32_t sum16(const std::uint8_t* data, std::size_t n, std::uint32_t acc) noexcept {
  std::uint64_t s = acc;
  std::size_t i = 0;
  for (; i + 1 < n; i += 2) s += (std::uint32_t(data[i]) << 8) | data[i + 1];
  if (i < n) s += std::uint32_t(data[i]) << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint32_t>(s);
}

std::size_t coverage_of(std::size_t header_bytes, std::size_t total, std::uint8_t cscov) noexcept {
  if (cscov == 0) return total;
  return header_bytes + (std::size_t(cscov) - 1) * 4;
}

class dccp_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "dccp"; }
  std::string message(int value) const override {
    switch (static_cast<error>(value)) {
      case error::truncated:
        return "dccp: packet shorter than its header";
      case error::bad_data_offset:
        return "dccp: Data Offset outside the packet or below the header";
      case error::bad_checksum:
        return "dccp: bad checksum";
      case error::bad_coverage:
        return "dccp: checksum coverage beyond the packet";
      case error::bad_type:
        return "dccp: reserved packet type";
      case error::short_sequence:
        return "dccp: 24-bit sequence numbers (X=0) are not allowed";
      case error::bad_option:
        return "dccp: malformed option";
      case error::too_many_options:
        return "dccp: more options than the limit";
      case error::bad_ack_vector:
        return "dccp: Ack Vector over the limit";
      case error::mandatory_failure:
        return "dccp: a mandatory option could not be honoured";
      case error::bad_port:
        return "dccp: ports of another connection";
      case error::out_of_window:
        return "dccp: sequence or acknowledgement number outside the windows";
      case error::negotiation_failed:
        return "dccp: the peer would not agree on CCID 2";
      case error::peer_reset:
        return "dccp: connection reset by the peer";
      case error::refused:
        return "dccp: connection refused by the peer";
      case error::bad_service_code:
        return "dccp: the peer does not offer this service code";
      case error::handshake_failed:
        return "dccp: no Response to any Request";
    }
    return "dccp error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    switch (static_cast<error>(value)) {
      case error::peer_reset:
      case error::refused:
      case error::bad_service_code:
      case error::handshake_failed:
        return errc::broken;
      default:
        return errc::protocol_error;
    }
  }
};

}  // namespace

const std::error_category& category() noexcept {
  static const dccp_error_category c;
  return c;
}

const char* to_string(packet_type t) noexcept {
  switch (t) {
    case packet_type::request:
      return "DCCP-Request";
    case packet_type::response:
      return "DCCP-Response";
    case packet_type::data:
      return "DCCP-Data";
    case packet_type::ack:
      return "DCCP-Ack";
    case packet_type::data_ack:
      return "DCCP-DataAck";
    case packet_type::close_req:
      return "DCCP-CloseReq";
    case packet_type::close:
      return "DCCP-Close";
    case packet_type::reset:
      return "DCCP-Reset";
    case packet_type::sync:
      return "DCCP-Sync";
    case packet_type::sync_ack:
      return "DCCP-SyncAck";
  }
  return "DCCP-?";
}

endpoints endpoints::from(const address& source, const address& dest) noexcept {
  endpoints e;
  auto fill = [](const address& a, std::array<std::uint8_t, 16>& ip, bool& v6) {
    if (a.kind() == address::family::ipv4) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a.data());
      std::memcpy(ip.data(), &in->sin_addr, 4);
    } else if (a.kind() == address::family::ipv6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.data());
      std::memcpy(ip.data(), &in6->sin6_addr, 16);
      v6 = true;
    }
  };
  fill(source, e.source_ip, e.ipv6);
  fill(dest, e.dest_ip, e.ipv6);
  if (source.is_ip()) e.source_port = source.port();
  if (dest.is_ip()) e.dest_port = dest.port();
  return e;
}

endpoints endpoints::reversed() const noexcept {
  endpoints r = *this;
  std::swap(r.source_ip, r.dest_ip);
  std::swap(r.source_port, r.dest_port);
  return r;
}

std::size_t header_size(packet_type t) noexcept {
  switch (t) {
    case packet_type::request:
      return 20;
    case packet_type::data:
      return 16;
    case packet_type::response:
    case packet_type::reset:
      return 28;
    default:
      return 24;
  }
}

std::uint16_t checksum(const_buffer datagram, const endpoints& path) noexcept {
  const auto* p = reinterpret_cast<const std::uint8_t*>(datagram.data());
  const std::size_t total = datagram.size();
  const std::size_t doff = total >= 5 ? std::size_t(p[4]) * 4 : total;
  const std::size_t cover =
      std::min(total, coverage_of(std::min(doff, total), total, total >= 6 ? p[5] & 0x0f : 0));
  std::uint32_t s = 0;
  // Pseudo-header (RFC 4340 9.1): addresses, then the protocol and the DCCP length.
  if (path.ipv6) {
    s = sum16(path.source_ip.data(), 16, s);
    s = sum16(path.dest_ip.data(), 16, s);
    const std::uint8_t tail[8] = {std::uint8_t(total >> 24),
                                  std::uint8_t(total >> 16),
                                  std::uint8_t(total >> 8),
                                  std::uint8_t(total),
                                  0,
                                  0,
                                  0,
                                  std::uint8_t(pseudo_protocol)};
    s = sum16(tail, 8, s);
  } else {
    s = sum16(path.source_ip.data(), 4, s);
    s = sum16(path.dest_ip.data(), 4, s);
    const std::uint8_t tail[4] = {0, std::uint8_t(pseudo_protocol), std::uint8_t(total >> 8),
                                  std::uint8_t(total)};
    s = sum16(tail, 4, s);
  }
  // The packet with its checksum field (bytes 6 and 7) as zero.
  if (cover > 8) {
    s = sum16(p, 6, s);
    s = sum16(p + 8, cover - 8, s);
  } else {
    s = sum16(p, std::min<std::size_t>(cover, 6), s);
  }
  return static_cast<std::uint16_t>(~s & 0xffff);
}

result<decoded> decode(const_buffer datagram, const endpoints& path, bool verify_checksum) {
  const std::byte* p = datagram.data();
  const std::size_t n = datagram.size();
  if (n < 12) return unexpected(make_error_code(error::truncated));
  const unsigned type_bits = (unsigned(p[8]) >> 1) & 0x0f;
  if (type_bits > 9) return unexpected(make_error_code(error::bad_type));
  if ((unsigned(p[8]) & 1) == 0) return unexpected(make_error_code(error::short_sequence));
  decoded d;
  auto& h = d.h;
  h.type = static_cast<packet_type>(type_bits);
  const std::size_t fixed = header_size(h.type);
  if (n < fixed) return unexpected(make_error_code(error::truncated));
  const std::size_t doff = std::size_t(p[4]) * 4;
  if (doff < fixed || doff > n) return unexpected(make_error_code(error::bad_data_offset));
  h.source_port = load16(p);
  h.dest_port = load16(p + 2);
  h.ccval = std::uint8_t(unsigned(p[5]) >> 4);
  h.cscov = std::uint8_t(unsigned(p[5]) & 0x0f);
  if (coverage_of(doff, n, h.cscov) > n) return unexpected(make_error_code(error::bad_coverage));
  if (verify_checksum && checksum(datagram, path) != load16(p + 6))
    return unexpected(make_error_code(error::bad_checksum));
  h.seq = load48(p + 10);
  std::size_t at = 16;
  if (has_ack(h.type)) {
    h.ack = load48(p + 18);
    at = 24;
  }
  if (h.type == packet_type::request || h.type == packet_type::response) {
    h.service_code = load32(p + at);
  } else if (h.type == packet_type::reset) {
    h.code = static_cast<reset_code>(p[24]);
    h.reset_data = {std::uint8_t(p[25]), std::uint8_t(p[26]), std::uint8_t(p[27])};
  }
  d.options = datagram.subspan(fixed, doff - fixed);
  d.payload = datagram.subspan(doff);
  return d;
}

std::vector<std::byte> encode(const header& h, const_buffer options, const_buffers payload,
                              const endpoints& path) {
  const std::size_t fixed = header_size(h.type);
  const std::size_t opt = (std::min(options.size(), max_options) + 3) & ~std::size_t(3);
  const std::size_t doff = fixed + opt;
  std::vector<std::byte> out(doff);
  std::byte* p = out.data();
  store16(p, path.source_port);
  store16(p + 2, path.dest_port);
  p[4] = std::byte(doff / 4);
  p[5] = std::byte((unsigned(h.ccval & 0x0f) << 4) | (h.cscov & 0x0f));
  p[8] = std::byte((unsigned(h.type) << 1) | 1u);
  store48(p + 10, h.seq & seq_mask);
  if (has_ack(h.type)) store48(p + 18, h.ack & seq_mask);
  if (h.type == packet_type::request) store32(p + 16, h.service_code);
  if (h.type == packet_type::response) store32(p + 24, h.service_code);
  if (h.type == packet_type::reset) {
    p[24] = std::byte(h.code);
    for (int i = 0; i < 3; ++i) p[25 + i] = std::byte(h.reset_data[i]);
  }
  // (memcpy's pointers must not be null, even for no bytes: no options may mean no storage.)
  if (!options.empty()) std::memcpy(p + fixed, options.data(), std::min(options.size(), max_options));
  // The rest of the options area stays zero: Padding options.
  payload.copy_to(out);
  store16(out.data() + 6, checksum(out, path));
  return out;
}

result<parsed_options> parse_options(const_buffer area, const options_limits& limits) {
  parsed_options o;
  const auto* p = reinterpret_cast<const std::uint8_t*>(area.data());
  const std::size_t n = area.size();
  std::size_t i = 0;
  std::size_t ack_vectors = 0;
  bool mandatory = false;
  while (i < n) {
    const std::uint8_t type = p[i];
    if (type < 32) {
      ++i;
      if (type == option::mandatory) {
        if (mandatory || i >= n) return unexpected(make_error_code(error::bad_option));
        mandatory = true;
        continue;
      }
      if (type == option::slow_receiver) o.slow_receiver = true;
      // Padding and reserved single-byte options carry nothing.
      if (mandatory && type != option::slow_receiver && type != option::padding) o.unknown_mandatory = true;
      mandatory = false;
      continue;
    }
    if (i + 1 >= n) return unexpected(make_error_code(error::bad_option));
    const std::size_t len = p[i + 1];
    if (len < 2 || i + len > n) return unexpected(make_error_code(error::bad_option));
    const std::uint8_t* v = p + i + 2;
    const std::size_t vlen = len - 2;
    bool known = true;
    switch (type) {
      case option::change_l:
      case option::confirm_l:
      case option::change_r:
      case option::confirm_r: {
        if (vlen < 1) return unexpected(make_error_code(error::bad_option));
        if (o.features.size() >= limits.max_features)
          return unexpected(make_error_code(error::too_many_options));
        feature_option f;
        f.kind = type;
        f.feature = v[0];
        f.values.assign(v + 1, v + vlen);
        o.features.push_back(std::move(f));
        break;
      }
      case option::init_cookie:
        if (vlen < 1) return unexpected(make_error_code(error::bad_option));
        o.init_cookie.assign(v, v + vlen);
        break;
      case option::ndp_count: {
        if (vlen < 1 || vlen > 6) return unexpected(make_error_code(error::bad_option));
        std::uint64_t c = 0;
        for (std::size_t k = 0; k < vlen; ++k) c = (c << 8) | v[k];
        o.ndp_count = c;
        break;
      }
      case option::ack_vector_0:
      case option::ack_vector_1:
        if (vlen < 1) return unexpected(make_error_code(error::bad_option));
        if (++ack_vectors > limits.max_ack_vectors || o.ack_vector.size() + vlen > limits.max_ack_cells)
          return unexpected(make_error_code(error::bad_ack_vector));
        o.ack_vector.insert(o.ack_vector.end(), v, v + vlen);
        o.ack_vector_present = true;
        break;
      case option::timestamp:
        if (vlen != 4) return unexpected(make_error_code(error::bad_option));
        o.timestamp =
            (std::uint32_t(v[0]) << 24) | (std::uint32_t(v[1]) << 16) | (std::uint32_t(v[2]) << 8) | v[3];
        break;
      case option::timestamp_echo:
        if (vlen != 4 && vlen != 6 && vlen != 8) return unexpected(make_error_code(error::bad_option));
        o.timestamp_echo =
            (std::uint32_t(v[0]) << 24) | (std::uint32_t(v[1]) << 16) | (std::uint32_t(v[2]) << 8) | v[3];
        if (vlen == 6) o.elapsed_time = (std::uint32_t(v[4]) << 8) | v[5];
        if (vlen == 8)
          o.elapsed_time =
              (std::uint32_t(v[4]) << 24) | (std::uint32_t(v[5]) << 16) | (std::uint32_t(v[6]) << 8) | v[7];
        break;
      case option::elapsed_time:
        if (vlen != 2 && vlen != 4) return unexpected(make_error_code(error::bad_option));
        o.elapsed_time = vlen == 2 ? ((std::uint32_t(v[0]) << 8) | v[1])
                                   : ((std::uint32_t(v[0]) << 24) | (std::uint32_t(v[1]) << 16) |
                                      (std::uint32_t(v[2]) << 8) | v[3]);
        break;
      default:
        // Data Dropped, Data Checksum, CCID-specific and reserved options are skipped.
        known = false;
        break;
    }
    if (mandatory && !known) o.unknown_mandatory = true;
    mandatory = false;
    i += len;
  }
  return o;
}

}  // namespace strata::dccp
