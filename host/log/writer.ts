// Appends entries to a log: assigns sequence numbers, batches entries into
// frames under the size limit, and hands finished bytes to a sink (a file, a
// socket, a buffer).

import {
  ENTRY_PAYLOAD_BYTES_MAX,
  EntryChecker,
  encodeFrame,
  encodeHeader,
  type EntryKind,
  type EntryPayloads,
  type LogEntry,
} from './format.ts';

/** Frames are cut at this many payload bytes (well under FRAME_BYTES_MAX). */
const FRAME_TARGET_BYTES = 64 * 1024;
const FRAME_ENTRIES_MAX = 4096;

function payloadBytes(p: unknown): number {
  if (p instanceof Uint8Array) return p.length;
  if (typeof p === 'object' && p !== null && 'bytes' in p && p.bytes instanceof Uint8Array) return p.bytes.length;
  return 16;
}

export class LogWriter {
  private pending: LogEntry[] = [];
  private pendingBytes = 0;
  private seq = 0;
  private readonly checker = new EntryChecker();
  /** bytes handed to the sink so far, header included */
  bytesWritten = 0;

  constructor(private readonly sink: (bytes: Uint8Array) => void) {
    this.emit(encodeHeader());
  }

  get entries(): number {
    return this.seq;
  }

  append<K extends EntryKind>(kind: K, count: bigint, payload: EntryPayloads[K]): LogEntry {
    const size = payloadBytes(payload);
    if (size > ENTRY_PAYLOAD_BYTES_MAX) {
      throw new RangeError(`a ${kind} entry of ${size} bytes exceeds the ${ENTRY_PAYLOAD_BYTES_MAX}-byte limit`);
    }
    const entry = { seq: this.seq, count, kind, payload } as LogEntry;
    // The writer holds itself to the same invariants as every reader.
    const problem = this.checker.accept({ ...entry });
    if (problem) throw new Error(`log invariant broken: ${problem}`);
    this.seq++;
    if (this.pendingBytes + size > FRAME_TARGET_BYTES) this.flush();
    this.pending.push(entry);
    this.pendingBytes += size + 16;
    if (this.pending.length >= FRAME_ENTRIES_MAX) this.flush();
    return entry;
  }

  /** Ends the current frame, if it has entries. */
  flush(): void {
    if (this.pending.length === 0) return;
    this.emit(encodeFrame(this.pending));
    this.pending = [];
    this.pendingBytes = 0;
  }

  private emit(bytes: Uint8Array): void {
    this.bytesWritten += bytes.length;
    this.sink(bytes);
  }
}
