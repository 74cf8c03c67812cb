// The instrumented module is cached by content hash: a second request for the
// same bytes and options is served from memory or disk, byte for byte the same.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clearMemoryCache, meter } from '../host/meter/index.ts';
import { watBytes } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ftvm-cache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the instrumentation cache', () => {
  it('serves the same bytes on the second request and keys on every option', () => {
    const bytes = watBytes('calls');
    const first = meter(bytes, { cacheDir: dir });
    expect(first.cached).toBe(false);
    expect(readdirSync(dir)).toEqual([`${first.key}.wasm`]);
    const second = meter(bytes, { cacheDir: dir });
    expect(second).toMatchObject({ cached: true, key: first.key });
    expect(second.binary).toEqual(first.binary);
    const other = meter(bytes, { cacheDir: dir, depthLimit: 77 });
    expect(other.key).not.toBe(first.key);
    const plain = meter(bytes, { cacheDir: dir, variant: 'plain' });
    expect(plain.key).not.toBe(first.key);
  });

  it('a fresh process reads the disk cache; a corrupted file is ignored and rebuilt', () => {
    const bytes = watBytes('branches');
    const built = meter(bytes, { cacheDir: dir });
    clearMemoryCache();
    expect(meter(bytes, { cacheDir: dir })).toMatchObject({ cached: true, key: built.key });
    clearMemoryCache();
    writeFileSync(join(dir, `${built.key}.wasm`), 'garbage');
    const rebuilt = meter(bytes, { cacheDir: dir });
    expect(rebuilt.cached).toBe(false);
    expect(rebuilt.binary).toEqual(built.binary);
    clearMemoryCache();
    expect(meter(bytes, { cacheDir: dir }).cached).toBe(true);
  });
});
