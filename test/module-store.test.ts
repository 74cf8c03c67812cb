// The module store on a real directory: modules are kept whole under their
// SHA-256, a host restart finds them again (and removes unfinished files), a
// damaged file is never handed out, and the count and byte bounds evict the
// least recently used modules that no VM uses, and refuse when only modules in
// use are left.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ModuleStore, ModuleStoreError, sha256Hex } from '../host/cluster/module-store.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ftvm-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const bytesOf = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof ModuleStoreError) return e.code;
    throw e;
  }
  throw new Error('it did not fail');
};

describe('the module store', () => {
  it('keeps a module under its SHA-256, once; a restart finds it and removes unfinished files', async () => {
    const s = new ModuleStore({ dir });
    const a = bytesOf(1000, 1);
    expect(await sha256Hex(a)).toBe(sha(a));
    expect(await s.put(a, 'module')).toEqual({ hash: sha(a), bytes: 1000, created: true });
    expect(await s.put(a, 'module')).toEqual({ hash: sha(a), bytes: 1000, created: false });
    expect(await s.read(sha(a))).toEqual(a);
    const m = bytesOf(10, 2);
    await s.put(m, 'metered');
    writeFileSync(join(dir, '.in-deadbeef'), 'half a module');
    const again = new ModuleStore({ dir });
    expect(again.get(sha(a))).toMatchObject({ kind: 'module', bytes: 1000 });
    expect(again.get(sha(m))).toMatchObject({ kind: 'metered', bytes: 10 });
    expect(again.usage()).toEqual({ count: 2, bytes: 1010 });
    expect(readdirSync(dir).sort()).toEqual([`${sha(m)}.metered.wasm`, `${sha(a)}.wasm`].sort());
    expect(await codeOf(again.read('0'.repeat(64)))).toBe('FTVM_ERR_MODULE_NOT_FOUND');
  });

  it('never hands out a damaged file: it is removed and reported missing', async () => {
    const s = new ModuleStore({ dir });
    const a = bytesOf(100, 3);
    await s.put(a, 'module');
    writeFileSync(join(dir, `${sha(a)}.wasm`), bytesOf(100, 4));
    expect(await codeOf(s.read(sha(a)))).toBe('FTVM_ERR_MODULE_NOT_FOUND');
    expect(s.get(sha(a))).toBeUndefined();
    expect(existsSync(join(dir, `${sha(a)}.wasm`))).toBe(false);
  });

  it('receives a stream, hashing it; refuses more than the limit and keeps nothing of it', async () => {
    const s = new ModuleStore({ dir, moduleBytesMax: 4096, bytesMax: 1 << 20 });
    const a = bytesOf(4096, 5);
    const checked: number[] = [];
    const r = await s.receive(Readable.from([Buffer.from(a.subarray(0, 1000)), Buffer.from(a.subarray(1000))]), 'module', async (b) => void checked.push(b.length));
    expect(r).toEqual({ hash: sha(a), bytes: 4096, created: true });
    expect(checked).toEqual([4096]);
    expect(await codeOf(s.receive(Readable.from([Buffer.from(bytesOf(4000, 6)), Buffer.from(bytesOf(97, 6))]), 'module', async () => {}))).toBe('FTVM_ERR_TOO_LARGE');
    // a check that refuses keeps nothing either
    await expect(s.receive(Readable.from([Buffer.from(bytesOf(10, 7))]), 'module', async () => Promise.reject(new Error('not wasm')))).rejects.toThrow('not wasm');
    expect(s.list().map((e) => e.hash)).toEqual([sha(a)]);
    expect(readdirSync(dir)).toEqual([`${sha(a)}.wasm`]);
  });

  it('evicts the least recently used modules no VM uses, by count and by bytes; refuses when only used ones are left', async () => {
    const used = new Set<string>();
    const s = new ModuleStore({ dir, countMax: 3, bytesMax: 3000, moduleBytesMax: 3000, inUse: () => used });
    const [a, b, c, d] = [1, 2, 3, 4].map((f) => bytesOf(900, f));
    for (const x of [a!, b!, c!]) {
      await s.put(x, 'module');
      await new Promise((r) => setTimeout(r, 5)); // distinct use times
    }
    used.add(sha(a!));
    // a is the oldest but in use: b goes (by count)
    await s.put(d!, 'module');
    expect(s.list().map((e) => e.hash).sort()).toEqual([a, c, d].map((x) => sha(x!)).sort());
    expect(s.evictions).toBe(1);
    // reading c makes it more recent than d: by bytes, a 1500-byte module evicts d first, then c too
    await s.read(sha(c!));
    await new Promise((r) => setTimeout(r, 5));
    const e = bytesOf(1500, 5);
    await s.put(e, 'module');
    expect(s.list().map((x) => x.hash).sort()).toEqual([sha(a!), sha(e)].sort());
    // everything left is in use: nothing can be evicted
    used.add(sha(e));
    expect(s.canFit(1000)).toBe(false);
    expect(await codeOf(s.put(bytesOf(1000, 6), 'module'))).toBe('FTVM_ERR_STORE_FULL');
    expect(s.list().map((x) => x.hash).sort()).toEqual([sha(a!), sha(e)].sort());
    // a pinned module (being read or sent) is not evicted either
    used.delete(sha(e));
    const unpin = s.pin(sha(e));
    expect(await codeOf(s.put(bytesOf(1000, 6), 'module'))).toBe('FTVM_ERR_STORE_FULL');
    unpin();
    await s.put(bytesOf(1000, 6), 'module');
    expect(s.get(sha(e))).toBeUndefined();
  });
});
