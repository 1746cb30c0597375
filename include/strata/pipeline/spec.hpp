// Spec strings: a pipeline written as text, socat-like but stacked, bottom layer first.
//
//   pipeline := layer ( '|' layer )*
//   layer    := NAME [ ':' TARGET ] [ '(' [ param ( ',' param )* ] ')' ]
//   param    := VALUE | KEY '=' VALUE
//   NAME     := letter ( letter | digit | '-' | '_' )*
//   TARGET   := bare text without whitespace, | ( ) or ", or a "quoted string"
//   KEY      := letter ( letter | digit | '-' | '_' )*
//   VALUE    := bare text without whitespace, , ( ) | = or ", or a "quoted string" with
//               \" \\ \n \r \t \0 and \xHH escapes
//
// Whitespace (space, tab, newline) may stand around '|', '(', ')', ',' and '=', and
// between a layer's name or target and its '('. Bounds: max_spec_length bytes,
// max_spec_layers layers, max_spec_params parameters per layer.
//
// e.g. `tcp:127.0.0.1:7000 | prefix(4)`, `unix-listen:@demo | crlf(max=4096)`,
//      `tcp-listen:[::1]:0 | term(delim="\0")`.
// The parser only reads the text; the registry decides what names and parameters mean.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

/// spec_param is one parameter; `key` is empty for a positional one.
struct spec_param {
  std::string key;
  std::string value;
  std::size_t position = 0;  ///< offset of the parameter in the spec text
};

/// spec_layer is one `NAME[:TARGET][(params)]` element.
struct spec_layer {
  std::string name;
  std::string target;  ///< text after ':' (empty when absent)
  std::vector<spec_param> params;
  std::size_t position = 0;         ///< offset of NAME in the spec text
  std::size_t length = 0;           ///< length of the whole element in the spec text
  std::size_t target_position = 0;  ///< offset of TARGET in the spec text (when present)

  /// param finds a parameter by key, or the positional one at `index` when the key is
  /// absent; nullptr when neither is given.
  const spec_param* param(std::string_view key, std::size_t index = static_cast<std::size_t>(-1)) const;
  /// text renders the element back as a spec (canonical spacing, values quoted where
  /// needed), so parsing text() yields the same name, target and parameters.
  std::string text() const;
};

/// spec_error says what is wrong and where (an offset into the text).
struct spec_error {
  std::string message;
  std::size_t position = 0;
  /// render returns "MESSAGE\n  TEXT\n  ^" with the caret under `position`.
  std::string render(std::string_view text) const;
};

/// spec is a parsed pipeline text.
struct spec {
  std::string text;
  std::vector<spec_layer> layers;

  /// canonical_text renders every layer with spec_layer::text(), joined by " | ".
  std::string canonical_text() const;
};

/// max_spec_length bounds the text a parser accepts (specs come from users and files).
inline constexpr std::size_t max_spec_length = 4096;
/// max_spec_layers bounds the layers of one pipeline.
inline constexpr std::size_t max_spec_layers = 32;
/// max_spec_params bounds the parameters of one layer.
inline constexpr std::size_t max_spec_params = 16;

/// parse_spec reads a pipeline text. On failure returns false and fills `error`, whose
/// position is always within [0, text.size()]; `out` is then unspecified.
bool parse_spec(std::string_view text, spec& out, spec_error& error);

/// quote_spec_value renders `value` as the spec grammar reads it back: bare when it
/// can be, otherwise as a "quoted string" with escapes.
std::string quote_spec_value(std::string_view value);

}  // namespace strata
