/*
 * entropy: test helper that consumes every nondeterministic WASI input.
 *
 *   entropy.wasm [rounds]   (default rounds = 20)
 *
 * Reads all of stdin (fd_read until EOF) and computes its length and 64-bit
 * FNV-1a hash.  Then, for `rounds` iterations, reads CLOCK_REALTIME and
 * CLOCK_MONOTONIC (clock_time_get) and 16 bytes from getentropy()
 * (random_get), and mixes all of them into a running 64-bit hash; it also
 * tracks the smallest and largest monotonic delta between consecutive
 * iterations, which are folded into the final mix.  Prints
 *
 *   entropy: stdin <len> bytes <fnv> ; <rounds> rounds ; mix <hash>
 *
 * The stdin part is a pure function of the input; the mix differs from run
 * to run on a live host by design (and is reproducible under replay).
 *
 * Apart from the stdin read loop, control flow does not depend on any
 * nondeterministic value (branch-free min/max, fixed-width hex output), so
 * the instruction count of a run depends only on argv and stdin.
 *
 * Imports: args_get, args_sizes_get, fd_read, fd_write, clock_time_get,
 * random_get, proc_exit.
 */
#define _DEFAULT_SOURCE 1
#include "common.h"

#include <sys/random.h>
#include <time.h>

static const uint64_t FNV64_OFFSET = 0xcbf29ce484222325ull;
static const uint64_t FNV64_PRIME = 0x00000100000001b3ull;

static const uint64_t P1 = 0x9E3779B185EBCA87ull;
static const uint64_t P2 = 0xC2B2AE3D27D4EB4Full;

static uint8_t in_buf[4096];

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* One xxhash64-style round: absorb v into h. */
static inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= rotl64(v * P2, 31) * P1;
  return rotl64(h, 27) * P1 + P2;
}

static inline uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P1;
  h ^= h >> 32;
  return h;
}

static inline uint64_t ts_ns(const struct timespec *ts) {
  return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

static inline uint64_t load64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Branch-free min/max, so the count does not depend on the clock values. */
static inline uint64_t min_u64(uint64_t a, uint64_t b) {
  uint64_t m = (uint64_t)0 - (uint64_t)(a < b);
  return (a & m) | (b & ~m);
}

static inline uint64_t max_u64(uint64_t a, uint64_t b) {
  uint64_t m = (uint64_t)0 - (uint64_t)(a > b);
  return (a & m) | (b & ~m);
}

static void fail(const char *what) {
  out_str("entropy: ");
  out_str(what);
  out_str(" failed\n");
  out_flush_fd(2);
}

int main(int argc, char **argv) {
  int64_t rounds = arg_size(argc, argv, 20, "entropy.wasm [rounds]");
  if (rounds < 0) return 2;

  /* stdin: length and FNV-1a 64. */
  uint64_t in_len = 0, in_hash = FNV64_OFFSET;
  for (;;) {
    ssize_t n = read(0, in_buf, sizeof in_buf);
    if (n == 0) break;
    if (n < 0) {
      fail("read(0)");
      return 1;
    }
    for (ssize_t i = 0; i < n; i++) {
      in_hash ^= in_buf[i];
      in_hash *= FNV64_PRIME;
    }
    in_len += (uint64_t)n;
  }

  /* Clocks and randomness. */
  uint64_t h = mix(P1 ^ in_hash, in_len);
  uint64_t prev = 0, dmin = UINT64_MAX, dmax = 0;
  for (int64_t r = 0; r < rounds; r++) {
    struct timespec rt, mt;
    uint8_t rnd[16];
    if (clock_gettime(CLOCK_REALTIME, &rt) != 0) {
      fail("clock_gettime(CLOCK_REALTIME)");
      return 1;
    }
    if (clock_gettime(CLOCK_MONOTONIC, &mt) != 0) {
      fail("clock_gettime(CLOCK_MONOTONIC)");
      return 1;
    }
    if (getentropy(rnd, sizeof rnd) != 0) {
      fail("getentropy");
      return 1;
    }
    uint64_t now = ts_ns(&mt);
    h = mix(h, ts_ns(&rt));
    h = mix(h, now);
    h = mix(h, load64(rnd));
    h = mix(h, load64(rnd + 8));
    if (r > 0) {
      uint64_t d = now - prev;
      dmin = min_u64(dmin, d);
      dmax = max_u64(dmax, d);
    }
    prev = now;
  }
  h = mix(h, dmin);
  h = mix(h, dmax);
  h = avalanche(mix(h, (uint64_t)rounds));

  out_str("entropy: stdin ");
  out_u64(in_len);
  out_str(" bytes ");
  out_hex(in_hash, 16);
  out_str(" ; ");
  out_u64((uint64_t)rounds);
  out_str(" rounds ; mix ");
  out_hex(h, 16);
  out_char('\n');
  out_flush();
  return 0;
}
