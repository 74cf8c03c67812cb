// Shared helpers for the test suites.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import binaryen from 'binaryen';
import { loadManifest, guestPath, type SampleGuest } from '../host/runtime/samples.ts';
import type { Nondeterminism } from '../host/runtime/wasi.ts';
import type { EntryPayloads } from '../host/log/format.ts';
import { moduleHash } from '../host/runtime/record.ts';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from '../host/meter/abi.ts';

const WAT_DIR = fileURLToPath(new URL('../wasm-src/wat/', import.meta.url));

/** A module of the WAT corpus, assembled by binaryen (no external compiler needed). */
export function watBytes(name: string): Uint8Array {
  const m = binaryen.parseText(readFileSync(`${WAT_DIR}${name}.wat`, 'utf8'));
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

export function watText(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

export function sampleBytes(g: SampleGuest): Uint8Array {
  return new Uint8Array(readFileSync(guestPath(g.wasm)));
}

/** The sample guests of one kind; without one, every command (compute and test) guest. */
export function samples(kind?: SampleGuest['kind']): SampleGuest[] {
  return loadManifest().guests.filter((g) => (kind ? g.kind === kind : g.kind !== 'service'));
}

export const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/**
 * Clocks and randomness that give the same sequence in every run: for tests
 * that compare runs of guests that read them (the entropy sample).
 */
export function fixedNondeterminism(): Nondeterminism {
  let t = 1_700_000_000_000_000_000n;
  let x = 0x9e3779b9;
  return {
    clockNs: () => (t += 1_234_567n),
    clockResolutionNs: () => 1n,
    randomFill: (d) => {
      for (let i = 0; i < d.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        d[i] = x & 0xff;
      }
    },
  };
}

/** The start entry a host writes for `module` run as a replica with `args` (the kv sample's by default): the default limits, a digest every 1,000,000 counts. */
export function replicaStartOf(module: Uint8Array, args: string[] = ['kv']): EntryPayloads['start'] {
  return { module: moduleHash(module), args, env: {}, digestEvery: 1_000_000n, depthLimit: DEFAULT_DEPTH_LIMIT, memoryLimitPages: DEFAULT_MEMORY_LIMIT_PAGES, canonicalizeNaNs: false };
}
