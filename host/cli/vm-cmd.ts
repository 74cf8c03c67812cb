// `ftvm vm ...`: the REST API of any host, from the command line.
//
// Requests go through node:http with no time limit of their own: a start
// answers once the VM runs, and metering a large module the first time takes
// minutes. Meanwhile `start` polls the module's metering state and says how
// long it has been metering.

import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { checkStartBody } from '../api/action.ts';
import { FtvmError } from '../errors.ts';
import { PUBLISH_PORTS_MAX } from '../cluster/ingress.ts';
import { INLINE_MODULE_BYTES_MAX, intOption, parseCommand, VM_COMMANDS, VM_HELP, type VmSub } from './commands.ts';
import { describeFailure, EXIT, fileError, onFile, usageError } from './errors.ts';
import { hostStderr, hostStdout, outputLost, type HostOutput } from './host-output.ts';
import { FOLLOW_RETRY_MS, CLI_ANSWER_BYTES_MAX as MAX_ANSWER_BYTES } from '../limits.ts';

import { NAME_RE } from '../cluster/arbiter.ts';

export { INLINE_MODULE_BYTES_MAX, VM_HELP } from './commands.ts';

/**
 * `ftvm vm ...`: exit status 0 on success; 2 for a wrong command line
 * (FTVM_ERR_USAGE); 1 for any other failure, printed as one line
 * `ftvm vm CMD: FTVM_ERR_X: message` (the API's own code when it answered,
 * FTVM_ERR_UNAVAILABLE when it could not be reached); `output --follow`
 * exits as the guest did.
 */
export async function vmMain(argv: string[]): Promise<number> {
  try {
    const status = await vmCommand(argv);
    // output that could not be written (ENOSPC; said once on stderr) fails the command, as under `ftvm run`
    return outputLost() ? EXIT.failure : status;
  } catch (e) {
    const cmd = subCommandAt(argv) >= 0 ? argv[subCommandAt(argv)]! : '';
    const { line, status } = describeVmFailure(e, cmd);
    hostStderr.write(`ftvm vm${cmd ? ` ${cmd}` : ''}: ${line}\n`);
    return status;
  }
}

/** The one line (without "ftvm vm CMD: ") and exit status of a failure of `ftvm vm CMD`; a wrong command line names the help to read. */
function describeVmFailure(err: unknown, cmd: string): { line: string; status: number } {
  const d = describeVmFailureBare(err);
  if (d.status !== EXIT.usage || /\(see ftvm [^()]*--help\)$/.test(d.line)) return d;
  return { line: `${d.line} (see ftvm vm${cmd ? ` ${cmd}` : ''} --help)`, status: d.status };
}

function describeVmFailureBare(err: unknown): { line: string; status: number } {
  const e = err as Error & { code?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (err instanceof ApiCallError) return { line: `${err.code}: ${err.detail}`, status: EXIT.failure };
  if (code === 'ERR_INVALID_URL') return { line: `FTVM_ERR_USAGE: --api: not a URL (${(e as { input?: string }).input ?? ''})`, status: EXIT.usage };
  if (['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN'].includes(code)) {
    return { line: `FTVM_ERR_UNAVAILABLE: the API cannot be reached (${code}: ${e.message.split('\n')[0]})`, status: EXIT.failure };
  }
  const { line, status } = describeFailure(err);
  return { line: line.replace(/^ftvm: /, ''), status };
}

/** Where the sub-command's name is in `argv`: the first word that is neither a flag nor the value of --api or --token before it; -1 when there is none. */
function subCommandAt(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--api' || a === '--token') i++;
    else if (a === '--') return -1;
    else if (!a.startsWith('-')) return i;
  }
  return -1;
}

async function vmCommand(argv: string[]): Promise<number> {
  const at = subCommandAt(argv);
  if (at < 0) {
    if (argv.includes('--help') || argv.includes('-h')) {
      hostStdout.write(VM_HELP);
      return 0;
    }
    hostStderr.write(`ftvm vm: FTVM_ERR_USAGE: a command is required: ${Object.keys(VM_COMMANDS).join(', ')} (see ftvm vm --help)\n`);
    return EXIT.usage;
  }
  const cmd = argv[at]!;
  if (!Object.hasOwn(VM_COMMANDS, cmd)) {
    hostStderr.write(`ftvm vm: FTVM_ERR_USAGE: unknown command "${cmd}" (see ftvm vm --help)\n`);
    return EXIT.usage;
  }
  const spec = VM_COMMANDS[cmd as VmSub];
  const parsed = parseCommand(spec, [...argv.slice(0, at), ...argv.slice(at + 1)]);
  if (parsed.help) {
    hostStdout.write(spec.help);
    return 0;
  }
  // Each sub-command declares its own flags; read here through one view of them all.
  const values = parsed.values as Partial<Record<string, string | string[] | boolean>> as {
    api?: string;
    token?: string;
    sample?: string;
    module?: string;
    arg?: string[];
    env?: string[];
    'stdin-file'?: string;
    'memory-mib'?: string;
    'cpu-percent'?: string;
    publish?: string[];
    conn?: string;
    after?: string;
    count?: string;
    'wait-ms'?: string;
    stdout?: boolean;
    stderr?: boolean;
    all?: boolean;
    follow?: boolean;
    to?: string;
    backup?: boolean;
  };
  const [name, text] = parsed.operands;
  // a VM's name is checked here (`start` checks its whole body below): a name no VM can have is a wrong command line
  if (cmd !== 'start' && spec.synopsis.startsWith(`${cmd} NAME`) && name !== undefined && !NAME_RE.test(name)) {
    throw usageError(`NAME: ${JSON.stringify(name.slice(0, 100))} is no VM name (1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  }
  const api = values.api ?? process.env.FTVM_API;
  const token = values.token ?? process.env.FTVM_TOKEN;
  if (!api || !token) throw usageError('--api and --token (or FTVM_API and FTVM_TOKEN) are required');
  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const r = await httpCall(method, `${api}${path}`, token, body === undefined ? undefined : { type: 'application/json', data: Buffer.from(JSON.stringify(body)) });
    if (r.status >= 300) throw new ApiCallError(r.status, r.json);
    return r.json;
  };
  const print = (x: unknown): void => hostStdout.write(`${JSON.stringify(x)}\n`);
  const needName = (): string => {
    if (!name) throw usageError('a VM name is required');
    return encodeURIComponent(name);
  };
  // integers are checked for their shape here; their limits are the API's (one validator for every door)
  const int = (flag: string, v: string | undefined, min = Number.MIN_SAFE_INTEGER, max?: number): number | undefined => intOption(`--${flag}`, v, min, max);
  // a connection id is a u32 (the API's own rule), checked before a request goes out
  const connection = async (): Promise<number> => int('conn', values.conn, 0, 0xffffffff) ?? ((await call('POST', '/v1/connections')) as { conn: number }).conn;
  try {
    switch (cmd) {
      case 'start': {
        needName();
        const args = [...(values.arg ?? []), ...parsed.guestArgs];
        const body: Record<string, unknown> = { name, args: values.arg || parsed.guestArgs.length ? args : undefined };
        if (values.sample) body.sample = values.sample;
        if (values.env) {
          body.env = Object.fromEntries(
            values.env.map((kv) => {
              const i = kv.indexOf('=');
              if (i < 1) throw usageError(`--env needs KEY=VALUE, not ${JSON.stringify(kv)}`);
              return [kv.slice(0, i), kv.slice(i + 1)];
            }),
          );
        }
        if (values['stdin-file']) body.stdinBase64 = onFile('--stdin-file', values['stdin-file'], 'read', () => readFileSync(values['stdin-file']!)).toString('base64');
        body.memoryMiB = int('memory-mib', values['memory-mib']);
        body.cpuPercent = int('cpu-percent', values['cpu-percent']);
        if (values.publish) {
          const ports = values.publish.map((p) => int('publish', p)!);
          const bad = ports.find((p) => p < 1 || p > 65535);
          if (bad !== undefined) throw usageError(`--publish needs a TCP port from 1 to 65535, not ${bad}`);
          if (new Set(ports).size !== ports.length) throw usageError('--publish names a port twice');
          if (ports.length > PUBLISH_PORTS_MAX) throw usageError(`--publish: at most ${PUBLISH_PORTS_MAX} ports`);
          body.publish = ports;
        }
        // the body by the API's own rules (host/api/action.ts), with a stand-in for a module not read yet
        // (a body the flags made that breaks a rule is a wrong command line: FTVM_ERR_USAGE with the API's words)
        try {
          checkStartBody(values.module ? { ...body, moduleHash: '0'.repeat(64) } : body);
        } catch (e) {
          if (e instanceof FtvmError && e.code === 'FTVM_ERR_BAD_REQUEST') throw usageError(e.message);
          throw e;
        }
        // every flag is checked before the module is read or uploaded
        let hash: string | null = null;
        if (values.module) {
          const file = values.module;
          const size = onFile('--module', file, 'read', () => statSync(file).size);
          hash = await fileHash(file, '--module');
          if (size <= INLINE_MODULE_BYTES_MAX) body.module = onFile('--module', file, 'read', () => readFileSync(file)).toString('base64');
          else {
            await upload(api, token, values.module, hash, false);
            body.moduleHash = hash;
          }
        }
        hostStderr.write(`starting ${name} (a module is metered once, on its first start: that can take seconds, or minutes for a large one)...\n`);
        const watch = hash ? watchMetering(api, token, hash) : null;
        try {
          print(await call('POST', '/v1/vms', body));
        } catch (e) {
          // the host evicted the module since it was uploaded: upload it again, once
          if (!(e instanceof ApiCallError && e.code === 'FTVM_ERR_MODULE_NOT_FOUND' && hash && values.module)) throw e;
          await upload(api, token, values.module, hash, true);
          print(await call('POST', '/v1/vms', body));
        } finally {
          watch?.stop();
        }
        return 0;
      }
      case 'upload': {
        const file = name!;
        print(await upload(api, token, file, await fileHash(file, 'module'), true));
        return 0;
      }
      case 'modules':
        print(await call('GET', '/v1/modules'));
        return 0;
      case 'ls':
        print(await call('GET', '/v1/vms'));
        return 0;
      case 'show':
        print(await call('GET', `/v1/vms/${needName()}`));
        return 0;
      case 'kill':
        await call('DELETE', `/v1/vms/${needName()}`);
        return 0;
      case 'failover':
        print(await call('POST', `/v1/vms/${needName()}/failover`));
        return 0;
      case 'restart-backup':
        print(await call('POST', `/v1/vms/${needName()}/backup/restart`));
        return 0;
      case 'migrate': {
        const to = values.to;
        if (typeof to !== 'string' || !to) throw usageError('--to HOST is required: the id of the host to move to');
        print(await call('POST', `/v1/vms/${needName()}/migrate`, { to, replica: values.backup === true ? 'backup' : 'primary' }));
        return 0;
      }
      case 'logs':
      case 'output': {
        const given = (['stdout', 'stderr', 'all'] as const).filter((f) => values[f] === true);
        if (given.length > 1) throw usageError(`give one of --stdout, --stderr and --all, not ${given.map((f) => `--${f}`).join(' and ')}`);
        const one = given[0] === 'stdout' || given[0] === 'stderr' ? given[0] : null;
        // `logs` shows both streams unless told one; `output`, its older name, shows stdout unless told
        const streams: Stream[] = one !== null ? [one] : cmd === 'output' && values.all !== true && values.stderr !== true ? ['stdout'] : ['stdout', 'stderr'];
        return await followLogs(api, token, needName(), streams, values.follow === true, `ftvm vm ${cmd}`);
      }
      case 'tail': {
        const after = int('after', values.after, -1) ?? -1;
        const count = int('count', values.count, 1) ?? Infinity;
        // an unknown VM is said before a connection is opened (and announced) for it
        await call('GET', `/v1/vms/${needName()}`);
        return await tail(api, token, needName(), await connection(), after, count, values.conn === undefined);
      }
      case 'send': {
        const waitMs = int('wait-ms', values['wait-ms'], 0) ?? 2000;
        const conn = await connection();
        await call('POST', `/v1/vms/${needName()}/messages`, { conn, data: text });
        print(await call('GET', `/v1/vms/${needName()}/outputs?conn=${conn}&waitMs=${waitMs}`));
        return 0;
      }
      default:
        throw new Error(`no handler for ftvm vm ${cmd}`);
    }
  } catch (e) {
    const { line, status } = describeVmFailure(e, cmd);
    hostStderr.write(`ftvm vm ${cmd}: ${line}\n`);
    return status;
  }
}

/** Prints a connection's outputs as they come, one JSON line each, until `count` arrived or SIGINT. */
async function tail(api: string, token: string, name: string, conn: number, after: number, count: number, announce: boolean): Promise<number> {
  if (announce) hostStderr.write(`ftvm vm tail: connection ${conn} (send on it with: ftvm vm send ${decodeURIComponent(name)} TEXT --conn ${conn})\n`);
  const stop = new AbortController();
  const onSig = (): void => stop.abort();
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  let seen = 0;
  try {
    const r = await fetch(`${api}/v1/vms/${name}/outputs/stream?conn=${conn}&after=${after}`, { headers: { authorization: `Bearer ${token}` }, signal: stop.signal });
    if (!r.ok) {
      throw new ApiCallError(r.status, await r.json().catch(() => null));
    }
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    while (seen < count) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      for (let i = buf.indexOf('\n\n'); i >= 0 && seen < count; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = /^data: (.*)$/m.exec(block);
        if (data && /^event: output$/m.test(block)) {
          hostStdout.write(`${data[1]}\n`);
          seen++;
        }
      }
    }
    stop.abort();
    return 0;
  } catch (e) {
    if (stop.signal.aborted) return 0;
    throw e;
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
  }
}


/** A guest's console stream, as GET /v1/vms/:name/{stream} serves it. */
type Stream = 'stdout' | 'stderr';

/** How a guest ended, as the stream answers say it once the stream is whole. */
type GuestEnd = { outcome: string; status?: number; message?: string };

/**
 * Prints a VM's released console output (GET /v1/vms/:name/stdout and
 * /stderr) as raw bytes: one stream on our stdout, or both, stdout on our
 * stdout and stderr on our stderr (read side by side, so neither waits for
 * the other). Without `follow`: what there is now, exit code 0. With it: reads
 * on until the streams are whole, then returns the guest's status as a
 * process exit code: the status when 0..123, 125 when it trapped (its
 * message on stderr), 1 for any other status (named on stderr,
 * FTVM_ERR_EXIT_STATUS), as `ftvm run` does. `label` ("ftvm vm logs") starts
 * the lines it says on stderr. Throws ApiCallError for an answer it cannot
 * use (FTVM_ERR_NOT_FOUND), after stopping the other stream's requests.
 */
async function followLogs(api: string, token: string, name: string, streams: Stream[], follow: boolean, label: string): Promise<number> {
  const stop = new AbortController();
  const sinkOf = (s: Stream): HostOutput => (streams.length === 1 || s === 'stdout' ? hostStdout : hostStderr);
  let ends: (GuestEnd | null)[];
  try {
    ends = await Promise.all(streams.map((s) => followStream(api, token, name, s, follow, sinkOf(s), label, stop.signal)));
  } finally {
    stop.abort();
  }
  const end = ends[0];
  if (!follow || !end) return 0;
  if (end.outcome === 'exit') {
    const status = end.status ?? 0;
    if (status >= 0 && status <= 123) return status;
    hostStderr.write(`${label}: FTVM_ERR_EXIT_STATUS: the guest exited with status ${status}\n`);
    return 1;
  }
  hostStderr.write(`${label}: the guest ${end.outcome === 'trap' ? `trapped: ${end.message ?? ''}` : `ended (${end.outcome})`}\n`);
  return end.outcome === 'trap' ? 125 : 1;
}

/**
 * Copies one stream to `sink` from offset 0. Without `follow`, one read;
 * with it, long polls of 20 s from the last offset until the answer says how
 * the guest ended (the stream is whole then). A 503 or a lost connection (a
 * failover under way) is retried for FOLLOW_RETRY_MS. Resolves with the end
 * (null without `follow`, or when `signal` stopped it).
 */
async function followStream(api: string, token: string, name: string, stream: Stream, follow: boolean, sink: HostOutput, label: string, signal: AbortSignal): Promise<GuestEnd | null> {
  let from = 0;
  let failingSince: number | null = null;
  while (!signal.aborted) {
    let r: { status: number; json: unknown };
    try {
      r = await httpCall('GET', `${api}/v1/vms/${name}/${stream}?from=${from}&waitMs=${follow ? 20_000 : 0}`, token, undefined, signal);
    } catch (e) {
      if (signal.aborted) return null;
      r = { status: 503, json: { error: { code: 'FTVM_ERR_UNAVAILABLE', message: (e as Error).message } } };
    }
    if (r.status === 503 && follow) {
      failingSince ??= Date.now();
      if (Date.now() - failingSince < FOLLOW_RETRY_MS) {
        await new Promise((res) => setTimeout(res, 250));
        continue;
      }
    }
    if (r.status >= 300) throw new ApiCallError(r.status, r.json);
    failingSince = null;
    const o = r.json as { from: number; next: number; base64: string; end: GuestEnd | null };
    if (o.from > from) hostStderr.write(`${label}: ${o.from - from} bytes of ${stream} were dropped (the host keeps the last 1 MiB)\n`);
    const bytes = Buffer.from(o.base64, 'base64');
    if (bytes.length) sink.write(bytes);
    // the reader went away (EPIPE: `| head`) or the output failed (ENOSPC: reported once, exit status 1): nothing more to copy
    if (sink.state !== 'open') return null;
    from = o.next;
    if (!follow) return null;
    if (o.end) return o.end;
  }
  return null;
}


/** An answer of the REST API other than 2xx, with its stable code. */
class ApiCallError extends Error {
  readonly code: string;
  /** the API's message */
  readonly detail: string;
  constructor(
    readonly status: number,
    json: unknown,
  ) {
    const err = (json as { error?: { code: string; message: string } } | null)?.error;
    super(`${err?.code ?? status}: ${err?.message ?? 'no answer'}`);
    this.code = err?.code ?? `FTVM_ERR_HTTP_${status}`;
    this.detail = err?.message ?? `HTTP ${status} with no error in the answer`;
  }
}

/**
 * One HTTP request with no time limit (node:http sets none): `body` is bytes
 * or a stream of `length` bytes; `signal` aborts it (the promise rejects). Resolves with the status and the JSON answer
 * (null for 204 or an empty body).
 */
function httpCall(
  method: string,
  url: string,
  token: string,
  body?: { type: string; data: Buffer } | { type: string; stream: Readable; length: number },
  signal?: AbortSignal,
): Promise<{ status: number; json: unknown; headers: IncomingHttpHeaders }> {
  const u = new URL(url);
  const headers: Record<string, string | number> = { authorization: `Bearer ${token}` };
  if (body) {
    headers['content-type'] = body.type;
    headers['content-length'] = 'data' in body ? body.data.length : body.length;
  }
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method, headers, signal }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > MAX_ANSWER_BYTES) {
          req.destroy(new Error(`the answer from ${u.origin} is over ${MAX_ANSWER_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          json = { error: { code: String(res.statusCode), message: text.slice(0, 200) } };
        }
        resolve({ status: res.statusCode ?? 0, json, headers: res.headers });
      });
    });
    req.on('error', reject);
    if (!body) req.end();
    else if ('data' in body) req.end(body.data);
    else {
      body.stream.on('error', (e) => req.destroy(e));
      body.stream.pipe(req);
    }
  });
}

/** SHA-256 of a file, hex, read as a stream. Errors: fileError's codes (FTVM_ERR_FILE_NOT_FOUND, FTVM_ERR_FILE_IS_DIR, FTVM_ERR_FILE_ACCESS, FTVM_ERR_FILE_IO), naming the file as `what`. */
function fileHash(file: string, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', (e) => reject(fileError(e, what, file, 'read')))
      .on('end', () => resolve(h.digest('hex')));
  });
}

const mb = (n: number): string => (n / 1e6).toFixed(1);

/**
 * Uploads a module file (PUT /v1/modules, the file streamed as the body),
 * unless `force` is false and the host has it already (HEAD /v1/modules/:hash).
 * Shows how much has gone on stderr. Resolves with the host's answer.
 */
async function upload(api: string, token: string, file: string, hash: string, force: boolean): Promise<unknown> {
  if (!force) {
    const head = await httpCall('HEAD', `${api}/v1/modules/${hash}`, token);
    if (head.status === 200) {
      hostStderr.write(`the host has ${file} already (${hash.slice(0, 12)})\n`);
      return { module: hash, created: false };
    }
  }
  const size = statSync(file).size;
  const stream = createReadStream(file);
  let sent = 0;
  let shownAt = 0;
  const tty = process.stderr.isTTY === true;
  stream.on('data', (c) => {
    sent += c.length;
    if (tty && (sent === size || Date.now() - shownAt > 200)) {
      shownAt = Date.now();
      hostStderr.write(`\ruploading ${file}: ${mb(sent)} / ${mb(size)} MB`);
    }
  });
  if (!tty) hostStderr.write(`uploading ${file} (${mb(size)} MB)...\n`);
  const r = await httpCall('PUT', `${api}/v1/modules`, token, { type: 'application/wasm', stream, length: size });
  if (tty) hostStderr.write('\n');
  if (r.status >= 300) throw new ApiCallError(r.status, r.json);
  hostStderr.write(`uploaded ${file}: ${hash.slice(0, 12)}\n`);
  return r.json;
}

/**
 * Polls the metering state of module `hash` every 2 s while a start waits,
 * and tells on stderr how long it has been queued or metering (in place on a
 * terminal, a line every 10 s otherwise).
 */
function watchMetering(api: string, token: string, hash: string): { stop: () => void } {
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  let shown = false;
  const tick = async (): Promise<void> => {
    const r = await httpCall('GET', `${api}/v1/modules/${hash}`, token).catch(() => null);
    const jobs = r?.status === 200 ? ((r.json as { metering?: { state: string; ms: number; ahead: number }[] }).metering ?? []) : [];
    const j = jobs[0];
    if (!j || stopped) return;
    const line = j.state === 'metering' ? `metering ${hash.slice(0, 12)}: ${Math.round(j.ms / 1000)} s` : `waiting to be metered (${j.ahead} ahead): ${Math.round(j.ms / 1000)} s`;
    if (tty) {
      hostStderr.write(`\r${line}   `);
      shown = true;
    } else if (Date.now() - lastLine >= 10_000) {
      lastLine = Date.now();
      hostStderr.write(`${line}\n`);
    }
  };
  let stopped = false;
  const timer = setInterval(() => void tick(), 2000);
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
      if (shown) hostStderr.write('\n');
    },
  };
}
