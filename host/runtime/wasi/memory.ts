/**
 * Guest-memory access for host calls. A `Guest` is a view of linear memory
 * taken at the start of a call (memory.buffer is re-read on every call, since
 * the guest may grow it). Every region is bounds-checked before anything is
 * read or written; an out-of-range region yields EFAULT with no side effects.
 */
import { Errno, IOVEC, U32_MAX } from './abi.ts';

/** A snapshot of guest memory taken at the start of one host call. */
export class Guest {
  readonly u8: Uint8Array;
  readonly dv: DataView;
  constructor(buffer: ArrayBufferLike) {
    this.u8 = new Uint8Array(buffer);
    this.dv = new DataView(buffer);
  }
  /** true when [ptr, ptr+len) lies inside memory; ptr and len are u32 */
  ok(ptr: number, len: number): boolean {
    return ptr + len <= this.u8.byteLength;
  }
}

/** One iovec/ciovec as read from the guest (already bounds-checked). */
export interface Iovec {
  ptr: number;
  len: number;
}

/** i32 arguments arrive as signed JS numbers: reinterpret as u32. */
export const u32 = (x: number): number => x >>> 0;
/** Host helpers return either an errno (a number) or a value. */
export const isErrno = (x: unknown): x is number => typeof x === 'number';

/** Reads an iovec array, checking the array and every buffer it names; undefined when any is out of range. */
export function readIovecs(g: Guest, iovs: number, count: number): Iovec[] | undefined {
  if (!g.ok(iovs, count * IOVEC.SIZE)) return undefined;
  const list: Iovec[] = [];
  for (let i = 0; i < count; i++) {
    const at = iovs + i * IOVEC.SIZE;
    const ptr = g.dv.getUint32(at + IOVEC.buf, true);
    const len = g.dv.getUint32(at + IOVEC.buf_len, true);
    if (!g.ok(ptr, len)) return undefined;
    list.push({ ptr, len });
  }
  return list;
}

/** The total length of iovecs, or EINVAL when it does not fit a u32 (the size type of preview1). */
export function iovecsTotal(list: readonly Iovec[]): number {
  let total = 0;
  for (const v of list) total += v.len;
  return total > U32_MAX ? -Errno.INVAL : total;
}

/** Copies the gathered bytes of checked iovecs out of guest memory. */
export function gather(g: Guest, list: readonly Iovec[], total: number): Uint8Array {
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const v of list) {
    bytes.set(g.u8.subarray(v.ptr, v.ptr + v.len), at);
    at += v.len;
  }
  return bytes;
}

/** NUL-terminated UTF-8 strings and their total size, for args/environ. TypeError on an embedded NUL, RangeError if larger than the u32 ABI allows. */
export function encodeCStrings(strings: readonly string[], what: string): { list: Uint8Array[]; size: number } {
  const enc = new TextEncoder();
  const list: Uint8Array[] = [];
  let size = 0;
  for (const s of strings) {
    if (s.includes('\0')) throw new TypeError(`WASI ${what} must not contain NUL: ${JSON.stringify(s)}`);
    const body = enc.encode(s);
    const bytes = new Uint8Array(body.length + 1);
    bytes.set(body);
    list.push(bytes);
    size += bytes.length;
  }
  if (size > U32_MAX || list.length > U32_MAX / 4) throw new RangeError(`WASI ${what} too large`);
  return { list, size };
}
