// `ftvm host`: run one host daemon of a cluster.

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { FileArbiter, type Arbiter } from '../cluster/arbiter.ts';
import { FtHost } from '../cluster/host.ts';

export const HOST_HELP = `usage: ftvm host --id ID --dir DIR | --etcd URL[,URL...] [options]

Runs one host of an ftvm cluster until SIGTERM or SIGINT. It runs replicas of
VMs on worker threads, streams each primary's log to its backup over the
authenticated log channel, releases outputs only once the backup has the log
up to them, watches its peers, goes live through the arbiter when a partner
dies, and re-creates lost backups from snapshots. It serves the REST API
(under /v1, bearer token; GET /v1/openapi.json documents it) and the client
port (whose clients prove they know the same token). When it is
listening it prints one JSON line to stdout:
{"ready": true, "id", "peer", "client", "api", "slot", "token"} (the token only
when it was generated). What it does goes to stderr.

options:
  --id ID               this host's name (letters, digits, _ . -)
  --secret S            the cluster secret (default: $FTVM_SECRET; required)
  --dir DIR             file arbiter and host registry on a directory every host reaches
                        (the embedded default for hosts on one machine)
  --etcd URLS           etcd arbiter and registry instead (comma-separated endpoints)
  --bind ADDR           address to listen on (default 127.0.0.1)
  --peer-port N         log channel port (default 0: any free port)
  --client-port N       client port (default 0: any free port)
  --advertise-peer A    the host:port other hosts dial for the log channel (default: where it listens)
  --public-address ADDR the IP address VMs' published ports listen on, where TCP clients reach
                        this host (default: the --bind address)
  --api-port N          REST API port (default 0: any free port)
  --token T             the API token: the REST API's bearer token, which clients of the client
                        port must prove they know too (default: $FTVM_TOKEN, else generated and
                        printed once)
  --heartbeat-ms N      heartbeat period (default 50)
  --fail-ms N           a peer silent this long is dead (default 600)
  --lag-target-ms N     backup lag above which the primary is slowed (default 100)
  --unacked-log-max N   bytes of log the backup has not acknowledged at which the primary
                        stalls until it has (default 33554432)
  --data-dir DIR        where the host keeps modules, under DIR/modules (default:
                        $FTVM_DATA_DIR/ID, else ~/.cache/ftvm/host-ID)
  --module-bytes-max N  the largest module it takes, uploaded or shipped (default 134217728)
  --module-store-mib N  MiB of modules it keeps on disk; the least recently used that no
                        VM runs are evicted (default 2048; at most 256 modules)
  --meter-jobs N        modules larger than 1 MiB metered at once, on worker threads (default 1)
  -h, --help            this text
`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      id: { type: 'string' },
      secret: { type: 'string' },
      dir: { type: 'string' },
      etcd: { type: 'string' },
      bind: { type: 'string' },
      'peer-port': { type: 'string' },
      'client-port': { type: 'string' },
      'advertise-peer': { type: 'string' },
      'public-address': { type: 'string' },
      'api-port': { type: 'string' },
      token: { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      'fail-ms': { type: 'string' },
      'lag-target-ms': { type: 'string' },
      'unacked-log-max': { type: 'string' },
      'data-dir': { type: 'string' },
      'module-bytes-max': { type: 'string' },
      'module-store-mib': { type: 'string' },
      'meter-jobs': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HOST_HELP);
    return 0;
  }
  const secret = values.secret ?? process.env.FTVM_SECRET;
  if (!values.id || !secret || (!values.dir === !values.etcd)) {
    process.stderr.write(`ftvm host: --id, a secret (--secret or FTVM_SECRET) and one of --dir or --etcd are required\n\n${HOST_HELP}`);
    return 2;
  }
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got "${v}"`);
    return n;
  };
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
    heartbeatMs: num('heartbeat-ms', values['heartbeat-ms']),
    failMs: num('fail-ms', values['fail-ms']),
    lagTargetMs: num('lag-target-ms', values['lag-target-ms']),
    unackedLogMax: num('unacked-log-max', values['unacked-log-max']),
    dataDir: values['data-dir'],
    moduleBytesMax: num('module-bytes-max', values['module-bytes-max']),
    moduleStoreBytesMax: values['module-store-mib'] === undefined ? undefined : num('module-store-mib', values['module-store-mib'])! * 1024 * 1024,
    meterJobsMax: num('meter-jobs', values['meter-jobs']),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  await host.start();
  const { buildApi } = await import('../api/server.ts');
  const api = await buildApi(host, { token });
  const bind = values.bind ?? '127.0.0.1';
  await api.app.listen({ host: bind, port: num('api-port', values['api-port']) ?? 0 });
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
