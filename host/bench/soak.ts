// `ftvm bench soak`: does a host's memory stay flat while guests flood it?
//
// A local cluster of real host processes on loopback (2 or 3 hosts) runs
// three guests that push on every bound a host keeps (README, "Limits"):
//   - deaf: a reactor that never reads its NIC, while a client-port client
//     sends it 8 KiB messages as fast as the host lets it (it backs off for
//     a moment after each refusal) and a REST client does the same through
//     another host (its sends are forwarded);
//   - spam: a command writing a 64-byte line on stdout in a tight loop;
//   - sender: a reactor answering each message with 8 messages of 8 KiB to
//     a client-port client that never reads its socket.
// Every second it samples each host's resident memory (/proc/PID/status,
// VmRSS) and each VM's bookkeeping on its primary's host (held outputs,
// unacknowledged log bytes, stalls, messages queued for the guest, refused
// sends), and watches for failovers (a VM's primary moving). Reported: RSS
// at start, peak and end per host, and per VM the peaks and counts; a table,
// or JSON with --json. Linux only (it reads /proc).

import { readFileSync } from 'node:fs';
import binaryen from 'binaryen';
import type { FtClient } from '../cluster/client.ts';
import { LocalCluster } from '../cluster/local.ts';
import { markdownTable } from './table.ts';

/** A reactor that never takes a message from its NIC. */
export const DEAF_WAT = `(module
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "ftvm_interrupt") (param $kind i32)))`;

/** A command that writes a 64-byte line on stdout for ever (fd_write in a tight loop). */
export const SPAM_WAT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "spam spam spam spam spam spam spam spam spam spam spam spam spam\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 64))
    (loop $l
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br $l))))`;

/** A reactor that answers each message with 8 messages of 8 KiB on its connection. */
export const SENDER_WAT = `(module
  (import "ftvm_io" "nic_recv" (func $recv (param i32 i32 i32) (result i32)))
  (import "ftvm_io" "nic_send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 3)
  (func (export "_initialize"))
  (func (export "ftvm_interrupt") (param $kind i32) (local $n i32) (local $i i32)
    (block $d (loop $l
      (local.set $n (call $recv (i32.const 0) (i32.const 1024) (i32.const 65536)))
      (br_if $d (i32.le_s (local.get $n) (i32.const 0)))
      (local.set $i (i32.const 0))
      (block $s (loop $k
        (br_if $s (i32.ge_u (local.get $i) (i32.const 8)))
        (drop (call $send (i32.load (i32.const 0)) (i32.const 131072) (i32.const 8192)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $k)))
      (br $l)))))`;

/** A WAT text as a module's bytes (binaryen). */
export function watModule(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

/** The flooding guests (see the header): DEAF_WAT, SPAM_WAT, SENDER_WAT. */
export type SoakGuest = 'deaf' | 'spam' | 'sender';
/** Every SoakGuest, the default of `--guests`. */
export const SOAK_GUESTS: readonly SoakGuest[] = ['deaf', 'spam', 'sender'];

/** What `benchSoak` runs. */
export interface SoakOptions {
  /** how long the guests flood, in seconds (default 60) */
  seconds?: number;
  /** hosts in the cluster, 2 or 3 (default 3) */
  hosts?: number;
  /** which guests flood (default all three) */
  guests?: SoakGuest[];
  log?: (line: string) => void;
}

/** One host's resident memory (VmRSS) over the run, in MiB. */
export interface SoakHostReport {
  id: string;
  rssMiB: { start: number; peak: number; end: number };
}

/** One VM's bookkeeping over the run, sampled each second on its primary's host. */
export interface SoakVmReport {
  name: string;
  /** the most outputs, and bytes of them, its primary held at a sample */
  heldMax: number;
  heldBytesMax: number;
  /** the most log bytes its backup had not acknowledged at a sample */
  unackedBytesMax: number;
  /** times its primary was stalled (log or held outputs at their bounds) */
  stalls: number;
  /** the most client messages waiting to enter its guest's NIC at a sample */
  inboxMax: number;
  /** sends its primary's host refused (FTVM_ERR_BUSY) */
  refusedByHost: number;
  /** times its primary moved to another host */
  failovers: number;
  /** its stdout bytes released by the end */
  stdoutBytes: number;
}

/** The report: `formatSoakReport` prints it as tables, `--json` as it is. */
export interface SoakReport {
  seconds: number;
  hosts: SoakHostReport[];
  vms: SoakVmReport[];
  /** sends of the flooding clients: made, and refused with FTVM_ERR_BUSY (client port; REST) */
  sends: { clientPort: number; clientPortRefused: number; rest: number; restRefused: number; restOtherErrors: number };
  /** times the non-reading client was dropped by its host (its unwritten outputs past their bound) */
  readerDrops: number;
  /** every host's RSS (MiB) at each second */
  samples: { t: number; rssMiB: Record<string, number> }[];
  machine: string;
}

/** VmRSS of process `pid`, in MiB (0 when it is gone). */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : 0;
  } catch {
    return 0;
  }
}

type VmStatusLite = { name: string; role: string; held: number; heldBytes?: number; unackedBytes: number; stalls: number; inboxMessages?: number; inputRefused?: number };

/** Runs the soak (see the header). Every host it starts is killed before it returns or throws. Linux only (/proc). */
export async function benchSoak(opts: SoakOptions = {}): Promise<SoakReport> {
  const seconds = opts.seconds ?? 60;
  const n = Math.min(3, Math.max(2, opts.hosts ?? 3));
  const log = opts.log ?? (() => {});
  const ids = Array.from({ length: n }, (_, i) => `h${i + 1}`);
  const c = new LocalCluster(['--fail-ms', '1000', '--heartbeat-ms', '50']);
  const stoppers: (() => void)[] = [];
  try {
    for (const id of ids) await c.add(id);
    await c.linked();
    const api = async (host: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
      const headers = { authorization: `Bearer ${c.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
      const r = await fetch(`${c.host(host).api}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      return { status: r.status, json: text ? JSON.parse(text) : null };
    };
    const start = async (name: string, wat: string): Promise<void> => {
      const r = await api('h1', 'POST', '/v1/vms', { name, module: Buffer.from(watModule(wat)).toString('base64') });
      if (r.status !== 201) throw new Error(`starting ${name}: ${r.status} ${JSON.stringify(r.json)}`);
    };
    const guests = opts.guests ?? SOAK_GUESTS;
    const wats: Record<SoakGuest, string> = { deaf: DEAF_WAT, spam: SPAM_WAT, sender: SENDER_WAT };
    for (const g of guests) await start(g, wats[g]);
    const statusers = new Map<string, FtClient>();
    for (const id of ids) statusers.set(id, await c.client(id));
    const rssStart = Object.fromEntries(ids.map((id) => [id, rssMiB(c.host(id).proc.pid!)]));
    log(`soak: ${guests.join(', ')} on ${n} hosts for ${seconds} s; RSS at start ${JSON.stringify(rssStart)} MiB`);

    // (a) the client-port flood of the deaf reactor, backing off 20 ms after a refusal
    const sends = { clientPort: 0, clientPortRefused: 0, rest: 0, restRefused: 0, restOtherErrors: 0 };
    const flooder = await c.client('h1');
    let backoffUntil = 0;
    flooder.on('refused', (r) => {
      if (r.code === 'FTVM_ERR_BUSY') sends.clientPortRefused++;
      backoffUntil = Date.now() + 20;
    });
    const msg = new Uint8Array(8192).fill(0x61);
    let flooding = true;
    const floodA = (async () => {
      while (flooding && guests.includes('deaf')) {
        if (Date.now() >= backoffUntil) {
          for (let i = 0; i < 32; i++) flooder.send('deaf', msg);
          sends.clientPort += 32;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    // the REST flood through another host (forwarded to the primary's)
    const { conn } = (await api(ids[1]!, 'POST', '/v1/connections')).json as { conn: number };
    const b64 = Buffer.from(msg).toString('base64');
    const floodRest = (async () => {
      while (flooding && guests.includes('deaf')) {
        const r = await api(ids[1]!, 'POST', '/v1/vms/deaf/messages', { conn, base64: b64 }).catch(() => ({ status: 0, json: null }));
        sends.rest++;
        if (r.status === 503 && r.json?.error?.code === 'FTVM_ERR_BUSY') {
          sends.restRefused++;
          await new Promise((res) => setTimeout(res, 20));
        } else if (r.status !== 202) {
          if (!sends.restOtherErrors) log(`soak: REST send answered ${r.status} ${JSON.stringify(r.json)}`);
          sends.restOtherErrors++;
        }
      }
    })();
    // (c) the client that never reads, sending to the sender reactor; a new one when its host drops it
    let readerDrops = 0;
    const floodC = (async () => {
      while (flooding && guests.includes('sender')) {
        const reader = await c.client('h1');
        // it never reads: the socket is paused, so the host's writes to it pile up on the host
        (reader as unknown as { sock: { pause(): void } }).sock.pause();
        let gone = false;
        reader.once('close', () => (gone = true));
        while (flooding && !gone) {
          try {
            reader.send('sender', 'x');
          } catch {
            break;
          }
          await new Promise((r) => setTimeout(r, 10));
        }
        reader.close();
        if (gone) readerDrops++;
      }
    })();
    stoppers.push(() => (flooding = false));

    const samples: SoakReport['samples'] = [];
    const vmNames = [...guests];
    const vms = new Map<string, SoakVmReport>(vmNames.map((name) => [name, { name, heldMax: 0, heldBytesMax: 0, unackedBytesMax: 0, stalls: 0, inboxMax: 0, refusedByHost: 0, failovers: 0, stdoutBytes: 0 }]));
    const primaryOf = new Map<string, string>();
    const t0 = Date.now();
    for (let s = 1; s <= seconds; s++) {
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + s * 1000 - Date.now())));
      const rss = Object.fromEntries(ids.map((id) => [id, rssMiB(c.host(id).proc.pid!)]));
      samples.push({ t: s, rssMiB: rss });
      for (const id of ids) {
        const st = await statusers.get(id)!.status().catch(() => null);
        for (const v of ((st?.vms ?? []) as VmStatusLite[]).filter((v) => v.role === 'primary')) {
          const r = vms.get(v.name);
          if (!r) continue;
          r.heldMax = Math.max(r.heldMax, v.held);
          r.heldBytesMax = Math.max(r.heldBytesMax, v.heldBytes ?? 0);
          r.unackedBytesMax = Math.max(r.unackedBytesMax, v.unackedBytes);
          r.stalls = Math.max(r.stalls, v.stalls);
          r.inboxMax = Math.max(r.inboxMax, v.inboxMessages ?? 0);
          r.refusedByHost = Math.max(r.refusedByHost, v.inputRefused ?? 0);
          const before = primaryOf.get(v.name);
          if (before !== undefined && before !== id) r.failovers++;
          primaryOf.set(v.name, id);
        }
      }
      if (s % 10 === 0 || s === seconds) log(`soak ${s} s: RSS ${JSON.stringify(rss)} MiB; sends ${JSON.stringify(sends)}`);
    }
    flooding = false;
    await Promise.all([floodA, floodRest, floodC]);
    for (const name of vmNames) {
      const v = await api('h1', 'GET', `/v1/vms/${name}`);
      vms.get(name)!.stdoutBytes = Number(v.json?.stdoutBytes ?? -1);
    }
    const hosts = ids.map((id) => {
      const all = samples.map((x) => x.rssMiB[id]!);
      return { id, rssMiB: { start: rssStart[id]!, peak: Math.max(rssStart[id]!, ...all), end: all.at(-1) ?? rssStart[id]! } };
    });
    const machine = `${(await import('node:os')).cpus().length} cores, ${(await import('node:os')).cpus()[0]?.model ?? '?'}, node ${process.version}`;
    return { seconds, hosts, vms: [...vms.values()], sends, readerDrops, samples, machine };
  } finally {
    for (const s of stoppers) s();
    await c.stop();
  }
}

/** The report as tables. */
export function formatSoakReport(r: SoakReport): string {
  const out = [`ftvm bench soak: ${r.seconds} s, ${r.hosts.length} hosts (${r.machine})`, ''];
  out.push(...markdownTable(['host', 'RSS start MiB', 'RSS peak MiB', 'RSS end MiB'], r.hosts.map((h) => [h.id, String(h.rssMiB.start), String(h.rssMiB.peak), String(h.rssMiB.end)])));
  out.push('');
  out.push(
    ...markdownTable(
      ['vm', 'held max', 'held bytes max', 'unacked log max', 'stalls', 'queued for guest max', 'refused (BUSY)', 'failovers', 'stdout bytes'],
      r.vms.map((v) => [v.name, String(v.heldMax), String(v.heldBytesMax), String(v.unackedBytesMax), String(v.stalls), String(v.inboxMax), String(v.refusedByHost), String(v.failovers), String(v.stdoutBytes)]),
    ),
  );
  out.push('');
  const s = r.sends;
  out.push(`flood of deaf: client port ${s.clientPort} sent, ${s.clientPortRefused} refused (FTVM_ERR_BUSY); REST ${s.rest} sent, ${s.restRefused} refused (503 FTVM_ERR_BUSY), ${s.restOtherErrors} other errors`);
  out.push(`the non-reading client of sender was dropped ${r.readerDrops} times (its unwritten outputs past 16 MiB)`);
  return out.join('\n');
}
