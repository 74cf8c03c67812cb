// `ftvm vm ...`: the REST API of any host, from the command line.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export const VM_HELP = `usage: ftvm vm <command> [--api URL] [--token T] ...

Talks to any host's REST API (--api, default $FTVM_API; --token, default
$FTVM_TOKEN). Prints JSON answers; errors go to stderr with their code and
exit 1.

commands:
  start NAME (--sample S | --module FILE)   start a VM; with
        [--arg A ...] [--env K=V ...]       its arguments and environment,
        [--stdin-file FILE]                 its stdin (read whole),
        [--memory-mib N] [--cpu-percent P]  the most memory it may grow to (MiB)
                                            and the share of one core it may use
  ls                                        every VM the cluster has: state, placement,
                                            count, lag, log bytes, outputs released
  show NAME                                 one VM
  kill NAME                                 stop both replicas
  failover NAME                             kill only the primary replica (test failover);
                                            the backup takes over and a new backup is made
  restart-backup NAME                       replace the backup with a new one made from a
                                            snapshot of the primary
  send NAME TEXT [--conn C] [--wait-ms MS]  send one message (on a new API connection, or C);
                                            prints the answers that arrive within --wait-ms
                                            (default 2000)
  tail NAME [--conn C] [--after SEQ]        follow a connection's outputs (Server-Sent Events),
        [--count N]                         one JSON line each, until N arrived or Ctrl-C; a new
                                            connection's id is printed to stderr, for send --conn
`;

export async function vmMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
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
      conn: { type: 'string' },
      after: { type: 'string' },
      count: { type: 'string' },
      'wait-ms': { type: 'string' },
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
  if (!api || !token) {
    process.stderr.write('ftvm vm: --api and --token (or FTVM_API and FTVM_TOKEN) are required\n');
    return 2;
  }
  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const r = await httpRequest(
      `${api}${path}`,
      method,
      { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body === undefined ? undefined : JSON.stringify(body),
    );
    const json = r.status === 204 ? null : (JSON.parse(r.text) as { error?: { code: string; message: string } });
    if (r.status < 200 || r.status > 299) throw new Error(`${json?.error?.code ?? r.status}: ${json?.error?.message ?? r.statusText}`);
    return json;
  };
  const print = (x: unknown): void => void process.stdout.write(`${JSON.stringify(x)}\n`);
  const needName = (): string => {
    if (!name) throw new Error(`ftvm vm ${cmd}: a VM name is required`);
    return encodeURIComponent(name);
  };
  const int = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^-?\d+$/.test(v)) throw new Error(`--${flag} needs an integer, not ${JSON.stringify(v)}`);
    return Number(v);
  };
  const connection = async (): Promise<number> => int('conn', values.conn) ?? ((await call('POST', '/v1/connections')) as { conn: number }).conn;
  try {
    switch (cmd) {
      case 'start': {
        needName();
        const body: Record<string, unknown> = { name, args: values.arg };
        if (values.sample) body.sample = values.sample;
        if (values.module) body.module = readFileSync(values.module).toString('base64');
        if (values.env) {
          body.env = Object.fromEntries(
            values.env.map((kv) => {
              const i = kv.indexOf('=');
              if (i < 1) throw new Error(`--env needs KEY=VALUE, not ${JSON.stringify(kv)}`);
              return [kv.slice(0, i), kv.slice(i + 1)];
            }),
          );
        }
        if (values['stdin-file']) body.stdinBase64 = readFileSync(values['stdin-file']).toString('base64');
        body.memoryMiB = int('memory-mib', values['memory-mib']);
        body.cpuPercent = int('cpu-percent', values['cpu-percent']);
        process.stderr.write(`starting ${name} (a module is metered once, on its first start: that can take seconds)...\n`);
        print(await call('POST', '/v1/vms', body));
        return 0;
      }
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
      case 'tail':
        return await tail(api, token, needName(), await connection(), int('after', values.after) ?? -1, int('count', values.count) ?? Infinity, values.conn === undefined);
      case 'send': {
        if (text === undefined) throw new Error('ftvm vm send: the message text is required');
        const conn = await connection();
        await call('POST', `/v1/vms/${needName()}/messages`, { conn, data: text });
        const waitMs = values['wait-ms'] === undefined ? 2000 : Number(values['wait-ms']);
        print(await call('GET', `/v1/vms/${needName()}/outputs?conn=${conn}&waitMs=${waitMs}`));
        return 0;
      }
      default:
        process.stderr.write(`ftvm vm: unknown command "${cmd}"\n\n${VM_HELP}`);
        return 2;
    }
  } catch (e) {
    process.stderr.write(`ftvm vm ${cmd}: ${(e as Error).message}\n`);
    return 1;
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
      const j = (await r.json()) as { error?: { code: string; message: string } };
      throw new Error(`${j.error?.code ?? r.status}: ${j.error?.message ?? r.statusText}`);
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

/** The largest answer a request reads (a VM list of the largest cluster is far smaller). */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/**
 * One HTTP(S) request through node:http: fetch would load undici and compile
 * its WebAssembly HTTP parser, about 150 ms of CPU and 40 MB at every start of
 * a command that makes one call. Resolves the status and the body as text;
 * rejects with the socket's error (e.g. "connect ECONNREFUSED 127.0.0.1:8080")
 * or when the body is over MAX_ANSWER_BYTES.
 */
async function httpRequest(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; statusText: string; text: string }> {
  const u = new URL(url);
  const { request } = u.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request(u, { method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
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
      res.on('end', () => resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
