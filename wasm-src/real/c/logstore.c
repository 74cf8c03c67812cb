/*
 * logstore: a small log-structured key/value store on disk, the way a real
 * embedded database or build tool uses a POSIX filesystem through wasi-libc.
 *
 * usage: logstore STORE_DIR INPUT_DIR [--exit N]  < commands
 *
 * STORE_DIR is created if missing and holds:
 *   STORE_DIR/segments/seg-NNNNNN.log   append-only segments "P key value\n" / "D key\n"
 *   STORE_DIR/MANIFEST                  the live segment list, replaced atomically
 *                                       (written to a temp file with a random name, fsynced,
 *                                       renamed over the old one)
 *   STORE_DIR/build/                    outputs of the make-like "build" command
 * INPUT_DIR holds files the host put there before the run (read-only use).
 *
 * Commands, one per line on stdin (blank lines and '#' comments skipped):
 *   put KEY VALUE | get KEY | del KEY | scan PREFIX | import FILE (from INPUT_DIR, "k=v" lines)
 *   roll                 start a new segment
 *   compact              rewrite live keys into one new segment, unlink the old ones
 *   build SRC OUT        make-like: rebuild STORE_DIR/build/OUT from INPUT_DIR/SRC
 *                        when OUT is missing or older than SRC (mtime comparison)
 *   touch-input SRC      rewrite INPUT_DIR/SRC with the same bytes (new mtime)
 *   sleep MS             nanosleep, then check the monotonic clock moved at least MS
 *   poll-sleep MS        the same through poll() with no descriptors (a timeout only)
 *   poll-stdin MS        poll() stdin with a timeout: ready at once (more input or end of file)
 *   times                futimens/utimensat with fixed times (nanoseconds, UTIME_OMIT), read back with stat
 *   links                symlink, readlink, stat through the link, hard link, nlink
 *   churn N              create N files in a directory, remove them while reading it
 *                        (what rm -r does), then rmdir it
 *   random               getentropy twice, check the draws differ
 *   clocks               realtime vs a new file's mtime, monotonic and CPU clocks move forward
 *   tree                 print every file under STORE_DIR: path, type, size, FNV-1a of content
 *
 * Output is deterministic for the same inputs, except lines that start with "~ ",
 * which carry the values read from clocks and the random source (a test compares
 * them only between a recording and its replay).  Checks that fail print "FAIL ..."
 * and make the exit status 1; "--exit N" ends with status N when nothing failed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEYS 512
#define MAX_SEGS 64
#define LINE_MAX_BYTES 1024
#define PATH_BYTES 512

static const char *store_dir;
static const char *input_dir;
static int failures;

struct entry { char key[64]; char value[256]; int live; };
static struct entry table[MAX_KEYS];
static int nkeys;
static int segs[MAX_SEGS];
static int nsegs;
static int next_seg = 1;
static FILE *active;

static void fail(const char *what) {
  printf("FAIL %s (errno %d: %s)\n", what, errno, strerror(errno));
  failures++;
}

static void check(int ok, const char *what) {
  printf("check %s: %s\n", what, ok ? "yes" : "no");
  if (!ok) failures++;
}

static void pathf(char *out, const char *dir, const char *fmt, const char *a) {
  char rel[PATH_BYTES];
  snprintf(rel, sizeof rel, fmt, a);
  snprintf(out, PATH_BYTES, "%s/%s", dir, rel);
}

static int64_t ts_ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static int64_t now_ns(clockid_t id) {
  struct timespec t;
  if (clock_gettime(id, &t) != 0) { fail("clock_gettime"); return 0; }
  return ts_ns(t);
}

static uint64_t fnv1a(const unsigned char *p, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ULL; }
  return h;
}

static struct entry *find(const char *key, int create) {
  for (int i = 0; i < nkeys; i++) if (strcmp(table[i].key, key) == 0) return &table[i];
  if (!create || nkeys == MAX_KEYS) return NULL;
  struct entry *e = &table[nkeys++];
  snprintf(e->key, sizeof e->key, "%s", key);
  e->live = 0;
  return e;
}

/* ---- segments and the manifest ---- */

static void seg_path(char *out, int n) {
  char name[32];
  snprintf(name, sizeof name, "seg-%06d.log", n);
  pathf(out, store_dir, "segments/%s", name);
}

static void write_manifest(void) {
  unsigned char rnd[6];
  if (getentropy(rnd, sizeof rnd) != 0) fail("getentropy");
  char tmp[PATH_BYTES], final[PATH_BYTES], suffix[16];
  snprintf(suffix, sizeof suffix, "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
  pathf(tmp, store_dir, ".MANIFEST.%s.tmp", suffix);
  pathf(final, store_dir, "%s", "MANIFEST");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) { fail("open manifest temp"); return; }
  char buf[LINE_MAX_BYTES];
  int len = snprintf(buf, sizeof buf, "logstore 1\nnext %d\n", next_seg);
  for (int i = 0; i < nsegs && len < (int)sizeof buf - 32; i++) len += snprintf(buf + len, sizeof buf - len, "seg %d\n", segs[i]);
  if (write(fd, buf, len) != len) fail("write manifest");
  if (fsync(fd) != 0) fail("fsync manifest");
  close(fd);
  if (rename(tmp, final) != 0) fail("rename manifest");
}

static void open_segment(void) {
  if (active) fclose(active);
  char p[PATH_BYTES];
  seg_path(p, next_seg);
  active = fopen(p, "a");
  if (!active) { fail("open segment"); return; }
  segs[nsegs++] = next_seg++;
  write_manifest();
}

static void replay_segment(int n) {
  char p[PATH_BYTES], line[LINE_MAX_BYTES];
  seg_path(p, n);
  FILE *f = fopen(p, "r");
  if (!f) { fail("reopen segment"); return; }
  while (fgets(line, sizeof line, f)) {
    char key[64], value[256];
    if (sscanf(line, "P %63s %255[^\n]", key, value) == 2) {
      struct entry *e = find(key, 1);
      if (e) { snprintf(e->value, sizeof e->value, "%s", value); e->live = 1; }
    } else if (sscanf(line, "D %63s", key) == 1) {
      struct entry *e = find(key, 0);
      if (e) e->live = 0;
    }
  }
  fclose(f);
}

/* Opens an existing store (reads MANIFEST and replays every segment) or creates one. */
static void open_store(void) {
  char p[PATH_BYTES];
  if (mkdir(store_dir, 0755) != 0 && errno != EEXIST) fail("mkdir store");
  pathf(p, store_dir, "%s", "segments");
  if (mkdir(p, 0755) != 0 && errno != EEXIST) fail("mkdir segments");
  pathf(p, store_dir, "%s", "build");
  if (mkdir(p, 0755) != 0 && errno != EEXIST) fail("mkdir build");
  pathf(p, store_dir, "%s", "MANIFEST");
  FILE *m = fopen(p, "r");
  if (m) {
    char line[128];
    int n;
    while (fgets(line, sizeof line, m)) {
      if (sscanf(line, "next %d", &n) == 1) next_seg = n;
      else if (sscanf(line, "seg %d", &n) == 1 && nsegs < MAX_SEGS) segs[nsegs++] = n;
    }
    fclose(m);
    for (int i = 0; i < nsegs; i++) replay_segment(segs[i]);
    printf("opened store: %d segments, %d keys\n", nsegs, nkeys);
  } else {
    printf("new store\n");
  }
  open_segment();
}

static void cmd_put(const char *key, const char *value) {
  struct entry *e = find(key, 1);
  if (!e) { printf("FAIL store full\n"); failures++; return; }
  snprintf(e->value, sizeof e->value, "%s", value);
  e->live = 1;
  fprintf(active, "P %s %s\n", key, value);
  fflush(active);
}

static void cmd_del(const char *key) {
  struct entry *e = find(key, 0);
  if (e && e->live) { e->live = 0; fprintf(active, "D %s\n", key); fflush(active); printf("deleted %s\n", key); }
  else printf("no %s\n", key);
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

static void cmd_scan(const char *prefix) {
  struct entry sorted[MAX_KEYS];
  memcpy(sorted, table, sizeof(struct entry) * nkeys);
  qsort(sorted, nkeys, sizeof sorted[0], cmp_entry);
  int n = 0;
  for (int i = 0; i < nkeys; i++)
    if (sorted[i].live && strncmp(sorted[i].key, prefix, strlen(prefix)) == 0) { printf("  %s = %s\n", sorted[i].key, sorted[i].value); n++; }
  printf("scan %s: %d keys\n", prefix, n);
}

static void cmd_import(const char *file) {
  char p[PATH_BYTES], line[LINE_MAX_BYTES];
  pathf(p, input_dir, "%s", file);
  FILE *f = fopen(p, "r");
  if (!f) { fail("open import file"); return; }
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = 0;
    char *nl = strchr(eq + 1, '\n');
    if (nl) *nl = 0;
    cmd_put(line, eq + 1);
    n++;
  }
  fclose(f);
  printf("imported %d keys from %s\n", n, file);
}

static void cmd_compact(void) {
  int old[MAX_SEGS], nold = nsegs;
  memcpy(old, segs, sizeof(int) * nsegs);
  nsegs = 0;
  open_segment();
  int live = 0;
  for (int i = 0; i < nkeys; i++) if (table[i].live) { fprintf(active, "P %s %s\n", table[i].key, table[i].value); live++; }
  fflush(active);
  if (fsync(fileno(active)) != 0) fail("fsync segment");
  write_manifest();
  for (int i = 0; i < nold; i++) {
    char p[PATH_BYTES];
    seg_path(p, old[i]);
    if (unlink(p) != 0) fail("unlink old segment");
  }
  /* What is left in segments/ must be exactly the manifest's list. */
  char dir[PATH_BYTES];
  pathf(dir, store_dir, "%s", "segments");
  DIR *d = opendir(dir);
  int files = 0;
  if (!d) fail("opendir segments");
  else {
    struct dirent *de;
    while ((de = readdir(d))) if (de->d_name[0] != '.') files++;
    closedir(d);
  }
  printf("compacted %d segments into 1: %d live keys, %d files in segments/\n", nold, live, files);
}

/* ---- make-like rebuilds ---- */

static int mtime_of(const char *path, int64_t *out) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  *out = ts_ns(st.st_mtim);
  return 0;
}

static void cmd_build(const char *src, const char *out) {
  char sp[PATH_BYTES], op[PATH_BYTES];
  pathf(sp, input_dir, "%s", src);
  pathf(op, store_dir, "build/%s", out);
  int64_t ms, mo;
  if (mtime_of(sp, &ms) != 0) { fail("stat build source"); return; }
  int have = mtime_of(op, &mo) == 0;
  if (have && mo >= ms) { printf("build %s: up to date\n", out); return; }
  FILE *in = fopen(sp, "r");
  FILE *o = fopen(op, "w");
  if (!in || !o) { fail("open build files"); if (in) fclose(in); if (o) fclose(o); return; }
  char line[LINE_MAX_BYTES];
  int lines = 0;
  while (fgets(line, sizeof line, in)) {
    for (char *c = line; *c; c++) if (*c >= 'a' && *c <= 'z') *c -= 32;
    fprintf(o, "%04d %s", ++lines, line);
  }
  fclose(in);
  fclose(o);
  printf("build %s: %s (%d lines)\n", out, have ? "rebuilt, source is newer" : "built, was missing", lines);
}

static void cmd_touch_input(const char *src) {
  char p[PATH_BYTES];
  pathf(p, input_dir, "%s", src);
  FILE *f = fopen(p, "r");
  if (!f) { fail("open input to touch"); return; }
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  f = fopen(p, "w");
  if (!f) { fail("rewrite input"); return; }
  fwrite(buf, 1, n, f);
  fclose(f);
  printf("touched %s (%zu bytes)\n", src, n);
}

/* ---- clocks, sleep, random ---- */

static void cmd_sleep(long ms) {
  int64_t t0 = now_ns(CLOCK_MONOTONIC);
  struct timespec req = { ms / 1000, (ms % 1000) * 1000000L };
  if (nanosleep(&req, NULL) != 0) fail("nanosleep");
  int64_t dt = now_ns(CLOCK_MONOTONIC) - t0;
  printf("~ slept %lld us\n", (long long)(dt / 1000));
  char what[64];
  snprintf(what, sizeof what, "sleep %ld ms lasted at least %ld ms", ms, ms);
  check(dt >= (int64_t)ms * 1000000, what);
}

static void cmd_poll_sleep(long ms) {
  int64_t t0 = now_ns(CLOCK_MONOTONIC);
  if (poll(NULL, 0, (int)ms) != 0) fail("poll with a timeout only");
  int64_t dt = now_ns(CLOCK_MONOTONIC) - t0;
  printf("~ poll slept %lld us\n", (long long)(dt / 1000));
  char what[64];
  snprintf(what, sizeof what, "poll timeout of %ld ms lasted at least %ld ms", ms, ms);
  check(dt >= (int64_t)ms * 1000000, what);
}

static void cmd_poll_stdin(long ms) {
  struct pollfd p = { .fd = 0, .events = POLLIN };
  int64_t t0 = now_ns(CLOCK_MONOTONIC);
  int n = poll(&p, 1, (int)ms);
  int64_t dt = now_ns(CLOCK_MONOTONIC) - t0;
  printf("~ poll on stdin returned after %lld us\n", (long long)(dt / 1000));
  check(n == 1 && (p.revents & (POLLIN | POLLHUP)) != 0, "stdin is ready (data or end of file)");
  check(dt < (int64_t)ms * 1000000, "poll on a ready stdin returns before its timeout");
}

static void cmd_clocks(void) {
  char p[PATH_BYTES];
  pathf(p, store_dir, "%s", "clock-probe");
  int64_t before = now_ns(CLOCK_REALTIME);
  FILE *f = fopen(p, "w");
  if (!f) { fail("create clock probe"); return; }
  fputs("probe\n", f);
  fclose(f);
  int64_t after = now_ns(CLOCK_REALTIME), m;
  if (mtime_of(p, &m) != 0) { fail("stat clock probe"); return; }
  printf("~ realtime %lld ns, probe mtime %lld ns\n", (long long)after, (long long)m);
  /* File systems round timestamps (to a tick, or to a second), so allow 2 s either side. */
  check(m >= before - 2000000000LL && m <= after + 2000000000LL, "a new file's mtime is the current time");
  check(after > 1600000000LL * 1000000000LL, "realtime is after 2020");
  int64_t m0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
  volatile uint64_t x = 0;
  for (int i = 0; i < 3000000; i++) x = x + (uint64_t)i * i;
  printf("~ work %llu\n", (unsigned long long)x);
  int64_t m1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
  check(m1 >= m0, "monotonic clock does not go back");
  check(c1 >= c0, "process CPU clock does not go back");
  struct timespec res;
  check(clock_getres(CLOCK_MONOTONIC, &res) == 0 && ts_ns(res) > 0 && ts_ns(res) <= 1000000, "monotonic resolution is at most 1 ms");
  if (unlink(p) != 0) fail("unlink clock probe");
}

static void cmd_random(void) {
  unsigned char a[32], b[32];
  if (getentropy(a, sizeof a) != 0 || getentropy(b, sizeof b) != 0) { fail("getentropy"); return; }
  printf("~ random ");
  for (int i = 0; i < 8; i++) printf("%02x", a[i]);
  printf("\n");
  check(memcmp(a, b, sizeof a) != 0, "two random draws differ");
  int ones = 0;
  for (int i = 0; i < 32; i++) for (int j = 0; j < 8; j++) ones += (a[i] >> j) & 1;
  check(ones > 64 && ones < 192, "random bits are balanced");
}

/* ---- timestamps set by the program, links, directory churn ---- */

static void cmd_times(void) {
  char p[PATH_BYTES];
  pathf(p, store_dir, "%s", "stamped");
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) { fail("create stamped"); return; }
  if (write(fd, "x", 1) != 1) fail("write stamped");
  struct timespec ts[2] = { { 1000000000, 123456789 }, { 1234567890, 987654321 } };
  if (futimens(fd, ts) != 0) fail("futimens");
  close(fd);
  struct stat st;
  if (stat(p, &st) != 0) { fail("stat stamped"); return; }
  printf("futimens: atime %lld.%09ld mtime %lld.%09ld\n", (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
         (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  struct timespec ts2[2] = { { 0, UTIME_OMIT }, { 1500000000, 0 } };
  if (utimensat(AT_FDCWD, p, ts2, 0) != 0) fail("utimensat");
  if (stat(p, &st) != 0) { fail("stat stamped"); return; }
  printf("utimensat: atime %lld.%09ld mtime %lld.%09ld\n", (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
         (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  check(st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789, "UTIME_OMIT keeps atime");
  /* No UTIME_NOW here: Debian 12's wasi-libc (2022-05) answers EINVAL to it without
     calling the host, and turns utimensat(..., NULL, ...) into "set both to 0". */
}

static void cmd_links(void) {
  char target[PATH_BYTES], lnk[PATH_BYTES], hard[PATH_BYTES], buf[PATH_BYTES];
  pathf(target, store_dir, "%s", "MANIFEST");
  pathf(lnk, store_dir, "%s", "manifest-link");
  pathf(hard, store_dir, "%s", "manifest-hard");
  if (symlink("MANIFEST", lnk) != 0) { fail("symlink"); return; }
  ssize_t n = readlink(lnk, buf, sizeof buf - 1);
  if (n < 0) { fail("readlink"); return; }
  buf[n] = 0;
  printf("readlink: %s\n", buf);
  struct stat via, direct, l;
  if (stat(lnk, &via) != 0 || stat(target, &direct) != 0 || lstat(lnk, &l) != 0) { fail("stat links"); return; }
  check(via.st_size == direct.st_size && via.st_ino == direct.st_ino, "stat follows the symlink");
  check(S_ISLNK(l.st_mode), "lstat sees a symlink");
  if (link(target, hard) != 0) { fail("link"); return; }
  if (stat(target, &direct) != 0) { fail("stat target"); return; }
  printf("hard link: nlink %d\n", (int)direct.st_nlink);
  if (unlink(hard) != 0 || unlink(lnk) != 0) fail("unlink links");
  if (stat(target, &direct) != 0) { fail("stat target"); return; }
  printf("after unlink: nlink %d\n", (int)direct.st_nlink);
}

static void cmd_churn(int n) {
  char dir[PATH_BYTES], p[PATH_BYTES + 32];
  pathf(dir, store_dir, "%s", "churn");
  if (mkdir(dir, 0755) != 0) { fail("mkdir churn"); return; }
  for (int i = 0; i < n; i++) {
    snprintf(p, sizeof p, "%s/f%04d", dir, i);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) { fail("create churn file"); return; }
    close(fd);
  }
  /* Remove each entry readdir returns while reading the same directory stream. */
  DIR *d = opendir(dir);
  if (!d) { fail("opendir churn"); return; }
  int removed = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    if (unlink(p) == 0) removed++;
  }
  closedir(d);
  printf("churn: created %d, removed %d while reading the directory\n", n, removed);
  if (rmdir(dir) != 0) fail("rmdir churn (not empty?)");
}

/* ---- the deterministic summary of every file ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void tree(const char *dir, const char *rel) {
  DIR *d = opendir(dir);
  if (!d) { fail("opendir tree"); return; }
  char *names[256];
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < 256) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    if (strncmp(de->d_name, ".MANIFEST.", 10) == 0) { printf("FAIL temp manifest left: %s\n", de->d_name); failures++; continue; }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof names[0], cmp_str);
  for (int i = 0; i < n; i++) {
    char p[PATH_BYTES], r[PATH_BYTES];
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    snprintf(r, sizeof r, "%s%s", rel, names[i]);
    struct stat st;
    if (lstat(p, &st) != 0) { fail("lstat tree"); continue; }
    if (S_ISDIR(st.st_mode)) {
      printf("  d %s/\n", r);
      char sub[PATH_BYTES];
      snprintf(sub, sizeof sub, "%s/", r);
      tree(p, sub);
    } else {
      uint64_t h = 0xcbf29ce484222325ULL;
      FILE *f = fopen(p, "rb");
      unsigned char buf[4096];
      size_t k;
      if (f) { while ((k = fread(buf, 1, sizeof buf, f)) > 0) h = fnv1a(buf, k, h); fclose(f); }
      else fail("open tree file");
      printf("  f %s %lld %016llx\n", r, (long long)st.st_size, (unsigned long long)h);
    }
    free(names[i]);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: logstore STORE_DIR INPUT_DIR [--exit N] < commands\n"); return 2; }
  store_dir = argv[1];
  input_dir = argv[2];
  int exit_status = 0;
  if (argc >= 5 && strcmp(argv[3], "--exit") == 0) exit_status = atoi(argv[4]);
  const char *who = getenv("LOGSTORE_USER");
  printf("logstore for %s\n", who ? who : "(nobody)");
  open_store();
  char line[LINE_MAX_BYTES];
  int lineno = 0;
  while (fgets(line, sizeof line, stdin)) {
    lineno++;
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (!line[0] || line[0] == '#') continue;
    char cmd[32] = "", a[256] = "", b[256] = "";
    sscanf(line, "%31s %255s %255[^\n]", cmd, a, b);
    printf("> %s\n", line);
    if (!strcmp(cmd, "put")) cmd_put(a, b);
    else if (!strcmp(cmd, "get")) { struct entry *e = find(a, 0); printf("%s\n", e && e->live ? e->value : "(none)"); }
    else if (!strcmp(cmd, "del")) cmd_del(a);
    else if (!strcmp(cmd, "scan")) cmd_scan(a);
    else if (!strcmp(cmd, "import")) cmd_import(a);
    else if (!strcmp(cmd, "roll")) { open_segment(); printf("segments: %d\n", nsegs); }
    else if (!strcmp(cmd, "compact")) cmd_compact();
    else if (!strcmp(cmd, "build")) cmd_build(a, b);
    else if (!strcmp(cmd, "touch-input")) cmd_touch_input(a);
    else if (!strcmp(cmd, "sleep")) cmd_sleep(atol(a));
    else if (!strcmp(cmd, "poll-sleep")) cmd_poll_sleep(atol(a));
    else if (!strcmp(cmd, "poll-stdin")) cmd_poll_stdin(atol(a));
    else if (!strcmp(cmd, "times")) cmd_times();
    else if (!strcmp(cmd, "links")) cmd_links();
    else if (!strcmp(cmd, "churn")) cmd_churn(atoi(a));
    else if (!strcmp(cmd, "random")) cmd_random();
    else if (!strcmp(cmd, "clocks")) cmd_clocks();
    else if (!strcmp(cmd, "tree")) { printf("tree:\n"); tree(store_dir, ""); }
    else { printf("FAIL unknown command on line %d: %s\n", lineno, cmd); failures++; }
    /* Answer each command before reading the next, as an interactive tool does. */
    fflush(stdout);
  }
  if (active) fclose(active);
  printf("%d commands read, %d failures\n", lineno, failures);
  return failures ? 1 : exit_status;
}
