// The messages hosts send each other on the peer channel, after the HMAC
// handshake (wire.ts frames them): one typed union, checked once where a frame
// is decoded, so the protocol's handlers read typed fields and never cast.

import type { WireMessage } from '../cluster/wire.ts';
import type { EntryPayloads } from '../log/format.ts';
import type { FtvmErrorCode } from '../errors.ts';
import type { StartRequest } from '../cluster/host.ts';
import { PEER_LIST_MAX as LIST_MAX } from '../limits.ts';

/** A replica's place and whose it is: every message about one VM names it and its generation where the generation decides. */
interface AboutVm {
  vm: string;
}

/** How a VM is doing, as its primary's host tells every host (host.ts VmInfo without `ageMs`). */
export type VmInfoMessage = Record<string, unknown> & { name: string; gen: number; primary: string };

/** An output ring's image (output-ring.ts). */
export interface RingImage {
  start: number;
  bytes: Uint8Array;
}

/**
 * Every peer message, by its `t`. Units: `gen` a VM's generation, `seq` and
 * `first`/`last` log entry sequence numbers, `count` a guest count (bigint),
 * `conn` a u32 connection id, `off` a byte offset in a connection's stream,
 * `at` and `bytes` byte offsets and contents of chunks, `waitMs` milliseconds.
 */
export type PeerMessage =
  /** a heartbeat; `unbound`: the "vm:port"s of published ports its host could not bind */
  /** `boot`: the sender's process's id (a new one at each start): a change says the host restarted, and holds no replica it held before */
  | { t: 'hb'; unbound?: string[]; boot?: string }
  /** a piece of a snapshot's memory: `bytes` at offset `at` of `total` bytes, in order from 0 */
  | ({ t: 'snapchunk'; gen: number; at: number; total: number; bytes: Uint8Array } & AboutVm)
  | ({ t: 'rings'; gen: number; rings: { stdout?: RingImage; stderr?: RingImage } } & AboutVm)
  | ({
      t: 'backup';
      gen: number;
      moduleHash: string;
      meteredHash: string;
      start: EntryPayloads['start'];
      primary: string;
      /** a snapshot's state without its memory (which came in 'snapchunk's), or null for a backup from boot */
      snapshot: Record<string, unknown> | null;
      cpuPercent: number;
      publish: number[];
      module?: Uint8Array;
      metered?: Uint8Array;
    } & AboutVm)
  | ({ t: 'log'; gen: number; first: number; last: number; frame: Uint8Array; released: number } & AboutVm)
  | ({ t: 'ack'; gen: number; seq: number; count: bigint } & AboutVm)
  | { t: 'mod-offer'; id: number; items: { hash: string; kind: 'module' | 'metered'; bytes: number }[] }
  | { t: 'mod-need'; id: number; need: string[]; refused?: string }
  | { t: 'mod-chunk'; hash: string; at: number; bytes: Uint8Array }
  /** `id`: the sender waits for an 'admin-res' with it (a REST send: refused with FTVM_ERR_BUSY when the input queue is full) */
  | ({ t: 'fwd'; conn: number; data: Uint8Array; eof: boolean; hops: number; off?: number; window?: number; id?: number } & AboutVm)
  /** a forwarded send of connection `conn` was refused: the VM's input queue is full (FTVM_ERR_BUSY) */
  | ({ t: 'busy'; conn: number } & AboutVm)
  /** `gen`: the generation that released it (absent from a host of an earlier version) */
  | ({ t: 'out'; conn: number; seq: number; data: Uint8Array; eof: boolean; off?: number; gen?: number } & AboutVm)
  | { t: 'in-ack'; acks: [number, number][] }
  | ({ t: 'in-resend'; conn: number; from: number } & AboutVm)
  | ({ t: 'primary'; gen: number; host: string; publish?: number[] } & AboutVm)
  | ({ t: 'adopt'; conn: number; after: number; owner: string } & AboutVm)
  | { t: 'conn-owner'; conn: number; owner: string }
  | ({ t: 'backup-failed'; gen: number } & AboutVm)
  /** `backupOn`: a planned switch (live migration) says where the new primary makes its new backup */
  | ({ t: 'failover'; gen: number; backupOn?: string } & AboutVm)
  | ({ t: 'stop'; gen: number } & AboutVm)
  | { t: 'vminfo'; info: VmInfoMessage }
  /** `to`, `replica`: a migration's target host and which replica moves ('migrate' only) */
  | ({ t: 'admin'; id: number; op: 'failover' | 'restart-backup' | 'migrate'; to?: string; replica?: 'primary' | 'backup' } & AboutVm)
  | ({ t: 'out-read'; id: number; stream: 'stdout' | 'stderr'; from: number; waitMs: number } & AboutVm)
  | { t: 'out-res'; id: number; read: Record<string, unknown> | null; code: string | null; message: string | null }
  /** `result`: what a migration did (FtHost MigrateResult), once it is done */
  | { t: 'admin-res'; id: number; code: string | null; message: string | null; result?: Record<string, unknown> }
  /**
   * Start a VM with its primary on the receiving host (placement chose it):
   * the module rides along when small, else it was shipped before (by hash).
   * Answered by 'start-res' with the same `id`.
   */
  | ({
      t: 'start-fwd';
      id: number;
      moduleHash: string;
    } & Omit<StartRequest, 'name' | 'host' | 'moduleHash'> &
      AboutVm)
  /** how a forwarded start ended: the VM's generation and replicas, or the error's code and message */
  | { t: 'start-res'; id: number; gen: number | null; primary: string | null; backup: string | null; code: string | null; message: string | null };

/** The message of type `T`. */
export type PeerMessageOf<T extends PeerMessage['t']> = Extract<PeerMessage, { t: T }>;

type Check = (v: unknown) => boolean;
const isInt: Check = (v) => Number.isSafeInteger(v);
const isNat: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
/** a sequence number: -1 before the first */
const isSeq: Check = (v) => Number.isSafeInteger(v) && (v as number) >= -1;
const isU32: Check = (v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;
const isStr: Check = (v) => typeof v === 'string';
const isBool: Check = (v) => typeof v === 'boolean';
const isBytes: Check = (v) => v instanceof Uint8Array;
const isBig: Check = (v) => typeof v === 'bigint';
const isObj: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
const isPort: Check = (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;
const opt = (c: Check): Check & { optional: true } => Object.assign((v: unknown) => v === undefined || c(v), { optional: true as const });
const orNull = (c: Check): Check => (v) => v === null || c(v);
const listOf = (c: Check, max: number): Check => (v) => Array.isArray(v) && v.length <= max && v.every(c);
const oneOf = (...xs: unknown[]): Check => (v) => xs.includes(v);
const isRing: Check = (v) => isObj(v) && isNat((v as RingImage).start) && isBytes((v as RingImage).bytes);
const isPair: Check = (v) => Array.isArray(v) && v.length === 2 && isU32(v[0]) && isNat(v[1]);


/** The fields each message must have, with their checks. */
const SCHEMAS: { [T in PeerMessage['t']]: Record<string, Check> } = {
  hb: { unbound: opt(listOf(isStr, 4096)), boot: opt(isStr) },
  snapchunk: { vm: isStr, gen: isNat, at: isNat, total: isNat, bytes: isBytes },
  rings: { vm: isStr, gen: isNat, rings: (v) => isObj(v) && opt(isRing)((v as Record<string, unknown>).stdout) && opt(isRing)((v as Record<string, unknown>).stderr) },
  backup: {
    vm: isStr,
    gen: isNat,
    moduleHash: isStr,
    meteredHash: isStr,
    start: isObj,
    primary: isStr,
    snapshot: orNull(isObj),
    cpuPercent: (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 100,
    publish: listOf(isPort, 8),
    module: opt(isBytes),
    metered: opt(isBytes),
  },
  log: { vm: isStr, gen: isNat, first: isNat, last: isNat, frame: isBytes, released: isSeq },
  ack: { vm: isStr, gen: isNat, seq: isSeq, count: isBig },
  'mod-offer': { id: isInt, items: listOf((it) => isObj(it) && isStr((it as { hash: unknown }).hash) && oneOf('module', 'metered')((it as { kind: unknown }).kind) && isNat((it as { bytes: unknown }).bytes), 4) },
  'mod-need': { id: isInt, need: listOf(isStr, LIST_MAX), refused: opt(isStr) },
  'mod-chunk': { hash: isStr, at: isNat, bytes: isBytes },
  busy: { vm: isStr, conn: isU32 },
  fwd: { vm: isStr, conn: isU32, data: isBytes, eof: isBool, hops: isNat, off: opt(isNat), window: opt(isNat), id: opt(isInt) },
  out: { vm: isStr, conn: isU32, seq: isNat, data: isBytes, eof: isBool, off: opt(isNat), gen: opt(isNat) },
  'in-ack': { acks: listOf(isPair, LIST_MAX) },
  'in-resend': { vm: isStr, conn: isU32, from: isNat },
  primary: { vm: isStr, gen: isNat, host: isStr, publish: opt(listOf(isPort, 8)) },
  adopt: { vm: isStr, conn: isU32, after: isSeq, owner: isStr },
  'conn-owner': { conn: isU32, owner: isStr },
  'backup-failed': { vm: isStr, gen: isNat },
  failover: { vm: isStr, gen: isNat, backupOn: opt(isStr) },
  stop: { vm: isStr, gen: isNat },
  vminfo: { info: (v) => isObj(v) && isStr((v as VmInfoMessage).name) && isNat((v as VmInfoMessage).gen) && isStr((v as VmInfoMessage).primary) },
  admin: { id: isInt, vm: isStr, op: oneOf('failover', 'restart-backup', 'migrate'), to: opt(isStr), replica: opt(oneOf('primary', 'backup')) },
  'out-read': { id: isInt, vm: isStr, stream: oneOf('stdout', 'stderr'), from: isNat, waitMs: isNat },
  'out-res': { id: isInt, read: orNull(isObj), code: orNull(isStr), message: orNull(isStr) },
  'admin-res': { id: isInt, code: orNull(isStr), message: orNull(isStr), result: opt(isObj) },
  'start-fwd': {
    id: isInt,
    vm: isStr,
    moduleHash: isStr,
    module: opt(isBytes),
    args: opt(listOf(isStr, LIST_MAX)),
    env: opt(isObj),
    stdin: opt(isBytes),
    memoryMiB: opt(isNat),
    cpuPercent: opt(isNat),
    publish: opt(listOf(isPort, 8)),
  },
  'start-res': { id: isInt, gen: orNull(isNat), primary: orNull(isStr), backup: orNull(isStr), code: orNull(isStr), message: orNull(isStr) },
};

/** A peer message that is not one of PeerMessage's: FTVM_ERR_BAD_MESSAGE, with the type and the first field that is wrong. */
export class PeerMessageError extends Error {
  readonly code = 'FTVM_ERR_BAD_MESSAGE' satisfies FtvmErrorCode;
  constructor(message: string) {
    super(message);
    this.name = 'PeerMessageError';
  }
}

/**
 * Checks a decoded peer frame's message against its type's fields (above)
 * and returns it typed. Fields the type does not name are ignored. Errors:
 * PeerMessageError FTVM_ERR_BAD_MESSAGE (an unknown `t`, or a field missing or
 * of the wrong type).
 */
export function parsePeerMessage(m: WireMessage): PeerMessage {
  const schema = Object.hasOwn(SCHEMAS, m.t) ? SCHEMAS[m.t as PeerMessage['t']] : undefined;
  if (!schema) throw new PeerMessageError(`unknown message type ${JSON.stringify(String(m.t)).slice(0, 40)}`);
  for (const [field, check] of Object.entries(schema)) {
    if (!check(m[field])) throw new PeerMessageError(`${m.t}: "${field}" is ${m[field] === undefined ? 'missing' : 'not what it must be'}`);
  }
  return m as unknown as PeerMessage;
}
