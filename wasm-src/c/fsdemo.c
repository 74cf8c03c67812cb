/*
 * fsdemo: test helper for ftvm's in-memory filesystem (the VirtualFs
 * preopened as "/").
 *
 *   fsdemo.wasm
 *
 * Uses plain wasi-libc stdio/dirent/unistd calls (unlike the other C guests,
 * which avoid <stdio.h>):
 *   1. mkdir /fsdemo; write /fsdemo/a.txt ("alpha\n"), append "beta\n";
 *   2. seek to offset 6 in a.txt (r+) and overwrite "beta" with "BETA";
 *   3. write /fsdemo/b.txt and rename it to c.txt;
 *   4. write /fsdemo/d.txt, then unlink it; mkdir + rmdir /fsdemo/sub;
 *   5. read a.txt back and check its contents ("alpha\nBETA\n");
 *   6. list /fsdemo (names sorted in the guest, so the order a host's
 *      readdir uses does not matter);
 *   7. read /input.txt if it exists (length and FNV-1a 32 of its bytes);
 * and prints one line
 *
 *   fsdemo: files=<name,...> a=<fnv32 of a.txt> input=<len>:<fnv32>|none
 *
 * With no preopened directory (e.g. under node:wasi without preopens) it
 * prints "fsdemo: no preopened directory" and exits 0.  Any failing step
 * prints "fsdemo: <step> failed: <errno>" and exits 1.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *step) {
  printf("fsdemo: %s failed: %d\n", step, errno);
  return 1;
}

static uint32_t fnv32(const unsigned char *p, size_t n, uint32_t h) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

static int write_file(const char *path, const char *mode, const char *text) {
  FILE *f = fopen(path, mode);
  if (!f) return -1;
  if (fputs(text, f) < 0) {
    fclose(f);
    return -1;
  }
  return fclose(f) == 0 ? 0 : -1;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(void) {
  DIR *root = opendir("/");
  if (!root) {
    printf("fsdemo: no preopened directory\n");
    return 0;
  }
  closedir(root);

  if (mkdir("/fsdemo", 0777) != 0 && errno != EEXIST) return fail("mkdir /fsdemo");
  if (write_file("/fsdemo/a.txt", "w", "alpha\n") != 0) return fail("write a.txt");
  if (write_file("/fsdemo/a.txt", "a", "beta\n") != 0) return fail("append a.txt");

  FILE *f = fopen("/fsdemo/a.txt", "r+");
  if (!f) return fail("open a.txt r+");
  if (fseek(f, 6, SEEK_SET) != 0) return fail("fseek");
  if (fputs("BETA", f) < 0) return fail("overwrite");
  if (fclose(f) != 0) return fail("close a.txt");

  if (write_file("/fsdemo/b.txt", "w", "to be renamed\n") != 0) return fail("write b.txt");
  if (rename("/fsdemo/b.txt", "/fsdemo/c.txt") != 0) return fail("rename");
  if (write_file("/fsdemo/d.txt", "w", "to be removed\n") != 0) return fail("write d.txt");
  if (unlink("/fsdemo/d.txt") != 0) return fail("unlink");
  if (mkdir("/fsdemo/sub", 0777) != 0) return fail("mkdir sub");
  if (rmdir("/fsdemo/sub") != 0) return fail("rmdir sub");

  unsigned char buf[256];
  f = fopen("/fsdemo/a.txt", "r");
  if (!f) return fail("open a.txt r");
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  if (n != 11 || memcmp(buf, "alpha\nBETA\n", 11) != 0) {
    printf("fsdemo: a.txt has unexpected contents (%u bytes)\n", (unsigned)n);
    return 1;
  }
  uint32_t a_hash = fnv32(buf, n, 2166136261u);

  char *names[64];
  int count = 0;
  DIR *d = opendir("/fsdemo");
  if (!d) return fail("opendir /fsdemo");
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (count < 64) names[count++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)count, sizeof names[0], cmp_names);

  printf("fsdemo: files=");
  for (int i = 0; i < count; i++) printf("%s%s", i ? "," : "", names[i]);
  printf(" a=%08x input=", (unsigned)a_hash);

  f = fopen("/input.txt", "r");
  if (f) {
    uint32_t h = 2166136261u;
    size_t len = 0, k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
      h = fnv32(buf, k, h);
      len += k;
    }
    fclose(f);
    printf("%u:%08x\n", (unsigned)len, (unsigned)h);
  } else {
    printf("none\n");
  }
  return 0;
}
