// strata: composable network protocols. This umbrella header includes every public
// header, layer by layer from the bottom; include the individual headers to keep
// compile times down.
#pragma once

// runtime: tasks, the event loop, deadlines, scopes, channels
#include "strata/runtime.hpp"

// core: errors, results, buffers, addresses, capabilities, the two socket shapes
#include "strata/core/address.hpp"
#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/error.hpp"
#include "strata/core/result.hpp"
#include "strata/core/stream.hpp"

// transport (L4)
#include "strata/transport/seqpacket.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/udp.hpp"
#include "strata/transport/unix.hpp"
#include "strata/transport/unix_dgram.hpp"

// adapt (L5)
#include "strata/adapt/crlf.hpp"
#include "strata/adapt/prefix.hpp"

// pipeline: spec strings, the registry, the checker
#include "strata/pipeline/pipeline.hpp"
#include "strata/pipeline/registry.hpp"
#include "strata/pipeline/spec.hpp"
