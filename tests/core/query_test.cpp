// The query interface (core/query.hpp): the layer that knows a fact answers, layers in
// between forward without code of their own, type erasure forwards, and a fact nobody
// knows answers not_supported.
#include "strata/core/query.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <string>

#include "strata/adapt/prefix.hpp"
#include "strata/core/any.hpp"
#include "support/mem_stream.hpp"

// Counts this binary's allocations, so a test can show that a typed query makes none.
namespace {
thread_local std::size_t allocations = 0;
}  // namespace

void* operator new(std::size_t size) {
  ++allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace strata {
namespace {

using test::mem_stream;

/// negotiated is a fact core does not know: declared here, as tls will declare alpn.
struct negotiated {
  using type = std::string;
};
struct never_answered {
  using type = int;
};

/// announcing is a stream layer that answers `negotiated` and the peer address itself
/// and forwards everything else to the mem_stream below.
class announcing {
 public:
  static constexpr properties capabilities = mem_stream::capabilities;
  using answers = fact_list<negotiated>;

  explicit announcing(mem_stream lower) : lower_(std::move(lower)) {}
  task<result<std::size_t>> read_some(mutable_buffer b, deadline dl) { return lower_.read_some(b, dl); }
  task<result<void>> write(const_buffers b, deadline dl) { return lower_.write(b, dl); }
  task<result<void>> shutdown_write(deadline dl) { return lower_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return lower_.close(dl); }

  result<std::string> query(negotiated) const { return std::string("h2"); }
  result<address> peer_address() const { return address::parse_ip("192.0.2.7:443"); }
  const mem_stream& next_layer() const noexcept { return lower_; }

 private:
  mem_stream lower_;
};

TEST(Query, TypedStackAnswersFromTheLayerThatKnows) {
  auto [a, b] = mem_stream::pair();
  prefix top{announcing(std::move(a)), {.max_message = 4096}};
  EXPECT_EQ(query<negotiated>(top).value(), "h2");                          // two layers down
  EXPECT_EQ(query<fact::peer_address>(top)->to_string(), "192.0.2.7:443");  // by accessor
  EXPECT_EQ(query<fact::max_message>(top).value(), 4096u);                  // prefix itself
  EXPECT_EQ(query<never_answered>(top).error(), errc::not_supported);
  EXPECT_EQ(query<fact::peer_credentials>(top).error(), errc::not_supported);
  // The typed answer is known to be available at compile time: no erased layer between.
  static_assert(!erased_layer<decltype(top)>);
  std::size_t before = allocations;
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(query<fact::max_message>(top));
    EXPECT_TRUE(query<fact::peer_address>(top));
  }
  EXPECT_EQ(allocations - before, 0u) << "a typed query allocates nothing";
}

TEST(Query, TypeErasureForwardsEveryFact) {
  auto [a, b] = mem_stream::pair();
  any_stream erased(announcing(std::move(a)));
  prefix<any_stream> framed(std::move(erased), {.max_message = 100});
  any_connection top(any_message(std::move(framed)));
  EXPECT_EQ(query<negotiated>(top).value(), "h2");
  EXPECT_EQ(query<fact::peer_address>(top)->to_string(), "192.0.2.7:443");
  EXPECT_EQ(top.peer_address()->to_string(), "192.0.2.7:443");
  EXPECT_EQ(query<fact::max_message>(top).value(), 100u);
  EXPECT_EQ(top.message().max_message(), 100u);  // what the concrete sockets say too
  EXPECT_EQ(query<never_answered>(top).error(), errc::not_supported);
  EXPECT_EQ(query<fact::local_address>(top).error(), errc::not_supported);
  any_connection empty;
  EXPECT_EQ(query<fact::peer_address>(empty).error(), errc::not_supported);
}

/// with_descriptor is a bottom layer that owns a descriptor (number 42, never used).
class with_descriptor {
 public:
  static constexpr properties capabilities = mem_stream::capabilities;
  explicit with_descriptor(mem_stream lower) : lower_(std::move(lower)) {}
  task<result<std::size_t>> read_some(mutable_buffer b, deadline dl) { return lower_.read_some(b, dl); }
  task<result<void>> write(const_buffers b, deadline dl) { return lower_.write(b, dl); }
  task<result<void>> shutdown_write(deadline dl) { return lower_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return lower_.close(dl); }
  int native_handle() const noexcept { return 42; }

 private:
  mem_stream lower_;
};

/// rewriting stands for a layer that changes the bytes (as tls does): it forwards facts.
class rewriting {
 public:
  static constexpr properties capabilities = mem_stream::capabilities;
  explicit rewriting(any_stream lower) : lower_(std::move(lower)) {}
  task<result<std::size_t>> read_some(mutable_buffer b, deadline dl) { return lower_.read_some(b, dl); }
  task<result<void>> write(const_buffers b, deadline dl) { return lower_.write(b, dl); }
  task<result<void>> shutdown_write(deadline dl) { return lower_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return lower_.close(dl); }
  const any_stream& next_layer() const noexcept { return lower_; }

 private:
  any_stream lower_;
};

TEST(Query, NativeHandleIsAnsweredOnlyByTheLayerThatOwnsIt) {
  auto [a, b] = mem_stream::pair();
  any_stream bottom(with_descriptor(std::move(a)));
  // Erasure is looked through: the erased bottom layer still answers.
  EXPECT_EQ(query<fact::native_handle>(bottom).value(), 42);
  // A layer above it (one that could encrypt or frame the bytes) does not forward it,
  // typed or erased, while the other facts still come through.
  rewriting above(std::move(bottom));
  EXPECT_EQ(query<fact::native_handle>(above).error(), errc::not_supported);
  any_connection top(any_stream(std::move(above)));
  EXPECT_EQ(query<fact::native_handle>(top).error(), errc::not_supported);
  auto [c, d] = mem_stream::pair();
  EXPECT_EQ(query<fact::native_handle>(any_stream(std::move(c))).error(), errc::not_supported);
}

}  // namespace
}  // namespace strata
