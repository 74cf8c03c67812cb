/* kvresp: a key-value store speaking RESP2, the redis protocol
 * (redis.io/docs/reference/protocol-spec), for `wasmtime run --tcplisten ADDR`
 * (the listening socket is fd 3): enough for redis-cli and redis-benchmark.
 *
 * Commands (names case-insensitive): PING [msg], ECHO msg, GET k, SET k v,
 * DEL k..., EXISTS k..., INCR k, DECR k, INCRBY k n, MGET k..., MSET k v...,
 * DBSIZE, FLUSHALL, FLUSHDB, SELECT 0, QUIT; and what the clients send on
 * connect: CONFIG GET save / appendonly answer "" / "no" (nothing is
 * persisted), any other CONFIG GET an empty array, COMMAND (with any
 * subcommand) an empty array, CLIENT ... +OK, INFO a short server section
 * (ioredis reads "loading:0" from it), HELLO [2] the server's description and
 * HELLO 3 -NOPROTO (RESP2 only; drivers then speak RESP2). Anything else:
 * -ERR unknown command. Requests are RESP arrays of bulk strings or inline
 * commands (a line of words); many requests in one read are answered in
 * order (pipelining).
 *
 * Bounds (a clean -ERR when exceeded): keys MAX_KEY_BYTES, values
 * MAX_VALUE_BYTES, MAX_KEYS keys, MAX_ARGS arguments per command. A request
 * larger than IN_MAX bytes, or output that a client leaves unread past
 * OUT_MAX bytes, closes its connection. At most MAX_CONNS connections.
 *
 * Plain POSIX sockets through wasi-libc: recv, send, poll, fcntl(O_NONBLOCK);
 * accept is __wasi_sock_accept (Debian's wasi-libc declares no accept()). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wasi/api.h>

#define LISTEN_FD 3
#define MAX_CONNS 256
#define MAX_KEY_BYTES 1024
#define MAX_VALUE_BYTES (512 * 1024)
#define MAX_KEYS 100000
#define MAX_ARGS 1024
#define IN_MAX (MAX_VALUE_BYTES + 64 * 1024)
#define OUT_MAX (8 * 1024 * 1024)
#define BUCKETS 65536

/* ---------------------------------------------------------------- store */

struct entry {
  struct entry *next;
  uint32_t hash;
  size_t klen, vlen;
  char *val;
  char key[];
};

static struct entry *table[BUCKETS];
static size_t nkeys;

static uint32_t hash(const char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 16777619u;
  return h;
}

static struct entry **slot(const char *k, size_t n, uint32_t h) {
  struct entry **p = &table[h % BUCKETS];
  while (*p && !((*p)->hash == h && (*p)->klen == n && memcmp((*p)->key, k, n) == 0)) p = &(*p)->next;
  return p;
}

static struct entry *lookup(const char *k, size_t n) { return *slot(k, n, hash(k, n)); }

/* 0 stored; -1 out of memory; -2 too many keys */
static int store(const char *k, size_t n, const char *v, size_t vn) {
  uint32_t h = hash(k, n);
  struct entry **p = slot(k, n, h);
  char *val = malloc(vn ? vn : 1);
  if (!val) return -1;
  memcpy(val, v, vn);
  if (*p) {
    free((*p)->val);
    (*p)->val = val;
    (*p)->vlen = vn;
    return 0;
  }
  if (nkeys >= MAX_KEYS) {
    free(val);
    return -2;
  }
  struct entry *e = malloc(sizeof *e + n);
  if (!e) {
    free(val);
    return -1;
  }
  e->next = NULL;
  e->hash = h;
  e->klen = n;
  e->vlen = vn;
  e->val = val;
  memcpy(e->key, k, n);
  *p = e;
  nkeys++;
  return 0;
}

static int removekey(const char *k, size_t n) {
  struct entry **p = slot(k, n, hash(k, n));
  struct entry *e = *p;
  if (!e) return 0;
  *p = e->next;
  free(e->val);
  free(e);
  nkeys--;
  return 1;
}

static void flushall(void) {
  for (size_t b = 0; b < BUCKETS; b++) {
    while (table[b]) {
      struct entry *e = table[b];
      table[b] = e->next;
      free(e->val);
      free(e);
    }
  }
  nkeys = 0;
}

/* ---------------------------------------------------------------- connections */

struct conn {
  int fd;
  char *in;
  size_t in_len, in_cap;
  char *out;
  size_t out_off, out_len, out_cap;
  int closing, dead;
};

static struct conn *conns[MAX_CONNS];

/* accept(2) on the listening socket: the new descriptor, or -1 with errno (EAGAIN when none waits). */
static int accept_conn(int listener) {
  __wasi_fd_t fd;
  __wasi_errno_t e = __wasi_sock_accept((__wasi_fd_t)listener, 0, &fd);
  if (e != 0) {
    errno = e;
    return -1;
  }
  return (int)fd;
}

static void drop(int i) {
  close(conns[i]->fd);
  free(conns[i]->in);
  free(conns[i]->out);
  free(conns[i]);
  conns[i] = NULL;
}

static void emit(struct conn *c, const char *s, size_t n) {
  if (c->dead) return;
  if (c->out_off > 0 && c->out_len + n > c->out_cap) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  if (c->out_len + n > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + n) cap *= 2;
    char *o = cap <= OUT_MAX ? realloc(c->out, cap) : NULL;
    if (!o) {
      c->dead = 1; /* the client does not read what it asked for */
      return;
    }
    c->out = o;
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, s, n);
  c->out_len += n;
}

static void emits(struct conn *c, const char *s) { emit(c, s, strlen(s)); }

static void emit_int(struct conn *c, long long v) {
  char b[32];
  int n = snprintf(b, sizeof b, ":%lld\r\n", v);
  emit(c, b, (size_t)n);
}

static void emit_bulk(struct conn *c, const char *s, size_t n) {
  char b[32];
  int m = snprintf(b, sizeof b, "$%zu\r\n", n);
  emit(c, b, (size_t)m);
  emit(c, s, n);
  emit(c, "\r\n", 2);
}

static void emit_array(struct conn *c, size_t n) {
  char b[32];
  int m = snprintf(b, sizeof b, "*%zu\r\n", n);
  emit(c, b, (size_t)m);
}

/* ---------------------------------------------------------------- commands */

struct arg {
  const char *p;
  size_t n;
};

static int is(const struct arg *a, const char *name) { return a->n == strlen(name) && strncasecmp(a->p, name, a->n) == 0; }

static int key_ok(struct conn *c, const struct arg *k) {
  if (k->n <= MAX_KEY_BYTES) return 1;
  emits(c, "-ERR key too long\r\n");
  return 0;
}

/* A decimal integer that fits in long long; 0 otherwise. */
static int to_ll(const char *p, size_t n, long long *out) {
  if (n == 0 || n > 20) return 0;
  char b[24];
  memcpy(b, p, n);
  b[n] = 0;
  char *end;
  errno = 0;
  long long v = strtoll(b, &end, 10);
  if (errno || *end || (b[0] != '-' && (b[0] < '0' || b[0] > '9'))) return 0;
  *out = v;
  return 1;
}

static void incrby(struct conn *c, const struct arg *k, long long by) {
  if (!key_ok(c, k)) return;
  struct entry *e = lookup(k->p, k->n);
  long long v = 0;
  if (e && !to_ll(e->val, e->vlen, &v)) return emits(c, "-ERR value is not an integer or out of range\r\n");
  if ((by > 0 && v > LLONG_MAX - by) || (by < 0 && v < LLONG_MIN - by)) return emits(c, "-ERR increment or decrement would overflow\r\n");
  v += by;
  char b[24];
  int n = snprintf(b, sizeof b, "%lld", v);
  int r = store(k->p, k->n, b, (size_t)n);
  if (r == -2) return emits(c, "-ERR max number of keys reached\r\n");
  if (r < 0) return emits(c, "-ERR out of memory\r\n");
  emit_int(c, v);
}

static void wrong_args(struct conn *c, const struct arg *cmd) {
  char b[128];
  int n = snprintf(b, sizeof b, "-ERR wrong number of arguments for '%.*s' command\r\n", (int)(cmd->n > 32 ? 32 : cmd->n), cmd->p);
  emit(c, b, (size_t)n);
}

static const char INFO[] = "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n# Persistence\r\nloading:0\r\n";

static void command(struct conn *c, struct arg *a, size_t argc) {
  if (argc == 0) return;
  struct arg *cmd = &a[0];
  if (is(cmd, "PING")) {
    if (argc == 1) return emits(c, "+PONG\r\n");
    if (argc == 2) return emit_bulk(c, a[1].p, a[1].n);
    return wrong_args(c, cmd);
  }
  if (is(cmd, "ECHO")) {
    if (argc != 2) return wrong_args(c, cmd);
    return emit_bulk(c, a[1].p, a[1].n);
  }
  if (is(cmd, "GET")) {
    if (argc != 2) return wrong_args(c, cmd);
    if (!key_ok(c, &a[1])) return;
    struct entry *e = lookup(a[1].p, a[1].n);
    if (!e) return emits(c, "$-1\r\n");
    return emit_bulk(c, e->val, e->vlen);
  }
  if (is(cmd, "SET")) {
    if (argc != 3) return argc < 3 ? wrong_args(c, cmd) : emits(c, "-ERR syntax error (SET takes no options here)\r\n");
    if (!key_ok(c, &a[1])) return;
    if (a[2].n > MAX_VALUE_BYTES) return emits(c, "-ERR value too large\r\n");
    int r = store(a[1].p, a[1].n, a[2].p, a[2].n);
    if (r == -2) return emits(c, "-ERR max number of keys reached\r\n");
    if (r < 0) return emits(c, "-ERR out of memory\r\n");
    return emits(c, "+OK\r\n");
  }
  if (is(cmd, "MSET")) {
    if (argc < 3 || argc % 2 == 0) return wrong_args(c, cmd);
    for (size_t i = 1; i < argc; i += 2) {
      if (!key_ok(c, &a[i])) return;
      if (a[i + 1].n > MAX_VALUE_BYTES) return emits(c, "-ERR value too large\r\n");
    }
    for (size_t i = 1; i < argc; i += 2) {
      int r = store(a[i].p, a[i].n, a[i + 1].p, a[i + 1].n);
      if (r == -2) return emits(c, "-ERR max number of keys reached\r\n");
      if (r < 0) return emits(c, "-ERR out of memory\r\n");
    }
    return emits(c, "+OK\r\n");
  }
  if (is(cmd, "DEL") || is(cmd, "UNLINK") || is(cmd, "EXISTS")) {
    if (argc < 2) return wrong_args(c, cmd);
    int del = !is(cmd, "EXISTS");
    long long n = 0;
    for (size_t i = 1; i < argc; i++) n += del ? removekey(a[i].p, a[i].n) : lookup(a[i].p, a[i].n) != NULL;
    return emit_int(c, n);
  }
  if (is(cmd, "INCR") || is(cmd, "DECR")) {
    if (argc != 2) return wrong_args(c, cmd);
    return incrby(c, &a[1], is(cmd, "INCR") ? 1 : -1);
  }
  if (is(cmd, "INCRBY") || is(cmd, "DECRBY")) {
    long long by;
    if (argc != 3) return wrong_args(c, cmd);
    if (!to_ll(a[2].p, a[2].n, &by) || by == LLONG_MIN) return emits(c, "-ERR value is not an integer or out of range\r\n");
    return incrby(c, &a[1], is(cmd, "INCRBY") ? by : -by);
  }
  if (is(cmd, "MGET")) {
    if (argc < 2) return wrong_args(c, cmd);
    emit_array(c, argc - 1);
    for (size_t i = 1; i < argc; i++) {
      struct entry *e = lookup(a[i].p, a[i].n);
      if (e) emit_bulk(c, e->val, e->vlen);
      else emits(c, "$-1\r\n");
    }
    return;
  }
  if (is(cmd, "DBSIZE")) return emit_int(c, (long long)nkeys);
  if (is(cmd, "FLUSHALL") || is(cmd, "FLUSHDB")) {
    flushall();
    return emits(c, "+OK\r\n");
  }
  if (is(cmd, "SELECT")) {
    if (argc != 2) return wrong_args(c, cmd);
    return a[1].n == 1 && a[1].p[0] == '0' ? emits(c, "+OK\r\n") : emits(c, "-ERR DB index is out of range\r\n");
  }
  /* what redis-benchmark and redis-cli ask on connect */
  if (is(cmd, "CONFIG")) {
    /* redis-benchmark reads these two on connect (and warns without them); nothing is persisted */
    if (argc == 3 && is(&a[1], "GET") && is(&a[2], "save")) return emits(c, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    if (argc == 3 && is(&a[1], "GET") && is(&a[2], "appendonly")) return emits(c, "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    if (argc >= 2 && is(&a[1], "GET")) return emits(c, "*0\r\n");
    return emits(c, "-ERR only CONFIG GET is supported\r\n");
  }
  if (is(cmd, "COMMAND")) return emits(c, "*0\r\n");
  /* what drivers ask on connect (ioredis' ready check reads "loading:0") */
  if (is(cmd, "INFO")) return emit_bulk(c, INFO, sizeof INFO - 1);
  if (is(cmd, "HELLO")) {
    /* RESP2 only: HELLO [2] answers the server's description, HELLO 3 the error Redis gives for a protocol it does not speak */
    if (argc >= 2 && !(a[1].n == 1 && a[1].p[0] == '2')) return emits(c, "-NOPROTO unsupported protocol version\r\n");
    return emits(c, "*6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:2\r\n");
  }
  if (is(cmd, "CLIENT")) return emits(c, "+OK\r\n");
  if (is(cmd, "QUIT")) {
    emits(c, "+OK\r\n");
    c->closing = 1;
    return;
  }
  char b[160];
  int n = snprintf(b, sizeof b, "-ERR unknown command '%.*s'\r\n", (int)(cmd->n > 64 ? 64 : cmd->n), cmd->p);
  for (int i = 0; i < n - 2; i++)
    if (b[i] == '\r' || b[i] == '\n') b[i] = ' ';
  emit(c, b, (size_t)n);
}

/* ---------------------------------------------------------------- RESP parsing */

static struct arg args[MAX_ARGS];

/* A CRLF-terminated line at p (n bytes available): its length without CRLF, or -1 when incomplete. */
static long line(const char *p, size_t n) {
  const char *nl = memchr(p, '\n', n);
  if (!nl) return -1;
  long l = (long)(nl - p);
  return l > 0 && p[l - 1] == '\r' ? l - 1 : l;
}

static int parse_len(const char *p, long n, long long *out) { return to_ll(p, (size_t)n, out); }

/*
 * One request at c->in: returns bytes used (> 0) after answering it, 0 when
 * it is incomplete, -1 on a protocol error (answered; the connection closes).
 */
static long request(struct conn *c) {
  const char *p = c->in;
  size_t n = c->in_len;
  if (n == 0) return 0;
  if (p[0] != '*') {
    /* inline: a line of words separated by spaces */
    long l = line(p, n);
    if (l < 0) return 0;
    size_t argc = 0;
    for (long i = 0; i < l;) {
      while (i < l && (p[i] == ' ' || p[i] == '\t')) i++;
      if (i >= l) break;
      long s = i;
      while (i < l && p[i] != ' ' && p[i] != '\t') i++;
      if (argc == MAX_ARGS) {
        emits(c, "-ERR too many arguments\r\n");
        return -1;
      }
      args[argc++] = (struct arg){p + s, (size_t)(i - s)};
    }
    command(c, args, argc);
    return (long)(memchr(p, '\n', n) - (const void *)p) + 1;
  }
  long l = line(p, n);
  if (l < 0) return 0;
  long long count;
  if (!parse_len(p + 1, l - 1, &count) || count > MAX_ARGS) {
    emits(c, count > MAX_ARGS ? "-ERR too many arguments\r\n" : "-ERR Protocol error: invalid multibulk length\r\n");
    return -1;
  }
  size_t at = (size_t)((const char *)memchr(p, '\n', n) - p) + 1;
  /* an empty or negative count is no request (as Redis takes it): the line is consumed, nothing is answered */
  if (count <= 0) return (long)at;
  for (long long i = 0; i < count; i++) {
    if (at >= n) return 0;
    if (p[at] != '$') {
      emits(c, "-ERR Protocol error: expected '$'\r\n");
      return -1;
    }
    long hl = line(p + at, n - at);
    if (hl < 0) return 0;
    long long len;
    if (!parse_len(p + at + 1, hl - 1, &len) || len < 0 || len > MAX_VALUE_BYTES + MAX_KEY_BYTES) {
      emits(c, "-ERR Protocol error: invalid bulk length\r\n");
      return -1;
    }
    at += (size_t)((const char *)memchr(p + at, '\n', n - at) - (p + at)) + 1;
    if (at + (size_t)len + 2 > n) return 0;
    args[i] = (struct arg){p + at, (size_t)len};
    at += (size_t)len + 2;
  }
  command(c, args, (size_t)count);
  return (long)at;
}

/* Answers every whole request buffered; -1 to close the connection. */
static int serve(struct conn *c) {
  size_t used = 0;
  while (!c->closing && !c->dead) {
    char *base = c->in;
    size_t len = c->in_len;
    c->in += used;
    c->in_len -= used;
    long r = request(c);
    c->in = base;
    c->in_len = len;
    if (r < 0) {
      c->closing = 1;
      break;
    }
    if (r == 0) break;
    used += (size_t)r;
  }
  memmove(c->in, c->in + used, c->in_len - used);
  c->in_len -= used;
  return c->dead ? -1 : 0;
}

/* Sends what is pending; -1 on a dead connection. */
static int flush(struct conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, 0);
    if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    c->out_off += (size_t)w;
  }
  c->out_off = c->out_len = 0;
  return 0;
}

/* Reads what is there and answers it; -1 to close the connection (peer gone, or a request past IN_MAX). */
static int readable(struct conn *c) {
  for (;;) {
    if (c->in_len == c->in_cap) {
      if (c->in_cap >= IN_MAX) {
        emits(c, "-ERR request too large\r\n");
        c->closing = 1;
        return 0;
      }
      size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
      if (cap > IN_MAX) cap = IN_MAX;
      char *in = realloc(c->in, cap);
      if (!in) return -1;
      c->in = in;
      c->in_cap = cap;
    }
    ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (r == 0) { /* the client is done: answer what it sent, then close */
      c->closing = 1;
      return 0;
    }
    c->in_len += (size_t)r;
    if (serve(c) < 0) return -1;
    if (c->closing) return 0;
  }
}

int main(void) {
  if (fcntl(LISTEN_FD, F_SETFL, fcntl(LISTEN_FD, F_GETFL) | O_NONBLOCK) < 0) {
    perror("kvresp: fd 3 is not a listening socket (run with --tcplisten ADDR)");
    return 1;
  }
  for (;;) {
    struct pollfd fds[MAX_CONNS + 1];
    int owner[MAX_CONNS + 1];
    nfds_t n = 0;
    fds[n] = (struct pollfd){.fd = LISTEN_FD, .events = POLLIN};
    owner[n++] = -1;
    for (int i = 0; i < MAX_CONNS; i++) {
      struct conn *c = conns[i];
      if (!c) continue;
      short ev = c->out_len > c->out_off ? POLLOUT : 0;
      if (!c->closing) ev |= POLLIN;
      /* wasi-libc's poll() refuses (ENOSYS) an entry that asks for nothing: leave it out (fd -1) */
      fds[n] = (struct pollfd){.fd = ev ? c->fd : -1, .events = ev};
      owner[n++] = i;
    }
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      perror("kvresp: poll");
      return 1;
    }
    for (nfds_t k = 1; k < n; k++) {
      int i = owner[k];
      struct conn *c = conns[i];
      short re = fds[k].revents;
      if (re & POLLNVAL) {
        drop(i);
        continue;
      }
      int dead = 0;
      if (re & (POLLIN | POLLHUP | POLLERR)) dead = readable(c) < 0;
      if (!dead) dead = flush(c) < 0;
      if (dead || (c->closing && c->out_off == c->out_len)) drop(i);
    }
    if (fds[0].revents & POLLIN) {
      for (;;) {
        int fd = accept_conn(LISTEN_FD);
        if (fd < 0) break;
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++)
          if (!conns[i]) slot = i;
        if (slot < 0 || !(conns[slot] = calloc(1, sizeof(struct conn)))) {
          close(fd);
          continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns[slot]->fd = fd;
      }
    }
  }
}
