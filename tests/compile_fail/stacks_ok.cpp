// The control case: valid typed stacks compile with the same includes as the refusals.
#include "strata/adapt/crlf.hpp"
#include "strata/adapt/prefix.hpp"
#include "strata/core/any.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/unix.hpp"

using tcp_messages = strata::prefix<strata::tcp::stream>;
using unix_lines = strata::crlf<strata::uds::stream>;
using dynamic_messages = strata::prefix<strata::any_stream>;

static_assert(tcp_messages::capabilities.unit == strata::unit::message);
static_assert(tcp_messages::capabilities.reliable);
static_assert(tcp_messages::capabilities.domain == strata::domain::net);
static_assert(unix_lines::capabilities.domain == strata::domain::ipc);
static_assert(strata::message_socket<tcp_messages>);
static_assert(strata::message_socket<dynamic_messages>);

int main() {}
