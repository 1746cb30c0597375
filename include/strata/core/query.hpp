// The query interface: a layer asks the stack below it for a typed fact (where it is
// bound, whom it talks to, the peer process's credentials, the largest message; later
// the ALPN protocol or the peer certificate) and the layer that knows answers. Every
// other layer forwards downward without code of its own, type erasure (any_stream,
// any_message) forwards too, and a fact nobody answers is errc::not_supported.
//
// A fact is a tag type with the answer's type:
//
//   struct alpn { using type = std::string; };   // declared by the layer that knows it
//
// A layer answers a fact in one of two ways:
//   - a member `result<F::type> query(F) const` (the general form; e.g. prefix answers
//     fact::max_message, tls will answer its facts);
//   - the fact's own accessor convention, `F::ask(layer)`, for facts whose answer every
//     transport already has under a well-known name (peer_address(), local_address(),
//     peer_credentials(), max_message()); transports need no extra code.
// A layer that answers facts of its own declares them for type erasure with
// `using answers = fact_list<F1, F2>;` (erasure cannot enumerate overloads). A layer
// forwards by exposing its lower layer as `next_layer()`.
//
// On a typed stack `query<F>(top)` is resolved at compile time: no allocation and no
// virtual call. Through any_stream/any_message it costs one virtual call per erased layer
// on the way down.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "strata/core/address.hpp"
#include "strata/runtime/result.hpp"

namespace strata {

/// credentials of a peer process, as the kernel recorded them (SO_PEERCRED).
struct credentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};

/// certificate_info describes the certificate a peer authenticated with (its leaf).
struct certificate_info {
  std::string subject;         ///< RFC 2253 form: "CN=localhost,O=Example"
  std::string issuer;          ///< likewise
  std::vector<std::byte> der;  ///< the certificate itself, DER-encoded
};

/// security_info describes a secure session (tls, dtls).
struct security_info {
  std::string version;         ///< "TLSv1.3", "TLSv1.2", "DTLSv1.2"
  std::string cipher;          ///< the IANA-registered name as OpenSSL spells it: "TLS_AES_128_GCM_SHA256"
  std::string server_name;     ///< the SNI name the client sent (empty: none)
  bool resumed = false;        ///< the session was resumed (a ticket or a cached session)
  bool peer_verified = false;  ///< the peer's certificate was checked and passed
};

/// fact_type is a tag type naming what its answer is (`using type = ...`).
template <class F>
concept fact_type = std::is_empty_v<F> && requires {
  typename F::type;
};

/// fact_list names the facts a layer answers itself (for type erasure).
template <fact_type... Fs>
struct fact_list {};

namespace fact {

/// local_address: where this end is bound.
struct local_address {
  using type = address;
  static result<address> ask(const auto& layer) requires requires {
    { layer.local_address() } -> std::same_as<result<address>>;
  }
  { return layer.local_address(); }
};

/// peer_address: whom this end talks to.
struct peer_address {
  using type = address;
  static result<address> ask(const auto& layer) requires requires {
    { layer.peer_address() } -> std::same_as<result<address>>;
  }
  { return layer.peer_address(); }
};

/// peer_credentials: the peer process's pid, uid and gid (unix sockets).
struct peer_credentials {
  using type = credentials;
  static result<credentials> ask(const auto& layer) requires requires {
    { layer.peer_credentials() } -> std::same_as<result<credentials>>;
  }
  { return layer.peer_credentials(); }
};

/// max_message: the largest message the layer carries, in bytes.
struct max_message {
  using type = std::size_t;
  static result<std::size_t> ask(const auto& layer) requires requires {
    { layer.max_message() } -> std::convertible_to<std::size_t>;
  }
  { return static_cast<std::size_t>(layer.max_message()); }
};

/// alpn: the application protocol a secure layer negotiated ("h2", "http/1.1"); empty
/// when the peers negotiated none. Answered by tls and dtls.
struct alpn {
  using type = std::string;
};

/// peer_certificate: the certificate the peer presented; not_supported (from a layer
/// that would know) when it presented none.
struct peer_certificate {
  using type = certificate_info;
};

/// secure_session: version, cipher and resumption of the secure layer.
struct secure_session {
  using type = security_info;
};

/// native_handle: the descriptor this layer itself reads and writes, for system calls
/// that move bytes without copying them through the process (sendfile(2), splice(2)).
/// Answered by the layer that owns one (every socket, pipe and FIFO transport, through
/// its native_handle() accessor) and, unlike every other fact, never forwarded up through
/// a layer that has none: a layer above may change the bytes (tls encrypts them, prefix
/// frames them), so a descriptor below it is not where that layer's bytes go. The
/// descriptor stays the layer's: write to it only while no other write of the layer is
/// in flight, and never close it. Errors: closed (the layer was closed), not_supported
/// (the layer has no descriptor of its own: tls, prefix, inproc, shm...).
struct native_handle {
  using type = int;
  /// forwarded = false: query<native_handle>(layer) asks `layer` alone (see query).
  static constexpr bool forwarded = false;
  static result<int> ask(const auto& layer) requires requires {
    { layer.native_handle() } -> std::convertible_to<int>;
  }
  {
    int fd = layer.native_handle();
    if (fd < 0) return errc::closed;
    return fd;
  }
};

}  // namespace fact

/// fact_id identifies a fact across type erasure: the address of a variable that exists
/// once per fact type.
using fact_id = const void*;

namespace detail {
template <class F>
inline constexpr char fact_key = 0;

/// core_facts are the facts any layer may answer through its accessor convention; type
/// erasure tries them on every layer besides the layer's own `answers`.
using core_facts = fact_list<fact::local_address, fact::peer_address, fact::peer_credentials,
                             fact::max_message, fact::native_handle>;

/// forwarded_fact is false for a fact that only the layer asked may answer (one that
/// declares `static constexpr bool forwarded = false`, as fact::native_handle does).
template <class F>
inline constexpr bool forwarded_fact = [] {
  if constexpr (requires { F::forwarded; }) {
    return static_cast<bool>(F::forwarded);
  } else {
    return true;
  }
}();
}  // namespace detail

template <fact_type F>
constexpr fact_id id_of() noexcept {
  return &detail::fact_key<F>;
}

/// answers_itself is true when layer L answers F without asking below.
template <class F, class L>
concept answers_itself = fact_type<F> &&(
    requires(const L& l) {
      { l.query(F{}) } -> std::same_as<result<typename F::type>>;
    } ||
    requires(const L& l) { F::ask(l); });

/// erased_layer is a type-erased layer: it answers any fact by id (one virtual call).
template <class L>
concept erased_layer = requires(const L& l, fact_id id, void* out) {
  { l.query_erased(id, out) } -> std::same_as<bool>;
};

/// forwarding_layer exposes the layer below it.
template <class L>
concept forwarding_layer = requires(const L& l) {
  l.next_layer();
};

/// query asks the stack whose top is `layer` for fact F: the topmost layer that knows
/// answers (for a fact that is not forwarded, fact::native_handle, only `layer` itself;
/// type erasure is not a layer and is looked through). Errors: not_supported when no
/// layer of the stack knows F; otherwise what the answering layer returns (e.g. closed).
template <fact_type F, class L>
result<typename F::type> query(const L& layer) {
  if constexpr (requires {
                  { layer.query(F{}) } -> std::same_as<result<typename F::type>>;
                }) {
    return layer.query(F{});
  } else if constexpr (erased_layer<L>) {
    result<typename F::type> answer = errc::not_supported;
    (void)layer.query_erased(id_of<F>(), &answer);
    return answer;
  } else if constexpr (requires { F::ask(layer); }) {
    return F::ask(layer);
  } else if constexpr (forwarding_layer<L> && detail::forwarded_fact<F>) {
    return query<F>(layer.next_layer());
  } else {
    return errc::not_supported;
  }
}

namespace detail {

template <class F, class L>
bool answer_one(const L& layer, fact_id id, void* out) {
  if constexpr (answers_itself<F, L>) {
    if (id != id_of<F>()) return false;
    *static_cast<result<typename F::type>*>(out) = query<F>(layer);
    return true;
  } else {
    return false;
  }
}

template <class L, class... Fs>
bool answer_from(const L& layer, fact_id id, void* out, fact_list<Fs...>) {
  return (answer_one<Fs>(layer, id, out) || ...);
}

/// local_facts are the facts that are not forwarded (forwarded_fact is false).
using local_facts = fact_list<fact::native_handle>;

template <class... Fs>
bool is_local_fact(fact_id id, fact_list<Fs...>) noexcept {
  return ((id == id_of<Fs>()) || ...);
}

}  // namespace detail

/// answer_erased answers the fact `id` for type erasure: `out` points to a
/// result<F::type> for that fact. Returns false (and leaves `out`) when no layer of the
/// stack under and including `layer` knows it.
template <class L>
bool answer_erased(const L& layer, fact_id id, void* out) {
  if constexpr (erased_layer<L>) {
    return layer.query_erased(id, out);
  } else {
    if (detail::answer_from(layer, id, out, detail::core_facts{})) return true;
    if constexpr (requires { typename L::answers; }) {
      if (detail::answer_from(layer, id, out, typename L::answers{})) return true;
    }
    if constexpr (forwarding_layer<L>) {
      if (detail::is_local_fact(id, detail::local_facts{})) return false;
      return answer_erased(layer.next_layer(), id, out);
    } else {
      return false;
    }
  }
}

}  // namespace strata
