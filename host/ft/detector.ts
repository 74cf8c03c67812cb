import { DETECTOR_GAPS_MAX as GAPS_MAX } from '../limits.ts';
// The failure detector: a peer is alive while something arrived from it within
// the failure timeout. Heartbeats go every `heartbeatMs` on every link and all
// traffic counts, so a live peer is heard from many times per timeout; a peer
// silent for the whole timeout is taken for dead (VMware FT's "heartbeat and
// logging traffic" rule, Scales et al. 2010, section 2.3).

/** A silence longer than usual: `gapMs` without anything from `peer`, ended by what arrived at `at` (the detector's clock). */
export interface HeardGap {
  peer: string;
  at: number;
  gapMs: number;
}

export { GAPS_MAX };

/**
 * Tracks when each peer was last heard from. Times are milliseconds on one
 * monotonic clock (`performance.now()` by default; a test passes its own).
 * Bounded by the peers it is told about (`forget` drops one).
 */
export class FailureDetector {
  private readonly lastHeard = new Map<string, number>();
  /** the largest silence per peer since it was first heard from, in ms */
  private readonly gapMax = new Map<string, number>();
  /** silences of at least `gapNoteMs`, oldest first (at most GAPS_MAX) */
  private readonly gaps: HeardGap[] = [];

  /**
   * `failMs`: a peer silent this long is dead (> 0). `gapNoteMs`: a silence
   * at least this long is remembered (gapsSince), so a benchmark can tell
   * when a peer went quiet and for how long (default: a quarter of `failMs`,
   * the most a healthy peer should ever be silent).
   */
  constructor(
    readonly failMs: number,
    private readonly now: () => number = () => performance.now(),
    readonly gapNoteMs: number = failMs / 4,
  ) {
    if (!(failMs > 0)) throw new RangeError(`failMs must be > 0, not ${failMs}`);
  }

  /** Something arrived from peer `id`. */
  heard(id: string): void {
    const t = this.now();
    const last = this.lastHeard.get(id);
    if (last !== undefined) {
      const gap = t - last;
      if (gap > (this.gapMax.get(id) ?? 0)) this.gapMax.set(id, gap);
      if (gap >= this.gapNoteMs) {
        this.gaps.push({ peer: id, at: t, gapMs: gap });
        if (this.gaps.length > GAPS_MAX) this.gaps.shift();
      }
    }
    this.lastHeard.set(id, t);
  }

  /** The largest silence of peer `id` so far, in ms (0: none yet). */
  maxGapMs(id: string): number {
    return this.gapMax.get(id) ?? 0;
  }

  /** The remembered silences (at least `gapNoteMs` long) that ended at or after time `since`, oldest first. */
  gapsSince(since: number): HeardGap[] {
    return this.gaps.filter((g) => g.at >= since);
  }

  /** Whether peer `id` was heard from within the failure timeout (never heard of: false). */
  alive(id: string): boolean {
    const t = this.lastHeard.get(id);
    return t !== undefined && this.now() - t < this.failMs;
  }

  /**
   * Whether a replica paired with peer `id` since time `since` should take it
   * for dead: it is silent, and the pairing is older than two timeouts (a new
   * partner gets that long to be heard from at all).
   */
  partnerDead(id: string, since: number): boolean {
    return this.now() - since >= this.failMs * 2 && !this.alive(id);
  }

  /** Milliseconds since peer `id` was last heard from (Infinity: never). */
  silentMs(id: string): number {
    const t = this.lastHeard.get(id);
    return t === undefined ? Infinity : this.now() - t;
  }

  /** Peer `id` left the cluster. */
  forget(id: string): void {
    this.lastHeard.delete(id);
    this.gapMax.delete(id);
  }
}
