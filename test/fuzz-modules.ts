// Random modules from binaryen's own fuzzer (`wasm-opt --translate-to-fuzz`,
// shipped in the npm package), seeded so any failure can be reproduced:
// module i of seed S is made from bytes of a xorshift32 stream seeded S + i.
// Generated modules are cached under .cache/fuzz by seed (wasm-opt is pinned).

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const WASM_OPT = `${ROOT}node_modules/binaryen/bin/wasm-opt`;
const CACHE = `${ROOT}.cache/fuzz/`;

/** The features the fuzzer may use: what ftvm supports, minus what it refuses by design. */
export const FUZZ_FEATURES = [
  '--mvp-features',
  '--enable-sign-ext',
  '--enable-mutable-globals',
  '--enable-nontrapping-float-to-int',
  '--enable-bulk-memory',
  '--enable-multivalue',
  '--enable-simd',
];

export function fuzzInput(seed: number): Uint8Array {
  let x = (seed * 2654435761) >>> 0 || 1;
  const out = new Uint8Array(1024 + (seed % 7) * 1024);
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

async function generate(seed: number): Promise<Uint8Array> {
  const out = `${CACHE}${seed}.wasm`;
  if (existsSync(out)) return new Uint8Array(readFileSync(out));
  const input = `${CACHE}${seed}.in`;
  writeFileSync(input, fuzzInput(seed));
  await run(process.execPath, [WASM_OPT, input, '-ttf', ...FUZZ_FEATURES, '-o', out], { timeout: 60_000 });
  return new Uint8Array(readFileSync(out));
}

/** Generates modules seed..seed+count-1, `parallel` wasm-opt processes at a time. */
export async function fuzzModules(seed: number, count: number, parallel = 2): Promise<Array<{ seed: number; bytes: Uint8Array }>> {
  mkdirSync(CACHE, { recursive: true });
  const result: Array<{ seed: number; bytes: Uint8Array }> = new Array(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      result[i] = { seed: seed + i, bytes: await generate(seed + i) };
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return result;
}

/**
 * The imports binaryen's fuzzer expects ("fuzzing-support"): `event` sees every
 * call (log-*, call-export, call-export-catch, sleep) with its arguments;
 * call-export(i) calls the i-th exported function, set with `exports()`.
 */
export function fuzzHarness(event: (name: string, args: unknown[]) => void, caught: () => void = () => {}) {
  let functions: Array<() => unknown> = [];
  const callExport = (i: number): unknown => {
    const f = functions[i];
    if (!f) throw new Error(`no export ${i}`);
    return f();
  };
  const on =
    (name: string) =>
    (...args: unknown[]): void =>
      event(name, args);
  return {
    imports: {
      'log-i32': on('log-i32'),
      'log-i64': on('log-i64'),
      'log-f32': on('log-f32'),
      'log-f64': on('log-f64'),
      'log-v128': on('log-v128'),
      'call-export': (i: number) => {
        event('call-export', [i]);
        callExport(i);
      },
      'call-export-catch': (i: number) => {
        event('call-export-catch', [i]);
        try {
          callExport(i);
          return 0;
        } catch {
          caught();
          return 1;
        }
      },
      // sleep(ms, id) returns id; nothing here waits.
      sleep: (ms: number, id: number) => (event('sleep', [ms, id]), id),
    },
    exports(instance: WebAssembly.Instance): void {
      functions = Object.values(instance.exports).filter((v): v is () => unknown => typeof v === 'function');
    },
  };
}
