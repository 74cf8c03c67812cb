// Shared helpers for the AssemblyScript guest samples.
//
// Built with @assemblyscript/wasi-shim, which maps `process` to WASI:
// process.argv -> args_sizes_get/args_get, process.stdout.write -> fd_write,
// process.exit / abort -> proc_exit.  Nothing else (no clock, random, stdin)
// is referenced, so those are the only imports.

/** Writes `line` plus a newline to stdout with a single fd_write. */
export function println(line: string): void {
  process.stdout.write(line + "\n");
}

/**
 * Parses argv[1] as a non-negative decimal integer (<= 2^31-1).  Returns
 * `dflt` when absent; on a malformed argument prints `usage` to stderr and
 * exits with status 2.
 */
export function argSize(dflt: i32, usage: string): i32 {
  const argv = process.argv;
  if (argv.length < 2) return dflt;
  const s = argv[1];
  let v: i64 = 0;
  let ok = s.length > 0;
  for (let i = 0; ok && i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) {
      ok = false;
    } else {
      v = v * 10 + (c - 48);
      if (v > i32.MAX_VALUE) ok = false;
    }
  }
  if (!ok) {
    process.stderr.write("usage: " + usage + "\n");
    process.exit(2);
  }
  return <i32>v;
}

/** Lowercase fixed-width hex with a 0x prefix. */
export function hex32(v: u32): string {
  let s = v.toString(16);
  while (s.length < 8) s = "0" + s;
  return "0x" + s;
}
