// A valid WebAssembly command module of any size, written byte by byte at test
// time (no compiler, no binaryen): a data segment of `dataBytes` pseudo-random
// bytes makes it large, and `functions` distinct functions (each a small loop,
// all kept alive by a table) give the metering pass work in proportion. Its
// `_start` writes "big: N\n" to stdout with fd_write, where N is what the first
// function returns for 7 (so a run shows the code really ran). As a reactor
// (`reactor: true`) it exports `_initialize` and `ftvm_interrupt` instead, and
// answers each message on the virtual NIC with "big K", K counting the
// messages it received (its state: it survives a failover).
//
// Layout (WebAssembly core spec 1.0, section 5.5 "Modules"): type, import
// (wasi_snapshot_preview1.fd_write; ftvm_io.nic_recv and nic_send for a
// reactor), function, table, memory, global (the reactor's count), export,
// elem (every worker function in table 0), code, data.

import { name, s32, u32, vec } from '../host/bench/wasm-bytes.ts';

export { s32, u32 };

/** What `bigModule` builds. */
export interface BigModuleOptions {
  /** bytes of the data segment (placed at 64 KiB) */
  dataBytes: number;
  /** functions besides `_start` (at least 1) */
  functions: number;
  /** seed of the data's pseudo-random bytes (default 1) */
  seed?: number;
  /** a reactor answering NIC messages, not a command (default false) */
  reactor?: boolean;
}

const section = (id: number, body: Uint8Array | number[]): Uint8Array[] => [Uint8Array.from([id, ...u32(body.length)]), body instanceof Uint8Array ? body : Uint8Array.from(body)];

/** The expected stdout of `bigModule`'s `_start`: the first function's result for 7. */
export function bigModuleOutput(): string {
  let x = 7;
  let acc = 0;
  do {
    acc = (Math.imul(acc, 31) + x + 0) | 0;
    x = (x - 1) | 0;
  } while (x > 0);
  return `big: ${(acc ^ 0x5bd1e995) >>> 0}\n`;
}

/** A valid module of about `dataBytes` + 40 * `functions` bytes. */
export function bigModule(opts: BigModuleOptions): Uint8Array {
  const n = Math.max(1, opts.functions);
  const parts: Uint8Array[] = [Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])];
  const reactor = opts.reactor === true;
  // types: 0 fd_write (i32 i32 i32 i32) -> i32; 1 () -> (); 2 (i32) -> i32; 3 nic_recv/nic_send (i32 i32 i32) -> i32; 4 (i32) -> ()
  parts.push(...section(1, vec([[0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f], [0x60, 0, 0], [0x60, 1, 0x7f, 1, 0x7f], [0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f], [0x60, 1, 0x7f, 0]])));
  const imports = [[...name('wasi_snapshot_preview1'), ...name('fd_write'), 0x00, 0]];
  if (reactor) imports.push([...name('ftvm_io'), ...name('nic_recv'), 0x00, 3], [...name('ftvm_io'), ...name('nic_send'), 0x00, 3]);
  parts.push(...section(2, vec(imports)));
  const first = imports.length; // _start, or _initialize then ftvm_interrupt
  const workers = first + (reactor ? 2 : 1);
  parts.push(...section(3, [...u32(n + workers - first), ...(reactor ? [1, 4] : [1]), ...new Array<number>(n).fill(2)]));
  parts.push(...section(4, vec([[0x70, 0x00, ...u32(n)]])));
  const pages = Math.ceil((65536 + opts.dataBytes) / 65536) + 1;
  parts.push(...section(5, vec([[0x00, ...u32(pages)]])));
  if (reactor) parts.push(...section(6, vec([[0x7f, 0x01, 0x41, 0, 0x0b]])));
  const exports = [[...name('memory'), 0x02, 0]];
  if (reactor) exports.push([...name('_initialize'), 0x00, ...u32(first)], [...name('ftvm_interrupt'), 0x00, ...u32(first + 1)]);
  else exports.push([...name('_start'), 0x00, ...u32(first)]);
  parts.push(...section(7, vec(exports)));
  const elems: number[] = [];
  for (let i = 0; i < n; i++) elems.push(...u32(workers + i));
  parts.push(...section(9, [1, 0x00, 0x41, 0, 0x0b, ...u32(n), ...elems]));
  // code
  const bodies: Uint8Array[] = [];
  const add = (body: number[]): void => void bodies.push(Uint8Array.from([...u32(body.length), ...body]));
  // _start: r = table[0](7); write decimal r at 256.. backwards from 300; iovec at 0 = (ptr, len); fd_write(1, 0, 1, 8)
  // locals: 0 r, 1 p (i32)
  const start = [
    1, 2, 0x7f,
    0x41, 7, 0x41, 0, 0x11, 2, 0, 0x21, 0, // r = call_indirect type 2 table 0 (7, 0)
    0x41, ...s32(300), 0x21, 1, // p = 300
    0x20, 1, 0x41, 10, 0x3a, 0, 0, // mem[p] = '\n'
    0x03, 0x40, // loop
    0x20, 1, 0x41, 1, 0x6b, 0x21, 1, // p = p - 1
    0x20, 1, 0x20, 0, 0x41, 10, 0x70, 0x41, 48, 0x6a, 0x3a, 0, 0, // mem[p] = r %u 10 + '0'
    0x20, 0, 0x41, 10, 0x6e, 0x22, 0, // r = r /u 10 (tee)
    0x0d, 0, // br_if loop while r != 0
    0x0b,
    0x20, 1, 0x41, 5, 0x6b, 0x21, 1, // p = p - 5: "big: "
    0x20, 1, 0x41, ...s32(0x3a676962), 0x36, 0, 0, // "big:" little-endian
    0x20, 1, 0x41, 32, 0x3a, 0, 4, // ' '
    0x41, 0, 0x20, 1, 0x36, 2, 0, // iov.ptr = p
    0x41, 0, 0x41, ...s32(301), 0x20, 1, 0x6b, 0x36, 2, 4, // iov.len = 301 - p
    0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, // fd_write(1, 0, 1, 8); drop
    0x0b,
  ];
  // _initialize: call the first worker once (the table works); ftvm_interrupt(kind), locals n, r, p:
  // while ((n = nic_recv(0, 1024, 32768)) >= 0) if (n > 0) { count++; nic_send(*0, "big <count>") }
  const initialize = [0, 0x41, 7, 0x41, 0, 0x11, 2, 0, 0x1a, 0x0b];
  const interrupt = [
    1, 3, 0x7f,
    0x02, 0x40, // block $out
    0x03, 0x40, // loop $l
    0x41, 0, 0x41, ...s32(1024), 0x41, ...s32(32768), 0x10, 1, 0x22, 1, // n = nic_recv(0, 1024, 32768)
    0x41, 0, 0x48, 0x0d, 1, // n < 0: out
    0x20, 1, 0x45, 0x0d, 0, // n == 0 (end of stream): next
    0x23, 0, 0x41, 1, 0x6a, 0x24, 0, // count++
    0x23, 0, 0x21, 2, 0x41, ...s32(300), 0x21, 3, // r = count; p = 300
    0x03, 0x40, // loop: digits backwards
    0x20, 3, 0x41, 1, 0x6b, 0x21, 3,
    0x20, 3, 0x20, 2, 0x41, 10, 0x70, 0x41, 48, 0x6a, 0x3a, 0, 0,
    0x20, 2, 0x41, 10, 0x6e, 0x22, 2,
    0x0d, 0,
    0x0b,
    0x20, 3, 0x41, 4, 0x6b, 0x21, 3, // p -= 4: "big "
    0x20, 3, 0x41, ...s32(0x20676962), 0x36, 0, 0,
    0x41, 0, 0x28, 2, 0, 0x20, 3, 0x41, ...s32(300), 0x20, 3, 0x6b, 0x10, 2, 0x1a, // nic_send(conn, p, 300 - p)
    0x0c, 0, // next message
    0x0b,
    0x0b,
    0x0b,
  ];
  if (reactor) {
    add(initialize);
    add(interrupt);
  } else add(start);
  for (let i = 0; i < n; i++) {
    // (param x) (local acc): loop { acc = acc*31 + x + i; x = x - 1; br_if x > 0 }; acc ^ C
    const body = [
      1, 1, 0x7f,
      0x03, 0x40,
      0x20, 1, 0x41, 31, 0x6c, 0x20, 0, 0x6a, 0x41, ...s32(i), 0x6a, 0x21, 1,
      0x20, 0, 0x41, 1, 0x6b, 0x22, 0,
      0x41, 0, 0x4a, 0x0d, 0,
      0x0b,
      0x20, 1, 0x41, ...s32(0x5bd1e995 + i), 0x73,
      0x0b,
    ];
    add(body);
  }
  const codeLen = bodies.reduce((k, b) => k + b.length, 0);
  const countBytes = Uint8Array.from(u32(bodies.length));
  parts.push(Uint8Array.from([10, ...u32(countBytes.length + codeLen)]), countBytes, ...bodies);
  // data: one active segment at 65536 of pseudo-random bytes (xorshift32)
  const data = new Uint8Array(opts.dataBytes);
  let x = (opts.seed ?? 1) >>> 0 || 1;
  for (let i = 0; i < data.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
    if (i + 1 < data.length) data[i + 1] = (x >>> 8) & 0xff;
    if (i + 2 < data.length) data[i + 2] = (x >>> 16) & 0xff;
    if (i + 3 < data.length) data[i + 3] = (x >>> 24) & 0xff;
  }
  const segHead = Uint8Array.from([1, 0x00, 0x41, ...s32(65536), 0x0b, ...u32(data.length)]);
  parts.push(Uint8Array.from([11, ...u32(segHead.length + data.length)]), segHead, data);
  const out = new Uint8Array(parts.reduce((k, p) => k + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
