// What a VM wrote on stdout or stderr and the Output Rule let out, kept per
// stream in a bounded ring, addressed by byte offset from the stream's start.
// Every replica of a VM keeps its own ring of the same deterministic stream
// (the primary appends what it releases, the backup what the primary said it
// released), so offsets mean the same on every host and a client that follows
// a stream with `from` sees neither duplicates nor gaps across a failover.

/** Bytes each stream of a VM keeps (the oldest are dropped beyond it). */
export const OUTPUT_RING_BYTES = 1024 * 1024;

/** A slice of a stream: `bytes` start at offset `from`; `next` is the offset after them. */
export interface RingSlice {
  /** the offset of the first byte returned (later than asked for when older bytes were dropped) */
  from: number;
  /** the offset after the last byte returned: ask from here next */
  next: number;
  /** bytes dropped from the ring's start so far (the offset of the oldest byte kept) */
  dropped: number;
  bytes: Uint8Array;
}

/** One stream's bounded ring of released bytes. */
export class OutputRing {
  private chunks: Uint8Array[] = [];
  /** the offset of the oldest byte kept */
  private start = 0;
  /** the offset after the newest byte */
  private end = 0;

  /** `capacityBytes` (> 0): the most bytes kept; older ones are dropped. */
  constructor(readonly capacityBytes = OUTPUT_RING_BYTES) {}

  /** The offset after the newest byte: the stream's length so far. */
  get length(): number {
    return this.end;
  }

  /** Bytes dropped from the ring's start so far. */
  get dropped(): number {
    return this.start;
  }

  /** Appends released bytes, dropping the oldest beyond the capacity. */
  append(bytes: Uint8Array): void {
    if (!bytes.length) return;
    const b = bytes.length > this.capacityBytes ? bytes.subarray(bytes.length - this.capacityBytes) : bytes;
    this.start += bytes.length - b.length;
    this.chunks.push(b.slice());
    this.end += bytes.length;
    let kept = this.end - this.start;
    while (kept > this.capacityBytes) {
      const first = this.chunks[0]!;
      const over = kept - this.capacityBytes;
      if (first.length <= over) {
        this.chunks.shift();
        this.start += first.length;
        kept -= first.length;
      } else {
        this.chunks[0] = first.subarray(over);
        this.start += over;
        kept -= over;
      }
    }
  }

  /** The bytes from offset `from` (>= 0) to the end, at most `maxBytes` of them. */
  read(from: number, maxBytes = this.capacityBytes): RingSlice {
    const at = Math.min(Math.max(from, this.start), this.end);
    const want = Math.min(this.end - at, maxBytes);
    const out = new Uint8Array(want);
    let pos = this.start;
    let got = 0;
    for (const c of this.chunks) {
      if (got >= want) break;
      const cEnd = pos + c.length;
      if (cEnd > at) {
        const s = Math.max(at - pos, 0);
        const part = c.subarray(s, s + (want - got));
        out.set(part, got);
        got += part.length;
      }
      pos = cEnd;
    }
    return { from: at, next: at + want, dropped: this.start, bytes: out };
  }

  /** The whole ring, to seed another replica's (see restore). */
  image(): { start: number; bytes: Uint8Array } {
    const s = this.read(this.start);
    return { start: s.from, bytes: s.bytes };
  }

  /** Replaces the contents with an image taken by `image()` on another replica. */
  restore(img: { start: number; bytes: Uint8Array }): void {
    this.chunks = img.bytes.length ? [img.bytes.slice()] : [];
    this.start = img.start;
    this.end = img.start + img.bytes.length;
    if (this.end - this.start > this.capacityBytes) {
      const over = this.end - this.start - this.capacityBytes;
      this.chunks[0] = this.chunks[0]!.subarray(over);
      this.start += over;
    }
  }
}
