// The campaign's clients: logical clients (Jepsen's "processes") of the kv
// sample in the root namespace, each one operation at a time on a few keys,
// through its own FtClient connection, recording every operation as an Op of
// linearizability.ts: invoked at invokeMs, completed at completeMs with status
// 'ok', 'fail' or 'unknown' (then completeMs is null).
//
// An operation is sent once, never retried: a retried write could be applied
// twice, the second time after a later write, and the history would blame the
// VM for what the client did. Its answer (matched by the request id the kv
// sample echoes) completes it 'ok'; the kv sample's "ERR" completes it 'fail'
// (the guest changed nothing). No answer within the operation timeout leaves
// it 'unknown', and the process is done: its connection is closed (so no
// late answer or refusal can be taken for a later operation's) and a new
// process, with a new number and a new connection, takes its place, as Jepsen
// does.
//
// Refusals. A send the host refuses comes back as an error naming the VM (the
// FtClient 'refused' event). With one message in flight per connection, it is
// this operation's. Which codes mean "not applied" (host/errors.ts, and
// FtHost.route, which raises them before a message is queued for the guest or
// forwarded to the primary's host):
//   FTVM_ERR_BUSY         the VM's input queue was full: "nothing was queued"
//   FTVM_ERR_VM_ENDED     the guest ended: it takes no more messages
//   FTVM_ERR_NOT_FOUND    no host knows a VM of that name: nowhere to queue it
//   FTVM_ERR_BAD_REQUEST, FTVM_ERR_TOO_LARGE   the message was refused as malformed
// are 'fail'. Any other code (FTVM_ERR_UNAVAILABLE, FTVM_ERR_NOT_PRIMARY,
// FTVM_ERR_INTERNAL, ...) does not say where the message got to, so the
// operation stays 'unknown' (and its process ends).
//
// Outputs under two generations: every output a client receives carries the
// VM's output sequence number, the same on every replica, and the generation
// that released it. The workload keeps, for every (VM, sequence number), the
// client, generation and bytes it came with; the same number arriving with
// other bytes or at another client means two replicas released different
// outputs as the same one (two primaries). A copy that one client gets again
// with other bytes is FtClient's 'diverged' event, counted the same way. And an
// answer to a request id that client never sent was delivered to the wrong
// client (connection ids handed out twice).

import { createHash } from 'node:crypto';
import { FtClient, type Received } from '../cluster/client.ts';
import type { Op } from './linearizability.ts';
import type { Prng } from './prng.ts';
import { CHAOS_OUTPUTS_KEPT_MAX as OUTPUTS_KEPT_MAX, CHAOS_STAGGER_MS_MAX as STAGGER_MS_MAX, CHAOS_OPS_MAX as OPS_MAX } from '../limits.ts';

/** Refusal codes that guarantee the message was not applied (see above). */
export const NOT_APPLIED_CODES: ReadonlySet<string> = new Set(['FTVM_ERR_BUSY', 'FTVM_ERR_VM_ENDED', 'FTVM_ERR_NOT_FOUND', 'FTVM_ERR_BAD_REQUEST', 'FTVM_ERR_TOO_LARGE']);

/** Outputs remembered per trial, the longest pause between two operations (ms), operations recorded per trial (host/limits.ts). */
export { OUTPUTS_KEPT_MAX, STAGGER_MS_MAX, OPS_MAX };

/** Two outputs released under the same sequence number that differ. */
export interface OutputConflict {
  vm: string;
  seq: number;
  /** 'seq': two outputs under one sequence number; 'misdelivered': an answer to a request the client did not send */
  kind: 'seq' | 'misdelivered';
  first: { client: number; conn: number | null; gen: number; text: string };
  second?: { client: number; conn: number | null; gen: number; text: string };
}

/** Options of a workload. */
export interface WorkloadOptions {
  /** every host's client port ("ADDR:PORT"), in order */
  hosts: string[];
  token: string;
  vm: string;
  /** logical clients running at once */
  processes: number;
  keys: string[];
  /** ms an operation may wait for its answer before it is 'unknown' */
  opTimeoutMs: number;
  /** a prefix that makes write values unique across trials */
  tag: string;
  /** ms since the campaign's origin (the history's clock) */
  now: () => number;
}

/**
 * Draws one operation on `keys`: a write (45%, of the value `${tag}.${n}`,
 * unique while `n` is), a read (45%) or a delete (10%).
 */
export function drawOp(rng: Prng, keys: readonly string[], tag: string, n: number): { key: string; f: Op['f']; value: string | null } {
  const key = rng.pick(keys);
  const r = rng.next();
  const f: Op['f'] = r < 0.45 ? 'write' : r < 0.9 ? 'read' : 'delete';
  return { key, f, value: f === 'write' ? `${tag}.${n}` : null };
}

/**
 * Logical clients, each a loop (`loop(slot)`, the subclass's) of processes
 * over connections of type C: started together, stopped together (the
 * connections still open are closed once every loop has seen `running`
 * go false and returned).
 */
export abstract class ProcessLoops<C extends { close(): void }> {
  protected running = false;
  private readonly loops: Promise<void>[] = [];
  /** the connections open now (each loop adds and deletes its own) */
  protected readonly conns = new Set<C>();

  constructor(private readonly processes: number) {}

  /** One process slot's loop, until `running` is false. */
  protected abstract loop(slot: number): Promise<void>;

  /** Starts the processes. */
  start(): void {
    this.running = true;
    for (let i = 0; i < this.processes; i++) this.loops.push(this.loop(i));
  }

  /** Stops invoking; waits (at most an operation timeout) for the operations in flight. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    for (const c of this.conns) c.close();
    this.conns.clear();
  }
}

/** An operation in flight on one process. */
interface Pending {
  id: string;
  op: Op;
  done: (text: string | null, refused?: string) => void;
}

/** Runs logical clients until stop(); `history` holds every operation. */
export class Workload extends ProcessLoops<FtClient> {
  readonly history: Op[] = [];
  readonly conflicts: OutputConflict[] = [];
  /** operations left 'unknown' whose connection was closed */
  processesEnded = 0;
  private nextProcess = 0;
  private nextWrite = 0;
  private nextReq = 0;
  private readonly outputs = new Map<string, { client: number; conn: number | null; gen: number; digest: string; text: string }>();
  private nextClient = 0;

  constructor(
    private readonly o: WorkloadOptions,
    private readonly rng: Prng,
  ) {
    super(o.processes);
  }

  /** A new client connection for process slot `slot` (its host list rotated so slots start on different hosts). */
  private async connect(slot: number): Promise<{ c: FtClient; no: number } | null> {
    const hosts = this.o.hosts.map((_, i) => this.o.hosts[(i + slot) % this.o.hosts.length]!);
    const c = new FtClient(hosts, { token: this.o.token, reconnect: true, queueMax: 16 });
    const no = this.nextClient++;
    c.on('recv', (r) => this.noteOutput(c, no, r));
    c.on('diverged', (d) => {
      const was = this.outputs.get(`${d.vm}#${d.seq}`);
      this.conflicts.push({ vm: d.vm, seq: d.seq, kind: 'seq', first: { client: no, conn: c.conn, gen: d.gens[0], text: was?.text ?? '?' }, second: { client: no, conn: c.conn, gen: d.gens[1], text: '(dropped by the client: another payload)' } });
    });
    try {
      await c.connect(Math.min(2000, this.o.opTimeoutMs));
    } catch {
      c.close();
      return null;
    }
    this.conns.add(c);
    this.sent.set(no, new Set());
    return { c, no };
  }

  /** The two-generations check: one (vm, seq) must always be the same output. */
  private noteOutput(c: FtClient, client: number, r: Received): void {
    const key = `${r.vm}#${r.seq}`;
    const text = Buffer.from(r.data).toString('utf8');
    const me = { client, conn: c.conn, gen: r.gen, text: text.slice(0, 200) };
    if (!this.sent.get(client)?.has(text.split(' ')[0]!)) this.conflicts.push({ vm: r.vm, seq: r.seq, kind: 'misdelivered', first: me });
    const digest = createHash('sha256').update(r.data).digest('base64');
    const was = this.outputs.get(key);
    if (!was) {
      if (this.outputs.size < OUTPUTS_KEPT_MAX) this.outputs.set(key, { ...me, digest });
      return;
    }
    if (was.digest !== digest || was.client !== client) this.conflicts.push({ vm: r.vm, seq: r.seq, kind: 'seq', first: { client: was.client, conn: was.conn, gen: was.gen, text: was.text }, second: me });
  }
  /** the request ids each client sent (bounded by OPS_MAX in all) */
  private readonly sent = new Map<number, Set<string>>();

  /** One process slot: a process per connection; a new one after each 'unknown'. */
  protected async loop(slot: number): Promise<void> {
    while (this.running) {
      const got = await this.connect(slot);
      if (!got) {
        // no host reachable now (a partition or every host down): try again shortly
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const { c, no } = got;
      const process = this.nextProcess++;
      let pending: Pending | null = null;
      c.on('recv', (r) => {
        const text = Buffer.from(r.data).toString('utf8');
        if (pending && text.startsWith(`${pending.id} `)) pending.done(text);
      });
      c.on('refused', (r) => {
        if (pending && r.vm === this.o.vm) pending.done(null, r.code);
      });
      let alive = true;
      while (this.running && alive && this.history.length < OPS_MAX) {
        const p = this.invoke(c, process, this.sent.get(no)!);
        pending = p.pending;
        alive = await p.result;
        pending = null;
        // a pause between operations (0 to STAGGER_MS_MAX ms, drawn): histories stay small enough to check
        await new Promise((r) => setTimeout(r, this.rng.int(0, STAGGER_MS_MAX)));
      }
      c.close();
      this.conns.delete(c);
      if (!alive) this.processesEnded++;
    }
  }

  /** Draws and sends one operation; `result` resolves once it completed (true) or became 'unknown' (false). */
  private invoke(c: FtClient, process: number, sent: Set<string>): { pending: Pending; result: Promise<boolean> } {
    const { key, f, value } = drawOp(this.rng, this.o.keys, this.o.tag, this.nextWrite++);
    const id = `r${this.nextReq++}`;
    sent.add(id);
    const text = f === 'write' ? `${id} SET ${key} ${value}` : f === 'read' ? `${id} GET ${key}` : `${id} DEL ${key}`;
    const op: Op = { process, key, f, value, invokeMs: this.o.now(), completeMs: null, status: 'unknown' };
    this.history.push(op);
    let done!: Pending['done'];
    const result = new Promise<boolean>((resolve) => {
      // settled once: by its answer, its refusal or its timeout, whichever comes first
      let settled = false;
      const t = setTimeout(() => {
        settled = true;
        resolve(false);
      }, this.o.opTimeoutMs);
      done = (answer, refused) => {
        if (settled) return;
        settled = true;
        clearTimeout(t);
        if (answer === null) {
          if (!NOT_APPLIED_CODES.has(refused!)) return resolve(false);
          op.status = 'fail';
        } else {
          const rest = answer.slice(id.length + 1);
          if (rest.startsWith('ERR')) op.status = 'fail';
          else {
            op.status = 'ok';
            if (f === 'read') op.value = rest.startsWith('VALUE ') ? rest.slice(6) : null;
          }
        }
        op.completeMs = this.o.now();
        resolve(true);
      };
      try {
        c.send(this.o.vm, text);
      } catch {
        // not connected and not reconnecting: nothing was sent
        clearTimeout(t);
        op.status = 'fail';
        op.completeMs = this.o.now();
        resolve(false);
      }
    });
    return { pending: { id, op, done }, result };
  }
}

/**
 * Reads `keys` once more after the trial, each until answered (at most
 * `ms` in all), as operations of new processes appended to `history`.
 * Returns the value read per key (a key missing from the map was never
 * answered).
 */
export async function finalReads(o: Omit<WorkloadOptions, 'processes'>, history: Op[], firstProcess: number, ms: number): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  const t0 = Date.now();
  let process = firstProcess;
  for (const key of o.keys) {
    while (!out.has(key) && Date.now() - t0 < ms) {
      const c = new FtClient(o.hosts, { token: o.token, reconnect: true, queueMax: 16 });
      try {
        await c.connect(2000);
      } catch {
        c.close();
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const id = `final${process}`;
      const op: Op = { process: process++, key, f: 'read', value: null, invokeMs: o.now(), completeMs: null, status: 'unknown' };
      history.push(op);
      const answer = await new Promise<string | null>((resolve) => {
        const t = setTimeout(() => resolve(null), o.opTimeoutMs);
        c.on('recv', (r) => {
          const text = Buffer.from(r.data).toString('utf8');
          if (text.startsWith(`${id} `)) (clearTimeout(t), resolve(text));
        });
        c.on('refused', () => (clearTimeout(t), resolve(null)));
        c.send(o.vm, `${id} GET ${key}`);
      });
      c.close();
      if (answer === null || answer.slice(id.length + 1).startsWith('ERR')) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const rest = answer.slice(id.length + 1);
      op.status = 'ok';
      op.completeMs = o.now();
      op.value = rest.startsWith('VALUE ') ? rest.slice(6) : null;
      out.set(key, op.value);
    }
  }
  return out;
}
