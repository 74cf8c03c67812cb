// `ftvm chaos`: a short campaign really runs on hosts in network namespaces
// (kill -9, SIGSTOP and partitions drawn from the seed), reports every trial
// in the documented shape, removes everything it made, and its checks are
// wired: a fabricated history that no register could produce, put into a
// trial's history before the checks, comes out as a linearizability violation
// of that trial with the seed that replays it. The same seed draws the same
// schedule. Needs root (network namespaces); without it the command says
// FTVM_ERR_PRIVILEGE, which is tested as an unprivileged user.

import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkTrial, digestClashes, divergencesOf, generationsOf, lostWrite, runCampaign, type CampaignReport, type DigestSample, type TrialReport, type Violation } from '../host/chaos/campaign.ts';
import { CHAOS_SEED_MAX, campaignExitStatus, campaignSeed, summary } from '../host/chaos/cli.ts';
import { eventText } from '../host/ft/events.ts';
import type { Op } from '../host/chaos/linearizability.ts';
import { CHAOS_STATE_DIR, ChaosNet } from '../host/chaos/netns.ts';
import { drawSchedule, parseNemeses } from '../host/chaos/nemesis.ts';
import { Prng } from '../host/chaos/prng.ts';
import { FTVM, ftvm } from './ftvm-cli.ts';
import { CHAOS } from '../host/cli/commands.ts';

const root = process.getuid?.() === 0;

/**
 * Namespaces and markers of chaos runs on this machine now, but those of a run
 * still going (its marker names a live process: another suite's campaign on the
 * same machine, whose namespaces come and go while this one runs).
 */
function leftovers(): string[] {
  const ns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith('ftvm-c'));
  const markers = existsSync(CHAOS_STATE_DIR) ? readdirSync(CHAOS_STATE_DIR) : [];
  const live = new Set<string>();
  for (const m of markers) {
    try {
      const { pid, run } = JSON.parse(readFileSync(join(CHAOS_STATE_DIR, m), 'utf8')) as { pid: number; run: string };
      process.kill(pid, 0);
      live.add(run);
    } catch {
      // no such process (or a marker being written): not a run still going
    }
  }
  const runOf = (x: string): string => /^(?:ftvm-)?(c\d+)/.exec(x)?.[1] ?? x;
  return [...ns, ...markers].filter((x) => !live.has(runOf(x)));
}

/** A history of key "fabricated" no register can produce: a read of a value after a later write of another completed. */
function fabricated(): Op[] {
  return [
    { process: 900_001, key: 'fabricated', f: 'write', value: 'a', invokeMs: 0, completeMs: 1, status: 'ok' },
    { process: 900_001, key: 'fabricated', f: 'write', value: 'b', invokeMs: 2, completeMs: 3, status: 'ok' },
    { process: 900_002, key: 'fabricated', f: 'read', value: 'a', invokeMs: 4, completeMs: 5, status: 'ok' },
  ];
}

/** The trials `make test` runs (issue: 20 in the suite; a longer campaign is `ftvm chaos --trials N`). */
const TRIALS = 20;

describe('ftvm chaos', () => {
  it('draws the same schedule from the same seed, and another from another', () => {
    const kinds = parseNemeses('kill,pause,partition', 'file');
    expect(kinds).toEqual(['kill', 'pause', 'isolate-primary', 'isolate-backup', 'split', 'one-way']);
    const a = drawSchedule(new Prng(7), kinds, 3, 5000, 1000);
    expect(drawSchedule(new Prng(7), kinds, 3, 5000, 1000)).toEqual(a);
    const others = [8, 9, 10, 11].map((s) => JSON.stringify(drawSchedule(new Prng(s), kinds, 3, 5000, 1000)));
    expect(others.some((o) => o !== JSON.stringify(a))).toBe(true);
    for (const f of a) expect(f.atMs >= 500 && f.atMs <= 2500 && f.durationMs >= 200).toBe(true);
  });

  it('takes a final value for lost when an acknowledged write came after the write that wrote it, or when nothing wrote it', () => {
    const op = (process: number, f: Op['f'], value: string | null, invokeMs: number, completeMs: number | null, status: Op['status'] = 'ok'): Op => ({ process, key: 'k', f, value, invokeMs, completeMs, status });
    const h = [op(1, 'write', 'a', 0, 1), op(1, 'write', 'b', 2, 3), op(2, 'write', 'c', 2.5, null, 'unknown'), op(3, 'write', 'x', 0, 5, 'fail'), op(4, 'delete', null, 10, 11, 'unknown')];
    expect(lostWrite(h, 'k', 'b')).toBeNull();
    expect(lostWrite(h, 'k', 'c')).toBeNull(); // unknown: it may have taken effect after b
    expect(lostWrite(h, 'k', null)).toBeNull(); // the unknown delete
    expect(lostWrite(h, 'k', 'a')?.detail).toBe('key k reads "a" after the trial, but acknowledged write "b" came later (lost)');
    expect(lostWrite(h, 'k', 'x')?.detail).toBe('key k reads "x", written by a write that was refused (fail)');
    expect(lostWrite(h, 'k', 'zz')?.detail).toBe('key k reads "zz", a value never written to it');
    expect(lostWrite([op(1, 'write', 'a', 0, 1)], 'k', null)?.detail).toBe('key k reads null after the trial, but acknowledged write "a" came later (lost)');
    expect(lostWrite([], 'k', null)).toBeNull(); // the initial null
  });

  it("reads generation claims from the hosts' logs, in the sentences of ft/events.ts", () => {
    const logs = [
      { id: 'h1', log: [`[h1] ${eventText({ event: 'vm-started', vm: 'kv', backup: 'h2' })}`, '[h1] something else'] },
      { id: 'h2', log: [`[h2] ${eventText({ event: 'generation-won', vm: 'kv', gen: 2, role: 'backup' })}`] },
      { id: 'h3', log: [`[h3] ${eventText({ event: 'generation-won', vm: 'kv', gen: 2, role: 'primary' })}`, `[h3] ${eventText({ event: 'generation-won', vm: 'other', gen: 3, role: 'backup' })}`] },
    ];
    expect([...generationsOf(logs)].map(([g, hs]) => [g, [...hs]])).toEqual([
      [1, ['h1']],
      [2, ['h2', 'h3']],
    ]);
    const { found } = checkTrial({ history: [], finals: new Map(), keys: [], conflicts: [], startedTwice: [], generations: new Map([['kv', generationsOf(logs)]]), crashes: [], vmProblems: [], slotClashes: [], unsettled: null, vmLost: false, digests: [], divergences: [] });
    expect(found.map((v) => [v.kind, v.detail])).toEqual([['two-generations', 'generation 2 of kv won by h2 and h3']]);
  });

  it("compares replicas' state digests on the history that went on, and passes over a stale primary's own", () => {
    const A = 'a'.repeat(64);
    const B = 'b'.repeat(64);
    const C = 'c'.repeat(64);
    const d = (host: string, gen: number, verified: boolean, count: string, digest: string, vm = 'kv'): DigestSample => ({ vm, host, gen, verified, count, digest });
    // h1 primary at generation 1, h2 its backup; h2 goes live at generation 2 with h3 as its backup
    const history = [d('h1', 1, false, '100', A), d('h2', 1, true, '100', A), d('h2', 2, false, '200', B), d('h3', 2, true, '200', B)];
    expect(digestClashes(history)).toEqual({ clashes: [], countsCompared: 2 });
    // the stale h1 went on at generation 1 past what h2 received: its state at count 300 is its own
    expect(digestClashes([...history, d('h1', 1, false, '300', C), d('h2', 2, false, '300', B), d('h3', 2, true, '300', B)])).toEqual({ clashes: [], countsCompared: 3 });
    // two backups (generations 1 and 2) verified different states at one count: two histories
    const forked = digestClashes([d('h2', 1, true, '400', A), d('h3', 2, true, '400', C)]);
    expect(forked.clashes).toEqual([`kv at count 400: the replicas' states differ: h2 (backup, verified at generation 1: ${A.slice(0, 16)}…), h3 (backup, verified at generation 2: ${C.slice(0, 16)}…)`]);
    // a primary's logged state and its own generation's backup's disagree
    expect(digestClashes([d('h1', 1, false, '500', A), d('h2', 1, true, '500', C)]).clashes).toHaveLength(1);
    // another VM's digest at the same count is another state
    expect(digestClashes([d('h2', 1, true, '800', A), d('h3', 1, true, '800', B, 'kvresp')])).toEqual({ clashes: [], countsCompared: 0 });
    // one host's digest alone compares nothing
    expect(digestClashes([d('h1', 1, false, '600', A), d('h1', 1, false, '700', B)])).toEqual({ clashes: [], countsCompared: 0 });
    // a replay that diverged, in the host's log, is a digest violation too
    const failed = `[h2] ${eventText({ event: 'replica-failed', vm: 'kv', role: 'backup', code: 'FTVM_ERR_DIVERGENCE', message: 'entry 7: logged digest 1, replayed digest 2' })}`;
    const divergences = divergencesOf([{ id: 'h2', log: ['[h2] kv: live', failed] }]);
    expect(divergences).toEqual([`h2: ${failed}`]);
    const { found } = checkTrial({ history: [], finals: new Map(), keys: [], conflicts: [], startedTwice: [], generations: new Map(), crashes: [], vmProblems: [], slotClashes: [], unsettled: null, vmLost: false, digests: [d('h2', 1, true, '400', A), d('h3', 2, true, '400', C)], divergences });
    expect(found.map((v) => v.kind)).toEqual(['digest', 'digest']);
  });

  it('refuses a wrong command line, and a user who is not root', async () => {
    const bad = await ftvm(['chaos', '--arbiter', 'paper']);
    expect([bad.code, bad.stderr.trim()]).toEqual([2, 'ftvm chaos: FTVM_ERR_USAGE: --arbiter is file or etcd, not "paper" (see ftvm chaos --help)']);
    const etcdOnly = await ftvm(['chaos', '--nemesis', 'etcd']);
    expect([etcdOnly.code, etcdOnly.stderr.trim()]).toEqual([2, 'ftvm chaos: FTVM_ERR_USAGE: nemesis etcd needs --arbiter etcd (see ftvm chaos --help)']);
    const help = await ftvm(['chaos', '--help']);
    expect([help.code, help.stdout]).toEqual([0, CHAOS.help]);
    // the table's rule for every command: the help starts with the usage line and names every flag
    expect(CHAOS.help.startsWith(`usage: ${CHAOS.usage}\n`)).toBe(true);
    for (const flag of Object.keys(CHAOS.options)) expect(CHAOS.help).toContain(`--${flag}`);
    if (!root) return;
    const nobody = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, FTVM, 'chaos', '--trials', '1'], { timeout: 60_000 }, (err, _out, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stderr }),
      ),
    );
    expect([nobody.code, nobody.stderr.trim()]).toEqual([1, 'ftvm chaos: FTVM_ERR_PRIVILEGE: ftvm chaos makes network namespaces, links and bridges: it must run as root (uid 0)']);
  });

  it('refuses a seed its trials cannot use and an empty nemesis item, and every refusal names the help to read', async () => {
    // these are refused before the root check: no campaign runs
    const lastPast = await ftvm(['chaos', '--seed', String(CHAOS_SEED_MAX), '--trials', '2']);
    expect([lastPast.code, lastPast.stderr.trim()]).toEqual([2, `ftvm chaos: FTVM_ERR_USAGE: --seed ${CHAOS_SEED_MAX} with 2 trials: the last trial's seed would be ${CHAOS_SEED_MAX + 1}, past ${CHAOS_SEED_MAX} (see ftvm chaos --help)`]);
    const past = await ftvm(['chaos', '--seed', String(CHAOS_SEED_MAX + 1), '--trials', '1']);
    expect([past.code, past.stderr.trim()]).toEqual([2, `ftvm chaos: FTVM_ERR_USAGE: --seed expects an integer from 0 to ${CHAOS_SEED_MAX}, got "${CHAOS_SEED_MAX + 1}" (see ftvm chaos --help)`]);
    const empty = await ftvm(['chaos', '--nemesis', 'kill,,pause']);
    expect([empty.code, empty.stderr.trim()]).toEqual([2, 'ftvm chaos: FTVM_ERR_USAGE: --nemesis "kill,,pause": item 2 of 3 is empty (see ftvm chaos --help)']);
    const hosts = await ftvm(['chaos', '--hosts', '1']);
    expect([hosts.code, hosts.stderr.trim()]).toEqual([2, 'ftvm chaos: FTVM_ERR_USAGE: --hosts expects an integer from 2 to 9, got "1" (see ftvm chaos --help)']);
    for (const list of ['kill,', ',kill', '', ' , ']) expect(() => parseNemeses(list, 'file')).toThrow(/is empty \(see ftvm chaos --help\)$/);
    // a trial's printed seed is taken back: trial 2 of seed 2^31 - 1 is 2^31 + 1, and any seed up to 2^48 whose trials stay within it
    expect(campaignSeed(String(2 ** 31 + 1), 1)).toBe(2 ** 31 + 1);
    expect(campaignSeed(String(CHAOS_SEED_MAX), 1)).toBe(CHAOS_SEED_MAX);
    expect(campaignSeed(String(CHAOS_SEED_MAX - 99), 100)).toBe(CHAOS_SEED_MAX - 99);
    expect(() => campaignSeed(String(CHAOS_SEED_MAX - 98), 100)).toThrow(/past 281474976710656/);
    expect(Number.isSafeInteger(CHAOS_SEED_MAX + 100_000)).toBe(true);
    // a drawn seed stays below 2^31
    expect(campaignSeed(undefined, 100_000, () => 0.999_999_999)).toBeLessThan(2 ** 31);
    // one integer draws one schedule, above 2^32 too
    const kinds = parseNemeses('all', 'file');
    expect(drawSchedule(new Prng(CHAOS_SEED_MAX - 7), kinds, 3, 5000, 1000)).toEqual(drawSchedule(new Prng(CHAOS_SEED_MAX - 7), kinds, 3, 5000, 1000));
  });

  it('a campaign a signal stopped exits 128+N with violations or without, and its summary says how many trials ran', () => {
    const trial = (i: number, violations: Violation[]): TrialReport => ({
      trial: i, seed: 70 + i, nemeses: [], ops: { total: 3, ok: 3, fail: 0, unknown: 0 }, tcp: null, check: { result: violations.length ? 'violation' : 'ok', explored: 1, ms: 1, unknownKeys: [] },
      vmLost: false, processesEnded: 0, violations, setupError: null, digests: { read: 0, countsCompared: 0 }, ms: 1000,
    });
    const v: Violation = { kind: 'linearizability', trial: 1, seed: 71, reproduce: 'ftvm chaos --seed 71 --trials 1', detail: 'the history of key k is not linearizable', schedule: [], key: 'k' };
    const report = (interrupted: boolean, violations: Violation[]): CampaignReport => {
      const trials = [trial(0, []), trial(1, violations)];
      return { seed: 70, hosts: 3, arbiter: 'file', trialSeconds: 3, nemeses: ['kill'], tcpProcesses: 0, trials, violations, ms: 2000, trialsAsked: 5, interrupted };
    };
    expect(campaignExitStatus(report(true, []), 'SIGINT')).toBe(130);
    expect(campaignExitStatus(report(true, [v]), 'SIGINT')).toBe(130);
    expect(campaignExitStatus(report(true, [v]), 'SIGTERM')).toBe(143);
    expect(campaignExitStatus(report(false, [v]), null)).toBe(1);
    expect(campaignExitStatus(report(false, []), null)).toBe(0);
    const cut = summary(report(true, [v])).split('\n');
    expect(cut).toContain('interrupted: stopped after 2 of 5 trials');
    expect(cut).toContain('trial 1 (seed 71): 1 violations');
    expect(summary(report(false, [])).includes('interrupted')).toBe(false);
  });

  it.skipIf(!root)('SIGINT ends the trial under way, reports it, says the campaign was cut short and exits 130', async () => {
    const before = leftovers();
    const child = spawn(process.execPath, [FTVM, 'chaos', '--seed', '31', '--trials', '3', '--trial-seconds', '3', '--nemesis', 'kill', '--tcp-processes', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      // the first trial's line, then SIGINT while the second runs
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no trial line within 60 s: ${stdout}${stderr}`)), 60_000);
        child.stdout.on('data', (b: Buffer) => {
          stdout += b.toString();
          if (/^\s+0\s+31\s/m.test(stdout)) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      child.kill('SIGINT');
      const code = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 60_000).unref())]);
      expect(code, stderr).toBe(130);
      expect(stderr).toMatch(/stopping after the trial under way/);
      expect(stdout).toMatch(/^\s+1\s+32\s/m);
      expect(stdout).toContain('\ninterrupted: stopped after 2 of 3 trials\n');
      expect(leftovers().filter((x) => !before.includes(x))).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
  }, 150_000);

  it.skipIf(!root)('kills what a trial left running in the hosts\' namespaces, so it cannot hold the next trial\'s ports', async () => {
    const net = new ChaosNet(['h1', 'h2']);
    try {
      const stray = spawn('ip', ['netns', 'exec', net.ns('h2'), 'sleep', '300'], { stdio: 'ignore', detached: true });
      await new Promise<void>((resolve, reject) => (stray.once('spawn', resolve), stray.once('error', reject)));
      const exited = new Promise<NodeJS.Signals | null>((r) => stray.once('exit', (_code, sig) => r(sig)));
      expect(net.killStragglers()).toBe(1);
      expect(await exited).toBe('SIGKILL');
      expect(execFileSync('ip', ['netns', 'pids', net.ns('h2')], { encoding: 'utf8' }).trim()).toBe('');
      expect(net.killStragglers()).toBe(0);
    } finally {
      net.destroy();
    }
  });

  it.skipIf(!root)('20 trials of every nemesis find no violation but a fabricated one, report in shape, and leave nothing behind', async () => {
    const before = leftovers();
    const report: CampaignReport = JSON.parse(
      JSON.stringify(
        await runCampaign({
          seed: 4242,
          trials: TRIALS,
          hosts: 3,
          arbiter: 'file',
          trialSeconds: 3,
          nemeses: parseNemeses('all', 'file'),
          processes: 3,
          keys: 3,
          tcpProcesses: 2,
          failMs: 1000,
          heartbeatMs: 50,
          logDir: null,
          tamper: (trial, history) => {
            if (trial === 0) history.push(...fabricated());
          },
        }),
      ),
    ) as CampaignReport;
    expect(Object.keys(report).sort()).toEqual(['arbiter', 'hosts', 'interrupted', 'ms', 'nemeses', 'seed', 'tcpProcesses', 'trialSeconds', 'trials', 'trialsAsked', 'violations']);
    expect(report.nemeses).toEqual(['kill', 'pause', 'isolate-primary', 'isolate-backup', 'split', 'one-way', 'clock', 'arbiter-chmod', 'arbiter-remove']);
    expect(report.trials.map((t) => [t.trial, t.seed, t.setupError])).toEqual(Array.from({ length: TRIALS }, (_, i) => [i, 4242 + i, null]));
    for (const t of report.trials) {
      // every trial ran clients and faults, and checked its history
      expect(t.ops.ok).toBeGreaterThan(0);
      expect(t.ops.total).toBe(t.ops.ok + t.ops.fail + t.ops.unknown);
      expect(t.nemeses.length).toBeGreaterThan(0);
      expect(t.nemeses.every((f) => f.startedMs !== null && f.endedMs !== null && f.hosts.length > 0)).toBe(true);
      expect(['ok', 'violation', 'unknown']).toContain(t.check.result);
      // the schedule is the one the trial's seed draws
      expect(t.nemeses.map((f) => [f.kind, f.atMs, f.durationMs])).toEqual(drawSchedule(new Prng(t.seed), report.nemeses, 3, 3000, 1000).map((f) => [f.kind, f.atMs, f.durationMs]));
    }
    const lin = report.violations.filter((v) => v.kind === 'linearizability' && v.key === 'fabricated');
    expect(lin.map((v) => [v.trial, v.seed, v.reproduce])).toEqual([[0, 4242, 'ftvm chaos --seed 4242 --trials 1 --hosts 3 --arbiter file --trial-seconds 3 --nemesis kill,pause,isolate-primary,isolate-backup,split,one-way,clock,arbiter-chmod,arbiter-remove --tcp-processes 2']]);
    expect(lin[0]!.ops!.map((o) => o.value)).toEqual(expect.arrayContaining(['a', 'b']));
    expect(lin[0]!.schedule).toEqual(report.trials[0]!.nemeses);
    // the TCP clients of kvresp ran too, through the published port, in most trials (a trial's faults may keep them out)
    expect(report.trials.every((t) => t.tcp !== null && t.tcp.ops.total <= t.ops.total)).toBe(true);
    expect(report.trials.filter((t) => t.tcp!.ops.ok > 0).length).toBeGreaterThan(TRIALS / 2);
    // the replicas' state digests were compared, in most trials (not in one that lost the VM early)
    const compared = report.trials.filter((t) => t.digests.countsCompared > 0).length;
    expect(compared).toBeGreaterThan(TRIALS / 2);
    // and the product itself broke nothing: any other violation is a fault found (replay it with its seed)
    expect(report.violations.filter((v) => !lin.includes(v)).map((v) => `${v.kind} in trial ${v.trial}: ${v.reproduce}`)).toEqual([]);
    // nothing of the run is left: no namespace, no marker
    expect(leftovers().filter((x) => !before.includes(x))).toEqual([]);
  }, 600_000);
});
