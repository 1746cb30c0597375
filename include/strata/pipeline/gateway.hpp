// gateway — the seed's "IP/IPC conversion": N client connections (TCP, or any listener
// pipeline) carried over ONE multiplexed channel (mux, adapt/mux.hpp) on a Unix socket or
// a shm stream to a backend process, which joins each mux stream to its local service.
//
//   clients --tcp--> [gateway] ==one channel: unix: or shm: | mux==> [backend] --tcp/unix--> service
//
// - gateway: accepts clients; keeps the channel connected (each attempt under a deadline,
//   with backoff between attempts); opens one mux stream per client and bridges the two
//   (pipeline/bridge.hpp). When the channel dies (the backend exited or restarted) every
//   client carried by it is reset (TCP: RST, so no client mistakes a cut-off transfer for
//   a complete one); the gateway reconnects and new clients are served by the new backend.
// - gateway_backend: accepts channels (several gateways may share one backend); accepts
//   the mux streams of each and bridges each to a new connection of the service pipeline.
//
// The channel's bytes are mux's frames (docs/protocols/mux.md); the channel pipeline must
// give a reliable byte stream (`unix:PATH`, `shm:NAME`, `tcp:HOST:PORT`, even `... | tls`).
// `strata bridge --mux` and `--demux` (docs/cli.md) run each side from the command line.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "strata/adapt/mux.hpp"
#include "strata/core/any.hpp"
#include "strata/pipeline/bridge.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// gateway_options tune the gateway side.
struct gateway_options {
  /// mux tunes the channel's session (keepalive finds a backend that hangs without
  /// closing the channel: 5 s by default here).
  mux::options mux{.keepalive = std::chrono::seconds(5)};
  /// connect_timeout bounds each attempt to connect the channel.
  deadline::clock::duration connect_timeout = std::chrono::seconds(5);
  /// backoff_min / backoff_max: after a failed attempt the next waits backoff_min,
  /// doubling up to backoff_max; a channel that came up resets it.
  deadline::clock::duration backoff_min = std::chrono::milliseconds(20);
  deadline::clock::duration backoff_max = std::chrono::seconds(1);
  /// give_up: serve fails with timed_out when the channel stayed down this long
  /// (0: keep trying for ever).
  deadline::clock::duration give_up{0};
  /// channel_wait: a client that arrives while the channel is down waits this long for
  /// it, then is reset.
  deadline::clock::duration channel_wait = std::chrono::seconds(5);
  /// max_clients bounds the clients carried at once; more are reset at once.
  std::size_t max_clients = 4096;
  /// idle: a client bridge fails (its client is reset) after this long without data.
  std::optional<deadline::clock::duration> idle;
  /// log, when set, hears what happens to the channel and failed clients (one line each:
  /// "channel up: unix:/run/gw.sock", "channel lost: ...", "client 127.0.0.1:5555: ...").
  std::function<void(std::string_view)> log;
};

/// gateway_stats counts what a gateway did.
struct gateway_stats {
  std::uint64_t clients = 0;         ///< clients accepted
  std::uint64_t served = 0;          ///< clients whose bridge ended normally
  std::uint64_t failed = 0;          ///< clients whose bridge failed (they were reset)
  std::uint64_t refused = 0;         ///< clients reset without a stream (no channel, limit)
  std::uint64_t live = 0;            ///< clients carried now
  std::uint64_t channels = 0;        ///< times the channel came up
  std::uint64_t channel_lost = 0;    ///< times it went down
  std::uint64_t connect_failed = 0;  ///< failed attempts to connect it
  std::uint64_t bytes_up = 0;        ///< client -> backend payload bytes (ended bridges)
  std::uint64_t bytes_down = 0;      ///< backend -> client
};

/// gateway carries the clients of a listener over one mux channel (see the file comment).
/// Runs on the thread that calls serve(). Not copyable or movable while serving.
class gateway {
 public:
  /// gateway keeps `channel` (a connector pipeline giving a reliable byte stream).
  explicit gateway(pipeline channel, gateway_options options = {});
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  /// serve accepts clients from `clients` and carries them until the calling scope is
  /// canceled (then it returns success after closing every client) or the channel
  /// stays down for options.give_up (timed_out). Errors: timed_out; the listener's
  /// accept failure (closed, ...); invalid_argument when the channel pipeline is a
  /// listener. `clients` must outlive the task.
  task<result<void>> serve(any_listener& clients);

  /// wait_channel waits until the channel is up (for tests and tools that must know).
  /// Errors: timed_out, operation_canceled.
  task<result<void>> wait_channel(deadline dl);
  /// channel_up says whether a channel session is running now.
  bool channel_up() const noexcept;
  const gateway_stats& stats() const noexcept;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

/// backend_options tune the backend side.
struct backend_options {
  mux::options mux{};
  /// connect_timeout bounds each connection to the service.
  deadline::clock::duration connect_timeout = std::chrono::seconds(5);
  /// max_channels bounds the gateways served at once; more are closed at once.
  std::size_t max_channels = 64;
  std::optional<deadline::clock::duration> idle;  ///< as gateway_options::idle
  std::function<void(std::string_view)> log;      ///< as gateway_options::log
};

/// backend_stats counts what a backend did.
struct backend_stats {
  std::uint64_t channels = 0;        ///< channels accepted
  std::uint64_t streams = 0;         ///< mux streams accepted
  std::uint64_t served = 0;          ///< streams whose bridge ended normally
  std::uint64_t failed = 0;          ///< streams whose bridge failed
  std::uint64_t connect_failed = 0;  ///< streams reset because the service did not answer
  std::uint64_t live = 0;            ///< streams bridged now
};

/// gateway_backend serves channels of gateways: each mux stream becomes a connection
/// of `service` (a connector pipeline of the same unit as a mux stream: a byte stream).
class gateway_backend {
 public:
  explicit gateway_backend(pipeline service, backend_options options = {});
  ~gateway_backend();
  gateway_backend(const gateway_backend&) = delete;
  gateway_backend& operator=(const gateway_backend&) = delete;

  /// serve accepts channels from `channels` and serves them until the calling scope is
  /// canceled (success). Errors: the listener's accept failure; invalid_argument when
  /// the service pipeline is a listener or does not give a byte stream.
  task<result<void>> serve(any_listener& channels);
  const backend_stats& stats() const noexcept;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace strata
