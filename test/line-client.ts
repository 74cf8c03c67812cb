// A line-oriented TCP client of the kvsock sample, for tests of published ports.
import { connect, type Socket } from 'node:net';
import { eventually } from './cluster.ts';

/** A line-oriented client of the kvsock sample on one TCP endpoint: each request's answer, in order. */
export class LineClient {
  readonly sock: Socket;
  readonly lines: string[] = [];
  private buf = '';
  closed = false;
  constructor(sock: Socket) {
    this.sock = sock;
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
    });
    this.sock.on('error', () => {});
    this.sock.on('close', () => (this.closed = true));
  }
  /** Connects to `endpoint` ("ADDR:PORT"), trying again while it is refused (a host opens a VM's port once it hears of the VM), and adds the socket to `opened` (the test's to destroy). */
  static async open(opened: Socket[], endpoint: string): Promise<LineClient> {
    return new LineClient(await connectRetrying(opened, endpoint));
  }
  send(line: string): void {
    this.sock.write(`${line}\n`);
  }
  async answers(n: number, ms = 30_000): Promise<string[]> {
    await eventually(`${n} answers (have ${this.lines.length})`, () => (this.lines.length >= n ? true : undefined), ms);
    return this.lines.slice(0, n);
  }
}

/**
 * Connects to `endpoint` ("ADDR:PORT"), trying again while it is refused (a
 * host opens a VM's port once it hears of the VM), and adds the socket to
 * `opened` (the test's to destroy).
 */
export async function connectRetrying(opened: Socket[], endpoint: string): Promise<Socket> {
  const i = endpoint.lastIndexOf(':');
  const sock = await eventually(`a connection to ${endpoint}`, () =>
    new Promise<Socket | undefined>((resolve) => {
      const s = connect({ host: endpoint.slice(0, i), port: Number(endpoint.slice(i + 1)) });
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    }),
  );
  opened.push(sock);
  return sock;
}
