/* kvsock: the key-value store (kvstore.h) as a WASI command serving stream
 * sockets: it accepts connections on the listening socket (fd 3), reads
 * newline-terminated requests and writes newline-terminated responses, with
 * poll() blocking while nothing is ready. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wasi/api.h>

#include "kvstore.h"

#define LISTEN_FD 3
#define MAX_CONNS 64
#define LINE_MAX_BYTES 65536

struct conn {
  int fd;
  size_t len;
  char buf[LINE_MAX_BYTES];
};

static struct conn *conns[MAX_CONNS];
static char out[LINE_MAX_BYTES + 1];

static void drop(int i) {
  close(conns[i]->fd);
  free(conns[i]);
  conns[i] = NULL;
}

static int serve(struct conn *c) {
  ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
  if (r <= 0) return -1;
  c->len += (size_t)r;
  size_t start = 0;
  for (size_t i = 0; i < c->len; i++) {
    if (c->buf[i] != '\n') continue;
    size_t m = kv_handle(c->buf + start, i - start, out, sizeof out - 1);
    out[m++] = '\n';
    if (send(c->fd, out, m, 0) < 0) return -1;
    start = i + 1;
  }
  memmove(c->buf, c->buf + start, c->len - start);
  c->len -= start;
  return c->len == sizeof c->buf ? -1 : 0; /* a line longer than the buffer ends the connection */
}

int main(void) {
  for (;;) {
    struct pollfd fds[MAX_CONNS + 1];
    int owner[MAX_CONNS + 1];
    nfds_t n = 0;
    fds[n] = (struct pollfd){.fd = LISTEN_FD, .events = POLLIN};
    owner[n++] = -1;
    for (int i = 0; i < MAX_CONNS; i++) {
      if (!conns[i]) continue;
      fds[n] = (struct pollfd){.fd = conns[i]->fd, .events = POLLIN};
      owner[n++] = i;
    }
    if (poll(fds, n, -1) < 0) return 1;
    for (nfds_t k = 1; k < n; k++) {
      if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (serve(conns[owner[k]]) < 0) drop(owner[k]);
      }
    }
    if (fds[0].revents & POLLIN) {
      __wasi_fd_t fd;
      if (__wasi_sock_accept(LISTEN_FD, 0, &fd) != 0) return 1;
      int slot = -1;
      for (int i = 0; i < MAX_CONNS && slot < 0; i++)
        if (!conns[i]) slot = i;
      if (slot < 0 || !(conns[slot] = calloc(1, sizeof(struct conn)))) {
        close((int)fd);
        continue;
      }
      conns[slot]->fd = (int)fd;
    }
  }
}
