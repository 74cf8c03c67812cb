// Proves that the REST API of a real 2-host cluster answers every request made
// from its own OpenAPI document (GET /v1/openapi.json), valid or mutated
// (wrong types, junk values, missing and extra fields, huge strings, bodies
// that are not JSON, wrong media types, a wrong token), with a 2xx or a JSON
// error whose code is in the document's enum: never a 500, never a crash of
// either host, never a hang; and that a VM started before the fuzzing goes on
// answering its client with the same generation (no failover) afterwards.
// Seeded: a failure names its seed and the shrunk request; a longer hunt:
// FTVM_FUZZ_RUNS=2000 FTVM_FUZZ_SEED=$RANDOM npx vitest run test/fuzz.rest.test.ts

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiOf, askVm, Cluster, eventually } from './cluster.ts';

const RUNS = Number(process.env.FTVM_FUZZ_RUNS ?? 200);
const SEED = Number(process.env.FTVM_FUZZ_SEED ?? 1414);
/** The VM that must keep answering; no mutating request names it. */
const KEEPER = 'keeper';
/** Names the fuzzing may start VMs under (each is deleted again after the run that made it). */
const FUZZ_NAMES = ['fz1', 'fz2'];
/** How long one request may take before the host counts as hung, ms. */
const ANSWER_MS = 20_000;

const cluster = new Cluster(['--fail-ms', '2000', '--heartbeat-ms', '50']);
const api = apiOf(cluster);
const HOSTS = ['h1', 'h2'];

type Schema = Record<string, any>;
interface Param {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: Schema;
}
interface Op {
  method: string;
  path: string;
  params: Param[];
  body: Schema | null;
  /** the media type the body is sent as (application/json, or the upload's) */
  media: string | null;
  responses: string[];
}

/** Values that are wrong for most fields: other types, edge numbers, hostile strings and keys. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, '', ' ', '0', '-1', '1e400', 'NaN', 'null', '__proto__', 'a=b', 'a\u0000b', '../..', '%00', '\ud800'),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.jsonValue({ maxDepth: 2 }),
  fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'toString', 'name', 'x'), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
  // large: the kinds of body the issue reports (megabytes of env or arguments)
  fc.constantFrom('x'.repeat(70_000), 'y'.repeat(2 * 1024 * 1024)),
);

/** A value valid for `schema` (the subset of JSON Schema the API uses); with `mutate`, any node may be junk instead. */
function fromSchema(schema: Schema, mutate: boolean, key = ''): fc.Arbitrary<unknown> {
  const valid = validFor(schema, mutate, key);
  return mutate ? fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: junk, weight: 1 }) : valid;
}

function validFor(s: Schema, mutate: boolean, key: string): fc.Arbitrary<unknown> {
  if (s.enum) return fc.constantFrom(...(s.enum as unknown[]));
  if (Array.isArray(s.type)) return fc.oneof(...(s.type as string[]).map((t) => validFor({ ...s, type: t }, mutate, key)));
  switch (s.type) {
    case 'string':
      if (key === 'name') return fc.oneof(fc.constantFrom(...FUZZ_NAMES), fc.stringMatching(new RegExp(s.pattern)));
      if (key === 'sample') return fc.oneof(fc.constantFrom('fib', 'trap', 'entropy', 'kv', 'nope'), fc.string({ maxLength: 10 }));
      if (s.pattern) return fc.stringMatching(new RegExp(s.pattern));
      if (s.format === 'byte' || s.contentEncoding === 'base64') return fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64'));
      return fc.string({ maxLength: 40 });
    case 'integer': {
      // a wait is kept short: a valid wait of a minute is not a hang
      if (key === 'waitMs') return fc.integer({ min: 0, max: 50 });
      return fc.integer({ min: s.minimum ?? -(2 ** 31), max: s.maximum ?? 2 ** 31 });
    }
    case 'number':
      return fc.double({ min: s.minimum ?? -1e9, max: s.maximum ?? 1e9, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'array': {
      const items = fromSchema(s.items ?? {}, mutate, '');
      const maxLength = Math.min(s.maxItems ?? 4, 4);
      return s.uniqueItems ? fc.uniqueArray(items, { maxLength, selector: (v) => JSON.stringify(v) }) : fc.array(items, { maxLength });
    }
    case 'object': {
      const props = Object.entries((s.properties ?? {}) as Record<string, Schema>);
      const required = new Set<string>(s.required ?? []);
      let rec: fc.Arbitrary<Record<string, unknown>> = fc.record(Object.fromEntries(props.map(([k, v]) => [k, fromSchema(v, mutate, k)])), {
        requiredKeys: props.map(([k]) => k).filter((k) => required.has(k)),
      });
      if (s.additionalProperties && typeof s.additionalProperties === 'object') {
        rec = fc.dictionary(fc.string({ maxLength: 12 }), fromSchema(s.additionalProperties, mutate, ''), { maxKeys: 4 });
      }
      if (!mutate) return rec;
      // mutations of the object itself: a required key dropped, a key added
      return fc.tuple(rec, fc.constantFrom('keep', 'keep', 'keep', 'drop', 'extra'), fc.constantFrom(...(required.size ? [...required] : ['x'])), junk).map(([o, m, k, j]) => {
        const out: Record<string, unknown> = { ...o };
        if (m === 'drop') delete out[k];
        if (m === 'extra') out[`extra${k}`] = j;
        return out;
      });
    }
    default:
      return fc.jsonValue({ maxDepth: 1 });
  }
}

/** The operations of the OpenAPI document. */
function operations(doc: any): Op[] {
  const out: Op[] = [];
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    for (const [method, op] of Object.entries(ops)) {
      const content = op.requestBody?.content as Record<string, { schema?: Schema }> | undefined;
      const media = content ? Object.keys(content)[0]! : method === 'put' ? 'application/wasm' : null;
      out.push({ method: method.toUpperCase(), path, params: op.parameters ?? [], body: content ? (content[media!]!.schema ?? {}) : null, media, responses: Object.keys(op.responses ?? {}) });
    }
  }
  return out;
}

/** A request: which host, which operation, its path, query, body, and how it is sent. */
interface Req {
  host: string;
  op: Op;
  path: string;
  body: string | Uint8Array | undefined;
  contentType: string | undefined;
  token: 'right' | 'wrong' | 'none';
}

function requestOf(op: Op): fc.Arbitrary<Req> {
  const mutating = op.method !== 'GET';
  const param = (p: Param): fc.Arbitrary<string | undefined> => {
    let valid: fc.Arbitrary<unknown> = fromSchema(p.schema, false, p.name);
    if (p.name === 'name') valid = fc.oneof(fc.constantFrom(...FUZZ_NAMES, ...(mutating ? [] : [KEEPER])), fc.stringMatching(new RegExp(p.schema.pattern)));
    const value = fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: junk, weight: 1 }).map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
    // never the keeper's name through junk either, for a request that changes something
    const safe = value.filter((v) => !mutating || v !== KEEPER);
    return p.required ? safe : fc.option(safe, { nil: undefined });
  };
  const params = fc.tuple(...op.params.map(param));
  const arbs: fc.WeightedArbitrary<unknown>[] = op.body ? [{ arbitrary: fromSchema(op.body, false), weight: 2 }, { arbitrary: fromSchema(op.body, true), weight: 5 }, { arbitrary: junk, weight: 1 }] : [];
  if (op.method === 'POST' && op.path === '/v1/vms') {
    // bodies that start a VM unless another field is wrong: one of the fuzzing's names and a real sample,
    // with every other field valid or mutated (the issue's megabytes of env, NUL in an argument, ...)
    const plausible = fc.tuple(fromSchema(op.body!, true) as fc.Arbitrary<Record<string, unknown>>, fc.constantFrom(...FUZZ_NAMES), fc.constantFrom('fib', 'trap', 'entropy', 'kv')).map(([b, name, sample]) => {
      const out: Record<string, unknown> = typeof b === 'object' && b !== null && !Array.isArray(b) ? { ...b } : {};
      delete out.module;
      delete out.moduleHash;
      return { ...out, name, sample };
    });
    arbs.push({ arbitrary: plausible, weight: 8 });
  }
  const jsonBody = op.body ? fc.oneof(...arbs) : fc.constant(undefined);
  const body: fc.Arbitrary<{ body: string | Uint8Array | undefined; contentType: string | undefined }> =
    op.media === 'application/json'
      ? fc.oneof(
          { arbitrary: jsonBody.map((b) => ({ body: JSON.stringify(b), contentType: 'application/json' })), weight: 8 },
          { arbitrary: fc.string({ unit: 'binary', maxLength: 60 }).map((b) => ({ body: b, contentType: 'application/json' })), weight: 1 },
          { arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/wasm').map((t) => ({ body: 'name=x', contentType: t })), weight: 1 },
        )
      : op.media
        ? fc.oneof(
            fc.uint8Array({ maxLength: 200 }).map((b) => ({ body: b, contentType: op.media! })),
            fc.constant({ body: Buffer.from('0061736d01000000', 'hex') as Uint8Array, contentType: op.media }),
            fc.constantFrom('application/json', 'text/plain').map((t) => ({ body: '{}', contentType: t })),
          )
        : fc.constant({ body: undefined, contentType: undefined });
  return fc.record({
    host: fc.constantFrom(...HOSTS),
    values: params,
    body,
    token: fc.constantFrom('right', 'right', 'right', 'right', 'right', 'right', 'wrong', 'none'),
  }).map(({ host, values, body: b, token }) => {
    let path = op.path;
    const query: string[] = [];
    op.params.forEach((p, i) => {
      const v = values[i];
      if (p.in === 'path') path = path.replace(`{${p.name}}`, enc(v ?? ''));
      else if (p.in === 'query' && v !== undefined) query.push(`${enc(p.name)}=${enc(v)}`);
    });
    const req: Req = { host, op, path: query.length ? `${path}?${query.join('&')}` : path, token, ...b };
    // a failure shows the request, not the whole operation (and not megabytes of it)
    return Object.assign(req, { [fc.toStringMethod]: () => describeReq(req) });
  });
}

/**
 * The requests the issue reports, tried first in every run: 100,000 env vars
 * (a 1.5 MB body), an env value of 2 MiB, an env name with '=', an argument
 * with NUL, a name of the wrong type ({"name": 5} made a VM "5"); and a URL
 * of 2 MiB.
 */
function issueExamples(ops: Op[]): [Req][] {
  const op = ops.find((o) => o.method === 'POST' && o.path === '/v1/vms')!;
  const bodies: unknown[] = [
    { name: 'fz1', sample: 'kv', env: Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`V${i}`, 'x'])) },
    { name: 'fz1', sample: 'kv', env: { BIG: 'v'.repeat(2 * 1024 * 1024) } },
    { name: 'fz1', sample: 'kv', env: { 'A=B': '1' } },
    { name: 'fz1', sample: 'kv', args: ['a\u0000b'] },
    { name: 5, sample: 'kv' },
  ];
  const reqs: Req[] = bodies.map((b) => ({ host: 'h1', op, path: '/v1/vms', body: JSON.stringify(b), contentType: 'application/json', token: 'right' }));
  // found by a longer hunt: a 2 MiB URL was answered, then reset before the client could read the answer
  const outputs = ops.find((o) => o.method === 'GET' && o.path === '/v1/vms/{name}/outputs')!;
  reqs.push({ host: 'h1', op: outputs, path: `/v1/vms/fz1/outputs?conn=${'y'.repeat(2 * 1024 * 1024)}`, body: undefined, contentType: undefined, token: 'right' });
  return reqs.map((req) => [Object.assign(req, { [fc.toStringMethod]: () => describeReq(req) })]);
}

/** `v` percent-encoded for a URL (a lone surrogate, which a URL cannot carry, as U+FFFD). */
function enc(v: string): string {
  return encodeURIComponent(Buffer.from(v, 'utf8').toString('utf8'));
}

/** `r` in one line, long parts cut. */
function describeReq(r: Req): string {
  const cut = (x: string) => (x.length > 160 ? `${x.slice(0, 160)}... (${x.length} chars)` : x);
  const body = typeof r.body === 'string' ? cut(r.body) : r.body ? `${r.body.length} bytes` : 'no body';
  return `${r.op.method} ${cut(r.path)} on ${r.host}, token ${r.token}, ${r.contentType ?? 'no type'}: ${body}`;
}

/** Sends `r`; the status and parsed JSON (or the text, when it is not JSON). A stream's body is not read. */
async function send(r: Req): Promise<{ status: number; json: any; text: string }> {
  const headers: Record<string, string> = {};
  if (r.token === 'right') headers.authorization = `Bearer ${cluster.token}`;
  if (r.token === 'wrong') headers.authorization = `Bearer ${cluster.token.slice(1)}x`;
  if (r.contentType) headers['content-type'] = r.contentType;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ANSWER_MS);
  try {
    const res = await fetch(`${cluster.host(r.host).api}${r.path}`, { method: r.op.method, headers, body: r.body as BodyInit | undefined, signal: ctl.signal });
    if (res.status === 200 && (res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      ctl.abort();
      return { status: res.status, json: null, text: '' };
    }
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: checked below where it matters
    }
    return { status: res.status, json, text };
  } catch (e) {
    throw new Error(`${describeReq(r)}: no answer within ${ANSWER_MS} ms (${(e as Error).message}${(e as Error).cause ? `: ${String(((e as Error).cause as Error).message ?? (e as Error).cause)}` : ''})`);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends one kv request to the keeper through `host` and waits (bounded) for its answer. */
const ask = (host: string, conn: number, line: string): Promise<string> => askVm(api, host, KEEPER, conn, line);

beforeAll(async () => {
  for (const id of HOSTS) await cluster.add(id);
  await cluster.linked();
}, 120_000);
afterAll(() => cluster.stop());

describe('fuzzed REST API', () => {
  it('every request made from the OpenAPI document gets a 2xx or a JSON error with a known code; the hosts and a VM started before go on', async () => {
    const doc = (await api('h1', 'GET', '/v1/openapi.json')).json;
    const codes = new Set<string>(doc.paths['/v1/vms'].post.responses['400'].content['application/json'].schema.properties.error.properties.code.enum);
    expect(codes.has('FTVM_ERR_BAD_REQUEST')).toBe(true);
    const ops = operations(doc);
    expect(ops.length).toBeGreaterThan(10);

    expect((await api('h1', 'POST', '/v1/vms', { name: KEEPER, sample: 'kv' })).status).toBe(201);
    const { conn } = (await api('h2', 'POST', '/v1/connections')).json as { conn: number };
    expect(await ask('h2', conn, 'a SET k 1')).toBe('a OK 1');
    const before = (await api('h1', 'GET', `/v1/vms/${KEEPER}`)).json;

    const faults: string[] = [];
    /** VMs started under a name the fuzzing did not mean (a coerced one): deleted after the run */
    const created = new Set<string>();
    /** answers seen, by "METHOD path status": the fuzzing reached past validation (some 2xx of each kind) */
    const seen = new Map<string, number>();
    await fc.assert(
      // starting VMs is where most can go wrong: it gets a larger share of the runs
      fc.asyncProperty(fc.oneof({ arbitrary: fc.constantFrom(...ops), weight: 3 }, { arbitrary: fc.constant(ops.find((o) => o.method === 'POST' && o.path === '/v1/vms')!), weight: 1 }).chain(requestOf), async (r) => {
        try {
          const a = await send(r);
          const what = `${describeReq(r)} -> ${a.status} ${a.text.slice(0, 300)}`;
          const kind = `${r.op.method} ${r.op.path} ${a.status}${a.status >= 400 ? ` ${a.json?.error?.code}` : ''}`;
          seen.set(kind, (seen.get(kind) ?? 0) + 1);
          if (a.status >= 200 && a.status < 300) {
            expect(r.op.responses, `an undocumented status: ${what}`).toContain(String(a.status));
          } else {
            expect(a.status, what).toBeGreaterThanOrEqual(400);
            expect(a.status, what).not.toBe(500);
            expect(a.status, what).toBeLessThan(600);
            expect(codes.has(a.json?.error?.code), `an error without a known code: ${what}`).toBe(true);
            expect(typeof a.json.error.message, what).toBe('string');
          }
          for (const id of HOSTS) expect(cluster.host(id).proc.exitCode, `host ${id} ended after ${what}`).toBeNull();
          if (a.status === 201 && r.op.path === '/v1/vms') {
            const name = a.json.name as string;
            if (!FUZZ_NAMES.includes(name)) created.add(name);
            // what was asked is what was started: no field coerced from another type
            const asked = JSON.parse(r.body as string) as { name: unknown };
            expect(name, `${what}: the name was coerced`).toBe(asked.name);
            // a VM the API said it started is one that runs with a backup (or already ended), not one stuck alone
            const settled = await eventually(`${name} with a backup or ended`, async () => {
              const v = (await api('h1', 'GET', `/v1/vms/${name}`)).json;
              return v?.state === 'running' || v?.state === 'ended' ? v : undefined;
            }, 15_000).catch((e: Error) => e);
            expect(settled instanceof Error ? settled.message : 'ok', `${what}, then`).toBe('ok');
          }
        } finally {
          // VMs the run started go again, so the cluster stays small
          for (const name of [...FUZZ_NAMES, ...created]) await api('h1', 'DELETE', `/v1/vms/${name}`).catch(() => undefined);
          created.clear();
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true, examples: issueExamples(ops) },
    ).catch((e: Error) => faults.push(`${e.message.split('\n').slice(0, 3).join(' ')}: ${String((e.cause as Error | undefined)?.message ?? '').slice(0, 1500)}`));
    expect(faults).toEqual([]);
    console.log([...seen].sort().map(([k, n]) => `${String(n).padStart(4)} ${k}`).join('\n'));
    expect([...seen.keys()].filter((k) => k.startsWith('POST /v1/vms 201')).length, 'some VM was started').toBeGreaterThan(0);

    // the keeper answers from the same state, on the same generation: nothing failed over
    expect(await ask('h2', conn, 'b GET k')).toBe('b VALUE 1');
    const after = (await api('h1', 'GET', `/v1/vms/${KEEPER}`)).json;
    expect(after).toMatchObject({ name: KEEPER, gen: before.gen, primary: before.primary, backup: before.backup, state: 'running' });
    for (const id of HOSTS) expect((await fetch(`${cluster.host(id).api}/healthz`)).status).toBe(200);
  });
});
