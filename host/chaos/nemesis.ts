// The campaign's faults ("nemeses", as Jepsen calls them): what each does, how
// a trial's schedule is drawn from its seed, and how a schedule is carried out
// against a NetnsCluster and undone.
//
//   kill             kill -9 of a host's node process; restarted under its id after the fault's time
//   pause            SIGSTOP of a host's node process for 1.5 to 3 failure timeouts, then SIGCONT
//   isolate-primary  the link of the host running the VM's primary set down (it loses peers,
//                    clients and an etcd arbiter; a file arbiter is a shared directory)
//   isolate-backup   the same for the backup's host
//   split            the hosts in two random groups that cannot reach each other (blackhole
//                    routes both ways); each still reaches the clients and the arbiter
//   one-way          the primary's host cannot send to the backup's or the other way round
//                    (a blackhole route on one side: TCP between them breaks both ways)
//   clock            kill -9 of a host, restarted in a time namespace whose monotonic and boot
//                    clocks are offset (-30 s to +1 day); it keeps that clock for the trial
//   etcd             kill -9 of the etcd arbiter, restarted on its data after the fault's time
//   arbiter-chmod    the file arbiter's directory made unreadable (chmod 000), restored after;
//                    meanwhile a second start of the VM's name is tried (it must not succeed)
//   arbiter-remove   the file arbiter's directory moved away, moved back after (what the hosts
//                    wrote in its place is set aside); the same second start is tried
//
// A trial's schedule is drawn from its seed before the trial starts: how many
// faults (1 to 3, overlapping: combinations), which, when, for how long, and
// which host by role ('primary', 'backup', 'other'). The role is resolved to a
// host when the fault starts, from what the hosts say then; the report names
// both. The same seed gives the same schedule; what the faults meet (a
// failover's timing) is the machine's.

import { chmodSync, existsSync, renameSync, rmSync } from 'node:fs';
import { FtvmError } from '../errors.ts';
import type { FtClient } from '../cluster/client.ts';
import type { NetnsCluster } from './netns.ts';
import type { Prng } from './prng.ts';

/** Every nemesis, by name. */
export const NEMESES = ['kill', 'pause', 'isolate-primary', 'isolate-backup', 'split', 'one-way', 'clock', 'etcd', 'arbiter-chmod', 'arbiter-remove'] as const;
/** The name of one nemesis (NEMESES). */
export type NemesisKind = (typeof NEMESES)[number];

/** Names that stand for several nemeses in --nemesis. */
export const NEMESIS_GROUPS: Record<string, readonly NemesisKind[]> = {
  partition: ['isolate-primary', 'isolate-backup', 'split', 'one-way'],
  arbiter: ['etcd', 'arbiter-chmod', 'arbiter-remove'],
  all: NEMESES,
};

/** The nemeses that need a given arbiter. */
const NEEDS: Partial<Record<NemesisKind, 'file' | 'etcd'>> = { etcd: 'etcd', 'arbiter-chmod': 'file', 'arbiter-remove': 'file' };

/**
 * The nemeses `list` names (comma-separated names or groups; undefined: all),
 * less those that need the other arbiter (named one by one, those are
 * FTVM_ERR_USAGE). FTVM_ERR_USAGE for an unknown name, an empty item
 * ("kill,,pause", "kill,", "") or an empty result.
 */
export function parseNemeses(list: string | undefined, arbiter: 'file' | 'etcd'): NemesisKind[] {
  const out = new Set<NemesisKind>();
  const items = (list ?? 'all').split(',').map((x) => x.trim());
  const empty = items.indexOf('');
  // an empty item is a slip (a doubled or trailing comma, an empty --nemesis), not "nothing more"
  if (empty >= 0) throw new FtvmError('FTVM_ERR_USAGE', `--nemesis ${JSON.stringify(list)}: item ${empty + 1} of ${items.length} is empty (see ftvm chaos --help)`);
  for (const w of items) {
    const group = NEMESIS_GROUPS[w];
    if (group) {
      for (const k of group) if ((NEEDS[k] ?? arbiter) === arbiter) out.add(k);
      continue;
    }
    if (!(NEMESES as readonly string[]).includes(w)) throw new FtvmError('FTVM_ERR_USAGE', `unknown nemesis "${w}": one of ${NEMESES.join(', ')}, or a group (${Object.keys(NEMESIS_GROUPS).join(', ')}) (see ftvm chaos --help)`);
    const need = NEEDS[w as NemesisKind];
    if (need && need !== arbiter) throw new FtvmError('FTVM_ERR_USAGE', `nemesis ${w} needs --arbiter ${need} (see ftvm chaos --help)`);
    out.add(w as NemesisKind);
  }
  if (!out.size) throw new FtvmError('FTVM_ERR_USAGE', 'no nemesis left to run (see ftvm chaos --help)');
  return NEMESES.filter((k) => out.has(k));
}

/** Which host a fault hits, by the role it has when the fault starts. */
export type Role = 'primary' | 'backup' | 'other';

/** One fault of a schedule, as drawn. */
export interface Fault {
  kind: NemesisKind;
  /** ms after the workload started */
  atMs: number;
  /** how long it lasts (kill, clock: how long the host stays down) */
  durationMs: number;
  role: Role;
  /** clock: the offset of the restarted host's monotonic and boot clocks (s) */
  offsetS?: number;
  /** split: the hosts' indices in a random order, and how many of them form the first group */
  order?: number[];
  cut?: number;
  /** one-way: true drops primary -> backup, false backup -> primary */
  fromPrimary?: boolean;
}

/** A fault as carried out: the hosts it hit, when it started and ended (ms after the workload started), and what happened. */
export interface AppliedFault extends Fault {
  hosts: string[];
  startedMs: number | null;
  endedMs: number | null;
  note: string;
}

/**
 * Draws a trial's faults: 1 to 3 (of `kinds`), starting between 10% and 50%
 * of the trial, each lasting about one to three failure timeouts.
 */
export function drawSchedule(rng: Prng, kinds: readonly NemesisKind[], hosts: number, trialMs: number, failMs: number): Fault[] {
  const n = rng.pick([1, 1, 2, 2, 3]);
  const out: Fault[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.pick(kinds);
    const atMs = rng.int(Math.round(trialMs * 0.1), Math.round(trialMs * 0.5));
    const f: Fault = { kind, atMs, durationMs: rng.int(failMs, 3 * failMs), role: rng.pick<Role>(['primary', 'backup', 'other']) };
    if (kind === 'pause') f.durationMs = rng.int(Math.round(1.5 * failMs), 3 * failMs);
    if (kind === 'kill' || kind === 'clock') f.durationMs = rng.int(200, 2 * failMs);
    if (kind === 'isolate-primary') f.role = 'primary';
    if (kind === 'isolate-backup') f.role = 'backup';
    if (kind === 'clock') f.offsetS = rng.pick([-30, 5, 300, 86_400]);
    if (kind === 'split') {
      f.order = rng.shuffle(Array.from({ length: hosts }, (_, j) => j));
      f.cut = rng.int(1, Math.max(1, hosts - 1));
    }
    if (kind === 'one-way') f.fromPrimary = rng.chance(0.5);
    out.push(f);
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

/** What a schedule runs against. */
export interface NemesisTarget {
  cluster: NetnsCluster;
  vm: string;
  /** the VM's module (for the second-start probe of the arbiter nemeses) */
  module: Uint8Array;
  /** ms since the workload started */
  now: () => number;
  /** a client of host `id` (connected; closed by the caller), or null when it cannot be reached */
  clientOf: (id: string) => Promise<FtClient | null>;
  /** records a second start of the VM that succeeded (it must not) */
  startedTwice: (what: string) => void;
}

/** The host that runs the VM's replica of `role` now, as the hosts say (the first that answers), or null. */
async function placement(t: NemesisTarget): Promise<{ primary: string | null; backup: string | null }> {
  for (const id of t.cluster.hosts.keys()) {
    const c = await t.clientOf(id);
    if (!c) continue;
    try {
      const s = await c.request({ t: 'status' }, 1000);
      const vm = (s.vms as { name: string; role: string; partner: string | null }[]).find((v) => v.name === t.vm);
      if (vm?.role === 'primary') return { primary: id, backup: vm.partner };
      if (vm?.role === 'backup') return { primary: vm.partner, backup: id };
    } catch {
      /* the next one */
    } finally {
      c.close();
    }
  }
  return { primary: null, backup: null };
}

/**
 * Carries out a schedule: each fault starts at its time and is undone after
 * its duration; resolves once every fault was undone. `stop` (resolved by the
 * caller) makes it undo what is still in place at once.
 */
export async function runSchedule(faults: readonly Fault[], t: NemesisTarget, stop: Promise<void>): Promise<AppliedFault[]> {
  const ids = [...t.cluster.hosts.keys()];
  const applied = faults.map((f): AppliedFault => ({ ...f, hosts: [], startedMs: null, endedMs: null, note: '' }));
  let stopped = false;
  void stop.then(() => (stopped = true));
  const sleepUntil = async (ms: number): Promise<void> => {
    while (!stopped && t.now() < ms) await Promise.race([stop, new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, ms - t.now()))))]);
  };
  const pick = (who: { primary: string | null; backup: string | null }, role: Role, salt: number): string => {
    if (role === 'primary' && who.primary) return who.primary;
    if (role === 'backup' && who.backup) return who.backup;
    const others = ids.filter((id) => id !== who.primary && id !== who.backup);
    const from = others.length ? others : ids;
    return from[salt % from.length]!;
  };
  // the arbiter's directory and etcd take one fault at a time: a second one while the first lasts is skipped
  const busy = new Set<string>();
  const resource = (k: NemesisKind): string | null => (k === 'arbiter-chmod' || k === 'arbiter-remove' ? 'arbiter' : k === 'etcd' ? 'etcd' : null);
  await Promise.all(
    applied.map(async (a, i) => {
      await sleepUntil(a.atMs);
      if (stopped) return void (a.note = 'not started: the trial ended first');
      const r = resource(a.kind);
      if (r && busy.has(r)) return void (a.note = `skipped: the ${r} was under another fault`);
      if (r) busy.add(r);
      const who = await placement(t);
      a.startedMs = t.now();
      try {
        await apply(a, t, who, pick, i);
      } catch (e) {
        a.note = `${a.note ? `${a.note}; ` : ''}${(e as Error).message}`;
      }
      await sleepUntil(a.startedMs + a.durationMs);
      try {
        await undo(a, t);
      } catch (e) {
        a.note = `${a.note ? `${a.note}; ` : ''}undo: ${(e as Error).message}`;
      }
      a.endedMs = t.now();
      if (r) busy.delete(r);
    }),
  );
  return applied;
}

/** Where the file arbiter's directory is kept while an arbiter-remove fault lasts. */
const asideOf = (dir: string): string => `${dir}.removed`;

async function apply(a: AppliedFault, t: NemesisTarget, who: { primary: string | null; backup: string | null }, pick: (w: typeof who, r: Role, salt: number) => string, salt: number): Promise<void> {
  const c = t.cluster;
  const net = c.net;
  const ids = [...c.hosts.keys()];
  switch (a.kind) {
    case 'kill':
    case 'clock': {
      const id = pick(who, a.role, salt);
      a.hosts = [id];
      await c.kill(id);
      return;
    }
    case 'pause': {
      const id = pick(who, a.role, salt);
      a.hosts = [id];
      if (!c.signal(id, 'SIGSTOP')) a.note = 'the host was not running';
      return;
    }
    case 'isolate-primary':
    case 'isolate-backup': {
      const id = pick(who, a.role, salt);
      a.hosts = [id];
      net.isolate(id);
      return;
    }
    case 'split': {
      const order = a.order!.map((j) => ids[j]!);
      const left = order.slice(0, a.cut);
      const right = order.slice(a.cut);
      a.hosts = order;
      a.note = `${left.join('+')} | ${right.join('+')}`;
      for (const x of left) for (const y of right) (net.blackhole(x, y), net.blackhole(y, x));
      return;
    }
    case 'one-way': {
      const p = pick(who, 'primary', salt);
      const b = pick(who, 'backup', salt + 1);
      const [from, to] = a.fromPrimary ? [p, b] : [b, p];
      a.hosts = [from, to];
      a.note = `${from} -> ${to} dropped`;
      net.blackhole(from, to);
      return;
    }
    case 'etcd':
      a.hosts = ['etcd'];
      await c.killEtcd();
      return;
    case 'arbiter-chmod':
    case 'arbiter-remove': {
      a.hosts = ['arbiter'];
      if (a.kind === 'arbiter-chmod') chmodSync(c.arbiterDir, 0);
      else renameSync(c.arbiterDir, asideOf(c.arbiterDir));
      // a second start of the VM's name, through a host that does not run its primary: it must be refused
      const via = ids.find((id) => id !== who.primary) ?? ids[0]!;
      const client = await t.clientOf(via);
      if (!client) return void (a.note = `second start: ${via} unreachable`);
      try {
        const r = await client.request({ t: 'start', vm: t.vm, module: t.module }, 5000);
        a.note = `second start through ${via} succeeded: generation ${String(r.gen)}, primary ${String(r.primary)}`;
        t.startedTwice(a.note);
      } catch (e) {
        a.note = `second start through ${via} refused: ${(e as { code?: string }).code ?? ''} ${(e as Error).message}`.slice(0, 300);
      } finally {
        client.close();
      }
      return;
    }
  }
}

async function undo(a: AppliedFault, t: NemesisTarget): Promise<void> {
  const c = t.cluster;
  const net = c.net;
  switch (a.kind) {
    case 'kill':
    case 'clock': {
      const id = a.hosts[0]!;
      await c.restart(id, a.kind === 'clock' ? a.offsetS : undefined);
      return;
    }
    case 'pause':
      c.signal(a.hosts[0]!, 'SIGCONT');
      return;
    case 'isolate-primary':
    case 'isolate-backup':
      net.rejoin(a.hosts[0]!);
      return;
    case 'split': {
      const left = a.hosts.slice(0, a.cut);
      const right = a.hosts.slice(a.cut);
      for (const x of left) for (const y of right) (net.unblackhole(x, y), net.unblackhole(y, x));
      return;
    }
    case 'one-way':
      net.unblackhole(a.hosts[0]!, a.hosts[1]!);
      return;
    case 'etcd':
      if (!c.etcdRunning) await c.startEtcd();
      return;
    case 'arbiter-chmod':
      chmodSync(c.arbiterDir, 0o755);
      return;
    case 'arbiter-remove': {
      const aside = asideOf(c.arbiterDir);
      if (!existsSync(aside)) return;
      // what the hosts made in its place is set aside (for the report), and the directory comes back as it was
      if (existsSync(c.arbiterDir)) {
        rmSync(`${c.arbiterDir}.recreated`, { recursive: true, force: true });
        renameSync(c.arbiterDir, `${c.arbiterDir}.recreated`);
        a.note += '; the hosts had made a new directory in its place (set aside)';
      }
      renameSync(aside, c.arbiterDir);
      return;
    }
  }
}
