/*
 * Tiny I/O helpers shared by the C guest samples.
 *
 * The guests deliberately avoid <stdio.h>: pulling in stdio makes wasi-libc
 * import fd_close / fd_seek / fd_fdstat_get (for stdout buffering and the
 * exit-time flush).  Writing through write(2) keeps the import set to
 *   args_get, args_sizes_get, fd_write, proc_exit.
 *
 * Output is accumulated in a static line buffer and written with a single
 * fd_write per out_flush() call.
 */
#ifndef FTVM_GUEST_COMMON_H
#define FTVM_GUEST_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static char out_buf_[512];
static size_t out_len_;

static inline void out_flush_fd(int fd) {
  size_t off = 0;
  while (off < out_len_) {
    ssize_t n = write(fd, out_buf_ + off, out_len_ - off);
    if (n <= 0) break;
    off += (size_t)n;
  }
  out_len_ = 0;
}

static inline void out_flush(void) { out_flush_fd(1); }

static inline void out_char(char c) {
  if (out_len_ == sizeof out_buf_) out_flush();
  out_buf_[out_len_++] = c;
}

static inline void out_str(const char *s) {
  while (*s) out_char(*s++);
}

static inline void out_u64(uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v);
  while (n) out_char(tmp[--n]);
}

static inline void out_i64(int64_t v) {
  if (v < 0) {
    out_char('-');
    out_u64((uint64_t)0 - (uint64_t)v);
  } else {
    out_u64((uint64_t)v);
  }
}

/* Fixed-width lowercase hex with 0x prefix, `digits` nibbles. */
static inline void out_hex(uint64_t v, int digits) {
  static const char hex[] = "0123456789abcdef";
  out_str("0x");
  for (int i = digits - 1; i >= 0; i--) out_char(hex[(v >> (4 * i)) & 15u]);
}

/*
 * Fixed-point decimal output of a double with `decimals` (<= 15) fractional
 * digits, rounded half away from zero.  Deterministic (pure IEEE-754 f64
 * arithmetic); valid for |v| * 10^decimals < 2^63.
 */
static inline void out_fixed(double v, int decimals) {
  double scale = 1.0;
  for (int i = 0; i < decimals; i++) scale *= 10.0;
  int neg = v < 0;
  double a = (neg ? -v : v) * scale + 0.5;
  uint64_t q = (uint64_t)a;
  uint64_t p = 1;
  for (int i = 0; i < decimals; i++) p *= 10u;
  if (neg && q != 0) out_char('-');
  out_u64(q / p);
  if (decimals > 0) {
    out_char('.');
    uint64_t frac = q % p;
    char tmp[24];
    for (int i = decimals - 1; i >= 0; i--) {
      tmp[i] = (char)('0' + (int)(frac % 10u));
      frac /= 10u;
    }
    for (int i = 0; i < decimals; i++) out_char(tmp[i]);
  }
}

/*
 * Parses argv[1] as a non-negative decimal integer.  Returns `dflt` when the
 * argument is absent; on a malformed argument prints a usage line to stderr
 * and returns -1.
 */
static inline int64_t arg_size(int argc, char **argv, int64_t dflt, const char *usage) {
  if (argc < 2) return dflt;
  const char *s = argv[1];
  int64_t v = 0;
  if (*s == '\0') goto bad;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') goto bad;
    v = v * 10 + (*s - '0');
    if (v > ((int64_t)1 << 40)) goto bad;
  }
  return v;
bad:
  out_str("usage: ");
  out_str(usage);
  out_char('\n');
  out_flush_fd(2);
  return -1;
}

#endif
