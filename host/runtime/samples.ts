// The compiled guest samples shipped in guests/, described by guests/manifest.json.

import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const GUESTS_DIR = fileURLToPath(new URL('../../guests/', import.meta.url));

export interface SampleGuest {
  name: string;
  wasm: string;
  source: string;
  lang: 'c' | 'assemblyscript' | 'wat';
  /** 'compute' guests are benchmarked; 'test' guests exist for the test suite; 'service' guests serve requests on the virtual network */
  kind: 'compute' | 'test' | 'service';
  args_test: string[];
  args_bench: string[];
  description: string;
}

export function loadManifest(): { guests: SampleGuest[] } {
  return JSON.parse(readFileSync(join(GUESTS_DIR, 'manifest.json'), 'utf8')) as { guests: SampleGuest[] };
}

export function guestPath(wasm: string): string {
  return join(GUESTS_DIR, wasm);
}

/** A path to a .wasm file, or the name of a sample guest. */
export function resolveGuest(nameOrPath: string): string {
  if (existsSync(nameOrPath)) return nameOrPath;
  const sample = loadManifest().guests.find((g) => g.name === nameOrPath);
  if (sample) return guestPath(sample.wasm);
  throw new Error(`no such file or sample guest: ${nameOrPath}`);
}
