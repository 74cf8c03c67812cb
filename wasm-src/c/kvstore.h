/* An in-memory key-value store answering one text request at a time; shared by
 * the kv (reactor over the ftvm virtual NIC) and kvsock (WASI sockets) guests.
 *
 * Request:  <id> SET <key> <value...> | <id> GET <key> | <id> DEL <key> | <id> INFO
 * Response: <id> OK <writes>          (SET, DEL: the store's write count after it)
 *           <id> VALUE <value>        (GET)
 *           <id> NOTFOUND             (GET, DEL of a missing key)
 *           <id> INFO <keys> <writes> <last write's realtime ns>
 *           <id> ERR <reason>
 * <id> is any token chosen by the client and echoed back; keys are at most
 * KV_KEY_MAX bytes without spaces; a value is the rest of the request.
 * Every write reads the realtime clock (a nondeterministic input). */
#ifndef KVSTORE_H
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#define KVSTORE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KV_KEY_MAX 250

struct kv_slot {
  char *key; /* NULL: empty; KV_TOMB: deleted */
  size_t klen;
  char *val;
  size_t vlen;
};

static char kv_tomb;
#define KV_TOMB (&kv_tomb)

static struct kv_slot *kv_slots;
static size_t kv_cap, kv_used, kv_live;
static uint64_t kv_writes;
static int64_t kv_last_write_ns;

static uint64_t kv_hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return h;
}

static struct kv_slot *kv_find(const char *k, size_t n, int for_insert) {
  size_t i = kv_hash(k, n) & (kv_cap - 1);
  struct kv_slot *tomb = NULL;
  for (;;) {
    struct kv_slot *s = &kv_slots[i];
    if (s->key == NULL) return for_insert ? (tomb ? tomb : s) : NULL;
    if (s->key == KV_TOMB) {
      if (!tomb) tomb = s;
    } else if (s->klen == n && memcmp(s->key, k, n) == 0) {
      return s;
    }
    i = (i + 1) & (kv_cap - 1);
  }
}

static void kv_grow(void) {
  struct kv_slot *old = kv_slots;
  size_t old_cap = kv_cap;
  kv_cap = kv_cap ? kv_cap * 2 : 64;
  kv_slots = calloc(kv_cap, sizeof *kv_slots);
  if (!kv_slots) abort();
  kv_used = kv_live;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].key && old[i].key != KV_TOMB) *kv_find(old[i].key, old[i].klen, 1) = old[i];
  }
  free(old);
}

static void kv_stamp(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  kv_last_write_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  kv_writes++;
}

/* Token at *p (up to a space or the end); advances past one space. */
static size_t kv_token(const char **p, const char *end, const char **tok) {
  const char *s = *p;
  while (s < end && *s == ' ') s++;
  const char *e = s;
  while (e < end && *e != ' ') e++;
  *tok = s;
  *p = e < end ? e + 1 : e;
  return (size_t)(e - s);
}

/* Handles one request; writes the response (no newline) and returns its length. */
static size_t kv_handle(const char *req, size_t n, char *out, size_t cap) {
  const char *p = req, *end = req + n, *id, *op, *key;
  size_t idn = kv_token(&p, end, &id);
  size_t opn = kv_token(&p, end, &op);
  if (idn == 0 || idn > 64) return (size_t)snprintf(out, cap, "? ERR bad id");
  int head = snprintf(out, cap, "%.*s ", (int)idn, id);
  char *o = out + head;
  size_t room = cap - (size_t)head;
#define IS(word) (opn == sizeof(word) - 1 && memcmp(op, word, opn) == 0)
  if (IS("INFO")) {
    return (size_t)head + (size_t)snprintf(o, room, "INFO %zu %llu %lld", kv_live, (unsigned long long)kv_writes,
                                           (long long)kv_last_write_ns);
  }
  size_t kn = kv_token(&p, end, &key);
  if (kn == 0 || kn > KV_KEY_MAX) return (size_t)head + (size_t)snprintf(o, room, "ERR bad key");
  if (kv_cap == 0 || (kv_used + 1) * 10 > kv_cap * 7) kv_grow();
  if (IS("GET")) {
    struct kv_slot *s = kv_find(key, kn, 0);
    if (!s) return (size_t)head + (size_t)snprintf(o, room, "NOTFOUND");
    size_t m = (size_t)snprintf(o, room, "VALUE ");
    size_t v = s->vlen < room - m ? s->vlen : room - m;
    memcpy(o + m, s->val, v);
    return (size_t)head + m + v;
  }
  if (IS("SET")) {
    size_t vlen = (size_t)(end - p);
    struct kv_slot *s = kv_find(key, kn, 1);
    if (s->key == NULL || s->key == KV_TOMB) {
      if (s->key == NULL) kv_used++;
      s->key = malloc(kn);
      if (!s->key) abort();
      memcpy(s->key, key, kn);
      s->klen = kn;
      s->val = NULL;
      kv_live++;
    }
    free(s->val);
    s->val = malloc(vlen ? vlen : 1);
    if (!s->val) abort();
    memcpy(s->val, p, vlen);
    s->vlen = vlen;
    kv_stamp();
    return (size_t)head + (size_t)snprintf(o, room, "OK %llu", (unsigned long long)kv_writes);
  }
  if (IS("DEL")) {
    struct kv_slot *s = kv_find(key, kn, 0);
    if (!s) return (size_t)head + (size_t)snprintf(o, room, "NOTFOUND");
    free(s->key);
    free(s->val);
    s->key = KV_TOMB;
    s->val = NULL;
    kv_live--;
    kv_stamp();
    return (size_t)head + (size_t)snprintf(o, room, "OK %llu", (unsigned long long)kv_writes);
  }
#undef IS
  return (size_t)head + (size_t)snprintf(o, room, "ERR unknown operation");
}

#endif
