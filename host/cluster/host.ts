// `ftvm host`: one host of a cluster. It runs replicas of VMs on worker
// threads, streams each primary's log to its backup over an authenticated TCP
// log channel, releases outputs by the Output Rule, watches its peers, takes
// over through the arbiter when a partner dies, re-creates lost backups
// from snapshots of the running primary, and moves a VM's replicas between
// hosts on request (live migration: migrateVm).
//
// Channels:
//   peer   TCP between hosts: heartbeats, log frames, acks, backups, forwarded
//          client messages and outputs (wire.ts; authenticated by HMAC).
//   client TCP from clients (wire.ts; each proves it knows the API token):
//          start/stop VMs, send messages
//          to a VM, receive its outputs (each with the VM's output sequence
//          number, so a client drops the duplicates a failover can cause).

import { createHash, randomBytes, randomUUID, type Hash } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import { EntryChecker, decodeFrame, type EntryPayloads } from '../log/format.ts';
import { INPUT_INBOX_BYTES_MAX, INPUT_INBOX_MAX } from '../runtime/nic.ts';
import { MeterPool } from './meter-pool.ts';
import { HASH_RE, ModuleStore, sha256Hex, shared, STORE_BYTES_MAX, STORE_COUNT_MAX, MODULE_BYTES_MAX_DEFAULT, type ModuleKind } from './module-store.ts';
import { ArbiterError, NAME_RE, STOPPED, type Arbiter, type HostRecord } from './arbiter.ts';
import { ConnIds } from './conn-ids.ts';
import { rememberCluster, rememberedCluster } from './cluster-memory.ts';
import { OutputRing, type RingSlice } from './output-ring.ts';
import { isStreamConn, STREAM_CONN_BIT, TcpIngress, type IngressStats } from './ingress.ts';
import { ReplicaHandle } from './replica-handle.ts';
import { snapshottable } from '../runtime/instance.ts';
import { INTERRUPT_NIC } from '../runtime/events.ts';
import { STREAMS_DONE_MAX } from '../limits.ts';
import { SIGNAL_SLOT_MAX, type FromReplica, type Output, type Snapshot } from '../runtime/replay/engine.ts';
import { FailureDetector } from '../ft/detector.ts';
import { EventLog, eventText, type HostEvent } from '../ft/events.ts';
import { joinOutputs, OutputRule } from '../ft/output-rule.ts';
import { LagMeter, nextThrottleUs } from '../ft/lag.ts';
import { assertTransition, type ReplicaState } from '../ft/replica-state.ts';
import { parsePeerMessage, type PeerMessage, type PeerMessageOf } from '../ft/messages.ts';
import { checkClientStart, checkSend, checkStart, checkVmOp, startEntryOf, VM_DIGEST_EVERY_COUNTS } from '../api/action.ts';
import { FtvmError, isErrorCode, type FtvmErrorCode } from '../errors.ts';
import { CLIENT_AUTH_FRAME_MAX, CLIENT_AUTH_MS, CLIENT_FRAME_MAX, ClientError, MODULE_CHUNK_BYTES, PEER_FRAME_MAX, drained, encodeMessage, mac, macOk, nonce, packValue, readMessages, resumeKey, send, type ClientErrorCode, type WireError, type WireMessage, unpackValue } from './wire.ts';
import { OTHER_CLUSTER_NOTES_MAX, SNAPSHOT_CHUNK_BYTES as SNAPSHOT_CHUNK, SNAPSHOT_QUEUED_BYTES_MAX as SNAPSHOT_QUEUED_MAX, SNAPSHOT_BYTES_MAX, SNAPSHOT_DEVICES_BYTES_MAX, SNAPSHOTS_IN_MAX, OFFER_TIMEOUT_MS, INCOMING_MODULES_MAX as INCOMING_MAX, INCOMING_IDLE_MS, INLINE_SHIP_BYTES_MAX, BACKUP_RETRY_MS, RETAIN_MAX, RETAIN_BYTES_MAX, SLOT_GONE_MS_MIN, INFO_EVERY_MS, API_CONN_IDLE_MS, ADMIN_TIMEOUT_MS, API_BOX_MAX, ADMIN_WAITS_MAX, API_BOX_BYTES_MAX, API_CONNECTIONS_MAX, BACKUP_BEHIND_ENTRIES_MAX, BUSY_HOLD_MS, BUSY_VMS_MAX, CLIENT_WRITE_BYTES_MAX, GUEST_LOG_BYTES_PER_SECOND as GUEST_LOG_BYTES_PER_S, HELD_BYTES_MAX, HELD_OUTPUTS_MAX, TOMBSTONES_MAX, RINGS_IN_MAX, START_FWD_TIMEOUT_MS, PLACING_MAX, LOOP_SECONDS_MAX, OUTPUT_READERS_MAX, OUTPUT_READS_MAX, MIGRATE_TIMEOUT_MS, MIGRATE_SWITCH_MS, checkLimits, OUTPUT_WAIT_MS_MAX, CLIENT_IDLE_MS, CLIENT_CONNS_MAX, CLIENT_CONNS_PER_ADDRESS_MAX, CONN_OWNERS_MAX, RESUME_VMS_MAX, CLIENT_SWEEP_MS, UNACKED_LOG_BYTES_MAX as UNACKED_LOG_MAX, VM_DIGESTS_KEPT_MAX } from '../limits.ts';
export { API_CONN_IDLE_MS, OUTPUT_WAIT_MS_MAX, CLIENT_IDLE_MS, CLIENT_CONNS_MAX, CLIENT_CONNS_PER_ADDRESS_MAX, UNACKED_LOG_MAX };

export interface HostOptions {
  id: string;
  /** the cluster secret every peer must prove it knows */
  secret: string;
  /**
   * the API token every client of the client port must prove it knows (the REST
   * API's bearer token; wire.ts draws the handshake). Default: a random one no
   * client knows, so the client port lets nobody in.
   */
  token?: string;
  /** an authenticated client-port connection silent this long is closed, in ms (default 60000; FtClient pings within a third of it) */
  clientIdleMs?: number;
  /** client-port connections open at once, authenticated or not (default 1024) */
  clientConnsMax?: number;
  /** client-port connections open at once from one remote address (default 256) */
  clientConnsPerAddressMax?: number;
  arbiter: Arbiter;
  /** address to listen on (default 127.0.0.1) */
  bind?: string;
  peerPort?: number;
  clientPort?: number;
  /** the peer address other hosts dial (default: the address listened on), e.g. behind a proxy or NAT */
  advertisePeer?: string;
  /** the IP address VMs' published ports listen on, and clients reach this host at (default: `bind`) */
  publicAddress?: string;
  /** heartbeat period (default 50 ms) */
  heartbeatMs?: number;
  /** a peer silent this long is dead (default 600 ms) */
  failMs?: number;
  /**
   * log the backup has not acknowledged, in bytes, at which the primary
   * stalls (default 32 MiB); an integer from 1 to 2^31 - 2 (the replica's
   * worker reads it from an Int32 slot), else the constructor throws
   * FTVM_ERR_USAGE
   */
  unackedLogMax?: number;
  /** the execution lag a backup may have before the primary is slowed (default 100 ms) */
  lagTargetMs?: number;
  /** where the host says what it does (default: nowhere) */
  log?: (line: string) => void;
  /**
   * where the host keeps its files: modules under <dataDir>/modules, the
   * cluster id it found at each arbiter in <dataDir>/clusters.json (default:
   * $FTVM_DATA_DIR/<id>, else $XDG_CACHE_HOME/ftvm/host-<id>, else ~/.cache/ftvm/host-<id>)
   */
  dataDir?: string;
  /** the largest module the host takes, uploaded or shipped, in bytes (default 128 MiB) */
  moduleBytesMax?: number;
  /** bytes of modules kept on disk, all together (default 2 GiB) */
  moduleStoreBytesMax?: number;
  /** modules kept on disk (default 256) */
  moduleStoreCountMax?: number;
  /** modules larger than 1 MiB metered at once (default 1; a small one never waits behind them) */
  meterJobsMax?: number;
  /**
   * the state-digest period written into the start entry of every VM whose
   * primary this host starts: a digest is logged at the first check point at
   * or past every multiple of this many counts, and the backup checks it
   * (default VM_DIGEST_EVERY_COUNTS, 10,000,000); an integer from 1 to
   * 2^53 - 1, else the constructor throws FTVM_ERR_USAGE
   */
  digestEveryCounts?: number;
}

/** The data directory of host `id` when none is given (see HostOptions.dataDir). */
export function defaultDataDir(id: string): string {
  if (process.env.FTVM_DATA_DIR) return join(process.env.FTVM_DATA_DIR, id);
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ftvm', `host-${id}`);
}

/** What a VM's primary's host last said of it (vminfo), when, and the boots (heartbeat `boot`) its replicas' hosts had then. */
interface SaidInfo {
  info: Omit<VmInfo, 'ageMs'>;
  /** performance.now() ms when it came */
  at: number;
  primaryBoot: string | undefined;
  backupBoot: string | undefined;
}

/** One connection on the client port, from accept to close. */
interface ClientLink {
  /** the remote IP address (the per-address cap counts by it) */
  address: string;
  /** it proved it knows the API token */
  authed: boolean;
  /** performance.now() of its accept or of its last frame, in ms */
  heardAt: number;
}

interface Link {
  id: string;
  addr: string;
  sock: Socket | null;
  ready: boolean;
  /** performance.now() ms when it last became ready */
  readyAt: number;
  nextDialAt: number;
}

/** A frame of log entries not yet acknowledged by the backup. */
interface PendingFrame {
  first: number;
  last: number;
  frame: Uint8Array;
}

interface Vm {
  name: string;
  gen: number;
  role: 'primary' | 'backup';
  module: Uint8Array;
  metered: Uint8Array;
  /** SHA-256 of `module` (the start entry's `module`) and of `metered`, hex */
  moduleHash: string;
  meteredHash: string;
  compiled: WebAssembly.Module;
  start: EntryPayloads['start'];
  /** the share of one core the live replica may compute, in percent */
  cpuPercent: number;
  /** the TCP ports every live host serves the VM on (ingress.ts) */
  publish: number[];
  /** per TCP connection through a published port: the offset in its outgoing stream after the last send seen in the log */
  outEnds: Map<number, number>;
  /**
   * the newest TCP connections through published ports whose input ended (the
   * log delivered their end-of-stream), oldest first, at most
   * STREAMS_DONE_MAX: the output offset of an older one is forgotten (streamEnded)
   */
  streamsEnded: Set<number>;
  /** stream input the worker delivered, to acknowledge to the ingress hosts once the backup has the log through `last` */
  /** the last log entry the live replica handed over */
  loggedSeq: number;
  handle: ReplicaHandle;
  /** where the replica is in the FT protocol (replica-state.ts): the source of `claiming` and `alone` */
  state: ReplicaState;
  /** it is claiming the next generation at the arbiter (going-live, going-alone) */
  readonly claiming: boolean;
  /** when this host started watching its partner (a grace period for a new pairing) */
  since: number;
  // primary
  backup: string | null;
  /**
   * the backup said it is in place (its first ack): log frames go to it only
   * from then on, since a backup being made (modules shipped, compiled) would drop them
   */
  backupReady: boolean;
  /** a primary without a backup (alone, recreating-backup) */
  readonly alone: boolean;
  frames: PendingFrame[];
  /** outputs, and clients' input positions, waiting for the backup to acknowledge their log */
  rule: OutputRule<Output>;
  acked: number;
  released: number;
  /** outputs this replica released as the primary */
  releasedCount: number;
  /** (count, time) of the primary's recent frames, for the lag in time */
  primaryCount: bigint;
  /** the backup's lag behind this primary, and the marks it is measured by (lag.ts) */
  lag: LagMeter;
  snapshotFor: string | null;
  /** bytes of log frames sent to backups */
  logBytes: number;
  /** bytes of log frames the backup has not acknowledged */
  unackedBytes: number;
  /** how often held outputs past their bounds stalled the primary (the status adds the worker's stalls on the log, handle.logStalls) */
  stalls: number;
  /** when the primary last told the other hosts how the VM is doing */
  toldAt: number;
  /** the last backup re-creation: memory shipped, the primary's pause, ms from the ask to the snapshot (waitMs: a command guest's waits for its next input call) and to the backup made (null until then) */
  recreate: { memoryBytes: number; pauseMs: number; waitMs: number; ms: number | null; askedAt: number } | null;
  /** the one timer that tries again to make a backup (recreateBackup), while one waits */
  backupRetry: NodeJS.Timeout | null;
  /** the host recreateBackup makes the next backup on, when it is live (a migration's target); else placement chooses */
  backupOn: string | null;
  /**
   * client messages a migration holds while the primary cannot take them (it
   * claims a generation, or is paused for a planned switch), oldest first, at
   * most INPUT_INBOX_MAX and INPUT_INBOX_BYTES_MAX; null when none are held
   */
  held: { msgs: HeldInput[]; bytes: number } | null;
  /** paused for a planned switch: the last entry the replica logged, once it said so ('handed-over') */
  handedOverSeq: number | null;
  /** client sends refused because the VM's input queue was full (FTVM_ERR_BUSY) */
  inputRefused: number;
  /** the newest state digests this replica logged or verified (at most VM_DIGESTS_KEPT_MAX) */
  digests: DigestSeen[];
  /** a backup: the last entry its replay reached (its 'progress' reports), and whether an ack waits for it to catch up */
  replayedSeq: number;
  ackOwed: boolean;
  /** while an ack is owed: the last entry acknowledged (what the heartbeats repeat) */
  ackHeld: number;
  /** the guest's output said in the host's log this second (logGuest) */
  guestLog: { since: number; bytes: number; skipped: number };
  // backup
  primary: string | null;
  check: EntryChecker | null;
  lastSeq: number;
  replayCount: bigint;
  /** outputs seen in the log that the primary may not have released yet */
  unreleased: Output[];
  /**
   * recent NIC outputs, oldest first, for clients that come back on another host:
   * a primary keeps what it released, a backup what it saw in the log
   */
  retained: Output[];
  retainedBytes: number;
  primaryReleased: number;
  ended: boolean;
  // both roles
  /** the guest's released stdout and stderr (output-ring.ts): the same byte stream on every replica */
  stdout: OutputRing;
  stderr: OutputRing;
  /** how the guest ended, once this replica ran to its end */
  end: VmEnd | null;
  /** readers of the output waiting for more of it (or the end): at most OUTPUT_READERS_MAX */
  outWaiters: Set<() => void>;
}

/**
 * How a guest ended: `exit` with proc_exit's status (0 when `_start`
 * returned), or `trap` with the trap's message; `deadline` and `idle` do not
 * happen under the service (a live replica waits for input without end).
 * `count` is the guest's instruction count where it ended, a decimal integer
 * (the same on every replica: the backup replays to the same count), "-1"
 * when the replica did not know it.
 */
export type VmEnd = ({ outcome: 'exit'; status: number } | { outcome: 'trap'; message: string } | { outcome: 'deadline' | 'idle' }) & { count: string };

/** What a read of a VM's stdout or stderr returns (see FtHost.readOutput). */
export interface OutputRead extends RingSlice {
  stream: 'stdout' | 'stderr';
  /** the host whose replica answered */
  host: string;
  /** how the guest ended, once the whole stream is in the ring that answered (no byte after `next` will come); else null */
  end: VmEnd | null;
}

/** A module being received from a peer, in chunks (see FtHost.shipModules). */
interface IncomingModule {
  from: string;
  kind: ModuleKind;
  /** the whole module's size, and how much has arrived */
  total: number;
  got: number;
  bytes: Uint8Array;
  hash: Hash;
  /** when the last chunk arrived (performance.now()) */
  at: number;
  /** called once it is complete or dropped */
  waiters: (() => void)[];
}

/** What a VM is started with. */
export interface StartRequest {
  name: string;
  /** the module's bytes; or */
  module?: Uint8Array;
  /** the SHA-256 (hex) of a module this host has (uploaded, or kept for a VM): FTVM_ERR_MODULE_NOT_FOUND if it has not */
  moduleHash?: string;
  /**
   * the guest's arguments after the program name, as `wasmtime run prog.wasm -- A B`
   * and node:wasi take them: the guest's argv is [name, ...args], argv[0] being the VM's name
   */
  args?: string[];
  env?: Record<string, string>;
  /** stdin, whole, logged at start (command guests read it; default empty) */
  stdin?: Uint8Array;
  /** the most memory the guest may grow to, in MiB (default and most: 1024) */
  memoryMiB?: number;
  /** the share of one core the primary may compute, in percent (default 100) */
  cpuPercent?: number;
  /** TCP ports (1..65535, at most PUBLISH_PORTS_MAX) every live host serves the VM on, at its public address: FTVM_ERR_BAD_REQUEST otherwise */
  publish?: number[];
  /**
   * the host to run the primary on (default: placement chooses, see
   * FtHost.placePrimary); FTVM_ERR_UNAVAILABLE if it is not a live member
   */
  host?: string;
}

/** What a host may be asked to do to a VM's primary. */
export type AdminOp = 'failover' | 'restart-backup';

/** A client message a migration holds for the primary (see Vm.held): as route() takes it. */
interface HeldInput {
  conn: number;
  data: Uint8Array;
  eof: boolean;
  off?: number;
  window?: number;
}

/**
 * What a live migration did (FtHost.migrateVm): which replica moved from
 * which host to which, the VM's generation, primary and backup after it, and
 * in ms: the whole request (`ms`), how long the primary was paused to copy
 * its memory for the new backup on the target (`snapshotPauseMs`; 0 when the
 * target ran the backup already), and how long the planned switch kept the
 * VM from running (`switchPauseMs`: from the primary's pause to the news
 * that the new primary runs; 0 when the backup moved).
 */
export interface MigrateResult {
  vm: string;
  replica: 'primary' | 'backup';
  from: string;
  to: string;
  gen: number;
  primary: string;
  backup: string | null;
  ms: number;
  snapshotPauseMs: number;
  switchPauseMs: number;
}

export interface VmStatus {
  name: string;
  gen: number;
  role: 'primary' | 'backup';
  partner: string | null;
  alone: boolean;
  /** where the replica is in the FT protocol */
  state: ReplicaState;
  acked: number;
  released: number;
  lagMs: number;
  lagCounts: string;
  throttleUs: number;
  ended: boolean;
  logBytes: number;
  unackedBytes: number;
  stalls: number;
  /** outputs held until the backup acknowledges their log */
  held: number;
  /** and their bytes */
  heldBytes: number;
  /** outputs this replica released as the primary */
  releasedCount: number;
  recreate: { memoryBytes: number; pauseMs: number; waitMs: number; ms: number | null } | null;
  /** client messages handed to the primary replica and not yet in the guest's NIC */
  inboxMessages: number;
  /** client sends refused with FTVM_ERR_BUSY (the input queue was full) */
  inputRefused: number;
  /** a timer to try again to make a backup is pending */
  backupRetry: boolean;
  /** the newest state digests this replica logged or verified, oldest first (at most VM_DIGESTS_KEPT_MAX) */
  digests: DigestSeen[];
  /** TCP connections through published ports whose output offset this replica's host keeps (open ones, and the newest STREAMS_DONE_MAX whose input ended) */
  streams: number;
}

/**
 * A state digest (log/format.ts 'digest': SHA-256 of the guest's memory,
 * mutable globals and devices) a replica logged as the primary (`verified`
 * false), or found equal to its own state on replay as the backup
 * (`verified` true); `count` is a decimal string, `digest` 64 hex digits,
 * `gen` the VM's generation on this host when the replica reported it.
 */
export interface DigestSeen {
  count: string;
  digest: string;
  verified: boolean;
  gen: number;
}

/** A VM's info before its primary's host described it: state 'alone', every figure -1 (unknown). */
function blankInfo(name: string, gen: number, primary: string): VmInfo {
  return { name, gen, primary, backup: null, state: 'alone', count: '-1', lagMs: -1, lagCounts: '-1', logBytes: -1, acked: -1, released: -1, held: -1, memoryMiB: -1, cpuPercent: -1, publish: [], endpoints: [], end: null, stdoutBytes: -1, stderrBytes: -1, ageMs: -1 };
}

/** What FtHost.status() says (see there). */
export interface HostStatus {
  id: string;
  slot: number;
  peers: { id: string; alive: boolean; linked: boolean; gapMsMax: number }[];
  gaps: { peer: string; atMs: number; gapMs: number }[];
  loop: { atMs: number; maxMs: number }[];
  vms: VmStatus[];
  refused: FtHost['refused'];
  ingress: IngressStats;
}

/** How a VM is doing, as its primary's host tells every host (about every 250 ms). */
export interface VmInfo {
  name: string;
  gen: number;
  primary: string;
  backup: string | null;
  /**
   * 'running' (with a backup), 'alone' (no backup yet), 'ended' (the guest
   * ended), 'failing-over' (its primary's host is silent, or its primary
   * lost its backup and waits for the arbiter to go on alone), 'lost' (both its
   * replicas are gone: their hosts died or restarted; only DELETE helps)
   */
  state: 'running' | 'alone' | 'ended' | 'failing-over' | 'lost';
  count: string;
  lagMs: number;
  lagCounts: string;
  logBytes: number;
  acked: number;
  released: number;
  held: number;
  memoryMiB: number;
  cpuPercent: number;
  /** the TCP ports the VM is published on */
  publish: number[];
  /** where clients reach it: "ADDR:PORT" for each published port of each live host (at the host's public address) */
  endpoints: string[];
  /** how the guest ended (null while it runs, and until the backup acknowledged its end: the Output Rule) */
  end: VmEnd | null;
  /** bytes the guest wrote on stdout and on stderr, released so far */
  stdoutBytes: number;
  stderrBytes: number;
  /** ms since the primary's host said this */
  ageMs: number;
}

export { API_CONNECTIONS_MAX, HELD_BYTES_MAX, HELD_OUTPUTS_MAX };

/** The codes a host refuses a request with (host/errors.ts says what each means). FTVM_ERR_VM_ENDED: the guest ended, so there is nothing to fail over or back up. FTVM_ERR_BUSY: the VM's input queue is full (its guest does not take messages fast enough); send again later. */
export type HostErrorCode = Extract<FtvmErrorCode, 'FTVM_ERR_NOT_FOUND' | 'FTVM_ERR_NOT_PRIMARY' | 'FTVM_ERR_EXISTS' | 'FTVM_ERR_CONFLICT' | 'FTVM_ERR_VM_ENDED' | 'FTVM_ERR_UNAVAILABLE' | 'FTVM_ERR_MODULE_NOT_FOUND' | 'FTVM_ERR_BAD_REQUEST' | 'FTVM_ERR_BUSY'>;
const HOST_ERROR_CODES: readonly string[] = ['FTVM_ERR_NOT_FOUND', 'FTVM_ERR_NOT_PRIMARY', 'FTVM_ERR_EXISTS', 'FTVM_ERR_CONFLICT', 'FTVM_ERR_VM_ENDED', 'FTVM_ERR_UNAVAILABLE', 'FTVM_ERR_MODULE_NOT_FOUND', 'FTVM_ERR_BAD_REQUEST', 'FTVM_ERR_BUSY'] satisfies HostErrorCode[];

/**
 * The code of an error answered to a client ({ t: 'error', code, message }):
 * the error's own FTVM_ERR_* code (HostError, a module or meter refusal), else
 * FTVM_ERR_BAD_REQUEST (the request's own checks throw plain errors).
 */
function clientErrorCode(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^FTVM_ERR_[A-Z_]+$/.test(code) ? code : 'FTVM_ERR_BAD_REQUEST';
}

/** A request the host refuses, with a stable code. */
export class HostError extends Error {
  constructor(
    readonly code: HostErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HostError';
  }
}

export class FtHost {
  readonly id: string;
  slot = 0;
  peerAddr = '';
  clientAddr = '';
  private readonly opts: Required<Omit<HostOptions, 'log'>> & { log: (line: string) => void };
  private readonly peerServer: Server;
  private readonly clientServer: Server;
  private readonly links = new Map<string, Link>();
  /** which peers are alive (heartbeats and all traffic) */
  private readonly detector: FailureDetector;
  private members: HostRecord[] = [];
  private readonly vms = new Map<string, Vm>();
  /** which host runs the primary of a VM, as far as this host knows */
  private readonly primaries = new Map<string, { gen: number; host: string }>();
  /** how each VM is doing, as another host running its primary last said (with when it arrived) */
  private readonly infos = new Map<string, SaidInfo>();
  /** requests forwarded to another host, waiting for its answer */
  private readonly adminWaits = new Map<number, { resolve: (result?: Record<string, unknown>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private adminIds = 0;
  /** starts forwarded to the host placement chose, waiting for its answer */
  private readonly startWaits = new Map<number, { host: string; resolve: (r: PeerMessageOf<'start-res'>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private startIds = 0;
  /** per host, starts forwarded to it and not answered yet (placement counts them as replicas there; at most PLACING_MAX hosts) */
  private readonly placing = new Map<string, number>();
  /** output reads forwarded to the host running a VM's primary, waiting for its answer */
  private readonly outputWaits = new Map<number, { host: string; resolve: (r: OutputRead) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** VMs deleted, with the generation that ended them: older news of them is stale */
  private readonly tombstones = new Map<string, number>();
  /** VMs this host took over as a backup */
  failovers = 0;
  /** authenticated client-port connections by connection id (at most clientConnsMax) */
  private readonly clients = new Map<number, Socket>();
  /** every open client-port connection, oldest first (at most clientConnsMax) */
  private readonly clientLinks = new Map<Socket, ClientLink>();
  /** open client-port connections per remote address (an entry per address in clientLinks) */
  private readonly clientsPerAddress = new Map<string, number>();
  private clientRefusalSaidAt = -Infinity;
  /** clients that came back somewhere: the host each of those connections is served by now (at most CONN_OWNERS_MAX, the least recently set dropped) */
  private readonly connOwners = new Map<number, string>();
  /** connections that came back here, with the last output forwarded to them per VM */
  private readonly adopted = new Map<number, Map<string, number>>();
  /** outputs kept for API connections, and who waits for them */
  /** VMs whose primary's host refused a forwarded send, until when (performance.now() ms): see busyFor */
  private readonly busyUntil = new Map<string, number>();
  private readonly apiBoxes = new Map<number, { outputs: { vm: string; seq: number; data: Uint8Array; eof: boolean }[]; bytes: number; waiters: (() => void)[]; usedAt: number }>();
  /** this process's id, new at each start (the heartbeats' `boot`) */
  private readonly boot = randomUUID();
  /** each peer's `boot` as its last heartbeat said (one entry per member, at most MAX_SLOT) */
  private readonly boots = new Map<string, string>();
  /** the cluster's id, as the arbiter holds it (Arbiter.open); peers must hold the same */
  private clusterId = '';
  /** peers (and their cluster ids) refused for another cluster, said once each */
  private readonly otherClusters = new Map<string, true>();
  /** when tick() last ran (performance.now ms; 0 before the first): a longer gap than the failure timeout is a pause */
  private tickAt = 0;
  /** the low bits of the connection ids this host hands out, from blocks the arbiter gives its slot (conn-ids.ts) */
  private readonly connIds = new ConnIds(
    () => this.opts.arbiter.connBlock(this.slot),
    (e) => this.say(`no new block of connection ids yet: ${e.message}`),
  );
  /** per peer, the "vm:port"s it could not bind (said with its heartbeats) */
  private readonly unbound = new Map<string, Set<string>>();
  /** slots of hosts taken for dead: their published-port connections were ended in this host's primaries */
  private readonly deadSlots = new Set<number>();
  /** VMs' published ports on this host */
  readonly ingress: TcpIngress;
  private ingressAt = 0;
  private readonly incoming = new Set<Socket>();
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  /** what this host did, as named events (the last EVENTS_MAX) */
  readonly events = new EventLog();
  /** counters for what the host refused */
  readonly refused = { unauthenticated: 0, badFrames: 0, clientsUnauthorized: 0, clientsOverCap: 0, clientsIdle: 0 };
  /**
   * snapshots being received, by "vm/gen": the memory, allocated once at its
   * first chunk and filled as chunks arrive (never gathered and joined), from
   * which peer, how much came, and when the last chunk did (at most SNAPSHOTS_IN_MAX)
   */
  private readonly snapshotsIn = new Map<string, { from: string; memory: Uint8Array; got: number; at: number }>();
  /** the output rings that come before a backup request made from a snapshot, by "vm/gen" (at most RINGS_IN_MAX) */
  private readonly ringsIn = new Map<string, { stdout?: { start: number; bytes: Uint8Array }; stderr?: { start: number; bytes: Uint8Array } }>();
  private snapshotIds = 0;
  /** how late this host's event loop ran its timers (heartbeats, acks and API calls wait as long) */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  /** the largest event-loop delay of each second, the newest LOOP_SECONDS_MAX */
  private readonly loopSeconds: { atMs: number; maxMs: number }[] = [];
  /** the modules this host keeps on disk: uploaded by clients, or shipped to it for its backups */
  readonly modules: ModuleStore;
  /** metering jobs, on worker threads */
  readonly meter: MeterPool;
  /** modules being received from peers, by hash */
  private readonly incomingModules = new Map<string, IncomingModule>();
  /** modules received whole and checked, until the store has them on disk */
  private readonly arrived = new Map<string, Uint8Array>();
  /** module offers made to peers, waiting for the list of what they need */
  private readonly offerWaits = new Map<number, { resolve: (need: string[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private offerIds = 0;
  /** the newest request to make a backup of each VM (one overtaken while it waited is dropped) */
  private readonly making = new Map<string, object>();
  /**
   * The live migrations this host runs, one per VM whose primary is here (so
   * at most one per VM), each with the waiter its next step waits on (woken
   * where a switch moves: an ack, the replica's pause, a new primary).
   */
  private readonly migrations = new Map<string, { wake: (() => void) | null }>();
  /** what module shipping did: modules and bytes sent and received, and modules a peer had already */
  readonly shipping = { sent: 0, sentBytes: 0, chunksSent: 0, skipped: 0, received: 0, receivedBytes: 0 };

  constructor(opts: HostOptions) {
    if (!NAME_RE.test(opts.id)) throw new Error(`host id ${JSON.stringify(opts.id)} must match ${NAME_RE}`);
    if (!opts.secret) throw new Error('a cluster secret is required');
    this.id = opts.id;
    this.opts = {
      bind: '127.0.0.1',
      peerPort: 0,
      clientPort: 0,
      heartbeatMs: 50,
      failMs: 600,
      lagTargetMs: 100,
      unackedLogMax: UNACKED_LOG_MAX,
      advertisePeer: '',
      publicAddress: '',
      log: () => {},
      dataDir: defaultDataDir(opts.id),
      moduleBytesMax: MODULE_BYTES_MAX_DEFAULT,
      moduleStoreBytesMax: STORE_BYTES_MAX,
      moduleStoreCountMax: STORE_COUNT_MAX,
      meterJobsMax: 1,
      digestEveryCounts: Number(VM_DIGEST_EVERY_COUNTS),
      token: randomBytes(32).toString('base64url'),
      clientIdleMs: CLIENT_IDLE_MS,
      clientConnsMax: CLIENT_CONNS_MAX,
      clientConnsPerAddressMax: CLIENT_CONNS_PER_ADDRESS_MAX,
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    } as unknown as FtHost['opts'];
    const u = this.opts.unackedLogMax;
    if (!Number.isSafeInteger(u) || u < 1 || u >= SIGNAL_SLOT_MAX) throw new FtvmError('FTVM_ERR_USAGE', `--unacked-log-max (unackedLogMax) expects an integer from 1 to ${SIGNAL_SLOT_MAX - 1}, got ${u}`);
    const d = this.opts.digestEveryCounts;
    if (!Number.isSafeInteger(d) || d < 1) throw new FtvmError('FTVM_ERR_USAGE', `--digest-every (digestEveryCounts) expects an integer from 1 to ${Number.MAX_SAFE_INTEGER}, got ${d}`);
    this.detector = new FailureDetector(this.opts.failMs, undefined, 2 * this.opts.heartbeatMs);
    this.modules = new ModuleStore({
      dir: join(this.opts.dataDir, 'modules'),
      countMax: this.opts.moduleStoreCountMax,
      bytesMax: this.opts.moduleStoreBytesMax,
      moduleBytesMax: this.opts.moduleBytesMax,
      inUse: () => this.hashesInUse(),
    });
    this.meter = new MeterPool({ jobsMax: this.opts.meterJobsMax });
    this.peerServer = createServer((s) => this.acceptPeer(s));
    this.clientServer = createServer((s) => this.acceptClient(s));
    this.ingress = new TcpIngress(this.opts.publicAddress || this.opts.bind, {
      newConn: () => this.newConnId(STREAM_CONN_BIT),
      send: (vm, conn, off, bytes, eof, window) => this.route(vm, conn, bytes, eof, 0, off, window),
      adopt: (vm, conn, after) => this.adopt(vm, conn, after),
      unbound: (vm, port, error) => this.note({ event: 'publish-failed', vm, port, address: this.ingress.address, error }),
      log: (line) => this.say(line),
    });
  }

  private say(line: string): void {
    this.opts.log(`[${this.id}] ${line}`);
  }

  /** Records a named event (GET /v1/events) and says it in the log. */
  private note(e: HostEvent): void {
    this.events.add(e);
    this.say(eventText(e));
  }

  async start(): Promise<void> {
    checkLimits();
    // the cluster id found at this arbiter before: a host restarted while its state is gone refuses to start
    const memory = join(this.opts.dataDir, 'clusters.json');
    this.clusterId = await this.opts.arbiter.open(rememberedCluster(memory, this.opts.arbiter.location));
    try {
      rememberCluster(memory, this.opts.arbiter.location, this.clusterId);
    } catch (e) {
      this.say(`cannot remember the cluster id in ${memory}: ${(e as Error).message}`);
    }
    const listen = (srv: Server, port: number): Promise<string> =>
      new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(port, this.opts.bind, () => {
          const a = srv.address();
          resolve(typeof a === 'object' && a ? `${this.opts.bind}:${a.port}` : String(a));
        });
      });
    this.peerAddr = await listen(this.peerServer, this.opts.peerPort);
    this.clientAddr = await listen(this.clientServer, this.opts.clientPort);
    this.slot = await this.opts.arbiter.register({ id: this.id, peer: this.opts.advertisePeer || this.peerAddr, client: this.clientAddr, public: this.ingress.address });
    await this.connIds.start();
    await this.refreshMembers();
    this.timers.push(setInterval(() => void this.refreshMembers().catch(() => {}), 200));
    this.timers.push(setInterval(() => this.tick(), this.opts.heartbeatMs));
    this.loopDelay.enable();
    this.timers.push(setInterval(() => this.sampleLoopDelay(), 1000));
    this.timers.push(setInterval(() => this.sweepClients(), CLIENT_SWEEP_MS));
    this.say(`up: peer ${this.peerAddr}, client ${this.clientAddr}, slot ${this.slot}`);
  }

  /** Keeps the largest event-loop delay of the second just past (for status(): `loop`). */
  private sampleLoopDelay(): void {
    this.loopSeconds.push({ atMs: Date.now(), maxMs: this.loopDelay.max / 1e6 });
    if (this.loopSeconds.length > LOOP_SECONDS_MAX) this.loopSeconds.shift();
    this.loopDelay.reset();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.loopDelay.disable();
    for (const t of this.timers) clearInterval(t);
    for (const w of this.outputWaits.values()) {
      clearTimeout(w.timer);
      w.reject(new HostError('FTVM_ERR_UNAVAILABLE', `${this.id} is shutting down`));
    }
    this.outputWaits.clear();
    for (const w of this.startWaits.values()) {
      clearTimeout(w.timer);
      w.reject(new HostError('FTVM_ERR_UNAVAILABLE', `${this.id} is shutting down`));
    }
    this.startWaits.clear();
    await this.meter.close();
    await Promise.all([...this.vms.values()].map((vm) => vm.handle.terminate()));
    this.ingress.close();
    for (const l of this.links.values()) l.sock?.destroy();
    for (const s of this.incoming) s.destroy();
    for (const s of this.clientLinks.keys()) s.destroy();
    await Promise.all([new Promise((r) => this.peerServer.close(r)), new Promise((r) => this.clientServer.close(r))]);
  }

  /**
   * What this host is doing. `peers[].gapMsMax`: the longest this host went
   * without hearing from the peer (ms); `gaps`: silences of at least a
   * quarter of the failure timeout, ended at `atMs` (ms since the epoch);
   * `loop`: the largest event-loop delay of each of the last seconds (ms),
   * the time a heartbeat or an ack could wait here before being handled.
   */
  status(): HostStatus {
    const origin = performance.timeOrigin;
    return {
      id: this.id,
      slot: this.slot,
      ingress: { ...this.ingress.stats },
      peers: this.members.filter((m) => m.id !== this.id).map((m) => ({ id: m.id, alive: this.alive(m.id), linked: this.links.get(m.id)?.ready ?? false, gapMsMax: this.detector.maxGapMs(m.id) })),
      gaps: this.detector.gapsSince(0).map((g) => ({ peer: g.peer, atMs: origin + g.at, gapMs: g.gapMs })),
      loop: [...this.loopSeconds, { atMs: Date.now(), maxMs: this.loopDelay.max / 1e6 }],
      vms: [...this.vms.values()].map((vm) => ({
        name: vm.name,
        gen: vm.gen,
        role: vm.role,
        partner: vm.role === 'primary' ? vm.backup : vm.primary,
        alone: vm.alone,
        state: vm.state,
        acked: vm.acked,
        released: vm.released,
        lagMs: vm.lag.lagMs,
        lagCounts: String(vm.lag.lagCounts),
        throttleUs: vm.handle.throttle,
        ended: vm.ended,
        logBytes: vm.logBytes,
        unackedBytes: vm.unackedBytes,
        stalls: vm.stalls + vm.handle.logStalls,
        held: vm.rule.held,
        heldBytes: vm.rule.heldBytes,
        releasedCount: vm.releasedCount,
        recreate: vm.recreate && { memoryBytes: vm.recreate.memoryBytes, pauseMs: vm.recreate.pauseMs, waitMs: vm.recreate.waitMs, ms: vm.recreate.ms },
        inboxMessages: vm.role === 'primary' ? vm.handle.inboxed.messages : 0,
        inputRefused: vm.inputRefused,
        backupRetry: vm.backupRetry !== null,
        digests: [...vm.digests],
        streams: vm.outEnds.size,
      })),
      refused: this.refused,
    };
  }

  // ---- membership and the log channel ----

  private async refreshMembers(): Promise<void> {
    if (this.closed) return;
    this.members = await this.opts.arbiter.hosts();
    for (const m of this.members) {
      if (m.id === this.id) continue;
      const l = this.links.get(m.id);
      if (!l) this.links.set(m.id, { id: m.id, addr: m.peer, sock: null, ready: false, readyAt: 0, nextDialAt: 0 });
      else if (l.addr !== m.peer) {
        // the host restarted elsewhere
        l.addr = m.peer;
        l.sock?.destroy();
      }
    }
  }

  private alive(id: string): boolean {
    return this.detector.alive(id);
  }

  private heard(id: string): void {
    this.detector.heard(id);
  }

  /**
   * Whether peer `id`, whose arbiter holds cluster `theirs` (its handshake's
   * `cluster`; a peer that names none is taken as the same), shares this host's
   * arbiter; said in the log once per peer and id when not.
   */
  private sameCluster(id: string, theirs: unknown): boolean {
    if (theirs === undefined || theirs === this.clusterId) return true;
    const said = `${id}/${String(theirs)}`;
    if (!this.otherClusters.has(said)) {
      setBounded(this.otherClusters, said, true, OTHER_CLUSTER_NOTES_MAX);
      this.say(`peer ${id} belongs to another cluster: its arbiter holds ${String(theirs)}, mine ${this.clusterId} (an arbiter's state was lost and made again); not linking`);
    }
    return false;
  }

  private dial(l: Link): void {
    const [host, port] = [l.addr.slice(0, l.addr.lastIndexOf(':')), Number(l.addr.slice(l.addr.lastIndexOf(':') + 1))];
    const sock = connect({ host, port });
    sock.setNoDelay(true);
    l.sock = sock;
    l.ready = false;
    const mine = nonce();
    let stage: 'hello' | 'auth' | 'ready' = 'hello';
    /** the peer process this connection reached (its handshake's boot id) */
    let sockBoot: string | null = null;
    sock.on('connect', () => send(sock, { t: 'hello', id: this.id, nonce: mine, cluster: this.clusterId, boot: this.boot }));
    readMessages(
      sock,
      PEER_FRAME_MAX,
      (m) => {
        if (stage === 'hello') {
          if (m.t !== 'challenge' || m.id !== l.id || !(m.nonce instanceof Uint8Array) || !macOk(mac(this.opts.secret, 'listener', mine, m.nonce), m.mac)) {
            this.say(`peer ${l.id} at ${l.addr} failed to authenticate`);
            sock.destroy();
            return;
          }
          if (!this.sameCluster(l.id, m.cluster)) return void sock.destroy();
          // a restart of the peer is known before the link is up, not at its first heartbeat
          if (typeof m.boot === 'string') this.heardBoot(l.id, (sockBoot = m.boot));
          send(sock, { t: 'auth', mac: mac(this.opts.secret, 'dialer', m.nonce, mine) });
          stage = 'auth';
        } else if (stage === 'auth') {
          if (m.t !== 'welcome') return void sock.destroy();
          stage = 'ready';
          l.ready = true;
          l.readyAt = performance.now();
          this.heard(l.id);
          this.onLinkUp(l.id);
        } else {
          if (this.staleConnection(l.id, sockBoot)) return void sock.destroy();
          this.heard(l.id);
          this.onPeer(l.id, m);
        }
      },
      () => this.refused.badFrames++,
    );
    const down = (): void => {
      if (l.sock === sock) {
        l.sock = null;
        l.ready = false;
        l.nextDialAt = performance.now() + 100;
      }
    };
    sock.on('error', down);
    sock.on('close', down);
  }

  private acceptPeer(sock: Socket): void {
    sock.setNoDelay(true);
    this.incoming.add(sock);
    sock.on('close', () => this.incoming.delete(sock));
    sock.on('error', () => {});
    let peer: string | null = null;
    let theirs: Uint8Array | null = null;
    let theirBoot: string | null = null;
    let mine: Buffer | null = null;
    const refuse = (why: string): void => {
      this.refused.unauthenticated++;
      this.say(`refused a peer connection: ${why}`);
      sock.destroy();
    };
    const timer = setTimeout(() => peer === null && refuse('no authentication in time'), 5000);
    sock.on('close', () => clearTimeout(timer));
    let authed = false;
    readMessages(
      sock,
      PEER_FRAME_MAX,
      (m) => {
        if (!authed) {
          if (mine === null) {
            if (m.t !== 'hello' || typeof m.id !== 'string' || !NAME_RE.test(m.id) || !(m.nonce instanceof Uint8Array)) return refuse(`"${m.t}" before hello`);
            if (!this.sameCluster(m.id, m.cluster)) return refuse(`peer ${m.id} belongs to another cluster`);
            peer = m.id;
            theirs = m.nonce;
            theirBoot = typeof m.boot === 'string' ? m.boot : null;
            mine = nonce();
            send(sock, { t: 'challenge', id: this.id, nonce: mine, mac: mac(this.opts.secret, 'listener', theirs, mine), cluster: this.clusterId, boot: this.boot });
            return;
          }
          if (m.t !== 'auth' || !macOk(mac(this.opts.secret, 'dialer', mine, theirs!), m.mac)) return refuse(`peer ${peer} does not know the cluster secret`);
          authed = true;
          send(sock, { t: 'welcome' });
          this.heard(peer!);
          if (theirBoot !== null) this.heardBoot(peer!, theirBoot);
          return;
        }
        if (this.staleConnection(peer!, theirBoot)) return void sock.destroy();
        this.heard(peer!);
        this.onPeer(peer!, m);
      },
      (e: WireError) => {
        this.refused.badFrames++;
        this.note({ event: 'peer-dropped', peer: peer ?? null, reason: e.message });
      },
    );
  }

  /** Sends to a peer over this host's own connection to it; false if that is down. */
  private toPeer(id: string, m: WireMessage): boolean {
    const l = this.links.get(id);
    if (!l?.ready || !l.sock) return false;
    send(l.sock, m); // a full socket buffer queues: the link is still up
    return true;
  }

  private tick(): void {
    const now = performance.now();
    // This host was stopped longer than the failure timeout (SIGSTOP, a frozen VM, swap): its peers may
    // have taken it for dead and given its primaries' generations to their backups. It asks the arbiter
    // before its primaries' next outputs, as a partner's news may be slow to come.
    if (this.tickAt && now - this.tickAt > this.opts.failMs) this.checkGenerations(now - this.tickAt);
    this.tickAt = now;
    // a heartbeat carries the published ports this host could not bind, so no host lists them as endpoints
    const unbound = this.ingress.unbound();
    const hb = unbound.length ? { t: 'hb', boot: this.boot, unbound } : { t: 'hb', boot: this.boot };
    for (const l of this.links.values()) {
      if (!l.sock && now >= l.nextDialAt) this.dial(l);
      else if (l.ready && l.sock) send(l.sock, hb);
    }
    for (const vm of this.vms.values()) {
      // A backup repeats its ack with each heartbeat: an ack lost with a link is not lost for long,
      // and the primary learns the replay's count even when no log flows.
      if (vm.role === 'backup' && vm.primary && !vm.claiming) {
        this.toPeer(vm.primary, { t: 'ack', vm: vm.name, gen: vm.gen, seq: vm.ackOwed ? vm.ackHeld : vm.lastSeq, count: vm.replayCount });
      }
      // An ended VM too: its partner's end may take outputs not released yet with it.
      if (vm.claiming) continue;
      const partner = vm.role === 'primary' ? vm.backup : vm.primary;
      if (!partner) continue;
      if (this.detector.partnerDead(partner, vm.since)) {
        this.note({ event: 'partner-silent', vm: vm.name, role: vm.role, partner });
        // a silence may end (a pause, a cut link): while the arbiter cannot be reached, the same partner heard again resumes the pair
        // (what it missed while this side's own link was down is sent again once that link is up: onLinkUp, and the acks of every tick)
        const boot = this.boots.get(partner);
        const back = (): boolean => this.alive(partner) && this.boots.get(partner) === boot;
        void (vm.role === 'primary' ? this.backupLost(vm, back) : this.primaryLost(vm, back));
      }
    }
    for (const vm of this.vms.values()) if (vm.role === 'primary' && now - vm.toldAt >= INFO_EVERY_MS) this.tell(vm);
    this.watchSlots();
    for (const [hash, inc] of this.incomingModules) {
      if (now - inc.at > INCOMING_IDLE_MS) {
        this.incomingModules.delete(hash);
        for (const w of inc.waiters.splice(0)) w();
        this.say(`dropped module ${hash.slice(0, 12)} from ${inc.from}: no chunk for ${INCOMING_IDLE_MS / 1000} s (${inc.got} of ${inc.total} bytes came)`);
      }
    }
    for (const [key, snap] of this.snapshotsIn) {
      if (now - snap.at > INCOMING_IDLE_MS) this.snapshotsIn.delete(key);
    }
    for (const [id, w] of this.startWaits) {
      if (this.alive(w.host)) continue;
      this.startWaits.delete(id);
      clearTimeout(w.timer);
      w.reject(new HostError('FTVM_ERR_UNAVAILABLE', `${w.host}, where the VM was placed, went silent; its start may or may not have happened`));
    }
    // a read waiting on a host that went silent fails at once: its reader asks again, of the next primary
    for (const [id, w] of this.outputWaits) {
      if (this.alive(w.host)) continue;
      this.outputWaits.delete(id);
      clearTimeout(w.timer);
      w.reject(new HostError('FTVM_ERR_UNAVAILABLE', `${w.host}, the primary's host, went silent; a failover may be under way`));
    }
    if (now - this.ingressAt >= INFO_EVERY_MS) {
      this.ingressAt = now;
      this.publishPorts();
    }
    const wall = Date.now();
    for (const [conn, box] of this.apiBoxes) {
      if (wall - box.usedAt > API_CONN_IDLE_MS && !box.waiters.length) this.apiBoxes.delete(conn);
    }
  }

  /**
   * A host taken for dead took its clients' TCP connections with it: every
   * primary here ends those still open (replay/engine.ts 'slot-gone'), once per
   * death, so a guest does not hold their sockets for ever.
   */
  private watchSlots(): void {
    // a host silent for a moment (a busy machine) keeps its connections: only a long silence ends them
    const goneMs = Math.max(SLOT_GONE_MS_MIN, this.opts.failMs * 5);
    for (const m of this.members) {
      if (m.id === this.id) continue;
      const dead = this.detector.silentMs(m.id) >= goneMs && this.links.get(m.id)?.ready !== true;
      if (!dead) {
        this.deadSlots.delete(m.slot);
        continue;
      }
      if (this.deadSlots.has(m.slot)) continue;
      this.deadSlots.add(m.slot);
      for (const vm of this.vms.values()) if (vm.role === 'primary' && !vm.claiming && vm.publish.length) vm.handle.send({ t: 'slot-gone', slot: m.slot });
    }
  }

  /**
   * Every VM with published ports that this host knows of (its own replicas,
   * and what primaries' hosts said) gets listeners here, and keeps them while
   * its primary moves to another host; a VM deleted, ended or unknown loses them.
   */
  private publishPorts(): void {
    // a guest that ended has no listener any more, as a process that exited: its ports close and its clients are reset;
    // so has a VM that is lost (no replica left anywhere: nothing would ever answer)
    const lost = new Set(this.vmInfos().filter((v) => v.state === 'lost').map((v) => v.name));
    const want = new Map<string, number[]>();
    for (const [name, said] of this.infos) if (said.info.publish?.length && this.primaries.has(name) && said.info.state !== 'ended' && !lost.has(name)) want.set(name, said.info.publish);
    for (const vm of this.vms.values()) {
      if (vm.ended) want.delete(vm.name);
      else if (vm.publish.length) want.set(vm.name, vm.publish);
    }
    for (const [name, ports] of want) this.ingress.publish(name, ports);
    for (const name of this.ingress.vms()) {
      if (want.has(name)) continue;
      // Its primary left this host (a test failover, a lost claim) and the new one has not described
      // itself yet: the listeners and connections stay, their unacknowledged input kept for the new primary.
      // A VM deleted (its primary forgotten) or ended loses them.
      const ended = this.vms.get(name)?.ended === true || this.infos.get(name)?.info.state === 'ended';
      if (this.primaries.has(name) && !ended && !lost.has(name)) continue;
      this.ingress.unpublish(name);
    }
    this.ingress.sweep();
  }

  /** What this primary says of its VM to every host. */
  private infoOf(vm: Vm): Omit<VmInfo, 'ageMs'> {
    return {
      name: vm.name,
      gen: vm.gen,
      primary: this.id,
      backup: vm.backup,
      // a primary claiming the next generation (its backup died) holds its outputs until the arbiter answers
      state: vm.ended ? 'ended' : vm.claiming ? 'failing-over' : vm.alone || !vm.backup ? 'alone' : 'running',
      count: String(vm.primaryCount),
      lagMs: vm.lag.lagMs,
      lagCounts: String(vm.lag.lagCounts),
      logBytes: vm.logBytes,
      acked: vm.acked,
      released: vm.released,
      held: vm.rule.held,
      memoryMiB: vm.start.memoryLimitPages / 16,
      cpuPercent: vm.cpuPercent,
      publish: vm.publish,
      endpoints: [],
      end: this.endReleased(vm) ? vm.end : null,
      stdoutBytes: vm.stdout.length,
      stderrBytes: vm.stderr.length,
    };
  }

  /**
   * Whether this replica's ring holds the guest's whole output and its end:
   * a primary once the backup acknowledged the log up to the end (or it runs
   * alone) and nothing is held; a backup once the primary said it released
   * every output of the log up to the end.
   */
  private endReleased(vm: Vm): boolean {
    if (!vm.end) return false;
    if (vm.role === 'backup') return vm.unreleased.length === 0;
    return vm.rule.held === 0 && (vm.alone || !vm.backup || vm.frames.length === 0);
  }

  private tell(vm: Vm): void {
    vm.toldAt = performance.now();
    const info = this.infoOf(vm);
    for (const l of this.links.values()) if (l.ready) this.toPeer(l.id, { t: 'vminfo', info });
  }

  /** A link came (back) up: resend what the backup has not acknowledged. */
  private onLinkUp(id: string): void {
    for (const vm of this.vms.values()) {
      if (vm.role !== 'primary' || vm.backup !== id || !vm.backupReady) continue;
      for (const f of vm.frames) this.toPeer(id, { t: 'log', vm: vm.name, gen: vm.gen, first: f.first, last: f.last, frame: f.frame, released: vm.released });
    }
  }

  // ---- peer messages ----

  private onPeer(from: string, m: WireMessage): void {
    try {
      this.onPeerMessage(from, parsePeerMessage(m));
    } catch (e) {
      this.refused.badFrames++;
      this.say(`bad ${m.t} message from ${from}: ${(e as Error).message}`);
    }
  }

  private onPeerMessage(from: string, m: PeerMessage): void {
    const vm = 'vm' in m ? this.vms.get(m.vm) : undefined;
    switch (m.t) {
      case 'hb':
        if (m.unbound?.length) this.unbound.set(from, new Set(m.unbound));
        else this.unbound.delete(from);
        if (m.boot !== undefined) this.heardBoot(from, m.boot);
        return;
      case 'snapchunk':
        this.onSnapshotChunk(from, m);
        return;
      case 'rings': {
        const key = `${m.vm}/${m.gen}`;
        this.ringsIn.delete(key);
        this.ringsIn.set(key, m.rings);
        if (this.ringsIn.size > RINGS_IN_MAX) this.ringsIn.delete(this.ringsIn.keys().next().value!);
        return;
      }
      case 'backup':
        void this.makeBackup(from, m).catch((e) => {
          this.say(`cannot make backup of ${m.vm}: ${(e as Error).message}`);
          this.toPeer(from, { t: 'backup-failed', vm: m.vm, gen: m.gen });
        });
        return;
      case 'log': {
        if (!vm || vm.role !== 'backup' || vm.gen !== m.gen || vm.primary !== from) return this.fenceOff(from, m.vm, m.gen);
        const { first, last } = m;
        this.primaryReleasedTo(vm, m.released);
        if (last <= vm.lastSeq || first !== vm.lastSeq + 1) {
          this.toPeer(from, { t: 'ack', vm: vm.name, gen: vm.gen, seq: vm.ackOwed ? vm.ackHeld : vm.lastSeq, count: vm.replayCount });
          return;
        }
        const entries = decodeFrame(m.frame, vm.check!);
        const outs: Output[] = [];
        for (const e of entries) {
          if (e.kind === 'send') outs.push({ seq: e.seq, kind: 'send', conn: e.payload.conn, fd: -1, bytes: e.payload.bytes, eof: e.payload.eof });
          else if (e.kind === 'output') outs.push({ seq: e.seq, kind: 'output', conn: 0, fd: e.payload.fd, bytes: e.payload.bytes, eof: false });
        }
        // the frame's runs of writes joined as its primary joined them (replay/engine.ts joinOutputs)
        for (const o of joinOutputs(outs)) {
          if (o.kind === 'send') {
            this.streamOffset(vm, o);
            this.retain(vm, o);
          }
          vm.unreleased.push(o);
        }
        // (after the frame's sends, as the primary's host takes them: both forget the same offsets)
        for (const e of entries) if (e.kind === 'interrupt' && e.payload.eof && e.payload.kind === INTERRUPT_NIC && isStreamConn(e.payload.conn)) this.streamEnded(vm, e.payload.conn);
        vm.lastSeq = last;
        this.primaryReleasedTo(vm, vm.primaryReleased);
        vm.handle.send({ t: 'entries', entries });
        // A replay far behind holds the ack until it catches up: the primary's unacknowledged log fills and
        // stalls its guest, instead of the entries piling up here without bound.
        if (last - vm.replayedSeq > BACKUP_BEHIND_ENTRIES_MAX) {
          if (!vm.ackOwed) vm.ackHeld = first - 1;
          vm.ackOwed = true;
        } else this.toPeer(from, { t: 'ack', vm: vm.name, gen: vm.gen, seq: last, count: vm.replayCount });
        return;
      }
      case 'ack': {
        if (!vm || vm.role !== 'primary' || vm.gen !== m.gen || vm.backup !== from) return this.fenceOff(from, m.vm, m.gen);
        if (!vm.backupReady) {
          // the backup is in place: send it the log it does not have yet
          vm.backupReady = true;
          for (const f of vm.frames) {
            if (f.last <= m.seq) continue;
            vm.logBytes += f.frame.length;
            this.toPeer(from, { t: 'log', vm: vm.name, gen: vm.gen, first: f.first, last: f.last, frame: f.frame, released: vm.released });
          }
        }
        this.acked(vm, m.seq, m.count);
        return;
      }
      case 'mod-offer':
        this.onModuleOffer(from, m);
        return;
      case 'mod-need': {
        const w = this.offerWaits.get(m.id);
        if (!w) return;
        this.offerWaits.delete(m.id);
        clearTimeout(w.timer);
        if (m.refused !== undefined) w.reject(new Error(`${from} refused the module: ${m.refused}`));
        else w.resolve(m.need);
        return;
      }
      case 'mod-chunk':
        this.onModuleChunk(from, m);
        return;
      case 'fwd': {
        let refused: HostError | null = null;
        try {
          this.route(m.vm, m.conn, m.data, m.eof, m.hops, m.off, m.window);
        } catch (e) {
          if (!(e instanceof HostError)) throw e;
          refused = e;
        }
        // a REST send waits for its answer; a client-port send hears of a refusal (the VM's input queue is full)
        // afterwards, and the host it came through refuses the VM's next sends for a moment
        if (m.id !== undefined) this.toPeer(from, { t: 'admin-res', id: m.id, code: refused?.code ?? null, message: refused?.message ?? null });
        else if (refused?.code === 'FTVM_ERR_BUSY') this.toPeer(from, { t: 'busy', vm: m.vm, conn: m.conn });
        return;
      }
      case 'busy':
        this.busyFor(m.vm, m.conn);
        return;
      case 'out':
        this.toClient(m.conn, { t: 'recv', vm: m.vm, gen: m.gen, seq: m.seq, data: m.data, eof: m.eof, off: m.off });
        return;
      case 'in-ack':
        for (const [conn, end] of m.acks) this.ingress.inputAcked(conn, end);
        return;
      case 'in-resend':
        this.ingress.resendFrom(m.conn, m.from);
        return;
      case 'primary':
        this.learnPrimary(m.vm, m.gen, m.host);
        if (m.publish?.length && this.primaries.get(m.vm)?.host === m.host) this.ingress.publish(m.vm, m.publish);
        return;
      case 'adopt':
        if (vm && vm.role === 'primary' && !vm.claiming) this.resend(vm, m.conn, m.after, m.owner);
        else this.setConnOwner(m.conn, m.owner);
        return;
      case 'conn-owner':
        this.setConnOwner(m.conn, m.owner);
        return;
      case 'backup-failed':
        if (vm && vm.role === 'primary' && vm.backup === from && vm.gen === m.gen && !vm.claiming) void this.backupLost(vm);
        return;
      case 'failover':
        // the primary's host stopped its replica on request (a test failover), or paused it for a planned switch: take over at once
        if (vm && vm.role === 'backup' && vm.primary === from && !vm.claiming) {
          vm.backupOn = m.backupOn ?? null;
          void this.primaryLost(vm);
        }
        return;
      case 'stop':
        this.stopped(m.vm, m.gen);
        return;
      case 'vminfo': {
        const info = m.info as unknown as Omit<VmInfo, 'ageMs'>;
        if ((this.tombstones.get(info.name) ?? 0) > info.gen) return;
        const known = this.infos.get(info.name);
        if (!known || known.info.gen <= info.gen) this.infos.set(info.name, { info, at: performance.now(), primaryBoot: this.boots.get(info.primary), backupBoot: info.backup ? this.boots.get(info.backup) : undefined });
        this.learnPrimary(info.name, info.gen, info.primary);
        // the backup here learns how far its primary released, even when no log flows (after the guest's end)
        const mine = this.vms.get(info.name);
        if (mine && mine.role === 'backup' && mine.gen === info.gen && mine.primary === from && typeof info.released === 'number') this.primaryReleasedTo(mine, info.released);
        return;
      }
      case 'admin': {
        const answer = (err?: HostError | Error, result?: MigrateResult) =>
          this.toPeer(from, { t: 'admin-res', id: m.id, code: err ? (err instanceof HostError ? err.code : 'FTVM_ERR_CONFLICT') : null, message: err?.message ?? null, ...(result ? { result } : {}) });
        if (m.op === 'migrate') {
          if (m.to === undefined) return void answer(new HostError('FTVM_ERR_BAD_REQUEST', 'a migration needs "to", the host to move to'));
          this.migrateHere(m.vm, m.to, m.replica ?? 'primary').then(
            (r) => answer(undefined, r),
            (e: Error) => answer(e),
          );
          return;
        }
        try {
          this.adminHere(m.op, m.vm);
          answer();
        } catch (e) {
          answer(e as Error);
        }
        return;
      }
      case 'out-read': {
        const answer = (r: OutputRead | null, err?: Error) =>
          this.toPeer(from, { t: 'out-res', id: m.id, read: r, code: err ? (err instanceof HostError ? err.code : 'FTVM_ERR_UNAVAILABLE') : null, message: err?.message ?? null });
        const waitMs = Math.min(m.waitMs, OUTPUT_WAIT_MS_MAX);
        if (!this.vms.has(m.vm)) return void answer(null, new HostError('FTVM_ERR_UNAVAILABLE', `${this.id} runs no replica of ${m.vm} (any more); try again`));
        this.readOutputHere(m.vm, m.stream, m.from, waitMs).then((r) => answer(r), (e: Error) => answer(null, e));
        return;
      }
      case 'out-res': {
        const w = this.outputWaits.get(m.id);
        if (!w) return;
        this.outputWaits.delete(m.id);
        clearTimeout(w.timer);
        if (m.code === null && m.read) w.resolve(m.read as unknown as OutputRead);
        else w.reject(new HostError((m.code !== null && HOST_ERROR_CODES.includes(m.code) ? m.code : 'FTVM_ERR_UNAVAILABLE') as HostErrorCode, `${from}: ${String(m.message)}`));
        return;
      }
      case 'start-fwd':
        this.onStartForwarded(from, m);
        return;
      case 'start-res': {
        const w = this.startWaits.get(m.id);
        if (!w || w.host !== from) return;
        this.startWaits.delete(m.id);
        clearTimeout(w.timer);
        w.resolve(m);
        return;
      }
      case 'admin-res': {
        const w = this.adminWaits.get(m.id);
        if (!w) return;
        this.adminWaits.delete(m.id);
        clearTimeout(w.timer);
        if (m.code === null) w.resolve(m.result);
        else w.reject(new HostError((HOST_ERROR_CODES.includes(m.code) ? m.code : 'FTVM_ERR_CONFLICT') as HostErrorCode, `${from}: ${String(m.message)}`));
        return;
      }
      default: {
        const never: never = m;
        throw new Error(`unhandled message type "${(never as PeerMessage).t}"`);
      }
    }
  }

  // ---- VMs ----

  private newVm(fields: Pick<Vm, 'name' | 'gen' | 'role' | 'state' | 'module' | 'metered' | 'moduleHash' | 'meteredHash' | 'compiled' | 'start' | 'handle'> & Partial<Omit<Vm, 'claiming' | 'alone'>>): Vm {
    const vm: Vm = {
      since: performance.now(),
      backup: null,
      backupReady: false,
      frames: [],
      rule: new OutputRule<Output>(),
      acked: -1,
      released: -1,
      releasedCount: 0,
      lag: new LagMeter(),
      primaryCount: 0n,
      snapshotFor: null,
      logBytes: 0,
      unackedBytes: 0,
      stalls: 0,
      toldAt: 0,
      recreate: null,
      backupRetry: null,
      backupOn: null,
      held: null,
      handedOverSeq: null,
      inputRefused: 0,
      digests: [],
      guestLog: { since: 0, bytes: 0, skipped: 0 },
      replayedSeq: -1,
      ackOwed: false,
      ackHeld: -1,
      cpuPercent: 100,
      publish: [],
      outEnds: new Map(),
      streamsEnded: new Set(),
      loggedSeq: -1,
      primary: null,
      check: null,
      lastSeq: -1,
      replayCount: 0n,
      unreleased: [],
      retained: [],
      retainedBytes: 0,
      primaryReleased: -1,
      ended: false,
      stdout: new OutputRing(),
      stderr: new OutputRing(),
      end: null,
      outWaiters: new Set(),
      ...fields,
      get claiming(): boolean {
        return this.state === 'going-live' || this.state === 'going-alone';
      },
      get alone(): boolean {
        return this.state === 'alone' || this.state === 'recreating-backup';
      },
    };
    this.vms.set(vm.name, vm);
    this.publishUnacked(vm);
    vm.handle.on('message', (msg) => this.fromReplica(vm, msg));
    vm.handle.on('exit', () => {
      if (this.vms.get(vm.name) === vm && !vm.ended) this.say(`${vm.name}: replica worker exited`);
    });
    return vm;
  }

  /**
   * Starts a VM with its primary on the host placement chooses (placePrimary:
   * the live host with the fewest replicas, then the least memory; or
   * `req.host`) and a backup on another host. Chosen elsewhere, the start is
   * forwarded there (startElsewhere: the module shipped as for a backup, a
   * 'start-fwd' request) and this promise settles with that host's answer.
   * Here, the module is checked and metered on a worker thread
   * (meter-pool.ts); the promise settles once the primary replica runs. The
   * backup is made afterwards: the module goes to its host (shipModules),
   * which then starts it.
   * Errors: FtvmError FTVM_ERR_BAD_REQUEST or FTVM_ERR_TOO_LARGE (the request
   * breaks a rule or limit of api/action.ts checkStart: nothing is created),
   * GuestLoadError (the module is refused), HostError
   * FTVM_ERR_MODULE_NOT_FOUND (no module of that hash here), FTVM_ERR_EXISTS,
   * FTVM_ERR_CONFLICT (a port published already), MeterPoolError
   * FTVM_ERR_UNAVAILABLE (too many modules wait to be metered).
   */
  async startVm(req: StartRequest): Promise<{ gen: number; primary: string; backup: string | null }> {
    // Every door's start comes here: one check of every type, rule and limit before anything is made.
    // (`host`, where to place the primary, is no part of the VM: placePrimary checks it)
    const { host: _placeHint, ...vmReq } = req;
    const action = checkStart(vmReq);
    const { memoryMiB, cpuPercent, publish } = action;
    // a VM that ended or is lost has closed its ports, as a process that exits does
    const busy = this.vmInfos().find((v) => v.state !== 'ended' && v.state !== 'lost' && v.publish.some((p) => publish.includes(p)));
    if (busy) throw new HostError('FTVM_ERR_CONFLICT', `VM ${busy.name} publishes port ${busy.publish.find((p) => publish.includes(p))} already`);
    let module: Uint8Array;
    let hash: string;
    if (action.moduleHash !== undefined) {
      hash = action.moduleHash;
      const got = await this.localModule(hash, 'module');
      if (!got) throw new HostError('FTVM_ERR_MODULE_NOT_FOUND', `no module ${hash} on ${this.id}: upload it first (PUT /v1/modules)`);
      module = shared(got);
    } else {
      module = shared(action.module!);
      hash = await sha256Hex(module);
    }
    const place = this.placePrimary(req);
    if (place !== this.id) return this.startElsewhere(place, req, module, hash);
    // argv[0] is the program's name, as every runner gives it: here the VM's
    const start: EntryPayloads['start'] = startEntryOf(action, hash, BigInt(this.opts.digestEveryCounts));
    // A name already taken is refused before the module is metered (and again at the claim, which decides).
    const taken = await this.opts.arbiter.latest(req.name);
    if (taken && taken.host !== STOPPED) throw this.exists(req.name, taken);
    // A command guest gets Asyncify at its input calls, so that its snapshots can carry its stack (runtime/unwind.ts).
    const c = await this.meter.compile(hash, module, { depthLimit: start.depthLimit, memoryLimitPages: start.memoryLimitPages, canonicalizeNaNs: false, asyncify: 'input-calls' });
    const meteredHash = c.meteredHash;
    // A module uploaded to this host keeps its metered form beside it: after a failover
    // this host can be made a backup again without anything shipped back to it.
    if (action.moduleHash !== undefined) void this.modules.put(c.metered, 'metered', meteredHash).catch((e: Error) => this.say(`the metered form of ${hash.slice(0, 12)} is not kept on disk: ${e.message}`));
    // A name is free if it was never used, or its VM was deleted: then the next generation starts it again.
    const last = await this.opts.arbiter.latest(req.name);
    if (last && last.host !== STOPPED) throw this.exists(req.name, last);
    const gen = last ? last.gen + 1 : 1;
    if (!(await this.opts.arbiter.claim(req.name, gen, this.id))) throw new HostError('FTVM_ERR_EXISTS', `VM ${req.name} exists already`);
    this.tombstones.delete(req.name);
    const backup = this.pickBackupHost(req.name);
    const handle = new ReplicaHandle({ vm: req.name, module, compiled: c.module, start, role: 'primary', stdin: action.stdin.length ? action.stdin : undefined, cpuPercent });
    const vm = this.newVm({ name: req.name, gen, role: 'primary', state: backup ? 'live' : 'alone', module, metered: c.metered, moduleHash: hash, meteredHash, compiled: c.module, start, handle, cpuPercent, publish: [...publish] });
    this.primaries.set(vm.name, { gen, host: this.id });
    this.announce(vm);
    if (backup) {
      vm.backup = backup;
      if (vm.module.length + vm.metered.length <= INLINE_SHIP_BYTES_MAX) this.toPeer(backup, { ...this.backupRequest(vm, null), module: vm.module, metered: vm.metered });
      else void this.backupFromBoot(vm, backup);
    } else {
      // No other host yet: run alone and make a backup from a snapshot once one is up.
      this.recreateBackup(vm);
    }
    this.tell(vm);
    this.note({ event: 'vm-started', vm: vm.name, backup });
    return { gen, primary: this.id, backup };
  }

  /** Makes the first backup of a VM on `target`, replaying from boot: ships the modules, then asks for it. */
  private async backupFromBoot(vm: Vm, target: string): Promise<void> {
    const gen = vm.gen;
    const current = (): boolean => this.vms.get(vm.name) === vm && vm.gen === gen && vm.backup === target && !vm.claiming;
    try {
      await this.shipModules(target, vm);
    } catch (e) {
      if (!current()) return;
      this.say(`${vm.name}: no backup on ${target}: ${(e as Error).message}`);
      void this.backupLost(vm);
      return;
    }
    if (!current()) return;
    this.toPeer(target, this.backupRequest(vm, null));
  }

  /**
   * The request that makes a host the backup of `vm`, naming its modules by
   * hash ('moduleHash', 'meteredHash'); a small module's bytes may ride along
   * ('module', 'metered'). From boot (snapshot null), or from a snapshot
   * whose memory and devices were streamed before it (split at `memoryBytes`).
   */
  private backupRequest(vm: Vm, snapshot: (Omit<Snapshot, 'memory' | 'devices'> & { memoryBytes: number }) | null): WireMessage {
    return { t: 'backup', vm: vm.name, gen: vm.gen, moduleHash: vm.moduleHash, meteredHash: vm.meteredHash, start: vm.start, primary: this.id, snapshot, cpuPercent: vm.cpuPercent, publish: vm.publish };
  }

  // ---- modules: kept, found, shipped ----

  /** The module and metered-module hashes of the VMs this host runs (never evicted from the store). */
  private hashesInUse(): Set<string> {
    const used = new Set<string>();
    for (const vm of this.vms.values()) {
      used.add(vm.moduleHash);
      used.add(vm.meteredHash);
    }
    return used;
  }

  /** Whether this host has the module `hash` (in a VM it runs, just received, stored, or arriving now). */
  private hasModule(hash: string): boolean {
    for (const vm of this.vms.values()) if (vm.moduleHash === hash || vm.meteredHash === hash) return true;
    return this.arrived.has(hash) || this.modules.get(hash) !== undefined || this.incomingModules.has(hash);
  }

  /** The bytes of module `hash` if this host has them whole (from a VM it runs, just received, or stored), else null. */
  private async localModule(hash: string, kind: ModuleKind): Promise<Uint8Array | null> {
    // arriving for another VM (a peer offered it, and this host said it was coming already): wait for it
    const inc = this.incomingModules.get(hash);
    if (inc) await new Promise<void>((r) => inc.waiters.push(r));
    for (const vm of this.vms.values()) {
      if (vm.moduleHash === hash) return vm.module;
      if (vm.meteredHash === hash) return vm.metered;
    }
    const a = this.arrived.get(hash);
    if (a) return a;
    const stored = this.modules.get(hash);
    if (!stored || stored.kind !== kind) return null;
    try {
      return await this.modules.read(hash);
    } catch {
      return null;
    }
  }

  /** What this host knows of module `hash`: stored here, used by VMs here (by name), metering jobs. */
  moduleInfo(hash: string): { hash: string; kind: ModuleKind | null; bytes: number | null; stored: boolean; vms: string[] } | null {
    const vms = [...this.vms.values()].filter((v) => v.moduleHash === hash || v.meteredHash === hash);
    const stored = this.modules.get(hash);
    if (!stored && !vms.length) return null;
    const v = vms[0];
    const kind = stored?.kind ?? (v && v.moduleHash === hash ? 'module' : 'metered');
    const bytes = stored?.bytes ?? (v ? (v.moduleHash === hash ? v.module.length : v.metered.length) : null);
    return { hash, kind, bytes, stored: stored !== undefined, vms: vms.map((x) => x.name).sort() };
  }

  /**
   * Ships a VM's module and its metered module to the host `target`, each at
   * most once: the host offers them by hash and size ('mod-offer'), the peer
   * answers with the hashes it lacks ('mod-need': it has the others stored, in
   * a VM it runs, or arriving already, and it refuses with a reason when it
   * cannot keep them), and only those follow, cut into 'mod-chunk' frames of
   * MODULE_CHUNK_BYTES (4 MiB, under the 8 MiB PEER_FRAME_MAX). A chunk is
   * written only when the link's socket buffer has drained below one chunk,
   * so a heartbeat or a log frame of another VM on the same link waits behind
   * at most one chunk, never behind the whole module. The peer checks each
   * module's SHA-256 when its last chunk arrives. The 'backup' request that
   * follows on the same link names the modules only by hash.
   * Rejects if the link goes down, the peer does not answer within
   * OFFER_TIMEOUT_MS, or it refuses.
   */
  private async shipModules(target: string, vm: Vm): Promise<void> {
    return this.shipModuleItems(target, vm.name, [
      { hash: vm.moduleHash, kind: 'module' as const, bytes: vm.module },
      { hash: vm.meteredHash, kind: 'metered' as const, bytes: vm.metered },
    ]);
  }

  /** shipModules for any modules (`vmName` only names them in events): a primary placed on another host gets its module so. */
  private async shipModuleItems(target: string, vmName: string, items: { hash: string; kind: ModuleKind; bytes: Uint8Array }[]): Promise<void> {
    const id = ++this.offerIds;
    const need = await new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.offerWaits.delete(id);
        reject(new Error(`${target} did not answer a module offer within ${OFFER_TIMEOUT_MS} ms`));
      }, OFFER_TIMEOUT_MS);
      this.offerWaits.set(id, { resolve, reject, timer });
      if (!this.toPeer(target, { t: 'mod-offer', id, items: items.map((it) => ({ hash: it.hash, kind: it.kind, bytes: it.bytes.length })) })) {
        clearTimeout(timer);
        this.offerWaits.delete(id);
        reject(new Error(`no link to ${target}`));
      }
    });
    for (const it of items) {
      if (!need.includes(it.hash)) {
        this.shipping.skipped++;
        continue;
      }
      for (let at = 0; at < it.bytes.length; at += MODULE_CHUNK_BYTES) {
        const l = this.links.get(target);
        if (!l?.ready || !l.sock) throw new Error(`the link to ${target} went down while shipping module ${it.hash.slice(0, 12)}`);
        await drained(l.sock, MODULE_CHUNK_BYTES); // and a turn of the event loop, always
        if (this.links.get(target)?.sock !== l.sock || !l.ready) throw new Error(`the link to ${target} went down while shipping module ${it.hash.slice(0, 12)}`);
        const bytes = it.bytes.subarray(at, at + MODULE_CHUNK_BYTES);
        send(l.sock, { t: 'mod-chunk', hash: it.hash, at, bytes });
        this.shipping.chunksSent++;
        this.shipping.sentBytes += bytes.length;
      }
      this.shipping.sent++;
      this.note({ event: 'module-shipped', vm: vmName, kind: it.kind, hash: it.hash, bytes: it.bytes.length, to: target, chunks: Math.ceil(it.bytes.length / MODULE_CHUNK_BYTES) });
    }
  }

  /** A peer offers modules: answer with those this host lacks, and get ready to receive them (or refuse). */
  private onModuleOffer(from: string, m: PeerMessageOf<'mod-offer'>): void {
    const items = m.items;
    if (!items.every((it) => HASH_RE.test(it.hash))) throw new Error('mod-offer needs "items": [{ hash (SHA-256, hex), kind, bytes }]');
    const need = items.filter((it) => !this.hasModule(it.hash));
    const refuse = (why: string): void => void this.toPeer(from, { t: 'mod-need', id: m.id, need: [], refused: why });
    if (this.incomingModules.size + need.length > INCOMING_MAX) return refuse(`${this.id} receives ${this.incomingModules.size} modules already`);
    for (const it of need) {
      if (it.bytes > this.modules.moduleBytesMax) return refuse(`the ${it.kind} has ${it.bytes} bytes, more than ${this.modules.moduleBytesMax}`);
      if (!this.modules.canFit(it.bytes)) return refuse(`${this.id} has no room to keep ${it.bytes} more bytes of modules`);
    }
    for (const it of need) {
      this.incomingModules.set(it.hash, { from, kind: it.kind, total: it.bytes, got: 0, bytes: new Uint8Array(new SharedArrayBuffer(it.bytes)), hash: createHash('sha256'), at: performance.now(), waiters: [] });
      if (it.bytes === 0) this.onModuleChunk(from, { t: 'mod-chunk', hash: it.hash, at: 0, bytes: new Uint8Array(0) });
    }
    this.toPeer(from, { t: 'mod-need', id: m.id, need: need.map((it) => it.hash) });
  }

  /** A chunk of a module this host said it needs; the last one is checked, kept in memory and stored. */
  private onModuleChunk(from: string, m: PeerMessageOf<'mod-chunk'>): void {
    const hash = m.hash;
    const inc = this.incomingModules.get(hash);
    if (!inc || inc.from !== from) return; // not asked for, or dropped
    const bytes = m.bytes;
    if (m.at !== inc.got || inc.got + bytes.length > inc.total) {
      this.incomingModules.delete(hash);
      for (const w of inc.waiters.splice(0)) w();
      throw new Error(`module ${hash.slice(0, 12)}: a chunk at ${m.at} of ${bytes.length} bytes does not follow the ${inc.got} received of ${inc.total}`);
    }
    inc.bytes.set(bytes, inc.got);
    inc.hash.update(bytes);
    inc.got += bytes.length;
    inc.at = performance.now();
    if (inc.got < inc.total) return;
    this.incomingModules.delete(hash);
    const wake = (): void => void inc.waiters.splice(0).forEach((w) => w());
    if (inc.hash.digest('hex') !== hash) {
      wake();
      this.say(`module ${hash.slice(0, 12)} from ${from} does not match its hash: dropped`);
      return;
    }
    this.shipping.received++;
    this.shipping.receivedBytes += inc.total;
    this.arrived.set(hash, inc.bytes);
    wake();
    void this.modules
      .put(inc.bytes, inc.kind, hash)
      .catch((e) => this.say(`module ${hash.slice(0, 12)} from ${from} is not kept on disk: ${(e as Error).message}`))
      .finally(() => this.arrived.delete(hash));
  }

  /**
   * What each host runs, as this host's view of the cluster says (vmInfos,
   * plus starts forwarded and not answered yet): replicas (primaries and
   * backups, VM `except` left out) and their memory limits in MiB.
   */
  private loads(except: string | null): Map<string, { replicas: number; memoryMiB: number }> {
    const out = new Map<string, { replicas: number; memoryMiB: number }>();
    const add = (id: string | null, mib: number): void => {
      if (!id) return;
      const l = out.get(id) ?? { replicas: 0, memoryMiB: 0 };
      l.replicas++;
      l.memoryMiB += Math.max(0, mib);
      out.set(id, l);
    };
    for (const v of this.vmInfos()) {
      if (v.name === except || v.state === 'ended') continue;
      add(v.primary, v.memoryMiB);
      add(v.backup, v.memoryMiB);
    }
    for (const [id, n] of this.placing) for (let i = 0; i < n; i++) add(id, 0);
    return out;
  }

  /** Orders hosts by load: fewer replicas, then less memory, then (`self` first) this host, then by id. */
  private byLoad(ids: string[], loads: Map<string, { replicas: number; memoryMiB: number }>): string[] {
    const of = (id: string) => loads.get(id) ?? { replicas: 0, memoryMiB: 0 };
    return [...ids].sort((a, b) => of(a).replicas - of(b).replicas || of(a).memoryMiB - of(b).memoryMiB || (a === this.id ? -1 : b === this.id ? 1 : a < b ? -1 : 1));
  }

  /** The peers a replica can be placed on now: alive, and linked from here. */
  private livePeers(): string[] {
    return this.members.filter((m) => m.id !== this.id && this.alive(m.id) && this.links.get(m.id)?.ready).map((m) => m.id);
  }

  /**
   * The host to run a new VM's primary on: `req.host` if given (this host or
   * a live peer; FTVM_ERR_UNAVAILABLE otherwise), else the live host with the
   * fewest replicas, then the least memory (this host on a tie), so primaries
   * spread over the cluster whichever host takes the requests. A request too
   * large to forward in one peer frame (stdin, arguments and environment over
   * INLINE_SHIP_BYTES_MAX) runs here.
   */
  private placePrimary(req: StartRequest): string {
    const live = this.livePeers();
    if (req.host !== undefined && typeof req.host !== 'string') throw new HostError('FTVM_ERR_BAD_REQUEST', '"host" must be a string: the id of a host of the cluster');
    if (req.host !== undefined) {
      if (req.host === this.id || live.includes(req.host)) return req.host;
      throw new HostError('FTVM_ERR_UNAVAILABLE', `host ${JSON.stringify(req.host)} is not a live member of the cluster`);
    }
    const extra = (req.stdin?.length ?? 0) + JSON.stringify([req.args ?? [], req.env ?? {}]).length;
    if (extra > INLINE_SHIP_BYTES_MAX || this.placing.size >= PLACING_MAX) return this.id;
    return this.byLoad([this.id, ...live], this.loads(req.name))[0]!;
  }

  /**
   * Starts a VM whose primary placement put on `target`: ships the module
   * (inline in the request when small, else in chunks as for a backup), sends
   * 'start-fwd' and waits for the answer, which it returns or throws (an
   * FtvmError with the code the target raised).
   * FTVM_ERR_UNAVAILABLE when the link fails, the target goes silent, or it
   * does not answer within START_FWD_TIMEOUT_MS.
   */
  private async startElsewhere(target: string, req: StartRequest, module: Uint8Array, hash: string): Promise<{ gen: number; primary: string; backup: string | null }> {
    this.placing.set(target, (this.placing.get(target) ?? 0) + 1);
    try {
      const inline = module.length <= INLINE_SHIP_BYTES_MAX;
      if (!inline) {
        try {
          await this.shipModuleItems(target, req.name, [{ hash, kind: 'module', bytes: module }]);
        } catch (e) {
          throw new HostError('FTVM_ERR_UNAVAILABLE', `the module could not be sent to ${target}, where the VM was placed: ${(e as Error).message}`);
        }
      }
      const id = ++this.startIds;
      const r = await new Promise<PeerMessageOf<'start-res'>>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.startWaits.delete(id);
          reject(new HostError('FTVM_ERR_UNAVAILABLE', `${target}, where the VM was placed, did not answer within ${START_FWD_TIMEOUT_MS} ms`));
        }, START_FWD_TIMEOUT_MS);
        this.startWaits.set(id, { host: target, resolve, reject, timer });
        const m: WireMessage = { t: 'start-fwd', id, vm: req.name, moduleHash: hash, ...(inline ? { module } : {}) };
        for (const k of ['args', 'env', 'stdin', 'memoryMiB', 'cpuPercent', 'publish'] as const) if (req[k] !== undefined) m[k] = req[k];
        if (!this.toPeer(target, m)) {
          clearTimeout(timer);
          this.startWaits.delete(id);
          reject(new HostError('FTVM_ERR_UNAVAILABLE', `no link to ${target}, where the VM was placed`));
        }
      });
      if (r.code !== null) throw new FtvmError(isErrorCode(r.code) ? r.code : 'FTVM_ERR_UNAVAILABLE', `${target}: ${String(r.message)}`);
      this.learnPrimary(req.name, r.gen!, r.primary!);
      return { gen: r.gen!, primary: r.primary!, backup: r.backup };
    } finally {
      const n = (this.placing.get(target) ?? 1) - 1;
      if (n > 0) this.placing.set(target, n);
      else this.placing.delete(target);
    }
  }

  /** A peer placed a VM's primary here: start it (never placed again) and answer. */
  private onStartForwarded(from: string, m: PeerMessageOf<'start-fwd'>): void {
    const answer = (r: { gen: number; primary: string; backup: string | null } | null, e?: Error): void =>
      void this.toPeer(from, {
        t: 'start-res',
        id: m.id,
        gen: r?.gen ?? null,
        primary: r?.primary ?? null,
        backup: r?.backup ?? null,
        code: e ? String((e as { code?: unknown }).code ?? 'FTVM_ERR_UNAVAILABLE') : null,
        message: e ? e.message : null,
      });
    const req: StartRequest = { name: m.vm, host: this.id, ...(m.module ? { module: m.module } : { moduleHash: m.moduleHash }) };
    if (m.module && createHash('sha256').update(m.module).digest('hex') !== m.moduleHash) return answer(null, new HostError('FTVM_ERR_BAD_REQUEST', 'the module sent does not match its hash'));
    for (const k of ['args', 'env', 'stdin', 'memoryMiB', 'cpuPercent', 'publish'] as const) if (m[k] !== undefined) (req as unknown as Record<string, unknown>)[k] = m[k];
    this.startVm(req).then((r) => answer(r), (e: Error) => answer(null, e));
  }

  private pickBackupHost(vmName: string): string | null {
    // the live peer with the fewest replicas, then the least memory, as the cluster view says
    return this.byLoad(this.livePeers(), this.loads(vmName))[0] ?? null;
  }

  private announce(vm: Vm): void {
    this.primaries.set(vm.name, { gen: vm.gen, host: this.id });
    for (const l of this.links.values()) if (l.ready) this.toPeer(l.id, { t: 'primary', vm: vm.name, gen: vm.gen, host: this.id, publish: vm.publish });
    if (vm.publish.length) this.ingress.publish(vm.name, vm.publish);
    this.ingress.newPrimary(vm.name);
  }

  /**
   * Makes this host the backup of a VM, as the primary's host asks: the
   * modules named by hash must be here (shipModules sent them before), the
   * metered one is compiled off this thread (WebAssembly.compile), then the
   * replica starts, from boot or from the snapshot whose chunks came before.
   * A newer request for the same VM overtakes one still being made.
   */
  private async makeBackup(from: string, m: PeerMessageOf<'backup'>): Promise<void> {
    const name = m.vm;
    const gen = m.gen;
    if ((this.tombstones.get(name) ?? 0) > gen) return; // deleted since
    const token = {};
    this.making.set(name, token);
    const old = this.vms.get(name);
    if (old) this.dropVm(old, 'replaced by a new backup');
    let snapshot: Snapshot | undefined;
    if (m.snapshot) {
      // the memory came before, chunk by chunk, into one buffer: it goes to the new replica's thread as it is (transferred, not copied)
      const s = this.snapshotsIn.get(`${name}/${gen}`);
      this.snapshotsIn.delete(`${name}/${gen}`);
      if (!s || s.from !== from || s.got !== s.memory.length) throw new Error(`the snapshot's memory did not arrive whole (${s?.got ?? 0} of ${s?.memory.length ?? '?'} bytes)`);
      // the stream is the memory, then the devices (shipSnapshot)
      const { memoryBytes, ...state } = m.snapshot as Omit<Snapshot, 'memory' | 'devices'> & { memoryBytes: unknown };
      if (typeof memoryBytes !== 'number' || !Number.isInteger(memoryBytes) || memoryBytes < 0 || memoryBytes > s.memory.length) throw new Error(`the snapshot's memoryBytes ${String(memoryBytes)} is not within the ${s.memory.length} bytes streamed`);
      const devices = unpackValue(s.memory.subarray(memoryBytes)) as Snapshot['devices'];
      snapshot = { ...state, memory: s.memory.subarray(0, memoryBytes), devices } as Snapshot;
      const ended = snapshot.streamsEnded as unknown;
      if (ended !== undefined && (!Array.isArray(ended) || ended.length > STREAMS_DONE_MAX || !ended.every((c) => Number.isInteger(c) && c >= 0 && c <= 0xffffffff))) throw new Error(`the snapshot's streamsEnded is not a list of at most ${STREAMS_DONE_MAX} connection ids`);
    }
    const { start, moduleHash, meteredHash } = m;
    try {
      let module: Uint8Array | null;
      let metered: Uint8Array | null;
      let compiled: WebAssembly.Module;
      if (m.module && m.metered && m.module.length + m.metered.length <= INLINE_SHIP_BYTES_MAX) {
        // small: made at once, with nothing awaited, so the backup exists as soon as its request arrived
        module = shared(m.module);
        metered = m.metered;
        if (createHash('sha256').update(module).digest('hex') !== moduleHash || createHash('sha256').update(metered).digest('hex') !== meteredHash) throw new Error('the modules sent do not match their hashes');
        compiled = new WebAssembly.Module(metered as Uint8Array<ArrayBuffer>);
      } else {
        const found = await this.localModule(moduleHash, 'module');
        module = found && shared(found);
        metered = await this.localModule(meteredHash, 'metered');
        if (!module || !metered) throw new Error(`the ${module ? 'metered module' : 'module'} ${(module ? meteredHash : moduleHash).slice(0, 12)} did not arrive`);
        compiled = await WebAssembly.compile(metered as Uint8Array<ArrayBuffer>);
        if (this.making.get(name) !== token || this.closed || (this.tombstones.get(name) ?? 0) > gen) return; // overtaken or deleted meanwhile
      }
      if (start.module !== moduleHash) throw new Error('the start entry names another module');
      const { cpuPercent, publish } = m;
      const handle = new ReplicaHandle({ vm: name, module, compiled, start, role: 'backup', snapshot, cpuPercent });
      const vm = this.newVm({ name, gen, role: 'backup', state: 'following', module, metered, moduleHash, meteredHash, compiled, start, handle, cpuPercent, publish });
      vm.primary = from;
      if (snapshot?.outputEnds) vm.outEnds = new Map(snapshot.outputEnds);
      if (snapshot?.streamsEnded) vm.streamsEnded = new Set(snapshot.streamsEnded);
      const rings = snapshot ? this.ringsIn.get(`${name}/${gen}`) : undefined;
      this.ringsIn.delete(`${name}/${gen}`);
      for (const k of ['stdout', 'stderr'] as const) {
        const img = rings?.[k];
        if (img && Number.isSafeInteger(img.start) && img.start >= 0 && img.bytes instanceof Uint8Array) vm[k].restore(img);
      }
      vm.lastSeq = snapshot ? snapshot.seq - 1 : -1;
      vm.replayedSeq = vm.lastSeq;
      vm.check = new EntryChecker(vm.lastSeq + 1, snapshot ? snapshot.count : 0n);
      this.primaries.set(name, { gen, host: from });
      // Tell the primary the backup is in place (and where it starts), before any new entry.
      vm.replayCount = snapshot ? snapshot.count : 0n;
      this.toPeer(from, { t: 'ack', vm: name, gen, seq: vm.lastSeq, count: vm.replayCount });
      this.note({ event: 'backup-following', vm: name, primary: from, from: snapshot ? 'snapshot' : 'boot', seq: snapshot ? snapshot.seq : 0 });
    } finally {
      if (this.making.get(name) === token) this.making.delete(name);
    }
  }

  private fromReplica(vm: Vm, m: FromReplica): void {
    if (this.vms.get(vm.name) !== vm) return;
    switch (m.t) {
      case 'log': {
        vm.primaryCount = m.count;
        vm.loggedSeq = m.last;
        vm.lag.mark(m.count);
        for (const o of m.outputs) this.streamOffset(vm, o);
        for (const conn of m.ended ?? []) this.streamEnded(vm, conn);
        if (m.inputs) this.inputDelivered(vm, m.inputs);
        if (vm.alone) {
          for (const o of m.outputs) this.release(vm, o);
          return;
        }
        vm.frames.push({ first: m.first, last: m.last, frame: m.frame });
        vm.unackedBytes += m.frame.length;
        // (before the handle takes the frame out of the posted count: the worker's sum never dips)
        this.publishUnacked(vm);
        vm.rule.hold(m.outputs);
        // the held outputs past their bounds: the guest waits at its next flush (the log's bound is the worker's, at each flush)
        if (vm.rule.held > HELD_OUTPUTS_MAX || vm.rule.heldBytes > HELD_BYTES_MAX) {
          if (vm.handle.setStall(true)) vm.stalls++;
        }
        if (vm.backup && vm.backupReady) {
          vm.logBytes += m.frame.length;
          this.toPeer(vm.backup, { t: 'log', vm: vm.name, gen: vm.gen, first: m.first, last: m.last, frame: m.frame, released: vm.released });
        }
        return;
      }
      case 'progress':
        vm.replayCount = m.count;
        if (m.seq > vm.replayedSeq) vm.replayedSeq = m.seq;
        this.payAck(vm);
        return;
      case 'input-end':
        this.inputDelivered(vm, [[m.conn, m.end]]);
        return;
      case 'digest':
        vm.digests.push({ count: String(m.count), digest: Buffer.from(m.digest).toString('hex'), verified: m.verified, gen: vm.gen });
        if (vm.digests.length > VM_DIGESTS_KEPT_MAX) vm.digests.shift();
        return;
      case 'input-gap':
        this.toIngress(m.conn, { t: 'in-resend', vm: vm.name, conn: m.conn, from: m.end });
        return;
      case 'live': {
        this.note({ event: 'live', vm: vm.name, gen: vm.gen, seq: m.seq, count: String(m.count) });
        // where the VM is, said at once: an idle guest logs nothing that would say it
        if (m.count > vm.primaryCount) vm.primaryCount = m.count;
        // Outputs the old primary may not have released: clients drop the ones they saw (same sequence number).
        this.releaseUnreleased(vm);
        this.readopt(vm.name);
        return;
      }
      case 'handed-over': {
        // paused for a planned switch: the messages it had not delivered go first when the held ones go on
        const back: HeldInput[] = m.inbox.map(({ msg, off }) => ({ conn: msg.conn, data: msg.bytes, eof: msg.eof, ...(off !== undefined ? { off } : {}), ...(msg.window !== undefined ? { window: msg.window } : {}) }));
        if (vm.state === 'handing-over' && vm.held) {
          vm.handedOverSeq = m.seq;
          vm.held.msgs.unshift(...back);
          vm.held.bytes += back.reduce((n, b) => n + b.data.length, 0);
          this.migrations.get(vm.name)?.wake?.();
        } else {
          // the switch was called off before the replica paused (it was told to resume after): they go back to it
          for (const b of back) vm.handle.sendInput({ msg: { conn: b.conn, bytes: b.data, eof: b.eof, ...(b.window !== undefined ? { window: b.window } : {}) }, off: b.off });
        }
        return;
      }
      case 'snapshot':
        if (vm.recreate) {
          vm.recreate.pauseMs = m.pauseMs;
          vm.recreate.waitMs = performance.now() - vm.recreate.askedAt;
        }
        void this.shipSnapshot(vm, m.snapshot, m.digestTail);
        return;
      case 'ended':
        vm.ended = true;
        {
          const count = m.result.count === null ? '-1' : String(m.result.count);
          vm.end = m.result.outcome === 'exit' ? { outcome: 'exit', status: m.result.exitCode ?? 0, count } : m.result.outcome === 'trap' ? { outcome: 'trap', message: m.result.trap ?? '', count } : { outcome: m.result.outcome, count };
        }
        // the replay reached the end: the primary measures no lag against a count the backup never reports
        if (vm.role === 'backup' && m.result.count !== null) vm.replayCount = m.result.count;
        if (vm.role === 'backup') this.payAck(vm);
        if (vm.role === 'primary') this.endLag(vm);
        this.wakeReaders(vm);
        this.note({ event: 'ended', vm: vm.name, role: vm.role, outcome: m.result.outcome, exitCode: m.result.exitCode, count: String(m.result.count) });
        return;
      case 'error':
        this.note({ event: 'replica-failed', vm: vm.name, role: vm.role, code: m.code, message: m.message });
        if (vm.role === 'backup' && vm.primary) this.toPeer(vm.primary, { t: 'backup-failed', vm: vm.name, gen: vm.gen });
        this.dropVm(vm, m.code);
        return;
      case 'stopped':
        return;
    }
  }

  /** A backup whose ack waits (see the 'log' case) acknowledges once its replay is within half the bound (or ended). */
  private payAck(vm: Vm): void {
    if (!vm.ackOwed || !vm.primary || (vm.lastSeq - vm.replayedSeq > BACKUP_BEHIND_ENTRIES_MAX / 2 && !vm.ended)) return;
    vm.ackOwed = false;
    this.toPeer(vm.primary, { t: 'ack', vm: vm.name, gen: vm.gen, seq: vm.lastSeq, count: vm.replayCount });
  }

  /** A send on a TCP connection through a published port gets its offset in the connection's outgoing stream (the same on every replica: it follows the log). */
  private streamOffset(vm: Vm, o: Output): void {
    if (o.kind !== 'send' || !isStreamConn(o.conn)) return;
    o.off = vm.outEnds.get(o.conn) ?? 0;
    if (o.eof) {
      vm.outEnds.delete(o.conn);
      vm.streamsEnded.delete(o.conn);
    } else vm.outEnds.set(o.conn, o.off + o.bytes.length);
  }

  /**
   * The log delivered the end of a TCP connection's input (its client ended
   * its side, or its ingress host died). The guest may still send on it (a
   * client that half-closed reads on), so its output offset stays, but a
   * guest that never closes its side (the raw kv reactor) would leave one
   * per connection it ever served: only the newest STREAMS_DONE_MAX ended
   * connections keep theirs. The ingress resets a half-closed connection long
   * before (INGRESS_CLOSED_LINGER_MS, INGRESS_HALF_CLOSED_MAX). Every replica's host
   * sees the same ends and sends in the same order (each frame's sends, then
   * its ends) and a snapshot carries the order, so all forget the same ones.
   */
  private streamEnded(vm: Vm, conn: number): void {
    vm.streamsEnded.delete(conn);
    vm.streamsEnded.add(conn);
    if (vm.streamsEnded.size <= STREAMS_DONE_MAX) return;
    const oldest = vm.streamsEnded.values().next().value!;
    vm.streamsEnded.delete(oldest);
    vm.outEnds.delete(oldest);
  }

  /**
   * The primary's replica delivered stream input through the given [conn,
   * end] offsets: the ingress hosts may forget it once the backup has the log
   * so far (at once when the VM runs alone: then no other copy can be made).
   */
  private inputDelivered(vm: Vm, acks: [number, number][]): void {
    if (vm.alone || !vm.backup) return this.ackInputs(acks);
    vm.rule.inputDelivered(vm.loggedSeq, acks);
  }

  private ackInputs(acks: [number, number][]): void {
    const bySlot = new Map<number, [number, number][]>();
    for (const a of acks) {
      const list = bySlot.get(a[0] >>> 24);
      if (list) list.push(a);
      else bySlot.set(a[0] >>> 24, [a]);
    }
    for (const list of bySlot.values()) this.toIngress(list[0]![0], { t: 'in-ack', acks: list });
  }

  /** A message to the host whose ingress owns stream connection `conn` (the slot in its high byte). */
  private toIngress(conn: number, m: PeerMessageOf<'in-ack' | 'in-resend'>): void {
    const slot = conn >>> 24;
    // this host's own connections: the same handler a peer's message goes to
    if (slot === this.slot) return this.onPeerMessage(this.id, m);
    const owner = this.members.find((h) => h.slot === slot)?.id;
    if (owner) this.toPeer(owner, m as unknown as WireMessage);
  }

  /** The backup acknowledged the log through `seq`: release outputs, drop frames, measure the lag. */
  private acked(vm: Vm, seq: number, replayCount: bigint): void {
    if (seq > vm.acked) vm.acked = seq;
    if (vm.recreate && vm.recreate.ms === null && vm.recreate.memoryBytes > 0) vm.recreate.ms = performance.now() - vm.recreate.askedAt;
    while (vm.frames.length && vm.frames[0]!.last <= vm.acked) vm.unackedBytes -= vm.frames.shift()!.frame.length;
    this.publishUnacked(vm);
    const safe = vm.rule.acked(vm.acked);
    if (vm.rule.held < HELD_OUTPUTS_MAX / 2 && vm.rule.heldBytes < HELD_BYTES_MAX / 2) vm.handle.setStall(false);
    for (const o of safe.outputs) this.release(vm, o);
    if (safe.inputs.length) this.ackInputs(safe.inputs);
    // lag: how long ago the primary was where the backup is now
    vm.lag.acked(replayCount);
    this.endLag(vm);
    this.throttle(vm);
    if (vm.end) this.wakeReaders(vm);
    this.migrations.get(vm.name)?.wake?.();
  }

  /** An ended VM whose backup acknowledged its end has no lag: nothing is left to replay. */
  private endLag(vm: Vm): void {
    if (this.endReleased(vm)) vm.lag.clear();
  }

  /** Slows the primary gradually while the backup lags more than the target, and releases it again. */
  private throttle(vm: Vm): void {
    const t = vm.handle.throttle;
    const next = nextThrottleUs(t, vm.lag.lagMs, this.opts.lagTargetMs);
    if (next !== t) vm.handle.setThrottle(next);
  }

  private release(vm: Vm, o: Output): void {
    if (o.seq > vm.released) vm.released = o.seq;
    vm.releasedCount++;
    if (o.kind === 'output') {
      // A guest's stdout and stderr, once released like any output, go to its rings (and the host's log).
      this.ring(vm, o);
      this.logGuest(vm, o);
      return;
    }
    this.retain(vm, o);
    this.deliverOut(vm.name, vm.gen, o);
  }

  /**
   * Says a released write on fd 1 or 2 in the host's log, at most
   * GUEST_LOG_BYTES_PER_S of each VM's output a second: the rest is counted,
   * said in one line the next second, and read from the VM's rings (the API).
   * A guest writing in a tight loop would otherwise fill the log's disk and
   * block the event loop on the log's pipe.
   */
  private logGuest(vm: Vm, o: Output): void {
    const now = performance.now();
    const g = vm.guestLog;
    if (now - g.since >= 1000) {
      if (g.skipped) this.say(`${vm.name}: ${g.skipped} bytes of its output not in this log (more than ${GUEST_LOG_BYTES_PER_S} a second); GET /v1/vms/${vm.name}/stdout has them`);
      g.since = now;
      g.bytes = 0;
      g.skipped = 0;
    }
    if (g.bytes + o.bytes.length > GUEST_LOG_BYTES_PER_S) {
      g.skipped += o.bytes.length;
      return;
    }
    g.bytes += o.bytes.length;
    this.say(`${vm.name} fd ${o.fd}: ${Buffer.from(o.bytes).toString('utf8').trimEnd()}`);
  }

  /** Appends a released write on fd 1 or 2 to the VM's stdout or stderr ring, and wakes its readers. */
  private ring(vm: Vm, o: Output): void {
    (o.fd === 2 ? vm.stderr : vm.stdout).append(o.bytes);
    this.wakeReaders(vm);
  }

  private wakeReaders(vm: Vm): void {
    for (const w of [...vm.outWaiters]) w();
  }

  /**
   * A backup learns that its primary released the outputs through `released`
   * (a sequence number): those of them it saw in the log go to its rings, in
   * order, so its rings hold the same bytes as the primary's.
   */
  private primaryReleasedTo(vm: Vm, released: number): void {
    if (released > vm.primaryReleased) vm.primaryReleased = released;
    let i = 0;
    while (i < vm.unreleased.length && vm.unreleased[i]!.seq <= vm.primaryReleased) {
      const o = vm.unreleased[i++]!;
      if (o.kind === 'output') this.ring(vm, o);
    }
    if (i) vm.unreleased.splice(0, i);
    if (vm.end) this.wakeReaders(vm);
  }

  /**
   * A backup becomes the primary: it releases what its log holds and the old
   * primary may not have released (clients drop the NIC outputs they saw, by
   * sequence number; the rings take only what they lack).
   */
  private releaseUnreleased(vm: Vm): void {
    this.primaryReleasedTo(vm, vm.primaryReleased);
    const unreleased = new Set(vm.unreleased);
    this.dropRetained(vm, (o) => unreleased.has(o));
    const outs = vm.unreleased;
    vm.unreleased = [];
    for (const o of outs) this.release(vm, o);
    this.wakeReaders(vm);
  }

  /**
   * A peer sent log or an ack of VM `name` in generation `gen`, which this host
   * knows to be over: it hears of the newer generation (a 'primary' message) or
   * of the VM's deletion (a 'stop'), and fences its replica off (learnPrimary,
   * stopped). Generation numbers as in the arbiter (arbiter.ts); the rule is the
   * FT paper's: only the replica that won the test-and-set may go on.
   */
  private fenceOff(from: string, name: string, gen: number): void {
    const tomb = this.tombstones.get(name);
    if (tomb !== undefined && tomb > gen) {
      this.toPeer(from, { t: 'stop', vm: name, gen: tomb });
      return;
    }
    const p = this.primaries.get(name);
    if (p && p.gen > gen) this.toPeer(from, { t: 'primary', vm: name, gen: p.gen, host: p.host });
  }

  /**
   * After a pause of `pausedMs`: every primary here whose generation the arbiter
   * gave to another host is dropped (fenced off). An arbiter that cannot be
   * reached drops nothing: the Output Rule still holds the primary's outputs
   * until its backup acknowledges, which a backup gone live never does.
   */
  private checkGenerations(pausedMs: number): void {
    // (a host without primaries has nothing to check: its start-up work alone may have held the loop)
    const primaries = [...this.vms.values()].filter((vm) => vm.role === 'primary' && !vm.claiming);
    if (!primaries.length) return;
    this.say(`paused for ${Math.round(pausedMs)} ms (more than the failure timeout): checking the generation of ${primaries.length === 1 ? 'its primary' : `its ${primaries.length} primaries`}`);
    for (const vm of primaries) {
      this.opts.arbiter.latest(vm.name).then(
        (l) => {
          if (!l || this.vms.get(vm.name) !== vm) return;
          if (l.gen > vm.gen || (l.gen === vm.gen && l.host !== this.id)) {
            this.dropVm(vm, `fenced off: the arbiter gave generation ${l.gen} to ${l.host} while this host was paused`);
          }
        },
        (e: Error) => this.say(`${vm.name}: arbiter unreachable after a pause (${e.message}); its outputs wait for its backup`),
      );
    }
  }

  /**
   * Peer `from` says its process is `boot`. A different one than before: it
   * restarted (perhaps faster than the failure timeout) and holds none of the
   * replicas it held, so each replica here whose partner it was acts as on a
   * partner's death, at once.
   */
  /**
   * Whether a connection whose handshake named peer process `boot` is one of
   * an earlier process of peer `from` than the one heard since: what a dead
   * process had queued can still arrive (its kernel sends a closed socket's
   * data once a cut link heals), and taken for news it would undo what the
   * newer process said (its boot, so a lost VM would read as running). Such
   * a connection is closed and its messages dropped.
   */
  private staleConnection(from: string, boot: string | null): boolean {
    if (boot === null || this.boots.get(from) === boot) return false;
    this.say(`dropped a connection of an earlier process of ${from} (boot ${boot.slice(0, 8)}): ${from} restarted since`);
    return true;
  }

  private heardBoot(from: string, boot: string): void {
    const before = this.boots.get(from);
    this.boots.set(from, boot);
    if (before === undefined || before === boot) return;
    this.say(`${from} restarted: the replicas it held are gone`);
    for (const vm of this.vms.values()) {
      if (vm.claiming) continue;
      const partner = vm.role === 'primary' ? vm.backup : vm.primary;
      if (partner !== from) continue;
      this.note({ event: 'partner-silent', vm: vm.name, role: vm.role, partner });
      void (vm.role === 'primary' ? this.backupLost(vm) : this.primaryLost(vm));
    }
  }

  /**
   * FTVM_ERR_EXISTS for a start under name `name`, whose latest generation the
   * arbiter gave to `last.host`; the message says when the VM is lost (both
   * replicas gone: its owner is this host, which has no replica of it, or the
   * cluster view says so) and that DELETE frees the name.
   */
  private exists(name: string, last: { gen: number; host: string }): HostError {
    const lost = this.ownerHasNoReplica(name, last) || this.vmInfos().some((v) => v.name === name && v.state === 'lost');
    return new HostError('FTVM_ERR_EXISTS', lost ? `VM ${name} exists, lost: both its replicas are gone (generation ${last.gen} was ${last.host}'s); DELETE it to use its name again` : `VM ${name} exists already`);
  }

  /**
   * Whether VM `name`, whose latest generation the arbiter gave to
   * `last.host`, has no primary there: that host is this one, without a
   * replica of it, or a live peer linked for 2 INFO_EVERY_MS that has not
   * announced it (a primary's host announces it every INFO_EVERY_MS). A
   * backup elsewhere would have claimed the next generation, so the VM is
   * lost. False when the owner is not reachable now: it may still run it.
   */
  private ownerHasNoReplica(name: string, last: { gen: number; host: string }): boolean {
    if (this.primaries.get(name)?.host === last.host) return false;
    if (last.host === this.id) return !this.vms.has(name);
    const link = this.links.get(last.host);
    return !!link?.ready && this.alive(last.host) && performance.now() - link.readyAt >= 2 * INFO_EVERY_MS;
  }

  /**
   * VM `name` as the arbiter knows it, when no host this one hears reports
   * it and its owner has no replica of it (ownerHasNoReplica): reported
   * lost, so that a host restarted after the VM's replicas were gone says
   * so rather than "no such VM". Null otherwise (also when the arbiter holds
   * no live generation of it). Errors: ArbiterError (FTVM_ERR_ARBITER).
   */
  async lostVmInfo(name: string): Promise<VmInfo | null> {
    if (this.primaries.has(name)) return null;
    const last = await this.opts.arbiter.latest(name);
    if (!last || last.host === STOPPED || !this.ownerHasNoReplica(name, last)) return null;
    return { ...blankInfo(name, last.gen, last.host), state: 'lost' };
  }

  /** Another host runs the primary of a VM in generation `gen`. */
  private learnPrimary(name: string, gen: number, host: string): void {
    // news of a VM from before it was deleted (it crossed the stop on the way)
    if ((this.tombstones.get(name) ?? 0) > gen) return;
    // A replica here of an older generation was fenced off (a paused or cut-off primary, a backup whose
    // primary moved on): it stops at once and says so, instead of taking input it can never release.
    const mine = this.vms.get(name);
    // (messages a planned switch held go to the primary that runs now, before anything else of theirs can)
    if (mine && mine.gen < gen && host !== this.id && mine.held) this.unhold(mine, host);
    if (mine && mine.gen < gen && host !== this.id) this.dropVm(mine, `fenced off: generation ${gen} runs on ${host}, this replica is of generation ${mine.gen}`);
    const known = this.primaries.get(name);
    if (known && (known.gen > gen || (known.gen === gen && known.host === host))) return;
    this.primaries.set(name, { gen, host });
    this.readopt(name);
    this.ingress.newPrimary(name);
  }

  /** A VM has a new primary: clients that came back here get from it what they missed. */
  private readopt(name: string): void {
    for (const [conn, vms] of this.adopted) {
      const after = vms.get(name);
      if (after !== undefined) this.adopt(name, conn, after);
    }
  }

  /**
   * A NIC output to the host its client is on (it started there, or came back
   * there), with the generation that released it: a client (FtClient) checks
   * that one output sequence number never carries two payloads.
   */
  private deliverOut(name: string, gen: number, o: Output): void {
    const msg = { t: 'recv', vm: name, gen, seq: o.seq, conn: o.conn, data: o.bytes, eof: o.eof, off: o.off };
    const owner = this.connOwners.get(o.conn) ?? this.members.find((h) => h.slot === o.conn >>> 24)?.id;
    if (owner === this.id || (owner === undefined && o.conn >>> 24 === this.slot)) this.toClient(o.conn, msg);
    else if (owner) this.toPeer(owner, { ...msg, t: 'out' });
  }

  private retain(vm: Vm, o: Output): void {
    if (o.kind !== 'send') return;
    vm.retained.push(o);
    vm.retainedBytes += o.bytes.length;
    if (vm.retained.length <= RETAIN_MAX && vm.retainedBytes <= RETAIN_BYTES_MAX) return;
    // over a bound: drop the oldest quarter at once, so the cost per output stays constant
    let drop = 0;
    while (vm.retained.length - drop > (RETAIN_MAX * 3) / 4 || vm.retainedBytes > (RETAIN_BYTES_MAX * 3) / 4) vm.retainedBytes -= vm.retained[drop++]!.bytes.length;
    vm.retained.splice(0, drop);
  }

  private dropRetained(vm: Vm, which: (o: Output) => boolean): void {
    vm.retained = vm.retained.filter((o) => !which(o));
    vm.retainedBytes = vm.retained.reduce((n, o) => n + o.bytes.length, 0);
  }

  /**
   * A client of this host has (or had) outputs of `name` on `conn`: tell the VM's
   * primary to send them here from now on, and to resend what it kept after `after`.
   */
  private adopt(name: string, conn: number, after: number): void {
    const vm = this.vms.get(name);
    if (vm && vm.role === 'primary' && !vm.claiming) return this.resend(vm, conn, after, this.id);
    const p = this.primaries.get(name);
    if (p && p.host !== this.id) this.toPeer(p.host, { t: 'adopt', vm: name, conn, after, owner: this.id });
  }

  private resend(vm: Vm, conn: number, after: number, owner: string): void {
    this.setConnOwner(conn, owner);
    for (const o of vm.retained) if (o.conn === conn && o.seq > after) this.deliverOut(vm.name, vm.gen, o);
  }

  private dropVm(vm: Vm, why: string): void {
    if (this.vms.get(vm.name) !== vm) return;
    this.transition(vm, 'stopped');
    this.vms.delete(vm.name);
    if (vm.backupRetry) clearTimeout(vm.backupRetry);
    vm.backupRetry = null;
    vm.ended = true;
    this.wakeReaders(vm);
    void vm.handle.terminate();
    // messages a migration held go to the primary known, or to the partner that is likely to be it
    if (vm.held) this.unhold(vm, vm.role === 'primary' ? vm.backup : vm.primary);
    this.note({ event: 'replica-dropped', vm: vm.name, role: vm.role, why });
    this.migrations.get(vm.name)?.wake?.();
  }

  /**
   * Moves a replica to state `to`, asserting the protocol allows it
   * (replica-state.ts); a primary that won its generation as a backup takes
   * the primary's role. A forbidden move stops the host, FTVM_ERR_INVARIANT (a bug: the
   * host stops rather than go on from a state the protocol cannot be in).
   */
  private transition(vm: Vm, to: ReplicaState): void {
    const from = vm.state;
    assertTransition(vm.name, from, to);
    vm.state = to;
    if (from === 'going-live' && to === 'alone') vm.role = 'primary';
    // with a backup or without one: the log's bound in force changes
    this.publishUnacked(vm);
  }

  /**
   * Tells the replica's worker the log the backup has not acknowledged and
   * the bound it stalls its guest at (replay/engine.ts logStall): `--unacked-log-max`
   * for a primary with a backup (or claiming a generation to go on without
   * it), none for one alone or a backup. Called wherever either changes.
   */
  private publishUnacked(vm: Vm): void {
    vm.handle.setUnackedLog(vm.unackedBytes, vm.role === 'primary' && !vm.alone ? this.opts.unackedLogMax : 0);
  }

  /**
   * Claims generation gen+1, retrying every 200 ms while the arbiter cannot
   * be reached; never goes live without it. 'resumed' when `back` says, after
   * an attempt the arbiter did not answer, that the partner whose silence
   * started the claim is heard again (the same process): nothing was claimed,
   * and the pair goes on as it was.
   */
  private async claimNext(vm: Vm, back?: () => boolean): Promise<boolean | 'resumed'> {
    let said = 0;
    for (;;) {
      if (this.closed || this.vms.get(vm.name) !== vm) return false;
      try {
        return await this.opts.arbiter.claim(vm.name, vm.gen + 1, this.id);
      } catch (e) {
        if (back?.()) return 'resumed';
        // once a second is enough to say it
        if (performance.now() - said >= 1000) {
          said = performance.now();
          this.say(`${vm.name}: arbiter unreachable (${(e as Error).message}); not going live`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** The pair goes on: the partner was heard again before the arbiter answered (see claimNext). */
  private resumePair(vm: Vm): void {
    const partner = vm.role === 'primary' ? vm.backup : vm.primary;
    this.transition(vm, vm.role === 'primary' ? 'live' : 'following');
    this.say(`${vm.name}: ${partner} is heard again and the arbiter was not reached: ${vm.role} of generation ${vm.gen} again, nothing claimed`);
    // the other hosts heard "failing-over" while it claimed: they hear "running" now, not at the next period
    if (vm.role === 'primary') this.tell(vm);
  }

  private async primaryLost(vm: Vm, back?: () => boolean): Promise<void> {
    this.transition(vm, 'going-live');
    const won = await this.claimNext(vm, back);
    if (this.vms.get(vm.name) !== vm) return;
    if (won === 'resumed') return this.resumePair(vm);
    if (!won) return this.dropVm(vm, 'lost the arbiter to another replica');
    vm.gen++;
    this.transition(vm, 'alone');
    vm.primary = null;
    vm.handle.send({ t: 'golive' });
    if (vm.publish.length) for (const slot of this.deadSlots) vm.handle.send({ t: 'slot-gone', slot });
    // A replica that ran to the end sends no 'live': what its log holds is released now.
    if (vm.end) {
      this.releaseUnreleased(vm);
      this.readopt(vm.name);
    }
    this.failovers++;
    this.announce(vm);
    this.tell(vm);
    this.note({ event: 'generation-won', vm: vm.name, gen: vm.gen, role: 'backup' });
    this.recreateBackup(vm);
  }

  private async backupLost(vm: Vm, back?: () => boolean): Promise<void> {
    // a primary paused for a planned switch goes on once it won (or kept) its generation
    const paused = vm.state === 'handing-over';
    this.transition(vm, 'going-alone');
    const won = await this.claimNext(vm, back);
    if (this.vms.get(vm.name) !== vm) return;
    if (won === 'resumed') {
      this.resumePair(vm);
      if (paused) this.resumeFromHandover(vm);
      return;
    }
    if (!won) return this.dropVm(vm, 'lost the arbiter: the backup went live');
    vm.gen++;
    this.transition(vm, 'alone');
    vm.backup = null;
    vm.backupReady = false;
    vm.frames = [];
    vm.unackedBytes = 0;
    this.publishUnacked(vm);
    vm.handle.setStall(false);
    // no backup, no lag: a primary slowed for one that fell behind computes at full speed again
    vm.lag.clear();
    vm.handle.setThrottle(0);
    const all = vm.rule.releaseAll();
    for (const o of all.outputs) this.release(vm, o);
    if (all.inputs.length) this.ackInputs(all.inputs);
    this.announce(vm);
    this.tell(vm);
    this.note({ event: 'generation-won', vm: vm.name, gen: vm.gen, role: 'primary' });
    if (paused) this.resumeFromHandover(vm);
    this.recreateBackup(vm);
  }

  /** Tries recreateBackup again in `ms`. One retry timer per VM at most: a new one replaces the one pending, and a try that goes ahead clears it. */
  private recreateBackupLater(vm: Vm, ms: number): void {
    if (vm.backupRetry) clearTimeout(vm.backupRetry);
    vm.backupRetry = setTimeout(() => {
      vm.backupRetry = null;
      if (this.vms.get(vm.name) === vm && vm.alone && vm.snapshotFor === null && !vm.claiming) this.recreateBackup(vm);
    }, ms);
  }

  /** Asks the primary replica for a snapshot, for a new backup on another host: a reactor's at its next idle moment, a command guest's at its next input call (runtime/unwind.ts). */
  private recreateBackup(vm: Vm): void {
    if (vm.end) return; // an ended guest needs no backup
    if (!snapshottable(vm.compiled)) {
      this.say(`${vm.name}: its module cannot be snapshotted while it runs (a command guest metered without Asyncify): it runs without a backup`);
      return;
    }
    const retry = (ms: number): void => this.recreateBackupLater(vm, ms);
    if (vm.backupRetry) {
      clearTimeout(vm.backupRetry);
      vm.backupRetry = null;
    }
    // a migration's target when it is live, else placement's choice
    const target = vm.backupOn !== null && this.livePeers().includes(vm.backupOn) ? vm.backupOn : this.pickBackupHost(vm.name);
    if (!target) return retry(500);
    vm.snapshotFor = target;
    this.transition(vm, 'recreating-backup');
    vm.recreate = { memoryBytes: 0, pauseMs: 0, waitMs: 0, ms: null, askedAt: performance.now() };
    // The modules go first, so the primary pauses for its snapshot only once the new backup's host has them.
    const gen = vm.gen;
    const small = vm.module.length + vm.metered.length <= INLINE_SHIP_BYTES_MAX;
    (small ? Promise.resolve() : this.shipModules(target, vm)).then(
      () => {
        if (this.vms.get(vm.name) === vm && vm.gen === gen && vm.snapshotFor === target) vm.handle.send({ t: 'snapshot', id: ++this.snapshotIds });
      },
      (e: Error) => {
        if (this.vms.get(vm.name) !== vm || vm.gen !== gen || vm.snapshotFor !== target) return;
        this.say(`${vm.name}: no new backup on ${target}: ${e.message}`);
        vm.snapshotFor = null;
        this.transition(vm, 'alone');
        retry(BACKUP_RETRY_MS);
      },
    );
  }

  /**
   * Streams a primary's snapshot to the host chosen for its new backup
   * (`vm.snapshotFor`), then asks it to make the backup. The primary counts as
   * paired with the new backup from the start: the log after the snapshot is
   * kept for it (sent once it acknowledges) and its outputs wait for that
   * acknowledgement, as the Output Rule wants. The memory goes in 'snapchunk'
   * frames of SNAPSHOT_CHUNK bytes, each written only when the link has
   * drained to SNAPSHOT_QUEUED_MAX, with a turn of the event loop between
   * chunks: heartbeats, acks and other VMs' log frames keep flowing. The
   * memory's SHA-256 is computed here chunk by chunk as it leaves (with the
   * worker's `digestTail` it is the state digest the new backup checks), so
   * neither the paused guest nor one turn of this loop hashes it whole.
   * A link that goes down, or a backup that fails, ends the pairing
   * (backupLost: a new generation, and another try).
   */
  private async shipSnapshot(vm: Vm, snap: Omit<Snapshot, 'digest'>, digestTail: Uint8Array): Promise<void> {
    const target = vm.snapshotFor;
    if (!target || vm.role !== 'primary') return;
    if (!this.links.get(target)?.ready) {
      vm.snapshotFor = null;
      this.transition(vm, 'alone');
      this.recreateBackup(vm);
      return;
    }
    // what goes with the memory is taken now, as the log up to the snapshot left it (every frame before it came first):
    // the output offsets, and the output released before it (its own frame, up to 2 MiB) so the new backup's rings continue the same streams
    // The devices (stdin not read yet, the NIC's queues, files) follow the memory in the same chunks,
    // so the snapshot's size is bounded by the chunk and not by the frame whatever they hold.
    const { memory, devices, ...rest } = snap;
    const devicesBytes = packValue(devices);
    if (devicesBytes.length > SNAPSHOT_DEVICES_BYTES_MAX) {
      // (its TCP connections hold more unread input than a snapshot carries): the guest goes on alone, and a snapshot is tried again later
      this.say(`${vm.name}: no new backup on ${target}: the snapshot's devices take ${devicesBytes.length} bytes, more than ${SNAPSHOT_DEVICES_BYTES_MAX}; trying again in ${BACKUP_RETRY_MS} ms`);
      vm.snapshotFor = null;
      this.transition(vm, 'alone');
      this.recreateBackupLater(vm, BACKUP_RETRY_MS);
      return;
    }
    const total = memory.length + devicesBytes.length;
    const outputEnds = [...vm.outEnds];
    const streamsEnded = [...vm.streamsEnded];
    const rings = { stdout: vm.stdout.image(), stderr: vm.stderr.image() };
    const gen = vm.gen;
    const t0 = performance.now();
    vm.backup = target;
    vm.backupReady = false;
    this.transition(vm, 'live');
    vm.acked = snap.seq - 1;
    vm.frames = vm.frames.filter((f) => f.first >= snap.seq);
    vm.unackedBytes = vm.frames.reduce((n, f) => n + f.frame.length, 0);
    this.publishUnacked(vm);
    vm.since = performance.now();
    vm.snapshotFor = null;
    if (vm.recreate) vm.recreate.memoryBytes = memory.length;
    const current = (): boolean => this.vms.get(vm.name) === vm && vm.gen === gen && vm.role === 'primary' && vm.backup === target && !vm.claiming;
    const hash = createHash('sha256');
    try {
      // chunks of the memory, then of the devices (the one at the seam is shorter)
      for (let at = 0; at < total; ) {
        const l = this.links.get(target);
        if (!l?.ready || !l.sock) throw new Error(`the link to ${target} went down`);
        await drained(l.sock, SNAPSHOT_QUEUED_MAX); // and a turn of the event loop, always
        if (!current()) return; // overtaken: a newer backup, a failover, a stop
        if (this.links.get(target)?.sock !== l.sock || !l.ready || l.sock.destroyed) throw new Error(`the link to ${target} went down`);
        const bytes = at < memory.length ? memory.subarray(at, Math.min(at + SNAPSHOT_CHUNK, memory.length)) : devicesBytes.subarray(at - memory.length, at - memory.length + SNAPSHOT_CHUNK);
        if (at < memory.length) hash.update(bytes);
        send(l.sock, { t: 'snapchunk', vm: vm.name, gen, at, total, bytes });
        at += bytes.length;
      }
    } catch (e) {
      if (!current()) return;
      this.say(`${vm.name}: no new backup on ${target}: ${(e as Error).message}`);
      void this.backupLost(vm);
      return;
    }
    hash.update(digestTail);
    const meta = { ...rest, memoryBytes: memory.length, digest: new Uint8Array(hash.digest()), outputEnds, streamsEnded };
    const small = vm.module.length + vm.metered.length <= INLINE_SHIP_BYTES_MAX;
    this.toPeer(target, { t: 'rings', vm: vm.name, gen, rings });
    this.toPeer(target, { ...this.backupRequest(vm, meta), ...(small ? { module: vm.module, metered: vm.metered } : {}) });
    vm.backupOn = null;
    this.note({ event: 'backup-recreated', vm: vm.name, backup: target, seq: snap.seq, memoryBytes: memory.length, pauseMs: vm.recreate?.pauseMs ?? 0, waitMs: vm.recreate?.waitMs ?? 0 });
    this.say(`${vm.name}: snapshot of ${memory.length} bytes streamed to ${target} in ${Math.round(performance.now() - t0)} ms`);
  }

  /**
   * A chunk of a snapshot's memory from a primary's host: the first (at 0)
   * allocates the whole memory (`total` bytes, the memory then the devices, at most SNAPSHOT_BYTES_MAX + SNAPSHOT_DEVICES_BYTES_MAX) and
   * replaces any older snapshot of the VM still arriving; each one is copied
   * in at its offset, in order. Throws (the message is refused) on a chunk out
   * of order or past the end; the 'backup' request that follows then finds no
   * whole memory and fails.
   */
  private onSnapshotChunk(from: string, m: PeerMessageOf<'snapchunk'>): void {
    const key = `${m.vm}/${m.gen}`;
    if (m.at === 0) {
      if (m.total > SNAPSHOT_BYTES_MAX + SNAPSHOT_DEVICES_BYTES_MAX) throw new Error(`a snapshot of ${m.total} bytes (at most ${SNAPSHOT_BYTES_MAX + SNAPSHOT_DEVICES_BYTES_MAX})`);
      for (const k of this.snapshotsIn.keys()) if (k.startsWith(`${m.vm}/`)) this.snapshotsIn.delete(k);
      if (this.snapshotsIn.size >= SNAPSHOTS_IN_MAX) this.snapshotsIn.delete(this.snapshotsIn.keys().next().value!);
      this.snapshotsIn.set(key, { from, memory: new Uint8Array(m.total), got: 0, at: performance.now() });
    }
    const s = this.snapshotsIn.get(key);
    if (!s || s.from !== from) return; // not begun, or dropped
    if (m.at !== s.got || m.total !== s.memory.length || s.got + m.bytes.length > s.memory.length) {
      this.snapshotsIn.delete(key);
      throw new Error(`snapshot of ${key}: a chunk at ${m.at} of ${m.bytes.length} bytes does not follow the ${s.got} received of ${s.memory.length}`);
    }
    s.memory.set(m.bytes, s.got);
    s.got += m.bytes.length;
    s.at = performance.now();
  }

  // ---- clients ----

  /**
   * A connection on the client port. It must prove it knows the API token
   * within CLIENT_AUTH_MS (the handshake in wire.ts) before it gets a
   * connection id or any request is read; until then its frames are at most
   * CLIENT_AUTH_FRAME_MAX bytes. Past a cap (clientConnsPerAddressMax from its
   * address, clientConnsMax in all), it takes the place of the oldest connection
   * that has not authenticated yet (of its address, for the per-address cap), so
   * a flood of idle connections cannot lock real clients out; with none to
   * displace it is refused with FTVM_ERR_TOO_MANY_CONNECTIONS.
   */
  private acceptClient(sock: Socket): void {
    sock.setNoDelay(true);
    sock.on('error', () => {});
    const address = sock.remoteAddress ?? '?';
    const fromAddress = this.clientsPerAddress.get(address) ?? 0;
    if (fromAddress >= this.opts.clientConnsPerAddressMax && !this.displaceUnauthenticated(address)) {
      return this.refuseClient(sock, 'FTVM_ERR_TOO_MANY_CONNECTIONS', `${address} has ${fromAddress} connections to the client port of ${this.id} (at most ${this.opts.clientConnsPerAddressMax} from one address)`);
    }
    if (this.clientLinks.size >= this.opts.clientConnsMax && !this.displaceUnauthenticated(null)) {
      return this.refuseClient(sock, 'FTVM_ERR_TOO_MANY_CONNECTIONS', `the client port of ${this.id} has ${this.clientLinks.size} connections (at most ${this.opts.clientConnsMax})`);
    }
    const link: ClientLink = { address, authed: false, heardAt: performance.now() };
    this.clientLinks.set(sock, link);
    this.clientsPerAddress.set(address, (this.clientsPerAddress.get(address) ?? 0) + 1);
    const c = { conn: -1 };
    sock.on('close', () => {
      this.unlinkClient(sock);
      if (this.clients.get(c.conn) !== sock) return;
      this.clients.delete(c.conn);
      this.adopted.delete(c.conn);
    });
    const mine = nonce();
    send(sock, { t: 'challenge', host: this.id, nonce: mine });
    readMessages(
      sock,
      () => (link.authed ? CLIENT_FRAME_MAX : CLIENT_AUTH_FRAME_MAX),
      (m) => {
        if (sock.writableEnded) return; // refused: nothing more it sent is acted on
        link.heardAt = performance.now();
        if (!link.authed) {
          if (m.t !== 'auth') return this.refuseClient(sock, 'FTVM_ERR_UNAUTHORIZED', `"${m.t}" before authentication: the client port needs the API token first (see wire.ts)`);
          const theirs = m.nonce;
          if (!(theirs instanceof Uint8Array) || theirs.length !== 16 || !macOk(mac(this.opts.token, 'client', mine, theirs), m.mac)) {
            return this.refuseClient(sock, 'FTVM_ERR_UNAUTHORIZED', 'wrong credentials: the client does not know the API token');
          }
          const conn = this.newConnId(0);
          if (conn === null) return this.refuseClient(sock, 'FTVM_ERR_ARBITER', 'no connection id can be handed out: the arbiter has not been reached for a while; connect again later');
          link.authed = true;
          c.conn = conn;
          this.clients.set(c.conn, sock);
          // the client learns its connection id and the key to come back with it after a failure
          send(sock, { t: 'hello', conn: c.conn, host: this.id, key: resumeKey(this.opts.secret, c.conn), idleMs: this.opts.clientIdleMs, mac: mac(this.opts.token, 'host', theirs, mine) });
          return;
        }
        void this.onClient(sock, c, m).catch((e) => send(sock, { t: 'error', id: m.id ?? null, code: clientErrorCode(e), ...(m.t === 'send' && typeof m.vm === 'string' ? { vm: m.vm } : {}), message: (e as Error).message }));
      },
      (e) => {
        this.refused.badFrames++;
        this.unlinkClient(sock);
        // only a client that knows the token is worth a line: a flood of bad frames is counted, not logged
        if (link.authed) this.say(`dropped a client: ${e.message}`);
      },
    );
  }

  /**
   * Ends a client-port connection with one error frame ({ t: 'error', id: null,
   * code, message }); it leaves the caps at once. Said in the log at most once
   * a second (a flood would fill it), counted in `refused` (but for
   * FTVM_ERR_ARBITER: no connection id to hand out, said in the log).
   */
  private refuseClient(sock: Socket, code: ClientErrorCode | 'FTVM_ERR_UNAVAILABLE' | 'FTVM_ERR_ARBITER', message: string): void {
    if (code === 'FTVM_ERR_UNAUTHORIZED') this.refused.clientsUnauthorized++;
    else if (code === 'FTVM_ERR_TOO_MANY_CONNECTIONS') this.refused.clientsOverCap++;
    else if (code === 'FTVM_ERR_UNAVAILABLE') this.refused.clientsIdle++;
    this.unlinkClient(sock);
    const now = performance.now();
    if (now - this.clientRefusalSaidAt >= 1000) {
      this.clientRefusalSaidAt = now;
      const r = this.refused;
      this.say(`closed a client connection from ${sock.remoteAddress ?? '?'}: ${code}: ${message} (so far: ${r.clientsUnauthorized} unauthorized, ${r.clientsOverCap} over a cap, ${r.clientsIdle} idle)`);
    }
    if (sock.writableEnded) return;
    // the frame is small: it leaves at once, and the socket is closed then, whether or not the client reads
    sock.end(encodeMessage({ t: 'error', id: null, code, message }), () => sock.destroy());
  }

  /**
   * Records which host serves connection `conn` now. The map keeps the
   * CONN_OWNERS_MAX most recently set: a connection forgotten here falls back
   * to the host of its slot, which is where it started.
   */
  private setConnOwner(conn: number, owner: string): void {
    this.connOwners.delete(conn);
    this.connOwners.set(conn, owner);
    if (this.connOwners.size > CONN_OWNERS_MAX) this.connOwners.delete(this.connOwners.keys().next().value!);
  }

  /** A client-port connection leaves the caps (on close, or at once when it is refused). */
  private unlinkClient(sock: Socket): void {
    const link = this.clientLinks.get(sock);
    if (!link) return;
    this.clientLinks.delete(sock);
    const n = (this.clientsPerAddress.get(link.address) ?? 1) - 1;
    if (n > 0) this.clientsPerAddress.set(link.address, n);
    else this.clientsPerAddress.delete(link.address);
  }

  /** Ends the oldest client-port connection not authenticated yet (from `address`, if given) to make room; false if there is none. */
  private displaceUnauthenticated(address: string | null): boolean {
    for (const [sock, l] of this.clientLinks) {
      if (l.authed || (address !== null && l.address !== address)) continue;
      this.refuseClient(sock, 'FTVM_ERR_TOO_MANY_CONNECTIONS', 'the client port is full: a connection that has not authenticated yet gives way to a new one');
      return true;
    }
    return false;
  }

  /** Closes client-port connections that did not authenticate within CLIENT_AUTH_MS, and authenticated ones silent for clientIdleMs. */
  private sweepClients(): void {
    const now = performance.now();
    for (const [sock, l] of this.clientLinks) {
      if (!l.authed && now - l.heardAt > CLIENT_AUTH_MS) this.refuseClient(sock, 'FTVM_ERR_UNAUTHORIZED', `no credentials within ${CLIENT_AUTH_MS} ms`);
      else if (l.authed && now - l.heardAt > this.opts.clientIdleMs) this.refuseClient(sock, 'FTVM_ERR_UNAVAILABLE', `silent for ${this.opts.clientIdleMs} ms: closed (a client sends { t: 'ping' } to keep its connection)`);
    }
  }

  private toClient(conn: number, m: WireMessage): void {
    if (m.t === 'recv' && this.ingress.deliver(conn, m.seq as number, typeof m.off === 'number' ? m.off : undefined, m.data as Uint8Array, m.eof === true)) return;
    const s = this.clients.get(conn);
    if (s) {
      if (s.writableLength > CLIENT_WRITE_BYTES_MAX) {
        // a client that does not read: its outputs are not buffered without end (it may come back with resume)
        this.say(`dropped client ${conn}: ${s.writableLength} bytes of its outputs unread`);
        s.destroy();
      } else send(s, m);
    }
    const adopted = m.t === 'recv' ? this.adopted.get(conn) : undefined;
    if (adopted && (m.seq as number) > (adopted.get(String(m.vm)) ?? -1)) adopted.set(String(m.vm), m.seq as number);
    const box = this.apiBoxes.get(conn);
    if (box && m.t === 'recv') {
      box.outputs.push({ vm: String(m.vm), seq: m.seq as number, data: m.data as Uint8Array, eof: m.eof === true });
      box.bytes += (m.data as Uint8Array).length;
      // the oldest go past either bound (a reader that does not read loses them, as a ring's reader does)
      let drop = 0;
      while (box.outputs.length - drop > API_BOX_MAX || (box.bytes > API_BOX_BYTES_MAX && drop < box.outputs.length - 1)) box.bytes -= box.outputs[drop++]!.data.length;
      if (drop) box.outputs.splice(0, drop);
      for (const w of box.waiters.splice(0)) w();
    }
  }

  // ---- what the REST API uses ----

  /** A connection id never handed out before by this slot (conn-ids.ts): the slot, `kind` (0, or STREAM_CONN_BIT), the next low bits; null when no block is at hand. */
  private newConnId(kind: 0 | typeof STREAM_CONN_BIT): number | null {
    const low = this.connIds.id();
    return low === null ? null : ((this.slot << 24) | kind | low) >>> 0;
  }

  /** Runs an operation on a VM whose primary is on this host. */
  private adminHere(op: AdminOp, name: string): void {
    const vm = this.vms.get(name);
    if (!vm || vm.role !== 'primary' || vm.claiming) throw new HostError('FTVM_ERR_NOT_PRIMARY', `${this.id} has no primary of ${name}`);
    if (vm.end) throw new HostError('FTVM_ERR_VM_ENDED', `${name} has ended (${endText(vm.end)}): there is nothing to fail over or back up`);
    if (this.migrations.has(name)) throw new HostError('FTVM_ERR_CONFLICT', `a migration of ${name} is under way`);
    if (op === 'failover') {
      // a test failover: kill only the primary replica; its backup takes over at once
      if (!vm.backup || vm.alone) throw new HostError('FTVM_ERR_CONFLICT', `${name} has no backup to take over yet`);
      const backup = vm.backup;
      this.dropVm(vm, 'test failover');
      this.toPeer(backup, { t: 'failover', vm: vm.name, gen: vm.gen });
      return;
    }
    // restart the backup: stop it, fence it off with a new generation, and make a new one from a snapshot
    if (!snapshottable(vm.compiled)) throw new HostError('FTVM_ERR_CONFLICT', `${name} cannot be snapshotted while it runs (a command guest metered without Asyncify): a backup can only be made from boot, with the VM`);
    if (vm.snapshotFor !== null || (vm.alone && !vm.backup)) throw new HostError('FTVM_ERR_CONFLICT', `a new backup of ${name} is being made already`);
    if (vm.backup) this.toPeer(vm.backup, { t: 'stop', vm: vm.name, gen: vm.gen });
    this.say(`${name}: restarting the backup on request`);
    void this.backupLost(vm);
  }

  /** Runs an operation on a VM's primary: here, or on the host that has it (forwarded, with its answer). */
  async adminVm(op: AdminOp, name: string): Promise<void> {
    const p = this.primaries.get(name);
    if (!p) throw new HostError('FTVM_ERR_NOT_FOUND', `no VM named ${name}`);
    if (p.host === this.id || this.vms.get(name)?.role === 'primary') return this.adminHere(op, name);
    if (!this.alive(p.host)) throw new HostError('FTVM_ERR_UNAVAILABLE', `the primary's host ${p.host} is not answering; a failover may be under way`);
    await this.askPrimaryHost(p.host, (id) => ({ t: 'admin', id, op, vm: name }));
  }

  // ---- live migration ----

  /**
   * Moves a running VM's primary (default) or backup replica to host `to`
   * with nothing lost, and resolves once it is done (at most
   * MIGRATE_TIMEOUT_MS): run here when this host has the primary, else asked
   * of the primary's host (an 'admin' request, op 'migrate').
   *
   * The backup moves by a new backup made on `to` from a snapshot of the
   * primary, as a backup restart makes one: the modules go to `to` first,
   * the primary claims the next generation (which fences the old backup off:
   * the arbiter's test-and-set, as in the FT paper) and pauses only to copy
   * its memory at its next idle moment; client messages that come while it
   * claims are held and delivered after.
   * The primary moves by a planned switch to its backup, after the backup was
   * moved to `to` when it ran elsewhere: the primary pauses at its next check
   * point or wait with its log flushed, hands back the client messages its
   * guest had not taken, and holds the ones that come; once the backup has
   * acknowledged every entry, the backup is told to go live ('failover' with
   * `backupOn`) and does so at once, with the next generation, without any
   * failure timeout; the held messages follow it, and the old primary is
   * stopped when the new generation is heard of. The new primary makes its
   * backup on the host the backup ran on before, or on the old primary's host
   * when the primary moved to its backup's host (the two swap).
   *
   * Errors: HostError FTVM_ERR_NOT_FOUND (no such VM), FTVM_ERR_BAD_REQUEST
   * (`replica` neither 'primary' nor 'backup'), FTVM_ERR_CONFLICT (`to` is no
   * member of the cluster, is silent, or runs that replica already; the backup
   * asked onto the primary's host; a migration, failover or new backup under
   * way; a guest that cannot be snapshotted, as for restart-backup),
   * FTVM_ERR_VM_ENDED, FTVM_ERR_UNAVAILABLE (the primary's host is silent, a
   * step did not finish in time: the VM goes on where the migration left it).
   */
  async migrateVm(name: string, to: string, replica: 'primary' | 'backup' = 'primary'): Promise<MigrateResult> {
    if (replica !== 'primary' && replica !== 'backup') throw new HostError('FTVM_ERR_BAD_REQUEST', '"replica" is "primary" or "backup"');
    if (typeof to !== 'string' || !to) throw new HostError('FTVM_ERR_BAD_REQUEST', '"to" is the id of a host of the cluster');
    const p = this.primaries.get(name);
    if (!p) throw new HostError('FTVM_ERR_NOT_FOUND', `no VM named ${name}`);
    if (to !== this.id && !this.members.some((h) => h.id === to)) throw new HostError('FTVM_ERR_CONFLICT', `no host ${JSON.stringify(to)} in the cluster`);
    if (to !== this.id && !this.alive(to)) throw new HostError('FTVM_ERR_CONFLICT', `host ${to} is not answering: a VM moves only to a live host`);
    if (p.host === this.id || this.vms.get(name)?.role === 'primary') return this.migrateHere(name, to, replica);
    if (!this.alive(p.host)) throw new HostError('FTVM_ERR_UNAVAILABLE', `the primary's host ${p.host} is not answering; a failover may be under way`);
    const r = await this.askPrimaryHost(p.host, (id) => ({ t: 'admin', id, op: 'migrate', vm: name, to, replica }), undefined, MIGRATE_TIMEOUT_MS + ADMIN_TIMEOUT_MS);
    if (!r) throw new HostError('FTVM_ERR_UNAVAILABLE', `${p.host} answered the migration without saying what it did`);
    return r as unknown as MigrateResult;
  }

  /** migrateVm on the primary's host (see there). */
  private async migrateHere(name: string, to: string, replica: 'primary' | 'backup'): Promise<MigrateResult> {
    const vm = this.vms.get(name);
    if (!vm || vm.role !== 'primary' || vm.claiming) throw new HostError('FTVM_ERR_NOT_PRIMARY', `${this.id} has no primary of ${name}`);
    if (vm.end) throw new HostError('FTVM_ERR_VM_ENDED', `${name} has ended (${endText(vm.end)}): there is nothing to migrate`);
    if (this.migrations.has(name)) throw new HostError('FTVM_ERR_CONFLICT', `a migration of ${name} is under way already`);
    const from = replica === 'primary' ? this.id : vm.backup;
    if (to === from) throw new HostError('FTVM_ERR_CONFLICT', `${name}'s ${replica} runs on ${to} already`);
    if (replica === 'backup' && to === this.id) throw new HostError('FTVM_ERR_CONFLICT', `${to} runs ${name}'s primary: its backup must be on another host`);
    if (to !== this.id && !this.livePeers().includes(to)) throw new HostError('FTVM_ERR_CONFLICT', `host ${to} is not a live member of the cluster`);
    // every migration makes a backup from a snapshot (on `to`, or the new primary's after the switch)
    if (!snapshottable(vm.compiled)) throw new HostError('FTVM_ERR_CONFLICT', `${name} cannot be snapshotted while it runs (a command guest metered without Asyncify): a backup can only be made from boot, with the VM`);
    if (vm.state !== 'live' || !vm.backup || !vm.backupReady || vm.snapshotFor !== null) {
      throw new HostError('FTVM_ERR_CONFLICT', `${name} has no backup in place (one is being made, or it runs alone): a migration starts from a VM running with its backup`);
    }
    const t0 = performance.now();
    const oldBackup = vm.backup;
    this.migrations.set(name, { wake: null });
    this.note({ event: 'migration', vm: name, replica, from: from ?? '', to, phase: 'started' });
    try {
      let snapshotPauseMs = 0;
      let switchPauseMs = 0;
      if (vm.backup !== to) snapshotPauseMs = await this.moveBackup(vm, to, t0 + MIGRATE_TIMEOUT_MS);
      let gen = vm.gen;
      if (replica === 'primary') {
        switchPauseMs = await this.switchPrimary(vm, oldBackup !== to ? oldBackup : this.id);
        gen = this.primaries.get(name)!.gen;
        // done once the new primary says it runs with a backup again (vminfo, at least every INFO_EVERY_MS)
        const ok = await this.waitFor(name, () => (this.infos.get(name)?.info.gen ?? 0) >= gen && this.infos.get(name)?.info.state === 'running', Math.max(0, t0 + MIGRATE_TIMEOUT_MS - performance.now()));
        if (!ok) throw new HostError('FTVM_ERR_UNAVAILABLE', `${name} runs on ${to} now, but has not said it has a new backup within ${MIGRATE_TIMEOUT_MS} ms`);
      }
      const info = this.vmInfos().find((v) => v.name === name);
      const r: MigrateResult = {
        vm: name,
        replica,
        from: from ?? '',
        to,
        gen: info?.gen ?? gen,
        primary: info?.primary ?? (replica === 'primary' ? to : this.id),
        backup: info?.backup ?? null,
        ms: performance.now() - t0,
        snapshotPauseMs,
        switchPauseMs,
      };
      this.note({ event: 'migration', vm: name, replica, from: from ?? '', to, phase: 'done' });
      this.say(`${name}: ${replica} moved from ${from} to ${to} in ${Math.round(r.ms)} ms (primary paused ${r.snapshotPauseMs.toFixed(1)} ms for the snapshot, ${r.switchPauseMs.toFixed(1)} ms for the switch)`);
      return r;
    } catch (e) {
      this.note({ event: 'migration', vm: name, replica, from: from ?? '', to, phase: 'failed' });
      if (e instanceof HostError) throw e;
      throw new HostError('FTVM_ERR_UNAVAILABLE', `the migration of ${name} to ${to} failed: ${(e as Error).message}`);
    } finally {
      this.migrations.delete(name);
    }
  }

  /**
   * A migration's first step: the backup of `vm` (a primary here, live with
   * a backup in place) made anew on `to` from a snapshot (see migrateVm).
   * Resolves with the primary's pause for the snapshot, in ms, once the new
   * backup acknowledged; FTVM_ERR_UNAVAILABLE when the VM changed meanwhile
   * or the backup is not in place by `deadline` (performance.now() ms).
   */
  private async moveBackup(vm: Vm, to: string, deadline: number): Promise<number> {
    const name = vm.name;
    // the modules first: the primary runs without a backup only while its snapshot is taken
    if (vm.module.length + vm.metered.length > INLINE_SHIP_BYTES_MAX) await this.shipModules(to, vm);
    if (this.vms.get(name) !== vm || vm.state !== 'live') throw new HostError('FTVM_ERR_UNAVAILABLE', `${name} changed while its modules went to ${to} (a failover?); try again`);
    this.say(`${name}: making its backup on ${to} in place of ${vm.backup}`);
    vm.backupOn = to;
    this.hold(vm);
    try {
      // the next generation fences the old backup off; recreateBackup then snapshots the primary for `to`
      await this.backupLost(vm);
    } finally {
      if (this.vms.get(name) === vm) this.unhold(vm);
    }
    // (a backup made elsewhere, `to` having failed or gone, ends the wait at once)
    const ok = await this.waitFor(name, () => this.vms.get(name) !== vm || (vm.state === 'live' && (vm.backup !== to || vm.backupReady)), Math.max(0, deadline - performance.now()));
    if (!ok || this.vms.get(name) !== vm || vm.backup !== to || !vm.backupReady) {
      throw new HostError('FTVM_ERR_UNAVAILABLE', `no backup of ${name} came up on ${to} in time; the VM goes on with ${this.vms.get(name) === vm && vm.backup ? `its backup on ${vm.backup}` : 'no backup for now'}`);
    }
    return vm.recreate?.pauseMs ?? 0;
  }

  /**
   * A migration's planned switch: the primary `vm` (here, live with its
   * backup in place) pauses and its backup goes live with the next
   * generation, making its own backup on `backupOn` (see migrateVm).
   * Resolves with the pause, in ms: from the replica told to pause to the
   * news that the new primary runs. A pause not reached, or a log not
   * acknowledged, within MIGRATE_SWITCH_MS calls the switch off (the primary
   * resumes); a backup not live within it is settled by a claim
   * (backupLost: whichever replica wins goes on). Errors: HostError
   * FTVM_ERR_UNAVAILABLE in those cases.
   */
  private async switchPrimary(vm: Vm, backupOn: string): Promise<number> {
    const name = vm.name;
    const target = vm.backup!;
    const gen = vm.gen;
    this.hold(vm);
    this.transition(vm, 'handing-over');
    vm.handedOverSeq = null;
    const t0 = performance.now();
    vm.handle.send({ t: 'handover' });
    const here = (): boolean => this.vms.get(name) === vm && vm.state === 'handing-over';
    const paused = await this.waitFor(name, () => !here() || vm.handedOverSeq !== null, MIGRATE_SWITCH_MS);
    const caughtUp = paused && (await this.waitFor(name, () => !here() || vm.acked >= vm.handedOverSeq!, MIGRATE_SWITCH_MS));
    if (!here()) throw new HostError('FTVM_ERR_UNAVAILABLE', `the switch of ${name} to ${target} was overtaken: its backup was lost meanwhile`);
    if (!caughtUp) {
      this.transition(vm, 'live');
      this.resumeFromHandover(vm);
      throw new HostError('FTVM_ERR_UNAVAILABLE', `the switch of ${name} was called off: ${paused ? `${target} did not acknowledge the whole log` : 'the primary did not pause'} within ${MIGRATE_SWITCH_MS} ms; it goes on where it was`);
    }
    this.toPeer(target, { t: 'failover', vm: name, gen, backupOn });
    // learnPrimary hands the held messages to the new primary and stops this replica
    const switched = await this.waitFor(name, () => this.vms.get(name) !== vm, MIGRATE_SWITCH_MS);
    const pauseMs = performance.now() - t0;
    if (!switched) {
      if (here()) void this.backupLost(vm);
      throw new HostError('FTVM_ERR_UNAVAILABLE', `${target} did not go live within ${MIGRATE_SWITCH_MS} ms; a claim at the arbiter decides which replica of ${name} goes on`);
    }
    if ((this.primaries.get(name)?.gen ?? 0) <= gen) throw new HostError('FTVM_ERR_UNAVAILABLE', `${name}'s primary here stopped during the switch, and no newer one is known yet`);
    return pauseMs;
  }

  /** A migration holds the client messages for `vm` from now on (route), until unhold. */
  private hold(vm: Vm): void {
    vm.held ??= { msgs: [], bytes: 0 };
  }

  /**
   * The messages held for `vm` go on, in order: to its replica when it is a
   * primary that takes input again, else to host `to` (the new primary), or
   * to the primary this host knows; with none, they are dropped and said (a
   * client's request goes unanswered, as when a host dies).
   */
  private unhold(vm: Vm, to: string | null = null): void {
    const h = vm.held;
    vm.held = null;
    if (!h?.msgs.length) return;
    const here = this.vms.get(vm.name) === vm && vm.role === 'primary' && !vm.claiming && vm.state !== 'handing-over';
    const known = this.primaries.get(vm.name)?.host;
    const host = to ?? (known !== this.id ? known : undefined);
    for (const m of h.msgs) {
      if (here) vm.handle.sendInput({ msg: { conn: m.conn, bytes: m.data, eof: m.eof, ...(m.window !== undefined ? { window: m.window } : {}) }, off: m.off });
      else if (host && host !== this.id) this.toPeer(host, { t: 'fwd', vm: vm.name, conn: m.conn, data: m.data, eof: m.eof, hops: 1, ...(m.off !== undefined ? { off: m.off } : {}), ...(m.window !== undefined ? { window: m.window } : {}) });
    }
    if (!here && (!host || host === this.id)) this.say(`${vm.name}: ${h.msgs.length} messages held for a migration were dropped: no primary to hand them to`);
  }

  /** A primary paused for a planned switch goes on (the switch was called off, or its backup was lost): its replica resumes and takes the held messages. */
  private resumeFromHandover(vm: Vm): void {
    vm.handedOverSeq = null;
    vm.handle.send({ t: 'resume' });
    this.unhold(vm);
  }

  /**
   * Resolves true once `cond()` holds, false after `ms` without it; checked
   * whenever the migration of `name` is woken (acks, the replica's pause, a
   * new primary, a replica dropped) and every 20 ms besides.
   */
  private waitFor(name: string, cond: () => boolean, ms: number): Promise<boolean> {
    const mig = this.migrations.get(name);
    if (!mig || cond()) return Promise.resolve(cond());
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        if (mig.wake === wake) mig.wake = null;
        resolve(cond());
      };
      const wake = (): void => {
        if (cond()) done();
      };
      const timer = setTimeout(done, ms);
      const poll = setInterval(wake, 20);
      mig.wake = wake;
    });
  }

  /**
   * Sends the request `make(id)` builds to `host` (the primary's host) and
   * resolves when it answers ('admin-res' with that id) with the answer's
   * `result` (a migration's), or rejects with the code of its answer.
   * Errors: HostError FTVM_ERR_UNAVAILABLE (no link, no answer within
   * `timeoutMs`, default ADMIN_TIMEOUT_MS, ADMIN_WAITS_MAX requests waiting
   * already), or the answer's code.
   */
  private askPrimaryHost(host: string, make: (id: number) => WireMessage, onRefused?: (e: Error) => void, timeoutMs = ADMIN_TIMEOUT_MS): Promise<Record<string, unknown> | undefined> {
    if (this.adminWaits.size >= ADMIN_WAITS_MAX) return Promise.reject(new HostError('FTVM_ERR_UNAVAILABLE', `${this.adminWaits.size} requests wait for other hosts already; try again shortly`));
    const id = ++this.adminIds;
    return new Promise<Record<string, unknown> | undefined>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.adminWaits.delete(id);
        reject(new HostError('FTVM_ERR_UNAVAILABLE', `${host} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.adminWaits.set(id, {
        resolve,
        reject: (e) => {
          onRefused?.(e);
          reject(e);
        },
        timer,
      });
      if (!this.toPeer(host, make(id))) {
        clearTimeout(timer);
        this.adminWaits.delete(id);
        reject(new HostError('FTVM_ERR_UNAVAILABLE', `no link to ${host}, the primary's host`));
      }
    });
  }

  /**
   * Deletes a VM: claims the generation after its last one as STOPPED (so no
   * replica of it can go live again, even one that misses this), then stops
   * both replicas wherever they run. The name can be used again.
   */
  async stopVm(name: string): Promise<void> {
    // a VM no host here reports may still be the arbiter's (lost while this host was away): the arbiter decides
    let gen = 0;
    for (let tries = 0; tries < 20; tries++) {
      const last = await this.opts.arbiter.latest(name);
      if (!last || last.host === STOPPED) throw new HostError('FTVM_ERR_NOT_FOUND', `no VM named ${name}`);
      if (await this.opts.arbiter.claim(name, last.gen + 1, STOPPED)) {
        gen = last.gen + 1;
        break;
      }
    }
    if (!gen) throw new HostError('FTVM_ERR_UNAVAILABLE', `${name} kept changing generation while it was being deleted; try again`);
    for (const l of this.links.values()) if (l.ready) this.toPeer(l.id, { t: 'stop', vm: name, gen });
    this.stopped(name, gen);
  }

  /** A VM was deleted in generation `gen`: drop its replica here and forget it. */
  private stopped(name: string, gen: number): void {
    const vm = this.vms.get(name);
    if (vm && vm.gen < gen) this.dropVm(vm, 'stopped');
    if ((this.primaries.get(name)?.gen ?? 0) < gen) {
      this.primaries.delete(name);
      this.infos.delete(name);
    }
    setBounded(this.tombstones, name, gen, TOMBSTONES_MAX);
  }

  /** Every VM of the cluster this host knows of, as its primary's host last said. */
  vmInfos(): VmInfo[] {
    const now = performance.now();
    const out: VmInfo[] = [];
    for (const [name, p] of this.primaries) {
      const local = this.vms.get(name);
      const said = this.infos.get(name);
      let info: VmInfo;
      if (local && local.role === 'primary') info = { ...this.infoOf(local), ageMs: 0 };
      else if (said && said.info.gen === p.gen) info = { ...said.info, ageMs: Math.round(now - said.at) };
      else {
        // announced, but not yet described
        info = blankInfo(name, p.gen, p.host);
      }
      info.publish ??= [];
      info.endpoints = this.endpoints(name, info.publish);
      if (info.primary !== this.id && info.state !== 'ended') {
        // both replicas gone (their hosts dead, or restarted since they said so): nothing can take over
        const gone = (host: string | null, boot: string | undefined): boolean =>
          host === null || (host !== this.id && (!this.alive(host) || (boot !== undefined && this.boots.get(host) !== boot))) || (host === this.id && !this.vms.has(name));
        const saidNow = said && said.info.gen === p.gen ? said : undefined;
        if (saidNow && gone(info.primary, saidNow.primaryBoot) && gone(info.backup, saidNow.backupBoot)) {
          info.state = 'lost';
          info.endpoints = []; // no host serves its ports (publishPorts)
        }
        else if (!this.alive(info.primary)) info.state = 'failing-over';
      }
      out.push(info);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** "ADDR:PORT" for each of `vm`'s `ports` at each live host's public address (this host's first), but for the ports a host could not bind. */
  private endpoints(vm: string, ports: readonly number[]): string[] {
    if (!ports.length) return [];
    const hosts = this.members.filter((m) => m.id === this.id || this.alive(m.id));
    hosts.sort((a, b) => (a.id === this.id ? -1 : b.id === this.id ? 1 : a.id < b.id ? -1 : 1));
    const mine = new Set(this.ingress.unbound());
    const out: string[] = [];
    for (const h of hosts) {
      const addr = h.id === this.id ? this.ingress.address : h.public;
      if (!addr) continue;
      const unbound = h.id === this.id ? mine : this.unbound.get(h.id);
      for (const port of ports) if (!unbound?.has(`${vm}:${port}`)) out.push(`${addr.includes(':') ? `[${addr}]` : addr}:${port}`);
    }
    return out;
  }

  /** VMs this host runs a replica of or knows the primary of. */
  knownVms(): { name: string; gen: number; primary: string }[] {
    return [...this.primaries.entries()].map(([name, p]) => ({ name, gen: p.gen, primary: p.host })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** A connection id for an API client, whose outputs are kept for it to read. Errors: HostError FTVM_ERR_UNAVAILABLE (API_CONNECTIONS_MAX are open). */
  apiConnection(): number {
    if (this.apiBoxes.size >= API_CONNECTIONS_MAX) throw new HostError('FTVM_ERR_UNAVAILABLE', `${this.apiBoxes.size} API connections are open on this host; close one (DELETE /v1/connections/CONN) or try again later`);
    const conn = this.newConnId(0);
    if (conn === null) throw new ArbiterError('no connection id can be handed out: the arbiter has not been reached for a while; try again later');
    this.apiBoxes.set(conn, { outputs: [], bytes: 0, waiters: [], usedAt: Date.now() });
    return conn;
  }

  /** Closes an API connection: its kept outputs are dropped, and a reader waiting on it returns. */
  closeApiConnection(conn: number): void {
    const box = this.apiBoxes.get(conn);
    if (!box) throw new HostError('FTVM_ERR_NOT_FOUND', `no API connection ${conn} on this host`);
    this.apiBoxes.delete(conn);
    for (const w of box.waiters.splice(0)) w();
  }

  /** Whether an API connection is open on this host. */
  hasApiConnection(conn: number): boolean {
    return this.apiBoxes.has(conn);
  }

  /**
   * Sends a message to a VM on behalf of connection `conn` (through its
   * primary, wherever it runs), resolving once the primary's host took it.
   * Errors: HostError FTVM_ERR_NOT_FOUND (no such VM), FTVM_ERR_BUSY (its
   * input queue is full: nothing was queued), FTVM_ERR_UNAVAILABLE (the
   * primary's host does not answer within ADMIN_TIMEOUT_MS).
   */
  async sendToVm(name: string, conn: number, data: Uint8Array, eof: boolean): Promise<void> {
    const p = this.primaries.get(name);
    if (!p) throw new HostError('FTVM_ERR_NOT_FOUND', `no VM named ${name}`);
    const box = this.apiBoxes.get(conn);
    if (box) box.usedAt = Date.now();
    const vm = this.vms.get(name);
    if ((vm && vm.role === 'primary' && !vm.claiming) || p.host === this.id || !this.alive(p.host)) return this.route(name, conn, data, eof, 0);
    const until = this.busyUntil.get(name);
    if (until !== undefined && performance.now() < until) throw new HostError('FTVM_ERR_BUSY', `${name}'s input queue was full a moment ago; send again later`);
    await this.askPrimaryHost(
      p.host,
      (id) => ({ t: 'fwd', vm: name, conn, data, eof, hops: 1, id }),
      (e) => e instanceof HostError && e.code === 'FTVM_ERR_BUSY' && this.busyFor(name, -1),
    );
  }

  /** Outputs for an API connection after `after` (a sequence number), waiting up to `waitMs` (or until `signal` aborts) for the first. */
  async outputsFor(conn: number, vm: string, after: number, waitMs: number, signal?: AbortSignal): Promise<{ vm: string; seq: number; data: Uint8Array; eof: boolean }[]> {
    const box = this.apiBoxes.get(conn);
    if (!box) throw new HostError('FTVM_ERR_NOT_FOUND', `no API connection ${conn} on this host`);
    box.usedAt = Date.now();
    const pick = () => box.outputs.filter((o) => o.vm === vm && o.seq > after);
    if (!pick().length && waitMs > 0 && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          signal?.removeEventListener('abort', done);
          const i = box.waiters.indexOf(done);
          if (i >= 0) box.waiters.splice(i, 1);
          resolve();
        };
        const t = setTimeout(done, waitMs);
        signal?.addEventListener('abort', done);
        box.waiters.push(done);
      });
    }
    return pick();
  }

  /**
   * A VM's released stdout or stderr from byte offset `from` (at most the
   * ring's 1 MiB; older bytes dropped: the answer starts later, see
   * `dropped`), waiting up to `waitMs` (at most OUTPUT_WAIT_MS_MAX) for a byte
   * past `from` or for the end. Read from this host's replica of the VM when
   * it runs one (primary or backup: the same stream), else from the host
   * running its primary. `end` is set once no byte after `next` will come.
   * Errors: HostError FTVM_ERR_NOT_FOUND (no such VM), FTVM_ERR_UNAVAILABLE
   * (the primary's host is silent or does not answer; a failover may be under
   * way), FTVM_ERR_BAD_REQUEST (bad `from` or `waitMs`).
   */
  async readOutput(name: string, stream: 'stdout' | 'stderr', from: number, waitMs: number, signal?: AbortSignal): Promise<OutputRead> {
    if (!Number.isSafeInteger(from) || from < 0) throw new HostError('FTVM_ERR_BAD_REQUEST', '"from" is a byte offset, an integer >= 0');
    if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > OUTPUT_WAIT_MS_MAX) throw new HostError('FTVM_ERR_BAD_REQUEST', `"waitMs" is an integer from 0 to ${OUTPUT_WAIT_MS_MAX}`);
    if (this.vms.has(name)) return this.readOutputHere(name, stream, from, waitMs, signal);
    const p = this.primaries.get(name);
    if (!p || p.host === this.id) throw new HostError('FTVM_ERR_NOT_FOUND', `no VM named ${name}`);
    if (!this.alive(p.host)) throw new HostError('FTVM_ERR_UNAVAILABLE', `the primary's host ${p.host} is not answering; a failover may be under way`);
    if (this.outputWaits.size >= OUTPUT_READS_MAX) throw new HostError('FTVM_ERR_UNAVAILABLE', `${this.outputWaits.size} output reads wait for other hosts already; try again shortly`);
    const id = ++this.adminIds;
    return new Promise<OutputRead>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.outputWaits.delete(id);
        reject(new HostError('FTVM_ERR_UNAVAILABLE', `${p.host} did not answer within ${waitMs + ADMIN_TIMEOUT_MS} ms`));
      }, waitMs + ADMIN_TIMEOUT_MS);
      this.outputWaits.set(id, { host: p.host, resolve, reject, timer });
      if (!this.toPeer(p.host, { t: 'out-read', id, vm: name, stream, from, waitMs })) {
        clearTimeout(timer);
        this.outputWaits.delete(id);
        reject(new HostError('FTVM_ERR_UNAVAILABLE', `no link to ${p.host}, the primary's host`));
      }
    });
  }

  /** readOutput from this host's own replica of `name`. */
  private async readOutputHere(name: string, stream: 'stdout' | 'stderr', from: number, waitMs: number, signal?: AbortSignal): Promise<OutputRead> {
    let vm = this.vms.get(name);
    if (!vm) throw new HostError('FTVM_ERR_NOT_FOUND', `${this.id} runs no replica of ${name}`);
    const done = (v: Vm): boolean => v[stream].length > from || this.endReleased(v);
    if (!done(vm) && waitMs > 0 && !signal?.aborted && vm.outWaiters.size < OUTPUT_READERS_MAX) {
      const v = vm;
      await new Promise<void>((resolve) => {
        const finish = (): void => {
          clearTimeout(t);
          signal?.removeEventListener('abort', finish);
          v.outWaiters.delete(wake);
          resolve();
        };
        const wake = (): void => {
          if (done(v) || this.vms.get(name) !== v) finish();
        };
        const t = setTimeout(finish, waitMs);
        signal?.addEventListener('abort', finish);
        v.outWaiters.add(wake);
      });
      // the replica was replaced meanwhile (a backup made anew): read the one there is now
      vm = this.vms.get(name) ?? v;
    }
    const slice = vm[stream].read(from);
    return { ...slice, stream, host: this.id, end: this.endReleased(vm) ? vm.end : null };
  }

  private async onClient(sock: Socket, c: { conn: number }, m: WireMessage): Promise<void> {
    const id = m.id ?? null;
    const conn = c.conn;
    switch (m.t) {
      case 'resume': {
        // A client whose host failed comes back here with its connection id and what it has seen.
        const old = m.conn;
        const seen = m.seen as Record<string, number> | undefined;
        if (typeof old !== 'number' || !Number.isInteger(old) || old < 0 || old > 0xffffffff) throw new Error('resume needs "conn" (a u32)');
        if (typeof seen !== 'object' || seen === null || !Object.values(seen).every((v) => Number.isInteger(v))) throw new Error('resume needs "seen": { vm: seq }');
        if (Object.keys(seen).length > RESUME_VMS_MAX) throw new HostError('FTVM_ERR_BAD_REQUEST', `resume names ${Object.keys(seen).length} VMs in "seen" (at most ${RESUME_VMS_MAX})`);
        // only the client the connection id was issued to has its key: another one cannot read its outputs
        if (!macOk(resumeKey(this.opts.secret, old), m.key)) throw new ClientError('FTVM_ERR_UNAUTHORIZED', `resume of connection ${old} needs its "key" (given with the hello that issued it)`);
        if (this.clients.get(conn) === sock) this.clients.delete(conn);
        c.conn = old;
        this.clients.set(old, sock);
        this.setConnOwner(old, this.id);
        const vms = new Map(Object.entries(seen));
        this.adopted.set(old, vms);
        for (const l of this.links.values()) if (l.ready) this.toPeer(l.id, { t: 'conn-owner', conn: old, owner: this.id });
        for (const [name, after] of vms) this.adopt(name, old, after);
        send(sock, { t: 'resumed', id, conn: old });
        return;
      }
      case 'start': {
        // the message as it is, with its exact types, through the one check of a start (api/action.ts);
        // `host` says where to place the primary (placePrimary checks it)
        const { host, ...vmFields } = m;
        const a = checkClientStart(vmFields);
        const r = await this.startVm({ name: a.name, ...(a.module ? { module: a.module } : { moduleHash: a.moduleHash! }), args: a.args, env: a.env, stdin: a.stdin, memoryMiB: a.memoryMiB, cpuPercent: a.cpuPercent, publish: a.publish, ...(host !== undefined ? { host: host as string } : {}) });
        send(sock, { t: 'started', id, vm: a.name, ...r });
        return;
      }
      case 'send': {
        // text is sent as its UTF-8 bytes; the rest through the one check of a message (api/action.ts)
        const a = checkSend(m.vm, conn, typeof m.data === 'string' ? new Uint8Array(Buffer.from(m.data)) : (m.data ?? new Uint8Array(0)), m.eof ?? false);
        this.route(a.vm, conn, a.bytes, a.eof, 0);
        return;
      }
      case 'ping':
        return; // a keep-alive: being heard is all it is for
      case 'status':
        send(sock, { t: 'status', ...this.status(), host: this.id, id });
        return;
      case 'failover':
        await this.adminVm('failover', checkVmOp('failover', m.vm).vm);
        send(sock, { t: 'ok', id });
        return;
      case 'stop':
        await this.stopVm(checkVmOp('stop', m.vm).vm);
        send(sock, { t: 'ok', id });
        return;
      default:
        throw new Error(`unknown request "${m.t}"`);
    }
  }

  /**
   * A client message for a VM: to its primary replica here, or forwarded to
   * the host that has it. A client-port or REST message (one without a stream
   * offset `off`) past the VM's input bound (host/limits.ts INPUT_INBOX_MAX, INPUT_INBOX_BYTES_MAX) is refused:
   * HostError FTVM_ERR_BUSY, nothing is queued; one for a VM that ended is
   * FTVM_ERR_VM_ENDED, and one a client sends to a VM no host knows is
   * FTVM_ERR_NOT_FOUND. A TCP connection's messages through a published port
   * are never refused here: their ingress sends no more than the connection's
   * window.
   */
  private route(name: string, conn: number, data: Uint8Array, eof: boolean, hops: number, off?: number, window?: number): void {
    const vm = this.vms.get(name);
    if (off === undefined) {
      // a client's message (not a TCP stream's piece): refused, with its code, where it cannot go
      if (vm?.end || this.infos.get(name)?.info.state === 'ended') throw new HostError('FTVM_ERR_VM_ENDED', `${name} has ended: it takes no more messages`);
      if (hops === 0 && !vm && !this.primaries.has(name)) throw new HostError('FTVM_ERR_NOT_FOUND', `no VM named ${name}`);
    }
    if (vm?.held) {
      // a migration holds it while the primary claims a generation or pauses for its switch (Vm.held)
      const h = vm.held;
      if (h.msgs.length >= INPUT_INBOX_MAX || h.bytes + data.length > INPUT_INBOX_BYTES_MAX) {
        if (off === undefined) throw new HostError('FTVM_ERR_BUSY', `${name} is being migrated and ${h.msgs.length} messages (${h.bytes} bytes) wait for it; send again later`);
        return; // a stream's piece: its ingress sends it again to the primary that runs next
      }
      h.msgs.push({ conn, data, eof, ...(off !== undefined ? { off } : {}), ...(window !== undefined ? { window } : {}) });
      h.bytes += data.length;
      return;
    }
    if (vm && vm.role === 'primary' && !vm.claiming) {
      if (off === undefined) {
        const q = vm.handle.inboxed;
        if (q.messages >= INPUT_INBOX_MAX || q.bytes + data.length > INPUT_INBOX_BYTES_MAX) {
          vm.inputRefused++;
          throw new HostError('FTVM_ERR_BUSY', `${name} has ${q.messages} messages (${q.bytes} bytes) waiting for its guest to take them; send again later`);
        }
      }
      vm.handle.sendInput({ msg: { conn, bytes: data, eof, ...(window !== undefined ? { window } : {}) }, off });
      return;
    }
    if (off === undefined && hops === 0) {
      const until = this.busyUntil.get(name);
      if (until !== undefined && performance.now() < until) throw new HostError('FTVM_ERR_BUSY', `${name}'s input queue was full a moment ago; send again later`);
    }
    const p = this.primaries.get(name);
    if (p && p.host !== this.id && hops < 3) {
      this.toPeer(p.host, { t: 'fwd', vm: name, conn, data, eof, hops: hops + 1, ...(off !== undefined ? { off } : {}), ...(window !== undefined ? { window } : {}) });
      return;
    }
    // Nobody known runs it (a failover is under way): the client retries.
  }

  /**
   * The primary's host refused a send of this host's client on `conn`
   * (FTVM_ERR_BUSY): the client hears it (on the client port; a REST sender
   * hears it on its next send), and this host refuses sends to the VM for
   * BUSY_HOLD_MS.
   */
  private busyFor(name: string, conn: number): void {
    this.busyUntil.delete(name);
    this.busyUntil.set(name, performance.now() + BUSY_HOLD_MS);
    if (this.busyUntil.size > BUSY_VMS_MAX) this.busyUntil.delete(this.busyUntil.keys().next().value!);
    const s = this.clients.get(conn);
    if (s) send(s, { t: 'error', id: null, code: 'FTVM_ERR_BUSY', vm: name, message: `${name}'s input queue is full: a message was refused; send again later` });
  }
}

/** How a guest ended, in words: "exit 3", "trap: unreachable". */
export function endText(e: VmEnd): string {
  return e.outcome === 'exit' ? `exit ${e.status}` : e.outcome === 'trap' ? `trap: ${e.message}` : e.outcome;
}

/** Sets `key` in `map` as its newest entry, forgetting the oldest beyond `max` entries. */
function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value as K);
}
