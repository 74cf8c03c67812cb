// `ftvm host`: run one host daemon of a cluster.

import { randomBytes } from 'node:crypto';
import { FileArbiter, NAME_RE, type Arbiter } from '../cluster/arbiter.ts';
import { FtHost } from '../cluster/host.ts';
import { HOST, intOption, parseCommand, usageLine } from './commands.ts';
import { usageError } from './errors.ts';
import { keepWritingOnErrors } from './host-output.ts';

/** `ftvm host --help`, from the command table. */
export const HOST_HELP = HOST.help;

/**
 * `ftvm host ARGS`: runs a host until SIGTERM or SIGINT, then exit status 0.
 * A wrong command line (FTVM_ERR_USAGE, exit status 2) or a failure to start
 * (exit status 1, the error's FTVM_ERR_* code, FTVM_ERR_INTERNAL for one
 * without) is one line "ftvm host: CODE: message" on stderr, never a stack trace.
 */
export async function main(argv: string[]): Promise<number> {
  // A long-running command: a reader of its output that goes away (EPIPE) or a full disk must not end it.
  keepWritingOnErrors();
  try {
    return await runHost(argv);
  } catch (e) {
    const { line, status } = usageLine('host', e);
    process.stderr.write(`${line.replace(/^ftvm: /, 'ftvm host: ')}\n`);
    return status;
  }
}

async function runHost(argv: string[]): Promise<number> {
  const { values, help } = parseCommand(HOST, argv);
  if (help) {
    process.stdout.write(HOST.help);
    return 0;
  }
  const secret = values.secret ?? process.env.FTVM_SECRET;
  if (values.dir && values.etcd) throw usageError('give one of --dir and --etcd, not both');
  if (!values.id || !secret || !values.dir === !values.etcd) {
    throw usageError('--id, a secret (--secret or FTVM_SECRET) and one of --dir or --etcd are required (see ftvm host --help)');
  }
  if (!NAME_RE.test(values.id)) throw usageError(`--id ${JSON.stringify(values.id.slice(0, 100))} is no host id (1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  // every number is checked before anything starts: ports (0: any free one) and what must be at least 1
  const ranges: Record<string, [number, number]> = {
    'peer-port': [0, 65535],
    'client-port': [0, 65535],
    'api-port': [0, 65535],
    'heartbeat-ms': [1, Number.MAX_SAFE_INTEGER],
    'fail-ms': [1, Number.MAX_SAFE_INTEGER],
    'module-store-mib': [1, Number.MAX_SAFE_INTEGER],
    'meter-jobs': [1, Number.MAX_SAFE_INTEGER],
  };
  const num = (name: string, v: string | undefined): number | undefined => intOption(`--${name}`, v, ...(ranges[name] ?? [0, Number.MAX_SAFE_INTEGER]));
  for (const k of ['peer-port', 'client-port', 'api-port', 'heartbeat-ms', 'fail-ms', 'lag-target-ms', 'unacked-log-max', 'module-bytes-max', 'module-store-mib', 'meter-jobs'] as const) num(k, values[k]);
  const heartbeatMs = num('heartbeat-ms', values['heartbeat-ms']);
  const failMs = num('fail-ms', values['fail-ms']);
  // (the defaults, as FtHost has them: heartbeats every 50 ms, a peer silent 600 ms is taken for dead)
  if ((failMs ?? 600) <= (heartbeatMs ?? 50)) throw usageError(`--fail-ms (${failMs ?? 600}) must be longer than --heartbeat-ms (${heartbeatMs ?? 50}): a host would be taken for dead between two heartbeats`);
  const digestEvery = intOption('--digest-every', values['digest-every'], 1);
  let arbiter: Arbiter;
  if (values.dir) arbiter = new FileArbiter(values.dir);
  else {
    const { EtcdArbiter } = await import('../cluster/etcd-arbiter.ts');
    arbiter = new EtcdArbiter({ endpoints: values.etcd!.split(',') });
  }
  // one token for the REST API and the client port (generated when none is given)
  const given = values.token ?? process.env.FTVM_TOKEN;
  const token = given ?? randomBytes(24).toString('base64url');
  const host = new FtHost({
    id: values.id,
    secret,
    token,
    arbiter,
    bind: values.bind,
    peerPort: num('peer-port', values['peer-port']),
    clientPort: num('client-port', values['client-port']),
    advertisePeer: values['advertise-peer'],
    publicAddress: values['public-address'],
    heartbeatMs,
    failMs,
    lagTargetMs: num('lag-target-ms', values['lag-target-ms']),
    unackedLogMax: num('unacked-log-max', values['unacked-log-max']),
    dataDir: values['data-dir'],
    moduleBytesMax: num('module-bytes-max', values['module-bytes-max']),
    moduleStoreBytesMax: values['module-store-mib'] === undefined ? undefined : num('module-store-mib', values['module-store-mib'])! * 1024 * 1024,
    meterJobsMax: num('meter-jobs', values['meter-jobs']),
    digestEveryCounts: digestEvery,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  try {
    await host.start();
  } catch (e) {
    await host.close().catch(() => undefined);
    await arbiter.close();
    throw e;
  }
  const { buildApi } = await import('../api/server.ts');
  const api = await buildApi(host, { token });
  const bind = values.bind ?? '127.0.0.1';
  try {
    await api.app.listen({ host: bind, port: num('api-port', values['api-port']) ?? 0 });
  } catch (e) {
    // a port it cannot listen on: stop what started, so the one line is the end of the process
    await host.meter.close();
    await api.app.close();
    await host.close();
    await arbiter.close();
    throw e;
  }
  const a = api.app.server.address();
  const apiAddr = typeof a === 'object' && a ? `${bind}:${a.port}` : String(a);
  const ready = { ready: true, id: host.id, peer: host.peerAddr, client: host.clientAddr, api: `http://${apiAddr}`, public: host.ingress.address, slot: host.slot, ...(given ? {} : { token: api.token }) };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await host.meter.close(); // a start still waiting for its metering is answered, so the API can close
  await api.app.close();
  await host.close();
  await arbiter.close();
  return 0;
}
