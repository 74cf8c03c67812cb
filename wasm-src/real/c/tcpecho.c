/* tcpecho: a line server written for `wasmtime run --tcplisten ADDR [--dir DIR]`,
 * used by test/tcp-listen.test.ts to check that such a program runs unmodified
 * under `ftvm run --tcplisten`.
 *
 * At start it prints the descriptor layout it finds (stdout, one line each):
 *   "fd 3: socket"                 fd_fdstat_get's filetype for fd 3
 *   "fd N: preopen NAME"           every preopened directory, found by
 *                                  fd_prestat_get from fd 4 on
 *   "file: TEXT"                   the first line of argv[1], opened by path
 *                                  through wasi-libc (its own preopen scan)
 *   "accept: EAGAIN"               a non-blocking accept with nothing waiting
 * then "ready" (stderr). Then it serves: it greets each connection with
 * "hi" before reading anything, then each connection's lines come back
 * upper-cased; "bye" is answered "BYE" and the server shuts down its sending
 * side (shutdown(SHUT_WR)) but keeps reading until the client closes; the end
 * of the client's stream ends the connection after what is pending was sent;
 * "stop" ends the program with status 7. All descriptors are non-blocking,
 * and poll() waits with a timeout (a clock), counting how often it ran out. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wasi/api.h>

#define LISTEN_FD 3
#define MAX_CONNS 32
#define LINE_MAX_BYTES 4096

struct conn {
  int fd;
  size_t len;
  char buf[LINE_MAX_BYTES];
  int wr_closed;
};

static struct conn *conns[MAX_CONNS];

static int accept_nb(void) {
  __wasi_fd_t fd;
  __wasi_errno_t e = __wasi_sock_accept(LISTEN_FD, __WASI_FDFLAGS_NONBLOCK, &fd);
  if (e != 0) {
    errno = e;
    return -1;
  }
  return (int)fd;
}

static void layout(const char *path) {
  __wasi_fdstat_t st;
  if (__wasi_fd_fdstat_get(LISTEN_FD, &st) == 0)
    printf("fd 3: %s\n", st.fs_filetype == __WASI_FILETYPE_SOCKET_STREAM ? "socket" : "other");
  else printf("fd 3: closed\n");
  for (__wasi_fd_t fd = 4; fd < 16; fd++) {
    __wasi_prestat_t ps;
    if (__wasi_fd_prestat_get(fd, &ps) != 0) break;
    if (ps.tag != __WASI_PREOPENTYPE_DIR) continue;
    char name[256];
    size_t n = ps.u.dir.pr_name_len < sizeof name - 1 ? ps.u.dir.pr_name_len : sizeof name - 1;
    if (__wasi_fd_prestat_dir_name(fd, (uint8_t *)name, n) != 0) break;
    name[n] = 0;
    printf("fd %u: preopen %s\n", (unsigned)fd, name);
  }
  if (path) {
    FILE *f = fopen(path, "r");
    char line[256];
    if (f && fgets(line, sizeof line, f)) printf("file: %s", line);
    else printf("file: cannot open %s: %s\n", path, strerror(errno));
    if (f) fclose(f);
  }
  if (accept_nb() < 0 && errno == EAGAIN) printf("accept: EAGAIN\n");
  else printf("accept: not EAGAIN\n");
  fflush(stdout);
}

/* Sends all of it (non-blocking: waits for POLLOUT when the socket is full). */
static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, 0);
    if (w < 0) {
      if (errno != EAGAIN) return -1;
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      poll(&pf, 1, 1000);
      continue;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void drop(int i) {
  close(conns[i]->fd);
  free(conns[i]);
  conns[i] = NULL;
}

/* Reads until EAGAIN; -1 to close (the client's stream ended), 1 to stop the program. */
static int serve(struct conn *c) {
  for (;;) {
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (r < 0) return errno == EAGAIN ? 0 : -1;
    if (r == 0) return -1;
    c->len += (size_t)r;
    size_t start = 0;
    for (size_t i = 0; i < c->len; i++) {
      if (c->buf[i] != '\n') continue;
      char *line = c->buf + start;
      size_t n = i - start;
      if (n == 4 && memcmp(line, "stop", 4) == 0) return 1;
      int bye = n == 3 && memcmp(line, "bye", 3) == 0;
      for (size_t k = 0; k < n; k++) line[k] = (char)toupper((unsigned char)line[k]);
      if (!c->wr_closed && send_all(c->fd, line, n + 1) < 0) return -1;
      if (bye && !c->wr_closed) {
        shutdown(c->fd, SHUT_WR);
        c->wr_closed = 1;
      }
      start = i + 1;
    }
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
    if (c->len == sizeof c->buf) return -1;
  }
}

int main(int argc, char **argv) {
  if (fcntl(LISTEN_FD, F_SETFL, O_NONBLOCK) < 0) {
    perror("tcpecho: fd 3");
    return 1;
  }
  layout(argc > 1 ? argv[1] : NULL);
  fprintf(stderr, "ready\n");
  unsigned timeouts = 0;
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
    int ready = poll(fds, n, 200);
    if (ready < 0) {
      perror("tcpecho: poll");
      return 1;
    }
    if (ready == 0) {
      timeouts++;
      continue;
    }
    for (nfds_t k = 1; k < n; k++) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int r = serve(conns[owner[k]]);
      if (r == 1) {
        fprintf(stderr, "stop after %u poll timeouts\n", timeouts);
        return 7;
      }
      if (r < 0) drop(owner[k]);
    }
    if (fds[0].revents & POLLIN) {
      for (;;) {
        int fd = accept_nb();
        if (fd < 0) break; /* EAGAIN: every waiting connection was taken */
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++)
          if (!conns[i]) slot = i;
        if (slot < 0 || !(conns[slot] = calloc(1, sizeof(struct conn)))) {
          close(fd);
          continue;
        }
        conns[slot]->fd = fd;
        send_all(fd, "hi\n", 3); /* the server speaks first */
      }
    }
  }
}
