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

let dir: string;
let host: FtHost;
let app: FastifyInstance;
let token: string;
const auth = () => ({ authorization: `Bearer ${token}` });
const KV = readFileSync(new URL('../guests/kv.wasm', import.meta.url));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ftvm-api-'));
  host = new FtHost({ id: 'a1', secret: 's', arbiter: new FileArbiter(dir) });
  await host.start();
  ({ app, token } = await buildApi(host));
});
afterAll(async () => {
  await app.close();
  await host.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the REST API', () => {
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
    expect(await code(post({ name: 'x' }))).toEqual([400, 'FTVM_ERR_BAD_REQUEST', 'give exactly one of "sample" and "module"']);
    expect((await code(post({ name: 'bad name!', sample: 'kv' })))[0]).toBe(400);
    expect((await code(post({ name: 'x', sample: 'kv', extra: 1 })))[1]).toBe('FTVM_ERR_BAD_REQUEST');
    expect((await code(post({ name: 'x', sample: 'nope' })))[2]).toBe('no sample guest named nope');
    const notWasm = await code(post({ name: 'x', module: Buffer.from('#!/bin/sh\n').toString('base64') }));
    expect(notWasm.slice(0, 2)).toEqual([400, 'FTVM_ERR_INVALID_MODULE']);
    const imports = Buffer.from(watText('(module (import "xyz" "abc" (func)) (memory (export "memory") 1) (func (export "_start")))'));
    const unsupported = await code(post({ name: 'x', module: imports.toString('base64') }));
    expect(unsupported.slice(0, 2)).toEqual([400, 'FTVM_ERR_UNSUPPORTED_IMPORT']);
    expect(unsupported[2]).toMatch(/xyz\.abc/);
    expect(await code(post({ name: 'kv1', sample: 'kv' }))).toEqual([409, 'FTVM_ERR_EXISTS', 'VM kv1 exists already']);
    const huge = await code(post({ name: 'x', module: Buffer.alloc(MODULE_BYTES_MAX + 1024).toString('base64') }));
    expect(huge[0]).toBe(413);
    expect(huge[1]).toBe('FTVM_ERR_TOO_LARGE');
    expect(await code(app.inject({ url: '/v1/vms/ghost', headers: auth() }))).toEqual([404, 'FTVM_ERR_NOT_FOUND', 'no VM named ghost']);
    expect((await code(app.inject({ url: '/v1/nothing', headers: auth() })))[0]).toBe(404);
    // a failover needs a backup: this host runs kv1 alone
    expect((await code(app.inject({ method: 'POST', url: '/v1/vms/kv1/failover', headers: auth() })))[1]).toBe('FTVM_ERR_NOT_PRIMARY');
    expect((await code(app.inject({ method: 'POST', url: '/v1/vms/ghost/failover', headers: auth() })))[0]).toBe(404);
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

  it('hosts, metrics in Prometheus text, the OpenAPI document, and DELETE', async () => {
    expect((await app.inject({ url: '/v1/hosts', headers: auth() })).json()).toEqual({ self: 'a1', hosts: [{ id: 'a1', alive: true }] });
    const m = await app.inject({ url: '/metrics', headers: auth() });
    expect(m.headers['content-type']).toMatch(/text\/plain/);
    expect(m.body).toMatch(/ftvm_vm_generation\{vm="kv1",role="primary"\} 1/);
    const doc = (await app.inject({ url: '/v1/openapi.json', headers: auth() })).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/vms', '/v1/vms/{name}', '/v1/vms/{name}/failover', '/v1/vms/{name}/messages', '/v1/vms/{name}/outputs', '/v1/hosts']));
    expect(doc.paths['/v1/vms'].post.responses['409']).toBeDefined();
    expect((await app.inject({ method: 'DELETE', url: '/v1/vms/kv2', headers: auth() })).statusCode).toBe(204);
    expect((await app.inject({ url: '/v1/vms/kv2', headers: auth() })).statusCode).toBe(404);
  });
});
