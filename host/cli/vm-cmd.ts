// `ftvm vm ...`: the REST API of any host, from the command line.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export const VM_HELP = `usage: ftvm vm <command> [--api URL] [--token T] ...

Talks to any host's REST API (--api, default $FTVM_API; --token, default
$FTVM_TOKEN). Prints JSON answers; errors go to stderr with their code and
exit 1.

commands:
  start NAME (--sample S | --module FILE) [--arg A ...]   start a VM
  ls                                               the VMs the host knows
  show NAME                                        one VM: generation, placement, replica state
  kill NAME                                        stop both replicas
  failover NAME                                    kill only the primary replica (test failover)
  send NAME TEXT                                   send one message; prints the answers that
                                                   arrive within --wait-ms (default 2000)
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
    const r = await fetch(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = r.status === 204 ? null : ((await r.json()) as { error?: { code: string; message: string } });
    if (!r.ok) throw new Error(`${json?.error?.code ?? r.status}: ${json?.error?.message ?? r.statusText}`);
    return json;
  };
  const print = (x: unknown): void => void process.stdout.write(`${JSON.stringify(x)}\n`);
  const needName = (): string => {
    if (!name) throw new Error(`ftvm vm ${cmd}: a VM name is required`);
    return encodeURIComponent(name);
  };
  try {
    switch (cmd) {
      case 'start': {
        needName();
        const body: Record<string, unknown> = { name, args: values.arg };
        if (values.sample) body.sample = values.sample;
        if (values.module) body.module = readFileSync(values.module).toString('base64');
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
      case 'send': {
        if (text === undefined) throw new Error('ftvm vm send: the message text is required');
        const { conn } = (await call('POST', '/v1/connections')) as { conn: number };
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
