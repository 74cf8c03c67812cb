// What recording, replay and the replicas of a fault-tolerant VM share: the
// divergence error, the state digest, how payloads are cut into entries and
// how interrupts are logged. Nothing here loads binaryen.

import { createHash } from 'node:crypto';
import { EXPORT_GLOBAL_PREFIX } from '../../meter/abi.ts';
import type { MeterOptions } from '../../meter/index.ts';
import type { EntryPayloads, LogEntry } from '../../log/format.ts';
import type { GuestContext } from '../instance.ts';
import { INTERRUPT_NIC, TIMER_TICK, type Interrupt, type Place } from '../events.ts';
import type { FtvmErrorCode } from '../../errors.ts';
import { LOG_ENTRY_CHUNK_BYTES as CHUNK_BYTES } from '../../limits.ts';
export { CHUNK_BYTES };

export class DivergenceError extends Error {
  readonly code = 'FTVM_ERR_DIVERGENCE' satisfies FtvmErrorCode;
  constructor(
    /** the log entry the replay was at (null: the log had no more entries) */
    readonly entry: LogEntry | null,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `replay diverged at ${entry ? `entry ${entry.seq} (${entry.kind} at count ${entry.count})` : 'the end of the log'}: ` +
        `expected ${expected}, got ${actual}`,
    );
    this.name = 'DivergenceError';
  }
}

/**
 * A log that ends before the guest started (a recording stopped while it
 * logged the VM's files or stdin), replayed with acceptIncomplete: there is
 * nothing of the guest to reproduce.
 */
export class LogIncompleteError extends Error {
  readonly code = 'FTVM_ERR_LOG_INCOMPLETE' satisfies FtvmErrorCode;
  constructor(message: string) {
    super(message);
    this.name = 'LogIncompleteError';
  }
}

/** An interrupt as a log entry's payload. */
export function interruptPayload(i: Interrupt, at: Place): EntryPayloads['interrupt'] {
  return i.kind === INTERRUPT_NIC
    ? { kind: i.kind, at, conn: i.msg.conn, bytes: i.msg.bytes, eof: i.msg.eof, ...(i.msg.window !== undefined ? { window: i.msg.window } : {}) }
    : { kind: i.kind, at, conn: 0, bytes: new Uint8Array(0), eof: false };
}

/** The interrupt a log entry's payload describes. */
export function interruptOf(p: EntryPayloads['interrupt']): Interrupt {
  return p.kind === INTERRUPT_NIC ? { kind: INTERRUPT_NIC, msg: { conn: p.conn, bytes: p.bytes, eof: p.eof, ...(p.window !== undefined ? { window: p.window } : {}) } } : TIMER_TICK;
}

/** State digest: memory, the guest's mutable globals, the virtual devices. */
export function stateDigest(ctx: GuestContext): Uint8Array {
  const h = createHash('sha256');
  h.update(new Uint8Array(ctx.memory.buffer));
  h.update(digestTail(ctx));
  return new Uint8Array(h.digest());
}

/**
 * What stateDigest hashes after the memory: the guest's mutable globals (by
 * name) and the virtual devices' state. A snapshot carries it so that the
 * digest of its memory can be computed later, away from the paused guest
 * (SHA-256(memory || tail) = stateDigest at the snapshot).
 */
export function digestTail(ctx: GuestContext): Uint8Array {
  const parts: Uint8Array[] = [];
  const globals = Object.entries(ctx.instance.exports)
    .filter(([name, v]) => name.startsWith(EXPORT_GLOBAL_PREFIX) && v instanceof WebAssembly.Global)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, g] of globals) {
    let value: string;
    try {
      value = String((g as WebAssembly.Global).value);
    } catch {
      value = 'v128'; // not readable from JavaScript
    }
    parts.push(Buffer.from(`${name}=${value};`));
  }
  parts.push(Buffer.from(ctx.wasi.deviceState()));
  return new Uint8Array(Buffer.concat(parts));
}

export function moduleHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}


/** `bytes` cut into entries' worth; the last piece is always shorter than CHUNK_BYTES (possibly empty), which is how a reader knows it is the last. */
export function chunksOf(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at <= bytes.length; at += CHUNK_BYTES) out.push(bytes.subarray(at, at + CHUNK_BYTES));
  return out;
}

export function meterOptions(start: EntryPayloads['start']): MeterOptions {
  return { depthLimit: start.depthLimit, memoryLimitPages: start.memoryLimitPages, canonicalizeNaNs: start.canonicalizeNaNs };
}

