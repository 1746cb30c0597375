// What `strata listen` does with a bound endpoint (udp-bind, unix-dgram-bind): every
// datagram from every sender goes to stdout, one line each (optionally after its
// sender's address), and each stdin line goes back to the sender of the latest datagram.
#pragma once

#include <optional>
#include <string>

#include "common.hpp"
#include "strata/core/any.hpp"

namespace strata::cli {

/// endpoint_options tune serve_endpoint.
struct endpoint_options {
  bool show_sender = false;      ///< prefix each line with "SENDER: " (--from)
  bool verbose = false;          ///< write "datagram from SENDER" to stderr for each datagram
  std::optional<duration> idle;  ///< fail after this long without a datagram either way
  std::string label;             ///< names the endpoint in error messages (the spec)
};

/// serve_endpoint writes every datagram `endpoint` receives to stdout, exactly its bytes
/// and a '\n' (after "SENDER: " with show_sender), and sends each stdin line (without its
/// '\n') to the sender of the latest datagram. stdin is left unread until a first datagram
/// arrives (there is nobody to answer before), and its end stops only the answers. An
/// answer that fails (the sender is gone, an unnamed unix sender) is reported on stderr
/// and the endpoint goes on. Runs until canceled (a signal; returns exit_ok), a receive
/// or stdout failure, or `idle` (both exit_failure, after reporting). Closes `endpoint`
/// before returning.
task<int> serve_endpoint(any_datagram& endpoint, stdio_guard& stdio, const endpoint_options& options);

}  // namespace strata::cli
