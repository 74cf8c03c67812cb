// A client of an ftvm cluster: talks to any host's client port, starts VMs,
// sends messages to them and receives their outputs. Outputs carry the VM's
// output sequence number; the client drops any it has already seen (a
// failover can deliver an output twice), so what it hands on is in order and
// without duplicates.

import { connect, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { CLIENT_FRAME_MAX, readMessages, send, type WireMessage } from './wire.ts';

export interface Received {
  vm: string;
  seq: number;
  data: Uint8Array;
  eof: boolean;
}

export class FtClient extends EventEmitter<{ recv: [Received]; close: [] }> {
  private sock: Socket | null = null;
  private readonly waiting = new Map<number, { resolve: (m: WireMessage) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  /** the highest output sequence number seen per VM */
  private readonly seen = new Map<string, number>();
  /** outputs received again (dropped) */
  duplicates = 0;
  /** outputs that arrived after a later one without having been seen before: a broken order (dropped, counted) */
  outOfOrder = 0;
  private readonly recent = new Map<string, Set<number>>();

  constructor(readonly addr: string) {
    super();
  }

  connect(timeoutMs = 5000): Promise<void> {
    const i = this.addr.lastIndexOf(':');
    return new Promise((resolve, reject) => {
      const sock = connect({ host: this.addr.slice(0, i), port: Number(this.addr.slice(i + 1)) });
      sock.setNoDelay(true);
      const t = setTimeout(() => {
        sock.destroy();
        reject(new Error(`cannot reach ${this.addr} within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(t);
        this.sock = sock;
        resolve();
      });
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
      sock.on('close', () => {
        for (const w of this.waiting.values()) w.reject(new Error('connection closed'));
        this.waiting.clear();
        this.emit('close');
      });
      readMessages(
        sock,
        CLIENT_FRAME_MAX,
        (m) => this.onMessage(m),
        () => {},
      );
    });
  }

  private onMessage(m: WireMessage): void {
    if (m.t === 'recv') {
      const vm = String(m.vm);
      const seq = m.seq as number;
      const recent = this.recent.get(vm) ?? new Set<number>();
      this.recent.set(vm, recent);
      if (seq <= (this.seen.get(vm) ?? -1)) {
        if (recent.has(seq)) this.duplicates++;
        else this.outOfOrder++;
        return;
      }
      this.seen.set(vm, seq);
      recent.add(seq);
      if (recent.size > 100_000) recent.delete(recent.values().next().value!);
      this.emit('recv', { vm, seq, data: m.data as Uint8Array, eof: m.eof === true });
      return;
    }
    const id = m.id as number | null;
    const w = id !== null ? this.waiting.get(id) : undefined;
    if (!w) return;
    this.waiting.delete(id!);
    if (m.t === 'error') w.reject(new Error(String(m.message)));
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

  start(vm: string, module: Uint8Array, opts: { args?: string[]; env?: Record<string, string> } = {}): Promise<WireMessage> {
    return this.request({ t: 'start', vm, module, ...opts });
  }

  /** Sends one message to a VM (fire and forget: its answers arrive as 'recv'). */
  send(vm: string, data: Uint8Array | string, eof = false): void {
    if (!this.sock) throw new Error('not connected');
    send(this.sock, { t: 'send', vm, data: typeof data === 'string' ? new Uint8Array(Buffer.from(data)) : data, eof });
  }

  status(): Promise<WireMessage> {
    return this.request({ t: 'status' });
  }

  close(): void {
    this.sock?.destroy();
  }
}
