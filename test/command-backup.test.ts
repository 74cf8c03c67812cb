// A command guest (`_start`, what every stock toolchain builds) gets a new
// backup from a snapshot of its live stack after a failure, so it survives a
// second failure too: kvsock, a C server, through a published TCP port,
// loses the primary's host and then the new primary's host to kill -9, and
// its client sees every answer once, in order, every write applied once.
// A guest that computes without input calls keeps its snapshot waiting until
// its next one, and is protected again from there.
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { apiOf, Cluster, eventsOf, eventually, freePort, linkedCluster } from './cluster.ts';
import { LineClient } from './line-client.ts';
import { watBytes, watText } from './helpers.ts';
import { buildProgram } from './toolchain.ts';
import { readFileSync } from 'node:fs';
import type { LocalCluster } from '../host/cluster/local.ts';

let c: LocalCluster | null = null;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await c?.stop();
  c = null;
});

/**
 * A command guest that reads stdin one byte per fd_read; after each byte it
 * computes `outer` x `inner` additions (no host call but the metering's),
 * then writes the byte, a space, its running sum (i32, little-endian) and a
 * newline. At end of input it waits for ever in sock_accept on its
 * listening socket.
 */
function spinGuest(outer: number, inner: number): Uint8Array {
  return watText(`(module
      (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (local $i i32) (local $o i32) (local $sum i32)
        (block $eof
          (loop $next
            (i32.store (i32.const 16) (i32.const 100))
            (i32.store (i32.const 20) (i32.const 1))
            (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
            (br_if $eof (i32.eqz (i32.load (i32.const 24))))
            (local.set $o (i32.const ${outer}))
            (loop $outer
              (local.set $i (i32.const ${inner}))
              (loop $spin
                (local.set $sum (i32.add (local.get $sum) (local.get $i)))
                (local.set $i (i32.sub (local.get $i) (i32.const 1)))
                (br_if $spin (local.get $i)))
              (local.set $o (i32.sub (local.get $o) (i32.const 1)))
              (br_if $outer (local.get $o)))
            (i32.store8 (i32.const 101) (i32.const 32))
            (i32.store (i32.const 102) (local.get $sum))
            (i32.store8 (i32.const 106) (i32.const 10))
            (i32.store (i32.const 32) (i32.const 100))
            (i32.store (i32.const 36) (i32.const 7))
            (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
            (br $next)))
        (drop (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 48)))))`);
}

describe('new backups of command guests from snapshots of their stack', () => {
  it('kvsock survives kill -9 of the primary\'s host, a new backup from a snapshot, then kill -9 of the new primary\'s host', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvc', sample: 'kvsock', publish: [port] })).status).toBe(201);
    await eventually('a backup on h2', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/kvc')).json;
      return r.state === 'running' && r.primary === 'h1' && r.backup === 'h2' && r.endpoints?.length === 3 ? true : undefined;
    });
    // the client talks through h3, which outlives both kills
    const client = await LineClient.open(sockets, `${c.host('h3').public}:${port}`);
    const TOTAL = 900;
    const WINDOW = 16;
    let sent = 0;
    const pump = (): void => {
      while (sent < TOTAL && sent - client.lines.length < WINDOW) {
        const i = sent++;
        client.send(`r${i} SET key${i % 97} v${i}`);
      }
    };
    const timer = setInterval(pump, 2);
    try {
      await client.answers(TOTAL / 6);
      await c.kill('h1');
      // h2 goes live, and the only other host, h3, gets a backup made from a snapshot of the running server
      const made = await eventually('a new backup on h3, made from a snapshot', async () => {
        const ev = (await eventsOf(c!, 'h3', 'backup-following')).filter((e) => e.vm === 'kvc' && e.from === 'snapshot');
        const r = (await api('h2', 'GET', '/v1/vms/kvc')).json;
        return ev.length && r.state === 'running' && r.primary === 'h2' && r.backup === 'h3' ? ev : undefined;
      }, 60_000);
      expect(made[0].seq).toBeGreaterThan(0);
      const before = client.lines.length;
      await eventually('answers after the new backup', () => (client.lines.length >= before + TOTAL / 6 ? true : undefined), 60_000);
      await c.kill('h2');
      const lines = await client.answers(TOTAL, 90_000);
      // every answer once, in order
      expect(lines.map((l) => l.split(' ')[0])).toEqual(Array.from({ length: TOTAL }, (_, i) => `r${i}`));
      // every SET applied once: the store's write counts are 1..TOTAL, each seen once
      const writes = lines.map((l) => Number(l.split(' ')[2]));
      expect([...writes].sort((a, b) => a - b)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
      expect(client.closed).toBe(false);
    } finally {
      clearInterval(timer);
    }
    // the values are there: the last write of each key
    client.send('q GET key5');
    expect((await client.answers(TOTAL + 1)).at(-1)).toBe(`q VALUE v${Math.floor((TOTAL - 1 - 5) / 97) * 97 + 5}`);
    const r = (await api('h3', 'GET', '/v1/vms/kvc')).json;
    expect(r.primary).toBe('h3');
  }, 240_000);

  it('a guest that computes without an input call keeps its snapshot waiting until its next one, and is protected again from there', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    // computes for seconds after each byte of its stdin (spinGuest)
    const OUTER = 60;
    const INNER = 100_000_000;
    const guest = spinGuest(OUTER, INNER);
    const input = 'ab';
    const start = await api('h1', 'POST', '/v1/vms', { name: 'spin', module: Buffer.from(guest).toString('base64'), stdinBase64: Buffer.from(input).toString('base64') });
    expect(start.status, JSON.stringify(start.json)).toBe(201);
    await eventually('a backup on h2', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/spin')).json;
      return r.state === 'running' && r.backup === 'h2' ? true : undefined;
    });
    const stdoutOf = async (host: string): Promise<Buffer> => {
      const r = await api(host, 'GET', '/v1/vms/spin/stdout');
      return Buffer.from(r.json.base64 ?? '', 'base64');
    };
    // Kill the backup's host while the guest computes on its first byte (seconds of it): the
    // primary asks for a snapshot, which waits for the guest's next fd_read, and the VM is
    // alone meanwhile.
    await c.kill('h2');
    const made = await eventually('a backup on h3, made from a snapshot', async () => {
      const ev = (await eventsOf(c!, 'h1', 'backup-recreated')).filter((e) => e.vm === 'spin' && e.backup === 'h3');
      const r = (await api('h1', 'GET', '/v1/vms/spin')).json;
      return ev.length && r.state === 'running' && r.backup === 'h3' ? ev[0] : undefined;
    }, 120_000);
    // the snapshot waited for the fd_read of the second byte: the first line came before it
    expect(made.waitMs).toBeGreaterThan(1000);
    expect((await stdoutOf('h1')).length).toBe(7);
    // kill the primary's host while the guest computes on the second byte: h3 goes on from the snapshot
    await c.kill('h1');
    const out = await eventually('the whole output on h3', async () => {
      const b = await stdoutOf('h3');
      return b.length >= 7 * input.length ? b : undefined;
    }, 180_000);
    // every byte once, in order, with the sums a run without failures computes
    expect(out.length).toBe(7 * input.length);
    const perByte = (BigInt(OUTER) * ((BigInt(INNER) * BigInt(INNER + 1)) / 2n)) % 2n ** 32n;
    for (let k = 0; k < input.length; k++) {
      const line = out.subarray(7 * k, 7 * k + 7);
      expect(String.fromCharCode(line[0]!)).toBe(input[k]);
      expect(line.readInt32LE(2)).toBe(Number(BigInt.asIntN(32, perByte * BigInt(k + 1))));
      expect(line[6]).toBe(10);
    }
  }, 400_000);

  it('kvsock moves by live migration, primary and backup, while its TCP client sees every answer once, in order', async () => {
    let api;
    ({ c, api } = await linkedCluster(['h1', 'h2', 'h3', 'h4']));
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvm', sample: 'kvsock', publish: [port] })).status).toBe(201);
    const placed = await eventually('a backup', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/kvm')).json;
      return r.state === 'running' && r.backup && r.endpoints?.length === 4 ? r : undefined;
    });
    const hosts = ['h1', 'h2', 'h3', 'h4'];
    const client = await LineClient.open(sockets, `${c.host('h4').public}:${port}`);
    const TOTAL = 600;
    let sent = 0;
    const pump = (): void => {
      while (sent < TOTAL && sent - client.lines.length < 8) {
        const i = sent++;
        client.send(`m${i} SET key${i % 13} v${i}`);
      }
    };
    const timer = setInterval(pump, 2);
    try {
      await client.answers(TOTAL / 4);
      // the primary to a host with no replica of it
      const free = hosts.find((h) => h !== placed.primary && h !== placed.backup)!;
      const moved = await api('h4', 'POST', '/v1/vms/kvm/migrate', { to: free });
      expect(moved.status, JSON.stringify(moved.json)).toBe(200);
      const after = (await api(free, 'GET', '/v1/vms/kvm')).json;
      expect(after.primary).toBe(free);
      await client.answers(TOTAL / 2, 60_000);
      // then its backup to another host
      const now = await eventually('running with a backup', async () => {
        const r = (await api(free, 'GET', '/v1/vms/kvm')).json;
        return r.state === 'running' && r.backup ? r : undefined;
      }, 60_000);
      const target = hosts.find((h) => h !== now.primary && h !== now.backup)!;
      const movedBackup = await api('h4', 'POST', '/v1/vms/kvm/migrate', { to: target, replica: 'backup' });
      expect(movedBackup.status, JSON.stringify(movedBackup.json)).toBe(200);
      const lines = await client.answers(TOTAL, 60_000);
      expect(lines.map((l) => l.split(' ')[0])).toEqual(Array.from({ length: TOTAL }, (_, i) => `m${i}`));
      const writes = lines.map((l) => Number(l.split(' ')[2]));
      expect([...writes].sort((a, b) => a - b)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
      const end = await eventually('the backup on the target', async () => {
        const r = (await api(free, 'GET', '/v1/vms/kvm')).json;
        return r.state === 'running' && r.backup === target ? r : undefined;
      }, 60_000);
      expect(end.primary).toBe(free);
    } finally {
      clearInterval(timer);
    }
  }, 240_000);

  it('a real C server (tcpecho, wasi-libc sockets and poll with a timeout) survives two kills in turn, with a new backup from a snapshot between them', async () => {
    const wasm = readFileSync(buildProgram('c', 'tcpecho', 'wasm'));
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    const start = await api('h1', 'POST', '/v1/vms', { name: 'echo', module: wasm.toString('base64'), publish: [port] });
    expect(start.status, JSON.stringify(start.json)).toBe(201);
    await eventually('a backup on h2', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/echo')).json;
      return r.state === 'running' && r.backup === 'h2' && r.endpoints?.length === 3 ? true : undefined;
    });
    const client = await LineClient.open(sockets, `${c.host('h3').public}:${port}`);
    expect(await client.answers(1)).toEqual(['hi']);
    const TOTAL = 600;
    let sent = 0;
    const pump = (): void => {
      while (sent < TOTAL && sent - (client.lines.length - 1) < 8) client.send(`line ${sent++} of echo`);
    };
    const timer = setInterval(pump, 2);
    try {
      await client.answers(1 + TOTAL / 6);
      await c.kill('h1');
      await eventually('a new backup on h3, made from a snapshot', async () => {
        const ev = (await eventsOf(c!, 'h3', 'backup-following')).filter((e) => e.vm === 'echo' && e.from === 'snapshot');
        const r = (await api('h2', 'GET', '/v1/vms/echo')).json;
        return ev.length && r.state === 'running' && r.primary === 'h2' && r.backup === 'h3' ? true : undefined;
      }, 60_000);
      const before = client.lines.length;
      await eventually('answers after the new backup', () => (client.lines.length >= before + TOTAL / 6 ? true : undefined), 60_000);
      await c.kill('h2');
      const lines = await client.answers(1 + TOTAL, 90_000);
      expect(lines).toEqual(['hi', ...Array.from({ length: TOTAL }, (_, i) => `LINE ${i} OF ECHO`)]);
      expect(client.closed).toBe(false);
    } finally {
      clearInterval(timer);
    }
  }, 240_000);

  it('an idle command guest whose replica restored from a snapshot goes live gets a new backup too, with no client traffic', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    expect((await api('h1', 'POST', '/v1/vms', { name: 'idle', sample: 'kvsock' })).status).toBe(201);
    const pairOf = async (primary: string): Promise<{ primary: string; backup: string; gen: number; count: string }> =>
      eventually(`idle running with a backup, its primary on ${primary}`, async () => {
        const r = (await api(primary, 'GET', '/v1/vms/idle')).json;
        return r.state === 'running' && r.primary === primary && r.backup ? r : undefined;
      }, 60_000);
    const first = await pairOf('h1');
    // a backup made from a snapshot of the guest blocked in its accept/poll
    expect((await api('h1', 'POST', '/v1/vms/idle/backup/restart')).status).toBe(202);
    const restored = await eventually('a backup made from a snapshot', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/idle')).json;
      return r.state === 'running' && r.gen > first.gen && r.backup ? r : undefined;
    }, 60_000);
    // it goes live (test failover) while the guest waits for input that never comes, and asks for a backup of its own
    expect((await api('h1', 'POST', '/v1/vms/idle/failover')).status).toBe(202);
    const after = await pairOf(restored.backup);
    expect(after.gen).toBeGreaterThan(restored.gen);
    // the new primary says where the guest is, though it logged nothing since it went live
    expect(BigInt(after.count)).toBeGreaterThan(0n);
    const made = (await eventsOf(c, restored.backup, 'backup-recreated')).filter((e) => e.vm === 'idle');
    expect(made.length).toBeGreaterThan(0);
  }, 180_000);

  it('a primary slowed for a lagging backup computes at full speed again once it has lost that backup', async () => {
    c = new Cluster();
    // a lag target of 1 ms: the primary of a guest that computes is slowed at once
    await Promise.all(['h1', 'h2', 'h3'].map((id) => c!.add(id, ['--lag-target-ms', '1'])));
    await c.linked();
    const api = apiOf(c);
    const start = await api('h1', 'POST', '/v1/vms', { name: 'slow', module: Buffer.from(spinGuest(1000, 100_000_000)).toString('base64'), stdinBase64: Buffer.from('a').toString('base64') });
    expect(start.status, JSON.stringify(start.json)).toBe(201);
    const cl = await c.client('h1');
    const statusOf = async (): Promise<{ throttleUs: number; alone: boolean; partner: string | null } | undefined> =>
      ((await cl.status()).vms as { name: string; role: string; throttleUs: number; alone: boolean; partner: string | null }[]).find((v) => v.name === 'slow' && v.role === 'primary');
    const slowed = await eventually('the primary slowed', async () => {
      const v = await statusOf();
      return v && v.throttleUs > 0 && !v.alone && v.partner ? v : undefined;
    }, 60_000);
    await c.kill(slowed.partner!);
    await eventually('the primary alone at full speed', async () => {
      const v = await statusOf();
      return v && v.alone && v.throttleUs === 0 ? true : undefined;
    }, 60_000);
  }, 180_000);

  it('a guest blocked reading an idle connection while other clients\' messages arrive is snapshotted there, with no client sending', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    // serves the first connection only: echoes what it reads, in a blocking fd_read
    const one = watBytes('oneconn');
    expect((await api('h1', 'POST', '/v1/vms', { name: 'one', module: Buffer.from(one).toString('base64'), publish: [port] })).status).toBe(201);
    const first = await eventually('running with a backup', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/one')).json;
      return r.state === 'running' && r.backup && r.endpoints?.length === 3 ? r : undefined;
    });
    const a = await LineClient.open(sockets, `${c.host('h3').public}:${port}`);
    a.send('a');
    expect(await a.answers(1)).toEqual(['a']);
    // the guest waits in fd_read on a's connection; b's message comes in (logged) while it waits
    const b = await LineClient.open(sockets, `${c.host('h2').public}:${port}`);
    b.send('b');
    await eventually('b\'s message taken in by the primary', async () => {
      const cl = await c!.client(first.primary);
      const v = ((await cl.status()).vms as { name: string; role: string; inboxMessages: number; acked: number }[]).find((x) => x.name === 'one' && x.role === 'primary');
      return v && v.inboxMessages === 0 ? true : undefined;
    });
    expect((await api('h1', 'POST', '/v1/vms/one/backup/restart')).status).toBe(202);
    const made = await eventually('a backup made from a snapshot', async () => {
      const ev = (await eventsOf(c!, first.primary, 'backup-recreated')).filter((e) => e.vm === 'one');
      return ev.length ? ev[0] : undefined;
    }, 30_000);
    expect(made.waitMs).toBeLessThan(30_000);
    // and the guest goes on where it was: a's next line comes back
    a.send('c');
    expect(await a.answers(2)).toEqual(['a', 'c']);
  }, 180_000);
});
