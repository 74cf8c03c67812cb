// What this proves: a request that changes a VM is checked once, with exact
// types and every limit, before anything is created (host/api/action.ts).
// Unit part: each rule of a start, of a REST start body, of a message and of
// a VM operation refuses what breaks it with FTVM_ERR_BAD_REQUEST or
// FTVM_ERR_TOO_LARGE, and the largest start it accepts still fits one log
// frame. Cluster part (two real `ftvm host` processes): the reported
// requests (100,000 env vars, a 2 MiB env value, an env name with '=', an
// argument with NUL, "name": 5) are refused through REST and the client port
// with no VM created and the host alive, and the largest accepted start runs
// with a backup on the other host (it was logged and shipped whole).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkClientStart,
  checkSend,
  checkStart,
  checkStartBody,
  checkVmOp,
  startEntryOf,
  VM_ARGS_MAX,
  VM_ARGV_ENV_BYTES_MAX,
  VM_ENV_MAX,
  VM_MEMORY_MIB_MAX,
  VM_STDIN_BYTES_MAX,
  VM_STRING_BYTES_MAX,
} from '../host/api/action.ts';
import { FtvmError } from '../host/errors.ts';
import { encodeFrame, FRAME_BYTES_MAX } from '../host/log/format.ts';
import { MAX_MESSAGE_BYTES } from '../host/runtime/nic.ts';
import { apiOf, Cluster, eventually } from './cluster.ts';

const HASH = 'ab'.repeat(32);
const MODULE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);

/** The code `f` throws (an FtvmError's), or 'none'. */
function codeOf(f: () => unknown): string {
  try {
    f();
    return 'none';
  } catch (e) {
    expect(e).toBeInstanceOf(FtvmError);
    return (e as FtvmError).code;
  }
}

/** `n` env vars NAME_i = value of `valueBytes` bytes. */
function envOf(n: number, valueBytes: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (let i = 0; i < n; i++) env[`V${i}`] = 'x'.repeat(valueBytes);
  return env;
}

/** The requests reported to pass (or crash the host) before the check, and the code each must now get. */
const REPORTED: [what: string, body: Record<string, unknown>, code: string][] = [
  ['100,000 env vars', { env: envOf(100_000, 4) }, 'FTVM_ERR_TOO_LARGE'],
  ['a 2 MiB env value', { env: { BIG: 'x'.repeat(2 * 1024 * 1024) } }, 'FTVM_ERR_TOO_LARGE'],
  ["an env name with '='", { env: { 'A=B': 'c' } }, 'FTVM_ERR_BAD_REQUEST'],
  ['an argument with NUL', { args: ['a\0b'] }, 'FTVM_ERR_BAD_REQUEST'],
  ['"name": 5', { name: 5 }, 'FTVM_ERR_BAD_REQUEST'],
];

describe('a start, checked (unit)', () => {
  it('fills in the defaults of a minimal start, and keeps what it was given', () => {
    expect(checkStart({ name: 'vm1', moduleHash: HASH })).toEqual({
      kind: 'start',
      name: 'vm1',
      moduleHash: HASH,
      args: [],
      env: {},
      stdin: new Uint8Array(0),
      memoryMiB: VM_MEMORY_MIB_MAX,
      cpuPercent: 100,
      publish: [],
    });
    const a = checkStart({ name: 'vm1', module: MODULE, args: ['-x', ''], env: { A: '', B: 'b=c' }, stdin: new Uint8Array([1]), memoryMiB: 8, cpuPercent: 50, publish: [80, 443] });
    expect(a).toMatchObject({ module: MODULE, args: ['-x', ''], env: { A: '', B: 'b=c' }, memoryMiB: 8, cpuPercent: 50, publish: [80, 443] });
    expect(startEntryOf(a, HASH)).toMatchObject({ module: HASH, args: ['vm1', '-x', ''], env: { A: '', B: 'b=c' }, memoryLimitPages: 128 });
  });

  it.each(REPORTED)('refuses %s', (_what, fields, code) => {
    expect(codeOf(() => checkStart({ name: 'vm1', moduleHash: HASH, ...fields }))).toBe(code);
  });

  it('refuses every other wrong type, string rule and limit', () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ name: 'bad name' }, 'FTVM_ERR_BAD_REQUEST'],
      [{ memoryMiB: '64' }, 'FTVM_ERR_BAD_REQUEST'],
      [{ memoryMiB: 1.5 }, 'FTVM_ERR_BAD_REQUEST'],
      [{ memoryMiB: VM_MEMORY_MIB_MAX + 1 }, 'FTVM_ERR_BAD_REQUEST'],
      [{ cpuPercent: 0 }, 'FTVM_ERR_BAD_REQUEST'],
      [{ cpuPercent: true }, 'FTVM_ERR_BAD_REQUEST'],
      [{ publish: [80, 80] }, 'FTVM_ERR_BAD_REQUEST'],
      [{ publish: [70_000] }, 'FTVM_ERR_BAD_REQUEST'],
      [{ publish: ['80'] }, 'FTVM_ERR_BAD_REQUEST'],
      [{ publish: 80 }, 'FTVM_ERR_BAD_REQUEST'],
      [{ args: 'a b' }, 'FTVM_ERR_BAD_REQUEST'],
      [{ args: [1] }, 'FTVM_ERR_BAD_REQUEST'],
      [{ env: ['A=b'] }, 'FTVM_ERR_BAD_REQUEST'],
      [{ env: { A: 1 } }, 'FTVM_ERR_BAD_REQUEST'],
      [{ env: { '': 'x' } }, 'FTVM_ERR_BAD_REQUEST'],
      [{ env: { 'A\0': 'x' } }, 'FTVM_ERR_BAD_REQUEST'],
      [{ env: { A: 'x\0' } }, 'FTVM_ERR_BAD_REQUEST'],
      [{ stdin: 'text' }, 'FTVM_ERR_BAD_REQUEST'],
      [{ module: MODULE }, 'FTVM_ERR_BAD_REQUEST'], // and a moduleHash: exactly one
      [{ moduleHash: 'AB'.repeat(32) }, 'FTVM_ERR_BAD_REQUEST'],
      [{ nosuch: 1 }, 'FTVM_ERR_BAD_REQUEST'],
      [{ args: new Array(VM_ARGS_MAX + 1).fill('a') }, 'FTVM_ERR_TOO_LARGE'],
      [{ env: envOf(VM_ENV_MAX + 1, 1) }, 'FTVM_ERR_TOO_LARGE'],
      [{ args: ['x'.repeat(VM_STRING_BYTES_MAX + 1)] }, 'FTVM_ERR_TOO_LARGE'],
      // each argument within its limit, all of them together not
      [{ args: new Array(Math.ceil(VM_ARGV_ENV_BYTES_MAX / VM_STRING_BYTES_MAX) + 1).fill('x'.repeat(VM_STRING_BYTES_MAX - 1)) }, 'FTVM_ERR_TOO_LARGE'],
      [{ stdin: new Uint8Array(VM_STDIN_BYTES_MAX + 1) }, 'FTVM_ERR_TOO_LARGE'],
      [{ publish: [1, 2, 3, 4, 5, 6, 7, 8, 9] }, 'FTVM_ERR_TOO_LARGE'],
    ];
    for (const [fields, code] of bad) expect([fields, codeOf(() => checkStart({ name: 'vm1', moduleHash: HASH, ...fields }))]).toEqual([fields, code]);
    expect(codeOf(() => checkStart(null))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkStart([]))).toBe('FTVM_ERR_BAD_REQUEST');
  });

  it('accepts the largest start it allows, and that start entry fits one log frame', () => {
    // VM_ENV_MAX variables sharing what VM_ARGV_ENV_BYTES_MAX leaves after the name
    const per = Math.floor((VM_ARGV_ENV_BYTES_MAX - 4) / VM_ENV_MAX) - 1;
    const env: Record<string, string> = {};
    for (let i = 0; i < VM_ENV_MAX; i++) {
      const name = `V${i}`;
      env[name] = 'é'.repeat(Math.floor((per - name.length - 1) / 2)); // two UTF-8 bytes each
    }
    const a = checkStart({ name: 'big', moduleHash: HASH, env });
    const frame = encodeFrame([{ seq: 0, count: 0n, kind: 'start', payload: startEntryOf(a, HASH) }]);
    expect(frame.length).toBeGreaterThan(VM_ARGV_ENV_BYTES_MAX * 0.9);
    expect(frame.length).toBeLessThanOrEqual(FRAME_BYTES_MAX);
  });

  it('checks a client-port start message: its own fields stripped, `vm` as the name, nothing else', () => {
    expect(checkClientStart({ t: 'start', id: 3, v: 1, vm: 'vm1', moduleHash: HASH, args: undefined })).toMatchObject({ name: 'vm1', args: [] });
    expect(codeOf(() => checkClientStart({ t: 'start', vm: 'vm1', name: 'other', moduleHash: HASH }))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkClientStart({ t: 'start', vm: 5, moduleHash: HASH }))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkClientStart({ t: 'start', vm: 'vm1', module: 'AGFzbQ==' }))).toBe('FTVM_ERR_BAD_REQUEST');
  });

  it('checks a REST start body by the same rules, before any module is read', () => {
    expect(checkStartBody({ name: 'vm1', sample: 'kv', stdin: 'hi' }).stdin).toEqual(new Uint8Array(Buffer.from('hi')));
    expect(checkStartBody({ name: 'vm1', sample: 'kv', stdinBase64: 'aGk=' }).stdin).toEqual(new Uint8Array(Buffer.from('hi')));
    for (const [what, fields, code] of REPORTED) expect([what, codeOf(() => checkStartBody({ name: 'vm1', sample: 'kv', ...fields }))]).toEqual([what, code]);
    const bad: Record<string, unknown>[] = [
      { name: 'vm1' },
      { name: 'vm1', sample: 'kv', moduleHash: HASH },
      { name: 'vm1', sample: 5 },
      { name: 'vm1', module: '!!' },
      { name: 'vm1', sample: 'kv', stdin: 'a', stdinBase64: 'YQ==' },
      { name: 'vm1', sample: 'kv', stdinBase64: '!!' },
      { name: 'vm1', sample: 'kv', memoryMiB: '8' },
      { name: 'vm1', sample: 'kv', extra: true },
    ];
    for (const b of bad) expect([b, codeOf(() => checkStartBody(b))]).toEqual([b, 'FTVM_ERR_BAD_REQUEST']);
  });

  it('checks a message and a VM operation', () => {
    expect(checkSend('vm1', 7, new Uint8Array([1]))).toEqual({ kind: 'send', vm: 'vm1', conn: 7, bytes: new Uint8Array([1]), eof: false });
    expect(checkSend('vm1', 7, new Uint8Array(0), true)).toMatchObject({ eof: true });
    expect(codeOf(() => checkSend('vm1', 7, new Uint8Array(0)))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkSend('vm1', 7, new Uint8Array(1), true))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkSend('vm1', -1, new Uint8Array(1)))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkSend('vm1', 7, 'x'))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkSend('vm1', 7, new Uint8Array(MAX_MESSAGE_BYTES + 1)))).toBe('FTVM_ERR_TOO_LARGE');
    expect(checkVmOp('failover', 'vm1')).toEqual({ kind: 'failover', vm: 'vm1' });
    expect(codeOf(() => checkVmOp('stop', '../x'))).toBe('FTVM_ERR_BAD_REQUEST');
    expect(codeOf(() => checkVmOp('reboot' as 'stop', 'vm1'))).toBe('FTVM_ERR_BAD_REQUEST');
  });
});

// Generous: hosts start as processes and a first start meters its module, on a machine that may be busy.
describe('a start, checked, on a real cluster', { timeout: 180_000 }, () => {
  let c: InstanceType<typeof Cluster>;
  let api: ReturnType<typeof apiOf>;
  beforeAll(async () => {
    c = new Cluster();
    await Promise.all(['h1', 'h2'].map((id) => c.add(id)));
    await c.linked();
    api = apiOf(c);
  }, 120_000);
  afterAll(async () => {
    await c?.stop();
  });

  const vmNames = async (host: string): Promise<string[]> => ((await api(host, 'GET', '/v1/vms')).json as { name: string }[]).map((v) => v.name);

  it('REST refuses each reported request with its code, creates no VM, and goes on answering', async () => {
    for (const [what, fields, code] of REPORTED) {
      const r = await api('h1', 'POST', '/v1/vms', { name: 'rep', sample: 'kv', ...fields });
      expect([what, r.status, r.json?.error?.code]).toEqual([what, code === 'FTVM_ERR_TOO_LARGE' ? 413 : 400, code]);
    }
    // no coercion anywhere in a body: a number given as a string is refused, not read
    expect((await api('h1', 'POST', '/v1/vms', { name: 'rep', sample: 'kv', memoryMiB: '8' })).status).toBe(400);
    // a list longer than the schema allows is too large, as every size limit is (the schema's check comes first here)
    const nine = await api('h1', 'POST', '/v1/vms', { name: 'rep', sample: 'kv', publish: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
    expect([nine.status, nine.json?.error?.code]).toEqual([413, 'FTVM_ERR_TOO_LARGE']);
    expect(await vmNames('h1')).toEqual([]);
    expect(await vmNames('h2')).toEqual([]);
    expect((await api('h1', 'GET', '/healthz')).json).toMatchObject({ ok: true });
  });

  it('the client port refuses them too, with the same codes, and creates no VM', async () => {
    const client = await c.client('h1');
    try {
      // msgpack maps hold at most 65,535 keys, so the client sends VM_ENV_MAX + 1 variables where REST got 100,000
      const rows = REPORTED.map(([what, fields, code]) => (what === '100,000 env vars' ? ([`${VM_ENV_MAX + 1} env vars`, { env: envOf(VM_ENV_MAX + 1, 4) }, code] as const) : ([what, fields, code] as const)));
      for (const [what, fields, code] of rows) {
        const { name, args, env } = { name: 'rep', ...fields } as { name: string; args?: string[]; env?: Record<string, string> };
        const err = await client.start(name, new Uint8Array(MODULE), { args, env }).then(
          () => null,
          (e: Error & { code?: string }) => e,
        );
        expect([what, err?.code, err?.message]).toEqual([what, code, expect.stringMatching(/more than|holds|must be a string/)]);
      }
      expect(await vmNames('h1')).toEqual([]);
      // and a start within the rules goes through, every field read with its type
      const kv = new Uint8Array(readFileSync(new URL('../guests/kv.wasm', import.meta.url)));
      expect(await client.start('viaclient', kv, { args: ['a'], env: { A: 'b' }, stdin: new Uint8Array([1]), memoryMiB: 64, cpuPercent: 50 })).toMatchObject({ t: 'started', vm: 'viaclient', primary: 'h1' });
      expect((await api('h1', 'GET', '/v1/vms/viaclient')).json).toMatchObject({ name: 'viaclient', memoryMiB: 64, cpuPercent: 50 });
      expect((await api('h1', 'DELETE', '/v1/vms/viaclient')).status).toBe(204);
    } finally {
      client.close();
    }
  });

  it('the client port checks a send, a stop and a failover by the same rules as REST', async () => {
    const client = await c.client('h1');
    try {
      const refusal = (m: Record<string, unknown>): Promise<string | undefined> =>
        client.request(m as never, 60_000).then(
          () => undefined,
          (e: Error & { code?: string }) => e.code,
        );
      // a stop or failover of a VM named by a number is refused, never read as the name "5"
      expect(await refusal({ t: 'stop', vm: 5 })).toBe('FTVM_ERR_BAD_REQUEST');
      expect(await refusal({ t: 'failover', vm: 'bad name!' })).toBe('FTVM_ERR_BAD_REQUEST');
      expect(await refusal({ t: 'send', vm: 'any', data: new Uint8Array(MAX_MESSAGE_BYTES + 1) })).toBe('FTVM_ERR_TOO_LARGE');
      expect(await refusal({ t: 'send', vm: 'any', data: 7 })).toBe('FTVM_ERR_BAD_REQUEST');
      expect(await refusal({ t: 'send', vm: 'any', data: 'x', eof: 'yes' })).toBe('FTVM_ERR_BAD_REQUEST');
      // a message to a VM no host knows is refused as such, never dropped in silence
      expect(await refusal({ t: 'send', vm: 'nosuch', data: 'x' })).toBe('FTVM_ERR_NOT_FOUND');
    } finally {
      client.close();
    }
  });

  it('a message to a VM that ended is refused with FTVM_ERR_VM_ENDED, on every host and through the client port', async () => {
    expect((await api('h1', 'POST', '/v1/vms', { name: 'done', sample: 'fib', args: ['5'] })).status).toBe(201);
    await eventually('the guest ended, on both hosts\' view', async () => {
      const views = await Promise.all(['h1', 'h2'].map(async (h) => (await api(h, 'GET', '/v1/vms/done')).json));
      return views.every((v) => v.state === 'ended') ? true : undefined;
    }, 60_000);
    for (const h of ['h1', 'h2']) {
      const conn = (await api(h, 'POST', '/v1/connections')).json.conn as number;
      const r = await api(h, 'POST', '/v1/vms/done/messages', { conn, data: 'x' });
      expect([h, r.status, r.json?.error?.code]).toEqual([h, 409, 'FTVM_ERR_VM_ENDED']);
    }
    const client = await c.client('h2');
    try {
      const code = await client.request({ t: 'send', vm: 'done', data: 'x' } as never, 60_000).then(
        () => undefined,
        (e: Error & { code?: string }) => e.code,
      );
      expect(code).toBe('FTVM_ERR_VM_ENDED');
    } finally {
      client.close();
    }
    expect((await api('h1', 'DELETE', '/v1/vms/done')).status).toBe(204);
  });

  it('the largest start it accepts runs, with its backup on the other host', async () => {
    // VM_ENV_MAX variables filling what VM_ARGV_ENV_BYTES_MAX leaves after the name and argument
    const per = Math.floor((VM_ARGV_ENV_BYTES_MAX - 64) / VM_ENV_MAX);
    const env: Record<string, string> = {};
    for (let i = 0; i < VM_ENV_MAX; i++) env[`V${i}`] = 'x'.repeat(per - `V${i}`.length - 2);
    const r = await api('h1', 'POST', '/v1/vms', { name: 'wide', sample: 'kv', env, args: ['a'] });
    expect([r.status, r.json?.error]).toEqual([201, undefined]);
    await eventually('the VM runs with a backup', async () => {
      const v = (await api('h2', 'GET', '/v1/vms/wide')).json;
      return v.state === 'running' && v.backup === 'h2' && v.replica?.role === 'backup' ? v : undefined;
    }, 60_000);
    expect(c.host('h1').log.join('\n')).not.toMatch(/msgpackr|RangeError|Uncaught/);
  });
});
