#include "strata/core/capability.hpp"

namespace strata {

std::string describe(const properties& p) {
  std::string out;
  auto add = [&](std::string_view word) {
    if (!out.empty()) out += ' ';
    out += word;
  };
  if (p.connection != connection::unspecified) add(to_string(p.connection));
  if (p.unit != unit::unspecified) add(to_string(p.unit));
  add(p.reliable ? "reliable" : "unreliable");
  add(p.ordered ? "ordered" : "unordered");
  if (p.dup_free) add("dup_free");
  if (p.secure) add("secure");
  if (p.authenticated) add("authenticated");
  if (p.domain != domain::unspecified) add(to_string(p.domain));
  if (p.topology != topology::unspecified) add(to_string(p.topology));
  if (p.sharing != sharing::unspecified) add(to_string(p.sharing));
  if (p.direction != direction::unspecified) add(to_string(p.direction));
  if (p.multiplexed) add("multiplexed");
  if (p.congestion_controlled) add("congestion_controlled");
  if (p.fd_passing) add("fd_passing");
  if (p.priority_ordered) add("priority_ordered");
  if (p.max_message) add("max_message=" + std::to_string(p.max_message));
  return out;
}

}  // namespace strata
