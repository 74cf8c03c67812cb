// Semantics preserved, differentially: the metered module and the plain one
// (same binaryen pipeline, no counter) must log the same values, return the
// same results, trap with the same messages and leave the same memory and
// globals — on every sample guest and on at least 200 random modules from
// binaryen's fuzzer. FTVM_FUZZ_SEED and FTVM_FUZZ_MODULES reproduce or widen a run.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compileModule, meter, EXPORT_FUEL, EXPORT_DEPTH, EXPORT_GLOBAL_PREFIX, EXPORT_START } from '../host/meter/index.ts';
import { MeterHost } from '../host/runtime/meter-host.ts';
import { runGuest } from '../host/runtime/guest.ts';
import { fuzzHarness, fuzzModules } from './fuzz-modules.ts';
import { REF_COUNT_EXPORT, referenceInstrument } from './reference-counter.ts';
import { WASI_MODULE, WasiExit, WasiHost } from '../host/runtime/wasi.ts';
import { fixedNondeterminism, sampleBytes, samples, text } from './helpers.ts';

const SEED = Number(process.env.FTVM_FUZZ_SEED ?? 20261125);
const COUNT = Number(process.env.FTVM_FUZZ_MODULES ?? 200);

const show = (v: unknown): string => {
  if (typeof v === 'number' && Number.isNaN(v)) return 'nan';
  if (typeof v === 'number' && Object.is(v, -0)) return '-0';
  return String(v);
};

/**
 * Instantiates as an unmetered module would be: a metered module's exported
 * start function runs right away. Returns the instance, or what went wrong.
 */
function instantiate(module: WebAssembly.Module, imports: WebAssembly.Imports, mh: MeterHost): WebAssembly.Instance | string {
  try {
    const instance = new WebAssembly.Instance(module, imports);
    if (EXPORT_FUEL in instance.exports) mh.bind(instance);
    const init = instance.exports[EXPORT_START];
    if (typeof init === 'function') (init as () => void)();
    return instance;
  } catch (e) {
    return `instantiate: ${(e as Error).message}`;
  }
}

/** Runs every parameterless export in order and records everything observable. */
function observe(binary: Uint8Array): string[] {
  const log: string[] = [];
  const module = compileModule(binary);
  const mh = new MeterHost();
  // log-* calls are logged with their values; the other harness calls are not observable by themselves.
  const harness = fuzzHarness((name, args) => {
    if (name.startsWith('log-')) log.push(`${name.slice(4)} ${args.map(show).join(' ')}`);
  });
  const imports: WebAssembly.Imports = { 'fuzzing-support': harness.imports, ftvm: mh.imports };
  const instance = instantiate(module, imports, mh);
  if (typeof instance === 'string') return [instance];
  harness.exports(instance);
  const metered = EXPORT_FUEL in instance.exports;
  for (const [name, value] of Object.entries(instance.exports)) {
    if (name === EXPORT_START || typeof value !== 'function' || value.length !== 0) continue;
    if (metered) mh.enter();
    try {
      log.push(`${name} -> ${show((value as () => unknown)())}`);
    } catch (e) {
      log.push(`${name} trap ${(e as Error).message}`);
    }
  }
  for (const [name, value] of Object.entries(instance.exports)) {
    // ftvm's own exports (the counter, the depth, internal globals exposed for digests) exist only when metered.
    if (name === EXPORT_FUEL || name === EXPORT_DEPTH || name.startsWith(EXPORT_GLOBAL_PREFIX)) continue;
    if (value instanceof WebAssembly.Global) {
      try {
        log.push(`global ${name} = ${show(value.value)}`);
      } catch {
        log.push(`global ${name} = (not readable from JS)`);
      }
    }
    if (value instanceof WebAssembly.Memory) {
      log.push(`memory ${name} ${createHash('sha256').update(new Uint8Array(value.buffer)).digest('hex')}`);
    }
  }
  return log;
}

describe('instrumented and plain modules behave identically', () => {
  it.each(samples().map((g) => [g.name, g] as const))('sample %s', (_name, g) => {
    const bytes = sampleBytes(g);
    const args = [g.name, ...g.args_test];
    const plain = runGuest(bytes, { args, meter: { variant: 'plain' }, nondeterminism: fixedNondeterminism() });
    const metered = runGuest(bytes, { args, meter: {}, nondeterminism: fixedNondeterminism() });
    expect(metered.outcome).toBe(plain.outcome);
    expect(metered.exitCode).toBe(plain.exitCode);
    expect(metered.trap).toBe(plain.trap);
    expect(text(metered.stdout)).toBe(text(plain.stdout));
    expect(text(metered.stderr)).toBe(text(plain.stderr));
    expect(metered.count).toBeGreaterThan(0n);
    expect(plain.count).toBeNull();
  });

  it(
    `${COUNT} random modules from binaryen's fuzzer (seed ${SEED})`,
    async () => {
      const modules = await fuzzModules(SEED, COUNT);
      let exportsRun = 0;
      let traps = 0;
      for (const { seed, bytes } of modules) {
        const plain = observe(meter(bytes, { variant: 'plain', cacheDir: null }).binary);
        const metered = observe(meter(bytes, { variant: 'ftvm', cacheDir: null }).binary);
        expect(metered, `fuzz module seed ${seed} diverged`).toEqual(plain);
        exportsRun += plain.filter((l) => / (->|trap) /.test(l)).length;
        traps += plain.filter((l) => / trap /.test(l)).length;
      }
      // The comparison must have exercised real executions, traps included.
      expect(exportsRun).toBeGreaterThan(COUNT);
      expect(traps).toBeGreaterThan(0);
    },
    600_000,
  );
});

/**
 * Counts at every host call, relative to the start of each export call, up to
 * the first trap (after a trap the real pass reports the count of its last
 * write-back, which the naive reference does not model).
 */
function observeCounts(binary: Uint8Array, read: 'ftvm' | 'reference'): string[] {
  const log: string[] = [];
  const module = compileModule(binary);
  const mh = new MeterHost();
  let instance: WebAssembly.Instance | null = null;
  let trapped = false;
  const now = (): bigint => {
    if (!instance) return 0n;
    return read === 'ftvm' ? mh.count : (instance.exports[REF_COUNT_EXPORT] as WebAssembly.Global).value;
  };
  let base = 0n;
  const harness = fuzzHarness(
    (name) => {
      if (!trapped) log.push(`${name.startsWith('log-') ? 'log' : name} @${now() - base}`);
    },
    () => {
      trapped = true;
    },
  );
  const imports: WebAssembly.Imports = { 'fuzzing-support': harness.imports, ftvm: mh.imports };
  // The reference ran the start function while instantiating (its instance
  // was not readable yet); the real pass exports it. Compare from here on.
  const made = instantiate(module, imports, mh);
  if (typeof made === 'string') return [made];
  instance = made;
  harness.exports(instance);
  log.length = 0;
  trapped = false;
  log.push(`after start @${now()}`);
  for (const [name, value] of Object.entries(instance.exports)) {
    if (trapped) break;
    if (name === EXPORT_START || typeof value !== 'function' || value.length !== 0) continue;
    if (read === 'ftvm') mh.enter();
    base = now();
    try {
      (value as () => unknown)();
      log.push(`${name} returned @${now() - base}`);
    } catch {
      trapped = true;
      log.push(`${name} trapped`);
    }
  }
  return log;
}

describe('the count agrees with a naive reference counter', () => {
  it.each(samples().map((g) => [g.name, g] as const))('sample %s: at every host call', (_n, g) => {
    const bytes = sampleBytes(g);
    // The naive reference spends far more native stack per frame than the real pass allows for.
    const args = g.name === 'recurse' ? [g.name, '40'] : [g.name, ...g.args_test];
    const real: Array<[string, bigint | null]> = [];
    const r = runGuest(bytes, {
      args,
      meter: { cacheDir: null },
      nondeterminism: fixedNondeterminism(),
      onHostCall: (n, c) => real.push([n, c]),
    });
    // The reference module runs with the same WASI host; its count is read from its own global.
    const refModule = compileModule(referenceInstrument(bytes));
    const ref: Array<[string, bigint | null]> = [];
    const wasi = new WasiHost({ args, env: {}, stdout: () => {}, stderr: () => {}, nondeterminism: fixedNondeterminism() });
    let inst: WebAssembly.Instance | null = null;
    const wrapped = Object.fromEntries(
      Object.entries(wasi.imports).map(([n, f]) => [
        n,
        (...a: never[]) => {
          ref.push([n, (inst!.exports[REF_COUNT_EXPORT] as WebAssembly.Global).value as bigint]);
          return (f as (...x: never[]) => unknown)(...a);
        },
      ]),
    );
    inst = new WebAssembly.Instance(refModule, { [WASI_MODULE]: wrapped });
    wasi.bindMemory(inst.exports.memory as WebAssembly.Memory);
    try {
      (inst.exports._start as () => void)();
    } catch (e) {
      if (!(e instanceof WasiExit) && !(e instanceof WebAssembly.RuntimeError)) throw e;
    }
    expect(real.length).toBeGreaterThan(0);
    expect(real).toEqual(ref);
    // At the end of a run that did not trap the count is exact too.
    if (r.outcome === 'exit') expect(r.count).toBe((inst.exports[REF_COUNT_EXPORT] as WebAssembly.Global).value);
  });

  it(
    `${COUNT} random modules from binaryen's fuzzer (seed ${SEED}): at every host call and every return`,
    async () => {
      const modules = await fuzzModules(SEED, COUNT);
      let compared = 0;
      for (const { seed, bytes } of modules) {
        const real = observeCounts(meter(bytes, { variant: 'ftvm', cacheDir: null }).binary, 'ftvm');
        const ref = observeCounts(referenceInstrument(bytes), 'reference');
        expect(real, `fuzz module seed ${seed}: counts differ`).toEqual(ref);
        compared += real.filter((l) => l.includes('@')).length;
      }
      expect(compared).toBeGreaterThan(COUNT);
    },
    600_000,
  );
});
