// A local ftvm cluster: real `ftvm host` processes on loopback, sharing a file
// arbiter in a temporary directory (or an etcd). Used by the tests, the FT
// benchmark and the demo. Every wait is bounded; stop() kills every process.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FtClient } from './client.ts';
import { spawnHost, type TestHost } from './host-process.ts';
import { HOST_LOG_LINE_CHARS_MAX, HOST_LOG_LINES_MAX } from '../limits.ts';
export { HOST_LOG_LINE_CHARS_MAX, HOST_LOG_LINES_MAX };
export type { TestHost };

export class LocalCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'ftvm-cluster-'));
  /** a fresh cluster secret */
  readonly secret = randomBytes(16).toString('hex');
  /** the REST API's bearer token, the same on every host */
  readonly token = randomBytes(24).toString('base64url');
  readonly hosts = new Map<string, TestHost>();
  private readonly clients: FtClient[] = [];
  private publicAddresses = 0;

  constructor(
    protected readonly extraArgs: string[] = ['--fail-ms', '1000', '--heartbeat-ms', '50'],
    /** how hosts reach the arbiter (default: a file arbiter in this cluster's directory) */
    protected readonly arbiterArgs: string[] | null = null,
  ) {}

  /** A directory (it must exist) where each host added from now on writes its whole log, as <id>.log; null: none. */
  logDir: string | null = null;

  /**
   * Starts a host and waits (bounded) until it listens. `args` go to
   * `ftvm host`; `spawnOpts.nodeArgs` go to node before the script (for
   * example `--cpu-prof --cpu-prof-dir DIR`, written when the host exits on
   * terminate(), not on kill), `spawnOpts.env` joins the environment, and
   * `spawnOpts.wrap` comes before node (`unshare -T --fork --kill-child
   * --monotonic=-1500`: a host whose monotonic clock is 1500 s behind).
   */
  async add(id: string, args: string[] = [], spawnOpts: { nodeArgs?: string[]; env?: Record<string, string>; wrap?: string[] } = {}): Promise<TestHost> {
    const arbiter = this.arbiterArgs ?? ['--dir', join(this.dir, 'arbiter')];
    // each host its own loopback address for published ports, as hosts of a real cluster have
    const given = [...this.extraArgs, ...args].includes('--public-address');
    const pub = given ? [] : ['--public-address', `127.0.0.${1 + (this.publicAddresses++ % 250)}`];
    const h = await spawnHost({
      id,
      args: [...arbiter, ...pub, ...this.extraArgs, ...args],
      nodeArgs: spawnOpts.nodeArgs,
      wrap: spawnOpts.wrap,
      // each host's data (modules, the cluster ids it remembers) in this cluster's directory, unless FTVM_DATA_DIR says where
      env: { ...(process.env.FTVM_DATA_DIR ? {} : { FTVM_DATA_DIR: join(this.dir, 'data') }), ...spawnOpts.env, FTVM_SECRET: this.secret, FTVM_TOKEN: this.token },
      logDir: this.logDir,
    });
    this.hosts.set(id, h);
    return h;
  }

  host(id: string): TestHost {
    const h = this.hosts.get(id);
    if (!h) throw new Error(`no host ${id}`);
    return h;
  }

  /** A client that knows several hosts, and comes back on the next when its host fails. */
  async clientOf(ids: string[]): Promise<FtClient> {
    const c = new FtClient(ids.map((id) => this.host(id).client), { token: this.token, reconnect: true });
    await c.connect();
    this.clients.push(c);
    return c;
  }

  async client(id: string): Promise<FtClient> {
    const c = new FtClient(this.host(id).client, { token: this.token });
    await c.connect();
    this.clients.push(c);
    return c;
  }

  /** Waits (bounded) until every host is alive and linked both ways to every other. */
  async linked(ms = 20_000): Promise<void> {
    const n = this.hosts.size;
    for (const id of this.hosts.keys()) {
      const a = await this.client(id);
      await eventually(
        `${id}: linked to its peers`,
        async () => {
          const s = await a.status();
          return (s.peers as { alive: boolean; linked: boolean }[]).filter((p) => p.alive && p.linked).length === n - 1 ? true : undefined;
        },
        ms,
      );
    }
  }

  /** kill -9 */
  async kill(id: string): Promise<void> {
    const h = this.host(id);
    h.proc.kill('SIGKILL');
    await h.exited;
  }

  /** SIGTERM: the host closes and exits on its own (a CPU profile is written then); kill -9 after `ms`. */
  async terminate(id: string, ms = 10_000): Promise<void> {
    const h = this.host(id);
    h.proc.kill('SIGTERM');
    const t = setTimeout(() => h.proc.kill('SIGKILL'), ms);
    await h.exited;
    clearTimeout(t);
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    for (const h of this.hosts.values()) h.proc.kill('SIGKILL');
    await Promise.all([...this.hosts.values()].map((h) => h.exited));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Polls `fn` every `everyMs` until it returns a value that is not undefined,
 * and returns it; throws an Error naming `what` (and the last error `fn`
 * threw) when `ms` pass first.
 */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 20_000, everyMs = 25): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < ms) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

/**
 * A TCP port to publish a VM on in a local cluster: one the kernel hands out
 * as free on 127.0.0.1 (the hosts' loopback addresses share the port space).
 */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}
