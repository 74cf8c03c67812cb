// The REST API of one host (fastify), under /v1. Schema-first: every route
// declares JSON Schemas for its params, body and responses; the OpenAPI
// document at GET /v1/openapi.json is generated from them. Every route but
// /healthz needs `Authorization: Bearer <token>`. Errors share one shape,
// { error: { code, message } }: every code of the error catalogue
// (host/errors.ts), answered with the catalogue's HTTP status. Request bodies
// are validated with exact types (no coercion: "name": 5 is no name), and
// every request that changes a VM becomes one checked action (action.ts).
//
// Modules: a client uploads a module as the raw body of `PUT /v1/modules`
// (application/wasm, streamed to disk while hashed, checked before it is kept:
// valid WebAssembly importing only what ftvm provides), and starts VMs of it
// by its SHA-256 (`POST /v1/vms {"moduleHash"}`). A VM starts from a sample
// or a small base64 module in the JSON body just as well.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Ajv } from 'ajv';
import swagger from '@fastify/swagger';
import { Registry, Gauge, collectDefaultMetrics } from 'prom-client';
import { OUTPUT_WAIT_MS_MAX, type FtHost } from '../cluster/host.ts';
import { PUBLISH_PORTS_MAX } from '../cluster/ingress.ts';
import { EVENTS_MAX } from '../ft/events.ts';
import { OUTPUT_RING_BYTES } from '../cluster/output-ring.ts';
import { HASH_RE, ModuleStoreError } from '../cluster/module-store.ts';
import { checkExports, checkImports, GuestLoadError } from '../runtime/instance.ts';
import { MAX_MESSAGE_BYTES } from '../runtime/nic.ts';
import { guestPath, loadManifest } from '../runtime/samples.ts';
import { ArbiterError, NAME_RE } from '../cluster/arbiter.ts';
import { registerUi } from './ui.ts';
import { checkMigrate, checkSend, checkStartBody, checkVmName, checkVmOp, messageBase64, VM_ARGS_MAX, VM_ARGV_ENV_BYTES_MAX, VM_ENV_MAX, VM_STDIN_BYTES_MAX, VM_STRING_BYTES_MAX } from './action.ts';
import { ERROR_CODES, httpStatusOf, isErrorCode, type FtvmErrorCode } from '../errors.ts';
import { INLINE_MODULE_BYTES_MAX as MODULE_BYTES_MAX, UPLOADS_MAX, REFUSED_DRAIN_MS } from '../limits.ts';
export { MODULE_BYTES_MAX, UPLOADS_MAX };

/** The codes the API answers with: every code of the error catalogue (host/errors.ts). */
export type ErrorCode = FtvmErrorCode;

/** A request the API refuses, with a catalogued code (answered with the catalogue's HTTP status). */
export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The media type of a module upload (the WebAssembly JS API's, section "Web API"). */
export const WASM_MEDIA_TYPE = 'application/wasm';

const errorSchema = {
  type: 'object',
  description: "an error: `code` is one of the error catalogue (host/errors.ts, the README's \"Errors\"), answered with the catalogue's HTTP status",
  required: ['error'],
  properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', enum: [...ERROR_CODES] }, message: { type: 'string' } } } },
} as const;
const vmSchema = {
  type: 'object',
  required: ['name', 'gen', 'state', 'primary', 'backup'],
  description: 'a VM as its primary\'s host last described it to this host (ageMs ago); -1 for numbers not yet known',
  properties: {
    name: { type: 'string' },
    gen: { type: 'integer', description: 'the generation: 1 at start, one more at every failover or backup restart' },
    state: { type: 'string', enum: ['running', 'alone', 'ended', 'failing-over', 'lost'], description: 'running: with a backup; alone: no backup yet; failing-over: the primary\'s host is silent, or the primary lost its backup and waits for the arbiter to go on alone (its outputs are held meanwhile); lost: both replicas are gone (their hosts died or restarted): DELETE it to use its name again' },
    primary: { type: 'string' },
    backup: { type: ['string', 'null'] },
    count: { type: 'string', description: "the primary's instruction count (a decimal integer)" },
    lagMs: { type: 'number', description: "the backup's execution lag in time" },
    lagCounts: { type: 'string' },
    logBytes: { type: 'integer', description: 'bytes of log sent to backups by this primary' },
    acked: { type: 'integer', description: 'the last log entry the backup acknowledged' },
    released: { type: 'integer', description: 'the sequence number of the last output released' },
    held: { type: 'integer', description: 'outputs held until the backup acknowledges their log' },
    memoryMiB: { type: 'number' },
    cpuPercent: { type: 'integer' },
    publish: { type: 'array', items: { type: 'integer' }, description: 'the TCP ports every live host serves the VM on' },
    endpoints: { type: 'array', items: { type: 'string' }, description: '"ADDR:PORT" where a TCP client reaches the VM: each published port at each live host\'s public address (this host first)' },
    ageMs: { type: 'integer' },
    end: {
      type: ['object', 'null'],
      description:
        'how the guest ended: {"outcome":"exit","status":N} (proc_exit\'s status; 0 when _start returned) or {"outcome":"trap","message":"..."}, ' +
        'with "count", the instruction count where it ended (a decimal integer, the same on every replica); ' +
        'null while it runs, and until its backup acknowledged the end (then all its output is released)',
      properties: {
        outcome: { type: 'string', enum: ['exit', 'trap', 'deadline', 'idle'] },
        status: { type: 'integer' },
        message: { type: 'string' },
        count: { type: 'string', description: 'the instruction count where the guest ended, a decimal integer ("-1": not known)' },
      },
    },
    stdoutBytes: { type: 'integer', description: 'bytes the guest wrote on stdout, released so far (GET /v1/vms/{name}/stdout)' },
    stderrBytes: { type: 'integer', description: 'bytes the guest wrote on stderr, released so far' },
    replica: {
      type: ['object', 'null'],
      description: "this host's replica of the VM, if it runs one",
      properties: {
        role: { type: 'string', enum: ['primary', 'backup'] },
        alone: { type: 'boolean' },
        acked: { type: 'integer' },
        released: { type: 'integer' },
        lagMs: { type: 'number' },
        lagCounts: { type: 'string' },
        throttleUs: { type: 'number' },
        logBytes: { type: 'integer' },
        ended: { type: 'boolean' },
      },
    },
  },
} as const;
const nameParam = { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: NAME_RE.source } } } as const;
const hashParam = { type: 'object', required: ['hash'], properties: { hash: { type: 'string', pattern: HASH_RE.source, description: 'SHA-256 of the module, 64 lower-case hex digits' } } } as const;
const meteringSchema = {
  type: 'array',
  description: 'metering jobs of the module on this host: queued (behind `ahead` others) or metering, for `ms`',
  items: { type: 'object', properties: { state: { type: 'string', enum: ['queued', 'metering'] }, ms: { type: 'integer' }, ahead: { type: 'integer' }, memoryMiB: { type: ['number', 'null'] } } },
} as const;
const moduleSchema = {
  type: 'object',
  required: ['module', 'stored', 'vms', 'metering'],
  properties: {
    module: { type: 'string', description: 'SHA-256 of the module, hex' },
    kind: { type: ['string', 'null'], enum: ['module', 'metered', null], description: 'an original module, or a metered one received for a backup' },
    bytes: { type: ['integer', 'null'] },
    stored: { type: 'boolean', description: "whether the host keeps it on disk (else it is only in a VM's memory, or being metered)" },
    vms: { type: 'array', items: { type: 'string' }, description: 'the VMs on this host that run it' },
    metering: meteringSchema,
  },
} as const;
const e = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorSchema]));

export interface ApiOptions {
  /** bearer token; generated when absent (buildApi returns it) */
  token?: string;
}

/**
 * Checks an uploaded module before it is kept, on V8's compile threads
 * (WebAssembly.compile does not hold the event loop): valid WebAssembly
 * (FTVM_ERR_INVALID_MODULE, with V8's reason) importing only what ftvm provides
 * (FTVM_ERR_UNSUPPORTED_IMPORT) and exporting an entry ftvm can start
 * (FTVM_ERR_NO_ENTRY). Metering comes later, at the first start.
 */
async function checkUpload(bytes: Uint8Array): Promise<void> {
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (err) {
    throw new GuestLoadError('FTVM_ERR_INVALID_MODULE', `not a valid WebAssembly module: ${(err as Error).message}`);
  }
  checkImports(module);
  checkExports(module);
}

/**
 * Answers a request Node's HTTP parser refused before fastify saw it (a URL or
 * headers over Node's 16 KiB limit, a malformed request line) in the API's
 * error shape, as fastify's default handler does in its own: headers too large
 * are FTVM_ERR_TOO_LARGE, anything else FTVM_ERR_BAD_REQUEST. The parser
 * cannot go on, so the connection ends after the answer; what the client is
 * still sending is read and dropped for at most REFUSED_DRAIN_MS first (closed
 * at once, the client's write would fail with a reset before it reads the
 * answer, as a 2 MiB URL showed).
 */
function clientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || refusedSockets.has(socket)) return;
  refusedSockets.add(socket);
  const code: ErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'FTVM_ERR_TOO_LARGE' : 'FTVM_ERR_BAD_REQUEST';
  const message = err.code === 'HPE_HEADER_OVERFLOW' ? 'the request line and headers exceed 16 KiB' : 'a malformed HTTP request';
  const body = JSON.stringify({ error: { code, message } });
  if (!socket.writable) return void socket.destroy();
  socket.end(`HTTP/1.1 ${httpStatusOf(code)} ${STATUS_CODES[httpStatusOf(code)]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  socket.on('data', () => {});
  setTimeout(() => socket.destroy(), REFUSED_DRAIN_MS).unref();
}
/** Sockets refused by clientError, while they drain (weak: gone with the socket). */
const refusedSockets = new WeakSet<Duplex>();

/**
 * Answers what fastify's router refuses before any route runs (a path
 * parameter over its 100 characters, a URL that does not decode) with
 * FTVM_ERR_BAD_REQUEST in the API's error shape, instead of fastify's own.
 */
function frameworkError(err: Error & { code?: string }, _req: FastifyRequest, reply: FastifyReply): void {
  const message = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is longer than 100 characters' : 'the URL does not decode';
  void reply.code(httpStatusOf('FTVM_ERR_BAD_REQUEST')).send({ error: { code: 'FTVM_ERR_BAD_REQUEST', message } });
}

/** A request's media type, lower case, without its parameters ("" without a Content-Type). */
function mediaTypeOf(req: FastifyRequest): string {
  return String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** The API of `host`; the fastify instance is thenable, so it comes wrapped. */
export async function buildApi(host: FtHost, opts: ApiOptions = {}): Promise<{ app: FastifyInstance; token: string }> {
  const token = opts.token ?? randomBytes(24).toString('base64url');
  const app = Fastify({ bodyLimit: Math.ceil((MODULE_BYTES_MAX * 4) / 3) + 64 * 1024, clientErrorHandler: clientError, frameworkErrors: frameworkError });
  // Bodies are JSON and keep their types exactly (fastify's ajv coerces by
  // default: "name": 5 would pass as "5"); a query string and path parameters
  // are text by nature, so their numbers are read from it. The options are
  // otherwise fastify's defaults (@fastify/ajv-compiler), and additional
  // properties are refused, never silently removed.
  const ajvOptions = { useDefaults: true, removeAdditional: false, allErrors: false } as const;
  const exact = new Ajv({ ...ajvOptions, coerceTypes: false });
  const fromText = new Ajv({ ...ajvOptions, coerceTypes: 'array' });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? exact : fromText).compile(schema));
  await app.register(swagger, { openapi: { info: { title: 'ftvm', version: '1' }, components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } }, security: [{ bearer: [] }] } });

  const fail = (reply: FastifyReply, code: ErrorCode, message: string) => reply.code(httpStatusOf(code)).send({ error: { code, message } });
  app.setErrorHandler((err: Error & { code?: string; statusCode?: number; validation?: unknown }, req, reply) => {
    // Every part's errors carry a catalogued code (HostError, FtvmError, GuestLoadError, ModuleStoreError, MeterPoolError, ArbiterError, ...).
    if (isErrorCode(err.code)) return fail(reply, err.code, err instanceof ArbiterError ? `the arbiter: ${err.message}` : err.message);
    // a list, text or map longer than its schema allows is too large (413), as action.ts says of every size limit; any other mismatch is a bad request
    if (Array.isArray(err.validation) && err.validation.some((v: { keyword?: string }) => v.keyword === 'maxItems' || v.keyword === 'maxLength' || v.keyword === 'maxProperties')) return fail(reply, 'FTVM_ERR_TOO_LARGE', err.message);
    if (err.validation) return fail(reply, 'FTVM_ERR_BAD_REQUEST', err.message);
    if (err.statusCode === 413) return fail(reply, 'FTVM_ERR_TOO_LARGE', err.message);
    // a body in a media type no parser takes (fastify's FST_ERR_CTP_INVALID_MEDIA_TYPE): every body but a module upload's is JSON
    if (err.statusCode === 415) return fail(reply, 'FTVM_ERR_UNSUPPORTED_MEDIA_TYPE', notJson(req));
    if (err.statusCode && err.statusCode < 500) return fail(reply, 'FTVM_ERR_BAD_REQUEST', err.message);
    return fail(reply, 'FTVM_ERR_INTERNAL', err.message);
  });
  app.setNotFoundHandler((req, reply) => fail(reply, 'FTVM_ERR_NOT_FOUND', `no route ${req.method} ${req.url}`));

  // A route that takes a JSON body takes it as application/json only, refused
  // before it is read with the catalogue's 415 (by the onRequest hook below;
  // documented on the route here): fastify would read text/plain as a string,
  // hand an application/wasm body over as a stream, and the route would
  // refuse a body of the wrong shape (400).
  const notJson = (req: FastifyRequest): string => `a request body here is JSON, sent with "Content-Type: application/json", not ${JSON.stringify(mediaTypeOf(req).slice(0, 100) || '(none)')}`;
  app.addHook('onRoute', (route) => {
    const schema = route.schema as { body?: unknown; response?: Record<string, unknown> } | undefined;
    if (schema?.body) schema.response = { ...schema.response, 415: errorSchema };
    // a route that takes no body refuses one with anything in it, as a route with a body refuses a field it does not know
    const methods = ([] as string[]).concat(route.method);
    if (!schema?.body && methods.some((m) => m === 'POST' || m === 'DELETE')) {
      const takesNone = async (req: FastifyRequest): Promise<void> => {
        const b = req.body;
        if (b === undefined || b === null || (typeof b === 'object' && !Array.isArray(b) && Object.keys(b).length === 0)) return;
        throw new ApiError('FTVM_ERR_BAD_REQUEST', `${req.method} ${route.url} takes no body`);
      };
      route.preValidation = [...([] as unknown[]).concat(route.preValidation ?? []), takesNone] as typeof route.preValidation;
    }
  });

  // An empty body labelled JSON (what many HTTP clients send on a POST or
  // DELETE that carries nothing) is no body: a route without one runs, and one
  // that needs a body refuses it by its schema (400). Anything else goes to
  // fastify's own JSON parser, with its prototype-poisoning guards.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => (body === '' ? done(null, undefined) : json(req, body as string, done)));

  const expected = Buffer.from(token);
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    // /healthz and the status page's HTML carry no data; the page asks for the token itself
    if (req.url === '/healthz' || req.url === '/ui' || req.url.startsWith('/ui?')) return;
    // "Bearer" in any case (RFC 7235 section 2.1: the scheme is case-insensitive), then 1*SP and the token (RFC 6750 section 2.1), compared in constant time
    const header = req.headers.authorization ?? '';
    const scheme = /^bearer +/i.exec(header);
    const got = Buffer.from(scheme ? header.slice(scheme[0].length) : '');
    if (!scheme || got.length !== expected.length || !timingSafeEqual(got, expected)) return fail(reply, 'FTVM_ERR_UNAUTHORIZED', 'a valid "Authorization: Bearer <token>" header is required');
    // a JSON route's body of another media type, refused before it is read (see the onRoute hook)
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody && (req.routeOptions.schema as { body?: unknown } | undefined)?.body && mediaTypeOf(req) !== 'application/json') {
      reply.header('connection', 'close'); // the body is not read
      return fail(reply, 'FTVM_ERR_UNSUPPORTED_MEDIA_TYPE', notJson(req));
    }
  });

  // ---- metrics ----
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const vmGauge = (name: string, help: string, pick: (v: ReturnType<FtHost['status']>['vms'][number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['vm', 'role'],
      registers: [registry],
      collect() {
        this.reset();
        for (const v of host.status().vms) this.set({ vm: v.name, role: v.role }, pick(v));
      },
    });
  vmGauge('ftvm_vm_generation', 'the generation of each VM replica on this host', (v) => v.gen);
  vmGauge('ftvm_log_bytes_sent', 'bytes of log sent to the backup', (v) => v.logBytes);
  vmGauge('ftvm_log_acked_seq', 'the last log entry the backup acknowledged', (v) => v.acked);
  vmGauge('ftvm_outputs_released_seq', 'the last output released', (v) => v.released);
  vmGauge('ftvm_log_unacked_bytes', 'log the backup has not acknowledged', (v) => v.unackedBytes);
  vmGauge('ftvm_lag_ms', "the backup's execution lag in time", (v) => v.lagMs);
  vmGauge('ftvm_lag_counts', "the backup's execution lag in counts", (v) => Number(v.lagCounts));
  vmGauge('ftvm_throttle_us', "the primary's throttle per poll", (v) => v.throttleUs);
  vmGauge('ftvm_outputs_held', 'outputs held until the backup acknowledges their log', (v) => v.held);
  vmGauge('ftvm_outputs_released', 'outputs this replica released as the primary', (v) => v.releasedCount);
  new Gauge({
    name: 'ftvm_failovers_total',
    help: 'VMs this host took over from a failed or stopped primary',
    registers: [registry],
    collect() {
      this.set(host.failovers);
    },
  });

  const viewOf = (info: ReturnType<FtHost['vmInfos']>[number]) => {
    const r = host.status().vms.find((v) => v.name === info.name) ?? null;
    return {
      ...info,
      replica: r && { role: r.role, alone: r.alone, acked: r.acked, released: r.released, lagMs: r.lagMs, lagCounts: r.lagCounts, throttleUs: r.throttleUs, logBytes: r.logBytes, ended: r.ended },
    };
  };
  const view = (name: string) => {
    const info = host.vmInfos().find((v) => v.name === name);
    if (!info) throw new ApiError('FTVM_ERR_NOT_FOUND', `no VM named ${name}`);
    return viewOf(info);
  };

  app.get('/healthz', { schema: { security: [], response: { 200: { type: 'object', properties: { ok: { type: 'boolean' }, host: { type: 'string' } } } } } }, async () => ({ ok: true, host: host.id }));

  app.get('/metrics', { schema: { response: { 200: { type: 'string', description: 'the metrics, in the Prometheus text format' }, 401: errorSchema } } }, async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });

  registerUi(app);

  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get('/v1/hosts', {
    schema: { response: { 200: { type: 'object', properties: { self: { type: 'string' }, hosts: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, alive: { type: 'boolean' } } } } } }, ...e(401) } },
  }, async () => ({ self: host.id, hosts: [{ id: host.id, alive: true }, ...host.status().peers.map((p) => ({ id: p.id, alive: p.alive }))] }));

  app.get('/v1/events', {
    schema: {
      description:
        "What this host did, as named events (vm-started, partner-silent, generation-won, replica-dropped, backup-following, backup-recreated, live, ended, replica-failed, module-shipped, peer-dropped, publish-failed), each with its fields, its number on this host (`seq`, from 1) and when (`atMs`, ms since the epoch); the last " +
        `${EVENTS_MAX} are kept. A reader follows by asking after the last \`next\`.`,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { after: { type: 'integer', minimum: 0, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: EVENTS_MAX, default: 1000 } },
      },
      response: {
        200: { type: 'object', properties: { events: { type: 'array', items: { type: 'object', additionalProperties: true } }, next: { type: 'integer' } } },
        ...e(400, 401),
      },
    },
  }, async (req) => {
    const q = req.query as { after: number; limit: number };
    const events = host.events.after(q.after, q.limit);
    return { events, next: events.at(-1)?.seq ?? q.after };
  });

  app.post('/v1/vms', {
    schema: {
      body: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', pattern: NAME_RE.source },
          sample: { type: 'string', description: 'a sample guest by name' },
          module: { type: 'string', contentEncoding: 'base64', description: `a WebAssembly module, base64 (at most ${MODULE_BYTES_MAX} bytes; upload larger ones with PUT /v1/modules)` },
          moduleHash: { type: 'string', pattern: HASH_RE.source, description: 'the SHA-256 (hex) of a module uploaded to this host with PUT /v1/modules' },
          args: {
            type: 'array',
            items: { type: 'string' },
            description:
              "the guest's arguments after the program name: its argv is [name, ...args] (argv[0] is the VM's name), as under `ftvm run prog.wasm -- args`, wasmtime and node:wasi; " +
              `no NUL; at most ${VM_ARGS_MAX} arguments of ${VM_STRING_BYTES_MAX} bytes each (413 FTVM_ERR_TOO_LARGE beyond)`,
          },
          env: {
            type: 'object',
            additionalProperties: { type: 'string' },
            description:
              `names non-empty, without "=" or NUL; values without NUL; at most ${VM_ENV_MAX} variables of ${VM_STRING_BYTES_MAX} bytes each as NAME=value; ` +
              `the name, args and env take at most ${VM_ARGV_ENV_BYTES_MAX} bytes together (each string and its NUL), so the start fits one log frame`,
          },
          stdin: { type: 'string', description: `the guest's stdin, UTF-8, given whole at start (at most ${VM_STDIN_BYTES_MAX} bytes)` },
          stdinBase64: { type: 'string', contentEncoding: 'base64', description: "the guest's stdin as base64" },
          memoryMiB: { type: 'integer', minimum: 1, maximum: 1024, description: 'the most memory the guest may grow to (default 1024)' },
          cpuPercent: { type: 'integer', minimum: 1, maximum: 100, description: 'the share of one core the primary may compute (default 100)' },
          publish: {
            type: 'array',
            maxItems: PUBLISH_PORTS_MAX,
            uniqueItems: true,
            items: { type: 'integer', minimum: 1, maximum: 65535 },
            description: "TCP ports every live host serves the VM on, at its public address: each connection is a connection of the VM's NIC, accepted on the guest's listening socket (fd 3)",
          },
        },
      },
      description:
        'Starts a VM: its primary on this host, its backup on another. Answers once the primary runs; a module metered for the first time takes seconds to minutes ' +
        '(GET /v1/modules/{hash} shows the metering meanwhile), a module metered before starts at once.',
      response: { 201: vmSchema, ...e(400, 401, 404, 409, 413, 503) },
    },
  }, async (req, reply) => {
    // every rule and limit of a start (action.ts), before a module is read or anything is created
    const { body, stdin } = checkStartBody(req.body);
    let module: Uint8Array | undefined;
    if (body.sample !== undefined) {
      const g = loadManifest().guests.find((x) => x.name === body.sample);
      if (!g) throw new ApiError('FTVM_ERR_BAD_REQUEST', `no sample guest named ${body.sample}`);
      module = new Uint8Array(readFileSync(guestPath(g.wasm)));
    } else if (body.module !== undefined) {
      module = new Uint8Array(Buffer.from(body.module, 'base64'));
      if (module.length > MODULE_BYTES_MAX) throw new ApiError('FTVM_ERR_TOO_LARGE', `the module has ${module.length} bytes, more than ${MODULE_BYTES_MAX}: upload it with PUT /v1/modules and start it by "moduleHash"`);
    }
    await host.startVm({
      name: body.name,
      ...(module ? { module } : { moduleHash: body.moduleHash! }),
      args: body.args,
      env: body.env,
      stdin,
      memoryMiB: body.memoryMiB,
      cpuPercent: body.cpuPercent,
      publish: body.publish,
    });
    return reply.code(201).send(view(body.name));
  });

  // ---- modules ----

  // An application/wasm body reaches the handler as the request stream itself: the
  // store reads it to disk as it comes, so a large module is never held as JSON or base64.
  app.addContentTypeParser(WASM_MEDIA_TYPE, (_req, payload, done) => done(null, payload));
  let uploads = 0;
  const uploadedSchema = {
    type: 'object',
    required: ['module', 'bytes', 'created'],
    properties: { module: { type: 'string', description: 'SHA-256 of the module, hex: start it with POST /v1/vms {"moduleHash"}' }, bytes: { type: 'integer' }, created: { type: 'boolean', description: 'false: the host had it already' } },
  } as const;
  app.put('/v1/modules', {
    schema: {
      description:
        `Uploads a module: the body is the WebAssembly binary (Content-Type: ${WASM_MEDIA_TYPE}), at most the host's limit (default 128 MiB). ` +
        'It is checked (valid, and importing only what ftvm provides) before it is kept, and kept under its SHA-256: 201 when new, 200 when the host had it. ' +
        'A host keeps a bounded number of modules and evicts the least recently used that no VM on it runs.',
      consumes: [WASM_MEDIA_TYPE],
      response: { 200: uploadedSchema, 201: uploadedSchema, ...e(400, 401, 413, 415, 503, 507) },
    },
    onRequest: async (req, reply) => {
      const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== WASM_MEDIA_TYPE) {
        reply.header('connection', 'close');
        return fail(reply, 'FTVM_ERR_UNSUPPORTED_MEDIA_TYPE', `a module is uploaded as the raw body with "Content-Type: ${WASM_MEDIA_TYPE}", not ${JSON.stringify(type || '(none)')}`);
      }
      const length = Number(req.headers['content-length'] ?? NaN);
      if (length > host.modules.moduleBytesMax) {
        reply.header('connection', 'close');
        return fail(reply, 'FTVM_ERR_TOO_LARGE', `the module has ${length} bytes, more than this host's limit of ${host.modules.moduleBytesMax}`);
      }
      if (uploads >= UPLOADS_MAX) {
        reply.header('connection', 'close');
        return fail(reply, 'FTVM_ERR_UNAVAILABLE', `${uploads} uploads are under way on this host; try again shortly`);
      }
    },
  }, async (req, reply) => {
    uploads++;
    try {
      const r = await host.modules.receive(req.body as Readable, 'module', checkUpload).catch((err: Error) => {
        if (err instanceof ModuleStoreError && err.code === 'FTVM_ERR_TOO_LARGE') reply.header('connection', 'close');
        throw err;
      });
      return reply.code(r.created ? 201 : 200).send({ module: r.hash, bytes: r.bytes, created: r.created });
    } finally {
      uploads--;
    }
  });

  const meteringOf = (hash: string) => host.meter.status(hash).map((j) => ({ state: j.state, ms: j.ms, ahead: j.ahead, memoryMiB: j.memoryLimitPages === null ? null : j.memoryLimitPages / 16 }));
  app.get('/v1/modules/:hash', {
    schema: {
      description: 'Whether this host has the module (HEAD: the status only): stored on disk, or in a VM it runs; and its metering jobs (queued or metering, and for how long), for a client that waits for a start.',
      params: hashParam,
      response: { 200: moduleSchema, ...e(400, 401, 404) },
    },
  }, async (req) => {
    const { hash } = req.params as { hash: string };
    const info = host.moduleInfo(hash);
    const metering = meteringOf(hash);
    if (!info && !metering.length) throw new ApiError('FTVM_ERR_MODULE_NOT_FOUND', `no module ${hash} on ${host.id}`);
    return { module: hash, kind: info?.kind ?? 'module', bytes: info?.bytes ?? null, stored: info?.stored ?? false, vms: info?.vms ?? [], metering };
  });

  app.get('/v1/modules', {
    schema: {
      description: "The modules this host keeps on disk, most recently used first, with the store's bounds, and every metering job.",
      response: {
        200: {
          type: 'object',
          properties: {
            modules: { type: 'array', items: moduleSchema },
            count: { type: 'integer' },
            bytes: { type: 'integer' },
            countMax: { type: 'integer' },
            bytesMax: { type: 'integer' },
            moduleBytesMax: { type: 'integer' },
            metering: { type: 'array', items: { type: 'object', properties: { module: { type: 'string' }, ...meteringSchema.items.properties } } },
          },
        },
        ...e(401),
      },
    },
  }, async () => {
    const usage = host.modules.usage();
    return {
      modules: host.modules.list().map((m) => ({ ...host.moduleInfo(m.hash)!, module: m.hash, metering: meteringOf(m.hash) })),
      ...usage,
      countMax: host.modules.countMax,
      bytesMax: host.modules.bytesMax,
      moduleBytesMax: host.modules.moduleBytesMax,
      metering: host.meter.status().map((j) => ({ module: j.hash, state: j.state, ms: j.ms, ahead: j.ahead, memoryMiB: j.memoryLimitPages === null ? null : j.memoryLimitPages / 16 })),
    };
  });

  app.get('/v1/vms', { schema: { response: { 200: { type: 'array', items: vmSchema }, ...e(401) } } }, async () => host.vmInfos().map(viewOf));

  app.get('/v1/vms/:name', { schema: { params: nameParam, response: { 200: vmSchema, ...e(400, 401, 404, 503) } } }, async (req) => {
    const name = (req.params as { name: string }).name;
    // a VM no host here reports may be one the arbiter still holds, lost while this host was away
    if (!host.vmInfos().some((v) => v.name === name)) {
      const lost = await host.lostVmInfo(checkVmName(name));
      if (lost) return viewOf(lost);
    }
    return view(name);
  });

  app.delete('/v1/vms/:name', { schema: { params: nameParam, response: { 204: { type: 'null' }, ...e(400, 401, 404) } } }, async (req, reply) => {
    const a = checkVmOp('stop', (req.params as { name: string }).name);
    await host.stopVm(a.vm);
    return reply.code(204).send();
  });

  const ok202 = { type: 'object', properties: { ok: { type: 'boolean' } } } as const;
  app.post('/v1/vms/:name/failover', {
    schema: {
      description:
        "Test failover: kills only the primary replica (on whichever host runs it); its backup takes over and a new backup is made. " +
        '409 FTVM_ERR_CONFLICT when there is no backup to fail over to yet, 409 FTVM_ERR_VM_ENDED when the guest has ended.',
      params: nameParam, response: { 202: ok202, ...e(400, 401, 404, 409, 503) } },
  }, async (req, reply) => {
    const a = checkVmOp('failover', (req.params as { name: string }).name);
    await host.adminVm(a.kind, a.vm);
    return reply.code(202).send({ ok: true });
  });

  app.post('/v1/vms/:name/backup/restart', {
    schema: {
      description: 'Re-creates the backup: stops it, fences it off with a new generation, and makes a new one from a snapshot of the primary (reactor guests). 409 FTVM_ERR_VM_ENDED when the guest has ended.',
      params: nameParam, response: { 202: ok202, ...e(400, 401, 404, 409, 503) } },
  }, async (req, reply) => {
    const a = checkVmOp('restart-backup', (req.params as { name: string }).name);
    await host.adminVm(a.kind, a.vm);
    return reply.code(202).send({ ok: true });
  });

  const migrated = {
    type: 'object',
    description: 'What the migration did; times in ms',
    properties: {
      vm: { type: 'string' },
      replica: { type: 'string', enum: ['primary', 'backup'] },
      from: { type: 'string', description: 'the host the replica ran on' },
      to: { type: 'string' },
      gen: { type: 'integer', description: 'the generation after the migration' },
      primary: { type: 'string' },
      backup: { type: ['string', 'null'] },
      ms: { type: 'number', description: 'the whole migration' },
      snapshotPauseMs: { type: 'number', description: "the primary's pause to copy its memory for the new backup on the target (0 when the target ran the backup already)" },
      switchPauseMs: { type: 'number', description: "the planned switch's pause: from the primary's pause to the news that the new primary runs (0 when the backup moved)" },
    },
  } as const;
  app.post('/v1/vms/:name/migrate', {
    schema: {
      description:
        'Live migration: moves the VM\'s primary (default) or backup replica to host `to` with nothing lost, and answers once it is done. ' +
        'The backup moves by a new backup made on `to` from a snapshot of the primary; the primary by a backup made there first (unless it runs there), then a planned switch: ' +
        'the primary pauses, its backup acknowledges the whole log and goes live at once with the next generation; the new primary makes its backup where the backup ran before (or on the old primary\'s host when the two swap). ' +
        '409 FTVM_ERR_CONFLICT: `to` unknown, silent, or running that replica already, or a migration, failover or new backup under way, or a guest that cannot be snapshotted; 409 FTVM_ERR_VM_ENDED; 503 FTVM_ERR_UNAVAILABLE: a step did not finish in time (the VM goes on where it was left).',
      params: nameParam,
      body: {
        type: 'object',
        required: ['to'],
        additionalProperties: false,
        properties: { to: { type: 'string', description: 'the id of the host to move to' }, replica: { type: 'string', enum: ['primary', 'backup'], default: 'primary' } },
      },
      response: { 200: migrated, ...e(400, 401, 404, 409, 503) },
    },
  }, async (req) => {
    const a = checkMigrate((req.params as { name: string }).name, req.body);
    return host.migrateVm(a.vm, a.to, a.replica);
  });

  // ---- a guest's stdout and stderr ----
  const outputSchema = {
    type: 'object',
    required: ['stream', 'from', 'next', 'dropped', 'base64', 'text', 'end', 'host'],
    properties: {
      stream: { type: 'string', enum: ['stdout', 'stderr'] },
      from: { type: 'integer', description: 'the byte offset of the first byte returned: later than asked for when the ring dropped older bytes' },
      next: { type: 'integer', description: 'the offset after the last byte returned: pass it as `from` to follow the stream' },
      dropped: { type: 'integer', description: `bytes dropped from the start of the stream so far (the ring keeps the last ${OUTPUT_RING_BYTES} bytes)` },
      base64: { type: 'string', description: 'the bytes, base64' },
      text: { type: 'string', description: 'the bytes as UTF-8 (a character cut at either end shows as U+FFFD; use base64 for exact bytes)' },
      end: { ...vmSchema.properties.end, description: 'how the guest ended, once no byte after `next` will come; else null' },
      host: { type: 'string', description: 'the host whose replica answered' },
    },
  } as const;
  for (const stream of ['stdout', 'stderr'] as const) {
    app.get(`/v1/vms/:name/${stream}`, {
      schema: {
        description:
          `The guest's ${stream} as released by the Output Rule (only once its backup has the log that produced it), from byte offset \`from\` (default 0). ` +
          `Every replica keeps the same stream, so offsets hold across a failover: follow it with \`from\` = the last \`next\`, and \`waitMs\` to wait for more; ` +
          '`end` says how the guest ended once the stream is whole. Served by any host (from its replica, else from the host running the primary).',
        params: nameParam,
        querystring: {
          type: 'object',
          properties: {
            from: { type: 'integer', minimum: 0, default: 0 },
            waitMs: { type: 'integer', minimum: 0, maximum: OUTPUT_WAIT_MS_MAX, default: 0, description: 'wait this long for a byte past `from` (or the end) when there is none yet' },
          },
        },
        response: { 200: outputSchema, ...e(400, 401, 404, 503) },
      },
    }, async (req, reply) => {
      const { name } = req.params as { name: string };
      const q = req.query as { from: number; waitMs: number };
      // a client that goes away while the read waits ends the wait
      const stop = new AbortController();
      reply.raw.once('close', () => stop.abort());
      const r = await host.readOutput(name, stream, q.from, q.waitMs, stop.signal);
      const b = Buffer.from(r.bytes);
      return { stream, from: r.from, next: r.next, dropped: r.dropped, base64: b.toString('base64'), text: b.toString('utf8'), end: r.end, host: r.host };
    });
  }

  app.post('/v1/connections', { schema: { response: { 201: { type: 'object', properties: { conn: { type: 'integer' } } }, ...e(401, 503) } } }, async (_req, reply) =>
    reply.code(201).send({ conn: host.apiConnection() }),
  );

  app.post('/v1/vms/:name/messages', {
    schema: {
      params: nameParam,
      body: {
        type: 'object',
        required: ['conn'],
        additionalProperties: false,
        properties: { conn: { type: 'integer', minimum: 0 }, data: { type: 'string' }, base64: { type: 'string' }, eof: { type: 'boolean' } },
      },
      response: { 202: { type: 'object', properties: { ok: { type: 'boolean' } } }, ...e(400, 401, 404, 503) },
    },
  }, async (req, reply) => {
    const { name } = req.params as { name: string };
    const b = req.body as { conn: number; data?: string; base64?: string; eof?: boolean };
    if (b.data !== undefined && b.base64 !== undefined) throw new ApiError('FTVM_ERR_BAD_REQUEST', 'give at most one of "data" and "base64"');
    const bytes = b.base64 !== undefined ? messageBase64(b.base64) : b.data !== undefined ? Buffer.from(b.data, 'utf8') : Buffer.alloc(0);
    const a = checkSend(name, b.conn, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), b.eof ?? false);
    await host.sendToVm(a.vm, a.conn, a.bytes, a.eof);
    return reply.code(202).send({ ok: true });
  });

  app.get('/v1/vms/:name/outputs', {
    schema: {
      params: nameParam,
      querystring: {
        type: 'object',
        required: ['conn'],
        properties: { conn: { type: 'integer', minimum: 0 }, after: { type: 'integer', default: -1 }, waitMs: { type: 'integer', minimum: 0, maximum: 60000, default: 0 } },
      },
      response: {
        200: { type: 'array', items: { type: 'object', properties: { seq: { type: 'integer' }, data: { type: 'string' }, base64: { type: 'string' }, eof: { type: 'boolean' } } } },
        ...e(400, 401, 404),
      },
    },
  }, async (req) => {
    const { name } = req.params as { name: string };
    const q = req.query as { conn: number; after: number; waitMs: number };
    view(name);
    const outs = await host.outputsFor(q.conn >>> 0, name, q.after, q.waitMs);
    return outs.map((o) => ({ seq: o.seq, data: Buffer.from(o.data).toString('utf8'), base64: Buffer.from(o.data).toString('base64'), eof: o.eof }));
  });

  const connParam = { type: 'object', required: ['conn'], properties: { conn: { type: 'integer', minimum: 0 } } } as const;
  app.delete('/v1/connections/:conn', {
    schema: { description: 'Closes an API connection: the outputs kept for it are dropped. Connections unused for 10 minutes are closed by the host.', params: connParam, response: { 204: { type: 'null' }, ...e(400, 401, 404) } },
  }, async (req, reply) => {
    host.closeApiConnection((req.params as { conn: number }).conn >>> 0);
    return reply.code(204).send();
  });

  // Server-Sent Events: every output of the VM for this connection after `after`
  // (or the Last-Event-ID header), as `event: output` with the sequence number as its id.
  const streams = new Set<AbortController>();
  app.addHook('preClose', async () => {
    for (const s of streams) s.abort();
  });
  app.get('/v1/vms/:name/outputs/stream', {
    schema: {
      description: 'A text/event-stream of outputs: `id: <seq>`, `event: output`, `data: {"seq","data","base64","eof"}`; a comment every 15 s keeps it open. Resumes after the Last-Event-ID header.',
      params: nameParam,
      querystring: { type: 'object', required: ['conn'], properties: { conn: { type: 'integer', minimum: 0 }, after: { type: 'integer', default: -1 } } },
      headers: { type: 'object', properties: { 'last-event-id': { type: 'string', pattern: '^-?[0-9]+$' } } },
      response: { 200: { description: 'text/event-stream', type: 'string' }, ...e(400, 401, 404) },
    },
  }, async (req, reply) => {
    const { name } = req.params as { name: string };
    const q = req.query as { conn: number; after: number };
    const conn = q.conn >>> 0;
    view(name);
    if (!host.hasApiConnection(conn)) throw new ApiError('FTVM_ERR_NOT_FOUND', `no API connection ${conn} on this host`);
    const lastId = req.headers['last-event-id'];
    let after = typeof lastId === 'string' ? Number(lastId) : q.after;
    const stop = new AbortController();
    streams.add(stop);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(': ftvm outputs\n\n');
    req.raw.once('close', () => stop.abort());
    try {
      while (!stop.signal.aborted && host.hasApiConnection(conn)) {
        const outs = await host.outputsFor(conn, name, after, 15_000, stop.signal);
        if (stop.signal.aborted) break;
        if (!outs.length) res.write(': keep-alive\n\n');
        for (const o of outs) {
          const data = JSON.stringify({ seq: o.seq, data: Buffer.from(o.data).toString('utf8'), base64: Buffer.from(o.data).toString('base64'), eof: o.eof });
          res.write(`id: ${o.seq}\nevent: output\ndata: ${data}\n\n`);
          after = o.seq;
        }
      }
    } catch {
      // the connection was closed while waiting
    } finally {
      streams.delete(stop);
      res.end();
    }
  });

  await app.ready();
  return { app, token };
}
