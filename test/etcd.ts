// A throwaway single-member etcd for tests: its own data dir and free ports on
// 127.0.0.1, so it never meets a system etcd or another test run.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';

const START_TIMEOUT_MS = 15_000;

export interface TestEtcd {
  /** client URL, e.g. http://127.0.0.1:34567 */
  endpoint: string;
  stop(): Promise<void>;
}

/** Ports that were free a moment ago: bound to port 0 together (so they differ), then released. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export async function startEtcd(): Promise<TestEtcd> {
  const [clientPort, peerPort] = await freePorts(2);
  const dataDir = mkdtempSync(join(tmpdir(), 'ftvm-etcd-'));
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    process.env.ETCD_BIN ?? 'etcd',
    [
      '--name=ftvm-test',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=ftvm-test=${peer}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  // etcd logs to stderr; keep the tail for the error message if it does not come up.
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = `etcd exited (${signal ?? `code ${code}`})`));
  child.once('error', (e) => (exited = `cannot run etcd (${e.message}); \`make etcd\` installs it`));
  // The test process may die without running its teardown: take etcd with it.
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    await kill(child);
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    await waitServing(endpoint, () => exited);
  } catch (e) {
    await stop();
    throw new Error(`etcd did not start: ${(e as Error).message}\n${log}`);
  }
  return { endpoint, stop };
}

/** Polls until etcd answers a read, the child exits, or START_TIMEOUT_MS passes. */
async function waitServing(endpoint: string, exited: () => string | null): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = 'no answer yet';
  for (;;) {
    const why = exited();
    if (why) throw new Error(why);
    // A new client each time: after a few refused connections the client's circuit breaker
    // would fail every call for the next 5 s, long after etcd is up.
    const client = new Etcd3({
      hosts: endpoint,
      dialTimeout: 500,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 500 }),
    });
    try {
      await client.get('ftvm-test/ping');
      return;
    } catch (e) {
      last = (e as Error).message;
    } finally {
      client.close();
    }
    if (Date.now() > deadline) throw new Error(`not serving at ${endpoint} after ${START_TIMEOUT_MS} ms (${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGKILL, then wait (bounded) for the exit so that the data dir is no longer in use. */
async function kill(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
}
