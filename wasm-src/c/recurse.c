/*
 * recurse: deep recursion with large frames (test helper).
 *
 *   recurse.wasm [depth]      (default depth = 1000)
 *
 * rec() keeps 32 64-bit scalars live across its recursive call (they become
 * wasm locals, i.e. host/engine stack) and an array of 16 u32 in the C shadow
 * stack in linear memory that is read back after the call returns.  The
 * module is linked with a 1 MiB shadow stack placed first in memory
 * (--stack-first), so overflowing it traps with an out-of-bounds access
 * instead of corrupting data.  Prints "recurse(depth) = 0x<64-bit sum>".
 */
#include "common.h"

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

#define MIX(x, k) (rotl64((x) ^ (uint64_t)(k), 23) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull)

/* Out-of-line so the array really has to exist in (linear) memory. */
__attribute__((noinline)) static void fill_frame(uint32_t *a, unsigned n, uint64_t seed) {
  for (unsigned i = 0; i < n; i++) {
    seed = MIX(seed, i);
    a[i] = (uint32_t)(seed >> 32);
  }
}

__attribute__((noinline)) static uint64_t sum_frame(const uint32_t *a, unsigned n) {
  uint64_t s = 0;
  for (unsigned i = 0; i < n; i++) s += (uint64_t)a[i] * (i + 1);
  return s;
}

__attribute__((noinline, disable_tail_calls)) static uint64_t rec(uint32_t depth, uint64_t seed) {
  uint32_t frame[16];
  uint64_t v0 = MIX(seed, depth);
  uint64_t v1 = MIX(v0, 1);
  uint64_t v2 = MIX(v1, 2);
  uint64_t v3 = MIX(v2, 3);
  uint64_t v4 = MIX(v3, 4);
  uint64_t v5 = MIX(v4, 5);
  uint64_t v6 = MIX(v5, 6);
  uint64_t v7 = MIX(v6, 7);
  uint64_t v8 = MIX(v7, 8);
  uint64_t v9 = MIX(v8, 9);
  uint64_t v10 = MIX(v9, 10);
  uint64_t v11 = MIX(v10, 11);
  uint64_t v12 = MIX(v11, 12);
  uint64_t v13 = MIX(v12, 13);
  uint64_t v14 = MIX(v13, 14);
  uint64_t v15 = MIX(v14, 15);
  uint64_t v16 = MIX(v15, 16);
  uint64_t v17 = MIX(v16, 17);
  uint64_t v18 = MIX(v17, 18);
  uint64_t v19 = MIX(v18, 19);
  uint64_t v20 = MIX(v19, 20);
  uint64_t v21 = MIX(v20, 21);
  uint64_t v22 = MIX(v21, 22);
  uint64_t v23 = MIX(v22, 23);
  uint64_t v24 = MIX(v23, 24);
  uint64_t v25 = MIX(v24, 25);
  uint64_t v26 = MIX(v25, 26);
  uint64_t v27 = MIX(v26, 27);
  uint64_t v28 = MIX(v27, 28);
  uint64_t v29 = MIX(v28, 29);
  uint64_t v30 = MIX(v29, 30);
  uint64_t v31 = MIX(v30, 31);
  fill_frame(frame, 16, v31);
  uint64_t r = depth == 0 ? sum_frame(frame, 16) : rec(depth - 1, v31 ^ v7);
  /* Every scalar and the array are consumed after the call, in an order that
   * depends on r, so nothing can be folded before the call. */
  uint64_t acc = r;
  acc = MIX(acc, v0);
  acc = MIX(acc, v1);
  acc = MIX(acc, v2);
  acc = MIX(acc, v3);
  acc = MIX(acc, v4);
  acc = MIX(acc, v5);
  acc = MIX(acc, v6);
  acc = MIX(acc, v7);
  acc = MIX(acc, v8);
  acc = MIX(acc, v9);
  acc = MIX(acc, v10);
  acc = MIX(acc, v11);
  acc = MIX(acc, v12);
  acc = MIX(acc, v13);
  acc = MIX(acc, v14);
  acc = MIX(acc, v15);
  acc = MIX(acc, v16);
  acc = MIX(acc, v17);
  acc = MIX(acc, v18);
  acc = MIX(acc, v19);
  acc = MIX(acc, v20);
  acc = MIX(acc, v21);
  acc = MIX(acc, v22);
  acc = MIX(acc, v23);
  acc = MIX(acc, v24);
  acc = MIX(acc, v25);
  acc = MIX(acc, v26);
  acc = MIX(acc, v27);
  acc = MIX(acc, v28);
  acc = MIX(acc, v29);
  acc = MIX(acc, v30);
  acc = MIX(acc, v31);
  return acc + sum_frame(frame, 16);
}

int main(int argc, char **argv) {
  int64_t depth = arg_size(argc, argv, 1000, "recurse.wasm [depth]");
  if (depth < 0 || depth > 0xffffffffll) return 2;
  uint64_t s = rec((uint32_t)depth, 0x5EED);
  out_str("recurse(");
  out_u64((uint64_t)depth);
  out_str(") = ");
  out_hex(s, 16);
  out_char('\n');
  out_flush();
  return 0;
}
