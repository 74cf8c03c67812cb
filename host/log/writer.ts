// Appends entries to a log: assigns sequence numbers, batches entries into
// frames under the size limit, and hands finished bytes to a sink (a file, a
// socket, a buffer).
//
// Bounds: a frame is cut once its entries reach FRAME_TARGET_BYTES or
// FRAME_ENTRIES_MAX, so the writer never holds more than about that (plus one
// entry) in memory. With `flushAfterMs`, no entry waits longer than that
// before it reaches the sink once the writer is called again (append or
// flushIfDue): a recording that is killed loses at most the last interval.
// The start entry is always a frame of its own, written at once; it may be
// up to START_FRAME_BYTES_MAX (the arguments and environment of a command can
// exceed FRAME_BYTES_MAX), every other frame stays under FRAME_BYTES_MAX.

import {
  ENTRY_PAYLOAD_BYTES_MAX,
  EntryChecker,
  FRAME_BYTES_MAX,
  LogLimitError,
  START_FRAME_BYTES_MAX,
  encodeFrame,
  encodeHeader,
  type EntryKind,
  type EntryPayloads,
  type LogEntry,
} from './format.ts';
import { LOG_FRAME_TARGET_BYTES as FRAME_TARGET_BYTES, LOG_FRAME_ENTRIES_MAX as FRAME_ENTRIES_MAX } from '../limits.ts';


/** An estimate of an entry's encoded size, bytes (strings and byte payloads counted; the rest 16). */
function payloadBytes(p: unknown): number {
  if (p instanceof Uint8Array) return p.length;
  if (typeof p === 'object' && p !== null) {
    let n = 16;
    if ('bytes' in p && p.bytes instanceof Uint8Array) n += p.bytes.length;
    if ('path' in p && typeof p.path === 'string') n += p.path.length * 3;
    return n;
  }
  return 16;
}

/** How a LogWriter bounds the time an entry waits in memory. */
export interface LogWriterOptions {
  /** an entry reaches the sink at most this many ms after it was appended, at the writer's next call (default: no time bound) */
  flushAfterMs?: number;
  /** the clock for flushAfterMs, ms (default performance.now) */
  now?: () => number;
}

/**
 * Writes one log: the header at once, then entries (append) in frames handed
 * to the sink whole. Holds at most one frame's worth of entries (about
 * FRAME_TARGET_BYTES) in memory, and with `flushAfterMs` no entry longer than
 * that. Errors: see append; what the sink throws.
 */
export class LogWriter {
  private pending: LogEntry[] = [];
  private pendingBytes = 0;
  private seq = 0;
  private lastCount = 0n;
  /** when the oldest pending entry was appended, or (none pending) when the sink last got a frame, ms */
  private since: number;
  private readonly now: () => number;
  private readonly checker = new EntryChecker();
  /** bytes handed to the sink so far, header included */
  bytesWritten = 0;

  /**
   * Writes the log header to `sink` at once. The sink is called with whole
   * frames; what it throws (a failed write) propagates to the caller of
   * append or flush.
   */
  constructor(
    private readonly sink: (bytes: Uint8Array) => void,
    private readonly opts: LogWriterOptions = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.since = this.now();
    this.emit(encodeHeader());
  }

  /** entries appended so far */
  get entries(): number {
    return this.seq;
  }

  /**
   * Appends one entry at `count`. Errors: FTVM_ERR_LOG_ENTRY_TOO_LARGE (a
   * payload over ENTRY_PAYLOAD_BYTES_MAX, or a start entry over
   * START_FRAME_BYTES_MAX encoded); an Error when the entry breaks the log's
   * invariants (seq, count order, payload shape: a bug of the caller).
   */
  append<K extends EntryKind>(kind: K, count: bigint, payload: EntryPayloads[K]): LogEntry {
    const size = payloadBytes(payload);
    if (kind !== 'start' && size > ENTRY_PAYLOAD_BYTES_MAX) {
      throw new LogLimitError(`a ${kind} entry of ${size} bytes exceeds the ${ENTRY_PAYLOAD_BYTES_MAX}-byte limit`);
    }
    const entry = { seq: this.seq, count, kind, payload } as LogEntry;
    if (kind === 'start') {
      // Encoded (and refused when too large) before it counts as appended.
      this.flush();
      const frame = encodeFrame([entry], START_FRAME_BYTES_MAX);
      this.accept(entry);
      this.emit(frame);
      return entry;
    }
    this.accept(entry);
    if (this.pendingBytes + size > FRAME_TARGET_BYTES) this.flush();
    if (this.pending.length === 0) this.since = this.now();
    this.pending.push(entry);
    this.pendingBytes += size + 16;
    if (this.pending.length >= FRAME_ENTRIES_MAX) this.flush();
    else if (this.opts.flushAfterMs !== undefined && this.now() - this.since >= this.opts.flushAfterMs) this.flush();
    return entry;
  }

  /**
   * When `flushAfterMs` has passed since the oldest pending entry (or, with
   * none pending, since the last frame): appends a `progress` entry at
   * `count` when given and past the last entry's count (so a log cut here
   * says how far the guest got), and ends the frame. Returns whether it did.
   */
  flushIfDue(count?: bigint): boolean {
    if (this.opts.flushAfterMs === undefined || this.now() - this.since < this.opts.flushAfterMs) return false;
    if (count !== undefined && count > this.lastCount) this.append('progress', count, null);
    this.flush();
    this.since = this.now();
    return true;
  }

  /** Ends the current frame, if it has entries. */
  flush(): void {
    if (this.pending.length === 0) return;
    const entries = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.emitFrames(entries);
    this.since = this.now();
  }

  /** Encodes entries as one frame, or (when the size estimate was short) as several, each under FRAME_BYTES_MAX. */
  private emitFrames(entries: LogEntry[]): void {
    let frame: Uint8Array;
    try {
      frame = encodeFrame(entries, FRAME_BYTES_MAX);
    } catch (e) {
      if (!(e instanceof LogLimitError) || entries.length === 1) throw e;
      const half = entries.length >> 1;
      this.emitFrames(entries.slice(0, half));
      this.emitFrames(entries.slice(half));
      return;
    }
    this.emit(frame);
  }

  private accept(entry: LogEntry): void {
    // The writer holds itself to the same invariants as every reader.
    const problem = this.checker.accept({ ...entry });
    if (problem) throw new Error(`log invariant broken: ${problem}`);
    this.seq++;
    this.lastCount = entry.count;
  }

  private emit(bytes: Uint8Array): void {
    this.bytesWritten += bytes.length;
    this.sink(bytes);
  }
}
