// Application protocols in pipelines: the settings a spec gives the protocol on top
// (role application: `tcp-listen:127.0.0.1:8080 | http1(max-body=1m)`), which the
// program reads to run that protocol on the connections pipeline::connect and listen
// give. One settings type per application protocol; pipeline::application() says which
// one a pipeline ends in (its entry's protocol name).
#pragma once

#include "strata/app/http.hpp"
#include "strata/app/http1.hpp"
#include "strata/app/http2.hpp"
#include "strata/pipeline/pipeline.hpp"

namespace strata {

/// http1_settings is what `| http1(...)` (or `| http(...)`, for now the same) sets:
/// the options of http1::serve on a listening pipeline and of http1::client on a
/// connecting one, each with the spec's parameters applied to the library's defaults.
struct http1_settings : layer_options {
  http1::server_options server{};
  http1::client_options client{};
};

/// http2_settings is what `| http2(...)` sets: http2::serve's options on a listening
/// pipeline, http2::client's on a connecting one.
struct http2_settings final : layer_options {
  http2::server_options server{};
  http2::client_options client{};
};

/// http_settings is what `| http(...)` sets: HTTP/1.1 or HTTP/2 as the peers agree. A
/// server runs http::serve (http1's options from the shared parameters in `server`, and
/// http2's in `server2`); a client speaks HTTP/2 when TLS negotiated ALPN "h2", else
/// HTTP/1.1. Being http1_settings too, it serves wherever those are read.
struct http_settings final : http1_settings {
  http2::server_options server2{};
  http2::client_options client2{};
};

/// http1_settings_of is the settings of an http1 application layer (`layer` from
/// pipeline::application()), or nullptr when the layer is not one.
inline const http1_settings* http1_settings_of(const pipeline_layer& layer) noexcept {
  return dynamic_cast<const http1_settings*>(layer.options.get());
}

/// http2_settings_of is the settings of an http2 application layer, or nullptr.
inline const http2_settings* http2_settings_of(const pipeline_layer& layer) noexcept {
  return dynamic_cast<const http2_settings*>(layer.options.get());
}

/// http_settings_of is the settings of an http application layer (both protocols), or
/// nullptr.
inline const http_settings* http_settings_of(const pipeline_layer& layer) noexcept {
  return dynamic_cast<const http_settings*>(layer.options.get());
}

}  // namespace strata
