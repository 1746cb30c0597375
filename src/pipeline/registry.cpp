// The one explicit list of protocols a spec string can name. Each entry is defined
// beside its protocol's pipeline glue in src/pipeline/entries/<protocol>.cpp; adding a
// protocol means adding its entry file and one line here (see docs/pipeline.md). No
// self-registering statics: this list is the whole truth, in the order `strata caps`
// prints it, and tests/pipeline/registry_test.cpp checks every row has its docs page,
// test file and (for parsers of peer input) fuzz target.
#include "strata/pipeline/registry.hpp"

#include <algorithm>
#include <array>
#include <vector>

#include "entries/entries.hpp"

namespace strata {

std::span<const protocol_entry> registry() {
  // A function-local static: built on first use, after the constinit entries exist.
  static const std::array entries{
      pipeline_detail::tcp_connect_entry,
      pipeline_detail::tcp_listen_entry,
      pipeline_detail::unix_connect_entry,
      pipeline_detail::unix_listen_entry,
      pipeline_detail::udp_connect_entry,
      pipeline_detail::udp_listen_entry,
      pipeline_detail::unix_dgram_connect_entry,
      pipeline_detail::unix_dgram_listen_entry,
      pipeline_detail::seqpacket_connect_entry,
      pipeline_detail::seqpacket_listen_entry,
      pipeline_detail::exec_connect_entry,
      pipeline_detail::fifo_read_entry,
      pipeline_detail::fifo_write_entry,
      pipeline_detail::mq_connect_entry,
      pipeline_detail::mq_listen_entry,
      pipeline_detail::inproc_connect_entry,
      pipeline_detail::inproc_listen_entry,
      pipeline_detail::shm_connect_entry,
      pipeline_detail::shm_listen_entry,
      pipeline_detail::shm_pub_entry,
      pipeline_detail::shm_sub_entry,
      pipeline_detail::shm_queue_entry,
      pipeline_detail::prefix_entry,
      pipeline_detail::crlf_entry,
      pipeline_detail::term_entry,
  };
  return entries;
}

const protocol_entry* find_protocol(std::string_view name) {
  for (const auto& entry : registry()) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

namespace {

/// edit_distance counts the insertions, deletions, substitutions and swaps of two
/// neighbouring characters that turn `a` into `b` (optimal string alignment), so the
/// common typos "tcpp", "unx" and "crfl" are each one edit away.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> before(b.size() + 1), previous(b.size() + 1), current(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        current[j] = std::min(current[j], before[j - 2] + 1);
      }
    }
    std::swap(before, previous);
    std::swap(previous, current);
  }
  return previous[b.size()];
}

}  // namespace

std::string_view closest_protocol(std::string_view name) {
  // Names are short; more than a third of the name changed is a different word, and
  // specs are bounded (max_spec_length) so the quadratic distance stays cheap.
  std::string_view best;
  std::size_t best_distance = 0;
  for (const auto& entry : registry()) {
    auto d = edit_distance(name, entry.name);
    if (best.empty() || d < best_distance) {
      best = entry.name;
      best_distance = d;
    }
  }
  std::size_t allowed = std::max<std::size_t>(1, std::max(name.size(), best.size()) / 3);
  if (best.empty() || best_distance == 0 || best_distance > allowed) return {};
  return best;
}

std::string_view to_string(layer_role role) noexcept {
  switch (role) {
    case layer_role::connector:
      return "connector";
    case layer_role::listener:
      return "listener";
    case layer_role::adapter:
      return "adapter";
  }
  return "?";
}

}  // namespace strata
