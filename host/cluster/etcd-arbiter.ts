// The etcd arbiter: the same test-and-set and host registry as FileArbiter,
// kept in etcd so that hosts on several machines share it.
//
// Keys, under the prefix (default 'ftvm/'):
//   cluster                    the cluster's id (Arbiter.open): every call checks it
//   vms/<vm>/<gen, 12 digits>  the owner's id; zero-padded so that key order is generation order
//   slots/<n>                  the id of the host that took slot n
//   hosts/<id>                 the host's record (JSON, with its slot)
//   conns/<n>                  the last connection-id block slot n took
//
// Every call is bounded by timeoutMs. A call that times out may still have
// been applied by etcd (a claim among them): its caller must treat it as lost,
// which is safe because a replica that cannot reach the arbiter never emits.

import { randomUUID } from 'node:crypto';
import { Etcd3, GRPCDeadlineExceededError, isRecoverableError } from 'etcd3';
import { ArbiterError, MAX_SLOT, checkName, checkOwner, checkSlot, lostFor, type Arbiter, type HostRecord } from './arbiter.ts';

export interface EtcdArbiterOptions {
  /** etcd client URLs, e.g. 'http://127.0.0.1:2379' (a bare host:port means http) */
  endpoints: string[];
  /** key prefix, so that several clusters can share one etcd; default 'ftvm/' */
  prefix?: string;
  /** bound on every operation, in milliseconds; default 2000 */
  timeoutMs?: number;
}

/** Generations are 12-digit keys; larger ones would break the key order latest() relies on. */
const MAX_GEN = 999_999_999_999;

/** Raised by bounded() when etcd has not answered in time. */
class Timeout extends Error {}

export class EtcdArbiter implements Arbiter {
  readonly endpoints: string[];
  readonly prefix: string;
  readonly timeoutMs: number;
  private readonly client: Etcd3;
  private clusterId: string | null = null;

  constructor(opts: EtcdArbiterOptions) {
    if (!opts.endpoints.length) throw new ArbiterError('EtcdArbiter needs at least one etcd endpoint');
    this.endpoints = opts.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
    this.prefix = opts.prefix ?? 'ftvm/';
    this.timeoutMs = opts.timeoutMs ?? 2000;
    if (!(this.timeoutMs > 0)) throw new ArbiterError(`timeoutMs ${opts.timeoutMs} must be positive`);
    this.client = new Etcd3({
      hosts: this.endpoints,
      dialTimeout: this.timeoutMs,
      // A deadline on each RPC too, so that a call abandoned by bounded() does not linger in the client.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.timeoutMs }),
    });
  }

  get location(): string {
    return `etcd:${this.endpoints.join(',')}/${this.prefix}`;
  }

  async open(expected?: string): Promise<string> {
    return this.bounded('open', async () => {
      if (expected !== undefined && this.clusterId === null) {
        const now = await this.client.get(this.clusterKey()).string();
        if (now !== expected) throw lostFor(this.location, expected, now);
      }
      return this.opened();
    });
  }

  /** The cluster's id, checked against etcd (made there by the first host of an empty prefix); FTVM_ERR_ARBITER if it is gone or another. */
  private async opened(): Promise<string> {
    const key = this.clusterKey();
    const now = await this.client.get(key).string();
    if (this.clusterId !== null) {
      if (now !== this.clusterId) {
        throw new ArbiterError(now === null ? `the arbiter's state under ${this.prefix} in etcd is gone (no cluster key): nothing is claimed or registered until it is restored` : `the arbiter under ${this.prefix} in etcd now belongs to another cluster (${now}, not ${this.clusterId}): nothing is claimed or registered`);
      }
      return now;
    }
    if (now !== null) return (this.clusterId = now);
    // state without the id (its key lost): refused, never taken for a new cluster.
    // The cluster key is made before any other state (every other write compares
    // it in its transaction): state seen after the key was read as absent is
    // another host's that made the cluster meanwhile, unless the key is still
    // absent when read again.
    const state = (await this.client.getAll().prefix(this.prefix).limit(2).keys()).filter((k) => k !== key);
    const made = state.length ? await this.client.get(key).string() : null;
    if (made !== null) return (this.clusterId = made);
    if (state.length) throw new ArbiterError(`etcd holds arbiter state under ${this.prefix} (${state[0]}) but no cluster key: its state was lost or damaged; start a new cluster under an empty prefix`);
    await this.client.if(key, 'Create', '==', 0).then(this.client.put(key).value(randomUUID())).commit();
    const id = await this.client.get(key).string();
    if (id === null) throw new ArbiterError(`${key} vanished while the cluster was being made`);
    return (this.clusterId = id);
  }

  async claim(vm: string, gen: number, host: string): Promise<boolean> {
    checkName('VM', vm);
    checkOwner(host);
    if (!Number.isSafeInteger(gen) || gen < 1) throw new ArbiterError(`generation ${gen} must be a positive integer`);
    if (gen > MAX_GEN) throw new ArbiterError(`generation ${gen} is beyond the etcd arbiter's limit of ${MAX_GEN}`);
    const key = `${this.vmPrefix(vm)}${String(gen).padStart(12, '0')}`;
    return this.bounded(`claim ${vm} generation ${gen}`, async () => {
      const id = await this.opened();
      // Create-if-absent (a key never created has create revision 0), in the same transaction as the cluster's id is still there
      const res = await this.client.if(key, 'Create', '==', 0).and(this.clusterKey(), 'Value', '==', id).then(this.client.put(key).value(host)).commit();
      if (!res.succeeded) await this.opened(); // the id gone: FTVM_ERR_ARBITER rather than a lost claim
      return res.succeeded;
    });
  }

  async latest(vm: string): Promise<{ gen: number; host: string } | null> {
    checkName('VM', vm);
    const prefix = this.vmPrefix(vm);
    return this.bounded(`latest ${vm}`, async () => {
      await this.opened();
      const res = await this.client.getAll().prefix(prefix).sort('Key', 'Descend').limit(1).exec();
      const kv = res.kvs[0];
      if (!kv) return null;
      return { gen: Number(kv.key.toString().slice(prefix.length)), host: kv.value.toString() };
    });
  }

  async register(rec: Omit<HostRecord, 'slot'>): Promise<number> {
    checkName('host', rec.id);
    const hostKey = `${this.prefix}hosts/${rec.id}`;
    return this.bounded(`register ${rec.id}`, async () => {
      const id = await this.opened();
      const old = await this.client.get(hostKey).string();
      let slot = old === null ? 0 : parseSlot(old);
      if (!slot) {
        // Skip the slots already taken; the transaction still settles a race for a free one.
        const taken = new Set(await this.client.getAll().prefix(`${this.prefix}slots/`).keys());
        for (let n = 1; !slot && n <= MAX_SLOT; n++) {
          const key = `${this.prefix}slots/${n}`;
          if (taken.has(key)) continue;
          const res = await this.client.if(key, 'Create', '==', 0).and(this.clusterKey(), 'Value', '==', id).then(this.client.put(key).value(rec.id)).commit();
          if (res.succeeded) slot = n;
          else await this.opened();
        }
      }
      if (!slot) throw new ArbiterError(`no free host slot (at most ${MAX_SLOT} hosts)`);
      await this.client.put(hostKey).value(JSON.stringify({ ...rec, slot }));
      return slot;
    });
  }

  async connBlock(slot: number): Promise<number> {
    checkSlot(slot);
    const key = `${this.prefix}conns/${slot}`;
    return this.bounded(`connection ids of slot ${slot}`, async () => {
      const id = await this.opened();
      // compare-and-swap on the key's last change, in one transaction with the cluster's id; a race is tried again
      for (;;) {
        const kv = (await this.client.get(key).exec()).kvs[0];
        const b = kv ? Number(kv.value.toString()) + 1 : 0;
        const res = await (kv ? this.client.if(key, 'Mod', '==', kv.mod_revision) : this.client.if(key, 'Create', '==', 0))
          .and(this.clusterKey(), 'Value', '==', id)
          .then(this.client.put(key).value(String(b)))
          .commit();
        if (res.succeeded) return b;
        await this.opened();
      }
    });
  }

  async hosts(): Promise<HostRecord[]> {
    const values = await this.bounded('hosts', async () => {
      await this.opened();
      return this.client.getAll().prefix(`${this.prefix}hosts/`).strings();
    });
    const out: HostRecord[] = [];
    for (const v of Object.values(values)) {
      try {
        out.push(JSON.parse(v) as HostRecord);
      } catch {
        // not a record of ours: skip it, as FileArbiter skips unreadable files
      }
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async close(): Promise<void> {
    this.client.close();
  }

  private clusterKey(): string {
    return `${this.prefix}cluster`;
  }

  private vmPrefix(vm: string): string {
    return `${this.prefix}vms/${vm}/`;
  }

  /** Runs one operation against etcd, rejecting with an ArbiterError if it fails or takes longer than timeoutMs. */
  private async bounded<T>(what: string, op: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Timeout(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      return await Promise.race([op(), timeout]);
    } catch (e) {
      if (e instanceof ArbiterError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      if (unreachable(e)) throw new ArbiterError(`${what}: etcd unreachable at ${this.endpoints.join(', ')}: ${msg}`);
      throw new ArbiterError(`${what}: etcd failed: ${msg}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Errors that mean etcd could not be reached, as opposed to etcd refusing the request. */
function unreachable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  // After repeated failures the client's circuit breaker (cockatiel's BrokenCircuitError) fails calls fast for a few seconds.
  const broken = (e as { isBrokenCircuitError?: boolean }).isBrokenCircuitError === true;
  return broken || e instanceof Timeout || e instanceof GRPCDeadlineExceededError || isRecoverableError(e);
}

function parseSlot(json: string): number {
  try {
    const slot = (JSON.parse(json) as Partial<HostRecord>).slot;
    return Number.isInteger(slot) && slot! >= 1 && slot! <= MAX_SLOT ? slot! : 0;
  } catch {
    return 0;
  }
}
