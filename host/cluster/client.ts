// A client of an ftvm cluster: talks to any host's client port, starts VMs,
// sends messages to them and receives their outputs. Outputs carry the VM's
// output sequence number; the client drops any it has already seen (a
// failover can deliver an output twice), so what it hands on is in order and
// without duplicates.
//
// Given several hosts, the client comes back on another one when its host
// fails: it keeps its connection id, tells the new host which output of each
// VM it saw last, and the VMs' primaries resend what it missed (from the
// outputs each replica keeps, the last 4096 or 4 MiB per VM). Messages sent
// while no host is reachable wait in a queue; a message in flight when the host
// failed may be lost, so requests an application must see answered are
// retried by it (the kv workload retries by request id).
//
// Every connection proves it knows the API token first (the handshake in
// wire.ts; the token never crosses the wire), checks that the host knows it
// too, and sends a keep-alive ping within a third of the host's idle timeout,
// so a client that only waits for outputs is never cut. A connection id is
// resumed with the key the host gave with it, so no other client can take it.

import { connect, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { CLIENT_FRAME_MAX, ClientError, mac, macOk, nonce, readMessages, send, type WireMessage } from './wire.ts';
import { CLIENT_RECENT_OUTPUTS_MAX as RECENT_OUTPUTS_MAX } from '../limits.ts';

/** The error a refused connection or request rejects with (its `code` is the host's FTVM_ERR_* code). */
export { ClientError } from './wire.ts';

/** One output of a VM as FtClient hands it on ('recv'): each sequence number once, in order. */
export interface Received {
  vm: string;
  /** the VM's output sequence number (from 0, continuous across failovers) */
  seq: number;
  data: Uint8Array;
  eof: boolean;
  /** the generation whose primary released it (-1 from a host that does not say) */
  gen: number;
}

/** One output sequence number that arrived with two different payloads: outputs released under two generations that disagree. */
export interface Divergence {
  vm: string;
  seq: number;
  /** the generations of the first copy and of the one that differs */
  gens: [number, number];
}

export interface ClientOptions {
  /** the API token of the cluster (the REST API's bearer token); the host refuses a client without it (FTVM_ERR_UNAUTHORIZED) */
  token: string;
  /** come back on another host (in order, round the list) when the connection fails (default: true with several hosts) */
  reconnect?: boolean;
  /** messages kept while no host is reachable (default 10000); more are dropped and counted */
  queueMax?: number;
}

export interface ClientEvents {
  recv: [Received];
  /** the connection to a host was lost (reconnecting follows when enabled) */
  close: [];
  /** connected again, to this host, with the same connection id */
  reconnect: [string];
  /** an output arrived again with another payload (see Divergence): a fault in the FT protocol, never expected */
  diverged: [Divergence];
  /** a send was refused, with its code: FTVM_ERR_BUSY (the VM's input queue is full; send again later), FTVM_ERR_VM_ENDED, FTVM_ERR_NOT_FOUND, FTVM_ERR_BAD_REQUEST, FTVM_ERR_TOO_LARGE */
  refused: [{ vm: string; code: string; message: string }];
}

export class FtClient extends EventEmitter<ClientEvents> {
  readonly addrs: string[];
  private sock: Socket | null = null;
  private readonly waiting = new Map<number, { resolve: (m: WireMessage) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  /** the highest output sequence number seen per VM */
  private readonly seen = new Map<string, number>();
  /** outputs received again (dropped) */
  duplicates = 0;
  /** outputs received again with another payload than the first copy (see the 'diverged' event) */
  divergences = 0;
  /** outputs that arrived after a later one without having been seen before: a broken order (dropped, counted) */
  outOfOrder = 0;
  /** times the client came back on a host after losing one */
  reconnects = 0;
  /** messages dropped because the queue was full while no host was reachable */
  dropped = 0;
  /** sends the hosts refused (see the 'refused' event) */
  refusals = 0;
  /** per VM, the newest outputs seen: sequence number -> the generation and a hash (FNV-1a) of the payload */
  private readonly recent = new Map<string, Map<number, { gen: number; hash: number }>>();
  /** this client's connection id, kept across reconnects */
  conn: number | null = null;
  /** the host serving this client now */
  host: string | null = null;
  private at = 0;
  private closing = false;
  private readonly queue: WireMessage[] = [];
  private readonly reconnecting: boolean;
  private readonly queueMax: number;
  private readonly token: string;
  /** the key that resumes `conn` on another host (the hello that issued it gave it) */
  private key: Uint8Array | null = null;

  /**
   * `addrs`: one host's client port ("HOST:PORT") or several, in the order to
   * try them. Throws if there is none or `opts.token` is empty.
   */
  constructor(addrs: string | string[], opts: ClientOptions) {
    super();
    this.addrs = typeof addrs === 'string' ? [addrs] : [...addrs];
    if (!this.addrs.length) throw new Error('FtClient needs at least one host address');
    if (!opts.token) throw new Error('FtClient needs the API token (opts.token)');
    this.token = opts.token;
    this.reconnecting = opts.reconnect ?? this.addrs.length > 1;
    this.queueMax = opts.queueMax ?? 10_000;
  }

  /** the address connected to now (or last) */
  get addr(): string {
    return this.addrs[this.at]!;
  }

  /**
   * Connects to the first host that answers, trying each in turn once; rejects
   * with the last failure (a ClientError with code FTVM_ERR_UNAUTHORIZED or
   * FTVM_ERR_TOO_MANY_CONNECTIONS when a host refused it).
   */
  async connect(timeoutMs = 5000): Promise<void> {
    let last: Error | null = null;
    for (let i = 0; i < this.addrs.length; i++) {
      try {
        await this.open(this.at, timeoutMs);
        return;
      } catch (e) {
        last = e as Error;
        this.at = (this.at + 1) % this.addrs.length;
      }
    }
    throw last!;
  }

  /**
   * Opens a connection to addrs[i], authenticates (wire.ts) and waits for the
   * host's hello (its connection id); a host that refuses it, or does not know
   * the token itself, fails the open.
   */
  private open(i: number, timeoutMs: number): Promise<void> {
    const addr = this.addrs[i]!;
    const c = addr.lastIndexOf(':');
    return new Promise((resolve, reject) => {
      const sock = connect({ host: addr.slice(0, c), port: Number(addr.slice(c + 1)) });
      sock.setNoDelay(true);
      let hello = false;
      let refusal: Error | null = null;
      let keepAlive: NodeJS.Timeout | null = null;
      const mine = nonce();
      let theirs: Uint8Array | null = null;
      const t = setTimeout(() => {
        sock.destroy();
        reject(new Error(`cannot reach ${addr} within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('error', (e) => {
        clearTimeout(t);
        if (!hello) reject(refusal ?? e);
      });
      sock.on('close', () => {
        clearTimeout(t);
        if (keepAlive) clearInterval(keepAlive);
        if (!hello) return reject(refusal ?? new Error(`${addr} closed the connection`));
        if (this.sock !== sock) return;
        this.sock = null;
        for (const w of this.waiting.values()) w.reject(new Error('connection closed'));
        this.waiting.clear();
        this.emit('close');
        if (this.reconnecting && !this.closing) void this.comeBack();
      });
      readMessages(
        sock,
        CLIENT_FRAME_MAX,
        (m) => {
          if (!hello) {
            if (m.t === 'error') {
              refusal = new ClientError(typeof m.code === 'string' ? m.code : 'FTVM_ERR_UNAVAILABLE', `${addr}: ${String(m.message)}`);
              return void sock.destroy();
            }
            if (m.t === 'challenge' && theirs === null && m.nonce instanceof Uint8Array) {
              theirs = m.nonce;
              send(sock, { t: 'auth', nonce: mine, mac: mac(this.token, 'client', theirs, mine) });
              return;
            }
            if (m.t !== 'hello' || theirs === null) return;
            if (!macOk(mac(this.token, 'host', mine, theirs), m.mac)) {
              refusal = new ClientError('FTVM_ERR_UNAUTHORIZED', `${addr} does not know the API token`);
              return void sock.destroy();
            }
            hello = true;
            clearTimeout(t);
            const first = this.conn === null;
            if (first) {
              this.conn = m.conn as number;
              this.key = m.key instanceof Uint8Array ? m.key : null;
            }
            this.host = String(m.host);
            this.sock = sock;
            // a client waiting for outputs says nothing: a ping keeps the host from taking it for idle
            const idleMs = typeof m.idleMs === 'number' && m.idleMs > 0 ? m.idleMs : 60_000;
            keepAlive = setInterval(() => send(sock, { t: 'ping' }), Math.max(50, Math.floor(idleMs / 3)));
            keepAlive.unref();
            if (!first) {
              // the same connection id on the new host (with its key), and what was seen of each VM
              send(sock, { t: 'resume', id: this.nextId++, conn: this.conn, key: this.key, seen: Object.fromEntries(this.seen) });
            }
            for (const q of this.queue.splice(0)) send(sock, q);
            resolve();
            return;
          }
          this.onMessage(m);
        },
        () => {},
      );
    });
  }

  /** After losing its host: tries each host in turn, with a growing pause, until one answers or close(). */
  private async comeBack(): Promise<void> {
    for (let pause = 50; !this.closing; pause = Math.min(pause * 2, 1000)) {
      this.at = (this.at + 1) % this.addrs.length;
      try {
        await this.open(this.at, 2000);
        this.reconnects++;
        this.emit('reconnect', this.host!);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, pause));
      }
    }
  }

  private onMessage(m: WireMessage): void {
    if (m.t === 'recv') {
      const vm = String(m.vm);
      const seq = m.seq as number;
      const gen = typeof m.gen === 'number' ? m.gen : -1;
      const data = m.data as Uint8Array;
      const hash = fnv1a(data, m.eof === true);
      const recent = this.recent.get(vm) ?? new Map<number, { gen: number; hash: number }>();
      this.recent.set(vm, recent);
      if (seq <= (this.seen.get(vm) ?? -1)) {
        const first = recent.get(seq);
        if (!first) this.outOfOrder++;
        else if (first.hash === hash) this.duplicates++;
        else {
          this.divergences++;
          this.emit('diverged', { vm, seq, gens: [first.gen, gen] });
        }
        return;
      }
      this.seen.set(vm, seq);
      recent.set(seq, { gen, hash });
      if (recent.size > RECENT_OUTPUTS_MAX) recent.delete(recent.keys().next().value!);
      this.emit('recv', { vm, seq, data, eof: m.eof === true, gen });
      return;
    }
    const id = (m.id ?? null) as number | null;
    if (m.t === 'error' && typeof m.code === 'string' && typeof m.vm === 'string' && (id === null || !this.waiting.has(id))) {
      // an error no request waits for, about a VM: a send refused
      this.refusals++;
      this.emit('refused', { vm: m.vm, code: m.code, message: String(m.message) });
      return;
    }
    const w = id !== null ? this.waiting.get(id) : undefined;
    if (!w) return;
    this.waiting.delete(id!);
    if (m.t === 'error') w.reject(typeof m.code === 'string' ? new ClientError(m.code, String(m.message)) : new Error(String(m.message)));
    else w.resolve(m);
  }

  /** A request and its answer, bounded in time. */
  request(m: WireMessage, timeoutMs = 30_000): Promise<WireMessage> {
    if (!this.sock) return Promise.reject(new Error('not connected'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no answer to ${m.t} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (r) => (clearTimeout(t), resolve(r)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      send(this.sock!, { ...m, id });
    });
  }

  /**
   * Starts VM `vm` of `module` on the host this client talks to; `args` are the
   * guest's arguments after the program name (its argv is [vm, ...args]);
   * `publish`, TCP ports every live host serves it on (see the README's
   * "Published ports"); `host`, the host to run the primary on (else
   * placement picks: the live host with the fewest replicas). Resolves with
   * the 'started' answer (gen, primary, backup); rejects with the host's
   * error (FTVM_ERR_UNAVAILABLE for a `host` that is no live member).
   */
  start(vm: string, module: Uint8Array, opts: { args?: string[]; env?: Record<string, string>; stdin?: Uint8Array; memoryMiB?: number; cpuPercent?: number; publish?: number[]; host?: string } = {}): Promise<WireMessage> {
    return this.request({ t: 'start', vm, module, ...opts });
  }

  /** Sends one message to a VM (its answers arrive as 'recv'); queued while reconnecting. */
  send(vm: string, data: Uint8Array | string, eof = false): void {
    const m = { t: 'send', vm, data: typeof data === 'string' ? new Uint8Array(Buffer.from(data)) : data, eof };
    if (!this.seen.has(vm)) this.seen.set(vm, -1);
    if (this.sock) return void send(this.sock, m);
    if (this.closing || (!this.reconnecting && this.conn !== null)) throw new Error('not connected');
    if (this.queue.length >= this.queueMax) this.dropped++;
    else this.queue.push(m);
  }

  status(): Promise<WireMessage> {
    return this.request({ t: 'status' });
  }

  close(): void {
    this.closing = true;
    this.sock?.destroy();
  }
}

/** 32-bit FNV-1a of `data` and the end-of-stream flag: enough to tell two payloads of one output apart (not a defence against an adversary). */
function fnv1a(data: Uint8Array, eof: boolean): number {
  let h = eof ? 0x811c9dc5 ^ 0xff : 0x811c9dc5;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  return h >>> 0;
}
