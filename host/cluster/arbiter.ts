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

import { randomUUID } from 'node:crypto';
import { linkSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FtvmErrorCode } from '../errors.ts';
import { makeDirs } from '../dirs.ts';

/** A host as the arbiter's registry holds it: how to reach it, and its slot. */
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

/** The arbiter's contract (FileArbiter, EtcdArbiter): the generations' test-and-set, the hosts' registry and slots, connection-id blocks, all under one cluster id; every call rejects with FTVM_ERR_ARBITER when it cannot be carried out. */
export interface Arbiter {
  /**
   * The cluster's id (a UUID), made by the first host of a new, empty arbiter
   * and kept there. Every other call checks it is still there and the same:
   * an arbiter whose state was lost or replaced (a removed directory, a wiped
   * etcd) makes every call fail with FTVM_ERR_ARBITER, so that no generation,
   * slot or name is handed out a second time; the hosts then refuse to start,
   * claim or register, and never drop a live replica for it. An arbiter with
   * state but no cluster id is refused the same way.
   *
   * `expected`: the id a host found here before (it remembers it per
   * `location`): then an arbiter without an id is not made a new cluster but
   * refused as lost, and one with another id is refused too (FTVM_ERR_ARBITER),
   * so that a host restarted while the arbiter's state is gone waits for it
   * to be restored instead of starting a cluster of its own.
   */
  open(expected?: string): Promise<string>;
  /** Where the arbiter keeps its state, as one string (a directory's absolute path, or etcd's endpoints and prefix): what hosts remember a cluster id by. */
  readonly location: string;
  /** Atomically takes generation `gen` of `vm` for `host` (or STOPPED): true only for the one call that created it. */
  claim(vm: string, gen: number, host: string): Promise<boolean>;
  /** The highest claimed generation of `vm` and its owner, or null. */
  latest(vm: string): Promise<{ gen: number; host: string } | null>;
  /** Publishes a host (replacing an earlier record of the same id); returns its slot (kept across re-registrations). */
  register(rec: Omit<HostRecord, 'slot'>): Promise<number>;
  /** Every registered host. */
  hosts(): Promise<HostRecord[]>;
  /**
   * Takes the next block of connection ids of host slot `slot` (1..MAX_SLOT):
   * its number, from 0 up, never returned before for that slot, by any host
   * or process (conn-ids.ts maps it to ids). FTVM_ERR_ARBITER when the
   * arbiter cannot be reached or its state was lost.
   */
  connBlock(slot: number): Promise<number>;
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

/** The parts of an arbiter's state, as directories (FileArbiter) or key prefixes (EtcdArbiter). */
export const ARBITER_PARTS = ['vms', 'hosts', 'slots', 'conns'] as const;

/** Checks a host slot given to connBlock. */
export function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 1 || slot > MAX_SLOT) throw new ArbiterError(`slot ${slot} must be an integer from 1 to ${MAX_SLOT}`);
}

/**
 * The file arbiter: `<dir>/cluster` holds the cluster's id (see Arbiter.open);
 * `<dir>/vms/<vm>/<gen>` is created with O_EXCL (atomic on
 * one filesystem), holding the owner's id; `<dir>/hosts/<id>.json` is each
 * host's record, replaced atomically by rename; `<dir>/slots/<n>` names the
 * host that owns slot n; `<dir>/conns/<n>/<b>` is created with O_EXCL when
 * slot n takes connection-id block b (the older ones are removed). Nothing under `<dir>` is ever created again once it
 * is gone: a removed directory stays removed, and every call fails.
 */
export class FileArbiter implements Arbiter {
  private clusterId: string | null = null;

  readonly location: string;

  constructor(readonly dir: string) {
    this.location = `file:${resolve(dir)}`;
  }

  async open(expected?: string): Promise<string> {
    if (this.clusterId !== null) {
      this.check();
      return this.clusterId;
    }
    const marker = join(this.dir, 'cluster');
    let id = readOr(marker);
    if (expected !== undefined && id !== expected) throw lostFor(this.location, expected, id);
    if (id === null) {
      try {
        makeDirs(this.dir);
      } catch (e) {
        throw new ArbiterError(`cannot make the arbiter's directory ${this.dir}: ${(e as Error).message}`);
      }
      // state without the id (its id file lost): refused, never taken for a new cluster.
      // The id file is made before any other state: state seen after the id was
      // read as absent is another host's that made the cluster meanwhile, unless
      // the id is still absent when read again.
      const state = ARBITER_PARTS.filter((part) => (readdirOr(join(this.dir, part)) ?? []).some((n) => !n.startsWith('.')));
      const made = state.length ? readOr(marker) : null;
      if (made !== null) return (this.clusterId = made);
      if (state.length) throw new ArbiterError(`${this.dir} holds arbiter state (${state.join(', ')}) but no cluster file: its state was lost or damaged; start a new cluster in an empty directory`);
      // a new cluster: the id file appears whole (written aside, then linked), and one of several hosts starting at once makes it
      const tmp = join(this.dir, `.cluster.${process.pid}.${randomUUID()}`);
      writeFileSync(tmp, randomUUID());
      try {
        linkSync(tmp, marker);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new ArbiterError(`cannot write ${marker}: ${(e as Error).message}`);
      } finally {
        unlinkSync(tmp);
      }
      id = readOr(marker);
      if (id === null) throw new ArbiterError(`${marker} vanished while the cluster was being made`);
    }
    // The host that made the cluster makes its parts just after the id file; another
    // process may read the id in between, so each one that opens makes what is missing.
    try {
      for (const part of ARBITER_PARTS) makeDirs(join(this.dir, part));
    } catch (e) {
      throw new ArbiterError(`cannot make the arbiter's directories in ${this.dir}: ${(e as Error).message}`);
    }
    this.clusterId = id;
    return id;
  }

  /** Throws FTVM_ERR_ARBITER unless the cluster file is there and names this arbiter's cluster (opening it first). */
  private check(): void {
    const id = readOr(join(this.dir, 'cluster'));
    if (id !== this.clusterId) {
      throw new ArbiterError(id === null ? `the arbiter's state in ${this.dir} is gone (no cluster file): nothing is claimed or registered until it is restored` : `the arbiter in ${this.dir} now belongs to another cluster (${id}, not ${this.clusterId}): nothing is claimed or registered`);
    }
  }

  async claim(vm: string, gen: number, host: string): Promise<boolean> {
    checkName('VM', vm);
    checkOwner(host);
    if (!Number.isSafeInteger(gen) || gen < 1) throw new ArbiterError(`generation ${gen} must be a positive integer`);
    await this.open();
    const d = join(this.dir, 'vms', vm);
    try {
      mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new ArbiterError(`claim ${vm} generation ${gen}: ${(e as Error).message}`);
    }
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
    await this.open();
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
      const host = readOr(join(this.dir, 'vms', vm, String(gen)));
      if (host === null) throw new ArbiterError(`generation ${gen} of ${vm} cannot be read`);
      if (host) return { gen, host };
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new ArbiterError(`generation ${gen} of ${vm} has no owner recorded`);
  }

  async register(rec: Omit<HostRecord, 'slot'>): Promise<number> {
    checkName('host', rec.id);
    await this.open();
    let slot = (await this.hosts()).find((h) => h.id === rec.id)?.slot ?? 0;
    for (let n = 1; !slot && n <= MAX_SLOT; n++) {
      try {
        closeSync(openSync(join(this.dir, 'slots', String(n)), 'wx'));
        writeFileSync(join(this.dir, 'slots', String(n)), rec.id);
        slot = n;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new ArbiterError(`register ${rec.id}: ${(e as Error).message}`);
      }
    }
    if (!slot) throw new ArbiterError(`no free host slot (at most ${MAX_SLOT} hosts)`);
    const tmp = join(this.dir, 'hosts', `.${rec.id}.${process.pid}.tmp`);
    try {
      writeFileSync(tmp, JSON.stringify({ ...rec, slot }));
      renameSync(tmp, join(this.dir, 'hosts', `${rec.id}.json`));
    } catch (e) {
      throw new ArbiterError(`register ${rec.id}: ${(e as Error).message}`);
    }
    return slot;
  }

  async connBlock(slot: number): Promise<number> {
    checkSlot(slot);
    await this.open();
    const d = join(this.dir, 'conns', String(slot));
    for (const dir of [join(this.dir, 'conns'), d]) {
      try {
        mkdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new ArbiterError(`connection ids of slot ${slot}: ${(e as Error).message}`);
      }
    }
    const taken = (readdirOr(d) ?? []).filter((n) => /^\d+$/.test(n)).map(Number);
    for (let b = taken.length ? Math.max(...taken) + 1 : 0; ; b++) {
      try {
        closeSync(openSync(join(d, String(b)), 'wx'));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw new ArbiterError(`connection ids of slot ${slot}: ${(e as Error).message}`);
      }
      // only the newest block need stay: the next take starts after it
      for (const old of taken) if (old < b) unlinkOr(join(d, String(old)));
      return b;
    }
  }

  async hosts(): Promise<HostRecord[]> {
    await this.open();
    const out: HostRecord[] = [];
    const names = readdirOr(join(this.dir, 'hosts'));
    if (names === null) throw new ArbiterError(`cannot read ${join(this.dir, 'hosts')}`);
    for (const name of names) {
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

/** FTVM_ERR_ARBITER for a host that found cluster `expected` at `location` before and now finds `now` (null: no cluster at all). */
export function lostFor(location: string, expected: string, now: string | null): ArbiterError {
  return new ArbiterError(
    now === null
      ? `the arbiter at ${location} held this host's cluster ${expected} and now holds no cluster: its state was lost; restore it, or start this host with a new --data-dir to join a new cluster there`
      : `the arbiter at ${location} held this host's cluster ${expected} and now holds another (${now}); start this host with a new --data-dir to join it`,
  );
}

/** The text of file `path`, or null if it cannot be read (absent, unreadable). */
function readOr(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Removes file `path` if it can (a file already gone is no matter). */
function unlinkOr(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already, or removed by a host taking a block at the same moment
  }
}

/** The names in directory `path`, or null if it cannot be read. */
function readdirOr(path: string): string[] | null {
  try {
    return readdirSync(path);
  } catch {
    return null;
  }
}
