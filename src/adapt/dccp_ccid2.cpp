// dccp's CCID 2 (RFC 4341) and the Ack Vector bookkeeping behind it (RFC 4340 11.4): the
// sender's window, loss detection, RTO and Ack Ratio; the receiver's history of arrived
// packets and its trimming by acknowledgements of acknowledgements. Members of
// dccp::engine (include/strata/adapt/dccp.hpp); the rest of the engine is in dccp.cpp.
#include <algorithm>

#include "dccp_internal.hpp"
#include "strata/adapt/dccp.hpp"

namespace strata::dccp {

using detail::max_backoff;
using detail::nn_bytes;
using detail::nn_value;
using std::chrono::duration_cast;
using std::chrono::microseconds;

void engine::append_ack_vector(std::vector<std::uint8_t>& o, std::size_t budget) {
  // The Ack Vector (RFC 4340 11.4): run-length cells from GSR back to the oldest
  // packet not yet known to be reported (ack of acks trims it).
  std::size_t room = std::min<std::size_t>(253, budget - o.size() - 2);
  std::vector<std::uint8_t> cells;
  std::int64_t idx = seq_delta(history_base_, gsr_);
  if (idx >= static_cast<std::int64_t>(history_.size())) idx = static_cast<std::int64_t>(history_.size()) - 1;
  while (idx >= 0 && cells.size() < room) {
    const std::uint8_t st = history_[static_cast<std::size_t>(idx)] ? 0 : 3;
    std::size_t run = 0;
    while (idx >= 0 && run < 64 && (history_[static_cast<std::size_t>(idx)] ? 0 : 3) == st) {
      ++run;
      --idx;
    }
    cells.push_back(static_cast<std::uint8_t>((st << 6) | (run - 1)));
  }
  o.push_back(option::ack_vector_0);
  o.push_back(static_cast<std::uint8_t>(2 + cells.size()));
  o.insert(o.end(), cells.begin(), cells.end());
  acks_sent_.push_back({seq_add(gss_, 1), gsr_});
  if (acks_sent_.size() > 64) acks_sent_.pop_front();
}

void engine::on_rto() {
  rto_at_.reset();
  if (pipe_ == 0) return;
  // CCID 2's timeout (RFC 4341 5): the window goes back to one packet and every packet in
  // flight counts as lost.
  ++stats_.timeouts;
  ++stats_.congestion_events;
  ssthresh_ = std::max<std::uint32_t>(cwnd_ / 2, 2);
  cwnd_ = 1;
  acked_in_window_ = 0;
  for (auto& s : sent_) {
    if (!s.acked && !s.lost) {
      s.lost = true;
      ++stats_.data_lost;
    }
  }
  pipe_ = 0;
  sent_.clear();
  recovery_until_ = gss_;
  in_recovery_ = true;
  rto_ = std::min(rto_ * 2, duration_cast<microseconds>(max_backoff));
  adjust_ack_ratio();
}

void engine::record_received(std::uint64_t seq) {
  if (history_.empty()) {
    history_base_ = seq;
    history_.push_back(1);
    return;
  }
  const std::int64_t d = seq_delta(history_base_, seq);
  if (d < 0) return;
  if (d >= static_cast<std::int64_t>(2 * cfg_.max_history)) {
    history_.clear();
    history_base_ = seq;
    history_.push_back(1);
    return;
  }
  const auto at = static_cast<std::size_t>(d);
  if (at >= history_.size()) history_.resize(at + 1, 0);
  history_[at] = 1;
  while (history_.size() > cfg_.max_history) {
    history_.pop_front();
    history_base_ = seq_add(history_base_, 1);
  }
}

void engine::take_rtt_sample(microseconds r) {
  // RFC 6298 2.2-2.4.
  if (r.count() < 0) return;
  if (!have_rtt_) {
    srtt_ = r;
    rttvar_ = r / 2;
    have_rtt_ = true;
  } else {
    const auto diff = srtt_ > r ? srtt_ - r : r - srtt_;
    rttvar_ = (3 * rttvar_ + diff) / 4;
    srtt_ = (7 * srtt_ + r) / 8;
  }
  rto_ =
      std::max(duration_cast<microseconds>(cfg_.min_rto), srtt_ + std::max(microseconds(1000), 4 * rttvar_));
  rto_ = std::min(rto_, duration_cast<microseconds>(max_backoff));
}

void engine::congestion_event(time_point) {
  ++stats_.congestion_events;
  ssthresh_ = std::max<std::uint32_t>(cwnd_ / 2, 2);
  cwnd_ = ssthresh_;
  acked_in_window_ = 0;
  recovery_until_ = gss_;
  in_recovery_ = true;
}

void engine::adjust_ack_ratio() {
  // RFC 4341 6.1.2: the Ack Ratio stays at most half the congestion window (rounded up),
  // so that a small window still draws acknowledgements; it returns to the configured
  // value as the window grows. A change is a Change L(Ack Ratio) sent until confirmed.
  const auto wanted = static_cast<std::uint16_t>(
      std::clamp<std::uint32_t>((cwnd_ + 1) / 2, 1, std::max<std::uint16_t>(cfg_.ack_ratio, 1)));
  auto pending = std::find_if(changes_.begin(), changes_.end(), [](const pending_change& c) {
    return c.kind == option::change_l && c.feature == feature::ack_ratio;
  });
  const std::uint16_t announced =
      pending != changes_.end() ? static_cast<std::uint16_t>(nn_value(pending->values)) : peer_ack_ratio_;
  if (wanted == announced) return;
  if (pending != changes_.end()) {
    pending->values = nn_bytes(wanted, 2);
  } else if (changes_.size() < 16) {
    changes_.push_back({option::change_l, feature::ack_ratio, nn_bytes(wanted, 2)});
  }
}

std::uint32_t engine::max_window() const noexcept {
  const auto by_sequence = static_cast<std::uint32_t>(std::max<std::uint64_t>(local_window_ / 2, 2));
  return std::max<std::uint32_t>(std::min(cfg_.max_cwnd, by_sequence), 1);
}

void engine::arm_rto(time_point now) {
  if (pipe_ > 0) {
    rto_at_ = now + rto_;
  } else {
    rto_at_.reset();
  }
}

void engine::process_acks(const header& h, const parsed_options& o, time_point now) {
  // Ack of acks (RFC 4341 6.1.4): the peer saw our Ack Vectors up to this one, so the
  // history before what it reported is no longer needed.
  std::optional<std::uint64_t> reported;
  while (!acks_sent_.empty() && seq_delta(acks_sent_.front().seq, h.ack) >= 0) {
    reported = acks_sent_.front().ack_num;
    acks_sent_.pop_front();
  }
  if (reported && !history_.empty()) {
    std::int64_t drop = seq_delta(history_base_, *reported);  // keep the reported GSR itself
    drop = std::min<std::int64_t>(drop, static_cast<std::int64_t>(history_.size()) - 1);
    for (std::int64_t i = 0; i < drop; ++i) {
      history_.pop_front();
      history_base_ = seq_add(history_base_, 1);
    }
  }
  if (o.slow_receiver) slow_receiver_until_ = now + (have_rtt_ ? srtt_ : rto_);
  if (sent_.empty()) return;

  // Which of our data packets the acknowledgement reports as received.
  std::vector<std::uint64_t> run_end;  // cumulative packets covered after each cell
  std::vector<bool> run_received;
  if (o.ack_vector_present) {
    std::uint64_t total = 0;
    for (auto c : o.ack_vector) {
      total += (c & 0x3f) + 1u;
      run_end.push_back(total);
      run_received.push_back((c >> 6) != 3);
    }
  }
  auto received = [&](std::uint64_t seq) {
    const std::int64_t off = seq_delta(seq, h.ack);
    if (off < 0) return false;
    if (!o.ack_vector_present) return off == 0;
    auto it = std::upper_bound(run_end.begin(), run_end.end(), static_cast<std::uint64_t>(off));
    if (it == run_end.end()) return false;
    return static_cast<bool>(run_received[static_cast<std::size_t>(it - run_end.begin())]);
  };

  std::uint32_t newly = 0;
  for (auto& s : sent_) {
    if (s.acked || !received(s.seq)) continue;
    if (s.lost) {
      s.acked = true;  // reported late: it was counted out of the pipe already
      continue;
    }
    s.acked = true;
    ++newly;
    --pipe_;
    if (s.seq == h.ack) take_rtt_sample(duration_cast<microseconds>(now - s.when));
  }
  // A packet is lost once three packets sent after it were acknowledged (RFC 4341 5,
  // NUMDUPACK); one reduction per window of data.
  std::uint32_t acked_after = 0;
  bool reduce = false;
  for (auto it = sent_.rbegin(); it != sent_.rend(); ++it) {
    if (it->acked) {
      ++acked_after;
      continue;
    }
    if (it->lost || acked_after < 3) continue;
    it->lost = true;
    --pipe_;
    ++stats_.data_lost;
    if (!in_recovery_ || seq_delta(recovery_until_, it->seq) > 0) reduce = true;
  }
  if (in_recovery_ && seq_delta(recovery_until_, h.ack) >= 0) in_recovery_ = false;
  if (reduce) {
    congestion_event(now);
  } else if (newly > 0 && !(slow_receiver_until_ && now < *slow_receiver_until_)) {
    if (cwnd_ < ssthresh_) {
      cwnd_ += std::min<std::uint32_t>(newly, std::max<std::uint16_t>(peer_ack_ratio_, 1));
    } else {
      acked_in_window_ += newly;
      while (acked_in_window_ >= cwnd_) {
        acked_in_window_ -= cwnd_;
        ++cwnd_;
      }
    }
    cwnd_ = std::min(cwnd_, max_window());
  }
  adjust_ack_ratio();
  while (!sent_.empty() && (sent_.front().acked || sent_.front().lost)) sent_.pop_front();
  if (newly > 0 || reduce) arm_rto(now);
  if (pipe_ == 0) rto_at_.reset();
}

void engine::on_data(const header& h, const_buffer payload, time_point now) {
  if (inbox_.size() >= cfg_.receive_queue || inbox_bytes_ + payload.size() > cfg_.receive_bytes) {
    // Not recorded as received: the sender sees a loss and slows down; an acknowledgement
    // carrying Slow Receiver goes out within the ack delay even if nothing else arrives.
    ++stats_.dropped_queue_full;
    slow_receiver_pending_ = true;
    if (!ack_at_) ack_at_ = now + cfg_.ack_delay;
    return;
  }
  record_received(h.seq);
  inbox_.emplace_back(payload.begin(), payload.end());
  inbox_bytes_ += payload.size();
  if (++data_since_ack_ >= own_ack_ratio_) {
    emit(packet_type::ack, {}, now);
  } else if (!ack_at_) {
    ack_at_ = now + cfg_.ack_delay;
  }
}

}  // namespace strata::dccp
