// Live migration (POST /v1/vms/:name/migrate, `ftvm vm migrate`) on a real
// local cluster: the kv sample's backup and primary move between hosts while
// an FtClient and a plain TCP client (through a published port) keep sending
// requests, and neither sees a lost, repeated or wrong answer; each refusal
// comes with its stable code.
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { FtClient } from '../host/cluster/client.ts';
import { apiOf, eventsOf, eventually, freePort, linkedCluster, type Cluster } from './cluster.ts';
import { ftvm } from './ftvm-cli.ts';
import { connectRetrying } from './line-client.ts';

let c: Cluster | null = null;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await c?.stop();
  c = null;
});

type VmStatus = { name: string; gen: number; role: string; partner: string | null; alone: boolean; state: string; acked: number; recreate: { ms: number | null } | null };

/**
 * The primary's status of `vm` on its host once it runs with a backup in
 * place: the backup acknowledged it (a backup made from boot acknowledged
 * some log; one made from a snapshot its first ack, which ends the
 * re-creation's time).
 */
async function paired(cluster: Cluster, vm: string, primary: string, backup: string): Promise<VmStatus> {
  const cl = await cluster.client(primary);
  try {
    return await eventually(`${vm}: primary on ${primary}, backup on ${backup} in place`, async () => {
      const v = ((await cl.status()).vms as VmStatus[]).find((x) => x.name === vm);
      const ready = v && (v.recreate === null ? v.acked >= 0 : v.recreate.ms !== null);
      return v && ready && v.role === 'primary' && v.partner === backup && v.state === 'live' && !v.alone ? v : undefined;
    }, 30_000);
  } finally {
    cl.close();
  }
}

/**
 * Requests to the kv sample through an FtClient, `window` in flight, never
 * sent twice: every answer is kept by id (an id answered twice is counted).
 */
class FtLoad {
  private n = 0;
  readonly answers = new Map<string, string>();
  twice = 0;
  private timer: NodeJS.Timeout | null = null;
  constructor(
    private readonly client: FtClient,
    private readonly window = 16,
  ) {
    client.on('recv', (r) => {
      const text = Buffer.from(r.data).toString();
      const id = text.split(' ')[0]!;
      if (this.answers.has(id)) this.twice++;
      else this.answers.set(id, text);
    });
  }
  get sent(): number {
    return this.n;
  }
  start(): void {
    this.timer = setInterval(() => {
      while (this.n - this.answers.size < this.window) {
        const i = this.n++;
        this.client.send('kv', `f${i} SET fk${i} fv${i}`);
      }
    }, 2);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/**
 * One request at a time to the kv sample over a plain TCP connection through
 * a published port (each request one write, each answer one message back),
 * never sent twice; an answer that is not the one expected stops it.
 */
class TcpLoad {
  readonly answers: string[] = [];
  wrong: string | null = null;
  private running = false;
  private waiting: ((s: string) => void) | null = null;
  constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      const w = this.waiting;
      this.waiting = null;
      if (w) w(d);
      else this.wrong ??= `an answer nobody asked for: ${JSON.stringify(d)}`;
    });
    sock.on('error', () => {});
  }
  static async open(endpoint: string): Promise<TcpLoad> {
    return new TcpLoad(await connectRetrying(sockets, endpoint));
  }
  private ask(line: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.sock.write(line);
    });
  }
  /** Sends requests, one at a time, until stop(); resolves when the last one is answered. */
  async run(): Promise<void> {
    this.running = true;
    for (let i = 0; this.running && this.wrong === null; i++) {
      const answer = await this.ask(`t${i} SET tk${i} tv${i}`);
      if (!new RegExp(`^t${i} OK \\d+$`).test(answer)) this.wrong = `t${i}: ${JSON.stringify(answer)}`;
      this.answers.push(answer);
    }
  }
  stop(): void {
    this.running = false;
  }
}

describe('live migration', () => {
  it('moves the backup, then the primary (twice), under load from an FtClient and a TCP client: every request answered once and applied once', async () => {
    let api: ReturnType<typeof apiOf>;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    const started = await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv', publish: [port] });
    expect(started.status, JSON.stringify(started.json)).toBe(201);
    expect(started.json.primary).toBe('h1');
    const first = await paired(c, 'kv', 'h1', started.json.backup);
    const h1Backup = first.partner!;
    const third = ['h2', 'h3'].find((h) => h !== h1Backup)!;

    // the FtClient is on the host whose primary leaves first; the TCP client comes in through the third host
    const client = await c.client('h1');
    const ft = new FtLoad(client);
    const tcp = await TcpLoad.open(`${c.host(third).public}:${port}`);
    ft.start();
    const tcpDone = tcp.run();
    const moved: unknown[] = [];
    try {
      await eventually('load flowing', () => (ft.answers.size > 100 && tcp.answers.length > 20 ? true : undefined));
      // 1. the backup moves to the third host
      const m1 = await api('h2', 'POST', '/v1/vms/kv/migrate', { to: third, replica: 'backup' });
      expect(m1.status, JSON.stringify(m1.json)).toBe(200);
      expect(m1.json).toMatchObject({ vm: 'kv', replica: 'backup', from: h1Backup, to: third, primary: 'h1', backup: third, switchPauseMs: 0 });
      moved.push(m1.json);
      await paired(c, 'kv', 'h1', third);
      const a1 = ft.answers.size;
      await eventually('load flowing after the backup moved', () => (ft.answers.size > a1 + 50 ? true : undefined));
      // 2. the primary moves to the host that ran no replica of it: a backup is made there first, then
      //    the planned switch; the new primary makes its backup where the backup ran (the third host)
      const m2 = await api('h3', 'POST', '/v1/vms/kv/migrate', { to: h1Backup });
      expect(m2.status, JSON.stringify(m2.json)).toBe(200);
      expect(m2.json).toMatchObject({ replica: 'primary', from: 'h1', to: h1Backup, primary: h1Backup, backup: third });
      expect(m2.json.snapshotPauseMs).toBeGreaterThan(0);
      expect(m2.json.switchPauseMs).toBeGreaterThan(0);
      moved.push(m2.json);
      await paired(c, 'kv', h1Backup, third);
      const a2 = ft.answers.size;
      await eventually('load flowing after the primary moved', () => (ft.answers.size > a2 + 50 ? true : undefined));
      // 3. the primary moves to its backup's host (no snapshot before the switch): the two swap
      const m3 = await api('h1', 'POST', '/v1/vms/kv/migrate', { to: third, replica: 'primary' });
      expect(m3.status, JSON.stringify(m3.json)).toBe(200);
      expect(m3.json).toMatchObject({ from: h1Backup, to: third, primary: third, backup: h1Backup, snapshotPauseMs: 0 });
      moved.push(m3.json);
      await paired(c, 'kv', third, h1Backup);
      const a3 = ft.answers.size;
      const t3 = tcp.answers.length;
      await eventually('load flowing after the swap', () => (ft.answers.size > a3 + 50 && tcp.answers.length > t3 + 10 ? true : undefined));
    } finally {
      ft.stop();
      tcp.stop();
    }
    await tcpDone;
    // nothing was sent twice: every request must be answered without a retry
    await eventually(`every FtClient request answered (${ft.answers.size} of ${ft.sent})`, () => (ft.answers.size === ft.sent ? true : undefined), 30_000);
    expect(tcp.wrong).toBeNull();
    expect(ft.twice).toBe(0);
    for (let i = 0; i < ft.sent; i++) expect(ft.answers.get(`f${i}`), `f${i}`).toMatch(new RegExp(`^f${i} OK \\d+$`));
    // every SET applied once: the store's write counts are 1..N, each seen once
    const writes = [...ft.answers.values(), ...tcp.answers].map((l) => Number(l.split(' ')[2]));
    expect([...writes].sort((a, b) => a - b)).toEqual(Array.from({ length: writes.length }, (_, i) => i + 1));
    // and every value is there, read through the new primary's host
    const check = await c.client(moved.length ? (moved.at(-1) as { primary: string }).primary : 'h1');
    const got = new Map<string, string>();
    check.on('recv', (r) => {
      const t = Buffer.from(r.data).toString();
      got.set(t.split(' ')[0]!, t);
    });
    const keys = [...Array.from({ length: ft.sent }, (_, i) => [`fk${i}`, `fv${i}`]), ...tcp.answers.map((_, i) => [`tk${i}`, `tv${i}`])];
    // (in batches: a client's messages past the VM's input queue would be refused)
    for (let i = 0; i < keys.length; i += 100) {
      for (const [k] of keys.slice(i, i + 100)) check.send('kv', `g-${k} GET ${k}`);
      await eventually(`reads answered (${got.size} of ${Math.min(keys.length, i + 100)})`, () => (got.size >= Math.min(keys.length, i + 100) ? true : undefined), 30_000);
    }
    for (const [k, v] of keys) expect(got.get(`g-${k}`)).toBe(`g-${k} VALUE ${v}`);
    expect(client.divergences).toBe(0);
    // the primary's host said what it did, as named events
    expect((await eventsOf(c, 'h1', 'migration')).map((e) => e.phase)).toEqual(['started', 'done', 'started', 'done']);
    client.close();
    check.close();
  });

  it('refuses what it cannot do, each with its stable code; `ftvm vm migrate` moves a primary', async () => {
    let api: ReturnType<typeof apiOf>;
    ({ c, api } = await linkedCluster());
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' })).status).toBe(201);
    const p = await paired(c, 'kv', 'h1', (await api('h1', 'GET', '/v1/vms/kv')).json.backup ?? 'h2');
    const backup = p.partner!;
    const other = ['h2', 'h3'].find((h) => h !== backup)!;
    const code = async (host: string, vm: string, body: unknown): Promise<[number, string]> => {
      const r = await api(host, 'POST', `/v1/vms/${vm}/migrate`, body);
      return [r.status, r.json?.error?.code];
    };
    // bad bodies
    expect(await code('h1', 'kv', {})).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    expect(await code('h1', 'kv', { to: 5 })).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    expect(await code('h1', 'kv', { to: other, replica: 'both' })).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    expect(await code('h1', 'kv', { to: other, extra: 1 })).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    expect(await code('h1', 'kv', { to: 'no such/host' })).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    // an unknown VM
    expect(await code('h2', 'ghost', { to: other })).toEqual([404, 'FTVM_ERR_NOT_FOUND']);
    // unknown, same and wrong hosts (asked through another host: the same answers)
    expect(await code('h2', 'kv', { to: 'h9' })).toEqual([409, 'FTVM_ERR_CONFLICT']);
    expect(await code('h2', 'kv', { to: 'h1' })).toEqual([409, 'FTVM_ERR_CONFLICT']);
    expect(await code('h1', 'kv', { to: backup, replica: 'backup' })).toEqual([409, 'FTVM_ERR_CONFLICT']);
    expect(await code('h1', 'kv', { to: 'h1', replica: 'backup' })).toEqual([409, 'FTVM_ERR_CONFLICT']);
    // a guest that ended has nothing to move
    expect((await api('h1', 'POST', '/v1/vms', { name: 'done', sample: 'trap', args: ['10', '1'] })).status).toBe(201);
    await eventually('done ended', async () => ((await api('h1', 'GET', '/v1/vms/done')).json.state === 'ended' ? true : undefined));
    expect(await code('h1', 'done', { to: other })).toEqual([409, 'FTVM_ERR_VM_ENDED']);
    // two migrations at once: the second is refused while the first runs
    const [a, b] = await Promise.all([code('h1', 'kv', { to: other, replica: 'backup' }), code('h1', 'kv', { to: other })]);
    expect([a, b]).toContainEqual([200, undefined]);
    expect([a, b]).toContainEqual([409, 'FTVM_ERR_CONFLICT']);
    await paired(c, 'kv', 'h1', other);
    // a host that died: refused
    await c.kill(backup);
    await eventually(`${backup} taken for dead`, async () => ((await code('h1', 'kv', { to: backup, replica: 'backup' }))[1] === 'FTVM_ERR_CONFLICT' ? true : undefined));
    // the command line: --to is required, --help says how, and a move of the primary to its backup's host swaps them
    const cli = ['--api', c.host('h1').api, '--token', c.token];
    const noTo = await ftvm(['vm', 'migrate', 'kv', ...cli]);
    expect(noTo.code).toBe(2);
    expect(noTo.stderr).toMatch(/--to/);
    const help = await ftvm(['vm', 'migrate', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: ftvm vm migrate NAME --to HOST/);
    const run = await ftvm(['vm', 'migrate', 'kv', '--to', other, ...cli]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ vm: 'kv', replica: 'primary', from: 'h1', to: other, primary: other });
  });
});
