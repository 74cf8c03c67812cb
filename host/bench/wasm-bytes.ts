// The encodings a module written byte by byte needs (WebAssembly core spec
// 1.0, section 5.2 "Values"): LEB128 integers, vectors and names. Used by the
// benchmarks' generated guests and the tests' large modules.

/** Unsigned LEB128 of a non-negative integer below 2^32 (spec 5.2.2), as bytes. */
export function u32(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Signed LEB128 of an i32 (spec 5.2.2), as bytes. */
export function s32(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** A vector (spec 5.1.3): its length, then its items' bytes. */
export function vec(items: number[][]): number[] {
  return [...u32(items.length), ...items.flat()];
}

/** A name (spec 5.2.4): its UTF-8 length, then its bytes. */
export function name(s: string): number[] {
  const bytes = Buffer.from(s, 'utf8');
  return [...u32(bytes.length), ...bytes];
}
