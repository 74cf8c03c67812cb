// The arbiter: an atomic test-and-set of each VM's generation, taken before
// any replica goes live, plus the registry through which hosts find each other.
//
// A generation is claimed at most once, by one host: the replica that claims
// generation g+1 is the only one allowed to emit output from then on; a
// replica that loses the claim, or cannot reach the arbiter, never emits.
//
// Two implementations: FileArbiter, on a directory every host can reach (the
// embedded default: exclusive file creation is the test-and-set), and
// EtcdArbiter (etcd-arbiter.ts), for hosts on several machines.

import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { FtvmErrorCode } from '../errors.ts';

export interface HostRecord {
  id: string;
  /** host:port of its peer (log channel) listener */
  peer: string;
  /** host:port of its client listener */
  client: string;
  /** the IP address its VMs' published ports listen on (absent for hosts that publish none) */
  public?: string;
  /** a small number unique in the cluster, the high byte of the connection ids this host hands out */
  slot: number;
}

export interface Arbiter {
  /** Atomically takes generation `gen` of `vm` for `host` (or STOPPED): true only for the one call that created it. */
  claim(vm: string, gen: number, host: string): Promise<boolean>;
  /** The highest claimed generation of `vm` and its owner, or null. */
  latest(vm: string): Promise<{ gen: number; host: string } | null>;
  /** Publishes a host (replacing an earlier record of the same id); returns its slot (kept across re-registrations). */
  register(rec: Omit<HostRecord, 'slot'>): Promise<number>;
  /** Every registered host. */
  hosts(): Promise<HostRecord[]>;
  close(): Promise<void>;
}

export class ArbiterError extends Error {
  readonly code = 'FTVM_ERR_ARBITER' satisfies FtvmErrorCode;
  constructor(message: string) {
    super(message);
    this.name = 'ArbiterError';
  }
}

/** Names the arbiter accepts for VMs and hosts: they become file names and etcd keys. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkName(what: string, name: string): void {
  if (!NAME_RE.test(name)) throw new ArbiterError(`${what} name ${JSON.stringify(name)} must match ${NAME_RE}`);
}

export const MAX_SLOT = 255;

/**
 * The owner of the generation that ends a VM (it was deleted): no replica of it
 * may go live after it, and the name may be used again from the next generation.
 * Not a valid host name, so no host can be mistaken for it.
 */
export const STOPPED = '-stopped';

/** Checks the owner of a claim: a host, or STOPPED. */
export function checkOwner(owner: string): void {
  if (owner !== STOPPED) checkName('host', owner);
}

/**
 * The file arbiter: `<dir>/vms/<vm>/<gen>` is created with O_EXCL (atomic on
 * one filesystem), holding the owner's id; `<dir>/hosts/<id>.json` is each
 * host's record, replaced atomically by rename; `<dir>/slots/<n>` names the
 * host that owns slot n.
 */
export class FileArbiter implements Arbiter {
  constructor(readonly dir: string) {
    for (const d of ['vms', 'hosts', 'slots']) mkdirSync(join(dir, d), { recursive: true });
  }

  async claim(vm: string, gen: number, host: string): Promise<boolean> {
    checkName('VM', vm);
    checkOwner(host);
    if (!Number.isSafeInteger(gen) || gen < 1) throw new ArbiterError(`generation ${gen} must be a positive integer`);
    const d = join(this.dir, 'vms', vm);
    mkdirSync(d, { recursive: true });
    let fd: number;
    try {
      fd = openSync(join(d, String(gen)), 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw new ArbiterError(`claim ${vm} generation ${gen}: ${(e as Error).message}`);
    }
    try {
      writeSync(fd, host);
    } finally {
      closeSync(fd);
    }
    return true;
  }

  async latest(vm: string): Promise<{ gen: number; host: string } | null> {
    checkName('VM', vm);
    let names: string[];
    try {
      names = readdirSync(join(this.dir, 'vms', vm));
    } catch {
      return null;
    }
    const gens = names.filter((n) => /^\d+$/.test(n)).map(Number);
    if (!gens.length) return null;
    const gen = Math.max(...gens);
    // The owner is written right after the exclusive create; a reader may see it empty for an instant.
    for (let i = 0; i < 100; i++) {
      const host = readFileSync(join(this.dir, 'vms', vm, String(gen)), 'utf8');
      if (host) return { gen, host };
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new ArbiterError(`generation ${gen} of ${vm} has no owner recorded`);
  }

  async register(rec: Omit<HostRecord, 'slot'>): Promise<number> {
    checkName('host', rec.id);
    let slot = (await this.hosts()).find((h) => h.id === rec.id)?.slot ?? 0;
    for (let n = 1; !slot && n <= MAX_SLOT; n++) {
      try {
        closeSync(openSync(join(this.dir, 'slots', String(n)), 'wx'));
        writeFileSync(join(this.dir, 'slots', String(n)), rec.id);
        slot = n;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    if (!slot) throw new ArbiterError(`no free host slot (at most ${MAX_SLOT} hosts)`);
    const tmp = join(this.dir, 'hosts', `.${rec.id}.${process.pid}.tmp`);
    writeFileSync(tmp, JSON.stringify({ ...rec, slot }));
    renameSync(tmp, join(this.dir, 'hosts', `${rec.id}.json`));
    return slot;
  }

  async hosts(): Promise<HostRecord[]> {
    const out: HostRecord[] = [];
    for (const name of readdirSync(join(this.dir, 'hosts'))) {
      if (!name.endsWith('.json') || name.startsWith('.')) continue;
      try {
        out.push(JSON.parse(readFileSync(join(this.dir, 'hosts', name), 'utf8')) as HostRecord);
      } catch {
        // replaced while reading: the next look sees it
      }
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async close(): Promise<void> {}
}
