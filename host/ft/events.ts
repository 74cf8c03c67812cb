import { EVENTS_MAX } from '../limits.ts';
export { EVENTS_MAX };
// What a host did, as named events: each is kept in a bounded ring (read with
// GET /v1/events) and said in the host's log as one sentence. Tools and tests
// read the events; people read the sentences.

/** Every event a host records, by `event`. `gen` is a VM's generation, `seq` a log entry's sequence number, `count` a guest count (decimal string). */
export type HostEvent =
  | { event: 'vm-started'; vm: string; backup: string | null }
  | { event: 'partner-silent'; vm: string; role: 'primary' | 'backup'; partner: string }
  | { event: 'generation-won'; vm: string; gen: number; role: 'primary' | 'backup' }
  | { event: 'replica-dropped'; vm: string; role: 'primary' | 'backup'; why: string }
  | { event: 'backup-following'; vm: string; primary: string; from: 'boot' | 'snapshot'; seq: number }
  | { event: 'backup-recreated'; vm: string; backup: string; seq: number; memoryBytes: number; pauseMs: number; waitMs: number }
  | { event: 'live'; vm: string; gen: number; seq: number; count: string }
  /** a live migration of a VM's primary or backup from one host to another, as the primary's host runs it */
  | { event: 'migration'; vm: string; replica: 'primary' | 'backup'; from: string; to: string; phase: 'started' | 'done' | 'failed' }
  | { event: 'ended'; vm: string; role: 'primary' | 'backup'; outcome: string; exitCode: number | null; count: string }
  | { event: 'replica-failed'; vm: string; role: 'primary' | 'backup'; code: string; message: string }
  | { event: 'module-shipped'; vm: string; kind: string; hash: string; bytes: number; to: string; chunks: number }
  | { event: 'peer-dropped'; peer: string | null; reason: string }
  | { event: 'publish-failed'; vm: string; port: number; address: string; error: string };

/** An event as kept: its number on this host (from 1) and when it happened (ms since the epoch). */
export type KeptEvent = HostEvent & { seq: number; atMs: number };


/** The sentence a host's log says for an event. */
export function eventText(e: HostEvent): string {
  switch (e.event) {
    case 'vm-started':
      return `${e.vm}: started, primary here, backup ${e.backup ?? 'none yet'}`;
    case 'partner-silent':
      return `${e.vm}: ${e.role === 'primary' ? 'backup' : 'primary'} ${e.partner} is silent`;
    case 'generation-won':
      return `${e.vm}: won generation ${e.gen}; ${e.role === 'backup' ? 'going live' : 'running without a backup'}`;
    case 'replica-dropped':
      return `${e.vm}: ${e.role} dropped (${e.why})`;
    case 'backup-following':
      return `${e.vm}: backup of ${e.primary}${e.from === 'snapshot' ? ` from a snapshot at entry ${e.seq}` : ' from boot'}`;
    case 'backup-recreated':
      return `${e.vm}: new backup on ${e.backup} from a snapshot at entry ${e.seq} (${e.memoryBytes} bytes of memory, the primary paused ${e.pauseMs.toFixed(1)} ms, after ${e.waitMs.toFixed(0)} ms waiting for the guest)`;
    case 'migration':
      return `${e.vm}: migration of its ${e.replica} from ${e.from} to ${e.to} ${e.phase}`;
    case 'live':
      return `${e.vm}: live at entry ${e.seq}, count ${e.count} (generation ${e.gen})`;
    case 'ended':
      return `${e.vm}: ${e.role} ended (${e.outcome}${e.exitCode !== null ? ` ${e.exitCode}` : ''}) at count ${e.count}`;
    case 'replica-failed':
      return `${e.vm}: ${e.role} failed: ${e.code}: ${e.message}`;
    case 'module-shipped':
      return `${e.vm}: shipped ${e.kind} ${e.hash.slice(0, 12)} (${e.bytes} bytes) to ${e.to} in ${e.chunks} chunks`;
    case 'peer-dropped':
      return `dropped peer ${e.peer ?? '(unauthenticated)'}: ${e.reason}`;
    case 'publish-failed':
      return `${e.vm}: cannot publish port ${e.port} on ${e.address}: ${e.error} (tried again every 5 s; not listed as an endpoint meanwhile)`;
  }
}

/** A host's recent events, at most EVENTS_MAX, numbered from 1. */
export class EventLog {
  private readonly kept: KeptEvent[] = [];
  private next = 1;

  /** Records an event; returns it as kept. */
  add(e: HostEvent): KeptEvent {
    const k = { ...e, seq: this.next++, atMs: Date.now() } as KeptEvent;
    this.kept.push(k);
    if (this.kept.length > EVENTS_MAX) this.kept.splice(0, this.kept.length - EVENTS_MAX);
    return k;
  }

  /** The kept events numbered after `after` (0: all), oldest first, at most `limit`. */
  after(after: number, limit = EVENTS_MAX): KeptEvent[] {
    const out: KeptEvent[] = [];
    for (const k of this.kept) {
      if (k.seq <= after) continue;
      out.push(k);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** The number the next event will have. */
  get nextSeq(): number {
    return this.next;
  }
}
