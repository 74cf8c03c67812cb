// `ftvm cluster up`: a local cluster on loopback with the embedded defaults.

import { join, resolve } from 'node:path';
import { LocalCluster } from '../cluster/local.ts';
import { CLUSTER_HOSTS_MAX, CLUSTER_UP, intOption, parseCommand, usageLine, type OptionValues } from './commands.ts';
import { fileError, usageError } from './errors.ts';
import { keepWritingOnErrors } from './host-output.ts';
import { makeDirs } from '../dirs.ts';

/** `ftvm cluster up --help`, from the command table. */
export const CLUSTER_HELP = CLUSTER_UP.help;

/**
 * `ftvm cluster up ARGS`: runs a local cluster until SIGINT or SIGTERM, then
 * exit status 0. A wrong command line is one line "ftvm cluster up:
 * FTVM_ERR_USAGE: message" (exit status 2); a log directory it cannot make,
 * "ftvm cluster up: FTVM_ERR_FILE_ACCESS: ..." (or the file code that says why) and a host that would not start or
 * link, "ftvm cluster up: FTVM_ERR_X: ...", after stopping every host it
 * started (exit status 1).
 */
export async function clusterMain(argv: string[]): Promise<number> {
  // A long-running command: a reader of its output that goes away (EPIPE) or a full disk must not end it.
  keepWritingOnErrors();
  const [what, ...rest] = argv;
  if (what === '-h' || what === '--help') {
    process.stdout.write(CLUSTER_UP.help);
    return 0;
  }
  let values: OptionValues<typeof CLUSTER_UP.options>;
  let n: number;
  try {
    if (what !== 'up') throw usageError(`${what === undefined ? 'a sub-command is required' : `unknown sub-command "${what}"`}: ftvm cluster up (see ftvm cluster up --help)`);
    const parsed = parseCommand(CLUSTER_UP, rest);
    if (parsed.help) {
      process.stdout.write(CLUSTER_UP.help);
      return 0;
    }
    values = parsed.values;
    n = intOption('--hosts', values.hosts, 1, CLUSTER_HOSTS_MAX) ?? 3;
  } catch (e) {
    const { line, status } = usageLine(what === 'up' ? 'cluster up' : 'cluster', e);
    process.stderr.write(`${line}\n`);
    return status;
  }
  const c = new LocalCluster();
  const logDir = resolve(values['log-dir'] ?? join(c.dir, 'logs'));
  try {
    makeDirs(logDir);
  } catch (e) {
    await c.stop();
    const f = fileError(e, '--log-dir', logDir, 'create');
    process.stderr.write(`ftvm cluster up: ${f.code}: ${f.message}\n`);
    return 1;
  }
  c.logDir = logDir;
  const progress = (l: string): void => void process.stderr.write(`${l}\n`);
  try {
    progress(`starting ${n} host${n === 1 ? '' : 's'}...`);
    await Promise.all(Array.from({ length: n }, (_, i) => c.add(`h${i + 1}`)));
    progress('linking them...');
    await c.linked();
    const hosts = [...c.hosts.values()].map((h) => ({ id: h.id, pid: h.proc.pid ?? null, api: h.api, client: h.client, public: h.public, log: join(logDir, `${h.id}.log`) })).sort((a, b) => (a.id < b.id ? -1 : 1));
    if (values.json) process.stdout.write(`${JSON.stringify({ token: c.token, hosts })}\n`);
    else {
      for (const h of hosts) process.stdout.write(`${h.id}  pid ${h.pid}  api ${h.api}  client ${h.client}  published ports at ${h.public}  log ${h.log}\n`);
      process.stdout.write(`token ${c.token}\n`);
      process.stdout.write(`status page ${hosts[0]!.api}/ui#token=${c.token}\n`);
    }
    // a host that dies (kill -9 in a test of one's own) is said, and the others go on
    let stopping = false;
    for (const h of c.hosts.values()) {
      void h.exited.then(() => {
        if (!stopping) progress(`host ${h.id} (pid ${h.proc.pid}) exited (${h.proc.signalCode ?? `status ${h.proc.exitCode}`}); the others go on`);
      });
    }
    progress('up; SIGINT or SIGTERM stops every host');
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    stopping = true;
    return 0;
  } catch (e) {
    // a host that would not start or link: one line, after every host it started is stopped (finally)
    const { line, status } = usageLine('cluster up', e);
    process.stderr.write(`${line.replace(/^ftvm: /, 'ftvm cluster up: ')}\n`);
    return status;
  } finally {
    await c.stop();
  }
}
