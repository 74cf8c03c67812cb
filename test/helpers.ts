// Shared helpers for the test suites.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import binaryen from 'binaryen';
import { loadManifest, guestPath, type SampleGuest } from '../host/runtime/samples.ts';

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

export function samples(kind?: SampleGuest['kind']): SampleGuest[] {
  return loadManifest().guests.filter((g) => !kind || g.kind === kind);
}

export const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
