// result<T>: a value or a std::error_code, the return type of every fallible call.
// No exceptions on I/O paths: callers test the result and propagate its error.
#pragma once

#include <cassert>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "strata/runtime/error.hpp"

namespace strata {

/// unexpected carries an error into a result, as in `return unexpected(ec);`.
struct unexpected {
  std::error_code code;
  explicit unexpected(std::error_code ec) noexcept : code(ec) {}
  explicit unexpected(errc e) noexcept : code(make_error_code(e)) {}
};

/// result holds either a T or an error. Accessing the value of an error is a bug (asserted).
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : state_(std::in_place_index<0>, std::move(value)) {}   // NOLINT implicit
  result(unexpected u) : state_(std::in_place_index<1>, u.code) {}        // NOLINT implicit
  result(errc e) : state_(std::in_place_index<1>, make_error_code(e)) {}  // NOLINT implicit
  template <class... A>
  explicit result(std::in_place_t, A&&... a) : state_(std::in_place_index<0>, std::forward<A>(a)...) {}

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(state_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(state_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(state_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// error returns the error, or a default (success) code when a value is held.
  std::error_code error() const noexcept { return has_value() ? std::error_code{} : std::get<1>(state_); }

 private:
  std::variant<T, std::error_code> state_;
};

/// result<void> is success or an error.
template <>
class [[nodiscard]] result<void> {
 public:
  result() noexcept = default;
  result(unexpected u) noexcept : error_(u.code) {}        // NOLINT implicit
  result(errc e) noexcept : error_(make_error_code(e)) {}  // NOLINT implicit
  result(std::error_code ec) noexcept : error_(ec) {}      // NOLINT implicit

  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const noexcept { assert(has_value()); }
  std::error_code error() const noexcept { return error_; }

 private:
  std::error_code error_;
};

}  // namespace strata
