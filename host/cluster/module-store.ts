// The modules a host keeps on disk, by content: what clients uploaded
// (`PUT /v1/modules`) and what other hosts shipped to it for the backups it
// runs (originals and their metered forms). A module is named by the SHA-256
// of its bytes, in lower-case hex, the same hash a VM's log names in its start
// entry (`moduleHash`), so a module is stored, shipped and checked once
// whatever path it took.
//
// On disk, under one directory (the host's data directory + "/modules"):
//   <sha256>.wasm           a module as uploaded or received (WebAssembly binary)
//   <sha256>.metered.wasm   a metered module received from a primary's host
//   .in-<random>            a file being written; renamed into place once
//                           complete and checked, removed at the next start
// A file is only ever created whole (write to a temporary name, then rename),
// so a crash leaves either the whole module or nothing under its name.
//
// Bounds: at most `countMax` modules and `bytesMax` bytes. Storing one more
// evicts the least recently used modules that no VM on this host uses and that
// nothing is reading or writing (pinned); if that cannot make room the store
// refuses with FTVM_ERR_STORE_FULL and keeps what it has.

import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, readdirSync, rmSync, statSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { FtvmErrorCode } from '../errors.ts';
import { HASH_SLICE_BYTES, DRAIN_BYTES_MAX, STORE_COUNT_MAX, STORE_BYTES_MAX, MODULE_BYTES_MAX_DEFAULT } from '../limits.ts';
import { makeDirs } from '../dirs.ts';
export { STORE_COUNT_MAX, STORE_BYTES_MAX, MODULE_BYTES_MAX_DEFAULT };

/** A module's name: the SHA-256 of its bytes, 64 lower-case hex digits. */
export const HASH_RE = /^[0-9a-f]{64}$/;


/**
 * SHA-256 of `bytes` in lower-case hex, hashed in slices of 2 MiB with a turn
 * of the event loop between them, so hashing a large module never holds the
 * host's thread for long.
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const h = createHash('sha256');
  for (let at = 0; at < bytes.length; at += HASH_SLICE_BYTES) {
    if (at > 0) await new Promise((r) => setImmediate(r));
    h.update(bytes.subarray(at, at + HASH_SLICE_BYTES));
  }
  return h.digest('hex');
}

/**
 * `bytes` on a SharedArrayBuffer (copied once if they are not): a worker
 * thread given them (a replica, a metering job) reads them in place, where
 * other bytes are copied by the posting thread at each hand-over (about 100 ms
 * for 17 MB on a busy machine, all of it on the host's event loop).
 */
export function shared(bytes: Uint8Array): Uint8Array {
  if (bytes.buffer instanceof SharedArrayBuffer) return bytes;
  const out = new Uint8Array(new SharedArrayBuffer(bytes.length));
  out.set(bytes);
  return out;
}

/** What kind of module a stored file holds. */
export type ModuleKind = 'module' | 'metered';

/** One stored module. */
export interface StoredModule {
  /** SHA-256 of the bytes, hex */
  hash: string;
  kind: ModuleKind;
  /** its size in bytes */
  bytes: number;
  /** when it was stored or last used (ms since the epoch) */
  usedAt: number;
}

export type ModuleStoreErrorCode = Extract<FtvmErrorCode, 'FTVM_ERR_TOO_LARGE' | 'FTVM_ERR_STORE_FULL' | 'FTVM_ERR_MODULE_NOT_FOUND' | 'FTVM_ERR_BAD_REQUEST'>;

/** A store operation refused, with a stable code. */
export class ModuleStoreError extends Error {
  constructor(
    readonly code: ModuleStoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ModuleStoreError';
  }
}

export interface ModuleStoreOptions {
  /** the directory of the files (created if missing) */
  dir: string;
  /** the most modules kept (default 256) */
  countMax?: number;
  /** the most bytes kept, all modules together (default 2 GiB) */
  bytesMax?: number;
  /** the largest single module accepted, in bytes (default 128 MiB) */
  moduleBytesMax?: number;
  /** the hashes VMs on this host use now: never evicted */
  inUse?: () => Set<string>;
}


export class ModuleStore {
  readonly dir: string;
  readonly countMax: number;
  readonly bytesMax: number;
  readonly moduleBytesMax: number;
  private readonly inUse: () => Set<string>;
  private readonly entries = new Map<string, StoredModule>();
  /** hashes being read, written or about to be used: never evicted */
  private readonly pins = new Map<string, number>();
  private bytesTotal = 0;
  /** how many modules were evicted to make room */
  evictions = 0;

  /** Opens the store: creates the directory, indexes the files in it, removes unfinished ones. */
  constructor(opts: ModuleStoreOptions) {
    this.dir = opts.dir;
    this.countMax = opts.countMax ?? STORE_COUNT_MAX;
    this.bytesMax = opts.bytesMax ?? STORE_BYTES_MAX;
    this.moduleBytesMax = opts.moduleBytesMax ?? MODULE_BYTES_MAX_DEFAULT;
    this.inUse = opts.inUse ?? (() => new Set());
    if (!(this.countMax >= 1 && this.bytesMax >= this.moduleBytesMax)) throw new Error('a module store holds at least one module of the largest size');
    makeDirs(this.dir);
    for (const f of readdirSync(this.dir)) {
      const m = /^([0-9a-f]{64})(\.metered)?\.wasm$/.exec(f);
      const path = join(this.dir, f);
      if (!m) {
        if (f.startsWith('.in-')) rmSync(path, { force: true });
        continue;
      }
      const st = statSync(path);
      this.entries.set(m[1]!, { hash: m[1]!, kind: m[2] ? 'metered' : 'module', bytes: st.size, usedAt: st.mtimeMs });
      this.bytesTotal += st.size;
    }
  }

  private path(hash: string, kind: ModuleKind): string {
    return join(this.dir, kind === 'metered' ? `${hash}.metered.wasm` : `${hash}.wasm`);
  }

  /** The stored module named `hash`, or undefined. */
  get(hash: string): StoredModule | undefined {
    return this.entries.get(hash);
  }

  /** Every stored module, most recently used first. */
  list(): StoredModule[] {
    return [...this.entries.values()].sort((a, b) => b.usedAt - a.usedAt);
  }

  /** Bytes and count kept now. */
  usage(): { count: number; bytes: number } {
    return { count: this.entries.size, bytes: this.bytesTotal };
  }

  /** Keeps `hash` from eviction until the returned function is called (once). */
  pin(hash: string): () => void {
    this.pins.set(hash, (this.pins.get(hash) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pins.get(hash) ?? 1) - 1;
      if (n > 0) this.pins.set(hash, n);
      else this.pins.delete(hash);
    };
  }

  /**
   * The bytes of a stored module, checked against its hash (a file that does
   * not match is removed). Throws FTVM_ERR_MODULE_NOT_FOUND.
   */
  async read(hash: string): Promise<Uint8Array> {
    const e = this.entries.get(hash);
    if (!e) throw new ModuleStoreError('FTVM_ERR_MODULE_NOT_FOUND', `no module ${hash} on this host`);
    const unpin = this.pin(hash);
    try {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await readFile(this.path(hash, e.kind)));
      } catch {
        this.forget(hash);
        throw new ModuleStoreError('FTVM_ERR_MODULE_NOT_FOUND', `module ${hash} is gone from this host's disk`);
      }
      if ((await sha256Hex(bytes)) !== hash) {
        this.forget(hash);
        await rm(this.path(hash, e.kind), { force: true });
        throw new ModuleStoreError('FTVM_ERR_MODULE_NOT_FOUND', `module ${hash} was damaged on this host's disk and is removed; upload it again`);
      }
      e.usedAt = Date.now();
      return bytes;
    } finally {
      unpin();
    }
  }

  /**
   * Stores `bytes` (already checked by the caller) under its hash; a module
   * already stored is only marked used. Returns whether it was new.
   * Throws FTVM_ERR_TOO_LARGE, FTVM_ERR_STORE_FULL.
   */
  async put(bytes: Uint8Array, kind: ModuleKind, hash?: string): Promise<{ hash: string; bytes: number; created: boolean }> {
    if (bytes.length > this.moduleBytesMax) throw new ModuleStoreError('FTVM_ERR_TOO_LARGE', `the module has ${bytes.length} bytes, more than ${this.moduleBytesMax}`);
    const h = hash ?? (await sha256Hex(bytes));
    const known = this.entries.get(h);
    if (known) {
      known.usedAt = Date.now();
      return { hash: h, bytes: known.bytes, created: false };
    }
    const unpin = this.pin(h);
    try {
      const tmp = join(this.dir, `.in-${randomBytes(8).toString('hex')}`);
      await writeFile(tmp, bytes);
      return await this.adopt(tmp, h, kind, bytes.length);
    } finally {
      unpin();
    }
  }

  /**
   * Receives a module from a stream (an HTTP body) into a temporary file,
   * hashing it on the way, at most `moduleBytesMax` bytes (FTVM_ERR_TOO_LARGE
   * as soon as it has more). `check` gets the whole bytes before the module is
   * kept (it throws to refuse it); nothing is kept when it throws.
   */
  async receive(stream: Readable, kind: ModuleKind, check: (bytes: Uint8Array) => Promise<void>): Promise<{ hash: string; bytes: number; created: boolean }> {
    const tmp = join(this.dir, `.in-${randomBytes(8).toString('hex')}`);
    const out = createWriteStream(tmp);
    const h = createHash('sha256');
    let n = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        let failed = false;
        let ended = false;
        const fail = (e: Error): void => {
          if (failed) return;
          failed = true;
          stream.unpipe(out);
          out.destroy();
          reject(e);
        };
        stream.on('data', (chunk: Buffer) => {
          n += chunk.length;
          // Refused: what the client still sends is read and dropped (so it can read the
          // answer), up to a bound past which the connection is cut.
          if (failed) {
            if (n > this.moduleBytesMax + DRAIN_BYTES_MAX) stream.destroy();
            return;
          }
          if (n > this.moduleBytesMax) return fail(new ModuleStoreError('FTVM_ERR_TOO_LARGE', `the module has more than ${this.moduleBytesMax} bytes`));
          h.update(chunk);
        });
        stream.once('end', () => (ended = true));
        stream.once('error', fail);
        stream.once('close', () => ended || fail(new ModuleStoreError('FTVM_ERR_BAD_REQUEST', 'the upload was cut off')));
        out.once('error', fail);
        out.once('finish', () => failed || resolve());
        stream.pipe(out);
      });
      const hash = h.digest('hex');
      const known = this.entries.get(hash);
      if (known) {
        known.usedAt = Date.now();
        await rm(tmp, { force: true });
        return { hash, bytes: known.bytes, created: false };
      }
      const unpin = this.pin(hash);
      try {
        await check(new Uint8Array(await readFile(tmp)));
        return await this.adopt(tmp, hash, kind, n);
      } finally {
        unpin();
      }
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Moves a complete temporary file into place under `hash`, evicting to make room. */
  private async adopt(tmp: string, hash: string, kind: ModuleKind, size: number): Promise<{ hash: string; bytes: number; created: boolean }> {
    const known = this.entries.get(hash);
    if (known) {
      // stored meanwhile by another request
      known.usedAt = Date.now();
      return { hash, bytes: known.bytes, created: false };
    }
    await this.makeRoom(size);
    await rename(tmp, this.path(hash, kind));
    this.entries.set(hash, { hash, kind, bytes: size, usedAt: Date.now() });
    this.bytesTotal += size;
    return { hash, bytes: size, created: true };
  }

  /** Whether `size` more bytes would fit after evicting every module that may be evicted. */
  canFit(size: number): boolean {
    if (size > this.moduleBytesMax) return false;
    const kept = this.list().filter((e) => !this.evictable(e, this.inUse()));
    return kept.length + 1 <= this.countMax && kept.reduce((k, e) => k + e.bytes, 0) + size <= this.bytesMax;
  }

  private evictable(e: StoredModule, used: Set<string>): boolean {
    return !used.has(e.hash) && !this.pins.has(e.hash);
  }

  /** Evicts least recently used modules nobody uses until one of `size` bytes fits. */
  private async makeRoom(size: number): Promise<void> {
    const fits = (): boolean => this.entries.size + 1 <= this.countMax && this.bytesTotal + size <= this.bytesMax;
    if (fits()) return;
    const used = this.inUse();
    const victims = this.list()
      .reverse()
      .filter((e) => this.evictable(e, used));
    for (const v of victims) {
      if (fits()) break;
      this.forget(v.hash);
      this.evictions++;
      await rm(this.path(v.hash, v.kind), { force: true });
    }
    if (!fits()) {
      throw new ModuleStoreError(
        'FTVM_ERR_STORE_FULL',
        `no room for ${size} more bytes: the host keeps at most ${this.countMax} modules and ${this.bytesMax} bytes, and holds ${this.entries.size} (${this.bytesTotal} bytes) that VMs use`,
      );
    }
  }

  private forget(hash: string): void {
    const e = this.entries.get(hash);
    if (!e) return;
    this.entries.delete(hash);
    this.bytesTotal -= e.bytes;
  }
}
