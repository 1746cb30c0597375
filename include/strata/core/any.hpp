// Type erasure for dynamic stacks: any_stream, any_message, any_connection (either),
// any_listener, and any_datagram for a bound, connection-less endpoint. A pipeline built
// from a spec string is a chain of these; each call costs one virtual call and forwards
// the concrete layer's task unchanged.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <variant>

#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"

namespace strata {

namespace detail {

/// erased_base is what every erased layer's interface has: close, the query and the
/// capabilities of the concrete stack.
struct erased_base {
  virtual ~erased_base() = default;
  virtual task<result<void>> close(deadline) = 0;
  virtual bool query(fact_id, void*) const = 0;
  virtual properties caps() const = 0;
};

/// erased_model implements erased_base for the concrete layer `L` it holds; each erased
/// type's model adds its own operations on top.
template <class Iface, class L>
struct erased_model : Iface {
  explicit erased_model(L l) : inner(std::move(l)) {}
  task<result<void>> close(deadline dl) override { return inner.close(dl); }
  bool query(fact_id id, void* out) const override { return answer_erased(inner, id, out); }
  properties caps() const override {
    if constexpr (requires { inner.runtime_capabilities(); }) {
      return inner.runtime_capabilities();
    } else {
      return L::capabilities;
    }
  }
  L inner;
};

}  // namespace detail

/// any_stream holds any byte_stream.
class any_stream {
 public:
  static constexpr properties capabilities{};

  any_stream() = default;
  template <byte_stream S>
  requires(!std::same_as<std::remove_cvref_t<S>, any_stream>) explicit any_stream(S s)
      : impl_(std::make_unique<model<S>>(std::move(s))) {}

  explicit operator bool() const noexcept { return static_cast<bool>(impl_); }

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) { return impl_->read_some(buf, dl); }
  task<result<void>> write(const_buffers bufs, deadline dl) { return impl_->write(bufs, dl); }
  task<result<void>> shutdown_write(deadline dl) { return impl_->shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return impl_->close(dl); }
  /// query_erased answers a fact for strata::query (core/query.hpp) by asking the
  /// concrete stack: one virtual call.
  bool query_erased(fact_id id, void* out) const { return impl_ && impl_->query(id, out); }
  result<address> local_address() const { return query<fact::local_address>(*this); }
  result<address> peer_address() const { return query<fact::peer_address>(*this); }
  /// runtime_capabilities is what the concrete stack offers.
  properties runtime_capabilities() const { return impl_->caps(); }

 private:
  struct iface : detail::erased_base {
    virtual task<result<std::size_t>> read_some(mutable_buffer, deadline) = 0;
    virtual task<result<void>> write(const_buffers, deadline) = 0;
    virtual task<result<void>> shutdown_write(deadline) = 0;
  };
  template <class S>
  struct model final : detail::erased_model<iface, S> {
    using detail::erased_model<iface, S>::erased_model;
    using detail::erased_model<iface, S>::inner;
    task<result<std::size_t>> read_some(mutable_buffer b, deadline dl) override {
      return inner.read_some(b, dl);
    }
    task<result<void>> write(const_buffers b, deadline dl) override { return inner.write(b, dl); }
    task<result<void>> shutdown_write(deadline dl) override { return inner.shutdown_write(dl); }
  };
  std::unique_ptr<iface> impl_;
};

/// any_message holds any message_socket.
class any_message {
 public:
  static constexpr properties capabilities{};

  any_message() = default;
  template <message_socket M>
  requires(!std::same_as<std::remove_cvref_t<M>, any_message>) explicit any_message(M m)
      : impl_(std::make_unique<model<M>>(std::move(m))) {}

  explicit operator bool() const noexcept { return static_cast<bool>(impl_); }

  task<result<void>> send(const_buffers msg, deadline dl) { return impl_->send(msg, dl); }
  /// send_batch sends `msgs` in order (each one whole message; `to` is ignored: the
  /// stack has one peer) and returns how many were sent. A layer with a batch send of its
  /// own is called once (prefix, crlf: one gather write; udp: sendmmsg) and keeps its own
  /// rules, which its header documents; for any other layer this loops over send, stops
  /// at the first error and returns the count before it, failing only when none was sent
  /// (as udp's batch send does). `msgs` and the buffers they point to must outlive the task.
  task<result<std::size_t>> send_batch(std::span<const outgoing_datagram> msgs, deadline dl) {
    return impl_->send_batch(msgs, dl);
  }
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) { return impl_->recv(buf, dl); }
  task<result<void>> shutdown_write(deadline dl) { return impl_->shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return impl_->close(dl); }
  /// query_erased answers a fact for strata::query (core/query.hpp) by asking the
  /// concrete stack: one virtual call.
  bool query_erased(fact_id id, void* out) const { return impl_ && impl_->query(id, out); }
  result<address> local_address() const { return query<fact::local_address>(*this); }
  result<address> peer_address() const { return query<fact::peer_address>(*this); }
  properties runtime_capabilities() const { return impl_->caps(); }
  /// max_message is the largest message the stack carries (0: no limit of its own).
  std::size_t max_message() const { return runtime_capabilities().max_message; }

 private:
  struct iface : detail::erased_base {
    virtual task<result<void>> send(const_buffers, deadline) = 0;
    virtual task<result<std::size_t>> send_batch(std::span<const outgoing_datagram>, deadline) = 0;
    virtual task<result<std::size_t>> recv(mutable_buffer, deadline) = 0;
    virtual task<result<void>> shutdown_write(deadline) = 0;
  };
  template <class M>
  struct model final : detail::erased_model<iface, M> {
    using detail::erased_model<iface, M>::erased_model;
    using detail::erased_model<iface, M>::inner;
    task<result<void>> send(const_buffers b, deadline dl) override { return inner.send(b, dl); }
    task<result<std::size_t>> send_batch(std::span<const outgoing_datagram> msgs, deadline dl) override {
      if constexpr (requires {
                      { inner.send_batch(msgs, dl) } -> std::same_as<task<result<std::size_t>>>;
                    }) {
        return inner.send_batch(msgs, dl);
      } else {
        return send_each(inner, msgs, dl);
      }
    }
    task<result<std::size_t>> recv(mutable_buffer b, deadline dl) override { return inner.recv(b, dl); }
    task<result<void>> shutdown_write(deadline dl) override {
      if constexpr (requires { inner.shutdown_write(dl); }) {
        return inner.shutdown_write(dl);
      } else {
        return not_supported();
      }
    }
    static task<result<void>> not_supported() { co_return errc::not_supported; }
    // send_each is the batch send of a layer without one: one send per message.
    static task<result<std::size_t>> send_each(M& m, std::span<const outgoing_datagram> msgs, deadline dl) {
      for (std::size_t i = 0; i < msgs.size(); ++i) {
        auto sent = co_await m.send(msgs[i].data, dl);
        if (!sent) {
          if (i == 0) co_return unexpected(sent.error());
          co_return i;
        }
      }
      co_return msgs.size();
    }
  };
  std::unique_ptr<iface> impl_;
};

template <>
inline constexpr bool checked_at_runtime<any_stream> = true;
template <>
inline constexpr bool checked_at_runtime<any_message> = true;

/// any_connection is the top of a dynamic stack: a stream or a message socket.
class any_connection {
 public:
  any_connection() = default;
  any_connection(any_stream s) : v_(std::move(s)) {}   // NOLINT implicit
  any_connection(any_message m) : v_(std::move(m)) {}  // NOLINT implicit

  bool is_stream() const noexcept { return v_.index() == 1; }
  bool is_message() const noexcept { return v_.index() == 2; }
  any_stream& stream() { return std::get<1>(v_); }
  any_message& message() { return std::get<2>(v_); }
  any_stream take_stream() { return std::get<1>(std::move(v_)); }
  any_message take_message() { return std::get<2>(std::move(v_)); }

  properties runtime_capabilities() const {
    if (v_.index() == 1) return std::get<1>(v_).runtime_capabilities();
    if (v_.index() == 2) return std::get<2>(v_).runtime_capabilities();
    return {};
  }
  task<result<void>> close(deadline dl) {
    if (is_stream()) return stream().close(dl);
    return message().close(dl);
  }
  bool query_erased(fact_id id, void* out) const {
    if (v_.index() == 1) return std::get<1>(v_).query_erased(id, out);
    if (v_.index() == 2) return std::get<2>(v_).query_erased(id, out);
    return false;  // empty: nothing below to ask
  }
  result<address> peer_address() const { return query<fact::peer_address>(*this); }
  result<address> local_address() const { return query<fact::local_address>(*this); }

 private:
  std::variant<std::monostate, any_stream, any_message> v_;
};

/// any_listener accepts connections of a dynamic stack.
class any_listener {
 public:
  struct iface {
    virtual ~iface() = default;
    virtual task<result<any_connection>> accept(deadline) = 0;
    virtual result<address> local_address() const = 0;
    virtual void close() = 0;
    /// handshakes counts the accepted connections' handshakes (a stack with upper layers).
    virtual handshake_stats handshakes() const { return {}; }
    virtual void on_handshake_failure(std::function<void(const handshake_failure&)>) {}
    /// set_gate installs an admission gate on a datagram listener; not_supported elsewhere.
    virtual result<void> set_gate(admission_gate) { return errc::not_supported; }
    /// datagrams counts what a datagram listener did with new senders' datagrams.
    virtual datagram_listener_stats datagrams() const { return {}; }
  };

  any_listener() = default;
  explicit any_listener(std::unique_ptr<iface> impl) : impl_(std::move(impl)) {}

  explicit operator bool() const noexcept { return static_cast<bool>(impl_); }
  /// accept waits for the next peer and returns the top of its stack.
  task<result<any_connection>> accept(deadline dl) { return impl_->accept(dl); }
  result<address> local_address() const { return impl_->local_address(); }
  void close() { impl_->close(); }
  /// handshakes counts what became of accepted connections whose stack has layers above
  /// the transport (all zero for a bare transport).
  handshake_stats handshakes() const { return impl_->handshakes(); }
  /// on_handshake_failure sets a function told of every failed handshake.
  void on_handshake_failure(std::function<void(const handshake_failure&)> observer) {
    impl_->on_handshake_failure(std::move(observer));
  }
  /// set_gate installs `gate` (core/datagram.hpp) on the datagram listener at the bottom
  /// (udp-listen, unix-dgram-listen): it sees each new sender's first datagram before
  /// anything is kept for the sender. Before the first accept. not_supported for
  /// listeners that accept kernel connections (tcp, unix, seqpacket) and for a stack with
  /// layers above its listener (the pipeline installs those layers' gates itself).
  result<void> set_gate(admission_gate gate) { return impl_->set_gate(std::move(gate)); }
  /// datagrams counts what the datagram listener at the bottom did with new senders'
  /// datagrams: accepted, the gate's verdicts and replies, what waits and what was
  /// dropped (all zero for other listeners).
  datagram_listener_stats datagrams() const { return impl_->datagrams(); }

 private:
  std::unique_ptr<iface> impl_;
};

/// any_datagram holds any datagram_socket (core/stream.hpp): a bound, connection-less
/// endpoint that receives from any sender, with the sender's address, and sends to any
/// address (the top of a bound pipeline: udp-bind, unix-dgram-bind). Its row says
/// connection-less; nothing is stacked on it. Thread-compatible like the socket it holds:
/// one task receives and one sends at a time.
class any_datagram {
 public:
  static constexpr properties capabilities{};

  any_datagram() = default;
  template <datagram_socket D>
  requires(!std::same_as<std::remove_cvref_t<D>, any_datagram>) explicit any_datagram(D d)
      : impl_(std::make_unique<model<D>>(std::move(d))) {}

  explicit operator bool() const noexcept { return static_cast<bool>(impl_); }

  /// send_to sends one whole message to `to`; `bufs` and `to` must outlive the task.
  /// Errors as the socket's send_to: message_too_large above max_message (nothing sent),
  /// timed_out / operation_canceled (nothing sent), closed, system errors.
  task<result<void>> send_to(const_buffers bufs, const address& to, deadline dl) {
    return impl_->send_to(bufs, to, dl);
  }
  /// recv_from waits for one whole message and returns its size and its sender.
  /// message_too_large when `buf` is too small (whether the message is kept for a larger
  /// buffer is the socket's rule: the pipeline's entries keep it); timed_out /
  /// operation_canceled consume nothing; closed after close.
  task<result<received>> recv_from(mutable_buffer buf, deadline dl) { return impl_->recv_from(buf, dl); }
  /// close releases the endpoint (a unix path is removed); waiting tasks get `closed`.
  task<result<void>> close(deadline dl) { return impl_->close(dl); }
  /// query_erased answers a fact for strata::query (core/query.hpp) by asking the
  /// concrete socket: one virtual call.
  bool query_erased(fact_id id, void* out) const { return impl_ && impl_->query(id, out); }
  /// local_address is where the endpoint is bound (the real port after port 0).
  result<address> local_address() const { return query<fact::local_address>(*this); }
  /// runtime_capabilities is what the concrete socket offers.
  properties runtime_capabilities() const { return impl_->caps(); }

 private:
  struct iface : detail::erased_base {
    virtual task<result<void>> send_to(const_buffers, const address&, deadline) = 0;
    virtual task<result<received>> recv_from(mutable_buffer, deadline) = 0;
  };
  template <class D>
  struct model final : detail::erased_model<iface, D> {
    using detail::erased_model<iface, D>::erased_model;
    using detail::erased_model<iface, D>::inner;
    task<result<void>> send_to(const_buffers b, const address& to, deadline dl) override {
      return inner.send_to(b, to, dl);
    }
    task<result<received>> recv_from(mutable_buffer b, deadline dl) override {
      return inner.recv_from(b, dl);
    }
  };
  std::unique_ptr<iface> impl_;
};

}  // namespace strata
