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
import { parseArgs } from 'node:util';
import { PUBLISH_PORTS_MAX } from '../cluster/ingress.ts';
import { describeFailure, EXIT, usageError } from './errors.ts';

/** Modules up to this size go inline (base64 in the start request); larger ones are uploaded first (PUT /v1/modules) and started by hash. */
import { CLI_INLINE_MODULE_BYTES_MAX as INLINE_MODULE_BYTES_MAX } from '../limits.ts'; export { INLINE_MODULE_BYTES_MAX };

export const VM_HELP = `usage: ftvm vm <command> [--api URL] [--token T] ...

Talks to any host's REST API (--api, default $FTVM_API; --token, default
$FTVM_TOKEN). Prints JSON answers. A failure is one line on stderr,
"ftvm vm CMD: FTVM_ERR_X: message" (the API's code when it answered,
FTVM_ERR_UNAVAILABLE when it could not be reached), with exit status 2 for a
wrong command line (FTVM_ERR_USAGE) and 1 otherwise. A value of --arg or
--env may start with "-" (--arg -e).

commands:
  start NAME (--sample S | --module FILE)   start a VM (a module larger than 1 MiB is uploaded
                                            first, unless the host has it, and started by its
                                            SHA-256; the start answers once the VM runs, and
                                            says how long the module has been metering); with
        [--arg A ...] [--env K=V ...]       its arguments (after the program name: the guest's
                                            argv is NAME A ...) and environment,
        [--stdin-file FILE]                 its stdin (read whole),
        [--memory-mib N] [--cpu-percent P]  the most memory it may grow to (MiB)
                                            and the share of one core it may use,
        [--publish PORT ...]                TCP ports every live host serves it on, at its
                                            public address ("endpoints" in show): each
                                            connection is accepted on the guest's
                                            listening socket (fd 3)
  ls                                        every VM the cluster has: state, placement,
                                            count, lag, log bytes, outputs released
  show NAME                                 one VM (with "end": its exit status or trap, once
                                            it ended)
  output NAME [--stderr] [--follow]         print the guest's stdout (or stderr) as released so
                                            far; --follow waits for more until the guest ends,
                                            then exits with its status (0..123; 125: it trapped;
                                            1 for any other status, named on stderr). Follows
                                            across a failover (offsets are the same on every
                                            replica)
  kill NAME                                 stop both replicas
  failover NAME                             kill only the primary replica (test failover);
                                            the backup takes over and a new backup is made
  restart-backup NAME                       replace the backup with a new one made from a
                                            snapshot of the primary
  upload FILE                               upload a module (PUT /v1/modules); prints its hash
  modules                                   the modules the host keeps, its bounds, and the
                                            metering jobs under way
  send NAME TEXT [--conn C] [--wait-ms MS]  send one message (on a new API connection, or C);
                                            prints the answers that arrive within --wait-ms
                                            (default 2000)
  tail NAME [--conn C] [--after SEQ]        follow a connection's NIC outputs (Server-Sent Events),
        [--count N]                         one JSON line each, until N arrived or Ctrl-C; a new
                                            connection's id is printed to stderr, for send --conn
                                            (a guest's stdout and stderr: see output)
`;

/**
 * Options whose values are a guest's own (its arguments and environment):
 * a value that starts with "-" (`--arg -e`, as lua and many programs take)
 * is the option's value, not another option.
 */
const GUEST_VALUE_OPTIONS = new Set(['--arg', '--env']);

/** `argv` with each `--arg V` / `--env V` written `--arg=V`, so node:util's parser takes any V as the value. */
function joinGuestValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (GUEST_VALUE_OPTIONS.has(a) && i + 1 < argv.length) out.push(`${a}=${argv[++i]!}`);
    else out.push(a);
  }
  return out;
}

/**
 * `ftvm vm ...`: exit status 0 on success; 2 for a wrong command line
 * (FTVM_ERR_USAGE); 1 for any other failure, printed as one line
 * `ftvm vm CMD: FTVM_ERR_X: message` (the API's own code when it answered,
 * FTVM_ERR_UNAVAILABLE when it could not be reached); `output --follow`
 * exits as the guest did.
 */
export async function vmMain(argv: string[]): Promise<number> {
  try {
    return await vmCommand(argv);
  } catch (e) {
    const cmd = argv.find((a) => !a.startsWith('-')) ?? '';
    const { line, status } = describeVmFailure(e);
    process.stderr.write(`ftvm vm${cmd ? ` ${cmd}` : ''}: ${line}\n`);
    return status;
  }
}

/** The one line (without "ftvm vm CMD: ") and exit status of a failure of `ftvm vm`. */
function describeVmFailure(err: unknown): { line: string; status: number } {
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

async function vmCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: joinGuestValues(argv),
    allowPositionals: true,
    options: {
      api: { type: 'string' },
      token: { type: 'string' },
      sample: { type: 'string' },
      module: { type: 'string' },
      arg: { type: 'string', multiple: true },
      env: { type: 'string', multiple: true },
      'stdin-file': { type: 'string' },
      'memory-mib': { type: 'string' },
      'cpu-percent': { type: 'string' },
      publish: { type: 'string', multiple: true },
      conn: { type: 'string' },
      after: { type: 'string' },
      count: { type: 'string' },
      'wait-ms': { type: 'string' },
      stderr: { type: 'boolean' },
      follow: { type: 'boolean', short: 'f' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, name, text] = positionals;
  if (values.help || !cmd) {
    process[values.help ? 'stdout' : 'stderr'].write(VM_HELP);
    return values.help ? 0 : 2;
  }
  const api = values.api ?? process.env.FTVM_API;
  const token = values.token ?? process.env.FTVM_TOKEN;
  if (!api || !token) throw usageError('--api and --token (or FTVM_API and FTVM_TOKEN) are required');
  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const r = await httpCall(method, `${api}${path}`, token, body === undefined ? undefined : { type: 'application/json', data: Buffer.from(JSON.stringify(body)) });
    if (r.status >= 300) throw new ApiCallError(r.status, r.json);
    return r.json;
  };
  const print = (x: unknown): void => void process.stdout.write(`${JSON.stringify(x)}\n`);
  const needName = (): string => {
    if (!name) throw usageError('a VM name is required');
    return encodeURIComponent(name);
  };
  const int = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^-?\d+$/.test(v)) throw usageError(`--${flag} needs an integer, not ${JSON.stringify(v)}`);
    return Number(v);
  };
  const connection = async (): Promise<number> => int('conn', values.conn) ?? ((await call('POST', '/v1/connections')) as { conn: number }).conn;
  try {
    switch (cmd) {
      case 'start': {
        needName();
        const body: Record<string, unknown> = { name, args: values.arg };
        if (values.sample) body.sample = values.sample;
        let hash: string | null = null;
        if (values.module) {
          const size = statSync(values.module).size;
          hash = await fileHash(values.module);
          if (size <= INLINE_MODULE_BYTES_MAX) body.module = readFileSync(values.module).toString('base64');
          else {
            await upload(api, token, values.module, hash, false);
            body.moduleHash = hash;
          }
        }
        if (values.env) {
          body.env = Object.fromEntries(
            values.env.map((kv) => {
              const i = kv.indexOf('=');
              if (i < 1) throw usageError(`--env needs KEY=VALUE, not ${JSON.stringify(kv)}`);
              return [kv.slice(0, i), kv.slice(i + 1)];
            }),
          );
        }
        if (values['stdin-file']) body.stdinBase64 = readFileSync(values['stdin-file']).toString('base64');
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
        process.stderr.write(`starting ${name} (a module is metered once, on its first start: that can take seconds, or minutes for a large one)...\n`);
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
        const file = name;
        if (!file) throw new Error('ftvm vm upload: a module file is required');
        print(await upload(api, token, file, await fileHash(file), true));
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
      case 'output':
        return await followOutput(api, token, needName(), values.stderr === true ? 'stderr' : 'stdout', values.follow === true);
      case 'tail':
        return await tail(api, token, needName(), await connection(), int('after', values.after) ?? -1, int('count', values.count) ?? Infinity, values.conn === undefined);
      case 'send': {
        if (text === undefined) throw usageError('the message text is required');
        const conn = await connection();
        await call('POST', `/v1/vms/${needName()}/messages`, { conn, data: text });
        const waitMs = values['wait-ms'] === undefined ? 2000 : Number(values['wait-ms']);
        print(await call('GET', `/v1/vms/${needName()}/outputs?conn=${conn}&waitMs=${waitMs}`));
        return 0;
      }
      default:
        process.stderr.write(`ftvm vm: FTVM_ERR_USAGE: unknown command "${cmd}" (see ftvm vm --help)\n`);
        return EXIT.usage;
    }
  } catch (e) {
    const { line, status } = describeVmFailure(e);
    process.stderr.write(`ftvm vm ${cmd}: ${line}\n`);
    return status;
  }
}

/** Prints a connection's outputs as they come, one JSON line each, until `count` arrived or SIGINT. */
async function tail(api: string, token: string, name: string, conn: number, after: number, count: number, announce: boolean): Promise<number> {
  if (announce) process.stderr.write(`ftvm vm tail: connection ${conn} (send on it with: ftvm vm send ${decodeURIComponent(name)} TEXT --conn ${conn})\n`);
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
          process.stdout.write(`${data[1]}\n`);
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

/** How long `vm output --follow` keeps trying while the VM's primary is being replaced (503s, a refused connection). */
import { FOLLOW_RETRY_MS } from '../limits.ts';

/**
 * Prints a VM's released stdout or stderr (GET /v1/vms/:name/{stream}) as
 * raw bytes. Without `follow`: what there is now, exit code 0. With it: reads
 * on from the last offset (long polls of 20 s) until the stream is whole,
 * then returns the guest's status as a process exit code: the status when
 * 0..123, 125 when it trapped (its message on stderr), 1 for any other status
 * (named on stderr, FTVM_ERR_EXIT_STATUS), as `ftvm run` does. A 503 or a
 * lost connection (a failover under way) is retried for FOLLOW_RETRY_MS.
 */
async function followOutput(api: string, token: string, name: string, stream: 'stdout' | 'stderr', follow: boolean): Promise<number> {
  let from = 0;
  let failingSince: number | null = null;
  for (;;) {
    let r: { status: number; json: unknown };
    try {
      r = await httpCall('GET', `${api}/v1/vms/${name}/${stream}?from=${from}&waitMs=${follow ? 20_000 : 0}`, token);
    } catch (e) {
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
    const o = r.json as { from: number; next: number; base64: string; end: { outcome: string; status?: number; message?: string } | null };
    if (o.from > from) process.stderr.write(`ftvm vm output: ${o.from - from} bytes of ${stream} were dropped (the host keeps the last 1 MiB)\n`);
    const bytes = Buffer.from(o.base64, 'base64');
    if (bytes.length) await new Promise<void>((res) => process.stdout.write(bytes, () => res()));
    from = o.next;
    if (!follow) return 0;
    if (o.end) {
      if (o.end.outcome === 'exit') {
        const status = o.end.status ?? 0;
        if (status >= 0 && status <= 123) return status;
        process.stderr.write(`ftvm vm output: FTVM_ERR_EXIT_STATUS: the guest exited with status ${status}\n`);
        return 1;
      }
      process.stderr.write(`ftvm vm output: the guest ${o.end.outcome === 'trap' ? `trapped: ${o.end.message ?? ''}` : `ended (${o.end.outcome})`}\n`);
      return o.end.outcome === 'trap' ? 125 : 1;
    }
  }
}

/** The largest answer a request reads (a VM list of the largest cluster is far smaller). */
import { CLI_ANSWER_BYTES_MAX as MAX_ANSWER_BYTES } from '../limits.ts';

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
 * or a stream of `length` bytes. Resolves with the status and the JSON answer
 * (null for 204 or an empty body).
 */
function httpCall(method: string, url: string, token: string, body?: { type: string; data: Buffer } | { type: string; stream: Readable; length: number }): Promise<{ status: number; json: unknown; headers: IncomingHttpHeaders }> {
  const u = new URL(url);
  const headers: Record<string, string | number> = { authorization: `Bearer ${token}` };
  if (body) {
    headers['content-type'] = body.type;
    headers['content-length'] = 'data' in body ? body.data.length : body.length;
  }
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method, headers }, (res) => {
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

/** SHA-256 of a file, hex, read as a stream. */
function fileHash(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', reject)
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
      process.stderr.write(`the host has ${file} already (${hash.slice(0, 12)})\n`);
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
      process.stderr.write(`\ruploading ${file}: ${mb(sent)} / ${mb(size)} MB`);
    }
  });
  if (!tty) process.stderr.write(`uploading ${file} (${mb(size)} MB)...\n`);
  const r = await httpCall('PUT', `${api}/v1/modules`, token, { type: 'application/wasm', stream, length: size });
  if (tty) process.stderr.write('\n');
  if (r.status >= 300) throw new ApiCallError(r.status, r.json);
  process.stderr.write(`uploaded ${file}: ${hash.slice(0, 12)}\n`);
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
      process.stderr.write(`\r${line}   `);
      shown = true;
    } else if (Date.now() - lastLine >= 10_000) {
      lastLine = Date.now();
      process.stderr.write(`${line}\n`);
    }
  };
  let stopped = false;
  const timer = setInterval(() => void tick(), 2000);
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
      if (shown) process.stderr.write('\n');
    },
  };
}
