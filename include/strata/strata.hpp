// strata: composable network protocols. This umbrella header includes every public
// header, layer by layer from the bottom (a test, strata.umbrella, fails when one is
// missing); include the individual headers to keep compile times down.
#pragma once

// runtime: errors and results, tasks, the event loop, deadlines, scopes, channels,
// pollable_fd
#include "strata/runtime.hpp"
#include "strata/runtime/frame_allocator.hpp"

// core: buffers, addresses, capabilities, the two socket shapes
#include "strata/core/address.hpp"
#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/flush.hpp"
#include "strata/core/handshaking_listener.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"

// transport (L4): the socket, pipe, message-queue and shared-memory transports, and the
// data of the socket transports (socket_state; their machinery is private, in src/)
#include "strata/transport/inproc.hpp"
#include "strata/transport/mq.hpp"
#include "strata/transport/pipe.hpp"
#include "strata/transport/seqpacket.hpp"
#include "strata/transport/shm.hpp"
#include "strata/transport/socket_state.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/udp.hpp"
#include "strata/transport/unix.hpp"
#include "strata/transport/unix_dgram.hpp"

// adapt (L5): framed messages over a stream, coalesced writes
#include "strata/adapt/buffered.hpp"
#include "strata/adapt/bytes.hpp"
#include "strata/adapt/crlf.hpp"
#include "strata/adapt/dccp.hpp"
#include "strata/adapt/framing.hpp"
#include "strata/adapt/mux.hpp"
#include "strata/adapt/prefix.hpp"
#include "strata/adapt/reliable.hpp"

// secure (L6): secrecy and authentication (OpenSSL 3)
#include "strata/secure/dtls.hpp"
#include "strata/secure/tls.hpp"

// app (L7): application protocols
#include "strata/app/http.hpp"
#include "strata/app/http1.hpp"
#include "strata/app/http1_files.hpp"
#include "strata/app/http2.hpp"
#include "strata/app/websocket.hpp"

// pipeline: spec strings, the registry, the checker
#include "strata/pipeline/application.hpp"
#include "strata/pipeline/bridge.hpp"
#include "strata/pipeline/custom_protocol.hpp"
#include "strata/pipeline/demux.hpp"
#include "strata/pipeline/gateway.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/pipeline/registry.hpp"
#include "strata/pipeline/spec.hpp"
