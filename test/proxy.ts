// A fault-injecting TCP proxy for tests: it forwards to a target until cut,
// and can delay what flows towards the target.

import { createServer, connect, type Server, type Socket } from 'node:net';

export class Proxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private cutOff = false;
  /** delay of the bytes flowing to the target, in ms */
  delayMs = 0;
  addr = '';

  constructor(private readonly target: string) {
    this.server = createServer((inbound) => this.accept(inbound));
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const a = this.server.address();
    this.addr = `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
    return this.addr;
  }

  private accept(inbound: Socket): void {
    if (this.cutOff) return void inbound.destroy();
    const i = this.target.lastIndexOf(':');
    const outbound = connect({ host: this.target.slice(0, i), port: Number(this.target.slice(i + 1)) });
    for (const s of [inbound, outbound]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
    }
    // Delayed bytes keep their order: one queue, drained by one timer at a time.
    const queue: { due: number; data: Buffer }[] = [];
    let timer: NodeJS.Timeout | null = null;
    const drain = (): void => {
      timer = null;
      while (queue.length && queue[0]!.due <= Date.now()) {
        const { data } = queue.shift()!;
        if (!outbound.destroyed) outbound.write(data);
      }
      if (queue.length) timer = setTimeout(drain, queue[0]!.due - Date.now());
    };
    inbound.on('data', (d: Buffer) => {
      queue.push({ due: Date.now() + this.delayMs, data: d });
      if (!timer) drain();
    });
    outbound.on('data', (d) => inbound.destroyed || inbound.write(d));
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  }

  /** Drops every connection and refuses new ones: a cut cable. */
  cut(): void {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void {
    this.cutOff = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
