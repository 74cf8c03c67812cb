/*
 * hash: tight integer loops.
 *
 *   hash.wasm [rounds]      (default rounds = 250)
 *
 * Fills a 64 KiB buffer from a xorshift64* generator, then runs `rounds`
 * passes over it.  Every pass computes a byte-wise FNV-1a (32-bit, one
 * multiply per byte) and an xxhash64-style 4-lane mix over 8-byte words, and
 * perturbs the buffer with the results so that passes depend on each other.
 * Prints "hash(rounds) = <fnv> <xx>".
 */
#include "common.h"

#define BUF_WORDS 8192 /* 64 KiB */

static uint64_t buf[BUF_WORDS];

static const uint64_t P1 = 0x9E3779B185EBCA87ull;
static const uint64_t P2 = 0xC2B2AE3D27D4EB4Full;
static const uint64_t P3 = 0x165667B19E3779F9ull;
static const uint64_t P4 = 0x85EBCA77C2B2AE63ull;
static const uint64_t P5 = 0x27D4EB2F165667C5ull;

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static void fill(uint64_t seed) {
  uint64_t s = seed ? seed : 1;
  for (int i = 0; i < BUF_WORDS; i++) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    buf[i] = s * 0x2545F4914F6CDD1Dull;
  }
}

__attribute__((noinline)) static uint32_t fnv1a32(const uint8_t *p, size_t n, uint32_t h) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

static inline uint64_t xx_round(uint64_t acc, uint64_t in) {
  acc += in * P2;
  acc = rotl64(acc, 31);
  return acc * P1;
}

static inline uint64_t xx_merge(uint64_t acc, uint64_t v) {
  acc ^= xx_round(0, v);
  return acc * P1 + P4;
}

__attribute__((noinline)) static uint64_t xxmix64(const uint64_t *w, size_t n, uint64_t seed) {
  uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    v1 = xx_round(v1, w[i]);
    v2 = xx_round(v2, w[i + 1]);
    v3 = xx_round(v3, w[i + 2]);
    v4 = xx_round(v4, w[i + 3]);
  }
  uint64_t h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
  h = xx_merge(h, v1);
  h = xx_merge(h, v2);
  h = xx_merge(h, v3);
  h = xx_merge(h, v4);
  h += (uint64_t)n * 8;
  for (; i < n; i++) h = rotl64(h ^ xx_round(0, w[i]), 27) * P1 + P4;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h + P5;
}

int main(int argc, char **argv) {
  int64_t rounds = arg_size(argc, argv, 250, "hash.wasm [rounds]");
  if (rounds < 0) return 2;
  fill(0x0123456789ABCDEFull);
  uint32_t fnv = 2166136261u;
  uint64_t xx = 0;
  for (int64_t r = 0; r < rounds; r++) {
    fnv = fnv1a32((const uint8_t *)buf, sizeof buf, fnv);
    xx = xxmix64(buf, BUF_WORDS, xx ^ fnv);
    /* Feed the results back so no pass can be hoisted or skipped. */
    buf[(size_t)(xx % BUF_WORDS)] ^= xx;
    buf[fnv % BUF_WORDS] += fnv;
  }
  out_str("hash(");
  out_u64((uint64_t)rounds);
  out_str(") = ");
  out_hex(fnv, 8);
  out_char(' ');
  out_hex(xx, 16);
  out_char('\n');
  out_flush();
  return 0;
}
