// A dead peer process's connection is not news. When a link is cut and the
// peer's host process dies and restarts, its kernel may still deliver what
// the dead process had queued once the link heals. A host that has heard the
// new process (its handshake's boot id) drops a connection of the earlier
// one and its messages: taken for news, an old vminfo would undo the restart
// (a lost VM read as running, as a chaos campaign found).
import { type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WIRE_VERSION } from '../host/cluster/wire.ts';
import { apiOf, Cluster, eventually } from './cluster.ts';
import { frame, openPeer as openPeerOf } from './peer-wire.ts';

/** The peer id the test speaks as: a host that knows the secret. */
const PEER = 'h9';

let c: Cluster | null = null;
const socks: Socket[] = [];
afterEach(async () => {
  for (const s of socks.splice(0)) s.destroy();
  await c?.stop();
  c = null;
});

/** A connection to host `id`'s peer port, authenticated as PEER of boot id `boot`. */
async function openPeer(cluster: Cluster, id: string, boot: string): Promise<{ sock: Socket; closed: () => boolean }> {
  const p = await openPeerOf(cluster, id, PEER, boot);
  socks.push(p.sock);
  return { sock: p.sock, closed: p.isClosed };
}

const vminfo = (name: string) => ({ t: 'vminfo', v: WIRE_VERSION, info: { name, gen: 1, primary: PEER, backup: null, state: 'alone', publish: [] } });

describe("a peer's connections across its restarts", () => {
  it("drops an earlier process's connection and what it sends, once a later process was heard; takes the later one's", async () => {
    c = new Cluster(['--fail-ms', '2000', '--heartbeat-ms', '50']);
    await c.add('h1');
    const api = apiOf(c);
    const old = await openPeer(c, 'h1', 'boot-old');
    const now = await openPeer(c, 'h1', 'boot-new');
    // what the earlier process had queued arrives after the later one was heard
    old.sock.write(frame(vminfo('ghost')));
    await eventually('the earlier connection is closed', () => (old.closed() ? true : undefined));
    expect(c.host('h1').log.some((l) => l.includes(`dropped a connection of an earlier process of ${PEER}`))).toBe(true);
    expect((await api('h1', 'GET', '/v1/vms/ghost')).status).toBe(404);
    // the same news from the later process is taken
    now.sock.write(frame(vminfo('ghost')));
    await eventually('the later process is heard', async () => ((await api('h1', 'GET', '/v1/vms/ghost')).status === 200 ? true : undefined));
    expect(now.closed()).toBe(false);
  }, 60_000);
});
