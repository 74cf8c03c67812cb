/*
 * fib: naive doubly-recursive Fibonacci.
 *
 *   fib.wasm [n]      (default n = 32)
 *
 * Prints "fib(n) = F(n)".  Exercises deep and very frequent recursion
 * (about 2 * F(n) calls, recursion depth n).
 */
#include "common.h"

/* disable_tail_calls keeps clang from turning the second call into an
 * accumulator loop, so the call tree really is the naive one. */
__attribute__((noinline, disable_tail_calls)) static uint64_t fib(uint32_t n) {
  if (n < 2) return n;
  return fib(n - 1) + fib(n - 2);
}

int main(int argc, char **argv) {
  int64_t n = arg_size(argc, argv, 32, "fib.wasm [n]  (n <= 90)");
  if (n < 0 || n > 90) return 2;
  uint64_t r = fib((uint32_t)n);
  out_str("fib(");
  out_u64((uint64_t)n);
  out_str(") = ");
  out_u64(r);
  out_char('\n');
  out_flush();
  return 0;
}
