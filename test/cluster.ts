// The local cluster the tests run (real host processes; see host/cluster/local.ts).
import { eventually, LocalCluster } from '../host/cluster/local.ts';

export { LocalCluster as Cluster, eventually, freePort } from '../host/cluster/local.ts';

/** An answer of a host's REST API: the HTTP status and the parsed JSON body (null when the body is empty). */
export interface ApiAnswer {
  status: number;
  json: any;
}

/**
 * A caller of the REST API of `cluster`'s hosts with the cluster's token:
 * `call(host id, method, path, JSON body?)`.
 */
export function apiOf(cluster: LocalCluster): (host: string, method: string, path: string, body?: unknown) => Promise<ApiAnswer> {
  return async (host, method, path, body) => {
    const r = await fetch(`${cluster.host(host).api}${path}`, {
      method,
      headers: { authorization: `Bearer ${cluster.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  };
}

/**
 * Sends one request line (its first word an id) to VM `vm` through `host`'s
 * REST API on API connection `conn`, and waits (bounded) for the output on
 * that connection that starts with the same id; throws if the send is not
 * accepted (202).
 */
export async function askVm(api: ReturnType<typeof apiOf>, host: string, vm: string, conn: number, line: string): Promise<string> {
  const sent = await api(host, 'POST', `/v1/vms/${vm}/messages`, { conn, data: line });
  if (sent.status !== 202) throw new Error(`sending ${line} to ${vm} through ${host}: ${sent.status} ${JSON.stringify(sent.json)}`);
  const id = line.split(' ')[0]!;
  return eventually(`the answer to ${line}`, async () => {
    const r = await api(host, 'GET', `/v1/vms/${vm}/outputs?conn=${conn}&waitMs=1000`);
    return (r.json as { data: string }[]).map((o) => o.data).find((d) => d.startsWith(`${id} `));
  });
}

/** The named events host `host` of `cluster` recorded (GET /v1/events), those named `name` only when given. */
export async function eventsOf(cluster: LocalCluster, host: string, name?: string): Promise<any[]> {
  const r = await fetch(`${cluster.host(host).api}/v1/events?limit=4096`, { headers: { authorization: `Bearer ${cluster.token}` } });
  if (r.status !== 200) throw new Error(`GET /v1/events on ${host}: ${r.status} ${await r.text()}`);
  const { events } = (await r.json()) as { events: any[] };
  return name === undefined ? events : events.filter((e) => e.event === name);
}

/** A cluster of hosts `ids` (default h1..h3), every one linked to the others, and the caller of its REST API (stop it in teardown); when one fails to start or link, every host started is stopped before the error is thrown. */
export async function linkedCluster(ids: string[] = ['h1', 'h2', 'h3']): Promise<{ c: LocalCluster; api: ReturnType<typeof apiOf> }> {
  const c = new LocalCluster();
  try {
    // every start settles before a failure counts: a host that came up while another failed is stopped too
    const started = await Promise.allSettled(ids.map((id) => c.add(id)));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    await c.linked();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return { c, api: apiOf(c) };
}
