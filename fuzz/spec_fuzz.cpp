// Fuzz target for spec strings: the parser and the checker on arbitrary text, no I/O.
//
// Invariants checked (abort on violation, so libFuzzer and the replayer report it):
// - an error's position lies within the text, its message is not empty and it renders;
// - a parsed spec's layers and parameters lie within the text and within the bounds;
// - the canonical rendering of a parsed spec parses to the same layers, renders to
//   itself, and the checker gives it the same verdict (same message or same offers).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/pipeline/spec.hpp"

namespace {

void require(bool ok, const char* what, std::string_view text) {
  if (ok) return;
  std::fprintf(stderr, "spec_fuzz: invariant failed: %s\ninput (%zu bytes): %.*s\n", what, text.size(),
               static_cast<int>(text.size()), text.data());
  std::abort();
}

bool same_layers(const strata::spec& a, const strata::spec& b) {
  if (a.layers.size() != b.layers.size()) return false;
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    const auto& x = a.layers[i];
    const auto& y = b.layers[i];
    if (x.name != y.name || x.target != y.target || x.params.size() != y.params.size()) return false;
    for (std::size_t j = 0; j < x.params.size(); ++j) {
      if (x.params[j].key != y.params[j].key || x.params[j].value != y.params[j].value) return false;
    }
  }
  return true;
}

struct verdict {
  bool accepted = false;
  std::string message;                 // when refused
  std::vector<std::string> describes;  // when accepted: each layer's offers
};

verdict check(const strata::spec& parsed, std::string_view text) {
  std::vector<strata::pipeline_layer> layers;
  strata::pipeline_error error;
  verdict v;
  v.accepted = strata::check_stack(parsed, layers, error);
  if (!v.accepted) {
    require(error.position <= text.size(), "check error position within the text", text);
    require(!error.message.empty(), "check error has a message", text);
    (void)error.render(text);
    v.message = error.message;
    return v;
  }
  require(layers.size() == parsed.layers.size(), "one checked layer per parsed layer", text);
  for (const auto& layer : layers) {
    require(layer.entry != nullptr, "checked layer has an entry", text);
    v.describes.push_back(strata::describe(layer.offers));
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  strata::spec parsed;
  strata::spec_error error;
  if (!strata::parse_spec(text, parsed, error)) {
    require(error.position <= text.size(), "parse error position within the text", text);
    require(!error.message.empty(), "parse error has a message", text);
    (void)error.render(text);
    return 0;
  }
  require(text.size() <= strata::max_spec_length, "accepted text within max_spec_length", text);
  require(!parsed.layers.empty() && parsed.layers.size() <= strata::max_spec_layers, "layer count in bounds",
          text);
  for (const auto& layer : parsed.layers) {
    require(!layer.name.empty(), "layer has a name", text);
    require(layer.position + layer.length <= text.size(), "layer within the text", text);
    require(text.substr(layer.position, layer.name.size()) == layer.name, "layer position points at its name",
            text);
    require(layer.params.size() <= strata::max_spec_params, "parameter count in bounds", text);
    for (const auto& p : layer.params) {
      require(p.position >= layer.position && p.position < layer.position + layer.length,
              "parameter within its layer", text);
    }
  }

  auto first = check(parsed, text);

  // The canonical form may be longer than the input (escapes); past the bound it is
  // legitimately refused, so only shorter renderings are compared.
  std::string canonical = parsed.canonical_text();
  if (canonical.size() > strata::max_spec_length) return 0;
  strata::spec again;
  bool reparsed = strata::parse_spec(canonical, again, error);
  require(reparsed, "canonical text parses", text);
  require(same_layers(parsed, again), "canonical text parses to the same layers", text);
  require(again.canonical_text() == canonical, "canonical text is a fixed point", text);

  auto second = check(again, canonical);
  require(first.accepted == second.accepted, "checker verdict independent of spacing", text);
  require(first.message == second.message, "checker message independent of spacing", text);
  require(first.describes == second.describes, "checker offers independent of spacing", text);

  if (first.accepted) {
    strata::pipeline_error perr;
    auto p = strata::pipeline::parse(text, perr);
    require(p.has_value(), "pipeline::parse agrees with check_stack", text);
    (void)p->describe();
  }
  return 0;
}
