// `ftvm demo`: a VM survives a killed machine, on a local cluster.
//
// Three host processes on loopback share a file arbiter in a temporary
// directory. The key-value sample starts with its primary on h1 and its backup
// on h2; a client connected to h1 (knowing h2 and h3 too) writes to it
// steadily. h1 is killed with kill -9: h2 takes over, the client comes back on
// another host with its connection, a new backup is made on h3 from a snapshot,
// and every write the client saw acknowledged is read back. The summary ends
// with the number of acknowledged writes lost, which must be 0.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { LocalCluster, eventually } from '../cluster/local.ts';
import { KvLoad } from '../cluster/kv-load.ts';
import type { FtClient } from '../cluster/client.ts';
import { guestPath } from '../runtime/samples.ts';

type VmInfo = { role: string; gen: number; partner: string | null; alone: boolean; recreate: { memoryBytes: number; pauseMs: number; ms: number | null } | null };

async function vmOn(c: FtClient, vm: string): Promise<VmInfo | undefined> {
  return ((await c.status()).vms as (VmInfo & { name: string })[]).find((v) => v.name === vm);
}

export async function clusterDemo(say: (line: string) => void): Promise<number> {
  const kv = new Uint8Array(readFileSync(guestPath('kv.wasm')));
  const c = new LocalCluster(['--fail-ms', '500', '--heartbeat-ms', '50']);
  try {
    say('1. starting three hosts on loopback (h1, h2, h3; file arbiter in a temporary directory)');
    await Promise.all(['h1', 'h2', 'h3'].map((id) => c.add(id)));
    await c.linked();
    const admin = await c.client('h1');
    const started = await admin.start('kv', kv);
    say(`2. started the kv sample: primary on ${String(started.primary)}, backup on ${String(started.backup)}`);
    const client = await c.clientOf(['h1', 'h2', 'h3']);
    client.on('reconnect', (host) => say(`   the client came back on ${host}, with its connection id`));
    const load = new KvLoad(client, 'kv');
    load.start();
    say('3. a client connected to h1 (it knows h2 and h3 too) writes unique keys (about 600 writes/s), each retried until answered');
    await new Promise((r) => setTimeout(r, 2000));
    say(`   ${load.acked.size} writes acknowledged so far`);
    const sentBefore = load.sent;
    say("4. kill -9 of h1, the primary's host and the client's");
    await c.kill('h1');
    const killedAt = performance.now();
    // the first write sent after the kill that gets an answer: the new primary is live
    const firstAnswer = await eventually(
      'an answer from the new primary',
      () => {
        let best = Infinity;
        for (const [id, at] of load.answeredAt) if (Number(id.slice(1)) >= sentBefore && at < best) best = at;
        return best < Infinity ? best : undefined;
      },
      30_000,
    );
    const failoverMs = firstAnswer - killedAt;
    const h2 = await c.client('h2');
    const v = await eventually(
      'a new backup',
      async () => {
        const x = await vmOn(h2, 'kv');
        return x && x.role === 'primary' && x.partner && !x.alone && x.recreate?.ms != null ? x : undefined;
      },
      30_000,
    );
    say(`5. h2 won generation ${v.gen} at the arbiter and went live: the first answer came ${failoverMs.toFixed(0)} ms after the kill`);
    say(`6. a new backup runs on ${v.partner}, made from a snapshot (${(v.recreate!.memoryBytes / 1048576).toFixed(1)} MiB, the primary paused ${v.recreate!.pauseMs.toFixed(1)} ms, ${v.recreate!.ms!.toFixed(0)} ms in all)`);
    await new Promise((r) => setTimeout(r, 1000));
    load.stop();
    await load.drain();
    const lost = await load.verify();
    say('7. every acknowledged write read back from the new primary');
    say('');
    say('summary');
    say(`  failover time (kill -9 to the new primary's first answer)  ${failoverMs.toFixed(0)} ms`);
    say(`  writes sent                                               ${load.sent}`);
    say(`  writes acknowledged                                       ${load.acked.size}`);
    say(`  client reconnects (same connection id)                    ${client.reconnects}`);
    say(`  duplicate outputs dropped by the client                   ${client.duplicates}`);
    say(`  outputs out of order                                      ${client.outOfOrder}`);
    say(`  acknowledged writes lost                                  ${lost.length}`);
    const ok = lost.length === 0 && client.outOfOrder === 0;
    say(ok ? 'the VM survived the loss of its host' : 'FAILED: acknowledged writes were lost or outputs reordered');
    return ok ? 0 : 1;
  } finally {
    await c.stop();
  }
}
