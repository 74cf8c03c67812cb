// Bounded memory with backpressure, on real hosts (README, "Limits"):
//   - a reactor that never reads its NIC: sends past its input bound are
//     refused with FTVM_ERR_BUSY (client port, REST here and forwarded), both
//     hosts' RSS stay flat however much more is sent, and a backup made from
//     a snapshot of its full queue fits the peer frame limit;
//   - a guest writing stdout in a tight loop: its held outputs and
//     unacknowledged log stay under their bounds, the guest is stalled, and
//     its backup is not failed over;
//   - a VM waiting for a backup host has one retry timer, gone once the
//     backup is made.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAF_WAT, SPAM_WAT, watModule } from '../host/bench/soak.ts';
import { HELD_BYTES_MAX, HELD_OUTPUTS_MAX } from '../host/cluster/host.ts';
import { INPUT_INBOX_MAX, NIC_QUEUE_BYTES_MAX } from '../host/runtime/nic.ts';
import { VM_STDIN_BYTES_MAX } from '../host/limits.ts';
import { apiOf, Cluster, eventually } from './cluster.ts';

/** Resident memory of process `pid`, in MiB. */
const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const b64 = (wat: string): string => Buffer.from(watModule(wat)).toString('base64');
type VmStatus = { name: string; gen: number; role: string; state: string; held: number; heldBytes: number; unackedBytes: number; stalls: number; inboxMessages: number; inputRefused: number; backupRetry: boolean };
const UNACKED_MAX = 4 * 1024 * 1024;

describe('bounded memory under flooding guests', () => {
  const cluster = new Cluster(['--fail-ms', '1000', '--heartbeat-ms', '50', '--unacked-log-max', String(UNACKED_MAX)]);
  const api = apiOf(cluster);
  const statusOf = async (host: string, vm: string): Promise<VmStatus | undefined> => {
    const c = await cluster.client(host);
    try {
      return ((await c.status()).vms as VmStatus[]).find((v) => v.name === vm);
    } finally {
      c.close();
    }
  };

  beforeAll(async () => {
    for (const id of ['h1', 'h2', 'h3']) await cluster.add(id);
    await cluster.linked();
  }, 120_000);
  afterAll(async () => {
    await cluster.stop();
  });

  it('a reactor that never reads its NIC: sends past the bound are refused with FTVM_ERR_BUSY, and the hosts stay flat', async () => {
    const started = await api('h1', 'POST', '/v1/vms', { name: 'deaf', module: b64(DEAF_WAT) });
    expect(started.status).toBe(201);
    // placed by load: the primary may be on any host
    const primary = started.json.primary as string;
    const backup = started.json.backup as string;
    await eventually('the backup follows', async () => ((await statusOf(backup, 'deaf'))?.state === 'following' ? true : undefined), 30_000);

    // five clients (a guest keeps at most 1 MiB unread of each connection, and 4 MiB of all of them)
    const clients = await Promise.all([1, 2, 3, 4, 5].map(() => cluster.client(primary)));
    const client = clients[0]!;
    const refusals: string[] = [];
    for (const c of clients) c.on('refused', (r) => refusals.push(r.code));
    const msg = new Uint8Array(8192).fill(0x62);
    /** sends `n` messages from each client in bursts (the test process's own socket buffers stay small) */
    const flood = async (n: number, from = clients): Promise<void> => {
      for (let i = 0; i < n; i += 64) {
        for (const c of from) for (let j = 0; j < 64; j++) c.send('deaf', msg);
        await new Promise((r) => setImmediate(r));
      }
    };
    await flood(1024);
    await eventually('refusals on the client port', () => (refusals.length > 0 ? true : undefined), 30_000);
    expect(new Set(refusals)).toEqual(new Set(['FTVM_ERR_BUSY']));

    // REST, on the primary's host and forwarded by another
    const { conn } = (await api(primary, 'POST', '/v1/connections')).json as { conn: number };
    // as large as the flood's: the queue's byte bound may have room left for a smaller message
    const more = 'b'.repeat(msg.length);
    const here = await api(primary, 'POST', '/v1/vms/deaf/messages', { conn, data: more });
    expect([here.status, here.json.error.code]).toEqual([503, 'FTVM_ERR_BUSY']);
    const other = ['h1', 'h2', 'h3'].find((h) => h !== primary && h !== backup)!;
    const { conn: conn3 } = (await api(other, 'POST', '/v1/connections')).json as { conn: number };
    // forwarded: the host it came through waits for the primary's host's answer
    const forwarded = await api(other, 'POST', '/v1/vms/deaf/messages', { conn: conn3, data: more });
    expect([forwarded.status, forwarded.json.error.code]).toEqual([503, 'FTVM_ERR_BUSY']);
    const st = (await statusOf(primary, 'deaf'))!;
    expect(st.inboxMessages).toBeLessThanOrEqual(INPUT_INBOX_MAX);
    expect(st.inputRefused).toBeGreaterThan(0);

    // 128 MiB more, every byte of it refused: neither host grows with it
    const pids = { primary: cluster.host(primary).proc.pid!, backup: cluster.host(backup).proc.pid! };
    const before = { primary: rssMiB(pids.primary), backup: rssMiB(pids.backup) };
    const refusedBefore = refusals.length;
    await flood(16384, [client]);
    await eventually('the flood answered', () => (refusals.length - refusedBefore >= 16000 ? true : undefined), 60_000);
    const after = { primary: rssMiB(pids.primary), backup: rssMiB(pids.backup) };
    expect(after.primary - before.primary, `primary's host RSS ${before.primary} -> ${after.primary} MiB`).toBeLessThan(96);
    expect(after.backup - before.backup, `backup's host RSS ${before.backup} -> ${after.backup} MiB`).toBeLessThan(96);

    // a backup made anew from a snapshot carries the full NIC queue (<= NIC_QUEUE_BYTES_MAX): under the peer frame limit
    expect(NIC_QUEUE_BYTES_MAX).toBeLessThan(8 * 1024 * 1024);
    expect((await api('h1', 'POST', '/v1/vms/deaf/backup/restart')).status).toBe(202);
    const fresh = await eventually(
      'a new backup follows',
      async () => {
        const v = (await api('h1', 'GET', '/v1/vms/deaf')).json;
        if (!v.backup || v.gen < 2) return undefined;
        const b = await statusOf(v.backup, 'deaf');
        return b?.state === 'following' && b.gen === v.gen ? v : undefined;
      },
      60_000,
    );
    // it took the snapshot's queue: the log it acknowledged goes on from there
    expect(fresh.state).toBe('running');
    for (const c of clients) c.close();
    expect((await api('h1', 'DELETE', '/v1/vms/deaf')).status).toBe(204);
  }, 240_000);

  it('a backup made anew from a snapshot whose devices are larger than a peer frame: they stream after the memory', async () => {
    // the whole stdin a VM may be given, never read: it is part of the snapshot's devices, as a full NIC queue is
    const stdin = Buffer.alloc(VM_STDIN_BYTES_MAX, 0x73);
    expect(stdin.length + NIC_QUEUE_BYTES_MAX).toBeGreaterThan(8 * 1024 * 1024);
    const started = await api('h1', 'POST', '/v1/vms', { name: 'stdinful', module: b64(DEAF_WAT), stdinBase64: stdin.toString('base64') });
    expect(started.status).toBe(201);
    await eventually('the backup follows', async () => ((await statusOf(started.json.backup, 'stdinful'))?.state === 'following' ? true : undefined), 60_000);
    expect((await api('h1', 'POST', '/v1/vms/stdinful/backup/restart')).status).toBe(202);
    const fresh = await eventually(
      'a new backup made from the snapshot follows',
      async () => {
        const v = (await api('h1', 'GET', '/v1/vms/stdinful')).json;
        if (!v.backup || v.gen < 2) return undefined;
        const b = await statusOf(v.backup, 'stdinful');
        return b?.state === 'following' && b.gen === v.gen ? v : undefined;
      },
      60_000,
    );
    expect(fresh).toMatchObject({ state: 'running', primary: started.json.primary });
    // and it can take over: its restored state (memory and devices) matched the snapshot's digest
    expect((await api('h1', 'POST', '/v1/vms/stdinful/failover')).status).toBe(202);
    await eventually('the new backup took over', async () => {
      const v = (await api('h2', 'GET', '/v1/vms/stdinful')).json;
      return v.gen > fresh.gen && v.primary === fresh.backup ? true : undefined;
    }, 60_000);
    expect((await api('h2', 'DELETE', '/v1/vms/stdinful')).status).toBe(204);
  }, 240_000);

  it('a guest writing stdout in a tight loop stays within the bounds, and is not failed over', async () => {
    const started = await api('h1', 'POST', '/v1/vms', { name: 'spam', module: b64(SPAM_WAT) });
    expect(started.status).toBe(201);
    let max = { held: 0, heldBytes: 0, unacked: 0, stalls: 0 };
    const t0 = Date.now();
    while (Date.now() - t0 < 8000) {
      const s = await statusOf(started.json.primary, 'spam');
      if (s) max = { held: Math.max(max.held, s.held), heldBytes: Math.max(max.heldBytes, s.heldBytes), unacked: Math.max(max.unacked, s.unackedBytes), stalls: Math.max(max.stalls, s.stalls) };
      await new Promise((r) => setTimeout(r, 200));
    }
    const v = (await api('h2', 'GET', '/v1/vms/spam')).json;
    expect(v, 'no failover: the first generation, its primary where it started').toMatchObject({ gen: 1, primary: started.json.primary, backup: started.json.backup });
    expect(max.held).toBeLessThanOrEqual(HELD_OUTPUTS_MAX);
    expect(max.heldBytes).toBeLessThanOrEqual(HELD_BYTES_MAX + 1024 * 1024);
    // one frame (at most 512 KiB) may go past the bound before the stall takes hold
    expect(max.unacked).toBeLessThanOrEqual(UNACKED_MAX + 1024 * 1024);
    // its output went on the whole time, readable through the API
    const out = (await api('h3', 'GET', '/v1/vms/spam/stdout')).json;
    expect(out.next).toBeGreaterThan(1024 * 1024);
    expect((await api('h1', 'DELETE', '/v1/vms/spam')).status).toBe(204);
  }, 120_000);
});

describe('waiting for a backup host', () => {
  const cluster = new Cluster(['--fail-ms', '1000', '--heartbeat-ms', '50']);
  const api = apiOf(cluster);
  afterAll(async () => {
    await cluster.stop();
  });

  it('a VM alone has one retry timer while no host can take its backup, and none once one does', async () => {
    await cluster.add('s1');
    await cluster.linked();
    expect((await api('s1', 'POST', '/v1/vms', { name: 'lone', module: b64(DEAF_WAT) })).status).toBe(201);
    const c = await cluster.client('s1');
    const t0 = Date.now();
    let seen = 0;
    while (Date.now() - t0 < 2500) {
      const v = ((await c.status()).vms as VmStatus[]).find((x) => x.name === 'lone')!;
      expect(v.state).toBe('alone');
      if (v.backupRetry) seen++;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen).toBeGreaterThan(0);
    await cluster.add('s2');
    await cluster.linked();
    await eventually(
      'a backup on s2, and no retry timer left',
      async () => {
        const v = ((await c.status()).vms as VmStatus[]).find((x) => x.name === 'lone');
        return v && v.state === 'live' && !v.backupRetry ? true : undefined;
      },
      30_000,
    );
  }, 120_000);
});
