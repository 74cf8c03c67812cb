// Builds the real-world test programs of wasm-src/real/ at test time, with the
// toolchains Debian ships (`make toolchains` installs them), into .cache/real/.
//
// Each program is built twice from one source: for wasm32-wasi (the guest) and
// for the machine itself (the native reference whose behaviour the guest's must
// match). Outputs are cached by a hash of the source, the flags and the compiler's
// version, so a second test run compiles nothing.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root directory (absolute, with a trailing slash). */
export const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** Where built programs are kept between runs (ignored by git; `make clean` removes it). */
export const BUILD_DIR = join(ROOT, '.cache', 'real');

/** A language of the real programs, each with its own toolchain. */
export type Lang = 'c' | 'rust';
/** What a program is built for: the wasm32-wasi guest, or the machine running the tests. */
export type Target = 'wasm' | 'native';

// Debian's compilers, by absolute path: a rustup toolchain earlier on PATH may lack the
// wasm target, and the test must use what `make toolchains` installs.
const CLANG = '/usr/bin/clang';
const WASM_LD = '/usr/bin/wasm-ld';
const WASI_LIBC = '/usr/lib/wasm32-wasi/libc.a';
const RUSTC = '/usr/bin/rustc';
const RUST_WASI_STD = '/usr/lib/rustlib/wasm32-wasi/lib';
const CC = '/usr/bin/cc';

/** Flags for each language and target; part of the cache key. */
const FLAGS: Record<Lang, Record<Target, string[]>> = {
  c: {
    wasm: ['--target=wasm32-wasi', '-O2', '-std=c11', '-Wall', '-Wextra', '-Werror', '-Wl,--strip-debug'],
    native: ['-O2', '-std=c11', '-Wall', '-Wextra', '-Werror'],
  },
  rust: {
    // Debian 12's rustc 1.63 names the preview1 target wasm32-wasi.
    wasm: ['--edition', '2021', '--target', 'wasm32-wasi', '-C', 'opt-level=2', '-C', 'strip=debuginfo'],
    native: ['--edition', '2021', '-C', 'opt-level=2'],
  },
};

/**
 * The tools a language needs for a target that are missing on this machine, as
 * absolute paths or descriptions; [] when everything is installed.
 */
export function missingTools(lang: Lang, target: Target): string[] {
  const need =
    lang === 'c'
      ? target === 'wasm'
        ? [CLANG, WASM_LD, WASI_LIBC]
        : [CLANG]
      : target === 'wasm'
        ? [RUSTC, RUST_WASI_STD]
        : [RUSTC, CC];
  const missing = need.filter((p) => !existsSync(p));
  if (lang === 'c' && target === 'wasm' && existsSync(CLANG)) {
    // wasm32 compiler-rt builtins (libclang-rt-14-dev-wasm32): clang names the file it wants.
    const rt = execFileSync(CLANG, ['--target=wasm32-wasi', '-print-libgcc-file-name'], { encoding: 'utf8' }).trim();
    if (!existsSync(rt)) missing.push(rt);
  }
  return missing;
}

function compilerVersion(lang: Lang): string {
  return execFileSync(lang === 'c' ? CLANG : RUSTC, ['--version'], { encoding: 'utf8' });
}

/**
 * Builds `wasm-src/real/<lang>/<name>.{c,rs}` for `target` and returns the output's
 * absolute path (a `.wasm` module, or a native executable). Reuses an earlier build of
 * the same source, flags and compiler.
 *
 * Errors: an Error naming `make toolchains` when a compiler, linker or library is
 * missing (the test then fails; it never skips); the compiler's own message when the
 * build fails.
 */
export function buildProgram(lang: Lang, name: string, target: Target): string {
  const missing = missingTools(lang, target);
  if (missing.length) {
    throw new Error(
      `cannot build ${name} (${lang}, ${target}): missing ${missing.join(', ')}; run \`make toolchains\` ` +
        '(it installs clang, lld, wasi-libc, libclang-rt-14-dev-wasm32, rustc and libstd-rust-dev-wasm32 from Debian)',
    );
  }
  const source = join(ROOT, 'wasm-src', 'real', lang, `${name}.${lang === 'c' ? 'c' : 'rs'}`);
  const flags = FLAGS[lang][target];
  const key = createHash('sha256')
    .update(readFileSync(source))
    .update('\0')
    .update(flags.join(' '))
    .update('\0')
    .update(compilerVersion(lang))
    .digest('hex')
    .slice(0, 16);
  mkdirSync(BUILD_DIR, { recursive: true });
  const out = join(BUILD_DIR, `${name}-${target}-${key}${target === 'wasm' ? '.wasm' : ''}`);
  if (existsSync(out)) return out;
  // Build under a temporary name and rename, so an interrupted build leaves no bad cache entry.
  const tmp = `${out}.tmp-${process.pid}`;
  const compiler = lang === 'c' ? CLANG : RUSTC;
  execFileSync(compiler, [...flags, '-o', tmp, source], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
  renameSync(tmp, out);
  return out;
}
