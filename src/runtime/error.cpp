#include "strata/runtime/error.hpp"

#include <cerrno>

namespace strata {
namespace {

class strata_error_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "strata"; }
  std::string message(int value) const override {
    switch (static_cast<cause>(value)) {
      case cause::connection_reset:
        return "connection reset by peer";
      case cause::delimiter_in_message:
        return "message contains the delimiter";
      case cause::not_a_fifo:
        return "not a FIFO";
      case cause::mq_memory_limit:
        return "message queue memory limit (RLIMIT_MSGQUEUE) reached";
      case cause::shm_corrupted:
        return "protocol error: shared memory segment corrupted (rewritten by another process?)";
    }
    switch (static_cast<errc>(value)) {
      case errc::timed_out:
        return "deadline expired";
      case errc::operation_canceled:
        return "operation canceled";
      case errc::end_of_stream:
        return "end of stream";
      case errc::broken:
        return "connection broken";
      case errc::protocol_error:
        return "protocol error";
      case errc::message_too_large:
        return "message too large";
      case errc::not_supported:
        return "not supported by this layer";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::closed:
        return "closed";
      case errc::peer_died:
        return "peer process died";
      case errc::authentication_failed:
        return "authentication failed";
    }
    return "unknown strata error " + std::to_string(value);
  }
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<cause>(value)) {
      case cause::connection_reset:
        return std::errc::connection_reset;
      case cause::delimiter_in_message:
      case cause::not_a_fifo:
        return std::errc::invalid_argument;
      case cause::mq_memory_limit:
        return std::errc::too_many_files_open;
      case cause::shm_corrupted:
        return default_error_condition(static_cast<int>(errc::protocol_error));
    }
    switch (static_cast<errc>(value)) {
      case errc::timed_out:
        return std::errc::timed_out;
      case errc::operation_canceled:
        return std::errc::operation_canceled;
      case errc::message_too_large:
        return std::errc::message_size;
      case errc::not_supported:
        return std::errc::operation_not_supported;
      case errc::invalid_argument:
        return std::errc::invalid_argument;
      default:
        return {value, *this};
    }
  }
};

}  // namespace

const std::error_category& strata_category() noexcept {
  static const strata_error_category category;
  return category;
}

int refined_errc(const std::error_code& ec) noexcept {
  if (ec.category() != strata_category()) {
    // Only protocols' own categories can refine; system errors skip the cast's cost.
    if (ec.category() == std::system_category() || ec.category() == std::generic_category()) return 0;
    const auto* refining = dynamic_cast<const refining_category*>(&ec.category());
    return refining ? static_cast<int>(refining->refines(ec.value())) : 0;
  }
  switch (static_cast<cause>(ec.value())) {
    case cause::connection_reset:
      return static_cast<int>(errc::broken);
    case cause::delimiter_in_message:
    case cause::not_a_fifo:
      return static_cast<int>(errc::invalid_argument);
    case cause::mq_memory_limit:
      return 0;
    case cause::shm_corrupted:
      return static_cast<int>(errc::protocol_error);
  }
  return ec.value();
}

std::error_code from_errno(int err) noexcept {
  switch (err) {
    case ECONNRESET:
      return cause::connection_reset;
    case EPIPE:
    case ECONNABORTED:
      return errc::broken;
    case ETIMEDOUT:
      return errc::timed_out;
    case ECANCELED:
      return errc::operation_canceled;
    case EMSGSIZE:
      return errc::message_too_large;
    default:
      return {err, std::system_category()};
  }
}

std::string describe(std::string_view what, std::error_code ec) {
  std::string out(what);
  out += ": ";
  out += ec.message();
  return out;
}

}  // namespace strata
