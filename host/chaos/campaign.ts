// `ftvm chaos`: a Jepsen-style campaign against a cluster in network
// namespaces (netns.ts). Each trial, on a fresh cluster and a fresh arbiter:
//
//   1. start the hosts, wait until they are linked; start the kv sample with
//      its primary on a host drawn from the seed, and (with TCP processes) the
//      kvresp sample published on CHAOS_TCP_PORT of every host, its primary
//      on another drawn host; wait for each one's backup
//   2. run the logical clients for --trial-seconds (workload.ts on the client
//      ports; resp-workload.ts over plain TCP to the published port, on keys
//      of their own) while the trial's faults (nemesis.ts, drawn from the
//      trial's seed, aimed at kv's replicas' hosts) come and go
//   3. heal everything (links, routes, paused and killed hosts, the arbiter),
//      and wait (bounded) until the hosts are linked and what they report of
//      the VMs is true
//   4. read every key once more (final reads), then check:
//        linearizability  the whole history, per key (host/chaos/linearizability.ts)
//        lost-write       each key's final value is that of a write or delete not
//                         superseded by a later acknowledged one (a write that was
//                         acknowledged and then vanished, or a value never written)
//        vm-state         every host's report of each VM (GET /v1/vms) is true: the
//                         named primary and backup run those replicas, at that
//                         generation; no two primaries; a VM with no replica left is
//                         reported lost (never running, alone or failing-over), and
//                         one with a replica left is not reported lost
//        crash            no host process exited unless the campaign killed it, and
//                         no host log says FTVM_ERR_INVARIANT
//        two-generations  no two outputs under one output sequence number (seen by
//                         the client-port clients), no generation of either VM won by
//                         two hosts and no second start of kv's name (the arbiter
//                         nemeses try one)
//        misdelivered     no client-port client got an answer to a request it did
//                         not send
//        slot             no two live hosts hold one slot (the high byte of the
//                         connection ids they hand out)
//        digest           replicas' state digests are equal where both logged them:
//                         the hosts run the VM with a digest every
//                         CHAOS_DIGEST_EVERY_COUNTS counts, and their client ports'
//                         status is read every CHAOS_DIGEST_SAMPLE_MS and after
//                         healing; at one count, the digests backups verified (in
//                         any generation: they all lie on the one history that
//                         went on) agree, and each agrees with what that
//                         generation's primary logged; no host log says a replay
//                         diverged (FTVM_ERR_DIVERGENCE) or a snapshot restored
//                         to another state
//   Each violation names its trial, the seed that replays the trial's schedule
//   (the campaign's seed + the trial's number: `--seed S --trials 1` runs it
//   alone), the schedule and the operations concerned.
//
// What is not checked: a stale primary's digests past what its backup
// received (its own history, which no client saw, may differ); a host's
// CLOCK_REALTIME cannot be offset.

import { readFileSync } from 'node:fs';
import { CHAOS_DIGEST_SAMPLE_MS, CHAOS_DIGESTS_KEPT_MAX, CHAOS_SEED_MAX, CHAOS_FAIL_MS, CHAOS_HEARTBEAT_MS, CHAOS_SETTLE_MS as SETTLE_MS, CHAOS_FINAL_READS_MS as FINAL_READS_MS, CHAOS_VIOLATION_OPS_MAX as VIOLATION_OPS_MAX } from '../limits.ts';
import { FtClient } from '../cluster/client.ts';
import type { DigestSeen } from '../cluster/host.ts';
import { eventText } from '../ft/events.ts';
import { eventually, freePort } from '../cluster/local.ts';
import { guestPath } from '../runtime/samples.ts';
import { checkLinearizable, type Op } from './linearizability.ts';
import { CHAOS_TCP_PORT, ChaosNet, NetnsCluster } from './netns.ts';
import { RespWorkload, respFinalReads } from './resp-workload.ts';
import { drawSchedule, runSchedule, type AppliedFault, type Fault, type NemesisKind } from './nemesis.ts';
import { Prng } from './prng.ts';
import { finalReads, Workload, type OutputConflict } from './workload.ts';
import { makeDirs } from '../dirs.ts';
import { fileError } from '../cli/errors.ts';

/** The VM every trial runs, its clients on the hosts' client ports. */
export const CHAOS_VM = 'kv';
/** The VM whose clients are plain TCP connections to a published port (resp-workload.ts), when the campaign has TCP processes. */
export const CHAOS_TCP_VM = 'kvresp';
/** Logical clients at once, and the keys they share, in a campaign of `ftvm chaos`: of the client port, and TCP clients of CHAOS_TCP_VM (on keys of their own). */
export const CHAOS_PROCESSES = 4;
export const CHAOS_KEYS = 3;
export const CHAOS_TCP_PROCESSES = 2;
/** Where the TCP clients' process numbers start (apart from the client-port ones). */
const TCP_FIRST_PROCESS = 500_000;
/** The hosts' failure timeout and heartbeat period in a campaign, how long a trial may take to settle and its final reads (ms), and the operations a violation lists at most (host/limits.ts). */
export { CHAOS_FAIL_MS, CHAOS_HEARTBEAT_MS, SETTLE_MS, FINAL_READS_MS, VIOLATION_OPS_MAX };
/** Output conflicts a violation names at most. */
export const CONFLICTS_SHOWN = 5;

/** What a campaign runs. */
export interface CampaignOptions {
  seed: number;
  trials: number;
  hosts: number;
  arbiter: 'file' | 'etcd';
  /** seconds of workload (and faults) per trial */
  trialSeconds: number;
  nemeses: NemesisKind[];
  /** logical clients at once, and keys they share */
  processes: number;
  keys: number;
  /** logical TCP clients of CHAOS_TCP_VM at once (0: the VM is not started); they share `keys` keys of their own */
  tcpProcesses: number;
  failMs: number;
  heartbeatMs: number;
  /** where hosts' logs go (<trial>/<id>.log), or null */
  logDir: string | null;
  /** one line per step, for people */
  progress?: (line: string) => void;
  /** stops the campaign after the trial under way (which is cut short) */
  signal?: AbortSignal;
  /** for tests of the reporting path: may change a trial's history before it is checked */
  tamper?: (trial: number, history: Op[]) => void;
}

/** The kinds of violation (see the header). */
export type ViolationKind = 'linearizability' | 'lost-write' | 'vm-state' | 'crash' | 'two-generations' | 'misdelivered' | 'slot' | 'digest' | 'not-settled';

/** One violation, with what reproduces it. */
export interface Violation {
  kind: ViolationKind;
  trial: number;
  /** the trial's seed: `ftvm chaos --seed SEED --trials 1` (with the same flags) draws the same schedule */
  seed: number;
  /** the command line that replays the trial */
  reproduce: string;
  detail: string;
  /** the trial's faults as carried out */
  schedule: AppliedFault[];
  key?: string;
  ops?: Op[];
}

/** One trial's outcome. */
export interface TrialReport {
  trial: number;
  seed: number;
  nemeses: AppliedFault[];
  /** every operation of the trial, the TCP clients' included */
  ops: { total: number; ok: number; fail: number; unknown: number };
  /** the TCP clients' operations alone, and whether CHAOS_TCP_VM lost every replica (null: no TCP clients) */
  tcp: { ops: { total: number; ok: number; fail: number; unknown: number }; vmLost: boolean } | null;
  /** the checker's verdict ('unknown': it ran out of time on `unknownKeys`) */
  check: { result: 'ok' | 'violation' | 'unknown' | 'not-run'; explored: number; ms: number; unknownKeys: string[] };
  /** no replica of kv (CHAOS_VM) was left after the trial */
  vmLost: boolean;
  /** processes that ended on an operation left unknown */
  processesEnded: number;
  violations: Violation[];
  /** a trial that could not be set up (no cluster, no VM): what failed */
  setupError: string | null;
  /** state digests read from the hosts, and the counts at which two or more were compared (see digestClashes) */
  digests: { read: number; countsCompared: number };
  ms: number;
}

/** The whole campaign's outcome (`ftvm chaos --json`). */
export interface CampaignReport {
  seed: number;
  hosts: number;
  arbiter: 'file' | 'etcd';
  trialSeconds: number;
  nemeses: NemesisKind[];
  tcpProcesses: number;
  trials: TrialReport[];
  violations: Violation[];
  ms: number;
  /** the trials asked for (`trials` holds fewer when the campaign was interrupted) */
  trialsAsked: number;
  /** stopped by its signal (SIGINT, SIGTERM): the last trial was cut short, the rest not run */
  interrupted: boolean;
}

/** The facts of a trial that the checks read (checkTrial). */
export interface TrialFacts {
  history: Op[];
  /** each key's final value (a key absent: never read back) */
  finals: Map<string, string | null>;
  keys: string[];
  conflicts: OutputConflict[];
  /** second starts of the VM that succeeded, in words */
  startedTwice: string[];
  /** generation claims as the hosts' logs tell them, per VM: vm -> gen -> hosts */
  generations: Map<string, Map<number, Set<string>>>;
  /** host processes that exited without being killed, and logs that say FTVM_ERR_INVARIANT */
  crashes: string[];
  /** what the last vm-state check found wrong (empty: the reports are true) */
  vmProblems: string[];
  /** slots (the high byte of connection ids) two live hosts hold, in words */
  slotClashes: string[];
  /** hosts that did not link again after healing, in words (null: they did) */
  unsettled: string | null;
  /** no replica of kv was left (its final reads were not made) */
  vmLost: boolean;
  /** the VMs' state digests the hosts reported during and after the trial (see digestClashes) */
  digests: DigestSample[];
  /** host log lines that say a replay diverged or a snapshot restored to another state */
  divergences: string[];
}

/** A state digest one host reported of VM `vm` (its client port's status). */
export interface DigestSample extends DigestSeen {
  vm: string;
  host: string;
}

/** The command line that replays trial seed `seed` alone. */
export function reproduceLine(o: Pick<CampaignOptions, 'hosts' | 'arbiter' | 'trialSeconds' | 'nemeses' | 'tcpProcesses'>, seed: number): string {
  return `ftvm chaos --seed ${seed} --trials 1 --hosts ${o.hosts} --arbiter ${o.arbiter} --trial-seconds ${o.trialSeconds} --nemesis ${o.nemeses.join(',')} --tcp-processes ${o.tcpProcesses}`;
}

/**
 * Runs the checks on a trial's facts: the linearizability checker on the history, and the
 * others (see the header). Returns the checker's verdict and the violations
 * (without trial, seed and schedule, which the caller adds).
 */
export function checkTrial(f: TrialFacts): { check: TrialReport['check']; found: Omit<Violation, 'trial' | 'seed' | 'reproduce' | 'schedule'>[]; digestCountsCompared: number } {
  const found: Omit<Violation, 'trial' | 'seed' | 'reproduce' | 'schedule'>[] = [];
  // bounded by the checker's own default (host/limits.ts LINEARIZABILITY_CHECK_MS_DEFAULT): past it the verdict is 'unknown'
  const r = checkLinearizable(f.history, { initial: null });
  const check = { result: r.result, explored: r.explored, ms: r.ms, unknownKeys: r.unknownKeys ?? [] };
  if (r.result === 'violation') found.push({ kind: 'linearizability', key: r.key, detail: `the history of key ${r.key} is not linearizable`, ops: (r.ops ?? f.history.filter((o) => o.key === r.key)).slice(0, VIOLATION_OPS_MAX) });
  for (const key of f.keys) {
    if (!f.finals.has(key)) continue;
    const v = f.finals.get(key)!;
    const bad = lostWrite(f.history, key, v);
    if (bad) found.push({ kind: 'lost-write', key, detail: bad.detail, ops: bad.ops.slice(0, VIOLATION_OPS_MAX) });
  }
  // one violation per kind of conflict, naming how many and the first few
  const misdelivered = f.conflicts.filter((c) => c.kind === 'misdelivered');
  const twice = f.conflicts.filter((c) => c.kind === 'seq');
  const some = (n: number): string => (n > CONFLICTS_SHOWN ? ` (the first ${CONFLICTS_SHOWN} of ${n})` : '');
  if (misdelivered.length)
    found.push({
      kind: 'misdelivered',
      detail: `${misdelivered.length} answers went to a client that did not send their request${some(misdelivered.length)}: ${misdelivered
        .slice(0, CONFLICTS_SHOWN)
        .map((c) => `client ${c.first.client} (connection ${c.first.conn}) got "${c.first.text}" (output ${c.seq} of ${c.vm}, generation ${c.first.gen})`)
        .join('; ')}`,
    });
  if (twice.length)
    found.push({
      kind: 'two-generations',
      detail: `${twice.length} output sequence numbers came twice with different outputs${some(twice.length)}: ${twice
        .slice(0, CONFLICTS_SHOWN)
        .map((c) => `output ${c.seq} of ${c.vm}: "${c.first.text}" (generation ${c.first.gen}) to client ${c.first.client} (connection ${c.first.conn}), "${c.second!.text}" (generation ${c.second!.gen}) to client ${c.second!.client} (connection ${c.second!.conn})`)
        .join('; ')}`,
    });
  for (const s of f.startedTwice) found.push({ kind: 'two-generations', detail: `a second start of ${CHAOS_VM} while it ran: ${s}` });
  for (const [vm, gens] of f.generations) for (const [gen, hosts] of gens) if (hosts.size > 1) found.push({ kind: 'two-generations', detail: `generation ${gen} of ${vm} won by ${[...hosts].join(' and ')}` });
  for (const c of f.crashes) found.push({ kind: 'crash', detail: c });
  for (const p of f.vmProblems) found.push({ kind: 'vm-state', detail: p });
  for (const s of f.slotClashes) found.push({ kind: 'slot', detail: s });
  const digests = digestClashes(f.digests);
  for (const c of digests.clashes) found.push({ kind: 'digest', detail: c });
  for (const d of f.divergences) found.push({ kind: 'digest', detail: d });
  if (f.unsettled) found.push({ kind: 'not-settled', detail: f.unsettled });
  return { check, found, digestCountsCompared: digests.countsCompared };
}

/**
 * Where the replicas' state digests disagree. Compared at each count:
 * the digests backups verified, in every generation (a backup checks the
 * primary's logged digest against its own state; whatever it verified is on
 * the history that continued, whichever replica went on, so one count has one
 * state), and each primary's logged digest against those verified in its own
 * generation. A primary's digests that no backup verified in its generation
 * are not compared: a stale primary's state past what its backup received is
 * its own, released to nobody (the Output Rule). Returns a sentence per
 * count that disagrees, and how many counts had two or more digests compared.
 */
export function digestClashes(samples: readonly DigestSample[]): { clashes: string[]; countsCompared: number } {
  const clashes: string[] = [];
  const byCount = new Map<string, DigestSample[]>();
  for (const d of samples) {
    const at = `${d.vm} ${d.count}`;
    (byCount.get(at) ?? byCount.set(at, []).get(at)!).push(d);
  }
  let countsCompared = 0;
  const who = (d: DigestSample): string => `${d.host} (${d.verified ? 'backup, verified' : 'primary, logged'} at generation ${d.gen}: ${d.digest.slice(0, 16)}…)`;
  for (const ds of byCount.values()) {
    const verified = ds.filter((d) => d.verified);
    const compared = [...verified, ...ds.filter((d) => !d.verified && verified.some((v) => v.gen === d.gen))];
    if (new Set(compared.map((d) => d.host)).size < 2) continue;
    countsCompared++;
    const bad = new Set<DigestSample>();
    for (const v of verified) if (v.digest !== verified[0]!.digest) bad.add(v);
    for (const p of compared) if (!p.verified && verified.some((v) => v.gen === p.gen && v.digest !== p.digest)) bad.add(p);
    if (bad.size) clashes.push(`${ds[0]!.vm} at count ${ds[0]!.count}: the replicas' states differ: ${compared.map(who).join(', ')}`);
  }
  return { clashes, countsCompared };
}

/** What a host log line says when a replay diverged from its log or a snapshot restored to another state (ft/events.ts 'replica-failed'). */
const DIVERGED_RE = /FTVM_ERR_DIVERGENCE|the state restored from the snapshot has digest/;

/** The lines of the hosts' logs that say a replica diverged (see DIVERGED_RE), each with its host. */
export function divergencesOf(logs: { id: string; log: readonly string[] }[]): string[] {
  return logs.flatMap((h) => h.log.filter((l) => DIVERGED_RE.test(l)).map((l) => `${h.id}: ${l}`));
}

/**
 * Whether key `key`'s final value `v` is one a register could hold after the
 * history: the value of a write (or null of a delete, or the initial null)
 * that is not followed in real time by an acknowledged write or delete.
 * Returns what is wrong, or null.
 */
export function lostWrite(history: readonly Op[], key: string, v: string | null): { detail: string; ops: Op[] } | null {
  const muts = history.filter((o) => o.key === key && o.f !== 'read' && o.status !== 'fail');
  const acked = muts.filter((o) => o.status === 'ok');
  const superseded = (o: Op): boolean => o.completeMs !== null && acked.some((a) => o.completeMs! < a.invokeMs);
  const candidates = muts.filter((o) => !superseded(o));
  const matches = candidates.some((o) => (v === null ? o.f === 'delete' : o.f === 'write' && o.value === v)) || (v === null && acked.length === 0);
  if (matches) return null;
  const latest = acked.filter((a) => !superseded(a));
  const source = history.find((o) => o.key === key && o.f === 'write' && o.value === v);
  const why =
    v !== null && !source
      ? `reads ${JSON.stringify(v)}, a value never written to it`
      : source?.status === 'fail'
        ? `reads ${JSON.stringify(v)}, written by a write that was refused (fail)`
        : `reads ${JSON.stringify(v)} after the trial, but acknowledged ${latest.map((a) => (a.f === 'write' ? `write ${JSON.stringify(a.value)}` : 'delete')).join(', ')} came later (lost)`;
  return { detail: `key ${key} ${why}`, ops: [...(source ? [source] : []), ...latest] };
}

/** Where a host's log says it won a generation of VM `vm` or started it (the sentences of ft/events.ts). */
function claimPatterns(vm: string): { won: RegExp; started: RegExp } {
  return {
    won: new RegExp(`^\\[([^\\]]+)\\] ${escapeRe(eventText({ event: 'generation-won', vm, gen: 12345, role: 'backup' })).replace('12345', '(\\d+)').replace(escapeRe('; going live'), '')}`),
    started: new RegExp(`^\\[([^\\]]+)\\] ${escapeRe(eventText({ event: 'vm-started', vm, backup: 'X' })).replace(/ X$/, ' ')}`),
  };
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Generation claims of VM `vm` in the hosts' logs: gen -> hosts (a VM's start is generation 1 at its primary's host). */
export function generationsOf(logs: { id: string; log: readonly string[] }[], vm: string = CHAOS_VM): Map<number, Set<string>> {
  const out = new Map<number, Set<string>>();
  const { won: WON_RE, started: STARTED_RE } = claimPatterns(vm);
  const add = (gen: number, host: string): void => void (out.get(gen) ?? out.set(gen, new Set()).get(gen)!).add(host);
  for (const h of logs) {
    for (const l of h.log) {
      const won = WON_RE.exec(l);
      if (won) add(Number(won[2]), won[1]!);
      if (STARTED_RE.test(l)) add(1, h.id);
    }
  }
  return out;
}

/** A client of one host's client port (null when it cannot be reached within 1 s). */
async function clientOf(c: NetnsCluster, id: string): Promise<FtClient | null> {
  const h = c.hosts.get(id);
  if (!h || c.nodePid(id) === null) return null;
  const client = new FtClient(h.client, { token: c.token, reconnect: false });
  try {
    await client.connect(1000);
    return client;
  } catch {
    client.close();
    return null;
  }
}

/**
 * What is wrong with the hosts' reports of the VM now (empty: they are all
 * true), and whether any replica of it is left.
 */
export async function vmStateProblems(c: NetnsCluster, vm: string): Promise<{ problems: string[]; lost: boolean; slotClashes: string[] }> {
  const problems: string[] = [];
  const slots = new Map<number, string[]>();
  const replicas = new Map<string, { role: string; gen: number; partner: string | null }>();
  const reports = new Map<string, { state: string; gen: number; primary: string; backup: string | null }>();
  for (const [id, h] of c.hosts) {
    const client = await clientOf(c, id);
    if (!client) {
      problems.push(`${id} does not answer on its client port`);
      continue;
    }
    try {
      const s = await client.request({ t: 'status' }, 2000);
      if (typeof s.slot === 'number') slots.set(s.slot, [...(slots.get(s.slot) ?? []), id]);
      const r = (s.vms as { name: string; role: string; gen: number; partner: string | null }[]).find((v) => v.name === vm);
      if (r) replicas.set(id, r);
      const res = await fetch(`${h.api}/v1/vms`, { headers: { authorization: `Bearer ${c.token}` }, signal: AbortSignal.timeout(2000) });
      const infos = (await res.json()) as { name: string; state: string; gen: number; primary: string; backup: string | null }[];
      const info = infos.find((i) => i.name === vm);
      if (info) reports.set(id, info);
    } catch (e) {
      problems.push(`${id} does not answer: ${(e as Error).message}`);
    } finally {
      client.close();
    }
  }
  const lost = replicas.size === 0;
  const primaries = [...replicas].filter(([, r]) => r.role === 'primary');
  if (primaries.length > 1) problems.push(`two primaries: ${primaries.map(([id, r]) => `${id} (generation ${r.gen})`).join(', ')}`);
  for (const [id, info] of reports) {
    if (info.state === 'ended') continue;
    const says = `${id} reports ${vm} ${info.state} at generation ${info.gen} (primary ${info.primary}, backup ${info.backup ?? 'none'})`;
    if (lost) {
      if (info.state !== 'lost') problems.push(`${says}, but no host has a replica of it: it is lost`);
      continue;
    }
    if (info.state === 'lost') {
      problems.push(`${says}, but ${[...replicas].map(([h, r]) => `${h} runs a ${r.role} at generation ${r.gen}`).join(', ')}`);
      continue;
    }
    if (info.state === 'failing-over') {
      problems.push(`${says} with every host up and linked`);
      continue;
    }
    const p = replicas.get(info.primary);
    if (!p || p.role !== 'primary' || p.gen !== info.gen) problems.push(`${says}, but ${info.primary} runs ${p ? `a ${p.role} at generation ${p.gen}` : 'no replica of it'}`);
    if (info.state === 'running') {
      const b = info.backup ? replicas.get(info.backup) : undefined;
      if (!b || b.role !== 'backup') problems.push(`${says}, but ${info.backup ?? 'no host'} runs ${b ? `a ${b.role}` : 'no backup of it'}`);
    }
  }
  for (const [id, r] of replicas) if (!reports.has(id) && r.role === 'primary') problems.push(`${id} runs the primary of ${vm} (generation ${r.gen}) but does not report the VM`);
  const slotClashes = [...slots].filter(([, hs]) => hs.length > 1).map(([slot, hs]) => `${hs.join(' and ')} hold slot ${slot}: their connection ids collide`);
  return { problems, lost, slotClashes };
}

/**
 * Reads the state digests of VMs `vms` from every host that answers within
 * about 2 s (a paused or cut-off host is passed over) into `into`, keyed by
 * VM, host, generation, role and count; at most CHAOS_DIGESTS_KEPT_MAX are kept.
 */
async function readDigests(c: NetnsCluster, vms: readonly string[], into: Map<string, DigestSample>): Promise<void> {
  await Promise.all(
    [...c.hosts.keys()].map(async (id) => {
      const client = await clientOf(c, id);
      if (!client) return;
      try {
        const s = await client.request({ t: 'status' }, 1000);
        for (const r of s.vms as { name: string; digests?: DigestSeen[] }[]) {
          if (!vms.includes(r.name)) continue;
          for (const d of r.digests ?? []) {
            const key = `${r.name} ${id} ${d.gen} ${d.verified} ${d.count}`;
            if (!into.has(key) && into.size < CHAOS_DIGESTS_KEPT_MAX) into.set(key, { ...d, vm: r.name, host: id });
          }
        }
      } catch {
        /* not reachable now: read again at the next turn */
      } finally {
        client.close();
      }
    }),
  );
}

/** Waits (at most `ms`, polling every `everyMs`: gently, on hosts under faults) until `fn` returns true; false when it did not. */
function until(fn: () => Promise<boolean>, ms: number, everyMs = 250): Promise<boolean> {
  return eventually('', async () => ((await fn()) ? true : undefined), ms, everyMs).then(
    () => true,
    () => false,
  );
}

/** The modules a trial runs: the kv sample, and kvresp for the TCP clients. */
export interface TrialModules {
  kv: Uint8Array;
  kvresp: Uint8Array;
}

/** Counts of a history's operations by status. */
function opCounts(h: readonly Op[]): TrialReport['ops'] {
  return { total: h.length, ok: h.filter((x) => x.status === 'ok').length, fail: h.filter((x) => x.status === 'fail').length, unknown: h.filter((x) => x.status === 'unknown').length };
}

/**
 * Starts VM `vm` of `module` with its primary on host `at` (and `publish`
 * ports), then waits (at most SETTLE_MS) until every host's report of it is
 * true and its primary has a backup. Throws an Error saying what failed.
 */
async function startBacked(c: NetnsCluster, vm: string, module: Uint8Array, at: string, publish: number[]): Promise<void> {
  const admin = await clientOf(c, at);
  if (!admin) throw new Error(`${at} cannot be reached`);
  try {
    await admin.request({ t: 'start', vm, module, host: at, ...(publish.length ? { publish } : {}) }, 60_000);
  } finally {
    admin.close();
  }
  const backed = await until(async () => {
    const p = await vmStateProblems(c, vm);
    const a = await clientOf(c, at);
    if (!a) return false;
    try {
      const s = await a.request({ t: 'status' }, 2000);
      const v = (s.vms as { name: string; role: string; alone: boolean; partner: string | null }[]).find((x) => x.name === vm);
      return p.problems.length === 0 && v?.role === 'primary' && !v.alone && v.partner !== null;
    } finally {
      a.close();
    }
  }, SETTLE_MS);
  if (!backed) throw new Error(`${vm} got no backup within ${SETTLE_MS} ms`);
}

/** Runs one trial on `net`; never throws (a trial that cannot be set up says so in setupError). */
export async function runTrial(net: ChaosNet, trial: number, o: CampaignOptions, modules: TrialModules): Promise<TrialReport> {
  const t0 = Date.now();
  const seed = o.seed + trial;
  const rng = new Prng(seed);
  const trialMs = o.trialSeconds * 1000;
  const schedule: Fault[] = drawSchedule(rng, o.nemeses, o.hosts, trialMs, o.failMs);
  const ids = net.ids;
  const primaryAt = rng.pick(ids);
  // drawn after the draws above, so that a seed's schedule and kv placement do not depend on the TCP clients
  const tcpAt = rng.pick(ids);
  const vms = o.tcpProcesses > 0 ? [CHAOS_VM, CHAOS_TCP_VM] : [CHAOS_VM];
  const say = o.progress ?? (() => {});
  const report: TrialReport = {
    trial,
    seed,
    nemeses: schedule.map((f) => ({ ...f, hosts: [], startedMs: null, endedMs: null, note: 'not started' })),
    ops: { total: 0, ok: 0, fail: 0, unknown: 0 },
    tcp: null,
    check: { result: 'not-run', explored: 0, ms: 0, unknownKeys: [] },
    vmLost: false,
    processesEnded: 0,
    violations: [],
    setupError: null,
    digests: { read: 0, countsCompared: 0 },
    ms: 0,
  };
  let logDir: string | null = null;
  if (o.logDir) {
    logDir = `${o.logDir}/trial-${trial}`;
    makeDirs(logDir);
  }
  const etcdPorts: [number, number] = o.arbiter === 'etcd' ? [await freePort(), await freePort()] : [0, 0];
  const c = new NetnsCluster(net, `t${trial}`, { arbiter: o.arbiter, failMs: o.failMs, heartbeatMs: o.heartbeatMs, logDir }, etcdPorts);
  // the history's and the schedule's clock: ms since the workload started
  let origin = performance.now();
  const now = (): number => Math.round((performance.now() - origin) * 10) / 10;
  const keys = Array.from({ length: o.keys }, (_, i) => `k${i}`);
  const tcpKeys = o.tcpProcesses > 0 ? Array.from({ length: o.keys }, (_, i) => `t${i}`) : [];
  // each host's published endpoint (its address is kept across restarts): known once the hosts run
  let endpoints: string[] = [];
  const startedTwice: string[] = [];
  try {
    // 1. the cluster and the VMs
    try {
      await c.startEtcd();
      // every start settles before a failure is thrown: a host that comes up after another failed is known, and stopped with the rest
      const started = await Promise.allSettled(ids.map((id) => c.add(id)));
      const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      await c.linked(SETTLE_MS);
      endpoints = ids.map((id) => `${c.host(id).public}:${CHAOS_TCP_PORT}`);
      await startBacked(c, CHAOS_VM, modules.kv, primaryAt, []);
      if (o.tcpProcesses > 0) await startBacked(c, CHAOS_TCP_VM, modules.kvresp, tcpAt, [CHAOS_TCP_PORT]);
    } catch (e) {
      report.setupError = (e as Error).message.split('\n').slice(0, 8).join('\n');
      say(`trial ${trial}: not set up: ${report.setupError}`);
      return report;
    }
    // 2. clients and faults
    const wrng = new Prng(seed ^ 0x5bd1e995);
    const w = new Workload({ hosts: ids.map((id) => c.host(id).client), token: c.token, vm: CHAOS_VM, processes: o.processes, keys, opTimeoutMs: Math.max(1500, 2 * o.failMs), tag: `t${trial}`, now }, wrng);
    const tw = o.tcpProcesses > 0 ? new RespWorkload({ endpoints, processes: o.tcpProcesses, firstProcess: TCP_FIRST_PROCESS, keys: tcpKeys, opTimeoutMs: Math.max(1500, 2 * o.failMs), tag: `t${trial}r`, now }, new Prng(seed ^ 0x27d4eb2d)) : null;
    let endTrial!: () => void;
    const ended = new Promise<void>((r) => (endTrial = r));
    const timer = setTimeout(() => endTrial(), trialMs);
    const onAbort = (): void => endTrial();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    origin = performance.now();
    w.start();
    tw?.start();
    const nemesis = runSchedule(schedule, { cluster: c, vm: CHAOS_VM, module: modules.kv, now, clientOf: (id) => clientOf(c, id), startedTwice: (s) => startedTwice.push(s) }, ended);
    // the hosts keep their newest digests only: read them while the trial runs
    const digests = new Map<string, DigestSample>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await readDigests(c, vms, digests);
        await new Promise((r) => setTimeout(r, CHAOS_DIGEST_SAMPLE_MS));
      }
    })();
    await ended;
    sampling = false;
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
    report.nemeses = await nemesis;
    await Promise.all([w.stop(), tw?.stop()]);
    await sampler;
    report.processesEnded = w.processesEnded + (tw?.processesEnded ?? 0);
    // 3. heal and settle
    net.heal();
    for (const id of ids) {
      c.signal(id, 'SIGCONT');
      if (c.nodePid(id) === null) {
        try {
          await c.restart(id);
        } catch (e) {
          say(`trial ${trial}: ${id} would not restart: ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
    if (o.arbiter === 'etcd' && !c.etcdRunning) await c.startEtcd();
    let unsettled: string | null = null;
    try {
      await c.linked(SETTLE_MS);
    } catch (e) {
      unsettled = `after healing: ${(e as Error).message}`;
    }
    const states = new Map<string, Awaited<ReturnType<typeof vmStateProblems>>>();
    await until(async () => {
      for (const vm of vms) states.set(vm, await vmStateProblems(c, vm));
      return [...states.values()].every((v) => v.problems.length === 0);
    }, SETTLE_MS, 500);
    const kvState = states.get(CHAOS_VM) ?? { problems: ['not read'], lost: false, slotClashes: [] };
    const tcpState = states.get(CHAOS_TCP_VM);
    report.vmLost = kvState.lost;
    await readDigests(c, vms, digests);
    // 4. final reads and checks
    const history = w.history;
    const finals = kvState.lost ? new Map<string, string | null>() : await finalReads({ hosts: ids.map((id) => c.host(id).client), token: c.token, vm: CHAOS_VM, keys, opTimeoutMs: 3000, tag: '', now }, history, 1_000_000, FINAL_READS_MS);
    if (tw && tcpState) {
      const tcpFinals = tcpState.lost ? new Map<string, string | null>() : await respFinalReads({ endpoints, keys: tcpKeys, opTimeoutMs: 3000, now }, tw.history, TCP_FIRST_PROCESS + 1_000_000, FINAL_READS_MS);
      for (const [k, v] of tcpFinals) finals.set(k, v);
      report.tcp = { ops: opCounts(tw.history), vmLost: tcpState.lost };
      history.push(...tw.history);
    }
    o.tamper?.(trial, history);
    const crashes: string[] = [];
    for (const h of c.incarnations) {
      const status = h.proc.exitCode ?? h.proc.signalCode;
      if (status !== null && !c.killed.has(h)) crashes.push(`${h.id} exited (${status}) without being killed: ${h.log.slice(-3).join(' | ')}`);
      const inv = h.log.find((l) => l.includes('FTVM_ERR_INVARIANT'));
      if (inv) crashes.push(`${h.id}: ${inv}`);
    }
    const generations = new Map(vms.map((vm) => [vm, generationsOf(c.incarnations, vm)]));
    const vmProblems = [...states.values()].flatMap((v) => v.problems);
    // the slots are the hosts', read with each VM's reports: one list of clashes
    const slotClashes = [...new Set([...states.values()].flatMap((v) => v.slotClashes))];
    const facts = { history, finals, keys: [...keys, ...tcpKeys], conflicts: w.conflicts, startedTwice, generations, crashes, vmProblems, slotClashes, unsettled, vmLost: kvState.lost, digests: [...digests.values()], divergences: divergencesOf(c.incarnations) };
    const { check, found, digestCountsCompared } = checkTrial(facts);
    report.check = check;
    report.digests = { read: digests.size, countsCompared: digestCountsCompared };
    report.violations = found.map((v) => ({ ...v, trial, seed, reproduce: reproduceLine(o, seed), schedule: report.nemeses }));
    report.ops = opCounts(history);
    return report;
  } catch (e) {
    report.setupError = `the trial failed: ${(e as Error).message.split('\n')[0]}`;
    return report;
  } finally {
    net.heal();
    await c.stop().catch(() => undefined);
    // nothing of this trial outlives it, even what it lost track of
    const strays = net.killStragglers();
    if (strays) say(`trial ${trial}: ${strays} processes were left in the hosts' namespaces: killed`);
    report.ms = Date.now() - t0;
  }
}

/**
 * Runs a campaign: its trials one after another, on one network of
 * namespaces (made and removed here). Errors: the --log-dir that cannot be
 * made (fileError: FTVM_ERR_FILE_NOT_FOUND, FTVM_ERR_FILE_ACCESS, ...), before
 * anything of the network is made.
 */
export async function runCampaign(o: CampaignOptions): Promise<CampaignReport> {
  const t0 = Date.now();
  const ids = Array.from({ length: o.hosts }, (_, i) => `h${i + 1}`);
  const modules: TrialModules = { kv: new Uint8Array(readFileSync(guestPath('kv.wasm'))), kvresp: new Uint8Array(readFileSync(guestPath('kvresp.wasm'))) };
  // the log directory is made (or refused) before anything of the network is
  if (o.logDir) {
    try {
      makeDirs(o.logDir);
    } catch (e) {
      throw fileError(e, '--log-dir', o.logDir, 'create');
    }
  }
  const net = new ChaosNet(ids);
  const gone = (): void => net.destroy();
  process.once('exit', gone);
  const trials: TrialReport[] = [];
  try {
    for (let i = 0; i < o.trials && !o.signal?.aborted; i++) {
      const r = await runTrial(net, i, o, modules);
      trials.push(r);
      o.progress?.(trialLine(r));
    }
  } finally {
    net.destroy();
    process.removeListener('exit', gone);
  }
  return { seed: o.seed, hosts: o.hosts, arbiter: o.arbiter, trialSeconds: o.trialSeconds, nemeses: o.nemeses, tcpProcesses: o.tcpProcesses, trials, violations: trials.flatMap((t) => t.violations), ms: Date.now() - t0, trialsAsked: o.trials, interrupted: o.signal?.aborted ?? false };
}

/** The seed column's width: the digits of CHAOS_SEED_MAX (2^48, 15 digits). */
const SEED_COLUMN = String(CHAOS_SEED_MAX).length;

/** One trial as a line of the table (`ftvm chaos` without --json). */
export function trialLine(t: TrialReport): string {
  const faults = t.nemeses.map((f) => `${f.kind}${f.hosts.length ? `@${f.hosts.join('+')}` : ''}`).join(' ') || '-';
  const ops = `${t.ops.ok}/${t.ops.fail}/${t.ops.unknown}`;
  const verdict = t.setupError ? 'not set up' : t.violations.length ? [...new Set(t.violations.map((v) => v.kind))].join(',') : t.check.result === 'unknown' ? 'ok (checker: unknown)' : 'ok';
  return `${String(t.trial).padStart(5)}  ${String(t.seed).padEnd(SEED_COLUMN)} ${ops.padEnd(16)} ${(t.vmLost ? 'lost' : 'kept').padEnd(5)} ${verdict.padEnd(24)} ${(t.ms / 1000).toFixed(1).padStart(6)}  ${faults}`;
}

/** The header of the table. */
export const TRIAL_HEADER = `${'trial'.padStart(5)}  ${'seed'.padEnd(SEED_COLUMN)} ${'ok/fail/unknown'.padEnd(16)} ${'vm'.padEnd(5)} ${'verdict'.padEnd(24)} ${'s'.padStart(6)}  nemeses`;
