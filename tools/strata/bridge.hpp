// Bridging for the CLI: `strata bridge` and the in-process bridge of `strata demo` use the
// library's bridge (strata/pipeline/bridge.hpp); this adds the CLI's unit check.
#pragma once

#include <string>

#include "common.hpp"
#include "strata/pipeline/bridge.hpp"

namespace strata::cli {

using strata::bridge;
using strata::bridge_options;
using strata::bridge_result;

/// units_match says whether two tops can be bridged (same unit); when not, fills
/// `message` with which side gives what and the adapters that would convert.
bool units_match(const pipeline& a, const pipeline& b, std::string& message);

}  // namespace strata::cli
