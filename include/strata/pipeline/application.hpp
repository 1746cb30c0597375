// Application protocols in pipelines: the settings a spec gives the protocol on top
// (role application: `tcp-listen:127.0.0.1:8080 | http1(max-body=1m)`), which the
// program reads to run that protocol on the connections pipeline::connect and listen
// give. One settings type per application protocol; pipeline::application() says which
// one a pipeline ends in (its entry's protocol name).
#pragma once

#include "strata/app/http1.hpp"
#include "strata/pipeline/pipeline.hpp"

namespace strata {

/// http1_settings is what `| http1(...)` (or `| http(...)`, for now the same) sets:
/// the options of http1::serve on a listening pipeline and of http1::client on a
/// connecting one, each with the spec's parameters applied to the library's defaults.
struct http1_settings final : layer_options {
  http1::server_options server{};
  http1::client_options client{};
};

/// http1_settings_of is the settings of an http1 application layer (`layer` from
/// pipeline::application()), or nullptr when the layer is not one.
inline const http1_settings* http1_settings_of(const pipeline_layer& layer) noexcept {
  return dynamic_cast<const http1_settings*>(layer.options.get());
}

}  // namespace strata
