// The campaign's TCP clients: logical clients of the kvresp sample (RESP2,
// the redis protocol: redis.io/docs/reference/protocol-spec) published on a
// TCP port of every host, each one operation at a time on its own plain TCP
// connection to one host's public address, as redis-cli would. Operations
// are recorded as Ops of linearizability.ts, as workload.ts records the
// client-port ones:
//
//   SET k v  -> "+OK"               write, ok
//   GET k    -> bulk string or nil  read, ok (nil: the key is absent)
//   DEL k    -> ":N"                delete, ok
//   "-..."   (an error reply)       fail: kvresp changed nothing
//
// The connection is the client's: a failover behind the host it reached is
// invisible to it (the ingress keeps its streams), so it goes on. No reply
// within the operation timeout, or the connection reset or closed with a
// request outstanding, leaves the operation 'unknown' and ends the process
// (its socket is destroyed, so no late reply is taken for a later request);
// a new process, with a new number and a new connection (to the next host),
// takes its place. A connection that cannot be made sends nothing and
// records nothing.

import { connect, type Socket } from 'node:net';
import type { Op } from './linearizability.ts';
import type { Prng } from './prng.ts';
import { drawOp, ProcessLoops } from './workload.ts';
import { CHAOS_STAGGER_MS_MAX as STAGGER_MS_MAX, CHAOS_OPS_MAX as OPS_MAX, CHAOS_RESP_REPLY_BYTES_MAX as REPLY_BYTES_MAX } from '../limits.ts';

/** Options of a RESP workload. */
export interface RespWorkloadOptions {
  /** every host's published endpoint ("ADDR:PORT"), in order */
  endpoints: string[];
  /** logical clients running at once */
  processes: number;
  /** the first process number (numbers go up from it; distinct from other workloads') */
  firstProcess: number;
  keys: string[];
  /** ms an operation may wait for its reply before it is 'unknown' (also the connect timeout) */
  opTimeoutMs: number;
  /** a prefix that makes write values unique across trials */
  tag: string;
  /** ms since the campaign's origin (the history's clock) */
  now: () => number;
}

/** One RESP2 reply: a simple string, an error, an integer or a bulk string (null: nil). */
export type RespReply = { t: '+' | '-' | ':'; line: string } | { t: '$'; value: string | null };

/**
 * Parses the first whole reply in `buf`. Returns the reply (text as UTF-8)
 * and the bytes it took, or null while it is incomplete. Throws an Error on
 * a reply of another type (arrays are never asked for) or a bad length.
 */
export function parseReply(buf: Buffer): { reply: RespReply; used: number } | null {
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return null;
  const t = String.fromCharCode(buf[0]!);
  const line = buf.toString('utf8', 1, eol);
  if (t === '+' || t === '-' || t === ':') return { reply: { t, line }, used: eol + 2 };
  if (t !== '$') throw new Error(`unexpected RESP reply ${JSON.stringify(buf.toString('utf8', 0, 40))}`);
  const n = /^-?\d+$/.test(line) ? Number(line) : NaN;
  if (!Number.isSafeInteger(n) || n < -1) throw new Error(`bad bulk length ${JSON.stringify(line)}`);
  if (n === -1) return { reply: { t: '$', value: null }, used: eol + 2 };
  if (buf.length < eol + 2 + n + 2) return null;
  return { reply: { t: '$', value: buf.toString('utf8', eol + 2, eol + 2 + n) }, used: eol + 2 + n + 2 };
}

/** A command as a RESP array of bulk strings. */
export function encodeCommand(words: string[]): string {
  return `*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`;
}

/** A TCP connection that sends one command at a time and waits for its reply. */
class RespConn {
  private buf: Buffer = Buffer.alloc(0);
  private waiting: ((r: RespReply | null) => void) | null = null;
  private dead = false;

  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      if (this.buf.length > REPLY_BYTES_MAX) return this.fail();
      let got: ReturnType<typeof parseReply>;
      try {
        got = parseReply(this.buf);
      } catch {
        return this.fail();
      }
      if (!got) return;
      this.buf = this.buf.subarray(got.used);
      const w = this.waiting;
      this.waiting = null;
      // a reply nobody waits for: the stream is out of step; end it
      if (!w) return this.fail();
      w(got.reply);
    });
    sock.on('error', () => this.fail());
    sock.on('close', () => this.fail());
  }

  /** Connects to "ADDR:PORT" within `ms`; null when it cannot. */
  static open(endpoint: string, ms: number): Promise<RespConn | null> {
    const i = endpoint.lastIndexOf(':');
    return new Promise((resolve) => {
      const sock = connect({ host: endpoint.slice(0, i), port: Number(endpoint.slice(i + 1)) });
      const t = setTimeout(() => (sock.destroy(), resolve(null)), ms);
      sock.once('connect', () => {
        clearTimeout(t);
        sock.setNoDelay(true);
        resolve(new RespConn(sock));
      });
      sock.once('error', () => (clearTimeout(t), sock.destroy(), resolve(null)));
    });
  }

  /** Sends `words` and resolves with the reply; null when the connection broke or `ms` passed (then it is closed). */
  ask(words: string[], ms: number): Promise<RespReply | null> {
    if (this.dead) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiting = null;
        this.close();
        resolve(null);
      }, ms);
      this.waiting = (r) => (clearTimeout(t), resolve(r));
      this.sock.write(encodeCommand(words));
    });
  }

  private fail(): void {
    const w = this.waiting;
    this.waiting = null;
    this.close();
    w?.(null);
  }

  close(): void {
    this.dead = true;
    this.sock.destroy();
  }
}

/** Runs logical RESP clients until stop(); `history` holds every operation. */
export class RespWorkload extends ProcessLoops<RespConn> {
  readonly history: Op[] = [];
  /** processes that ended on an operation left 'unknown' */
  processesEnded = 0;
  private nextProcess: number;
  private nextWrite = 0;

  constructor(
    private readonly o: RespWorkloadOptions,
    private readonly rng: Prng,
  ) {
    super(o.processes);
    this.nextProcess = o.firstProcess;
  }

  /** One process slot: a process per connection, each to the next host; a new one after each 'unknown'. */
  protected async loop(slot: number): Promise<void> {
    let turn = slot;
    while (this.running) {
      const endpoint = this.o.endpoints[turn++ % this.o.endpoints.length]!;
      const c = await RespConn.open(endpoint, Math.min(2000, this.o.opTimeoutMs));
      if (!c) {
        // that host is unreachable now (a partition, or down): try the next shortly
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      this.conns.add(c);
      const process = this.nextProcess++;
      let alive = true;
      while (this.running && alive && this.history.length < OPS_MAX) {
        alive = await this.invoke(c, process);
        await new Promise((r) => setTimeout(r, this.rng.int(0, STAGGER_MS_MAX)));
      }
      c.close();
      this.conns.delete(c);
      if (!alive) this.processesEnded++;
    }
  }

  /** Draws, sends and records one operation: true once it completed, false when it is left 'unknown'. */
  private async invoke(c: RespConn, process: number): Promise<boolean> {
    const { key, f, value } = drawOp(this.rng, this.o.keys, this.o.tag, this.nextWrite++);
    const op: Op = { process, key, f, value, invokeMs: this.o.now(), completeMs: null, status: 'unknown' };
    this.history.push(op);
    const reply = await c.ask(f === 'write' ? ['SET', key, value!] : f === 'read' ? ['GET', key] : ['DEL', key], this.o.opTimeoutMs);
    if (!reply) return false;
    const expected = f === 'write' ? reply.t === '+' && reply.line === 'OK' : f === 'read' ? reply.t === '$' : reply.t === ':';
    if (reply.t === '-') op.status = 'fail';
    else if (!expected) return false; // a reply that is not this command's: what happened is unknown
    else {
      op.status = 'ok';
      if (f === 'read') op.value = (reply as { value: string | null }).value;
    }
    op.completeMs = this.o.now();
    return true;
  }
}

/**
 * Reads `keys` once more after the trial through the published port, each
 * until answered (at most `ms` in all), as operations of new processes
 * appended to `history`. Returns the value read per key (a key missing from
 * the map was never answered).
 */
export async function respFinalReads(o: Pick<RespWorkloadOptions, 'endpoints' | 'keys' | 'opTimeoutMs' | 'now'>, history: Op[], firstProcess: number, ms: number): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  const t0 = Date.now();
  let process = firstProcess;
  let turn = 0;
  for (const key of o.keys) {
    while (!out.has(key) && Date.now() - t0 < ms) {
      const c = await RespConn.open(o.endpoints[turn++ % o.endpoints.length]!, 2000);
      if (!c) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const op: Op = { process: process++, key, f: 'read', value: null, invokeMs: o.now(), completeMs: null, status: 'unknown' };
      history.push(op);
      const reply = await c.ask(['GET', key], o.opTimeoutMs);
      c.close();
      if (!reply || reply.t !== '$') {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      op.status = 'ok';
      op.completeMs = o.now();
      op.value = reply.value;
      out.set(key, op.value);
    }
  }
  return out;
}
