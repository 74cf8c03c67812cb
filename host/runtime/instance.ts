// One guest run on the current thread: resolve imports, instantiate, run
// `_start` (a command) or `_initialize` and then interrupts (a reactor), and
// report how it ended and at which count. Nothing here loads binaryen, so
// worker threads that run guests start fast; compiling (metering) is guest.ts.

import { EXPORT_FUEL, EXPORT_GLOBAL_PREFIX, EXPORT_START, IMPORT_MODULE } from '../meter/abi.ts';
import type { MeterOptions } from '../meter/index.ts';
import { GuestIdle, WASI_MODULE, WasiExit, WasiHost, type DeviceImage, type Nondeterminism, type VirtualFs, type WasiOptions } from './wasi.ts';
import { DeadlineReached, DepthExceeded, MeterHost, type CheckHandler } from './meter-host.ts';
import { INTERRUPT_EXPORT, INTERRUPT_NIC, IO_FUNCTIONS, IO_MODULE, sleepNs, type Interrupt, type Place } from './events.ts';
import type { VirtualNic } from './nic.ts';
import type { FtvmErrorCode } from '../errors.ts';
import { SNAPSHOT_POINT_IMPORTS } from '../meter/abi.ts';
import { canUnwind, StackUnwinder, STACK_IMAGE_BYTES_MAX, STACK_REGION_OFFSET } from './unwind.ts';

export class GuestLoadError extends Error {
  constructor(
    readonly code: FtvmErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'GuestLoadError';
  }
}

export interface RunOptions {
  /** argv, including argv[0] */
  args?: string[];
  env?: Record<string, string>;
  /** bytes available on fd 0, then end of file (ignored when `stdinRead` is given) */
  stdin?: Uint8Array;
  /**
   * Streamed stdin (WasiOptions.stdinRead): called with the number of bytes
   * the guest asks for (> 0); returns at most that many, empty at end of file.
   */
  stdinRead?: (maxBytes: number) => Uint8Array;
  /**
   * Directories preopened at fds 3, 4, ... in this order under their guest
   * names (WasiOptions.preopens); [] means none. Absent: `fs` under "/".
   */
  preopens?: Preopen[];
  /** give the guest the NIC's listening socket at the first fd after the preopens (default true) */
  listen?: boolean;
  /** called synchronously with each chunk the guest writes; output is also collected (see `collectOutput`) */
  onStdout?: (bytes: Uint8Array) => void;
  onStderr?: (bytes: Uint8Array) => void;
  /**
   * keep every chunk for RunResult's stdout and stderr (default true); false:
   * they are empty, and a guest that writes for ever is not kept in memory
   * (a replica hands each chunk on with onStdout and keeps none)
   */
  collectOutput?: boolean;
  meter?: MeterOptions;
  /** stop at the first check point whose count reaches this */
  deadline?: bigint;
  /** called at a check point that reached the deadline (see MeterHost.onCheck) */
  onCheck?: CheckHandler;
  nondeterminism?: Nondeterminism;
  /** the in-memory filesystem preopened as "/" (fd 3, or 4 after the listening socket), mutated in place; default an empty one; ignored when `preopens` is given */
  fs?: VirtualFs;
  /** called before every WASI host call with the guest's exact count at that call */
  onHostCall?: (name: string, count: bigint | null) => void;
  /** the timer of the ftvm event ABI (`ftvm_io`); without it a guest that programs a timer is told interrupts need a recording host */
  io?: { timer_set(periodNs: bigint): void };
  /** the VM's virtual NIC (default: one whose sends go nowhere) */
  nic?: VirtualNic;
  /**
   * The guest waits for input (`place` 'wait': blocked in a host call; 'idle':
   * a reactor between events). `timeoutNs` null: deliver at least one
   * interrupt through `ctx.deliver` and return true, or return false if none
   * will ever come (the guest ends idle). `timeoutNs` set (a poll_oneoff with
   * a clock and nothing ready; only at 'wait'): return true once an interrupt
   * was delivered, false when that many nanoseconds passed with none. A live
   * caller really sleeps; a replaying caller answers from its log at once.
   * Without it, a guest that waits untimed ends idle, and a timed wait
   * sleeps for real (see `sleepNs`) and returns false.
   */
  wait?: (ctx: GuestContext, place: Exclude<Place, 'check'>, timeoutNs: bigint | null) => boolean;
  /** called once the guest is instantiated, right before `_start` runs */
  onStart?: (ctx: GuestContext) => void;
  /** resume from a snapshot instead of starting: no start function or `_initialize` runs; a command guest's `_start` rewinds to its snapshot point (ResumePoint.stack) */
  resume?: ResumePoint;
  /**
   * Snapshots of a command guest built with Asyncify (meter option asyncify
   * 'input-calls'; ignored otherwise). `wanted()` is asked at the entry of
   * each call that waits for input (SNAPSHOT_POINT_IMPORTS), unless it is
   * made inside another or by an interrupt handler; true unwinds
   * the stack there (when it surely fits, StackUnwinder.fits) instead of
   * making the call. A `wait` may also throw UnwindNow while such a call
   * waits, if the call has had no effect but interrupts delivered to the NIC
   * (no interrupt handler ran, nothing else was read or logged since its
   * entry): made again from its start, the call then waits exactly as the
   * one that went on would have. `onUnwound` then gets the guest with its stack
   * unwound and the stack image, takes its snapshot, and returns; the guest
   * rewinds and makes the call, as if nothing had happened.
   */
  unwind?: {
    wanted(ctx: GuestContext): boolean;
    onUnwound(ctx: GuestContext, stack: Uint8Array): void;
  };
}

/**
 * Thrown by a RunOptions.wait to unwind a command guest from the call that
 * waits (see RunOptions.unwind): only when `GuestContext.atSnapshotPoint()`,
 * and only when the call has had no effect yet, since it is made again from
 * its start once the guest rewinds.
 */
export class UnwindNow extends Error {
  constructor() {
    super('unwind the guest for a snapshot');
    this.name = 'UnwindNow';
  }
}

/** A directory the guest sees: the in-memory tree (mutated in place) and the name it is preopened under ("/", "/data", "."). */
export interface Preopen {
  name: string;
  fs: VirtualFs;
}

/** A guest's state at a snapshot: everything but the module. An idle reactor's, or a command guest's at the entry of a call that waits for input. */
export interface ResumePoint {
  count: bigint;
  memory: Uint8Array;
  /** the exported mutable globals (ftvm_global_<i>) and their values */
  globals: [string, number | bigint][];
  devices: DeviceImage;
  /** a command guest's unwound wasm stack (StackUnwinder's image, at most STACK_IMAGE_BYTES_MAX); absent for a reactor */
  stack?: Uint8Array;
}

export class SnapshotError extends Error {
  readonly code = 'FTVM_ERR_SNAPSHOT' satisfies FtvmErrorCode;
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

/** The exported mutable globals a snapshot carries; a v128 global cannot be read from JavaScript and is refused. */
export function snapshotGlobals(instance: WebAssembly.Instance): [string, number | bigint][] {
  const out: [string, number | bigint][] = [];
  for (const [name, v] of Object.entries(instance.exports)) {
    if (!name.startsWith(EXPORT_GLOBAL_PREFIX) || !(v instanceof WebAssembly.Global)) continue;
    let value: unknown;
    try {
      value = v.value;
    } catch {
      throw new SnapshotError(`global ${name} is a v128: it cannot be snapshotted`);
    }
    if (typeof value !== 'number' && typeof value !== 'bigint') throw new SnapshotError(`global ${name} holds a reference: it cannot be snapshotted`);
    out.push([name, value]);
  }
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** What a caller may look at while a guest runs. */
export interface GuestContext {
  instance: WebAssembly.Instance;
  memory: WebAssembly.Memory;
  /** null for an unmetered guest */
  meter: MeterHost | null;
  wasi: WasiHost;
  /**
   * Delivers an interrupt: a message is queued on the NIC, then the guest's
   * handler (if any) runs from `place`, unless a handler is running already:
   * interrupts are masked while the handler runs (it is not re-entered), so a
   * host delivers at check points only when `masked()` is false.
   */
  deliver(intr: Interrupt, place: Place): void;
  /** an interrupt handler is running */
  masked(): boolean;
  /** the guest is a reactor (`_initialize` and interrupts, no `_start`) */
  reactor: boolean;
  /** the guest is in a call that waits for input and may unwind from it (RunOptions.unwind, UnwindNow): the outermost, no handler ran in it, the stack fits */
  atSnapshotPoint(): boolean;
}

export type Outcome =
  /** `_start` returned or the guest called proc_exit */
  | 'exit'
  /** the guest trapped (including the call-depth limit) */
  | 'trap'
  /** the guest reached its deadline and the host stopped it */
  | 'deadline'
  /** the guest waits for input and none will come (a reactor between events, or a blocked call) */
  | 'idle';

export interface RunResult {
  outcome: Outcome;
  exitCode: number | null;
  /** the count where the run ended; null for an unmetered run */
  count: bigint | null;
  /** the trap's message, for outcome 'trap' */
  trap: string | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

/**
 * Checks every import against what ftvm provides and throws an error naming
 * the first it does not.
 */
export function checkImports(module: WebAssembly.Module): void {
  for (const imp of WebAssembly.Module.imports(module)) {
    const name = `${imp.module}.${imp.name}`;
    if (imp.module === WASI_MODULE && imp.kind === 'function' && WasiHost.provided.has(imp.name)) continue;
    if (imp.module === IO_MODULE && imp.kind === 'function' && IO_FUNCTIONS.has(imp.name)) continue;
    if (imp.module === IMPORT_MODULE) {
      throw new GuestLoadError('FTVM_ERR_UNSUPPORTED_IMPORT', `the module imports "${name}" from the reserved module "ftvm"`);
    }
    throw new GuestLoadError('FTVM_ERR_UNSUPPORTED_IMPORT', `unsupported import "${name}" (${imp.kind})`);
  }
}

/**
 * Checks the module's exports as the WASI application ABI (preview1) and
 * ftvm's reactors need them, from the compiled module alone (no instance):
 * its memory as "memory"; "_start" (a command) or "_initialize" (a
 * reactor), as functions; and a reactor's interrupt handler
 * (INTERRUPT_EXPORT). Throws GuestLoadError FTVM_ERR_NO_ENTRY naming what
 * is missing. runModule checks the same on the instance.
 */
export function checkExports(module: WebAssembly.Module): void {
  const kinds = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  if (kinds.get('memory') !== 'memory') {
    throw new GuestLoadError('FTVM_ERR_NO_ENTRY', 'the module does not export its memory as "memory"');
  }
  const command = kinds.get('_start') === 'function';
  const reactor = !command && kinds.get('_initialize') === 'function';
  if (!command && !reactor) {
    throw new GuestLoadError('FTVM_ERR_NO_ENTRY', 'the module exports neither "_start" (a WASI command) nor "_initialize" (a reactor)');
  }
  if (reactor && kinds.get(INTERRUPT_EXPORT) !== 'function') {
    throw new GuestLoadError('FTVM_ERR_NO_ENTRY', `a reactor (exporting "_initialize") must export its interrupt handler "${INTERRUPT_EXPORT}"`);
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Runs a compiled guest (see guest.ts's compileGuest) to its end on the current thread. */
export function runModule(module: WebAssembly.Module, opts: RunOptions = {}): RunResult {
  // The optimizer drops ftvm imports a module never needs; the exported fuel global always stays.
  const metered = WebAssembly.Module.exports(module).some((e) => e.name === EXPORT_FUEL);
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const collect = opts.collectOutput !== false;
  const wasiOptions: WasiOptions = {
    args: opts.args ?? ['guest'],
    env: opts.env ?? {},
    stdin: opts.stdin,
    stdinRead: opts.stdinRead,
    preopens: opts.preopens,
    listen: opts.listen,
    stdout: (b) => {
      if (collect) out.push(b);
      opts.onStdout?.(b);
    },
    stderr: (b) => {
      if (collect) err.push(b);
      opts.onStderr?.(b);
    },
    nondeterminism: opts.nondeterminism,
    fs: opts.fs,
    nic: opts.nic,
    wait: (timeoutNs: bigint | null) => {
      if (ctx && opts.wait) return opts.wait(ctx, 'wait', timeoutNs);
      if (timeoutNs !== null) sleepNs(timeoutNs);
      return false;
    },
  };
  const wasi = opts.resume ? WasiHost.fromImage(wasiOptions, opts.resume.devices) : new WasiHost(wasiOptions);
  let ctx: GuestContext | null = null;
  const mh = new MeterHost();
  mh.onCheck = opts.onCheck ?? null;
  const imports: WebAssembly.Imports = {
    [WASI_MODULE]: wasi.imports,
    [IO_MODULE]: {
      ...wasi.nicImports,
      ...(opts.io ?? {
        timer_set: () => {
          throw new GuestLoadError('FTVM_ERR_NO_INTERRUPTS', 'the guest programs a timer: interrupts are delivered under ftvm record/replay');
        },
      }),
    },
  };
  const onHostCall = opts.onHostCall;
  if (onHostCall) {
    const wrapped: Record<string, (...a: never[]) => unknown> = {};
    for (const [name, fn] of Object.entries(wasi.imports)) {
      wrapped[name] = (...a: never[]) => {
        onHostCall(name, metered ? mh.count : null);
        return (fn as (...x: never[]) => unknown)(...a);
      };
    }
    imports[WASI_MODULE] = wrapped;
  }
  if (metered) imports[IMPORT_MODULE] = mh.imports;
  // A command guest built with Asyncify unwinds at the entry of a call that waits for input.
  let unwinder: StackUnwinder | null = null;
  let pointDepth = 0;
  /** interrupt handlers run so far, and how many when the outermost input call began */
  let handlerRuns = 0;
  let handlerRunsAtPoint = 0;
  const unwind = opts.unwind;
  if (unwind && canUnwindModule(module)) {
    for (const full of SNAPSHOT_POINT_IMPORTS) {
      const dot = full.indexOf('.');
      const [mod, name] = [full.slice(0, dot), full.slice(dot + 1)];
      const table = imports[mod] as Record<string, unknown> | undefined;
      const fn = table?.[name];
      if (typeof fn !== 'function') continue;
      const point = (...a: unknown[]): unknown => {
        const u = unwinder;
        // The call a rewind reached is made now, as any other: asked too (a replica marks where
        // the call began there). Only the outermost input call, outside an interrupt handler, is.
        if (u?.rewinding) u.stopRewind();
        if (u && ctx && pointDepth === 0 && !ctx.masked() && unwind.wanted(ctx) && u.fits()) {
          u.startUnwind();
          return 0;
        }
        if (pointDepth === 0) handlerRunsAtPoint = handlerRuns;
        pointDepth++;
        try {
          return (fn as (...x: unknown[]) => unknown)(...a);
        } catch (e) {
          if (!(e instanceof UnwindNow) || !u) throw e;
          u.startUnwind();
          return 0;
        } finally {
          pointDepth--;
        }
      };
      imports[mod] = { ...table, [name]: point } as WebAssembly.ModuleImports;
    }
  }

  const result = (outcome: Outcome, exitCode: number | null, trap: string | null = null, at?: bigint): RunResult => ({
    outcome,
    exitCode,
    count: metered ? (at ?? mh.count) : null,
    trap,
    stdout: concat(out),
    stderr: concat(err),
  });

  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(module, imports);
  } catch (e) {
    return ended(e, result);
  }
  const memory = instance.exports.memory;
  if (!(memory instanceof WebAssembly.Memory)) {
    throw new GuestLoadError('FTVM_ERR_NO_ENTRY', 'the module does not export its memory as "memory"');
  }
  const start = instance.exports._start;
  const initialize = instance.exports._initialize;
  const handler = instance.exports[INTERRUPT_EXPORT];
  const reactor = typeof start !== 'function' && typeof initialize === 'function';
  if (typeof start !== 'function' && !reactor) {
    throw new GuestLoadError('FTVM_ERR_NO_ENTRY', 'the module exports neither "_start" (a WASI command) nor "_initialize" (a reactor)');
  }
  if (reactor && typeof handler !== 'function') {
    throw new GuestLoadError('FTVM_ERR_NO_ENTRY', `a reactor (exporting "_initialize") must export its interrupt handler "${INTERRUPT_EXPORT}"`);
  }
  wasi.bindMemory(memory);
  if (metered) {
    mh.bind(instance);
    if (opts.deadline !== undefined) mh.setDeadline(opts.deadline);
    mh.enter();
  }
  let inHandler = 0;
  const deliver = (intr: Interrupt, place: Place): void => {
    if (intr.kind === INTERRUPT_NIC) wasi.nic.arrive(intr.msg);
    if (typeof handler !== 'function' || inHandler > 0) return;
    const call = (): void => {
      handlerRuns++;
      inHandler++;
      try {
        (handler as (kind: number) => void)(intr.kind);
      } finally {
        inHandler--;
      }
    };
    if (place === 'check' && metered) mh.runFromCheck(call);
    else {
      // From a blocked host call the handler's wrapper keeps the caller's depth; idle, nothing is on the stack.
      if (place === 'idle' && metered) mh.enter();
      call();
    }
  };
  if (unwind && canUnwindModule(module)) unwinder = new StackUnwinder(instance, memory);
  ctx = {
    instance,
    memory,
    meter: metered ? mh : null,
    wasi,
    deliver,
    masked: () => inHandler > 0,
    reactor,
    // (a handler that ran inside the call may have changed what the call read at its start)
    atSnapshotPoint: () => unwinder !== null && pointDepth === 1 && inHandler === 0 && handlerRuns === handlerRunsAtPoint && unwinder.fits(),
  };
  if (opts.resume) resume(ctx, opts.resume, unwinder);
  opts.onStart?.(ctx);
  try {
    if (opts.resume && reactor) {
      while (opts.wait?.(ctx, 'idle', null));
      return result('idle', null);
    }
    // A metered module's start function runs here, metered, not at instantiation.
    const init = instance.exports[EXPORT_START];
    if (!opts.resume && typeof init === 'function') (init as () => void)();
    if (!reactor) {
      let rewind = opts.resume?.stack ?? null;
      for (;;) {
        if (rewind) unwinder!.startRewind(rewind);
        (start as () => void)();
        if (!unwinder?.unwinding) break;
        rewind = unwinder.stopUnwind();
        opts.unwind!.onUnwound(ctx, rewind);
      }
      return result('exit', 0);
    }
    (initialize as () => void)();
    while (opts.wait?.(ctx, 'idle', null));
    return result('idle', null);
  } catch (e) {
    return ended(e, result);
  }
}

/** Whether a compiled module was built with Asyncify (see unwind.ts). */
function canUnwindModule(module: WebAssembly.Module): boolean {
  return canUnwind(new Set(WebAssembly.Module.exports(module).map((e) => e.name)));
}

/**
 * Whether a compiled (metered) guest can be snapshotted while it runs: a
 * reactor between events, or a command guest built with Asyncify (meter
 * option asyncify 'input-calls') at its input calls.
 */
export function snapshottable(module: WebAssembly.Module): boolean {
  const names = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
  return (!names.has('_start') && names.has('_initialize')) || canUnwind(names);
}

/**
 * Puts a fresh instance in the state of a resume point: a reactor's, or a
 * command guest's with its stack image (rewound when `_start` runs). Throws
 * SnapshotError (FTVM_ERR_SNAPSHOT) for a point that does not fit the guest.
 */
function resume(ctx: GuestContext, r: ResumePoint, unwinder: StackUnwinder | null): void {
  if (!ctx.meter) throw new SnapshotError('only a metered guest resumes from a snapshot');
  if (ctx.reactor && r.stack) throw new SnapshotError('a reactor resumes between events, without a stack');
  if (!ctx.reactor && !r.stack) throw new SnapshotError('a command guest resumes only from a snapshot with its stack');
  if (!ctx.reactor && !unwinder) throw new SnapshotError('a command guest resumes from a snapshot only when built with Asyncify and run with RunOptions.unwind');
  if (r.stack) {
    const s = r.stack;
    const ok = s instanceof Uint8Array && s.length >= 8 && s.length <= STACK_IMAGE_BYTES_MAX && new DataView(s.buffer, s.byteOffset, 8).getUint32(0, true) === STACK_REGION_OFFSET + s.length;
    if (!ok) throw new SnapshotError('the snapshot\'s stack image is not one an unwind made');
  }
  const have = ctx.memory.buffer.byteLength;
  if (r.memory.length < have || r.memory.length % 65536 !== 0) {
    throw new SnapshotError(`the snapshot's memory (${r.memory.length} bytes) does not fit the module's (${have} bytes at start)`);
  }
  if (r.memory.length > have) ctx.memory.grow((r.memory.length - have) / 65536);
  new Uint8Array(ctx.memory.buffer).set(r.memory);
  const mine = new Set(snapshotGlobals(ctx.instance).map(([n]) => n));
  for (const [name, value] of r.globals) {
    const g = ctx.instance.exports[name];
    if (!mine.delete(name) || !(g instanceof WebAssembly.Global)) throw new SnapshotError(`the snapshot has a global ${name} the module does not`);
    g.value = value;
  }
  if (mine.size) throw new SnapshotError(`the snapshot lacks the module's globals ${[...mine].join(', ')}`);
  ctx.meter.resumeAt(r.count);
}

function ended(
  e: unknown,
  result: (o: Outcome, code: number | null, trap?: string | null, at?: bigint) => RunResult,
): RunResult {
  if (e instanceof WasiExit) return result('exit', e.code);
  if (e instanceof GuestIdle) return result('idle', null);
  // The global holds the last write-back; the check point knew the exact count.
  if (e instanceof DeadlineReached) return result('deadline', null, null, e.count);
  if (e instanceof DepthExceeded) return result('trap', null, 'call depth limit exceeded');
  if (e instanceof WebAssembly.RuntimeError) return result('trap', null, e.message);
  if (e instanceof RangeError && /call stack/i.test(e.message)) {
    // Never let the engine's own stack limit pass for a guest trap: it differs between threads.
    throw new GuestLoadError(
      'FTVM_ERR_HOST_STACK',
      'the host thread ran out of native stack before the guest reached its deterministic depth limit; lower depthLimit',
    );
  }
  throw e;
}
