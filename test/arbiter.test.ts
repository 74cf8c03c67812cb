// The arbiter's contract, checked on both implementations: one winner per
// generation, latest(), unique stable host slots, and no hang when etcd is gone.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ArbiterError, FileArbiter, MAX_SLOT, type Arbiter } from '../host/cluster/arbiter.ts';
import { Etcd3 } from 'etcd3';
import { EtcdArbiter } from '../host/cluster/etcd-arbiter.ts';
import { freePorts, startEtcd, type TestEtcd } from './etcd.ts';

const ARBITER_URL = new URL('../host/cluster/arbiter.ts', import.meta.url).href;

interface Backend {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A new arbiter instance on namespace `ns`: instances on the same namespace share their state. */
  open(ns: string): Arbiter;
  /** Loses all of namespace `ns`'s state, as a removed directory or a wiped etcd would. */
  wipe(ns: string): Promise<void>;
  /** Loses only the cluster id of namespace `ns`. */
  dropId(ns: string): Promise<void>;
  /** Whether anything of namespace `ns` exists. */
  exists(ns: string): Promise<boolean>;
}

function fileBackend(): Backend {
  let dir = '';
  return {
    name: 'FileArbiter',
    async start() {
      dir = mkdtempSync(join(tmpdir(), 'ftvm-arbiter-'));
    },
    async stop() {
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    open: (ns) => new FileArbiter(join(dir, ns)),
    wipe: async (ns) => rmSync(join(dir, ns), { recursive: true, force: true }),
    dropId: async (ns) => rmSync(join(dir, ns, 'cluster')),
    exists: async (ns) => existsSync(join(dir, ns)),
  };
}

function etcdBackend(): Backend {
  let etcd: TestEtcd | undefined;
  return {
    name: 'EtcdArbiter',
    async start() {
      etcd = await startEtcd();
    },
    async stop() {
      await etcd?.stop();
    },
    open: (ns) => new EtcdArbiter({ endpoints: [etcd!.endpoint], prefix: `${ns}/` }),
    wipe: (ns) => withEtcd(async (c) => void (await c.delete().prefix(`${ns}/`))),
    dropId: (ns) => withEtcd(async (c) => void (await c.delete().key(`${ns}/cluster`))),
    exists: (ns) => withEtcd(async (c) => (await c.getAll().prefix(`${ns}/`).keys()).length > 0),
  };
  async function withEtcd<T>(f: (c: Etcd3) => Promise<T>): Promise<T> {
    const c = new Etcd3({ hosts: [etcd!.endpoint] });
    try {
      return await f(c);
    } finally {
      c.close();
    }
  }
}

describe.each([fileBackend(), etcdBackend()])('$name', (backend) => {
  const instances: Arbiter[] = [];
  const arbiter = (ns: string): Arbiter => {
    const a = backend.open(ns);
    instances.push(a);
    return a;
  };

  beforeAll(() => backend.start(), 20_000);
  afterEach(async () => {
    await Promise.all(instances.splice(0).map((a) => a.close()));
  });
  afterAll(() => backend.stop(), 10_000);

  it('gives a generation to exactly one of many concurrent claimants', async () => {
    // Separate instances, as separate hosts would have (for etcd: separate connections).
    const claimants = Array.from({ length: 20 }, () => arbiter('race'));
    const won = await Promise.all(claimants.map((a, i) => a.claim('vm1', 7, `host-${i}`)));
    expect(won.filter(Boolean)).toHaveLength(1);
    const winner = won.indexOf(true);
    expect(await claimants[0].latest('vm1')).toEqual({ gen: 7, host: `host-${winner}` });
    // A second claim of a taken generation fails, even by its owner.
    expect(await claimants[winner].claim('vm1', 7, `host-${winner}`)).toBe(false);
  });

  it('claims generations independently; latest() is the highest and its owner', async () => {
    const a = arbiter('gens');
    expect(await a.latest('vm1')).toBeNull();
    // 10 after 9 and 2: the order is numeric, not textual.
    expect(await a.claim('vm1', 2, 'h1')).toBe(true);
    expect(await a.claim('vm1', 10, 'h2')).toBe(true);
    expect(await a.claim('vm1', 9, 'h3')).toBe(true);
    expect(await a.claim('vm1', 2, 'h3')).toBe(false);
    expect(await a.latest('vm1')).toEqual({ gen: 10, host: 'h2' });
    // Another VM, including one whose name extends this one's, is separate.
    expect(await a.latest('vm')).toBeNull();
    expect(await a.latest('vm10')).toBeNull();
    expect(await a.claim('vm10', 10, 'h1')).toBe(true);
    expect(await a.latest('vm10')).toEqual({ gen: 10, host: 'h1' });
    expect(await a.latest('vm1')).toEqual({ gen: 10, host: 'h2' });
    // Namespaces (directories, key prefixes) do not see each other.
    expect(await arbiter('gens-other').latest('vm1')).toBeNull();
  });

  it('rejects bad names and generations with ArbiterError', async () => {
    const a = arbiter('bad');
    await expect(a.claim('bad/name', 1, 'h1')).rejects.toThrow(ArbiterError);
    await expect(a.claim('..', 1, 'h1')).rejects.toThrow(ArbiterError);
    await expect(a.claim('vm1', 1, '')).rejects.toThrow(ArbiterError);
    await expect(a.claim('vm1', 0, 'h1')).rejects.toThrow(ArbiterError);
    await expect(a.claim('vm1', -1, 'h1')).rejects.toThrow(ArbiterError);
    await expect(a.claim('vm1', 1.5, 'h1')).rejects.toThrow(ArbiterError);
    await expect(a.latest('a b')).rejects.toThrow(ArbiterError);
    await expect(a.register({ id: 'x/y', peer: 'p:1', client: 'c:1' })).rejects.toThrow(ArbiterError);
    expect(await a.latest('vm1')).toBeNull();
  });

  it('gives hosts unique slots, kept when a host registers again', async () => {
    const ids = ['h3', 'h1', 'h5', 'h2', 'h4'];
    const rec = (id: string, port: number) => ({ id, peer: `127.0.0.1:${port}`, client: `127.0.0.1:${port + 1}` });
    const slots = await Promise.all(ids.map((id, i) => arbiter('hosts').register(rec(id, 9000 + 10 * i))));
    expect(new Set(slots).size).toBe(ids.length);
    for (const s of slots) expect(s >= 1 && s <= MAX_SLOT).toBe(true);

    const a = arbiter('hosts');
    const h1 = slots[ids.indexOf('h1')];
    expect(await a.register(rec('h1', 7000))).toBe(h1);
    const listed = await a.hosts();
    expect(listed.map((h) => h.id)).toEqual(['h1', 'h2', 'h3', 'h4', 'h5']);
    expect(listed[0]).toEqual({ ...rec('h1', 7000), slot: h1 });
    expect(listed.map((h) => h.slot).sort()).toEqual([...slots].sort());

    const h6 = await a.register(rec('h6', 8000));
    expect(slots).not.toContain(h6);
    expect(await arbiter('hosts-other').hosts()).toEqual([]);
  });

  it('hands each slot\'s connection-id blocks out once, in order, across instances and concurrent takers', async () => {
    const a = arbiter('conns');
    expect([await a.connBlock(1), await a.connBlock(1), await a.connBlock(2), await a.connBlock(1)]).toEqual([0, 1, 0, 2]);
    // a restarted host (a new instance) goes on after the last block taken
    expect(await arbiter('conns').connBlock(1)).toBe(3);
    const racing = await Promise.all(Array.from({ length: 12 }, () => arbiter('conns').connBlock(5)));
    expect([...racing].sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    await expect(a.connBlock(0)).rejects.toThrow(ArbiterError);
    await expect(a.connBlock(MAX_SLOT + 1)).rejects.toThrow(ArbiterError);
    await expect(a.connBlock(1.5)).rejects.toThrow(ArbiterError);
    await backend.wipe('conns');
    await expect(a.connBlock(1)).rejects.toThrow(/gone|lost/);
  });

  it('opened with the id a host remembers: the same is taken, none is not made anew, another is refused', async () => {
    const id = await arbiter('known').open();
    expect(await arbiter('known').open(id)).toBe(id);
    // a host that was in a cluster here, restarted while the state is gone: refused, and nothing is made
    await expect(arbiter('known-gone').open(id)).rejects.toThrow(/held this host's cluster .* now holds no cluster/);
    expect(await backend.exists('known-gone')).toBe(false);
    const other = await arbiter('known-other').open();
    await expect(arbiter('known-other').open(id)).rejects.toThrow(/now holds another/);
    expect(other).not.toBe(id);
    expect(arbiter('known').location).toBe(arbiter('known').location);
    expect(arbiter('known').location).not.toBe(arbiter('known-other').location);
  });

  it('holds one cluster id per namespace, the same for every instance', async () => {
    const ids = await Promise.all(Array.from({ length: 8 }, () => arbiter('id').open()));
    expect(new Set(ids).size).toBe(1);
    expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(await arbiter('id-other').open()).not.toBe(ids[0]);
  });

  it('hosts starting at once on an empty arbiter all join the one cluster its first host makes', async () => {
    // each opens, then registers (state beside the id) while the others may still be opening
    for (let round = 0; round < 5; round++) {
      const ns = `fresh-${round}`;
      const joined = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const a = arbiter(ns);
          const id = await a.open();
          await a.register({ id: `h${i}`, peer: `p:${i}`, client: `c:${i}` });
          return id;
        }),
      );
      expect(new Set(joined).size).toBe(1);
    }
  });

  it('refuses every call once its state is lost, and never makes it again', async () => {
    const a = arbiter('lost');
    expect(await a.claim('vm1', 1, 'h1')).toBe(true);
    const slot = await a.register({ id: 'h1', peer: 'p:1', client: 'c:1' });
    await backend.wipe('lost');
    const gone = /gone|lost/;
    await expect(a.claim('vm1', 1, 'h2')).rejects.toThrow(ArbiterError);
    await expect(a.claim('vm1', 2, 'h2')).rejects.toThrow(gone);
    await expect(a.latest('vm1')).rejects.toThrow(gone);
    await expect(a.register({ id: 'h2', peer: 'p:2', client: 'c:2' })).rejects.toThrow(gone);
    await expect(a.hosts()).rejects.toThrow(gone);
    await expect(a.open()).rejects.toThrow(gone);
    // nothing was made again: a name, a generation or a slot handed out before cannot be handed out twice
    expect(await backend.exists('lost')).toBe(false);
    expect(slot).toBeGreaterThan(0);
  });

  it('refuses state whose cluster id was lost, on every instance, old or new', async () => {
    const a = arbiter('noid');
    expect(await a.claim('vm1', 3, 'h1')).toBe(true);
    await backend.dropId('noid');
    await expect(a.claim('vm1', 4, 'h1')).rejects.toThrow(ArbiterError);
    await expect(arbiter('noid').open()).rejects.toThrow(/no cluster/);
    await expect(arbiter('noid').latest('vm1')).rejects.toThrow(ArbiterError);
    await expect(arbiter('noid').register({ id: 'h9', peer: 'p:9', client: 'c:9' })).rejects.toThrow(ArbiterError);
  });

  it('a cluster made again where one was lost is another cluster: its instances and the old ones refuse each other', async () => {
    const old = arbiter('again');
    const oldId = await old.open();
    await backend.wipe('again');
    const fresh = arbiter('again');
    const freshId = await fresh.open();
    expect(freshId).not.toBe(oldId);
    expect(await fresh.claim('vm1', 1, 'h2')).toBe(true);
    await expect(old.claim('vm1', 2, 'h1')).rejects.toThrow(/another cluster/);
    await expect(old.latest('vm1')).rejects.toThrow(/another cluster/);
    expect(await fresh.latest('vm1')).toEqual({ gen: 1, host: 'h2' });
  });
});

describe('FileArbiter across processes', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ftvm-arbiter-procs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * One child: loads FileArbiter, says "ready", waits for a line on stdin (so
   * that all children claim at the same moment), then prints its result.
   */
  function child(host: string) {
    const code = `
      import { FileArbiter } from ${JSON.stringify(ARBITER_URL)};
      const a = new FileArbiter(${JSON.stringify(dir)});
      process.stdout.write('ready\\n');
      process.stdin.once('data', async () => {
        const won = await a.claim('vm1', 1, ${JSON.stringify(host)});
        process.stdout.write(won ? 'won\\n' : 'lost\\n');
        process.exit(0);
      });`;
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    /** After 'close' (not 'exit'), all its output has been read. */
    const closed = new Promise<void>((r) => p.once('close', () => r()));
    const ready = new Promise<void>((resolve, reject) => {
      p.stdout.on('data', () => out.startsWith('ready\n') && resolve());
      void closed.then(() => reject(new Error(`child ${host} ended before it was ready: ${err}`)));
    });
    return { p, host, ready, closed, lines: () => out.trim().split('\n'), stderr: () => err };
  }

  it('gives a generation to exactly one of several processes', async () => {
    const children = Array.from({ length: 6 }, (_, i) => child(`proc-${i}`));
    try {
      await Promise.all(children.map((c) => c.ready));
      for (const c of children) c.p.stdin.write('go\n');
      await Promise.all(children.map((c) => c.closed));
      const results = children.map((c) => c.lines().slice(1).join(' ') || `nothing (${c.stderr()})`);
      expect(results.filter((r) => r === 'won')).toHaveLength(1);
      expect(results.filter((r) => r === 'lost')).toHaveLength(children.length - 1);
      const winner = children[results.indexOf('won')].host;
      expect(await new FileArbiter(dir).latest('vm1')).toEqual({ gen: 1, host: winner });
    } finally {
      for (const c of children) c.p.kill('SIGKILL');
    }
  }, 20_000);
});

describe('EtcdArbiter opening while another host makes the cluster', () => {
  let etcd: TestEtcd | undefined;
  beforeAll(async () => {
    etcd = await startEtcd();
  }, 20_000);
  afterAll(() => etcd?.stop(), 10_000);

  it('joins the cluster whose state it finds after it read no cluster key, instead of calling that state lost', async () => {
    const first = new EtcdArbiter({ endpoints: [etcd!.endpoint], prefix: 'race/' });
    const second = new EtcdArbiter({ endpoints: [etcd!.endpoint], prefix: 'race/' });
    try {
      // the second host reads the cluster key just before the first makes it...
      const client = (second as unknown as { client: Etcd3 }).client;
      const get = client.get.bind(client);
      let reads = 0;
      client.get = ((key: string) => (reads++ === 0 ? { string: async () => null } : get(key))) as unknown as Etcd3['get'];
      // ...and the first makes it and registers before the second looks for other state
      const id = await first.open();
      await first.register({ id: 'h1', peer: 'p:1', client: 'c:1' });
      expect(await second.open()).toBe(id);
      expect(reads).toBeGreaterThan(1);
      expect(await second.register({ id: 'h2', peer: 'p:2', client: 'c:2' })).not.toBe(await first.register({ id: 'h1', peer: 'p:1', client: 'c:1' }));
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });
});

describe('EtcdArbiter without etcd', () => {
  it('rejects with ArbiterError instead of hanging', async () => {
    const [port] = await freePorts(1);
    const a = new EtcdArbiter({ endpoints: [`127.0.0.1:${port}`], timeoutMs: 500 });
    try {
      await expect(a.claim('vm1', 1, 'h1')).rejects.toThrow(/etcd unreachable/);
      await expect(a.claim('vm1', 1, 'h1')).rejects.toThrow(ArbiterError);
      await expect(a.latest('vm1')).rejects.toThrow(ArbiterError);
      await expect(a.register({ id: 'h1', peer: 'p:1', client: 'c:1' })).rejects.toThrow(ArbiterError);
      await expect(a.hosts()).rejects.toThrow(/etcd unreachable/);
    } finally {
      await a.close();
    }
  });

  it('rejects with ArbiterError when the endpoint accepts connections but never answers', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const a = new EtcdArbiter({ endpoints: [`127.0.0.1:${port}`], timeoutMs: 300 });
    try {
      await expect(a.latest('vm1')).rejects.toThrow(/etcd unreachable/);
    } finally {
      await a.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe('FileArbiter between processes', () => {
  it('a host that reads the cluster file its maker has just written, before the maker made the rest, joins and registers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-arbiter-race-'));
    try {
      // what another process leaves between linking the id file and making the parts
      writeFileSync(join(dir, 'cluster'), 'c1');
      const a = new FileArbiter(dir);
      expect(await a.open()).toBe('c1');
      const slot = await a.register({ id: 'h1', peer: 'p:1', client: 'c:1' });
      expect(slot).toBeGreaterThan(0);
      expect((await a.hosts()).map((h) => h.id)).toEqual(['h1']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
