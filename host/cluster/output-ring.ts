import { OUTPUT_RING_BYTES } from '../limits.ts';
export { OUTPUT_RING_BYTES };
// What a VM wrote on stdout or stderr and the Output Rule let out, kept per
// stream in a bounded ring, addressed by byte offset from the stream's start.
// Every replica of a VM keeps its own ring of the same deterministic stream
// (the primary appends what it releases, the backup what the primary said it
// released), so offsets mean the same on every host and a client that follows
// a stream with `from` sees neither duplicates nor gaps across a failover.


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

/** One stream's bounded ring of released bytes: one circular buffer, grown by doubling up to the capacity. */
export class OutputRing {
  /** byte at stream offset o is at buf[o % buf.length], for start <= o < end */
  private buf = new Uint8Array(0);
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
    const end = this.end + bytes.length;
    const kept = Math.min(end - this.start, this.capacityBytes);
    if (kept > this.buf.length) {
      // grow: the bytes kept move to their places in the larger buffer
      let size = Math.max(this.buf.length, 4096);
      while (size < kept) size *= 2;
      const old = this.read(this.start);
      this.buf = new Uint8Array(Math.min(size, this.capacityBytes));
      this.put(old.from, old.bytes);
    }
    this.put(end - b.length, b);
    this.end = end;
    this.start = end - kept;
  }

  /** Writes `bytes` at stream offset `at` (at most buf.length of them). */
  private put(at: number, bytes: Uint8Array): void {
    const n = this.buf.length;
    if (!n || !bytes.length) return;
    const i = at % n;
    const first = Math.min(bytes.length, n - i);
    this.buf.set(bytes.subarray(0, first), i);
    if (first < bytes.length) this.buf.set(bytes.subarray(first), 0);
  }

  /** The bytes from offset `from` (>= 0) to the end, at most `maxBytes` of them. */
  read(from: number, maxBytes = this.capacityBytes): RingSlice {
    const at = Math.min(Math.max(from, this.start), this.end);
    const want = Math.min(this.end - at, maxBytes);
    const out = new Uint8Array(want);
    const n = this.buf.length;
    if (want) {
      const i = at % n;
      const first = Math.min(want, n - i);
      out.set(this.buf.subarray(i, i + first), 0);
      if (first < want) out.set(this.buf.subarray(0, want - first), first);
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
    this.buf = new Uint8Array(0);
    this.start = img.start;
    this.end = img.start;
    // the stream before the image counts as dropped: append keeps offsets from img.start
    this.append(img.bytes);
  }
}
