// dccp's state machine (RFC 4340 6, 7, 8: features, sequence numbers, the connection's
// states) and the admission gate. CCID 2 and the Ack Vector bookkeeping are in
// dccp_ccid2.cpp, the packet codec in dccp_codec.cpp; the driver is the template in
// include/strata/adapt/dccp.hpp.
#include "strata/adapt/dccp.hpp"

#include <algorithm>

#include <random>
#include "dccp_internal.hpp"

namespace strata::dccp {

namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

using detail::max_backoff;
using detail::nn_bytes;
using detail::nn_value;
constexpr milliseconds sync_interval{125};  // at most 8 Syncs a second (RFC 4340 7.5.4)
constexpr int max_close_attempts = 8;
constexpr std::uint64_t max_peer_window = std::uint64_t(1) << 20;

std::uint64_t random48() {
  std::random_device rd;
  return ((std::uint64_t(rd()) << 32) | rd()) & seq_mask;
}

void put_option(std::vector<std::uint8_t>& out, std::uint8_t type, std::uint8_t feat,
                const std::vector<std::uint8_t>& values) {
  out.push_back(type);
  out.push_back(static_cast<std::uint8_t>(3 + values.size()));
  out.push_back(feat);
  out.insert(out.end(), values.begin(), values.end());
}

bool is_nn(std::uint8_t f) { return f == feature::sequence_window || f == feature::ack_ratio; }

/// our_preferences is this end's preference list for a server-priority feature, or
/// nullopt for a feature it does not know (which gets an empty Confirm, RFC 4340 6.6.7).
std::optional<std::vector<std::uint8_t>> our_preferences(std::uint8_t f) {
  switch (f) {
    case feature::ccid:
      return std::vector<std::uint8_t>{2};
    case feature::allow_short_seqnos:
      return std::vector<std::uint8_t>{0};
    case feature::send_ack_vector:
      return std::vector<std::uint8_t>{1, 0};
    case feature::ecn_incapable:
      return std::vector<std::uint8_t>{1, 0};
    case feature::send_ndp_count:
      return std::vector<std::uint8_t>{0, 1};
    default:
      return std::nullopt;
  }
}

/// reconcile picks a server-priority value: the first entry of the server's list that the
/// client's list has (RFC 4340 6.3.1).
std::optional<std::uint8_t> reconcile(const std::vector<std::uint8_t>& server,
                                      const std::vector<std::uint8_t>& client) {
  for (auto s : server) {
    if (std::find(client.begin(), client.end(), s) != client.end()) return s;
  }
  return std::nullopt;
}

std::uint32_t initial_cwnd(std::size_t mss) {
  // RFC 4341 5 / RFC 3390: min(4, max(2, 4380 / MSS)) packets.
  std::size_t w = mss ? 4380 / mss : 2;
  return static_cast<std::uint32_t>(std::min<std::size_t>(4, std::max<std::size_t>(2, w)));
}

}  // namespace

const char* to_string(state s) noexcept {
  switch (s) {
    case state::closed:
      return "CLOSED";
    case state::listen:
      return "LISTEN";
    case state::request:
      return "REQUEST";
    case state::respond:
      return "RESPOND";
    case state::partopen:
      return "PARTOPEN";
    case state::open:
      return "OPEN";
    case state::closereq:
      return "CLOSEREQ";
    case state::closing:
      return "CLOSING";
    case state::timewait:
      return "TIMEWAIT";
  }
  return "?";
}

// -- setting up ---------------------------------------------------------------------------

engine engine::client(const config& cfg, const endpoints& path, time_point now) {
  engine e;
  e.cfg_ = cfg;
  e.path_ = path;
  e.start_ = now;
  e.is_server_ = false;
  e.local_window_ = std::clamp<std::uint64_t>(cfg.sequence_window, 32, max_peer_window);
  e.rto_ = duration_cast<microseconds>(cfg.initial_rto);
  e.cwnd_ = initial_cwnd(e.max_message());
  e.iss_ = cfg.iss ? (*cfg.iss & seq_mask) : random48();
  e.gss_ = seq_add(e.iss_, -1);
  e.gar_ = e.iss_;
  e.changes_ = {
      {option::change_l, feature::ccid, {2}},
      {option::change_r, feature::ccid, {2}},
      {option::change_r, feature::send_ack_vector, {1}},
      {option::change_l, feature::ack_ratio, nn_bytes(std::max<std::uint16_t>(cfg.ack_ratio, 1), 2)},
      {option::change_l, feature::sequence_window, nn_bytes(e.local_window_, 6)},
      {option::change_l, feature::allow_short_seqnos, {0}},
  };
  e.enter(state::request, now);
  e.emit(packet_type::request, {}, now);
  return e;
}

engine engine::server(const config& cfg, const endpoints& path, time_point now) {
  engine e;
  e.cfg_ = cfg;
  e.path_ = path;
  e.start_ = now;
  e.is_server_ = true;
  e.local_window_ = std::clamp<std::uint64_t>(cfg.sequence_window, 32, max_peer_window);
  e.rto_ = duration_cast<microseconds>(cfg.initial_rto);
  e.cwnd_ = initial_cwnd(e.max_message());
  e.state_ = state::listen;
  return e;
}

std::size_t engine::max_message() const noexcept {
  return cfg_.mtu > header_size(packet_type::data_ack) ? cfg_.mtu - header_size(packet_type::data_ack) : 0;
}

bool engine::established() const noexcept {
  return state_ == state::open || (state_ == state::partopen && !is_server_);
}

bool engine::can_send() const noexcept {
  return (state_ == state::open || state_ == state::partopen) && !close_requested_ && !error_ &&
         pipe_ < cwnd_;
}

void engine::fail(std::error_code ec) {
  if (!error_) error_ = ec;
}

void engine::enter(state s, time_point now) {
  state_ = s;
  switch (s) {
    case state::request:
    case state::closing:
    case state::closereq:
      retransmissions_ = 0;
      retransmit_interval_ = cfg_.retransmit;
      retransmit_at_ = now + retransmit_interval_;
      break;
    case state::partopen:
      retransmissions_ = 0;
      retransmit_interval_ = cfg_.partopen_ack;
      retransmit_at_ = now + retransmit_interval_;
      break;
    case state::timewait:
      retransmit_at_.reset();
      rto_at_.reset();
      ack_at_.reset();
      timewait_until_ = now + cfg_.timewait;
      break;
    case state::closed:
      retransmit_at_.reset();
      rto_at_.reset();
      ack_at_.reset();
      timewait_until_.reset();
      break;
    default:
      retransmit_at_.reset();
      break;
  }
}

// -- output -------------------------------------------------------------------------------

std::vector<std::byte> engine::next_output() {
  auto out = std::move(outbox_.front());
  outbox_.pop_front();
  return out;
}

std::vector<std::uint8_t> engine::build_options(packet_type type, time_point now, std::size_t budget) {
  std::vector<std::uint8_t> o;
  auto fits = [&](std::size_t more) { return o.size() + more <= budget; };
  // Feature negotiation: our Changes until confirmed, Confirms once.
  if (type != packet_type::data && type != packet_type::reset) {
    if (fits(confirms_.size())) {
      o.insert(o.end(), confirms_.begin(), confirms_.end());
      confirms_.clear();
    }
    for (const auto& c : changes_) {
      if (!fits(3 + c.values.size())) break;
      put_option(o, c.kind, c.feature, c.values);
    }
  }
  // A client echoes the server's Init Cookie in PARTOPEN (RFC 4340 8.1.4).
  if (state_ == state::partopen && !init_cookie_.empty() && fits(2 + init_cookie_.size())) {
    o.push_back(option::init_cookie);
    o.push_back(static_cast<std::uint8_t>(2 + init_cookie_.size()));
    o.insert(o.end(), init_cookie_.begin(), init_cookie_.end());
  }
  if (type == packet_type::ack || type == packet_type::data_ack) {
    if (slow_receiver_pending_ && fits(1)) {
      o.push_back(option::slow_receiver);
      slow_receiver_pending_ = false;
    }
    if (echo_timestamp_ && fits(10)) {
      auto elapsed = duration_cast<microseconds>(now - echo_received_).count() / 10;
      auto e = static_cast<std::uint32_t>(std::min<std::int64_t>(elapsed, 0xffffffff));
      o.insert(o.end(), {option::timestamp_echo, 10, std::uint8_t(*echo_timestamp_ >> 24),
                         std::uint8_t(*echo_timestamp_ >> 16), std::uint8_t(*echo_timestamp_ >> 8),
                         std::uint8_t(*echo_timestamp_), std::uint8_t(e >> 24), std::uint8_t(e >> 16),
                         std::uint8_t(e >> 8), std::uint8_t(e)});
      echo_timestamp_.reset();
    }
    if (send_ack_vector_ && !history_.empty() && fits(3)) append_ack_vector(o, budget);
  }
  return o;
}

void engine::emit(packet_type type, const_buffers payload, time_point now) {
  header h;
  h.type = type;
  h.ack = gsr_;
  h.service_code = cfg_.service;
  std::size_t budget = max_options;
  const std::size_t used = header_size(type) + payload.total_size();
  budget = std::min(budget, cfg_.mtu > used ? cfg_.mtu - used : 0);
  budget &= ~std::size_t(3);
  auto opts = build_options(type, now, budget);
  gss_ = seq_add(gss_, 1);
  h.seq = gss_;
  outbox_.push_back(
      encode(h, const_buffer(reinterpret_cast<const std::byte*>(opts.data()), opts.size()), payload, path_));
  ++stats_.packets_out;
  if (has_ack(type)) {
    data_since_ack_ = 0;
    ack_at_.reset();
  }
}

void engine::emit_reset(reset_code code, std::uint64_t seq, std::uint64_t ack, time_point) {
  header h;
  h.type = packet_type::reset;
  h.seq = seq;
  h.ack = ack;
  h.code = code;
  outbox_.push_back(encode(h, {}, {}, path_));
  ++stats_.packets_out;
}

bool engine::reply_allowed(time_point now) {
  // Resets to packets of no connection are rate-limited like Syncs: a flood of junk does
  // not turn into a flood of answers.
  if (last_reset_ && now - *last_reset_ < sync_interval) return false;
  last_reset_ = now;
  return true;
}

void engine::emit_sync(packet_type type, std::uint64_t ack, time_point now) {
  if (type == packet_type::sync) {
    if (last_sync_ && now - *last_sync_ < sync_interval) return;
    last_sync_ = now;
    ++stats_.syncs_sent;
  }
  header h;
  h.type = type;
  gss_ = seq_add(gss_, 1);
  h.seq = gss_;
  h.ack = ack;
  outbox_.push_back(encode(h, {}, {}, path_));
  ++stats_.packets_out;
}

// -- the application's calls --------------------------------------------------------------

result<void> engine::send(const_buffers message, time_point now) {
  if (error_) return unexpected(error_);
  if (close_requested_) return errc::closed;
  if (message.total_size() > max_message()) return errc::message_too_large;
  if (!can_send()) return errc::invalid_argument;
  emit(packet_type::data_ack, message, now);
  sent_.push_back({gss_, now});
  ++pipe_;
  if (sent_.size() > 4 * std::size_t(cfg_.max_cwnd)) {
    // The oldest record goes; if it was still in flight it counts as lost.
    if (!sent_.front().acked && !sent_.front().lost) {
      --pipe_;
      ++stats_.data_lost;
    }
    sent_.pop_front();
  }
  if (!rto_at_) rto_at_ = now + rto_;
  return {};
}

result<std::size_t> engine::read(mutable_buffer buf) {
  if (!inbox_.empty()) {
    auto& m = inbox_.front();
    if (m.size() > buf.size()) return errc::message_too_large;
    std::copy(m.begin(), m.end(), buf.begin());
    const std::size_t n = m.size();
    inbox_bytes_ -= n;
    inbox_.pop_front();
    return n;
  }
  if (error_) return unexpected(error_);
  if (peer_closed_) return errc::end_of_stream;
  if (finished()) return errc::end_of_stream;
  return errc::timed_out;
}

void engine::close(time_point now) {
  if (close_requested_) return;
  close_requested_ = true;
  switch (state_) {
    case state::open:
    case state::partopen:
      if (is_server_) {
        emit(packet_type::close_req, {}, now);
        enter(state::closereq, now);
      } else {
        emit(packet_type::close, {}, now);
        enter(state::closing, now);
      }
      break;
    case state::request:
    case state::respond:
      abort(now);
      break;
    case state::listen:
      enter(state::closed, now);
      break;
    default:
      break;
  }
}

void engine::abort(time_point now) {
  close_requested_ = true;
  if (state_ != state::closed && state_ != state::listen && state_ != state::timewait) {
    gss_ = seq_add(gss_, 1);
    emit_reset(reset_code::aborted, gss_, gsr_, now);
  }
  enter(state::closed, now);
}

// -- timers -------------------------------------------------------------------------------

std::optional<time_point> engine::next_deadline() const noexcept {
  std::optional<time_point> t;
  auto take = [&](const std::optional<time_point>& x) {
    if (x && (!t || *x < *t)) t = x;
  };
  take(retransmit_at_);
  take(rto_at_);
  take(ack_at_);
  take(timewait_until_);
  return t;
}

void engine::on_timer(time_point now) {
  if (timewait_until_ && *timewait_until_ <= now) {
    timewait_until_.reset();
    enter(state::closed, now);
    return;
  }
  if (retransmit_at_ && *retransmit_at_ <= now) {
    ++retransmissions_;
    switch (state_) {
      case state::request:
        if (retransmissions_ >= cfg_.max_requests) {
          fail(make_error_code(error::handshake_failed));
          enter(state::closed, now);
          return;
        }
        emit(packet_type::request, {}, now);
        break;
      case state::partopen:
        emit(packet_type::ack, {}, now);
        break;
      case state::closing:
      case state::closereq:
        if (retransmissions_ >= max_close_attempts) {
          enter(state::closed, now);
          return;
        }
        emit(state_ == state::closing ? packet_type::close : packet_type::close_req, {}, now);
        break;
      default:
        break;
    }
    retransmit_interval_ = std::min(retransmit_interval_ * 2, max_backoff);
    retransmit_at_ = now + retransmit_interval_;
  }
  if (ack_at_ && *ack_at_ <= now) {
    ack_at_.reset();
    if ((data_since_ack_ > 0 || slow_receiver_pending_) &&
        (state_ == state::open || state_ == state::partopen || state_ == state::closereq))
      emit(packet_type::ack, {}, now);
  }
  if (rto_at_ && *rto_at_ <= now) on_rto();
}

// -- input --------------------------------------------------------------------------------

bool engine::seq_valid(const header& h) const noexcept {
  const std::uint64_t w = peer_window_;
  std::uint64_t swl = seq_add(gsr_, 1 - static_cast<std::int64_t>(w / 4));
  if (seq_delta(isr_, swl) < 0) swl = isr_;
  const std::uint64_t swh = seq_add(gsr_, static_cast<std::int64_t>(3 * w / 4));
  std::uint64_t awl = seq_add(gss_, 1 - static_cast<std::int64_t>(local_window_));
  if (seq_delta(iss_, awl) < 0) awl = iss_;
  const std::uint64_t awh = gss_;
  switch (h.type) {
    case packet_type::request:
    case packet_type::data:
      return seq_in(h.seq, swl, swh);
    case packet_type::response:
    case packet_type::ack:
    case packet_type::data_ack:
      return seq_in(h.seq, swl, swh) && seq_in(h.ack, awl, awh);
    case packet_type::close_req:
    case packet_type::close:
    case packet_type::reset:
      return seq_delta(gsr_, h.seq) > 0 && seq_delta(h.seq, swh) >= 0 && seq_in(h.ack, gar_, awh);
    case packet_type::sync:
      return seq_delta(swl, h.seq) >= 0 && seq_in(h.ack, awl, awh);
    case packet_type::sync_ack:
      return seq_delta(swl, h.seq) >= 0 && seq_in(h.ack, gar_, awh);
  }
  return false;
}

void engine::process_features(const parsed_options& o, time_point now) {
  for (const auto& f : o.features) {
    switch (f.kind) {
      case option::change_l:
      case option::change_r: {
        // A Change L from the peer names a feature located at the peer (we answer Confirm
        // R); a Change R one located here (we answer Confirm L).
        const std::uint8_t answer = f.kind == option::change_l ? option::confirm_r : option::confirm_l;
        std::vector<std::uint8_t> confirm{answer, 0, f.feature};
        if (is_nn(f.feature)) {
          if (f.values.empty()) continue;
          std::uint64_t v = nn_value(f.values);
          if (f.feature == feature::sequence_window) {
            v = std::clamp<std::uint64_t>(v, 32, max_peer_window);
            if (f.kind == option::change_l) peer_window_ = v;
          } else if (f.feature == feature::ack_ratio) {
            v = std::clamp<std::uint64_t>(v, 1, 0xffff);
            if (f.kind == option::change_l) own_ack_ratio_ = static_cast<std::uint16_t>(v);
          }
          confirm.insert(confirm.end(), f.values.begin(), f.values.end());
        } else if (auto ours = our_preferences(f.feature)) {
          const auto chosen = is_server_ ? reconcile(*ours, f.values) : reconcile(f.values, *ours);
          if (!chosen) {
            if (f.feature == feature::ccid) {
              fail(make_error_code(error::negotiation_failed));
              gss_ = seq_add(gss_, 1);
              emit_reset(reset_code::option_error, gss_, gsr_, now);
              enter(state::closed, now);
              return;
            }
            continue;  // keep the old value (RFC 4340 6.3.2); the peer's Change goes unanswered
          }
          if (f.feature == feature::ccid && *chosen != 2) continue;
          if (f.feature == feature::send_ack_vector && f.kind == option::change_r)
            send_ack_vector_ = *chosen == 1;
          confirm.push_back(*chosen);
          for (auto preference : *ours) confirm.push_back(preference);
        }
        // An unknown feature gets an empty Confirm (RFC 4340 6.6.7).
        confirm[1] = static_cast<std::uint8_t>(confirm.size());
        if (confirms_.size() + confirm.size() <= 256)
          confirms_.insert(confirms_.end(), confirm.begin(), confirm.end());
        break;
      }
      case option::confirm_l:
      case option::confirm_r: {
        const std::uint8_t answered = f.kind == option::confirm_l ? option::change_r : option::change_l;
        auto it = std::find_if(changes_.begin(), changes_.end(), [&](const pending_change& c) {
          return c.kind == answered && c.feature == f.feature;
        });
        if (it == changes_.end()) continue;
        if (f.feature == feature::ccid && (f.values.empty() || f.values[0] != 2)) {
          fail(make_error_code(error::negotiation_failed));
          gss_ = seq_add(gss_, 1);
          emit_reset(reset_code::option_error, gss_, gsr_, now);
          enter(state::closed, now);
          return;
        }
        if (f.feature == feature::ack_ratio && f.kind == option::confirm_r && !f.values.empty())
          peer_ack_ratio_ =
              static_cast<std::uint16_t>(std::clamp<std::uint64_t>(nn_value(f.values), 1, 0xffff));
        changes_.erase(it);
        break;
      }
      default:
        break;
    }
  }
}

void engine::handle_listen(const decoded& d, const parsed_options& o, time_point now) {
  const header& h = d.h;
  if (h.type != packet_type::request) {
    if (h.type != packet_type::reset)
      if (reply_allowed(now))
        emit_reset(reset_code::no_connection, has_ack(h.type) ? seq_add(h.ack, 1) : 0, h.seq, now);
    return;
  }
  if (h.service_code != cfg_.service || h.service_code == 0xffffffffu) {
    emit_reset(reset_code::bad_service_code, 0, h.seq, now);
    fail(make_error_code(error::bad_service_code));
    enter(state::closed, now);
    return;
  }
  isr_ = gsr_ = h.seq;
  iss_ = cfg_.iss ? (*cfg_.iss & seq_mask) : random48();
  gss_ = seq_add(iss_, -1);
  gar_ = iss_;
  record_received(h.seq);
  changes_ = {
      {option::change_l, feature::ccid, {2}},
      {option::change_r, feature::send_ack_vector, {1}},
      {option::change_l, feature::ack_ratio, nn_bytes(std::max<std::uint16_t>(cfg_.ack_ratio, 1), 2)},
      {option::change_l, feature::sequence_window, nn_bytes(local_window_, 6)},
  };
  process_features(o, now);
  if (state_ == state::closed) return;
  enter(state::respond, now);
  emit(packet_type::response, {}, now);
}

result<packet_type> engine::on_datagram(const_buffer datagram, time_point now) {
  auto d = decode(datagram, path_.reversed(), cfg_.verify_checksum);
  if (!d) {
    ++stats_.dropped_malformed;
    return unexpected(d.error());
  }
  const header& h = d->h;
  if ((path_.dest_port && h.source_port != path_.dest_port) ||
      (path_.source_port && h.dest_port != path_.source_port)) {
    ++stats_.dropped_malformed;
    return unexpected(make_error_code(error::bad_port));
  }
  auto o = parse_options(d->options);
  if (!o) {
    ++stats_.dropped_malformed;
    return unexpected(o.error());
  }
  ++stats_.packets_in;

  switch (state_) {
    case state::closed:
      if (h.type != packet_type::reset)
        if (reply_allowed(now))
          emit_reset(reset_code::no_connection, has_ack(h.type) ? seq_add(h.ack, 1) : 0, h.seq, now);
      return h.type;
    case state::listen:
      handle_listen(*d, *o, now);
      return h.type;
    case state::request: {
      const bool ack_ok = has_ack(h.type) && seq_in(h.ack, iss_, gss_);
      if (h.type == packet_type::reset && ack_ok) {
        gsr_ = h.seq;
        switch (h.code) {
          case reset_code::bad_service_code:
            fail(make_error_code(error::bad_service_code));
            break;
          case reset_code::connection_refused:
          case reset_code::too_busy:
            fail(make_error_code(error::refused));
            break;
          default:
            fail(make_error_code(error::peer_reset));
            break;
        }
        enter(state::closed, now);
        return h.type;
      }
      if (h.type != packet_type::response || !ack_ok) {
        ++stats_.dropped_invalid_seq;
        return h.type;
      }
      isr_ = gsr_ = h.seq;
      gar_ = h.ack;
      have_gar_ = true;
      record_received(h.seq);
      init_cookie_ = o->init_cookie;
      process_features(*o, now);
      if (state_ == state::closed) return h.type;
      enter(state::partopen, now);
      emit(packet_type::ack, {}, now);
      return h.type;
    }
    case state::timewait:
      return h.type;
    default:
      break;
  }

  if (!seq_valid(h)) {
    ++stats_.dropped_invalid_seq;
    if (h.type != packet_type::sync && h.type != packet_type::sync_ack)
      emit_sync(packet_type::sync, h.seq, now);
    return unexpected(make_error_code(error::out_of_window));
  }
  const bool duplicate = [&] {
    if (history_.empty()) return false;
    const std::int64_t off = seq_delta(history_base_, h.seq);
    return off >= 0 && off < static_cast<std::int64_t>(history_.size()) &&
           history_[static_cast<std::size_t>(off)];
  }();
  if (seq_delta(gsr_, h.seq) > 0) gsr_ = h.seq;
  if (has_ack(h.type) && seq_delta(gar_, h.ack) > 0) gar_ = h.ack;
  const bool carries_data = h.type == packet_type::data || h.type == packet_type::data_ack;
  if (!carries_data) record_received(h.seq);

  if (o->unknown_mandatory) {
    fail(make_error_code(error::mandatory_failure));
    gss_ = seq_add(gss_, 1);
    emit_reset(reset_code::mandatory_error, gss_, h.seq, now);
    enter(state::closed, now);
    return h.type;
  }
  process_features(*o, now);
  if (state_ == state::closed) return h.type;
  if (o->timestamp) {
    echo_timestamp_ = o->timestamp;
    echo_received_ = now;
  }
  // Only an Ack or DataAck acknowledges what the peer processed: a Sync's or SyncAck's
  // number names the packet it answers, which may have been dropped (out of window).
  if (h.type == packet_type::ack || h.type == packet_type::data_ack) process_acks(h, *o, now);

  switch (h.type) {
    case packet_type::reset:
      if (h.code == reset_code::closed) {
        peer_closed_ = true;
      } else if (h.code == reset_code::connection_refused || h.code == reset_code::too_busy) {
        fail(make_error_code(error::refused));
      } else {
        fail(make_error_code(error::peer_reset));
      }
      enter(state::timewait, now);
      return h.type;
    case packet_type::request:
      if (state_ == state::respond) {
        // Our Response was lost: the client asks again.
        emit(packet_type::response, {}, now);
      } else {
        emit_sync(packet_type::sync, h.seq, now);
      }
      return h.type;
    case packet_type::response:
      if (state_ == state::partopen) {
        emit(packet_type::ack, {}, now);
      } else {
        emit_sync(packet_type::sync, h.seq, now);
      }
      return h.type;
    case packet_type::sync:
      emit_sync(packet_type::sync_ack, h.seq, now);
      // The peer lost track of our numbers, so it may also have dropped our last
      // acknowledgements: send them again, or its window stays full until its RTO.
      if (send_ack_vector_ && !history_.empty() && (state_ == state::open || state_ == state::partopen))
        emit(packet_type::ack, {}, now);
      break;
    case packet_type::close_req:
      if (is_server_) {
        emit_sync(packet_type::sync, h.seq, now);
        return h.type;
      }
      peer_closed_ = true;
      close_requested_ = true;
      emit(packet_type::close, {}, now);
      enter(state::closing, now);
      return h.type;
    case packet_type::close: {
      peer_closed_ = true;
      close_requested_ = true;
      gss_ = seq_add(gss_, 1);
      emit_reset(reset_code::closed, gss_, h.seq, now);
      enter(state::closed, now);
      return h.type;
    }
    default:
      break;
  }
  // Any packet but Response, Reset and Sync ends PARTOPEN (RFC 4340 8.1.5); an Ack ends
  // RESPOND.
  if (state_ == state::partopen && h.type != packet_type::sync && h.type != packet_type::sync_ack) {
    enter(state::open, now);
  }
  if (state_ == state::respond && (h.type == packet_type::ack || h.type == packet_type::data_ack)) {
    enter(state::open, now);
    // Acknowledge the client's Ack so that it leaves PARTOPEN without waiting for data.
    emit(packet_type::ack, {}, now);
  } else if (is_server_ && state_ == state::open && h.type == packet_type::ack && !seen_data_ &&
             partopen_answers_ < 8) {
    // A client still in PARTOPEN (our Ack was lost) sends its Ack again.
    ++partopen_answers_;
    emit(packet_type::ack, {}, now);
  }
  if (carries_data) seen_data_ = true;
  if (carries_data) {
    if (duplicate) {
      ++stats_.dropped_duplicate;
    } else if (state_ == state::open || state_ == state::partopen || state_ == state::closereq) {
      on_data(h, d->payload, now);
    }
  }
  return h.type;
}

// -- the gate -----------------------------------------------------------------------------

admission_gate request_gate(const config& cfg) {
  const std::uint32_t service = cfg.service;
  return [service](const address&, const_buffer datagram, std::vector<std::byte>&) {
    // The checksum needs the local address, which the gate does not know: the connection
    // checks it. Here: the shape of a Request for our service code.
    auto d = decode(datagram, endpoints{}, false);
    if (!d || d->h.type != packet_type::request || d->h.service_code != service) return admission::refuse;
    if (!parse_options(d->options)) return admission::refuse;
    return admission::admit;
  };
}

template class connection<any_message>;

}  // namespace strata::dccp
