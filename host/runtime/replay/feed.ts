// The replaying side of the engine: a feed of log entries that the guest's
// host calls take one by one, each checked against what the guest asks for
// (take-compare), shared by `ftvm replay` (replayGuest: a whole log, which ends
// where the log ends) and a backup replica (engine.ts: the log as it
// streams from the primary, which blocks for more and ends by going live).
//
// Every check raises a DivergenceError (FTVM_ERR_DIVERGENCE) that names the
// entry the feed was at, with the same words whichever way the log came in.

import type { EntryKind, LogEntry } from '../../log/format.ts';
import type { NicMessage } from '../nic.ts';
import type { Place } from '../events.ts';
import { CHUNK_BYTES, DivergenceError } from './core.ts';

/** How a feed gets more entries, and what its end means. */
export interface FeedSource {
  /** the guest's count now */
  count(): bigint;
  /**
   * Called when every entry received was taken: blocks until more arrive
   * (pushed with Feed.push) and returns true, or returns false when none will
   * come (the log's end; a replica that went live).
   */
  more(): boolean;
  /**
   * What running out of entries means to `take`: 'live' (a replica that went
   * live: take returns null and the caller runs live), or 'end' (a whole log:
   * a DivergenceError naming the end of the log).
   */
  end: 'live' | 'end';
  /** called before every look at the next entry (a replica reports how far it got) */
  onPeek?(): void;
  /** called after each entry taken (a replay of an incomplete log stops at its last one) */
  afterTake?(): void;
  /** drop entries already taken once this many are held (a streamed log; default: keep all) */
  compactAt?: number;
}

type Entry<K extends EntryKind> = Extract<LogEntry, { kind: K }>;

const describe = (kind: string, c: bigint): string => `${kind} at count ${c}`;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Where an entry happened: an interrupt where it was delivered, a digest at a check point; null for the rest. */
export function placeOf(e: LogEntry): Place | null {
  return e.kind === 'interrupt' ? e.payload.at : e.kind === 'digest' ? 'check' : null;
}

/**
 * The entries to replay, and the take-compare steps every host call uses.
 * `take` returns null only for a source whose end is 'live'.
 */
export class Feed {
  private readonly entries: LogEntry[] = [];
  private at = 0;
  /** entries taken and dropped (compactAt) */
  private dropped = 0;
  /** nextEvent: entries before this index hold no digest or interrupt (from `at` on) */
  private scanned = 0;
  /** nextEvent: the index of the next digest or interrupt found, or -1 */
  private eventAt = -1;
  /** nextEvent found the exit: nothing after it is an event */
  private exitFound = false;

  constructor(private readonly source: FeedSource) {}

  /** Adds a received entry (seq order is the caller's to check). */
  push(e: LogEntry): void {
    this.entries.push(e);
  }

  /** Entries taken so far. */
  get taken(): number {
    return this.dropped + this.at;
  }

  /** Whether every entry received was taken. */
  get drained(): boolean {
    return this.at >= this.entries.length;
  }

  /** The next entry received, without waiting; null when every one was taken. */
  peekNow(): LogEntry | null {
    return this.entries[this.at] ?? null;
  }

  /** The next entry, waiting for it (FeedSource.more); null at the feed's end. */
  peek(): LogEntry | null {
    this.source.onPeek?.();
    const max = this.source.compactAt;
    if (max !== undefined && this.at >= max) this.compact();
    while (this.at >= this.entries.length) if (!this.source.more()) return null;
    return this.entries[this.at]!;
  }

  /** The next entry, which must be of `kind` at count `c` (default: the guest's count now); null at a 'live' end. */
  take<K extends EntryKind>(kind: K, c: bigint = this.source.count()): Entry<K> | null {
    const e = this.peek();
    if (!e) return this.ended(kind, c);
    if (e.kind !== kind || e.count !== c) throw new DivergenceError(e, describe(e.kind, e.count), describe(kind, c));
    this.at++;
    this.source.afterTake?.();
    return e as Entry<K>;
  }

  /**
   * Consecutive entries of `kind` at count `c`, up to the first shorter than
   * CHUNK_BYTES, joined (core.ts chunksOf cut them); `bytesOf` checks each
   * entry's payload and picks its bytes. Null at a 'live' end before the
   * first piece; the live side logs a payload's pieces in one frame, so the
   * feed never ends inside one (an Error if it does).
   */
  takeChunks<K extends 'input' | 'output' | 'random' | 'file'>(kind: K, c: bigint, bytesOf: (e: Entry<K>) => Uint8Array): Uint8Array | null {
    const parts: Uint8Array[] = [];
    for (;;) {
      const e = this.take(kind, c);
      if (!e) {
        if (parts.length) throw new Error(`the log ended inside a ${kind} payload`);
        return null;
      }
      parts.push(bytesOf(e));
      if (parts.at(-1)!.length < CHUNK_BYTES) break;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** The next clock reading, which must be of `clock`; null at a 'live' end. */
  takeClock(clock: number): Entry<'clock'> | null {
    const e = this.take('clock');
    if (e && e.payload.clock !== clock) throw new DivergenceError(e, `clock ${e.payload.clock}`, `clock ${clock}`);
    return e;
  }

  /** Fills `dest` with the logged random bytes; false at a 'live' end. */
  takeRandom(dest: Uint8Array): boolean {
    const e = this.peek();
    const bytes = this.takeChunks('random', this.source.count(), (r) => r.payload);
    if (!bytes) return false;
    if (bytes.length !== dest.length) throw new DivergenceError(e, `${bytes.length} random bytes`, `${dest.length} random bytes`);
    dest.set(bytes);
    return true;
  }

  /** Checks bytes the guest wrote on `fd` against the log; false at a 'live' end. */
  compareOutput(fd: number, b: Uint8Array): boolean {
    const e = this.peek();
    const logged = this.takeChunks('output', this.source.count(), onFd(fd));
    if (!logged) return false;
    if (Buffer.compare(logged, b) !== 0) throw new DivergenceError(e, `${logged.length} bytes on fd ${fd}`, `${b.length} different bytes on fd ${fd}`);
    return true;
  }

  /** Checks a message the guest sent on its NIC against the log; false at a 'live' end. */
  compareSend(msg: NicMessage): boolean {
    const e = this.take('send');
    if (!e) return false;
    const p = e.payload;
    if (p.conn !== msg.conn || p.eof !== msg.eof || Buffer.compare(p.bytes, msg.bytes) !== 0) {
      throw new DivergenceError(e, `a message of ${p.bytes.length} bytes to ${p.conn}${p.eof ? ' (eof)' : ''}`, `${msg.bytes.length} bytes to ${msg.conn}${msg.eof ? ' (eof)' : ''}`);
    }
    return true;
  }

  /** A streamed stdin read of at most `maxBytes` (start.stdin 'stream'): the logged bytes; null at a 'live' end. */
  takeStdinRead(maxBytes: number): Uint8Array | null {
    const e = this.take('input');
    if (!e) return null;
    const bytes = onFd(0)(e);
    if (bytes.length > maxBytes) throw new DivergenceError(e, `a read of ${bytes.length} bytes`, `a read of at most ${maxBytes} bytes`);
    return bytes;
  }

  /** The logged digest at a check point at `count`, compared with `mine` (the guest's stateDigest). */
  checkDigest(count: bigint, mine: Uint8Array): void {
    const d = this.take('digest', count);
    if (d && Buffer.compare(d.payload, mine) !== 0) throw new DivergenceError(d, `digest ${hex(d.payload)}`, `digest ${hex(mine)}`);
  }

  /**
   * How the guest ended against the log: its exit entry, then the final
   * digest, at `count`. Returns false at a 'live' end (nothing checked).
   */
  checkExit(count: bigint, ended: { exitCode: number | null; trap: string | null }, digest: Uint8Array): boolean {
    const end = this.take('exit', count);
    if (!end) return false;
    if (end.payload.code !== ended.exitCode || end.payload.trap !== ended.trap) {
      throw new DivergenceError(end, `exit ${JSON.stringify(end.payload)}`, `exit ${JSON.stringify({ code: ended.exitCode, trap: ended.trap })}`);
    }
    const last = this.take('digest', count);
    if (last && Buffer.compare(last.payload, digest) !== 0) throw new DivergenceError(last, `final digest ${hex(last.payload)}`, `final digest ${hex(digest)}`);
    return true;
  }

  /**
   * The next digest or interrupt received (what happens at a check point or
   * while the guest waits), or null: none received yet, or the exit comes
   * first (the final digest follows the exit and is no event).
   */
  nextEvent(): LogEntry | null {
    if (this.eventAt >= this.at) return this.entries[this.eventAt]!;
    if (this.exitFound) return null;
    let i = Math.max(this.at, this.scanned);
    for (; i < this.entries.length; i++) {
      const k = this.entries[i]!.kind;
      if (k === 'digest' || k === 'interrupt') {
        this.scanned = this.eventAt = i;
        return this.entries[i]!;
      }
      if (k === 'exit') {
        this.scanned = i;
        this.exitFound = true;
        return null;
      }
    }
    this.scanned = i;
    return null;
  }

  private ended<K extends EntryKind>(kind: K, c: bigint): null {
    if (this.source.end === 'live') return null;
    throw new DivergenceError(null, 'no more entries', describe(kind, c));
  }

  /** Drops the entries taken (their memory is not needed any more). */
  private compact(): void {
    const n = this.at;
    this.entries.splice(0, n);
    this.dropped += n;
    this.at = 0;
    this.scanned = Math.max(0, this.scanned - n);
    this.eventAt = this.eventAt >= n ? this.eventAt - n : -1;
  }
}

/** Picks the bytes of an input or output entry, which must be on `fd`. */
export function onFd(fd: number) {
  return (e: Entry<'input' | 'output'>): Uint8Array => {
    if (e.payload.fd !== fd) throw new DivergenceError(e, `${e.kind} on fd ${e.payload.fd}`, `${e.kind} on fd ${fd}`);
    return e.payload.bytes;
  };
}

export { describe as describeEntry };
