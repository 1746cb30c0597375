// strata error model: one short list of errors, each telling the caller what to do.
//
// Operations return result<T>: a value or a std::error_code. System errors stay in
// std::system_category; the conditions every layer shares live in strata's category
// so that `ec == strata::errc::timed_out` reads the same everywhere.
#pragma once

#include <string>
#include <system_error>

namespace strata {

/// errc lists the errors every strata layer may report besides system errors.
enum class errc {
  timed_out = 1,          ///< the deadline passed; the operation may be retried
  operation_canceled,     ///< the owning scope was canceled; unwind
  end_of_stream,          ///< the peer finished sending (orderly); sticky for reads
  broken,                 ///< reset, broken pipe or earlier failure; sticky per direction
  protocol_error,         ///< the peer violated the protocol; sticky for the direction
  message_too_large,      ///< a message exceeds a limit or the caller's buffer
  not_supported,          ///< this layer does not offer the operation or query
  invalid_argument,       ///< the caller passed something unusable
  closed,                 ///< the object was closed or detached locally
  peer_died,              ///< a peer process died while sharing state with us
  authentication_failed,  ///< the peer's identity could not be verified, or it refused ours
};

/// strata_category is the std::error_category of strata::errc.
const std::error_category& strata_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), strata_category()}; }

/// cause refines an errc (or a system error) with what happened, for humans only. A
/// code made from a cause compares equal (==, !=) to the errc it refines, so callers
/// keep testing the short list above (`ec == errc::broken` holds for a reset) while its
/// message names the cause ("connection reset by peer"). Against std::errc conditions a
/// cause compares as its system equivalent (ECONNRESET, EINVAL, EMFILE).
enum class cause {
  connection_reset = 100,  ///< broken: the peer reset the connection (ECONNRESET)
  delimiter_in_message,    ///< invalid_argument: a message contains its layer's delimiter
  not_a_fifo,              ///< invalid_argument: a fifo-read/fifo-write path is not a FIFO
  mq_memory_limit,         ///< refines no errc (EMFILE): the user's RLIMIT_MSGQUEUE bytes are used up
  shm_corrupted,           ///< protocol_error: a shared-memory segment holds what no member wrote
};

inline std::error_code make_error_code(cause c) noexcept { return {static_cast<int>(c), strata_category()}; }

/// refining_category is the base of a protocol's own error category whose codes refine
/// an errc the way causes do (tls's certificate_expired is an authentication_failed):
/// `ec == errc::authentication_failed` holds for them too.
class refining_category : public std::error_category {
 public:
  /// refines is the errc that code `value` refines, or errc{} for none.
  virtual errc refines(int value) const noexcept = 0;
};

/// refined_errc is the value of the errc that `ec` is or refines; 0 (no errc) for
/// system errors and for causes that refine none.
int refined_errc(const std::error_code& ec) noexcept;

/// operator== is true when `ec` is `e` or a cause that refines `e`: a reset compares
/// equal to errc::broken. (Exact comparison: `ec == make_error_code(e)`.)
inline bool operator==(const std::error_code& ec, errc e) noexcept {
  return refined_errc(ec) == static_cast<int>(e);
}

/// from_errno maps an errno value to strata's vocabulary where one applies
/// (ECONNRESET -> cause::connection_reset, which is a broken; EPIPE/ECONNABORTED ->
/// broken, ETIMEDOUT -> timed_out, ECANCELED -> operation_canceled, EMSGSIZE ->
/// message_too_large) and to std::system_category otherwise.
std::error_code from_errno(int err) noexcept;

/// describe renders an error for humans: "<what>: <message>".
std::string describe(std::string_view what, std::error_code ec);

}  // namespace strata

template <>
struct std::is_error_code_enum<strata::errc> : std::true_type {};
template <>
struct std::is_error_code_enum<strata::cause> : std::true_type {};
