// The one explicit list of protocols a spec string can name. Each entry is defined
// beside its protocol's pipeline glue in src/pipeline/entries/<protocol>.cpp; adding a
// protocol means adding its entry file and one line here (see docs/pipeline.md). No
// self-registering statics: this list is the whole truth about the built-in protocols, in
// the order `strata caps` prints it (a program adds its own to a protocol_registry
// value), and tests/pipeline/registry_test.cpp checks every row has its docs page, test
// file and (for parsers of peer input) fuzz target.
#include "strata/pipeline/registry.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "entries/entries.hpp"

namespace strata {

namespace {

std::shared_ptr<const protocol_registry::storage> builtin_entries() {
  // A function-local static: built on first use; the entries it copies are constinit, so
  // they exist before any dynamic initialisation (a program's static registry included).
  static const auto entries = std::make_shared<const protocol_registry::storage>(protocol_registry::storage{{
      pipeline_detail::tcp_connect_entry,
      pipeline_detail::tcp_listen_entry,
      pipeline_detail::unix_connect_entry,
      pipeline_detail::unix_listen_entry,
      pipeline_detail::udp_connect_entry,
      pipeline_detail::udp_listen_entry,
      pipeline_detail::udp_bind_entry,
      pipeline_detail::unix_dgram_connect_entry,
      pipeline_detail::unix_dgram_listen_entry,
      pipeline_detail::unix_dgram_bind_entry,
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
      pipeline_detail::buffered_entry,
      pipeline_detail::crlf_entry,
      pipeline_detail::term_entry,
      pipeline_detail::mux_entry,
      pipeline_detail::dccp_entry,
      pipeline_detail::reliable_entry,
      pipeline_detail::bytes_entry,
      pipeline_detail::tls_entry,
      pipeline_detail::dtls_entry,
      pipeline_detail::websocket_entry,
      pipeline_detail::http1_entry,
      pipeline_detail::http_entry,
      pipeline_detail::http2_entry,
  }});
  return entries;
}

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

bool role_has_factory(const protocol_entry& e) {
  switch (e.role) {
    case layer_role::connector:
      return e.connect != nullptr;
    case layer_role::listener:
      return e.listen != nullptr;
    case layer_role::adapter:
      return e.wrap != nullptr;
    case layer_role::bound:
      return e.bind != nullptr;
    case layer_role::application:
      return true;  // the program runs it: nothing to build
  }
  return false;
}

}  // namespace

protocol_registry::protocol_registry() : storage_(builtin_entries()) {}

const protocol_registry& protocol_registry::builtin() {
  static const protocol_registry builtin;
  return builtin;
}

result<void> protocol_registry::add(protocol_entry entry, std::shared_ptr<const void> owner) {
  if (entry.name.empty() || !entry.row || !entry.configure || !role_has_factory(entry) || find(entry.name)) {
    return errc::invalid_argument;
  }
  // Copy on write: pipelines parsed before keep the entries they point into.
  auto grown = std::make_shared<storage>(*storage_);
  grown->entries.push_back(entry);
  if (owner) grown->owners.push_back(std::move(owner));
  storage_ = std::move(grown);
  return {};
}

const protocol_entry* protocol_registry::find(std::string_view name) const noexcept {
  for (const auto& entry : storage_->entries) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

std::span<const protocol_entry> registry() { return protocol_registry::builtin().entries(); }

const protocol_entry* find_protocol(std::string_view name) { return protocol_registry::builtin().find(name); }

std::string_view closest_protocol(std::string_view name) {
  return protocol_registry::builtin().closest(name);
}

std::string_view protocol_registry::closest(std::string_view name) const {
  // Names are short; more than a third of the name changed is a different word, and
  // specs are bounded (max_spec_length) so the quadratic distance stays cheap.
  std::string_view best;
  std::size_t best_distance = 0;
  for (const auto& entry : storage_->entries) {
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
    case layer_role::bound:
      return "bound";
    case layer_role::application:
      return "application";
  }
  return "?";
}

}  // namespace strata
