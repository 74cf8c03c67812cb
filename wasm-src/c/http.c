/* http: a small HTTP/1.1 server for `wasmtime run --tcplisten ADDR` (the
 * listening socket is fd 3), written with plain POSIX sockets through
 * wasi-libc: recv, send, shutdown, poll, fcntl(O_NONBLOCK), and accept as
 * __wasi_sock_accept (Debian's wasi-libc declares no accept()).
 *
 * Routes:
 *   GET  /       a small HTML page
 *   GET  /big    1,000,000 bytes, byte i = 'a' + ((i ^ (i >> 7)) % 26), with Content-Length
 *   POST /echo   (also /sum) reads the body (Content-Length or
 *                Transfer-Encoding: chunked) and answers
 *                {"length":N,"fnv1a32":"xxxxxxxx"} (FNV-1a 32 of the body)
 *   anything else: 404
 * Keep-alive by default (HTTP/1.1), several requests per connection, in
 * order; `Connection: close` (or HTTP/1.0 without keep-alive) closes after the
 * response. `Expect: 100-continue` is answered at once. Many connections at
 * once through poll(); a send that writes less than asked keeps the rest
 * for when the socket is writable again.
 *
 * Bounds: MAX_CONNS connections (more are closed at once), request head
 * IN_CAP bytes (431 and close past it), chunk-size lines 64 bytes, output
 * OUT_CAP bytes per connection (the /big body is generated as it drains). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
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
#define IN_CAP 16384
#define OUT_CAP 65536
#define BIG_BYTES 1000000u

enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNK_SIZE, BODY_CHUNK_DATA, BODY_CHUNK_CRLF, BODY_TRAILER };
enum route { R_NONE, R_ECHO };

struct conn {
  int fd;
  /* input: unparsed bytes */
  size_t in_len;
  char in[IN_CAP];
  /* output: out[out_off..out_len) waits to be sent */
  size_t out_off, out_len;
  char out[OUT_CAP];
  /* /big bytes still to generate, and the next byte's index */
  uint32_t big_left, big_at;
  /* the request whose body is being read */
  enum body_mode body;
  enum route route;
  uint64_t body_left; /* BODY_LENGTH: bytes left; BODY_CHUNK_DATA: bytes left in the chunk */
  uint64_t body_len;
  uint32_t fnv;
  int keep_alive;
  /* the request was HTTP/1.0: keep-alive is said back (RFC 9112 section 9.3) */
  int http10;
  /* close once the output is sent */
  int closing;
  int peer_closed;
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

static uint8_t big_byte(uint32_t i) { return (uint8_t)('a' + ((i ^ (i >> 7)) % 26)); }

static void drop(int i) {
  close(conns[i]->fd);
  free(conns[i]);
  conns[i] = NULL;
}

/* Appends to the output; 0 when it does not fit (the caller waits for the output to drain first). */
static int put(struct conn *c, const char *s, size_t n) {
  if (c->out_off > 0 && c->out_len + n > OUT_CAP) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  if (c->out_len + n > OUT_CAP) return 0;
  memcpy(c->out + c->out_len, s, n);
  c->out_len += n;
  return 1;
}

/* The Connection header an answer carries: close, or keep-alive for an HTTP/1.0 client that asked for it. */
static const char *connection_header(const struct conn *c) {
  if (!c->keep_alive) return "Connection: close\r\n";
  return c->http10 ? "Connection: keep-alive\r\n" : "";
}

static void respond(struct conn *c, int status, const char *reason, const char *type, const char *body, size_t body_len) {
  char head[512];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status, reason, type, body_len,
                   connection_header(c));
  put(c, head, (size_t)n);
  put(c, body, body_len);
  if (!c->keep_alive) c->closing = 1;
}

static const char PAGE[] =
    "<!doctype html>\n<html><head><title>ftvm http sample</title></head>\n"
    "<body><h1>Hello from a WebAssembly guest</h1><p>Try /big or POST /echo.</p></body></html>\n";

static void finish_body(struct conn *c) {
  char body[96];
  int n = snprintf(body, sizeof body, "{\"length\":%llu,\"fnv1a32\":\"%08x\"}\n", (unsigned long long)c->body_len, c->fnv);
  respond(c, 200, "OK", "application/json", body, (size_t)n);
  c->body = BODY_NONE;
  c->route = R_NONE;
}

static void bad(struct conn *c, int status, const char *reason) {
  c->keep_alive = 0;
  c->body = BODY_NONE;
  respond(c, status, reason, "text/plain", reason, strlen(reason));
  c->in_len = 0;
}

/* A header's value if `line` is that header (case-insensitive name), else NULL. */
static const char *header(const char *line, size_t len, const char *name, size_t *vlen) {
  size_t n = strlen(name);
  if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') return NULL;
  const char *v = line + n + 1;
  const char *end = line + len;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
  *vlen = (size_t)(end - v);
  return v;
}

static int token_in(const char *v, size_t n, const char *tok) {
  size_t t = strlen(tok);
  for (size_t i = 0; i + t <= n; i++) {
    if (strncasecmp(v + i, tok, t) == 0 && (i == 0 || v[i - 1] == ' ' || v[i - 1] == ',') &&
        (i + t == n || v[i + t] == ' ' || v[i + t] == ','))
      return 1;
  }
  return 0;
}

/* Parses one request head at the start of c->in (ending at `end`, the blank line's last byte + 1). */
static void request(struct conn *c, size_t end) {
  char *p = c->in;
  char *eol = memchr(p, '\r', end);
  if (!eol) return bad(c, 400, "Bad Request");
  char *sp1 = memchr(p, ' ', (size_t)(eol - p));
  char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  if (!sp1 || !sp2) return bad(c, 400, "Bad Request");
  size_t mlen = (size_t)(sp1 - p), plen = (size_t)(sp2 - sp1 - 1), vlen = (size_t)(eol - sp2 - 1);
  char *path = sp1 + 1;
  char *version = sp2 + 1;
  if (vlen != 8 || strncmp(version, "HTTP/1.", 7) != 0) return bad(c, 400, "Bad Request");
  int http11 = version[7] == '1';
  c->keep_alive = http11;
  c->http10 = !http11;
  uint64_t length = 0;
  int has_length = 0, chunked = 0, expect_continue = 0;
  for (char *line = eol + 2; line < p + end - 2;) {
    char *le = memchr(line, '\r', (size_t)(p + end - line));
    if (!le) return bad(c, 400, "Bad Request");
    size_t ll = (size_t)(le - line), n;
    const char *v;
    if ((v = header(line, ll, "Content-Length", &n))) {
      if (n == 0 || n > 15) return bad(c, 400, "Bad Request");
      length = 0;
      for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return bad(c, 400, "Bad Request");
        length = length * 10 + (uint64_t)(v[i] - '0');
      }
      has_length = 1;
    } else if ((v = header(line, ll, "Transfer-Encoding", &n))) {
      if (!token_in(v, n, "chunked")) return bad(c, 501, "Not Implemented");
      chunked = 1;
    } else if ((v = header(line, ll, "Connection", &n))) {
      if (token_in(v, n, "close")) c->keep_alive = 0;
      else if (token_in(v, n, "keep-alive")) c->keep_alive = 1;
    } else if ((v = header(line, ll, "Expect", &n))) {
      if (token_in(v, n, "100-continue")) expect_continue = 1;
    }
    line = le + 2;
  }
  int is_get = mlen == 3 && memcmp(p, "GET", 3) == 0;
  int is_head = mlen == 4 && memcmp(p, "HEAD", 4) == 0;
  int is_post = mlen == 4 && memcmp(p, "POST", 4) == 0;
  int echo = is_post && ((plen == 5 && memcmp(path, "/echo", 5) == 0) || (plen == 4 && memcmp(path, "/sum", 4) == 0));
  int root = (is_get || is_head) && plen == 1 && path[0] == '/';
  int big = (is_get || is_head) && plen == 4 && memcmp(path, "/big", 4) == 0;
  /* the head is parsed: what follows is the body or the next request */
  memmove(c->in, c->in + end, c->in_len - end);
  c->in_len -= end;
  c->route = echo ? R_ECHO : R_NONE;
  c->body_len = 0;
  c->fnv = 2166136261u;
  /* A body is read (and, off /echo, discarded) before the answer. */
  if (chunked) c->body = BODY_CHUNK_SIZE;
  else if (has_length && length > 0) {
    c->body = BODY_LENGTH;
    c->body_left = length;
  } else c->body = BODY_NONE;
  if (c->body != BODY_NONE && expect_continue) put(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  if (echo) {
    if (c->body == BODY_NONE) finish_body(c);
    return;
  }
  if (c->body != BODY_NONE) {
    /* not a route that takes a body: read it away, then 404 */
    c->route = R_NONE;
  }
  if (root) {
    respond(c, 200, "OK", "text/html; charset=utf-8", PAGE, is_head ? 0 : sizeof PAGE - 1);
  } else if (big) {
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %u\r\n%s\r\n", BIG_BYTES,
                     connection_header(c));
    put(c, head, (size_t)n);
    c->big_left = is_head ? 0 : BIG_BYTES;
    c->big_at = 0;
    if (!c->keep_alive) c->closing = 1;
  } else {
    respond(c, 404, "Not Found", "text/plain", "not found\n", 10);
  }
}

/* Feeds body bytes to the current request; returns bytes consumed. */
static size_t body(struct conn *c, const char *p, size_t n) {
  size_t used = 0;
  while (used < n && c->body != BODY_NONE) {
    if (c->body == BODY_LENGTH || c->body == BODY_CHUNK_DATA) {
      size_t take = n - used < c->body_left ? n - used : (size_t)c->body_left;
      for (size_t i = 0; i < take; i++) c->fnv = (c->fnv ^ (uint8_t)p[used + i]) * 16777619u;
      c->body_len += take;
      c->body_left -= take;
      used += take;
      if (c->body_left == 0) {
        if (c->body == BODY_CHUNK_DATA) c->body = BODY_CHUNK_CRLF;
        else if (c->route == R_ECHO) finish_body(c);
        else c->body = BODY_NONE;
      }
    } else {
      /* line-oriented states: need a whole line */
      const char *nl = memchr(p + used, '\n', n - used);
      if (!nl) {
        if (n - used > 64) bad(c, 400, "Bad Request");
        return used;
      }
      size_t ll = (size_t)(nl - (p + used)) + 1;
      const char *line = p + used;
      used += ll;
      if (c->body == BODY_CHUNK_CRLF) {
        if (ll > 2 || line[0] != (ll == 2 ? '\r' : '\n')) {
          bad(c, 400, "Bad Request");
          return used;
        }
        c->body = BODY_CHUNK_SIZE;
      } else if (c->body == BODY_CHUNK_SIZE) {
        uint64_t size = 0;
        size_t digits = 0;
        for (size_t i = 0; i < ll; i++) {
          char ch = line[i];
          int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
          if (d < 0) break;
          if (++digits > 15) break;
          size = size * 16 + (uint64_t)d;
        }
        if (digits == 0 || digits > 15 || ll > 64) {
          bad(c, 400, "Bad Request");
          return used;
        }
        if (size == 0) c->body = BODY_TRAILER;
        else {
          c->body = BODY_CHUNK_DATA;
          c->body_left = size;
        }
      } else { /* BODY_TRAILER: up to the empty line */
        if (ll <= 2) {
          if (c->route == R_ECHO) finish_body(c);
          else c->body = BODY_NONE;
        }
      }
    }
  }
  return used;
}

/* Parses what is buffered while the output has room; returns -1 to drop the connection. */
static void parse(struct conn *c) {
  for (;;) {
    if (c->closing || c->big_left > 0 || c->out_len - c->out_off > OUT_CAP / 2) return;
    if (c->body != BODY_NONE) {
      size_t used = body(c, c->in, c->in_len);
      memmove(c->in, c->in + used, c->in_len - used);
      c->in_len -= used;
      if (c->body != BODY_NONE) return; /* needs more bytes */
      if (c->route == R_NONE && !c->closing) {
        /* a body on a route that takes none: answered after it was read */
      }
      continue;
    }
    /* the end of a head: \r\n\r\n */
    size_t end = 0;
    for (size_t i = 3; i < c->in_len; i++) {
      if (c->in[i] == '\n' && c->in[i - 1] == '\r' && c->in[i - 2] == '\n' && c->in[i - 3] == '\r') {
        end = i + 1;
        break;
      }
    }
    if (!end) {
      if (c->in_len == IN_CAP) bad(c, 431, "Request Header Fields Too Large");
      return;
    }
    request(c, end);
  }
}

/* Fills the output from the /big generator. */
static void generate(struct conn *c) {
  if (c->big_left == 0) return;
  if (c->out_off > 0) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  while (c->big_left > 0 && c->out_len < OUT_CAP) {
    c->out[c->out_len++] = (char)big_byte(c->big_at++);
    c->big_left--;
  }
}

/* Sends what is pending: the bytes sent (0 when the socket is full), -1 on a dead connection. */
static long flush(struct conn *c) {
  long sent = 0;
  for (;;) {
    generate(c);
    if (c->out_off == c->out_len) {
      c->out_off = c->out_len = 0;
      return sent;
    }
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, 0);
    if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? sent : -1;
    c->out_off += (size_t)w;
    sent += (long)w;
  }
}

static int readable(struct conn *c) {
  for (;;) {
    if (c->in_len == IN_CAP) return 0; /* wait until parse makes room */
    ssize_t r = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
    if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (r == 0) {
      c->peer_closed = 1;
      return 0;
    }
    c->in_len += (size_t)r;
    parse(c);
    if (c->closing) return 0;
  }
}

int main(void) {
  /* non-blocking: accept until EAGAIN after poll says a connection waits */
  if (fcntl(LISTEN_FD, F_SETFL, fcntl(LISTEN_FD, F_GETFL) | O_NONBLOCK) < 0) {
    perror("http: fd 3 is not a listening socket (run with --tcplisten ADDR)");
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
      short ev = 0;
      int pending = c->out_len > c->out_off || c->big_left > 0;
      if (pending) ev |= POLLOUT;
      if (!c->peer_closed && !c->closing && c->in_len < IN_CAP && !pending) ev |= POLLIN;
      /* wasi-libc's poll() refuses (ENOSYS) an entry that asks for nothing: leave it out (fd -1) */
      fds[n] = (struct pollfd){.fd = ev ? c->fd : -1, .events = ev};
      owner[n++] = i;
    }
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      perror("poll");
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
      /* Answer every whole request buffered (pipelining) while the socket takes the output:
       * poll() would not wake for requests that already arrived. */
      while (!dead) {
        size_t before = c->in_len;
        int answering = c->body != BODY_NONE;
        parse(c);
        long sent = flush(c);
        dead = sent < 0;
        if (dead || c->out_len > c->out_off || c->big_left > 0 || c->closing) break; /* wait until writable */
        if (sent == 0 && c->in_len == before && (c->body != BODY_NONE) == answering) break; /* nothing more to do */
      }
      int idle = c->out_len == c->out_off && c->big_left == 0;
      /* a client that closed its side sends nothing more: once its answers are out, the connection ends */
      if (dead || (idle && (c->closing || c->peer_closed))) {
        if (!dead) shutdown(c->fd, SHUT_WR);
        drop(i);
      }
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
        conns[slot]->keep_alive = 1;
      }
    }
  }
}
