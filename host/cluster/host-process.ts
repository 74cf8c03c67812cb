// One `ftvm host` process started by a tool (a local cluster on loopback, the
// chaos campaign's cluster in network namespaces): spawned, its log kept, and
// waited for until it prints its ready line. The command may be wrapped
// (`ip netns exec NS ...`, `unshare -T ...`): whatever comes before node runs
// it and must exec or fork it with the same stdout and stderr.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST_LOG_LINE_CHARS_MAX, HOST_LOG_LINES_MAX, HOST_READY_MS } from '../limits.ts';

/** The `ftvm` entry (host/cli/ftvm.mjs) a host process runs. */
export const FTVM_ENTRY = fileURLToPath(new URL('../cli/ftvm.mjs', import.meta.url));

/** How long a host may take to print its ready line (ms; host/limits.ts). */
export { HOST_READY_MS };

/** A started host process, as its ready line described it. */
export interface TestHost {
  id: string;
  proc: ChildProcess;
  peer: string;
  client: string;
  /** the REST API's base URL */
  api: string;
  /** the IP address its published ports listen on */
  public: string;
  /** everything it wrote to stderr (its last HOST_LOG_LINES_MAX lines) */
  log: string[];
  exited: Promise<void>;
}

/** What to start: `ftvm host --id ID ARGS`, behind `wrap`, with `env` joined to ours. */
export interface HostSpawn {
  id: string;
  /** the words after `ftvm host --id ID` */
  args: string[];
  /** words before node (a command that execs or forks it): `ip netns exec NS` */
  wrap?: string[];
  /** words for node before the script (`--cpu-prof`) */
  nodeArgs?: string[];
  env?: Record<string, string>;
  /** a directory (it must exist) where the whole log goes, as <id>.log, appended to; null: none */
  logDir?: string | null;
  /** in a process group of its own, so that a terminal's Ctrl-C (SIGINT to the foreground group) reaches only the tool, which stops it */
  detached?: boolean;
}

/**
 * Starts a host and waits (at most HOST_READY_MS) for its ready line on
 * stdout. Rejects with the host's log when it exits first or does not get
 * ready in time (then it is killed).
 */
export async function spawnHost(s: HostSpawn): Promise<TestHost> {
  const argv = [process.execPath, ...(s.nodeArgs ?? []), FTVM_ENTRY, 'host', '--id', s.id, ...s.args];
  const [cmd, ...rest] = [...(s.wrap ?? []), ...argv];
  const proc = spawn(cmd!, rest, { env: { ...process.env, ...s.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: s.detached ?? false });
  // the host's log: its last HOST_LOG_LINES_MAX lines kept here, and all of it in a file when logDir is set
  const log: string[] = [];
  const file = s.logDir ? createWriteStream(join(s.logDir, `${s.id}.log`), { flags: 'a' }) : null;
  file?.on('error', () => {});
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    file?.write(d);
    for (const l of d.split('\n')) if (l) log.push(l.length > HOST_LOG_LINE_CHARS_MAX ? `${l.slice(0, HOST_LOG_LINE_CHARS_MAX)}…` : l);
    if (log.length > HOST_LOG_LINES_MAX) log.splice(0, log.length - HOST_LOG_LINES_MAX / 2);
  });
  proc.once('exit', () => file?.end());
  proc.once('error', (e) => log.push(`cannot start ${cmd}: ${e.message}`));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const ready = await new Promise<{ peer: string; client: string; api: string; public: string }>((resolve, reject) => {
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`host ${s.id} not ready within ${HOST_READY_MS / 1000} s:\n${log.join('\n')}`));
    }, HOST_READY_MS);
    let buf = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const line = buf.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(t);
        resolve(JSON.parse(line) as { peer: string; client: string; api: string; public: string });
      }
    });
    void exited.then(() => {
      clearTimeout(t);
      reject(new Error(`host ${s.id} exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${log.join('\n')}`));
    });
  });
  return { id: s.id, proc, peer: ready.peer, client: ready.client, api: ready.api, public: ready.public, log, exited };
}
