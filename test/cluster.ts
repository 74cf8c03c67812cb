// The local cluster the tests run (real host processes; see host/cluster/local.ts).
import { LocalCluster } from '../host/cluster/local.ts';

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

/** The named events host `host` of `cluster` recorded (GET /v1/events), those named `name` only when given. */
export async function eventsOf(cluster: LocalCluster, host: string, name?: string): Promise<any[]> {
  const r = await fetch(`${cluster.host(host).api}/v1/events?limit=4096`, { headers: { authorization: `Bearer ${cluster.token}` } });
  if (r.status !== 200) throw new Error(`GET /v1/events on ${host}: ${r.status} ${await r.text()}`);
  const { events } = (await r.json()) as { events: any[] };
  return name === undefined ? events : events.filter((e) => e.event === name);
}

/** A cluster of hosts `ids` (default h1..h3), every one linked to the others, and the caller of its REST API (stop it in teardown). */
export async function linkedCluster(ids: string[] = ['h1', 'h2', 'h3']): Promise<{ c: LocalCluster; api: ReturnType<typeof apiOf> }> {
  const c = new LocalCluster();
  await Promise.all(ids.map((id) => c.add(id)));
  await c.linked();
  return { c, api: apiOf(c) };
}
