// `ftvm cluster up`: a local cluster on loopback with the embedded defaults.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalCluster } from '../cluster/local.ts';

export const CLUSTER_HELP = `usage: ftvm cluster up [--hosts N] [--log-dir DIR] [--json]

Starts N ftvm hosts (default 3) on loopback, sharing a file arbiter in a
temporary directory, one cluster secret and one API token, and waits until
they are linked to each other. Each host gets its own loopback address for the
VMs' published ports (h1 127.0.0.1, h2 127.0.0.2, ...), so every host serves a
published port as hosts of a real cluster do. Then it prints each host's REST
API URL, client port and that address, and the token (with --json: one JSON
line on stdout, {"token", "hosts": [{"id", "api", "client", "public", "log"}]}), and
runs until SIGINT or SIGTERM, when it stops every host it started.

Each host's log (what it did, and the lines its guests write on stdout and
stderr) goes to DIR/<id>.log: --log-dir DIR, kept after the cluster stops;
by default a directory in the cluster's temporary directory, removed with it.
`;

export async function clusterMain(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what !== 'up') {
    process[what === '-h' || what === '--help' ? 'stdout' : 'stderr'].write(CLUSTER_HELP);
    return what === '-h' || what === '--help' ? 0 : 2;
  }
  let values: { hosts?: string; json?: boolean; help?: boolean; 'log-dir'?: string };
  try {
    ({ values } = parseArgs({ args: rest, options: { hosts: { type: 'string' }, json: { type: 'boolean' }, 'log-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (e) {
    process.stderr.write(`ftvm cluster up: FTVM_ERR_USAGE: ${(e as Error).message}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(CLUSTER_HELP);
    return 0;
  }
  const n = values.hosts === undefined ? 3 : Number(values.hosts);
  if (!Number.isInteger(n) || n < 1 || n > 16) {
    process.stderr.write('ftvm cluster up: --hosts must be an integer from 1 to 16\n');
    return 2;
  }
  const c = new LocalCluster();
  const logDir = resolve(values['log-dir'] ?? join(c.dir, 'logs'));
  try {
    mkdirSync(logDir, { recursive: true });
  } catch (e) {
    await c.stop();
    process.stderr.write(`ftvm cluster up: FTVM_ERR_FILE: cannot make the log directory ${logDir}: ${(e as Error).message}\n`);
    return 1;
  }
  c.logDir = logDir;
  const progress = (l: string): void => void process.stderr.write(`${l}\n`);
  try {
    progress(`starting ${n} hosts...`);
    await Promise.all(Array.from({ length: n }, (_, i) => c.add(`h${i + 1}`)));
    progress('linking them...');
    await c.linked();
    const hosts = [...c.hosts.values()].map((h) => ({ id: h.id, api: h.api, client: h.client, public: h.public, log: join(logDir, `${h.id}.log`) })).sort((a, b) => (a.id < b.id ? -1 : 1));
    if (values.json) process.stdout.write(`${JSON.stringify({ token: c.token, hosts })}\n`);
    else {
      for (const h of hosts) process.stdout.write(`${h.id}  api ${h.api}  client ${h.client}  published ports at ${h.public}  log ${h.log}\n`);
      process.stdout.write(`token ${c.token}\n`);
      process.stdout.write(`status page ${hosts[0]!.api}/ui#token=${c.token}\n`);
    }
    progress('up; SIGINT or SIGTERM stops every host');
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    return 0;
  } finally {
    await c.stop();
  }
}
