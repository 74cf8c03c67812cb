import { describe, it, expect } from 'vitest';
import binaryen from 'binaryen';
import { Rights, WASI_MODULE, WasiExit, WasiHost, type Nondeterminism, type WasiOptions } from '../host/runtime/wasi.ts';

const EBADF = 8;
const EFAULT = 21;
const EINVAL = 28;
const EISDIR = 31;
const ENOENT = 44;
const ESPIPE = 70;
const ENOTCONN = 53;
const ENOTCAPABLE = 76;

const PAGE = 65536;

function compile(wat: string): Uint8Array<ArrayBuffer> {
  const mod = binaryen.parseText(wat);
  try {
    if (!mod.validate()) throw new Error('invalid test module');
    return new Uint8Array(mod.emitBinary());
  } finally {
    mod.dispose();
  }
}

interface Loaded {
  host: WasiHost;
  memory: WebAssembly.Memory;
  bytes(): Uint8Array;
  call(name: string, ...args: (number | bigint)[]): number;
  stdout: Uint8Array[];
  stderr: Uint8Array[];
}

async function load(wat: string, opts: Partial<WasiOptions> = {}): Promise<Loaded> {
  const stdout: Uint8Array[] = [];
  const stderr: Uint8Array[] = [];
  const host = new WasiHost({
    args: ['prog'],
    env: {},
    stdout: (b) => stdout.push(b),
    stderr: (b) => stderr.push(b),
    ...opts,
  });
  const { instance } = await WebAssembly.instantiate(compile(wat), { [WASI_MODULE]: host.imports });
  const memory = instance.exports['memory'] as WebAssembly.Memory;
  host.bindMemory(memory);
  return {
    host,
    memory,
    bytes: () => new Uint8Array(memory.buffer),
    call: (name, ...args) => (instance.exports[name] as (...a: (number | bigint)[]) => number)(...args),
    stdout,
    stderr,
  };
}

const text = (chunks: Uint8Array[]): string => Buffer.concat(chunks).toString('utf8');
const u32At = (mem: WebAssembly.Memory, p: number): number => new DataView(mem.buffer).getUint32(p, true);
const u64At = (mem: WebAssembly.Memory, p: number): bigint => new DataView(mem.buffer).getBigUint64(p, true);
const cstrAt = (mem: WebAssembly.Memory, p: number): string => {
  const b = new Uint8Array(mem.buffer);
  let end = p;
  while (b[end] !== 0) end++;
  return Buffer.from(b.subarray(p, end)).toString('utf8');
};

/** A fake Nondeterminism that records every request. */
function fakeNd(clock: (id: number) => bigint = () => 0n) {
  const calls: string[] = [];
  const nd: Nondeterminism = {
    clockNs(id) {
      calls.push(`clock:${id}`);
      return clock(id);
    },
    clockResolutionNs(id) {
      calls.push(`res:${id}`);
      return 1000n + BigInt(id);
    },
    randomFill(dest) {
      calls.push(`random:${dest.length}`);
      for (let i = 0; i < dest.length; i++) dest[i] = (i * 7 + 3) & 0xff;
    },
  };
  return { nd, calls };
}

const FD_WRITE_WAT = `
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello, ")
  (data (i32.const 32) "world\\n")
  (data (i32.const 48) "oops\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 7))
    (i32.store (i32.const 8) (i32.const 32))
    (i32.store (i32.const 12) (i32.const 6))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 64)) (then unreachable))
    (i32.store (i32.const 0) (i32.const 48))
    (i32.store (i32.const 4) (i32.const 5))
    (if (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 68)) (then unreachable)))
  (func (export "write") (param i32 i32 i32 i32) (result i32)
    (call $fd_write (local.get 0) (local.get 1) (local.get 2) (local.get 3))))
`;

describe('WasiHost', () => {
  it('fd_write gathers iovecs to stdout/stderr as one copy and reports nwritten', async () => {
    // Proves: fd_write concatenates all iovecs into one synchronous callback per call, on the right stream, with nwritten set, and hands over a copy.
    const g = await load(FD_WRITE_WAT);
    g.call('_start');
    expect(g.stdout.length).toBe(1);
    expect(text(g.stdout)).toBe('hello, world\n');
    expect(text(g.stderr)).toBe('oops\n');
    expect(u32At(g.memory, 64)).toBe(13);
    expect(u32At(g.memory, 68)).toBe(5);
    g.bytes().fill(0x21, 16, 40);
    expect(text(g.stdout)).toBe('hello, world\n');
    // fds other than 1 and 2 are not writable
    expect(g.call('write', 0, 0, 1, 64)).toBe(EBADF);
    // fd 3 is the listening socket (not connected); fd 4 the preopened directory (not writable as a stream); fd 5 is not open
    expect(g.call('write', 3, 0, 1, 64)).toBe(ENOTCONN);
    expect(g.call('write', 4, 0, 1, 64)).toBe(EISDIR);
    expect(g.call('write', 5, 0, 1, 64)).toBe(EBADF);
  });

  it('fd_write sees memory that the guest grew after instantiation', async () => {
    // Proves: the host re-reads memory.buffer on each call, so pointers into freshly grown pages are valid.
    const g = await load(`
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (result i32)
    (drop (memory.grow (i32.const 1)))
    (i32.store8 (i32.const 70000) (i32.const 71))
    (i32.store8 (i32.const 70001) (i32.const 10))
    (i32.store (i32.const 69992) (i32.const 70000))
    (i32.store (i32.const 69996) (i32.const 2))
    (call $fd_write (i32.const 1) (i32.const 69992) (i32.const 1) (i32.const 70004))))
`);
    expect(g.call('_start')).toBe(0);
    expect(text(g.stdout)).toBe('G\n');
    expect(u32At(g.memory, 70004)).toBe(2);
  });

  it('args_sizes_get / args_get lay out UTF-8 NUL-terminated argv', async () => {
    // Proves: argc and buffer size count UTF-8 bytes plus NULs, and argv pointers point at each NUL-terminated string in order.
    const g = await load(
      `
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sizes") (param i32 i32) (result i32) (call $sizes (local.get 0) (local.get 1)))
  (func (export "get") (param i32 i32) (result i32) (call $get (local.get 0) (local.get 1))))
`,
      { args: ['prog', 'héllo', ''] },
    );
    expect(g.call('sizes', 0, 4)).toBe(0);
    expect(u32At(g.memory, 0)).toBe(3);
    expect(u32At(g.memory, 4)).toBe(5 + 7 + 1);
    expect(g.call('get', 100, 200)).toBe(0);
    expect([0, 1, 2].map((i) => u32At(g.memory, 100 + i * 4))).toEqual([200, 205, 212]);
    expect([0, 1, 2].map((i) => cstrAt(g.memory, u32At(g.memory, 100 + i * 4)))).toEqual(['prog', 'héllo', '']);
    expect(g.bytes()[212]).toBe(0);
  });

  it('environ_sizes_get / environ_get lay out KEY=VALUE entries', async () => {
    // Proves: environ entries are encoded as UTF-8 "KEY=VALUE\0" with matching count, size and pointers.
    const g = await load(
      `
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sizes") (param i32 i32) (result i32) (call $sizes (local.get 0) (local.get 1)))
  (func (export "get") (param i32 i32) (result i32) (call $get (local.get 0) (local.get 1))))
`,
      { env: { HOME: '/home/ü', EMPTY: '', EQ: 'a=b' } },
    );
    expect(g.call('sizes', 0, 4)).toBe(0);
    expect(u32At(g.memory, 0)).toBe(3);
    const expected = ['HOME=/home/ü', 'EMPTY=', 'EQ=a=b'];
    expect(u32At(g.memory, 4)).toBe(expected.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0));
    expect(g.call('get', 100, 200)).toBe(0);
    expect([0, 1, 2].map((i) => cstrAt(g.memory, u32At(g.memory, 100 + i * 4)))).toEqual(expected);
  });

  it('random_get takes its bytes from the injected Nondeterminism', async () => {
    // Proves: random_get fills exactly [buf, buf+len) with bytes from Nondeterminism.randomFill and nothing else.
    const { nd, calls } = fakeNd();
    const g = await load(
      `
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (result i32) (call $random_get (i32.const 1000) (i32.const 16))))
`,
      { nondeterminism: nd },
    );
    expect(g.call('_start')).toBe(0);
    expect(calls).toEqual(['random:16']);
    const expected = Array.from({ length: 16 }, (_, i) => (i * 7 + 3) & 0xff);
    expect(Array.from(g.bytes().subarray(1000, 1016))).toEqual(expected);
    expect(g.bytes()[999]).toBe(0);
    expect(g.bytes()[1016]).toBe(0);
  });

  it('clock_time_get / clock_res_get read the injected Nondeterminism and reject unknown clocks', async () => {
    // Proves: clock values and resolutions come from Nondeterminism as little-endian u64, and an unknown clock id is EINVAL without consulting it.
    const { nd, calls } = fakeNd((id) => 1_700_000_000_123_456_789n + BigInt(id));
    const g = await load(
      `
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "time") (param i32 i32) (result i32) (call $time (local.get 0) (i64.const 1) (local.get 1)))
  (func (export "res") (param i32 i32) (result i32) (call $res (local.get 0) (local.get 1))))
`,
      { nondeterminism: nd },
    );
    expect(g.call('time', 1, 8)).toBe(0);
    expect(u64At(g.memory, 8)).toBe(1_700_000_000_123_456_790n);
    expect(g.call('time', 0, 16)).toBe(0);
    expect(u64At(g.memory, 16)).toBe(1_700_000_000_123_456_789n);
    expect(g.call('res', 3, 24)).toBe(0);
    expect(u64At(g.memory, 24)).toBe(1003n);
    expect(calls).toEqual(['clock:1', 'clock:0', 'res:3']);
    expect(g.call('time', 7, 8)).toBe(EINVAL);
    expect(g.call('res', 4, 8)).toBe(EINVAL);
    expect(calls.length).toBe(3);
  });

  it('proc_exit throws WasiExit carrying the exit code', async () => {
    // Proves: proc_exit unwinds the guest with a WasiExit (name and code set) and nothing after it runs.
    const g = await load(`
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\\10\\00\\00\\00\\01\\00\\00\\00")
  (func (export "_start")
    (call $proc_exit (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
`);
    let caught: unknown;
    try {
      g.call('_start');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(WasiExit);
    expect((caught as WasiExit).name).toBe('WasiExit');
    expect((caught as WasiExit).code).toBe(3);
    expect(g.stdout).toEqual([]);
  });

  it('fd_read serves stdin then EOF (a WAT cat program)', async () => {
    // Proves: fd_read on fd 0 delivers the stdin bytes in order across small reads, then returns nread=0 at EOF; other fds are EBADF.
    const input = new TextEncoder().encode('the quick brown fox\n');
    const g = await load(
      `
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (result i32)
    (local $n i32) (local $reads i32)
    (loop $again
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 7))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))
      (local.set $reads (i32.add (local.get $reads) (i32.const 1)))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.eqz (local.get $n)) (then (return (local.get $reads))))
      (i32.store (i32.const 4) (local.get $n))
      (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)) (then unreachable))
      (br $again))
    (unreachable))
  (func (export "read") (param i32 i32 i32 i32) (result i32)
    (call $fd_read (local.get 0) (local.get 1) (local.get 2) (local.get 3))))
`,
      { stdin: input },
    );
    expect(g.call('_start')).toBe(4); // 7 + 7 + 6 bytes, then EOF
    expect(text(g.stdout)).toBe('the quick brown fox\n');
    expect(g.stdout.map((c) => c.length)).toEqual([7, 7, 6]);
    expect(g.call('read', 1, 0, 1, 8)).toBe(EBADF);
  });

  it('out-of-bounds guest pointers return EFAULT without throwing or side effects', async () => {
    // Proves: every pointer is bounds-checked; out-of-range regions give EFAULT (21), no exception, no stdout call, no randomness drawn, no stdin consumed.
    const { nd, calls } = fakeNd();
    const g = await load(
      `
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi")
  (func (export "write") (param i32 i32 i32 i32) (result i32)
    (call $fd_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "read") (param i32 i32 i32 i32) (result i32)
    (call $fd_read (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "random") (param i32 i32) (result i32) (call $random_get (local.get 0) (local.get 1)))
  (func (export "args") (param i32 i32) (result i32) (call $args_get (local.get 0) (local.get 1)))
  (func (export "time") (param i32) (result i32) (call $time (i32.const 1) (i64.const 0) (local.get 0))))
`,
      { nondeterminism: nd, stdin: new Uint8Array([1, 2, 3]) },
    );
    const dv = new DataView(g.memory.buffer);
    // iovec array itself runs off the end of memory
    expect(g.call('write', 1, PAGE - 4, 1, 100)).toBe(EFAULT);
    // iovec names a buffer that runs off the end; a valid iovec before it must not be written either
    dv.setUint32(0, 16, true);
    dv.setUint32(4, 2, true);
    dv.setUint32(8, PAGE - 5, true);
    dv.setUint32(12, 10, true);
    expect(g.call('write', 1, 0, 2, 100)).toBe(EFAULT);
    // nwritten pointer at 0xFFFFFFFF (passed as i32 -1)
    expect(g.call('write', 1, 0, 1, -1)).toBe(EFAULT);
    expect(g.stdout).toEqual([]);
    // huge iovec count
    expect(g.call('write', 1, 0, 0x7fffffff, 100)).toBe(EFAULT);
    // fd_read into an out-of-range buffer consumes nothing
    expect(g.call('read', 0, 8, 1, 100)).toBe(EFAULT);
    dv.setUint32(0, 200, true);
    dv.setUint32(4, 8, true);
    expect(g.call('read', 0, 0, 1, 100)).toBe(0);
    expect(u32At(g.memory, 100)).toBe(3);
    // random_get past the end draws no randomness
    expect(g.call('random', PAGE - 1, 2)).toBe(EFAULT);
    expect(g.call('random', -1, 1)).toBe(EFAULT);
    expect(calls).toEqual([]);
    expect(g.call('random', PAGE - 2, 2)).toBe(0);
    // args_get with the pointer array or the string buffer off the end
    expect(g.call('args', PAGE - 2, 0)).toBe(EFAULT);
    expect(g.call('args', 0, PAGE - 2)).toBe(EFAULT);
    // clock_time_get result pointer straddling the end
    expect(g.call('time', PAGE - 4)).toBe(EFAULT);
  });

  it('stdio descriptors: fdstat, filestat, seek, prestat, path_open, close', async () => {
    // Proves: stdio reports a character device with all rights, cannot seek (ESPIPE), is not a preopen (EBADF), cannot resolve paths (ENOTCAPABLE); fd 3 is the preopened directory; an unopened fd is EBADF; closing an fd makes it EBADF.
    const g = await load(`
(module
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $setflags (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $filestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $dirname (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "file.txt")
  (func (export "fdstat") (param i32 i32) (result i32) (call $fdstat (local.get 0) (local.get 1)))
  (func (export "setflags") (param i32 i32) (result i32) (call $setflags (local.get 0) (local.get 1)))
  (func (export "filestat") (param i32 i32) (result i32) (call $filestat (local.get 0) (local.get 1)))
  (func (export "seek") (param i32) (result i32) (call $seek (local.get 0) (i64.const 0) (i32.const 0) (i32.const 0)))
  (func (export "prestat") (param i32) (result i32) (call $prestat (local.get 0) (i32.const 0)))
  (func (export "dirname") (param i32) (result i32) (call $dirname (local.get 0) (i32.const 0) (i32.const 8)))
  (func (export "open") (param i32) (result i32)
    (call $open (local.get 0) (i32.const 0) (i32.const 512) (i32.const 8) (i32.const 0)
      (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 600)))
  (func (export "close") (param i32) (result i32) (call $close (local.get 0)))
  (func (export "write") (param i32) (result i32)
    (call $fd_write (local.get 0) (i32.const 0) (i32.const 0) (i32.const 8))))
`);
    for (const fd of [0, 1, 2]) {
      expect(g.call('fdstat', fd, 64)).toBe(0);
      expect(g.bytes()[64]).toBe(2); // character_device
      // stdin may read, stdout/stderr write; none may seek or tell (wasmtime's stdio rights)
      const rights = u64At(g.memory, 72);
      expect(rights & Rights.FD_READ).toBe(fd === 0 ? Rights.FD_READ : 0n);
      expect(rights & Rights.FD_WRITE).toBe(fd === 0 ? 0n : Rights.FD_WRITE);
      expect(rights & (Rights.FD_SEEK | Rights.FD_TELL)).toBe(0n);
      expect(u64At(g.memory, 80)).toBe(rights);
      expect(g.call('filestat', fd, 128)).toBe(0);
      expect(g.bytes()[128 + 16]).toBe(2);
      expect(g.call('seek', fd)).toBe(ESPIPE);
      expect(g.call('prestat', fd)).toBe(EBADF);
      expect(g.call('open', fd)).toBe(ENOTCAPABLE);
    }
    expect(g.call('setflags', 1, 1)).toBe(0); // append
    expect(g.call('fdstat', 1, 64)).toBe(0);
    expect(new DataView(g.memory.buffer).getUint16(66, true)).toBe(1);
    expect(g.call('setflags', 1, 0x100)).toBe(EINVAL);
    // fd 3 is the listening socket (wasmtime's layout); fd 4 the preopened (empty) virtual filesystem "/"; fd 5 is not open
    expect(g.call('fdstat', 4, 64)).toBe(0);
    expect(g.bytes()[64]).toBe(3); // directory
    expect(g.call('seek', 4)).toBe(EISDIR);
    expect(g.call('prestat', 4)).toBe(0);
    expect(g.call('dirname', 4)).toBe(0);
    expect(g.call('open', 4)).toBe(ENOENT);
    expect(g.call('fdstat', 3, 64)).toBe(0);
    expect(g.bytes()[64]).toBe(6); // socket_stream
    expect(g.call('seek', 3)).toBe(ESPIPE);
    // not a preopen, but not EBADF either: wasi-libc's scan for preopens skips its tag and goes on to fd 4
    expect(g.call('prestat', 3)).toBe(0);
    expect(g.bytes()[0]).toBe(1); // the tag, at 0
    expect(g.call('dirname', 3)).toBe(EBADF);
    expect(g.call('open', 3)).toBe(ENOTCAPABLE);
    expect(g.call('fdstat', 5, 64)).toBe(EBADF);
    expect(g.call('seek', 5)).toBe(EBADF);
    expect(g.call('prestat', 5)).toBe(EBADF);
    expect(g.call('dirname', 5)).toBe(EBADF);
    expect(g.call('open', 5)).toBe(EBADF);
    expect(g.call('fdstat', 1, PAGE - 8)).toBe(EFAULT);
    expect(g.call('close', 1)).toBe(0);
    expect(g.call('close', 1)).toBe(EBADF);
    expect(g.call('write', 1)).toBe(EBADF);
    expect(g.call('fdstat', 1, 64)).toBe(EBADF);
    expect(g.call('write', 2)).toBe(0);
  });

  it('poll_oneoff waits for clocks through wait(timeoutNs) and reports clock and stdio events', async () => {
    // Proves: with nothing ready, a relative clock reads the clock through Nondeterminism and waits the time left through wait(timeoutNs) (a replayer answers without sleeping), then fires; ready stdio events pre-empt pending clocks without waiting; abstime deadlines use Nondeterminism.
    const { nd, calls } = fakeNd(() => 5_000n);
    const waits: (bigint | null)[] = [];
    const g = await load(
      `
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "poll") (param i32 i32 i32 i32) (result i32)
    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3))))
`,
      {
        nondeterminism: nd,
        stdin: new Uint8Array([9, 9]),
        wait: (t) => {
          waits.push(t);
          return false;
        },
      },
    );
    const dv = new DataView(g.memory.buffer);
    const IN = 1024;
    const OUT = 4096;
    const clockSub = (i: number, userdata: bigint, timeout: bigint, abstime: boolean) => {
      const p = IN + i * 48;
      new Uint8Array(g.memory.buffer).fill(0, p, p + 48);
      dv.setBigUint64(p, userdata, true);
      dv.setUint8(p + 8, 0);
      dv.setUint32(p + 16, 1, true); // monotonic
      dv.setBigUint64(p + 24, timeout, true);
      dv.setUint16(p + 40, abstime ? 1 : 0, true);
    };
    const fdSub = (i: number, userdata: bigint, type: number, fd: number) => {
      const p = IN + i * 48;
      new Uint8Array(g.memory.buffer).fill(0, p, p + 48);
      dv.setBigUint64(p, userdata, true);
      dv.setUint8(p + 8, type);
      dv.setUint32(p + 16, fd, true);
    };
    const event = (i: number) => {
      const p = OUT + i * 32;
      return {
        userdata: dv.getBigUint64(p, true),
        error: dv.getUint16(p + 8, true),
        type: dv.getUint8(p + 10),
        nbytes: dv.getBigUint64(p + 16, true),
      };
    };

    // a one-hour relative sleep: one clock reading, one wait for the hour, then its clock event
    clockSub(0, 42n, 3_600_000_000_000n, false);
    expect(g.call('poll', IN, OUT, 1, 8)).toBe(0);
    expect(u32At(g.memory, 8)).toBe(1);
    expect(event(0)).toEqual({ userdata: 42n, error: 0, type: 0, nbytes: 0n });
    expect(calls).toEqual(['clock:1']);
    expect(waits).toEqual([3_600_000_000_000n]);
    calls.length = 0;

    // stdin readable + a pending timeout: only the fd event is reported
    clockSub(0, 1n, 1_000_000n, false);
    fdSub(1, 2n, 1, 0);
    expect(g.call('poll', IN, OUT, 2, 8)).toBe(0);
    expect(u32At(g.memory, 8)).toBe(1);
    expect(event(0)).toEqual({ userdata: 2n, error: 0, type: 1, nbytes: 2n });
    expect(waits.length).toBe(1);

    // an absolute deadline already passed fires alongside a ready stdout; a bad fd reports EBADF
    clockSub(0, 3n, 4_000n, true);
    fdSub(1, 4n, 2, 1);
    fdSub(2, 5n, 1, 9);
    expect(g.call('poll', IN, OUT, 3, 8)).toBe(0);
    expect(u32At(g.memory, 8)).toBe(3);
    expect([0, 1, 2].map((i) => [event(i).userdata, event(i).error])).toEqual([
      [3n, 0],
      [4n, 0],
      [5n, EBADF],
    ]);
    expect(calls).toEqual(['clock:1']);

    expect(g.call('poll', IN, OUT, 0, 8)).toBe(EINVAL);
    expect(g.call('poll', PAGE - 40, OUT, 1, 8)).toBe(EFAULT);
  });

  it('provided lists exactly the import names: all 46 of preview1, and nothing else is importable', async () => {
    // Proves: WasiHost.provided equals the keys of imports and holds every preview1 function, and a module importing a name preview1 does not define fails to link.
    const host = new WasiHost({ args: [], env: {}, stdout: () => {}, stderr: () => {} });
    expect(new Set(Object.keys(host.imports))).toEqual(WasiHost.provided);
    expect(WasiHost.provided.size).toBe(46);
    for (const name of ['fd_write', 'sock_accept', 'path_symlink', 'proc_raise', 'fd_renumber', 'fd_allocate']) expect(WasiHost.provided.has(name)).toBe(true);
    const bin = compile(`
(module
  (import "wasi_snapshot_preview1" "path_frobnicate" (func (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1))
`);
    await expect(WebAssembly.instantiate(bin, { [WASI_MODULE]: host.imports })).rejects.toThrow(WebAssembly.LinkError);
  });
});
