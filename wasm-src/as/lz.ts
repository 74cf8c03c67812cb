// lz: byte/string processing — an LZ77 compressor + decompressor.
//
//   lz.wasm [bytes]      (default bytes = 40000)
//
// 1. Generates `bytes` bytes of pseudo-English text from a fixed word list and
//    an LCG (string building, Array<string>.join, UTF-8 encoding).
// 2. Counts word frequencies with a Map<string, i32> (string slicing/hashing).
// 3. Compresses the bytes with a greedy LZ77 (hash chains over 4-byte
//    prefixes, 64 KiB window), decompresses, and verifies the roundtrip.
// Prints "lz(bytes) = in <n> out <compressed> words <distinct> checksum 0x<adler32>".
//
// Compressed format: a sequence of blocks
//   varint literalCount, literal bytes, [u16le offset, varint matchLen - 4]
// where the match part is absent in the final block (end of input).
import { argSize, hex32, println } from "./common";

const WORDS: string[] = [
  "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "a",
  "fault", "tolerant", "virtual", "machine", "replicates", "every", "guest",
  "instruction", "across", "hosts", "while", "checkpoint", "log", "replay",
  "memory", "page", "stack", "frame", "of", "in", "to", "is", "that", "with",
  "deterministic", "execution", "survives", "crash", "network", "partition",
  "leader", "follower", "snapshot", "restore", "byte", "buffer", "window", "match",
];

const MIN_MATCH = 4;
const MAX_MATCH = 258;
const WINDOW = 65535;
const HASH_BITS = 14;
const MAX_CHAIN = 24;

// ---------------------------------------------------------------------------
// Text generation

let lcgState: u32 = 0x2545F491;

function nextRand(): u32 {
  lcgState = lcgState * 1664525 + 1013904223;
  return lcgState >>> 8;
}

function capitalize(w: string): string {
  return w.charAt(0).toUpperCase() + w.substring(1);
}

function generateText(size: i32): string {
  const parts = new Array<string>();
  let length = 0;
  let sentenceStart = true;
  while (length < size) {
    let w = WORDS[<i32>(nextRand() % <u32>WORDS.length)];
    if (sentenceStart) {
      w = capitalize(w);
      sentenceStart = false;
    }
    const r = nextRand() % 100;
    let sep = " ";
    if (r < 6) {
      sep = ". ";
      sentenceStart = true;
    } else if (r < 10) {
      sep = ", ";
    } else if (r < 11) {
      sep = ".\n";
      sentenceStart = true;
    }
    parts.push(w);
    parts.push(sep);
    length += w.length + sep.length;
  }
  const text = parts.join("");
  return text.length > size ? text.substring(0, size) : text;
}

function countWords(text: string): Map<string, i32> {
  const counts = new Map<string, i32>();
  let start = -1;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 32;
    const isLetter = (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
    if (isLetter) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      const w = text.substring(start, i).toLowerCase();
      counts.set(w, counts.has(w) ? counts.get(w) + 1 : 1);
      start = -1;
    }
  }
  return counts;
}

// ---------------------------------------------------------------------------
// Compressor

class Output {
  buf: Uint8Array;
  len: i32 = 0;
  constructor(capacity: i32) {
    this.buf = new Uint8Array(capacity);
  }
  byte(b: u32): void {
    if (this.len == this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2 + 16);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.len++] = <u8>b;
  }
  varint(v: u32): void {
    while (v >= 0x80) {
      this.byte((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.byte(v);
  }
  bytes(src: Uint8Array, from: i32, to: i32): void {
    for (let i = from; i < to; i++) this.byte(src[i]);
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

@inline function hash4(src: Uint8Array, i: i32): i32 {
  const v = <u32>src[i] | (<u32>src[i + 1] << 8) | (<u32>src[i + 2] << 16) | (<u32>src[i + 3] << 24);
  return <i32>((v * 2654435761) >>> (32 - HASH_BITS));
}

function compress(src: Uint8Array): Uint8Array {
  const n = src.length;
  const out = new Output(n / 2 + 64);
  const head = new Int32Array(1 << HASH_BITS).fill(-1);
  const prev = new Int32Array(n > 0 ? n : 1);
  let literalStart = 0;
  let i = 0;
  while (i + MIN_MATCH <= n) {
    const h = hash4(src, i);
    // Find the longest match along the hash chain.
    let bestLen = 0;
    let bestPos = 0;
    let cand = head[h];
    let chain = MAX_CHAIN;
    const maxLen = min(MAX_MATCH, n - i);
    while (cand >= 0 && i - cand <= WINDOW && chain-- > 0) {
      if (src[cand + bestLen] == src[i + bestLen]) {
        let l = 0;
        while (l < maxLen && src[cand + l] == src[i + l]) l++;
        if (l > bestLen) {
          bestLen = l;
          bestPos = cand;
          if (l == maxLen) break;
        }
      }
      cand = prev[cand];
    }
    prev[i] = head[h];
    head[h] = i;
    if (bestLen >= MIN_MATCH) {
      out.varint(<u32>(i - literalStart));
      out.bytes(src, literalStart, i);
      const offset = i - bestPos;
      out.byte(offset & 0xff);
      out.byte(offset >>> 8);
      out.varint(<u32>(bestLen - MIN_MATCH));
      // Insert the positions covered by the match into the hash chains.
      const end = i + bestLen;
      i++;
      while (i < end) {
        if (i + MIN_MATCH <= n) {
          const h2 = hash4(src, i);
          prev[i] = head[h2];
          head[h2] = i;
        }
        i++;
      }
      literalStart = i;
    } else {
      i++;
    }
  }
  out.varint(<u32>(n - literalStart));
  out.bytes(src, literalStart, n);
  return out.result();
}

function readVarint(src: Uint8Array, pos: i32, cursor: Int32Array): u32 {
  let v: u32 = 0;
  let shift: u32 = 0;
  while (true) {
    if (pos >= src.length) throw new Error("lz: truncated varint");
    const b = <u32>src[pos++];
    v |= (b & 0x7f) << shift;
    if ((b & 0x80) == 0) break;
    shift += 7;
    if (shift > 28) throw new Error("lz: varint too long");
  }
  cursor[0] = pos;
  return v;
}

function decompress(src: Uint8Array, expectedSize: i32): Uint8Array {
  const dst = new Uint8Array(expectedSize);
  const cursor = new Int32Array(1);
  let pos = 0;
  let o = 0;
  while (pos < src.length) {
    const lit = <i32>readVarint(src, pos, cursor);
    pos = cursor[0];
    if (pos + lit > src.length || o + lit > expectedSize) throw new Error("lz: literal overrun");
    for (let k = 0; k < lit; k++) dst[o++] = src[pos++];
    if (pos >= src.length) break;
    if (pos + 2 > src.length) throw new Error("lz: truncated offset");
    const offset = <i32>src[pos] | (<i32>src[pos + 1] << 8);
    pos += 2;
    const len = <i32>readVarint(src, pos, cursor) + MIN_MATCH;
    pos = cursor[0];
    if (offset == 0 || offset > o || o + len > expectedSize) throw new Error("lz: bad match");
    for (let k = 0; k < len; k++) {
      dst[o] = dst[o - offset];
      o++;
    }
  }
  if (o != expectedSize) throw new Error("lz: size mismatch");
  return dst;
}

function adler32(data: Uint8Array): u32 {
  let a: u32 = 1;
  let b: u32 = 0;
  for (let i = 0; i < data.length; i++) {
    a = (a + <u32>data[i]) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

// ---------------------------------------------------------------------------

const size = argSize(40000, "lz.wasm [bytes]");
const text = generateText(size);
const words = countWords(text);
const input = Uint8Array.wrap(String.UTF8.encode(text));
const packed = compress(input);
const unpacked = decompress(packed, input.length);
for (let i = 0; i < input.length; i++) {
  if (unpacked[i] != input[i]) throw new Error("lz: roundtrip mismatch at " + i.toString());
}
println(
  "lz(" + size.toString() + ") = in " + input.length.toString() +
  " out " + packed.length.toString() +
  " words " + words.size.toString() +
  " checksum " + hex32(adler32(packed) ^ adler32(unpacked))
);
