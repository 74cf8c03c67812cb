// The log: every nondeterministic input of a guest, and every output, as
// entries (seq, count, kind, payload), in checksummed frames.
//
// File layout (integers little-endian):
//
//   offset  size  field
//   0       8     magic "FTVMLOG\0"
//   8       2     version (LOG_VERSION)
//   10      2     reserved, zero
//   12      4     CRC-32 of bytes 0..11
//   16      ...   frames, back to back
//
// Frame:
//   0       4     payload length L, 1 <= L <= FRAME_BYTES_MAX (the first frame of
//                 a file, which holds the start entry alone: START_FRAME_BYTES_MAX)
//   4       4     CRC-32 of the payload
//   8       L     payload: a msgpack array of entries
//
// Versions: 1 had timer interrupts only; 2 adds where an interrupt was
// delivered, NIC messages in interrupt entries, `send` and `progress` entries;
// 3 adds to `start` how stdin is given (whole at start, or streamed: an
// `input` entry at each read), the preopened directories and whether the
// guest has the listening socket, and to `file` the preopen a file belongs to
// and its modification time. A version-2 log still reads: a start entry
// without those fields means stdin whole, one preopen "/", the socket given
// (what version 2 always did), a file entry without them belongs to preopen 0.
// 4 adds to a NIC message's interrupt entry the connection's send window
// (`window`) when the message moves it; a version-3 log still reads (its
// connections had no windows). Any version may carry, on a monotonic `clock`
// entry, the host's realtime when it was read (`wall`; host/runtime/vm-clock.ts):
// only a replica that goes live uses it, a replay returns `ns` alone, and a
// reader that does not know it reads the entry as before.
//
// A log written by a recording that was stopped (a signal, a crash) ends
// early: at a frame boundary (no exit entry: isComplete is false), or inside
// its last frame when the process died while writing it (readLogPrefix reads
// what came before). Both read as incomplete, never as a different run.
//
// Entries are msgpackr records with the fixed structure [seq, count, kind,
// payload], so each frame decodes on its own. `seq` starts at 0 and grows by one
// across the whole log; `count` never decreases. A reader refuses anything else
// with a LogFormatError that names the frame and its byte offset; it never
// returns a log it could not check.

import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import type { FtvmErrorCode } from '../errors.ts';
import { LOG_HEADER_BYTES as HEADER_BYTES, LOG_FRAME_HEADER_BYTES as FRAME_HEADER_BYTES, LOG_FRAME_BYTES_MAX as FRAME_BYTES_MAX, LOG_START_FRAME_BYTES_MAX as START_FRAME_BYTES_MAX, LOG_PREOPENS_MAX as PREOPENS_MAX } from '../limits.ts';
export { HEADER_BYTES, FRAME_HEADER_BYTES, FRAME_BYTES_MAX, START_FRAME_BYTES_MAX, PREOPENS_MAX };

export const LOG_MAGIC = Buffer.from('FTVMLOG\0', 'latin1');
export const LOG_VERSION = 4;
/** The oldest version a reader accepts (see "Versions" above). */
export const LOG_VERSION_MIN = 2;
/** No single entry payload is larger (a frame holds at least one entry). */
export const ENTRY_PAYLOAD_BYTES_MAX = FRAME_BYTES_MAX - 1024;

/** What an entry records, and the shape of its payload. */
export interface EntryPayloads {
  /** the first entry: what the VM was started with, so a replay runs the same thing */
  start: {
    /** sha256 of the guest module, hex */
    module: string;
    args: string[];
    env: Record<string, string>;
    /** a digest entry is logged at the first check point at or past every multiple of this */
    digestEvery: bigint;
    depthLimit: number;
    memoryLimitPages: number;
    canonicalizeNaNs: boolean;
    /**
     * how fd 0 is given (version 3; absent: 'whole'): 'whole', every byte as
     * `input` entries at count 0 right after the files; 'stream', one `input`
     * entry at the count of each read the guest makes, holding what it got
     * (empty: end of file)
     */
    stdin?: StdinMode;
    /** the guest names of the preopened directories, at fds 3, 4, ... (version 3; absent: ["/"]) */
    preopens?: string[];
    /** the guest has the NIC's listening socket after the preopens (version 3; absent: true) */
    listen?: boolean;
  };
  /**
   * clock_time_get: the clock's id and its value; `wall`, on a monotonic
   * reading of a cluster VM: the realtime (ns since the epoch) of the host
   * that took it, then (where the VM's clock stands at a go-live, vm-clock.ts)
   */
  clock: { clock: number; ns: bigint; wall?: bigint };
  /** random_get: the bytes handed to the guest */
  random: Uint8Array;
  /**
   * the VM's filesystem at start: a directory, or (part of) a file's
   * contents, in canonical order; `preopen` is the index of its preopened
   * directory in `start.preopens` (absent: 0), `mtimeNs` its modification
   * time in ns since the epoch (absent: 0); `symlink`: a symbolic link whose
   * target (UTF-8) is `bytes`. Version 3 logs each preopen's root first, as
   * the directory with path "".
   */
  file: { path: string; dir: boolean; bytes: Uint8Array; preopen?: number; mtimeNs?: bigint; symlink?: boolean };
  /** bytes the guest read from an input fd */
  input: { fd: number; bytes: Uint8Array };
  /** bytes the guest wrote to an output fd */
  output: { fd: number; bytes: Uint8Array };
  /**
   * an interrupt delivered to the guest at this count: its kind (1 timer,
   * 2 NIC message), where it was delivered ('check' point, blocked in a
   * host call: 'wait', or to an 'idle' reactor), and for a NIC message its
   * connection, bytes and end-of-stream flag (timer ticks: 0, empty, false),
   * and `window` when it moves the connection's send window (nic.ts: the
   * offset in the guest's outgoing stream it may send up to)
   */
  interrupt: { kind: number; at: 'check' | 'wait' | 'idle'; conn: number; bytes: Uint8Array; eof: boolean; window?: number };
  /** a message the guest sent on its virtual NIC (eof: it closed the connection) */
  send: { conn: number; bytes: Uint8Array; eof: boolean };
  /**
   * the primary passed this count with nothing else to log: a backup may run
   * up to it (nothing can come before it any more); a replay skips it
   */
  progress: null;
  /** a digest of the guest's state */
  digest: Uint8Array;
  /** the guest ended: exit code, or the trap's message */
  exit: { code: number | null; trap: string | null };
}

/** How a guest's stdin is given, see EntryPayloads['start'].stdin. */
export type StdinMode = 'whole' | 'stream';

export type EntryKind = keyof EntryPayloads;
export const ENTRY_KINDS: readonly EntryKind[] = ['start', 'file', 'clock', 'random', 'input', 'output', 'interrupt', 'send', 'progress', 'digest', 'exit'];

export type LogEntry = {
  [K in EntryKind]: { seq: number; count: bigint; kind: K; payload: EntryPayloads[K] };
}[EntryKind];

export type LogErrorCode = Extract<
  FtvmErrorCode,
  | 'FTVM_ERR_LOG_FOREIGN'
  | 'FTVM_ERR_LOG_VERSION'
  | 'FTVM_ERR_LOG_HEADER'
  | 'FTVM_ERR_LOG_TRUNCATED'
  | 'FTVM_ERR_LOG_FRAME_SIZE'
  | 'FTVM_ERR_LOG_CHECKSUM'
  | 'FTVM_ERR_LOG_DECODE'
  | 'FTVM_ERR_LOG_ENTRY'
>;

/** An entry or frame too large to be written (FTVM_ERR_LOG_ENTRY_TOO_LARGE): the writer refuses it before it reaches the log. */
export class LogLimitError extends Error {
  readonly code = 'FTVM_ERR_LOG_ENTRY_TOO_LARGE' satisfies FtvmErrorCode;
  constructor(message: string) {
    super(message);
    this.name = 'LogLimitError';
  }
}

export class LogFormatError extends Error {
  constructor(
    readonly code: LogErrorCode,
    message: string,
    /** index of the bad frame, -1 for the header */
    readonly frame: number,
    /** byte offset where the bad part starts */
    readonly offset: number,
  ) {
    super(frame < 0 ? `log header: ${message}` : `log frame ${frame} at byte ${offset}: ${message}`);
    this.name = 'LogFormatError';
  }
}

// One structure for every entry, fixed by the log version: frames decode independently.
const packr = (): Packr =>
  new Packr({
    useRecords: true,
    structures: [['seq', 'count', 'kind', 'payload']],
    maxSharedStructures: 1,
    int64AsType: 'bigint',
    mapsAsObjects: true,
    bundleStrings: false,
  });

export function encodeHeader(): Uint8Array {
  const h = Buffer.alloc(HEADER_BYTES);
  LOG_MAGIC.copy(h, 0);
  h.writeUInt16LE(LOG_VERSION, 8);
  h.writeUInt32LE(crc32(h.subarray(0, 12)), 12);
  return h;
}

/**
 * Encodes entries as one frame of at most `maxBytes` of payload (FRAME_BYTES_MAX;
 * START_FRAME_BYTES_MAX for a file's first frame, see LogWriter); a larger one
 * is refused with LogLimitError (FTVM_ERR_LOG_ENTRY_TOO_LARGE).
 */
export function encodeFrame(entries: readonly LogEntry[], maxBytes: number = FRAME_BYTES_MAX): Uint8Array {
  const payload = packr().pack(entries.map((e) => ({ seq: e.seq, count: e.count, kind: e.kind, payload: e.payload })));
  if (payload.length > maxBytes) {
    const what = entries.length === 1 ? `a ${entries[0]!.kind} entry` : `a frame of ${entries.length} entries`;
    throw new LogLimitError(`${what} takes ${payload.length} bytes, more than the log's limit of ${maxBytes}`);
  }
  const out = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32(payload), 4);
  payload.copy(out, FRAME_HEADER_BYTES);
  return out;
}

/** Checks the header; returns the offset of the first frame. */
export function decodeHeader(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < HEADER_BYTES || !b.subarray(0, 8).equals(LOG_MAGIC)) {
    throw new LogFormatError('FTVM_ERR_LOG_FOREIGN', 'not an ftvm log (bad magic)', -1, 0);
  }
  if (b.readUInt32LE(12) !== crc32(b.subarray(0, 12))) {
    throw new LogFormatError('FTVM_ERR_LOG_HEADER', 'header checksum mismatch', -1, 0);
  }
  const version = b.readUInt16LE(8);
  if (version < LOG_VERSION_MIN || version > LOG_VERSION) {
    throw new LogFormatError('FTVM_ERR_LOG_VERSION', `version ${version} is not supported (this ftvm reads ${LOG_VERSION_MIN} to ${LOG_VERSION})`, -1, 8);
  }
  return HEADER_BYTES;
}

/**
 * Decodes one whole frame (header included), checking its checksum and every
 * entry against `check`; errors name the frame index and byte offset given.
 */
export function decodeFrame(frame: Uint8Array, check: EntryChecker, index = 0, offset = 0, maxBytes: number = FRAME_BYTES_MAX): LogEntry[] {
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const fail = (code: LogErrorCode, msg: string): never => {
    throw new LogFormatError(code, msg, index, offset);
  };
  if (b.length < FRAME_HEADER_BYTES) fail('FTVM_ERR_LOG_TRUNCATED', 'truncated frame header');
  const length = b.readUInt32LE(0);
  if (length === 0 || length > maxBytes) fail('FTVM_ERR_LOG_FRAME_SIZE', `frame length ${length} outside 1..${maxBytes}`);
  if (b.length - FRAME_HEADER_BYTES !== length) fail('FTVM_ERR_LOG_TRUNCATED', `frame needs ${length} bytes, has ${b.length - FRAME_HEADER_BYTES}`);
  const payload = b.subarray(FRAME_HEADER_BYTES);
  if (b.readUInt32LE(4) !== crc32(payload)) fail('FTVM_ERR_LOG_CHECKSUM', 'checksum mismatch');
  let decoded: unknown;
  try {
    decoded = packr().unpack(payload);
  } catch (e) {
    fail('FTVM_ERR_LOG_DECODE', `cannot decode: ${(e as Error).message}`);
  }
  if (!Array.isArray(decoded) || decoded.length === 0) fail('FTVM_ERR_LOG_DECODE', 'a frame holds a non-empty array of entries');
  const out: LogEntry[] = [];
  for (const raw of decoded as unknown[]) {
    const problem = check.accept(raw);
    if (problem) fail('FTVM_ERR_LOG_ENTRY', problem);
    out.push(raw as LogEntry);
  }
  return out;
}

/** Reads a whole log, checking every frame and every entry (a frame cut off at the end is FTVM_ERR_LOG_TRUNCATED). */
export function readLog(bytes: Uint8Array): LogEntry[] {
  return readFrames(bytes, false).entries;
}

/**
 * Reads a log as readLog does, except that a last frame cut off by the end of
 * the file (what a recording killed while writing leaves) ends the log
 * there instead of being an error: `cutAt` is the byte offset where that
 * frame starts (null: the file ends at a frame boundary; 0: the file ends
 * inside the header, possibly empty). Any other damage is
 * a LogFormatError as in readLog.
 */
export function readLogPrefix(bytes: Uint8Array): { entries: LogEntry[]; cutAt: number | null } {
  return readFrames(bytes, true);
}

function readFrames(bytes: Uint8Array, prefix: boolean): { entries: LogEntry[]; cutAt: number | null } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // A file cut inside its header (empty, or part of the magic): a recording stopped before it wrote anything.
  if (prefix && b.length < HEADER_BYTES && LOG_MAGIC.subarray(0, Math.min(b.length, LOG_MAGIC.length)).equals(b.subarray(0, LOG_MAGIC.length))) {
    return { entries: [], cutAt: 0 };
  }
  let at = decodeHeader(b);
  const entries: LogEntry[] = [];
  const check = new EntryChecker();
  for (let frame = 0; at < b.length; frame++) {
    const fail = (code: LogErrorCode, msg: string): never => {
      throw new LogFormatError(code, msg, frame, at);
    };
    const maxBytes = frame === 0 ? START_FRAME_BYTES_MAX : FRAME_BYTES_MAX;
    if (b.length - at < FRAME_HEADER_BYTES) {
      if (prefix) return { entries, cutAt: at };
      fail('FTVM_ERR_LOG_TRUNCATED', 'truncated frame header');
    }
    const length = b.readUInt32LE(at);
    if (length === 0 || length > maxBytes) fail('FTVM_ERR_LOG_FRAME_SIZE', `frame length ${length} outside 1..${maxBytes}`);
    if (b.length - at - FRAME_HEADER_BYTES < length) {
      if (prefix) return { entries, cutAt: at };
      fail('FTVM_ERR_LOG_TRUNCATED', `frame needs ${length} bytes, ${b.length - at - FRAME_HEADER_BYTES} left`);
    }
    for (const e of decodeFrame(b.subarray(at, at + FRAME_HEADER_BYTES + length), check, frame, at, maxBytes)) entries.push(e);
    at += FRAME_HEADER_BYTES + length;
  }
  return { entries, cutAt: null };
}

/**
 * A log is complete when it holds the guest's exit (a recording also logs the
 * final digest after it, see runtime/replay/recorder.ts). A log cut at a frame
 * boundary reads as a shorter log; this is how a reader tells.
 */
export function isComplete(entries: readonly LogEntry[]): boolean {
  return entries.some((e) => e.kind === 'exit');
}

const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const isU32 = (x: unknown): x is number => isInt(x) && x >= 0 && x <= 0xffff_ffff;

/** The shape of each kind's payload. */
const PAYLOAD_OK: { [K in EntryKind]: (p: unknown) => boolean } = {
  start: (p) =>
    isObj(p) &&
    typeof p.module === 'string' &&
    Array.isArray(p.args) &&
    p.args.every((a) => typeof a === 'string') &&
    isObj(p.env) &&
    Object.values(p.env).every((v) => typeof v === 'string') &&
    typeof p.digestEvery === 'bigint' &&
    isInt(p.depthLimit) &&
    isInt(p.memoryLimitPages) &&
    typeof p.canonicalizeNaNs === 'boolean' &&
    (p.stdin === undefined || p.stdin === 'whole' || p.stdin === 'stream') &&
    (p.preopens === undefined || (Array.isArray(p.preopens) && p.preopens.length <= PREOPENS_MAX && p.preopens.every((n) => typeof n === 'string'))) &&
    (p.listen === undefined || typeof p.listen === 'boolean'),
  clock: (p) => isObj(p) && isInt(p.clock) && typeof p.ns === 'bigint' && (p.wall === undefined || typeof p.wall === 'bigint'),
  random: isBytes,
  file: (p) =>
    isObj(p) &&
    typeof p.path === 'string' &&
    typeof p.dir === 'boolean' &&
    isBytes(p.bytes) &&
    (p.preopen === undefined || (isInt(p.preopen) && p.preopen >= 0 && p.preopen < PREOPENS_MAX)) &&
    (p.mtimeNs === undefined || typeof p.mtimeNs === 'bigint') &&
    (p.symlink === undefined || typeof p.symlink === 'boolean'),
  input: (p) => isObj(p) && isInt(p.fd) && isBytes(p.bytes),
  output: (p) => isObj(p) && isInt(p.fd) && isBytes(p.bytes),
  interrupt: (p) =>
    isObj(p) &&
    isInt(p.kind) &&
    (p.at === 'check' || p.at === 'wait' || p.at === 'idle') &&
    isU32(p.conn) &&
    isBytes(p.bytes) &&
    typeof p.eof === 'boolean' &&
    (p.window === undefined || (Number.isSafeInteger(p.window) && (p.window as number) >= 0)),
  send: (p) => isObj(p) && isU32(p.conn) && isBytes(p.bytes) && typeof p.eof === 'boolean',
  progress: (p) => p === null,
  digest: isBytes,
  exit: (p) => isObj(p) && (p.code === null || isInt(p.code)) && (p.trap === null || typeof p.trap === 'string'),
};

/**
 * A decoded value in an error message, on one line: a string quoted and
 * escaped (cut at 80 characters), other primitives as they are, anything else
 * by its type (String() of a decoded map whose toString is not a function throws).
 */
function shown(x: unknown): string {
  if (typeof x === 'string') return JSON.stringify(x.length > 80 ? `${x.slice(0, 80)}...` : x);
  if (x === null || (typeof x !== 'object' && typeof x !== 'function')) return String(x);
  return Array.isArray(x) ? 'an array' : x instanceof Uint8Array ? 'bytes' : 'a map';
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

/** Enforces the invariants across entries: consecutive seq, non-decreasing count, known kinds. */
export class EntryChecker {
  /** a checker for a log read from entry `nextSeq` on (a backup made from a snapshot) */
  constructor(
    private nextSeq = 0,
    private lastCount = 0n,
  ) {}

  /** Returns what is wrong with the entry, or null (and advances). */
  accept(raw: unknown): string | null {
    if (!isObj(raw)) return 'an entry must be a record';
    const { seq, count, kind, payload } = raw;
    if (seq !== this.nextSeq) return `entry seq ${shown(seq)} where ${this.nextSeq} was expected`;
    const c = typeof count === 'number' && Number.isSafeInteger(count) ? BigInt(count) : count;
    if (typeof c !== 'bigint' || c < this.lastCount) {
      return `entry ${seq}: count ${shown(count)} is not a count at or after ${this.lastCount}`;
    }
    if (typeof kind !== 'string' || !(ENTRY_KINDS as readonly string[]).includes(kind)) return `entry ${seq}: unknown kind ${shown(kind)}`;
    if (!PAYLOAD_OK[kind as EntryKind](payload)) return `entry ${seq}: malformed ${kind} payload`;
    raw.count = c;
    this.nextSeq++;
    this.lastCount = c;
    return null;
  }
}
