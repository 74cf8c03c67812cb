/*
 * trap: deterministic work followed by an integer division by zero (test
 * helper).
 *
 *   trap.wasm [iterations] [divisor]      (defaults: 1000, 0)
 *
 * Runs `iterations` rounds of an integer mixing loop, prints
 *   "trap(iterations) = 0x<acc>, dividing by <divisor>"
 * and then divides by `divisor` with an i32.div_u.  With the default divisor
 * of 0 the module traps ("RuntimeError: divide by zero" on V8); with a
 * non-zero divisor it prints the quotient and exits 0.
 */
#include "common.h"

/* volatile: the default divisor is read from linear memory at run time, so
 * the compiler cannot see the division by zero (and turn it into
 * `unreachable`, or drop it). */
static volatile uint32_t default_divisor = 0;

__attribute__((noinline)) static uint32_t work(uint32_t x, uint32_t i) {
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return x * 0x9E3779B1u + i;
}

int main(int argc, char **argv) {
  int64_t n = arg_size(argc, argv, 1000, "trap.wasm [iterations] [divisor]");
  if (n < 0) return 2;
  uint32_t divisor = default_divisor;
  if (argc > 2) {
    int64_t d = arg_size(argc - 1, argv + 1, 0, "trap.wasm [iterations] [divisor]");
    if (d < 0 || d > 0xffffffffll) return 2;
    divisor = (uint32_t)d;
  }
  uint32_t acc = 0x12345678u;
  for (int64_t i = 0; i < n; i++) acc = work(acc, (uint32_t)i);
  out_str("trap(");
  out_u64((uint64_t)n);
  out_str(") = ");
  out_hex(acc, 8);
  out_str(", dividing by ");
  out_u64(divisor);
  out_char('\n');
  out_flush();
  uint32_t q = acc / divisor; /* traps when divisor == 0 */
  out_str("quotient = ");
  out_u64(q);
  out_char('\n');
  out_flush();
  return 0;
}
