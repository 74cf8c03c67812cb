// A cluster of `ftvm host` processes, each in its own Linux network
// namespace, for the chaos campaign: a partition is a real link cut, so hosts
// and clients really lose packets (no proxy in between).
//
// Layout of one run (run name "c<B>", B the run's byte, 1..250):
//
//   root namespace                      namespace ftvm-cB-h1   (10.B.0.1)
//   bridge ftvmbB 10.B.0.254/24 ──veth fvB-h1 ═══ eth0 ── ftvm host --bind 10.B.0.1
//     (clients, etcd, the campaign)  ──veth fvB-h2 ═══ eth0 ── ftvm-cB-h2 (10.B.0.2) ...
//
// Hosts run as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
// (setpriv), so a directory made unreadable (chmod 000) is unreadable to them
// as it would be to a service user. A host may run in a time namespace
// (unshare -T) whose monotonic and boot clocks are offset by some seconds;
// CLOCK_REALTIME cannot be offset by a namespace.
//
// Faults the network takes (nemesis.ts chooses them): a host's link set down
// (it loses everything: peers, clients, an etcd arbiter; a file arbiter is a
// shared directory and stays reachable), and a blackhole route in a host's
// namespace to one peer's address (its packets to that peer are dropped, so
// TCP between them breaks both ways: a one-way partition as the kernel sees it).
// There is no iptables, nft or netem on the machines this was built on.
//
// Bookkeeping: a marker file /run/ftvm-chaos/cB.json (its pid, namespaces,
// links, bridge, directories, etcd pid) is written before anything is made;
// destroy() removes everything it names, also from a SIGINT handler, and a new
// run first sweeps the leftovers of runs whose process is gone (or a zombie). The marker is
// created exclusively, so two runs never share a byte.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FtvmError } from '../errors.ts';
import { spawnHost, type TestHost } from '../cluster/host-process.ts';
import { LocalCluster } from '../cluster/local.ts';
import { CHAOS_HOSTS_MAX } from '../cli/commands.ts';
import { CHAOS_DIGEST_EVERY_COUNTS, CHAOS_ETCD_READY_MS as ETCD_READY_MS, CHAOS_STRAGGLERS_WAIT_MS as STRAGGLERS_WAIT_MS } from '../limits.ts';
import { makeDirs } from '../dirs.ts';

/** Where each run's marker file lives (a tmpfs, cleared at boot). */
export const CHAOS_STATE_DIR = '/run/ftvm-chaos';
/** The ports every host listens on, each at its own address: log channel, client port, REST API. */
export const CHAOS_PEER_PORT = 7100;
export const CHAOS_CLIENT_PORT = 7101;
export const CHAOS_API_PORT = 7102;
/** The TCP port the campaign's kvresp VM is published on, on every host's address. */
export const CHAOS_TCP_PORT = 7200;
/** How long etcd may take to serve (ms; host/limits.ts). */
export { ETCD_READY_MS };

/** What a run's marker file holds. */
interface Marker {
  pid: number;
  /** the process's start time (clock ticks after boot), so a pid used again by another process is not taken for the run */
  start?: number;
  run: string;
  byte: number;
  bridge: string;
  namespaces: string[];
  links: string[];
  dirs: string[];
  etcdPid: number | null;
}

/** Runs `ip ARGS`; FTVM_ERR_INTERNAL with ip's own words when it fails. */
export function ip(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new FtvmError('FTVM_ERR_INTERNAL', `ip ${args.join(' ')}: ${(err.stderr || err.message).trim()}`);
  }
}

/** `ip ARGS`, its failure ignored (for teardown, where a part may be gone already). */
function ipQuiet(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
}

/**
 * Process `pid`'s state letter and start time (clock ticks after boot), from
 * /proc/PID/stat (proc(5)); null when there is no such process.
 */
function procStat(pid: number): { state: string; start: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and parentheses: the fields after it follow the last ")"
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0]!, start: Number(rest[19]) };
  } catch {
    return null;
  }
}

/** Whether the run that wrote a marker still runs: its pid exists, is not a zombie, and started when the marker says. */
function runAlive(m: Pick<Marker, 'pid' | 'start'>): boolean {
  const s = procStat(m.pid);
  return s !== null && s.state !== 'Z' && (m.start === undefined || s.start === m.start);
}

/** Refuses to go on without root: FTVM_ERR_PRIVILEGE. */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new FtvmError('FTVM_ERR_PRIVILEGE', `${what} makes network namespaces, links and bridges: it must run as root (uid 0)`);
}

/** Kills every process in namespace `ns` (SIGKILL), then deletes it. */
function deleteNamespace(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const p of pids.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  } catch {
    /* no such namespace */
  }
  ipQuiet(['netns', 'del', ns]);
}

/** Removes what a marker names: its processes, namespaces, links, bridge, directories, and the marker. */
function removeMarked(m: Marker, file: string): void {
  if (m.etcdPid !== null && procStat(m.etcdPid) !== null) {
    // only an etcd: a pid that came back for another program is left alone
    const cmd = (() => {
      try {
        return readFileSync(`/proc/${m.etcdPid}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    })();
    if (cmd.includes('etcd')) process.kill(m.etcdPid, 'SIGKILL');
  }
  for (const ns of m.namespaces) deleteNamespace(ns);
  for (const l of m.links) ipQuiet(['link', 'del', l]);
  ipQuiet(['link', 'del', m.bridge]);
  for (const d of m.dirs) rmSync(d, { recursive: true, force: true });
  rmSync(file, { force: true });
}

/**
 * Removes the leftovers of runs whose process is dead (their marker files);
 * returns the runs swept.
 */
export function sweepLeftovers(): string[] {
  if (!existsSync(CHAOS_STATE_DIR)) return [];
  const swept: string[] = [];
  for (const f of readdirSync(CHAOS_STATE_DIR)) {
    if (!f.endsWith('.json')) continue;
    const file = join(CHAOS_STATE_DIR, f);
    let m: Marker;
    try {
      m = JSON.parse(readFileSync(file, 'utf8')) as Marker;
    } catch {
      continue; // being written by a live run
    }
    if (runAlive(m)) continue;
    removeMarked(m, file);
    swept.push(m.run);
  }
  return swept;
}

/**
 * The network of one run: a bridge in the root namespace and one namespace
 * per host, veth-linked to it. Every method is synchronous (each is one or a
 * few `ip` commands of a millisecond or so), so it can run from an exit
 * handler.
 */
export class ChaosNet {
  readonly run: string;
  readonly byte: number;
  readonly bridge: string;
  /** the root namespace's address on the bridge (clients and etcd use it) */
  readonly rootAddr: string;
  /** a directory for this run (arbiter, etcd data, hosts' data and logs), removed by destroy() */
  readonly dir: string;
  private readonly marker: Marker;
  private readonly markerFile: string;
  /** faults in place, counted: two overlapping faults that cut the same link are undone by the second undo */
  private readonly blackholes = new Map<string, number>();
  private readonly down = new Map<string, number>();
  private destroyed = false;

  /**
   * Makes the network for hosts `ids` (at most CHAOS_HOSTS_MAX; host i gets
   * 10.B.0.(i+1)). Sweeps dead runs first. FTVM_ERR_PRIVILEGE without root;
   * FTVM_ERR_INTERNAL when an `ip` command fails (what was made is removed).
   */
  constructor(readonly ids: readonly string[]) {
    requireRoot('ftvm chaos');
    if (ids.length < 1 || ids.length > CHAOS_HOSTS_MAX) throw new FtvmError('FTVM_ERR_USAGE', `a chaos cluster has 1 to ${CHAOS_HOSTS_MAX} hosts, not ${ids.length}`);
    makeDirs(CHAOS_STATE_DIR);
    sweepLeftovers();
    const taken = ip(['-o', '-4', 'addr']);
    let claimed: { byte: number; file: string } | null = null;
    for (let i = 0; i < 250 && !claimed; i++) {
      const byte = 1 + ((process.pid + i * 37) % 250);
      if (new RegExp(`\\b10\\.${byte}\\.`).test(taken)) continue;
      const file = join(CHAOS_STATE_DIR, `c${byte}.json`);
      try {
        writeFileSync(file, '', { flag: 'wx' });
        claimed = { byte, file };
      } catch {
        /* another run has it */
      }
    }
    if (!claimed) throw new FtvmError('FTVM_ERR_UNAVAILABLE', `no free run number under ${CHAOS_STATE_DIR} (250 runs, or 10.1-250.0.0/16 all in use)`);
    this.byte = claimed.byte;
    this.markerFile = claimed.file;
    this.run = `c${this.byte}`;
    this.bridge = `ftvmb${this.byte}`;
    this.rootAddr = `10.${this.byte}.0.254`;
    this.dir = mkdtempSync(join(tmpdir(), `ftvm-chaos-${this.run}-`));
    this.marker = {
      pid: process.pid,
      start: procStat(process.pid)?.start,
      run: this.run,
      byte: this.byte,
      bridge: this.bridge,
      namespaces: ids.map((id) => this.ns(id)),
      links: ids.map((id) => this.dev(id)),
      dirs: [this.dir],
      etcdPid: null,
    };
    this.saveMarker();
    try {
      ip(['link', 'add', this.bridge, 'type', 'bridge']);
      ip(['addr', 'add', `${this.rootAddr}/24`, 'dev', this.bridge]);
      ip(['link', 'set', this.bridge, 'up']);
      ids.forEach((id) => {
        const ns = this.ns(id);
        const peerTmp = `fp${this.byte}-${id}`.slice(0, 15);
        ip(['netns', 'add', ns]);
        ip(['link', 'add', this.dev(id), 'type', 'veth', 'peer', 'name', peerTmp]);
        ip(['link', 'set', peerTmp, 'netns', ns]);
        ip(['-n', ns, 'link', 'set', peerTmp, 'name', 'eth0']);
        ip(['-n', ns, 'addr', 'add', `${this.addr(id)}/24`, 'dev', 'eth0']);
        ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
        ip(['-n', ns, 'link', 'set', 'lo', 'up']);
        ip(['link', 'set', this.dev(id), 'master', this.bridge]);
        ip(['link', 'set', this.dev(id), 'up']);
      });
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  private saveMarker(): void {
    writeFileSync(this.markerFile, JSON.stringify(this.marker));
  }

  /** Records etcd's pid in the marker (null: none running), so a sweep can kill it. */
  noteEtcd(pid: number | null): void {
    this.marker.etcdPid = pid;
    this.saveMarker();
  }

  /** The namespace of host `id`: ftvm-<run>-<id>. */
  ns(id: string): string {
    return `ftvm-${this.run}-${id}`;
  }

  /**
   * Kills (SIGKILL) every process left in the hosts' namespaces, waits (at
   * most CHAOS_STRAGGLERS_WAIT_MS) until none is left, and returns how many there were: what a
   * trial started and lost track of (a host whose start outlived a failed
   * set-up) must not hold the next trial's ports. Synchronous, as the other
   * methods.
   */
  killStragglers(): number {
    const left = (): number[] =>
      this.ids.flatMap((id) => {
        try {
          return execFileSync('ip', ['netns', 'pids', this.ns(id)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean).map(Number);
        } catch {
          return [];
        }
      });
    const found = left();
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let pids = found, waited = 0; pids.length && waited < STRAGGLERS_WAIT_MS; pids = left(), waited += 50) {
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      Atomics.wait(pause, 0, 0, 50);
    }
    return found.length;
  }

  /** The root side of host `id`'s veth (15 characters at most, a Linux limit). */
  dev(id: string): string {
    return `fv${this.byte}-${id}`.slice(0, 15);
  }

  /** Host `id`'s address: 10.B.0.(its index + 1). */
  addr(id: string): string {
    const i = this.ids.indexOf(id);
    if (i < 0) throw new Error(`no host ${id} in run ${this.run}`);
    return `10.${this.byte}.0.${i + 1}`;
  }

  /** Cuts host `id` off: its link down (peers, clients and etcd lose it; a file arbiter does not). */
  isolate(id: string): void {
    if (!this.down.has(id)) ip(['link', 'set', this.dev(id), 'down']);
    this.down.set(id, (this.down.get(id) ?? 0) + 1);
  }

  /** Drops what host `from` sends to host `to` (a blackhole route in `from`'s namespace); TCP between them breaks both ways. */
  blackhole(from: string, to: string): void {
    if (from === to) return;
    const key = `${from}>${to}`;
    if (!this.blackholes.has(key)) ip(['-n', this.ns(from), 'route', 'add', 'blackhole', `${this.addr(to)}/32`]);
    this.blackholes.set(key, (this.blackholes.get(key) ?? 0) + 1);
  }

  /** Host `id`'s link up again (undoes isolate). */
  rejoin(id: string): void {
    const n = this.down.get(id);
    if (n === undefined) return;
    if (n > 1) return void this.down.set(id, n - 1);
    this.down.delete(id);
    ipQuiet(['link', 'set', this.dev(id), 'up']);
  }

  /** Deletes the blackhole route of blackhole(from, to). */
  unblackhole(from: string, to: string): void {
    const key = `${from}>${to}`;
    const n = this.blackholes.get(key);
    if (n === undefined) return;
    if (n > 1) return void this.blackholes.set(key, n - 1);
    this.blackholes.delete(key);
    ipQuiet(['-n', this.ns(from), 'route', 'del', 'blackhole', `${this.addr(to)}/32`]);
  }

  /** Every link up again and every blackhole route deleted. */
  heal(): void {
    for (const id of this.down.keys()) ipQuiet(['link', 'set', this.dev(id), 'up']);
    this.down.clear();
    for (const key of this.blackholes.keys()) {
      const [from, to] = key.split('>') as [string, string];
      ipQuiet(['-n', this.ns(from), 'route', 'del', 'blackhole', `${this.addr(to)}/32`]);
    }
    this.blackholes.clear();
  }

  /** Whether any fault of the network is in place. */
  get faulty(): boolean {
    return this.down.size > 0 || this.blackholes.size > 0;
  }

  /**
   * Removes everything of the run: the processes in its namespaces, the
   * namespaces, links, bridge, its directory and its marker. Idempotent.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    removeMarked(this.marker, this.markerFile);
  }
}

/** Options of a NetnsCluster. */
export interface NetnsClusterOptions {
  /** 'file': a directory every host reads (default); 'etcd': an etcd in the root namespace */
  arbiter: 'file' | 'etcd';
  /** the hosts' failure timeout and heartbeat period (ms) */
  failMs: number;
  heartbeatMs: number;
  /** where each host's whole log goes (<id>.log, appended), or null */
  logDir: string | null;
}

/**
 * The hosts of one trial, in the namespaces of a ChaosNet: a LocalCluster
 * whose hosts bind their namespace's address, with an arbiter of their own
 * (a fresh file arbiter directory, or a fresh etcd data directory).
 */
export class NetnsCluster extends LocalCluster {
  /** the file arbiter's directory (file arbiter only) */
  readonly arbiterDir: string;
  private etcd: ChildProcess | null = null;
  private readonly etcdDir: string;
  private readonly etcdUrl: string;
  private readonly etcdPeerUrl: string;
  /** every host process started, restarts included, in order */
  readonly incarnations: TestHost[] = [];
  /** the host processes this cluster killed on purpose (kill -9) */
  readonly killed = new Set<TestHost>();
  /** the clock offset (s) each host runs under (0: the root namespace's clocks) */
  readonly clockOffsets = new Map<string, number>();

  constructor(
    readonly net: ChaosNet,
    /** a name for this trial's files, unique within the run */
    readonly trial: string,
    readonly opts: NetnsClusterOptions,
    /** the etcd arbiter's client and peer ports (free ones), when opts.arbiter is 'etcd' */
    etcdPorts: [number, number] = [0, 0],
  ) {
    const base = join(net.dir, trial);
    const arbiterDir = join(base, 'arbiter');
    const etcdUrl = `http://${net.rootAddr}:${etcdPorts[0]}`;
    super(['--fail-ms', String(opts.failMs), '--heartbeat-ms', String(opts.heartbeatMs), '--digest-every', String(CHAOS_DIGEST_EVERY_COUNTS)], opts.arbiter === 'etcd' ? ['--etcd', etcdUrl] : ['--dir', arbiterDir]);
    makeDirs(arbiterDir);
    this.arbiterDir = arbiterDir;
    this.etcdDir = join(base, 'etcd');
    this.etcdUrl = etcdUrl;
    this.etcdPeerUrl = `http://127.0.0.1:${etcdPorts[1]}`;
    this.logDir = opts.logDir;
  }

  /**
   * Starts host `id` in its namespace (in a time namespace when
   * `clockOffsetS` is not 0) and waits until it is ready; replaces an earlier
   * host of that id (restart under its id).
   */
  override async add(id: string, args: string[] = [], spawnOpts: { nodeArgs?: string[]; env?: Record<string, string>; clockOffsetS?: number } = {}): Promise<TestHost> {
    const off = spawnOpts.clockOffsetS ?? 0;
    const time = off ? ['unshare', '-T', '--fork', '--kill-child', `--monotonic=${off}`, `--boottime=${off}`] : [];
    const addr = this.net.addr(id);
    const h = await spawnHost({
      id,
      wrap: ['ip', 'netns', 'exec', this.net.ns(id), ...time, 'setpriv', '--inh-caps=-dac_override,-dac_read_search', '--bounding-set=-dac_override,-dac_read_search'],
      // fixed ports on its own address: a host restarted under its id is where it was, as a rebooted machine is
      args: [...this.arbiterArgs!, '--bind', addr, '--public-address', addr, '--peer-port', String(CHAOS_PEER_PORT), '--client-port', String(CHAOS_CLIENT_PORT), '--api-port', String(CHAOS_API_PORT), '--data-dir', join(this.net.dir, 'data', id), ...this.extraArgs, ...args],
      nodeArgs: spawnOpts.nodeArgs,
      env: { ...spawnOpts.env, FTVM_SECRET: this.secret, FTVM_TOKEN: this.token },
      logDir: this.logDir,
      detached: true,
    });
    this.clockOffsets.set(id, off);
    this.hosts.set(id, h);
    this.incarnations.push(h);
    return h;
  }

  private readonly starting = new Map<string, Promise<TestHost>>();

  /**
   * Starts host `id` again under its id (with clock offset `clockOffsetS`,
   * default the one it ran with) unless it runs or is being started already:
   * two faults that both killed it restart it once.
   */
  async restart(id: string, clockOffsetS = this.clockOffsets.get(id) ?? 0): Promise<void> {
    const under = this.starting.get(id);
    if (under) return void (await under.catch(() => undefined));
    if (this.nodePid(id) !== null) return;
    const p = this.add(id, [], { clockOffsetS });
    this.starting.set(id, p);
    try {
      await p;
    } finally {
      this.starting.delete(id);
    }
  }

  /**
   * The pid of host `id`'s node process (the spawned process, or the child of
   * `unshare` for a host in a time namespace); null once it exited.
   */
  nodePid(id: string): number | null {
    const h = this.host(id);
    if (h.proc.exitCode !== null || h.proc.signalCode !== null || h.proc.pid === undefined) return null;
    if (!this.clockOffsets.get(id)) return h.proc.pid;
    try {
      const kids = readFileSync(`/proc/${h.proc.pid}/task/${h.proc.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      return kids.length ? Number(kids[0]) : null;
    } catch {
      return null;
    }
  }

  /** Sends `signal` to host `id`'s node process itself; false when it is not running. */
  signal(id: string, signal: NodeJS.Signals): boolean {
    const pid = this.nodePid(id);
    if (pid === null) return false;
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** kill -9 of host `id`'s node process, and waits for it to be gone. */
  override async kill(id: string): Promise<void> {
    const h = this.host(id);
    this.killed.add(h);
    if (!this.signal(id, 'SIGKILL')) h.proc.kill('SIGKILL');
    await h.exited;
  }

  /** Starts (or restarts, on the same data directory) the etcd arbiter in the root namespace; waits until it serves. */
  async startEtcd(): Promise<void> {
    if (this.opts.arbiter !== 'etcd') return;
    const peer = this.etcdPeerUrl;
    const child = spawn(
      'etcd',
      [
        `--name=${this.net.run}`,
        `--data-dir=${this.etcdDir}`,
        `--listen-client-urls=${this.etcdUrl}`,
        `--advertise-client-urls=${this.etcdUrl}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=${this.net.run}=${peer}`,
      ],
      // its own process group, as the hosts': a Ctrl-C reaches only the campaign, which heals and stops them
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
    child.once('error', (e) => (log += `\ncannot run etcd: ${e.message}`));
    this.etcd = child;
    this.net.noteEtcd(child.pid ?? null);
    const t0 = Date.now();
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) throw new FtvmError('FTVM_ERR_ARBITER', `etcd exited before it served:\n${log}`);
      try {
        const r = await fetch(`${this.etcdUrl}/health`, { signal: AbortSignal.timeout(500) });
        if (r.ok) return;
      } catch {
        /* not yet */
      }
      if (Date.now() - t0 > ETCD_READY_MS) {
        child.kill('SIGKILL');
        throw new FtvmError('FTVM_ERR_ARBITER', `etcd did not serve at ${this.etcdUrl} within ${ETCD_READY_MS} ms:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** kill -9 of the etcd arbiter; waits for it to be gone. */
  async killEtcd(): Promise<void> {
    const e = this.etcd;
    if (!e || e.exitCode !== null || e.signalCode !== null) return;
    const gone = new Promise((r) => e.once('exit', r));
    e.kill('SIGKILL');
    await gone;
    this.net.noteEtcd(null);
  }

  /** Whether the etcd arbiter runs. */
  get etcdRunning(): boolean {
    return this.etcd !== null && this.etcd.exitCode === null && this.etcd.signalCode === null;
  }

  /** Kills every host (SIGCONT first for a paused one is not needed: SIGKILL ends it) and etcd; removes the trial's files. */
  override async stop(): Promise<void> {
    for (const h of this.hosts.values()) this.killed.add(h);
    await super.stop();
    await this.killEtcd();
    rmSync(join(this.net.dir, this.trial), { recursive: true, force: true });
  }
}
