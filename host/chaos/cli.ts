// `ftvm chaos`: the command line of the campaign (campaign.ts): its flags
// checked (commands.ts CHAOS), root checked before anything is made, a line
// per trial and a summary (or one JSON document), SIGINT ending the trial
// under way and removing everything the run made.

import { constants } from 'node:os';
import { CHAOS, CHAOS_HOSTS_MAX, intOption, parseCommand, usageLine } from '../cli/commands.ts';
import { usageError } from '../cli/errors.ts';
import { CHAOS_SEED_DRAWN_BOUND, CHAOS_SEED_MAX, CHAOS_TCP_PROCESSES_MAX, CHAOS_TRIALS_MAX, CHAOS_TRIAL_SECONDS_MAX } from '../limits.ts';
import { hostStderr, hostStdout, keepWritingOnErrors } from '../cli/host-output.ts';
import { CHAOS_FAIL_MS, CHAOS_HEARTBEAT_MS, CHAOS_KEYS, CHAOS_PROCESSES, CHAOS_TCP_PROCESSES, runCampaign, TRIAL_HEADER, type CampaignReport } from './campaign.ts';
import { requireRoot } from './netns.ts';
import { parseNemeses } from './nemesis.ts';

/** Trials in one campaign, and seconds of one trial, at most (host/limits.ts). */
export { CHAOS_TRIALS_MAX, CHAOS_TRIAL_SECONDS_MAX };

/** The largest seed a trial may use, and the bound of a drawn seed (host/limits.ts). */
export { CHAOS_SEED_MAX };
const DRAWN_SEED_BOUND = CHAOS_SEED_DRAWN_BOUND;

/**
 * The campaign's seed: `seedText` (--seed, decimal) or, when absent, one
 * drawn below 2^31 with `random` (a float in [0, 1)). FTVM_ERR_USAGE for a
 * seed outside 0..CHAOS_SEED_MAX, or one whose last trial's seed
 * (seed + trials - 1) would pass CHAOS_SEED_MAX.
 */
export function campaignSeed(seedText: string | undefined, trials: number, random: () => number = Math.random): number {
  const seed = intOption('--seed', seedText, 0, CHAOS_SEED_MAX) ?? Math.floor(random() * DRAWN_SEED_BOUND);
  if (seed + trials - 1 > CHAOS_SEED_MAX) throw usageError(`--seed ${seed} with ${trials} trials: the last trial's seed would be ${seed + trials - 1}, past ${CHAOS_SEED_MAX} (see ftvm chaos --help)`);
  return seed;
}

/**
 * The exit status of a campaign that ran: stopped by `signal` (SIGINT,
 * SIGTERM; report.interrupted) it is the shell's 128 + the signal's number
 * (130, 143) whatever the trials found, as every ftvm command stopped by a
 * signal ends (README, exit statuses): the summary and the report still list
 * the violations found. Else 1 with a violation or a trial that could not be
 * set up, 0 otherwise.
 */
export function campaignExitStatus(report: Pick<CampaignReport, 'interrupted' | 'violations' | 'trials'>, signal: NodeJS.Signals | null): number {
  if (report.interrupted) return 128 + constants.signals[signal ?? 'SIGINT'];
  return report.violations.length || report.trials.some((t) => t.setupError) ? 1 : 0;
}

/**
 * `ftvm chaos ARGS`: runs a campaign. Exit status 0 without violations, 1
 * with (or with a trial that could not be set up, or FTVM_ERR_PRIVILEGE
 * without root), 2 for a wrong command line, 130 (SIGINT) or 143 (SIGTERM)
 * when a signal stopped it (campaignExitStatus); each failure is one line
 * "ftvm chaos: FTVM_ERR_X: message".
 */
export async function chaosMain(argv: string[]): Promise<number> {
  keepWritingOnErrors();
  try {
    const { values, help } = parseCommand(CHAOS, argv);
    if (help) {
      hostStdout.write(CHAOS.help);
      return 0;
    }
    const arbiter = values.arbiter ?? 'file';
    if (arbiter !== 'file' && arbiter !== 'etcd') throw usageError(`--arbiter is file or etcd, not "${arbiter}" (see ftvm chaos --help)`);
    const nemeses = parseNemeses(values.nemesis, arbiter);
    const trials = intOption('--trials', values.trials, 1, CHAOS_TRIALS_MAX) ?? 10;
    const seed = campaignSeed(values.seed, trials);
    const hosts = intOption('--hosts', values.hosts, 2, CHAOS_HOSTS_MAX) ?? 3;
    const trialSeconds = intOption('--trial-seconds', values['trial-seconds'], 1, CHAOS_TRIAL_SECONDS_MAX) ?? 10;
    const tcpProcesses = intOption('--tcp-processes', values['tcp-processes'], 0, CHAOS_TCP_PROCESSES_MAX) ?? CHAOS_TCP_PROCESSES;
    requireRoot('ftvm chaos');
    const say = (l: string): void => void hostStderr.write(`${l}\n`);
    const stop = new AbortController();
    let stoppedBy: NodeJS.Signals | null = null;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stoppedBy) process.exit(128 + constants.signals[signal]); // a second one: the exit handler still removes the namespaces
      stoppedBy = signal;
      say('ftvm chaos: stopping after the trial under way is healed and checked (again: at once)');
      stop.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    say(`ftvm chaos: seed ${seed}, ${trials} trials of ${trialSeconds} s, ${hosts} hosts, ${arbiter} arbiter, nemeses ${nemeses.join(',')}`);
    if (!values.json) hostStdout.write(`${TRIAL_HEADER}\n`);
    let report: CampaignReport;
    try {
      report = await runCampaign({
        seed,
        trials,
        hosts,
        arbiter,
        trialSeconds,
        nemeses,
        processes: CHAOS_PROCESSES,
        keys: CHAOS_KEYS,
        tcpProcesses,
        failMs: CHAOS_FAIL_MS,
        heartbeatMs: CHAOS_HEARTBEAT_MS,
        logDir: values['log-dir'] ?? null,
        signal: stop.signal,
        progress: values.json ? say : (l) => void hostStdout.write(`${l}\n`),
      });
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
    if (values.json) hostStdout.write(`${JSON.stringify(report)}\n`);
    else hostStdout.write(summary(report));
    return campaignExitStatus(report, stoppedBy);
  } catch (e) {
    const { line, status } = usageLine('chaos', e);
    hostStderr.write(`${line.replace(/^ftvm: /, 'ftvm chaos: ')}\n`);
    return status;
  }
}

/** The summary after the table: counts, whether a signal cut the campaign short, each violation with its reproduction. Lines, each ending with a newline. */
export function summary(r: CampaignReport): string {
  const lines = [''];
  const notSetUp = r.trials.filter((t) => t.setupError).length;
  const unknown = r.trials.filter((t) => t.check.result === 'unknown').length;
  const ops = r.trials.reduce((n, t) => n + t.ops.total, 0);
  const tcpOps = r.trials.reduce((n, t) => n + (t.tcp?.ops.total ?? 0), 0);
  const digestCounts = r.trials.reduce((n, t) => n + t.digests.countsCompared, 0);
  lines.push(`${r.trials.length} trials in ${(r.ms / 1000).toFixed(0)} s (seed ${r.seed}): ${ops} operations (${tcpOps} of them by TCP clients), ${r.violations.length} violations, ${notSetUp} not set up, ${unknown} the checker could not decide in time, ${r.trials.filter((t) => t.vmLost).length} lost the VM, replicas' state digests compared at ${digestCounts} counts`);
  if (r.interrupted) lines.push(`interrupted: stopped after ${r.trials.length} of ${r.trialsAsked} trials`);
  for (const t of r.trials) {
    if (!t.violations.length) continue;
    lines.push(`trial ${t.trial} (seed ${t.seed}): ${t.violations.length} violations`);
    lines.push(`  faults: ${t.nemeses.map((f) => `${f.kind}${f.hosts.length ? `@${f.hosts.join('+')}` : ''} at ${f.startedMs ?? '-'} ms for ${f.durationMs} ms${f.note ? ` (${f.note})` : ''}`).join('; ')}`);
    lines.push(`  replay: ${t.violations[0]!.reproduce}`);
    for (const v of t.violations) {
      lines.push(`  ${v.kind}: ${v.detail}`);
      for (const o of v.ops ?? []) lines.push(`    op process ${o.process} ${o.f} ${o.key} ${JSON.stringify(o.value)} ${o.status} [${o.invokeMs}, ${o.completeMs ?? '-'}] ms`);
    }
  }
  for (const t of r.trials) if (t.setupError) lines.push(`  trial ${t.trial} (seed ${t.seed}) not set up: ${t.setupError.split('\n')[0]}`);
  return `${lines.join('\n')}\n`;
}
