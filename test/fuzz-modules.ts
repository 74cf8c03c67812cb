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
