// The REST API of a host, every route through app.inject() against a real
// in-process host (file arbiter on a temporary directory), for each status it
// can return.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { FileArbiter } from '../host/cluster/arbiter.ts';
import { FtHost } from '../host/cluster/host.ts';
import { buildApi, MODULE_BYTES_MAX } from '../host/api/server.ts';
import { eventually } from './cluster.ts';
import { watText } from './helpers.ts';
import { runGuest } from '../host/runtime/guest.ts';
import { DEFAULT_DEPTH_LIMIT } from '../host/meter/abi.ts';

let dir: string;
let host: FtHost;
let app: FastifyInstance;
let token: string;
const hostLog: string[] = [];
const auth = () => ({ authorization: `Bearer ${token}` });
const KV = readFileSync(new URL('../guests/kv.wasm', import.meta.url));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ftvm-api-'));
  host = new FtHost({ id: 'a1', secret: 's', arbiter: new FileArbiter(join(dir, 'arbiter')), dataDir: join(dir, 'data'), log: (l) => hostLog.push(l) });
  await host.start();
  ({ app, token } = await buildApi(host));
});
/** an event stream left open: the server's close must end it */
let openStream: ReadableStreamDefaultReader<string> | null = null;
afterAll(async () => {
  await app.close();
  if (openStream) {
    // read to its end: it ends because the server closed it
    for (;;) if ((await openStream.read()).done) break;
  }
  await host.close();
  rmSync(dir, { recursive: true, force: true });
});

// Generous: a first start meters its module on a worker thread, on a machine that may be busy.
describe('the REST API', { timeout: 120_000 }, () => {
  it('/healthz needs no token; everything else answers 401 without the right one', async () => {
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ ok: true, host: 'a1' });
    for (const url of ['/v1/vms', '/v1/hosts', '/metrics', '/v1/openapi.json']) {
      const r = await app.inject({ url });
      expect(r.statusCode).toBe(401);
      expect(r.json().error.code).toBe('FTVM_ERR_UNAUTHORIZED');
      expect((await app.inject({ url, headers: { authorization: 'Bearer wrong' } })).statusCode).toBe(401);
    }
  });

  it('starts a VM from a sample and from an uploaded module; lists and shows it', async () => {
    const a = await app.inject({ method: 'POST', url: '/v1/vms', headers: auth(), payload: { name: 'kv1', sample: 'kv' } });
    expect(a.statusCode).toBe(201);
    expect(a.json()).toMatchObject({ name: 'kv1', gen: 1, primary: 'a1', backup: null, replica: { role: 'primary', alone: true } });
    const b = await app.inject({ method: 'POST', url: '/v1/vms', headers: auth(), payload: { name: 'kv2', module: KV.toString('base64') } });
    expect(b.statusCode).toBe(201);
    const list = await app.inject({ url: '/v1/vms', headers: auth() });
    expect(list.json().map((v: { name: string }) => v.name)).toEqual(['kv1', 'kv2']);
    expect((await app.inject({ url: '/v1/vms/kv2', headers: auth() })).json()).toMatchObject({ name: 'kv2', primary: 'a1' });
  });

  it('refuses bad requests with clear codes: 400, 404, 409, 413', async () => {
    const post = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/vms', headers: auth(), payload: payload as object });
    const code = async (p: Promise<{ statusCode: number; json(): { error: { code: string; message: string } } }>) => {
      const r = await p;
      return [r.statusCode, r.json().error.code, r.json().error.message] as const;
    };
    expect(await code(post({ name: 'x' }))).toEqual([400, 'FTVM_ERR_BAD_REQUEST', 'give exactly one of "sample", "module" and "moduleHash"']);
    expect((await code(post({ name: 'bad name!', sample: 'kv' })))[0]).toBe(400);
    expect((await code(post({ name: 'x', sample: 'kv', extra: 1 })))[1]).toBe('FTVM_ERR_BAD_REQUEST');
    expect((await code(post({ name: 'x', sample: 'nope' })))[2]).toBe('no sample guest named nope');
    const notWasm = await code(post({ name: 'x', module: Buffer.from('#!/bin/sh\n').toString('base64') }));
    expect(notWasm.slice(0, 2)).toEqual([400, 'FTVM_ERR_INVALID_MODULE']);
    const imports = Buffer.from(watText('(module (import "xyz" "abc" (func)) (memory (export "memory") 1) (func (export "_start")))'));
    const unsupported = await code(post({ name: 'x', module: imports.toString('base64') }));
    expect(unsupported.slice(0, 2)).toEqual([400, 'FTVM_ERR_UNSUPPORTED_IMPORT']);
    expect(unsupported[2]).toMatch(/xyz\.abc/);
    // the entry ftvm starts, checked before any VM is placed: a reactor without its interrupt handler, a module without an entry or without its memory
    for (const [wat, why] of [
      ['(module (memory (export "memory") 1) (func (export "_initialize")) (func (export "add")))', /ftvm_interrupt/],
      ['(module (memory (export "memory") 1) (func (export "main")))', /_start/],
      ['(module (memory 1) (func (export "_start")))', /memory/],
    ] as const) {
      const r = await code(post({ name: 'noentry', module: Buffer.from(watText(wat)).toString('base64') }));
      expect(r.slice(0, 2)).toEqual([400, 'FTVM_ERR_NO_ENTRY']);
      expect(r[2]).toMatch(why);
    }
    expect((await app.inject({ url: '/v1/vms/noentry', headers: auth() })).statusCode).toBe(404);
    expect(await code(post({ name: 'kv1', sample: 'kv' }))).toEqual([409, 'FTVM_ERR_EXISTS', 'VM kv1 exists already']);
    const huge = await code(post({ name: 'x', module: Buffer.alloc(MODULE_BYTES_MAX + 1024).toString('base64') }));
    expect(huge[0]).toBe(413);
    expect(huge[1]).toBe('FTVM_ERR_TOO_LARGE');
    expect(await code(app.inject({ url: '/v1/vms/ghost', headers: auth() }))).toEqual([404, 'FTVM_ERR_NOT_FOUND', 'no VM named ghost']);
    expect((await code(app.inject({ url: '/v1/nothing', headers: auth() })))[0]).toBe(404);
    // a failover needs a backup, and a backup restart needs a backup that is not being made: this host runs kv1 alone
    expect(await code(app.inject({ method: 'POST', url: '/v1/vms/kv1/failover', headers: auth() }))).toEqual([409, 'FTVM_ERR_CONFLICT', 'kv1 has no backup to take over yet']);
    expect(await code(app.inject({ method: 'POST', url: '/v1/vms/kv1/backup/restart', headers: auth() }))).toEqual([409, 'FTVM_ERR_CONFLICT', 'a new backup of kv1 is being made already']);
    expect((await code(app.inject({ method: 'POST', url: '/v1/vms/ghost/failover', headers: auth() })))[0]).toBe(404);
    expect((await code(app.inject({ method: 'POST', url: '/v1/vms/ghost/backup/restart', headers: auth() })))[0]).toBe(404);
    // limits: out of range, or too small for the module
    expect((await code(post({ name: 'x', sample: 'kv', memoryMiB: 0 })))[0]).toBe(400);
    expect((await code(post({ name: 'x', sample: 'kv', cpuPercent: 101 })))[0]).toBe(400);
    expect((await code(post({ name: 'x', sample: 'kv', stdin: 'a', stdinBase64: 'YQ==' })))[2]).toBe('give at most one of "stdin" and "stdinBase64"');
    expect((await code(post({ name: 'x', sample: 'kv', stdinBase64: '!!' })))[2]).toBe('"stdinBase64" is not base64');
    const big = Buffer.from(watText('(module (memory (export "memory") 32) (func (export "_start")))'));
    const tooSmall = await code(post({ name: 'x', module: big.toString('base64'), memoryMiB: 1 }));
    expect(tooSmall.slice(0, 2)).toEqual([400, 'FTVM_ERR_MEMORY_LIMIT']);
    expect(tooSmall[2]).toMatch(/initial memory is 32 pages, above the limit of 16 pages/);
    expect((await code(app.inject({ url: '/v1/vms/x', headers: auth() })))[0]).toBe(404);
    expect((await code(app.inject({ method: 'DELETE', url: '/v1/vms/ghost', headers: auth() })))[0]).toBe(404);
  });

  it('sends messages and reads the outputs with their sequence numbers (long-poll)', async () => {
    const conn = (await app.inject({ method: 'POST', url: '/v1/connections', headers: auth() })).json().conn as number;
    const send = (data: string) => app.inject({ method: 'POST', url: '/v1/vms/kv1/messages', headers: auth(), payload: { conn, data } });
    const poll = app.inject({ url: `/v1/vms/kv1/outputs?conn=${conn}&waitMs=5000`, headers: auth() });
    expect((await send('1 SET k v')).statusCode).toBe(202);
    const first = (await poll).json() as { seq: number; data: string }[];
    expect(first.map((o) => o.data)).toEqual(['1 OK 1']);
    expect((await send('2 GET k')).statusCode).toBe(202);
    const second = await eventually('the second output', async () => {
      const r = (await app.inject({ url: `/v1/vms/kv1/outputs?conn=${conn}&after=${first[0]!.seq}`, headers: auth() })).json() as { seq: number; data: string }[];
      return r.length ? r : undefined;
    });
    expect(second.map((o) => o.data)).toEqual(['2 VALUE v']);
    expect(second[0]!.seq).toBeGreaterThan(first[0]!.seq);
    expect((await app.inject({ method: 'POST', url: '/v1/vms/kv1/messages', headers: auth(), payload: { conn, data: '' } })).statusCode).toBe(400);
    expect((await app.inject({ method: 'POST', url: '/v1/vms/ghost/messages', headers: auth(), payload: { conn, data: 'x' } })).statusCode).toBe(404);
    expect((await app.inject({ url: `/v1/vms/kv1/outputs?conn=12345`, headers: auth() })).statusCode).toBe(404);
    expect((await app.inject({ url: `/v1/vms/kv1/outputs`, headers: auth() })).statusCode).toBe(400);
  });

  it('takes the token under "Bearer" in any case; answers 415 to a body that is not JSON; takes an empty JSON body for none; refuses a message whose "base64" is not base64', async () => {
    // RFC 7235 section 2.1: the auth scheme is case-insensitive; the token is not
    for (const authorization of [`bearer ${token}`, `BEARER ${token}`, `bEaReR  ${token}`]) expect((await app.inject({ url: '/v1/vms', headers: { authorization } })).statusCode, authorization).toBe(200);
    for (const authorization of [`Basic ${token}`, `Bearer${token}`, 'bearer', `bearer ${token.toUpperCase()}x`, `bearer ${token} `]) {
      const r = await app.inject({ url: '/v1/vms', headers: { authorization } });
      expect([r.statusCode, r.json().error.code], authorization).toEqual([401, 'FTVM_ERR_UNAUTHORIZED']);
    }
    // a JSON route's body without its media type: 415 with the catalogue's code, naming the type to send
    for (const type of [undefined, 'text/plain', 'application/wasm', 'application/x-www-form-urlencoded']) {
      for (const url of ['/v1/vms', '/v1/vms/kv1/messages']) {
        const r = await app.inject({ method: 'POST', url, headers: { ...auth(), ...(type ? { 'content-type': type } : {}) }, payload: JSON.stringify({ name: 'x', sample: 'kv' }) });
        expect([r.statusCode, r.json().error.code], `${url} ${type}`).toEqual([415, 'FTVM_ERR_UNSUPPORTED_MEDIA_TYPE']);
        expect(r.json().error.message).toBe(`a request body here is JSON, sent with "Content-Type: application/json", not "${type ?? '(none)'}"`);
      }
    }
    // an empty body labelled JSON is no body: a route that takes none runs (here: an unknown VM), one that needs one says so
    for (const [method, url] of [['POST', '/v1/vms/ghost/failover'], ['DELETE', '/v1/vms/ghost'], ['POST', '/v1/vms/ghost/backup/restart']] as const) {
      const r = await app.inject({ method, url, headers: { ...auth(), 'content-type': 'application/json' }, payload: '' });
      expect([r.statusCode, r.json().error.code], `${method} ${url}`).toEqual([404, 'FTVM_ERR_NOT_FOUND']);
    }
    // and one that takes no body refuses one with anything in it
    for (const [method, url] of [['POST', '/v1/vms/kv1/failover'], ['POST', '/v1/connections'], ['DELETE', '/v1/vms/ghost']] as const) {
      const r = await app.inject({ method, url, headers: auth(), payload: { x: 1 } });
      expect([r.statusCode, r.json().error.code, r.json().error.message], `${method} ${url}`).toEqual([400, 'FTVM_ERR_BAD_REQUEST', `${method} ${url === '/v1/vms/kv1/failover' ? '/v1/vms/:name/failover' : url === '/v1/vms/ghost' ? '/v1/vms/:name' : url} takes no body`]);
    }
    expect((await app.inject({ method: 'POST', url: '/v1/connections', headers: auth(), payload: {} })).statusCode).toBe(201);
    const empty = await app.inject({ method: 'POST', url: '/v1/vms', headers: { ...auth(), 'content-type': 'application/json' }, payload: '' });
    expect([empty.statusCode, empty.json().error.code]).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    const broken = await app.inject({ method: 'POST', url: '/v1/vms', headers: { ...auth(), 'content-type': 'application/json' }, payload: '{"name":' });
    expect([broken.statusCode, broken.json().error.code]).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    // "base64" that is not base64 is refused, and nothing of it reaches the guest
    const conn = (await app.inject({ method: 'POST', url: '/v1/connections', headers: auth() })).json().conn as number;
    const send = (base64: string) => app.inject({ method: 'POST', url: '/v1/vms/kv1/messages', headers: auth(), payload: { conn, base64 } });
    for (const junk of [`${Buffer.from('1 SET j v').toString('base64')}*`, '!!', 'YQ==YQ==']) {
      const r = await send(junk);
      expect([r.statusCode, r.json().error.code, r.json().error.message], junk).toEqual([400, 'FTVM_ERR_BAD_REQUEST', '"base64" is not base64']);
    }
    expect((await send(Buffer.from('2 GET j').toString('base64'))).statusCode).toBe(202);
    const outs = (await app.inject({ url: `/v1/vms/kv1/outputs?conn=${conn}&waitMs=5000`, headers: auth() })).json() as { data: string }[];
    expect(outs.map((o) => o.data.split(' ')[0])).toEqual(['2']);
  });

  it('says at which count a guest ended: the count of the same run outside the service', async () => {
    // the loop runs 1000 times, then the guest exits 7, or traps at `unreachable`
    const guest = (end: string) =>
      watText(`(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (local $i i32)
          (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
          ${end}))`);
    for (const [name, bytes, end] of [
      ['ends7', guest('(call $exit (i32.const 7))'), { outcome: 'exit', status: 7 }],
      ['traps', guest('unreachable'), { outcome: 'trap', message: 'unreachable' }],
    ] as const) {
      const r = await app.inject({ method: 'POST', url: '/v1/vms', headers: auth(), payload: { name, module: Buffer.from(bytes).toString('base64'), memoryMiB: 1 } });
      expect(r.statusCode).toBe(201);
      const v = await eventually(`${name} ended`, async () => {
        const j = (await app.inject({ url: `/v1/vms/${name}`, headers: auth() })).json();
        return j.state === 'ended' && j.end ? j : undefined;
      });
      const alone = runGuest(bytes, { args: [name], meter: { depthLimit: DEFAULT_DEPTH_LIMIT, memoryLimitPages: 16, canonicalizeNaNs: false, cacheDir: null } });
      expect(alone.count).toBeGreaterThan(1000n);
      expect(v.end).toMatchObject({ ...end, count: String(alone.count) });
      // the stdout read says the same
      expect((await app.inject({ url: `/v1/vms/${name}/stdout`, headers: auth() })).json().end).toEqual(v.end);
    }
  });

  it('starts a VM with stdin and limits: the guest reads the stdin, the VM shows its limits', async () => {
    const r = await app.inject({ method: 'POST', url: '/v1/vms', headers: auth(), payload: { name: 'ent', sample: 'entropy', stdin: 'hello ftvm', memoryMiB: 8, cpuPercent: 50 } });
    expect(r.statusCode).toBe(201);
    expect(r.json()).toMatchObject({ name: 'ent', memoryMiB: 8, cpuPercent: 50 });
    // a command guest's stdout goes to the host's log once released
    await eventually('the guest printed', () => hostLog.find((l) => l.includes('ent fd 1: entropy: stdin 10 bytes')), 30_000);
    await eventually('the VM ended', async () => ((await app.inject({ url: '/v1/vms/ent', headers: auth() })).json().state === 'ended' ? true : undefined));
    // and to its ring, with its exit status (a host alone releases at once)
    expect((await app.inject({ url: '/v1/vms/ent', headers: auth() })).json()).toMatchObject({ end: { outcome: 'exit', status: 0 } });
    const out = (await app.inject({ url: '/v1/vms/ent/stdout?waitMs=100', headers: auth() })).json();
    expect(out).toMatchObject({ stream: 'stdout', from: 0, dropped: 0, end: { outcome: 'exit', status: 0 } });
    expect(out.text).toContain('entropy: stdin 10 bytes');
    expect(out.next).toBe(Buffer.from(out.base64, 'base64').length);
    expect((await app.inject({ url: `/v1/vms/ent/stdout?from=${out.next}&waitMs=5000`, headers: auth() })).json()).toMatchObject({ from: out.next, next: out.next, text: '' });
    const wait = await app.inject({ url: '/v1/vms/ent/stderr?waitMs=60001', headers: auth() });
    expect([wait.statusCode, wait.json().error.code]).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
  });

  it('streams outputs as Server-Sent Events, resuming after Last-Event-ID; closes API connections', async () => {
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const conn = (await app.inject({ method: 'POST', url: '/v1/connections', headers: auth() })).json().conn as number;
    const events = async (after: { header?: string; query?: number }, want: number) => {
      const ctl = new AbortController();
      const res = await fetch(`${base}/v1/vms/kv1/outputs/stream?conn=${conn}${after.query !== undefined ? `&after=${after.query}` : ''}`, {
        headers: { ...auth(), ...(after.header ? { 'last-event-id': after.header } : {}) },
        signal: ctl.signal,
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const got: { id: number; data: { seq: number; data: string } }[] = [];
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      const timer = setTimeout(() => ctl.abort(), 20_000);
      try {
        while (got.length < want) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const id = /^id: (\d+)$/m.exec(block);
            const data = /^data: (.*)$/m.exec(block);
            if (id && data && /^event: output$/m.test(block)) got.push({ id: Number(id[1]), data: JSON.parse(data[1]!) });
          }
        }
      } finally {
        clearTimeout(timer);
        ctl.abort();
      }
      return got.slice(0, want);
    };
    const first = events({}, 2);
    for (const m of ['s1 SET a 1', 's2 GET a', 's3 GET a']) {
      expect((await app.inject({ method: 'POST', url: '/v1/vms/kv1/messages', headers: auth(), payload: { conn, data: m } })).statusCode).toBe(202);
    }
    const two = await first;
    expect(two.map((e) => e.data.data)).toEqual(['s1 OK 2', 's2 VALUE 1']);
    expect(two[1]!.id).toBe(two[1]!.data.seq);
    // a reader that lost the stream resumes after the last id it saw, by header or query
    expect((await events({ header: String(two[0]!.id) }, 2)).map((e) => e.data.data)).toEqual(['s2 VALUE 1', 's3 VALUE 1']);
    expect((await events({ query: two[1]!.id }, 1)).map((e) => e.data.data)).toEqual(['s3 VALUE 1']);
    // a stream for a connection that does not exist, or a VM that does not
    expect((await fetch(`${base}/v1/vms/kv1/outputs/stream?conn=999`, { headers: auth() })).status).toBe(404);
    expect((await fetch(`${base}/v1/vms/ghost/outputs/stream?conn=${conn}`, { headers: auth() })).status).toBe(404);
    // closing the connection drops what was kept for it
    expect((await app.inject({ method: 'DELETE', url: `/v1/connections/${conn}`, headers: auth() })).statusCode).toBe(204);
    expect((await app.inject({ url: `/v1/vms/kv1/outputs?conn=${conn}`, headers: auth() })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: `/v1/connections/${conn}`, headers: auth() })).statusCode).toBe(404);
    // a stream still open when the server closes is ended by it
    const c2 = (await app.inject({ method: 'POST', url: '/v1/connections', headers: auth() })).json().conn as number;
    const open = await fetch(`${base}/v1/vms/kv1/outputs/stream?conn=${c2}`, { headers: auth() });
    expect(open.status).toBe(200);
    openStream = open.body!.pipeThrough(new TextDecoderStream()).getReader();
  });

  it('hosts, metrics in Prometheus text, the OpenAPI document, and DELETE', async () => {
    expect((await app.inject({ url: '/v1/hosts', headers: auth() })).json()).toEqual({ self: 'a1', hosts: [{ id: 'a1', alive: true }] });
    const m = await app.inject({ url: '/metrics', headers: auth() });
    expect(m.headers['content-type']).toMatch(/text\/plain/);
    expect(m.body).toMatch(/ftvm_vm_generation\{vm="kv1",role="primary"\} 1/);
    expect(m.body).toMatch(/^ftvm_failovers_total 0$/m);
    expect(m.body).toMatch(/^ftvm_outputs_held\{vm="kv1",role="primary"\} 0$/m);
    const doc = (await app.inject({ url: '/v1/openapi.json', headers: auth() })).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/vms', '/v1/vms/{name}', '/v1/vms/{name}/failover', '/v1/vms/{name}/messages', '/v1/vms/{name}/outputs', '/v1/vms/{name}/outputs/stream', '/v1/vms/{name}/backup/restart', '/v1/connections/{conn}', '/v1/hosts']));
    expect(doc.paths['/v1/vms'].post.responses['409']).toBeDefined();
    expect((await app.inject({ method: 'DELETE', url: '/v1/vms/kv2', headers: auth() })).statusCode).toBe(204);
    expect((await app.inject({ url: '/v1/vms/kv2', headers: auth() })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: '/v1/vms/kv2', headers: auth() })).statusCode).toBe(404);
    // the name is free again: the new VM starts after the generation that ended the old one
    const again = await app.inject({ method: 'POST', url: '/v1/vms', headers: auth(), payload: { name: 'kv2', sample: 'kv' } });
    expect(again.statusCode).toBe(201);
    expect(again.json()).toMatchObject({ name: 'kv2', gen: 3 });
    const conn = (await app.inject({ method: 'POST', url: '/v1/connections', headers: auth() })).json().conn as number;
    await app.inject({ method: 'POST', url: '/v1/vms/kv2/messages', headers: auth(), payload: { conn, data: 'n GET k' } });
    const fresh = (await app.inject({ url: `/v1/vms/kv2/outputs?conn=${conn}&waitMs=10000`, headers: auth() })).json() as { data: string }[];
    expect(fresh.map((o) => o.data)).toEqual(['n NOTFOUND']);
  });
});
