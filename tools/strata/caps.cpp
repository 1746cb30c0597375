// strata caps [PROTOCOL]: the capability rows of the registry, as a table or one
// protocol in detail. Everything printed comes from registry(): the same rows the
// pipeline checker uses, so the table cannot disagree with what `connect` accepts.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "strata/pipeline/registry.hpp"

namespace strata::cli {

const std::string_view caps_help = R"(usage: strata caps [PROTOCOL]

Without PROTOCOL: the capability table of every registered protocol, one row each:
  NAME        the name used in a SPEC (tcp, tcp-listen, prefix, ...)
  ROLE        connector (bottom layer that connects), listener (bottom layer that
              accepts), bound (bottom layer that binds one connection-less endpoint:
              any sender, any peer), adapter (stacked on another layer) or
              application (the protocol on top, e.g. http1: it ends the pipeline)
  REQUIRES    properties the layer directly below must provide ('-': none)
  SPEC        how to write it, with parameters and their defaults
  PROVIDES    properties it sets for the layer above; 'passes' lists the properties it
              inherits unchanged from below

With PROTOCOL: that protocol in detail: summary, target, every parameter with its
default and meaning, its row, and what it offers when stacked on a transport.

options:
  -h, --help   show this help

exit status: 0 success; 2 unknown protocol or usage error.

examples:
  strata caps
  strata caps prefix
)";

namespace {

constexpr prop all_props[] = {prop::connection,
                              prop::unit,
                              prop::reliable,
                              prop::ordered,
                              prop::dup_free,
                              prop::secure,
                              prop::authenticated,
                              prop::domain,
                              prop::topology,
                              prop::sharing,
                              prop::direction,
                              prop::multiplexed,
                              prop::congestion_controlled,
                              prop::fd_passing,
                              prop::priority_ordered,
                              prop::max_message};

// value_word renders property `p` of `v` as a word, or "" when there is nothing to say
// (an unset enum, a false flag other than reliable/ordered, an unbounded size).
std::string value_word(prop p, const properties& v, bool required) {
  auto flag = [&](bool on, std::string_view name, std::string_view off) -> std::string {
    if (on) return std::string(name);
    return required ? std::string() : std::string(off);
  };
  switch (p) {
    case prop::connection:
      return v.connection == connection::unspecified ? "" : std::string(to_string(v.connection));
    case prop::unit:
      return v.unit == unit::unspecified ? "" : std::string(to_string(v.unit));
    case prop::reliable:
      return flag(v.reliable, "reliable", "unreliable");
    case prop::ordered:
      return flag(v.ordered, "ordered", "unordered");
    case prop::dup_free:
      return flag(v.dup_free, "dup_free", "");
    case prop::secure:
      return flag(v.secure, "secure", "");
    case prop::authenticated:
      return flag(v.authenticated, "authenticated", "");
    case prop::domain:
      return v.domain == domain::unspecified ? "" : std::string(to_string(v.domain));
    case prop::topology:
      return v.topology == topology::unspecified ? "" : std::string(to_string(v.topology));
    case prop::sharing:
      return v.sharing == sharing::unspecified ? "" : std::string(to_string(v.sharing));
    case prop::direction:
      return v.direction == direction::unspecified ? "" : std::string(to_string(v.direction));
    case prop::multiplexed:
      return flag(v.multiplexed, "multiplexed", "");
    case prop::congestion_controlled:
      return flag(v.congestion_controlled, "congestion_controlled", "");
    case prop::fd_passing:
      return flag(v.fd_passing, "fd_passing", "");
    case prop::priority_ordered:
      return flag(v.priority_ordered, "priority_ordered", "");
    case prop::max_message:
      return v.max_message ? "max_message=" + std::to_string(v.max_message) : std::string();
  }
  return {};
}

std::string join_words(prop_set set, const properties& v, bool required) {
  std::string out;
  for (prop p : all_props) {
    if (!set.has(p)) continue;
    auto word = value_word(p, v, required);
    if (word.empty()) continue;
    if (!out.empty()) out += ' ';
    out += word;
  }
  return out;
}

std::string names_of(prop_set set) {
  std::string out;
  for (prop p : all_props) {
    if (!set.has(p)) continue;
    if (!out.empty()) out += ' ';
    out += to_string(p);
  }
  return out;
}

std::string requires_text(const protocol_entry& e) {
  if (e.row == nullptr) return "-";
  auto text = join_words(e.row->required, e.row->required_value, true);
  return text.empty() ? "-" : text;
}

std::string provides_text(const protocol_entry& e) {
  if (e.row == nullptr) return "";
  std::string out = join_words(e.row->provided, e.row->provided_value, false);
  if (e.row->passed.bits != 0) {
    if (!out.empty()) out += "; ";
    out += "passes " + names_of(e.row->passed);
  }
  return out;
}

// spec_form writes how the protocol appears in a SPEC: "tcp:HOST:PORT",
// "prefix(bytes=4, max=1m)".
std::string spec_form(const protocol_entry& e) {
  std::string out(e.name);
  if (!e.target_help.empty()) {
    out += ':';
    out += e.target_help;
  }
  if (!e.params.empty()) {
    out += '(';
    bool first = true;
    for (const auto& p : e.params) {
      if (!first) out += ", ";
      first = false;
      // A positional parameter may be written without its key: prefix(4).
      if (p.positional) out += '[';
      out += p.name;
      if (!p.default_value.empty()) {
        out += p.positional ? "=]" : "=";
        out += p.default_value;
      } else if (p.positional) {
        out += "=]";
        out += "VALUE";
      }
    }
    out += ')';
  }
  return out;
}

void print_table() {
  struct line {
    std::string name, role, needs, spec, provides;
  };
  std::vector<line> lines;
  lines.push_back({"NAME", "ROLE", "REQUIRES", "SPEC", "PROVIDES"});
  for (const auto& e : registry()) {
    lines.push_back({std::string(e.name), std::string(to_string(e.role)), requires_text(e), spec_form(e),
                     provides_text(e)});
  }
  std::size_t w_name = 0, w_role = 0, w_req = 0, w_spec = 0;
  for (const auto& l : lines) {
    w_name = std::max(w_name, l.name.size());
    w_role = std::max(w_role, l.role.size());
    w_req = std::max(w_req, l.needs.size());
    w_spec = std::max(w_spec, l.spec.size());
  }
  for (const auto& l : lines) {
    std::printf("%-*s  %-*s  %-*s  %-*s  %s\n", static_cast<int>(w_name), l.name.c_str(),
                static_cast<int>(w_role), l.role.c_str(), static_cast<int>(w_req), l.needs.c_str(),
                static_cast<int>(w_spec), l.spec.c_str(), l.provides.c_str());
  }
}

// example_below finds a transport the adapter can stand on, to show what it offers there.
const protocol_entry* example_below(const protocol_entry& e) {
  for (std::string_view name : {"tcp", "unix"}) {
    const auto* t = find_protocol(name);
    if (t != nullptr && t->row != nullptr && !first_unmet(transport_properties(*t->row), *e.row)) return t;
  }
  for (const auto& t : registry()) {
    if (t.role == layer_role::connector && t.row != nullptr &&
        !first_unmet(transport_properties(*t.row), *e.row))
      return &t;
  }
  return nullptr;
}

void print_detail(const protocol_entry& e) {
  std::printf("%.*s - %.*s\n\n", static_cast<int>(e.name.size()), e.name.data(),
              static_cast<int>(e.summary.size()), e.summary.data());
  std::printf("  role:      %.*s (layer %.*s, protocol %.*s)\n", static_cast<int>(to_string(e.role).size()),
              to_string(e.role).data(), static_cast<int>(e.layer.size()), e.layer.data(),
              static_cast<int>(e.protocol.size()), e.protocol.data());
  std::printf("  spec:      %s%s\n", spec_form(e).c_str(),
              std::any_of(e.params.begin(), e.params.end(), [](const param_info& p) { return p.positional; })
                  ? "   ([key=] may be left out)"
                  : "");
  if (!e.target_help.empty())
    std::printf("  target:    %.*s\n", static_cast<int>(e.target_help.size()), e.target_help.data());
  if (e.params.empty()) {
    std::printf("  parameters: none\n");
  } else {
    std::printf("  parameters:\n");
    std::size_t width = 0;
    for (const auto& p : e.params) width = std::max(width, p.name.size());
    for (const auto& p : e.params) {
      std::string def = !p.default_value.empty() ? "default " + std::string(p.default_value)
                        : p.optional             ? "(optional)"
                                                 : "(required)";
      if (p.positional) def += ", positional";
      std::printf("    %-*.*s  %-22s  %.*s\n", static_cast<int>(width), static_cast<int>(p.name.size()),
                  p.name.data(), def.c_str(), static_cast<int>(p.help.size()), p.help.data());
    }
  }
  if (e.row == nullptr) return;
  std::printf("  row:\n");
  std::printf("    requires  %s\n", requires_text(e).c_str());
  auto provided = join_words(e.row->provided, e.row->provided_value, false);
  std::printf("    provides  %s\n", provided.empty() ? "-" : provided.c_str());
  std::printf("    passes    %s\n", e.row->passed.bits ? names_of(e.row->passed).c_str() : "-");
  if (e.role == layer_role::application) {
    std::printf(
        "  top:       an application protocol ends the pipeline; the program speaks it on the\n"
        "             connection of the layers below (strata get, strata listen --serve)\n");
    if (const auto* below = example_below(e)) {
      std::printf("  e.g.:      %.*s:HOST:PORT | %.*s\n", static_cast<int>(below->name.size()),
                  below->name.data(), static_cast<int>(e.name.size()), e.name.data());
    }
  } else if (e.role == layer_role::adapter) {
    if (const auto* below = example_below(e)) {
      auto offers = stack_on(transport_properties(*below->row), *e.row);
      std::printf("  over %.*s it offers: %s\n", static_cast<int>(below->name.size()), below->name.data(),
                  describe(offers).c_str());
    }
  } else {
    std::printf("  offers:    %s\n", describe(transport_properties(*e.row)).c_str());
  }
}

}  // namespace

int caps_main(args& a, signal_guard&) {
  std::vector<std::string_view> names;
  while (!a.empty()) {
    auto arg = a.next();
    if (arg.size() > 1 && arg[0] == '-')
      return usage_error("caps", "unknown option '" + std::string(arg) + "'");
    names.push_back(arg);
  }
  if (names.size() > 1) return usage_error("caps", "at most one PROTOCOL expected");
  if (names.empty()) {
    print_table();
    return exit_ok;
  }
  const auto* e = find_protocol(names[0]);
  if (e == nullptr) {
    std::string known;
    for (const auto& entry : registry()) {
      if (!known.empty()) known += ", ";
      known += entry.name;
    }
    return usage_error("caps", "unknown protocol '" + std::string(names[0]) + "' (known: " + known + ")");
  }
  print_detail(*e);
  return exit_ok;
}

}  // namespace strata::cli
