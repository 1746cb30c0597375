// Uses an installed strata: a header and a symbol from the library.
#include <strata/core/address.hpp>

#include <cstdio>

int main() {
  auto a = strata::address::parse_ip("127.0.0.1:7000");
  if (!a || a->to_string() != "127.0.0.1:7000") return 1;
  std::puts("consumer: strata links");
  return 0;
}
