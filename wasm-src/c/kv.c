/* kv: the key-value store (kvstore.h) as a reactor on the ftvm event ABI.
 *
 * Built with -mexec-model=reactor: `_initialize` sets it up and returns; every
 * request then arrives as one message on the virtual NIC, announced by an
 * interrupt (kind 2), and gets one message back on the same connection. Between
 * messages no guest code is on the stack. */
#include "kvstore.h"

#define FTVM_IO(name) __attribute__((import_module("ftvm_io"), import_name(name)))
FTVM_IO("nic_recv") int nic_recv(uint32_t *conn, void *buf, int len);
FTVM_IO("nic_send") int nic_send(uint32_t conn, const void *buf, int len);

#define MSG_MAX 65536
static char in[MSG_MAX], out[MSG_MAX];

__attribute__((export_name("ftvm_interrupt"))) void ftvm_interrupt(int kind) {
  if (kind != 2) return;
  uint32_t conn;
  int n;
  while ((n = nic_recv(&conn, in, MSG_MAX)) >= 0) {
    if (n == 0) continue; /* the client closed its connection */
    size_t m = kv_handle(in, (size_t)n, out, MSG_MAX);
    nic_send(conn, out, (int)m);
  }
}
