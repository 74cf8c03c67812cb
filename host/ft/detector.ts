// The failure detector: a peer is alive while something arrived from it within
// the failure timeout. Heartbeats go every `heartbeatMs` on every link and all
// traffic counts, so a live peer is heard from many times per timeout; a peer
// silent for the whole timeout is taken for dead (VMware FT's "heartbeat and
// logging traffic" rule, Scales et al. 2010, section 2.3).

/**
 * Tracks when each peer was last heard from. Times are milliseconds on one
 * monotonic clock (`performance.now()` by default; a test passes its own).
 * Bounded by the peers it is told about (`forget` drops one).
 */
export class FailureDetector {
  private readonly lastHeard = new Map<string, number>();

  /** `failMs`: a peer silent this long is dead (> 0). */
  constructor(
    readonly failMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(failMs > 0)) throw new RangeError(`failMs must be > 0, not ${failMs}`);
  }

  /** Something arrived from peer `id`. */
  heard(id: string): void {
    this.lastHeard.set(id, this.now());
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
  }
}
