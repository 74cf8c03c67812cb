// Bad input gets a clear error naming the problem: invalid bytes, imports ftvm
// does not provide, and features whose behaviour cannot be made deterministic.
import { describe, expect, it } from 'vitest';
import { compileGuest, runGuest } from '../host/runtime/guest.ts';
import binaryen from 'binaryen';
import { DEFAULT_DEPTH_LIMIT, instrumentModule, meter } from '../host/meter/index.ts';
import { watBytes, watText } from './helpers.ts';

function refusal(bytes: Uint8Array): { code?: string; message: string } {
  try {
    compileGuest(bytes, { cacheDir: null });
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('the module was accepted');
}

const START = `(func (export "_start"))`;
const OPTS = { strategy: 'ftvm', depthLimit: DEFAULT_DEPTH_LIMIT, memoryLimitPages: 16, canonicalizeNaNs: false } as const;

describe('refused modules', () => {
  it('bytes that are not wasm', () => {
    const e = refusal(new TextEncoder().encode('not a module'));
    expect(e.code).toBe('FTVM_ERR_INVALID_MODULE');
    expect(e.message).toMatch(/not a valid WebAssembly module/);
  });

  it('a truncated module', () => {
    const good = watBytes('loop');
    const e = refusal(good.subarray(0, good.length - 5));
    expect(e.code).toBe('FTVM_ERR_INVALID_MODULE');
  });

  it('an import ftvm does not provide, named in the error', () => {
    const e = refusal(watText(`(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1) ${START})`));
    expect(e.code).toBe('FTVM_ERR_UNSUPPORTED_IMPORT');
    expect(e.message).toContain('env.launch_missiles');
  });

  it('a WASI function ftvm does not provide, named in the error', () => {
    const e = refusal(
      watText(`(module (import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32))) (memory (export "memory") 1) ${START})`),
    );
    expect(e.message).toContain('wasi_snapshot_preview1.sock_open');
  });

  it('imports from the reserved module "ftvm"', () => {
    const e = refusal(watText(`(module (import "ftvm" "check" (func (param i64) (result i64))) (memory (export "memory") 1) ${START})`));
    expect(e.message).toMatch(/reserved/);
  });

  it('shared memory (threads)', () => {
    const e = refusal(watText(`(module (memory (export "memory") 1 1 shared) ${START})`));
    expect(e.code).toBe('FTVM_ERR_UNSUPPORTED_FEATURE');
    expect(e.message).toMatch(/shared memory/);
  });

  it('relaxed SIMD: refused by the engine, and by the pass itself where an engine accepts it', () => {
    const wat = `(module (memory (export "memory") 1) (func (export "_start") (drop (f32x4.relaxed_madd (v128.const i32x4 0 0 0 0) (v128.const i32x4 0 0 0 0) (v128.const i32x4 0 0 0 0)))))`;
    expect(refusal(watText(wat)).code).toMatch(/^FTVM_ERR_/);
    const m = binaryen.parseText(wat);
    try {
      expect(() => instrumentModule(m, OPTS)).toThrow(/relaxed SIMD.*differ between CPUs/);
    } finally {
      m.dispose();
    }
  });

  it('atomic instructions on an unshared memory are deterministic and accepted', () => {
    const bytes = watText(
      `(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32))) (memory (export "memory") 1 1)
        (func (export "_start") (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 5))) (call $exit (i32.atomic.load (i32.const 0)))))`,
    );
    expect(runGuest(bytes, { meter: { cacheDir: null } })).toMatchObject({ outcome: 'exit', exitCode: 5, count: 6n });
  });

  it('bulk table instructions, by name', () => {
    const e = refusal(
      watText(`(module (table 2 funcref) (memory (export "memory") 1) (func (export "_start") (table.copy (i32.const 0) (i32.const 1) (i32.const 1))))`),
    );
    expect(e.message).toMatch(/table\.copy/);
  });

  it('tail calls', () => {
    const e = refusal(watText(`(module (memory (export "memory") 1) (func $f (return_call $f)) (func (export "_start") (call $f)))`));
    expect(e.message).toMatch(/tail calls/);
  });

  it('exception handling', () => {
    const e = refusal(
      watText(`(module (tag $t) (memory (export "memory") 1) (func (export "_start") (throw $t)))`),
    );
    expect(e.message).toMatch(/exception handling/);
  });

  it('initial memory above the memory limit', () => {
    const bytes = watText(`(module (memory (export "memory") 10) ${START})`);
    expect(() => meter(bytes, { memoryLimitPages: 5, cacheDir: null })).toThrow(/10 pages, above the limit of 5/);
  });

  it('a module that exports a name ftvm reserves', () => {
    const bytes = watText(`(module (global (export "ftvm_fuel") i32 (i32.const 0)) (memory (export "memory") 1) ${START})`);
    expect(() => meter(bytes, { cacheDir: null })).toThrow(/ftvm_fuel/);
  });

  it('a function with as many parameters as the engine allows (the metered body needs two more)', () => {
    const params = Array.from({ length: 999 }, () => 'i32').join(' ');
    const bytes = watText(`(module (memory (export "memory") 1) (func $f (param ${params}) (call $f ${'(i32.const 0) '.repeat(999)})) ${START})`);
    expect(() => meter(bytes, { cacheDir: null })).toThrow(/more than 998 parameters/);
  });

  it('a module without _start is not a command', () => {
    expect(() => runGuest(watText(`(module (memory (export "memory") 1))`))).toThrow(/_start/);
  });
});
