// What a host remembers of the clusters it was a member of: the cluster id it
// found at each arbiter location (Arbiter.location), in <dataDir>/clusters.json.
// A host restarted while its arbiter's state is gone then refuses to start
// instead of making a new cluster there (Arbiter.open's `expected`).

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CLUSTER_MEMORY_MAX } from '../limits.ts';
import { makeDirs } from '../dirs.ts';

/**
 * The cluster id this host found at arbiter `location` before, from the
 * memory file `path`; undefined if none (or the file cannot be read: the host
 * then starts as it would the first time).
 */
export function rememberedCluster(path: string, location: string): string | undefined {
  const id = readMemory(path)[location];
  return typeof id === 'string' ? id : undefined;
}

/**
 * Remembers cluster `id` at arbiter `location` in memory file `path` (the
 * newest CLUSTER_MEMORY_MAX locations are kept), written aside and renamed so
 * that a reader never sees half a file. Throws the file system's error.
 */
export function rememberCluster(path: string, location: string, id: string): void {
  const all = readMemory(path);
  delete all[location];
  all[location] = id;
  const keys = Object.keys(all);
  for (const k of keys.slice(0, Math.max(0, keys.length - CLUSTER_MEMORY_MAX))) delete all[k];
  makeDirs(dirname(path));
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(all));
  renameSync(tmp, path);
}

function readMemory(path: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
