// Proves that a host survives whatever a peer that knows the cluster secret
// sends after a valid handshake: every peer message type (host/ft/messages.ts)
// with right-typed and junk fields, about VMs other than the one this test
// keeps. A malformed message is refused with FTVM_ERR_BAD_MESSAGE and counted;
// a well-formed one about a VM the host does not run changes nothing it runs.
// The host never dies, goes on serving clients, and the kept VM answers from
// the same state on the same generation afterwards (nothing failed over).
// Seeded: a failure names its seed and the shrunk input; a longer hunt:
// FTVM_FUZZ_RUNS=2000 FTVM_FUZZ_SEED=$RANDOM npx vitest run test/fuzz.peer.test.ts

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WIRE_VERSION } from '../host/cluster/wire.ts';
import { apiOf, askVm, Cluster, eventually } from './cluster.ts';
import { frame, openPeer, type Peer } from './peer-wire.ts';

const RUNS = Number(process.env.FTVM_FUZZ_RUNS ?? 150);
const SEED = Number(process.env.FTVM_FUZZ_SEED ?? 2024);
const KEEPER = 'keeper';
const HOSTS = ['h1', 'h2'];
/** The peer id the fuzzing speaks as: a host that knows the secret but is no member. */
const STRANGER = 'h9';

const cluster = new Cluster(['--fail-ms', '2000', '--heartbeat-ms', '50']);
const api = apiOf(cluster);
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 2 ** 32, 1.5, '', 'x'),
  fc.integer(),
  fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
  fc.string({ maxLength: 12 }),
  fc.uint8Array({ maxLength: 24 }),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom('toString', '__proto__', 'stdout', 'x'), fc.integer(), { maxKeys: 2 }),
);
const or = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ arbitrary: a, weight: 4 }, { arbitrary: junk, weight: 1 });

/** A peer message: one of the protocol's types, its fields right-typed or junk, never about the kept VM. */
const peerMessage: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    t: or(fc.constantFrom('hb', 'snapchunk', 'rings', 'backup', 'log', 'ack', 'mod-offer', 'mod-need', 'mod-chunk', 'fwd', 'busy', 'out', 'in-ack', 'in-resend', 'primary', 'adopt', 'conn-owner', 'backup-failed', 'failover', 'stop', 'vminfo', 'admin', 'out-read', 'out-res', 'admin-res', 'start-fwd', 'start-res')),
    v: fc.oneof({ arbitrary: fc.constant(WIRE_VERSION), weight: 8 }, { arbitrary: junk, weight: 1 }),
    vm: or(fc.constantFrom('fz1', 'fz2')),
    gen: or(fc.nat(5)),
    id: or(fc.integer({ min: 0, max: 1000 })),
    // connection ids of a slot no host has (127), so no client of this test is redirected
    conn: or(fc.integer({ min: 0x7f000000, max: 0x7fffffff })),
    seq: or(fc.integer({ min: -1, max: 100 })),
    first: or(fc.nat(100)),
    last: or(fc.nat(100)),
    at: or(fc.nat(1 << 20)),
    total: or(fc.nat(1 << 21)),
    count: or(fc.bigInt({ min: 0n, max: 1n << 40n })),
    bytes: or(fc.uint8Array({ maxLength: 64 })),
    data: or(fc.uint8Array({ maxLength: 64 })),
    frame: or(fc.uint8Array({ maxLength: 64 })),
    eof: or(fc.boolean()),
    hops: or(fc.nat(4)),
    host: or(fc.constantFrom('h1', 'h2', STRANGER)),
    owner: or(fc.constantFrom('h1', 'h2', STRANGER)),
    op: or(fc.constantFrom('failover', 'restart-backup')),
    stream: or(fc.constantFrom('stdout', 'stderr')),
    from: or(fc.nat(100)),
    after: or(fc.integer({ min: -1, max: 100 })),
    waitMs: or(fc.nat(50)),
    released: or(fc.integer({ min: -1, max: 100 })),
    acks: or(fc.array(fc.tuple(fc.integer({ min: 0x7f000000, max: 0x7fffffff }), fc.nat(100)), { maxLength: 3 })),
    hash: or(fc.stringMatching(/^[0-9a-f]{64}$/)),
    moduleHash: or(fc.stringMatching(/^[0-9a-f]{64}$/)),
    snapshot: or(fc.constant(null)),
    info: or(fc.record({ name: fc.constantFrom('fz1', 'fz2'), gen: fc.nat(5), primary: fc.constantFrom('h1', STRANGER), state: fc.constantFrom('running', 'ended') })),
  },
  { requiredKeys: ['t', 'v'] },
);

/** A connection to `host`'s peer port, authenticated as STRANGER with the cluster secret. */
const openPeerAs = (host: string): Promise<Peer> => openPeer(cluster, host, STRANGER);

let conn = 0;
let before: { gen: number; primary: string; backup: string };

/** Sends one kv request to the keeper through `host` and waits (bounded) for its answer. */
const ask = (host: string, line: string): Promise<string> => askVm(api, host, KEEPER, conn, line);

beforeAll(async () => {
  for (const id of HOSTS) await cluster.add(id);
  await cluster.linked();
  expect((await api('h1', 'POST', '/v1/vms', { name: KEEPER, sample: 'kv' })).status).toBe(201);
  const primary = (await api('h1', 'GET', `/v1/vms/${KEEPER}`)).json.primary as string;
  conn = ((await api(primary, 'POST', '/v1/connections')).json as { conn: number }).conn;
  expect(await ask(primary, 'a SET k 1')).toBe('a OK 1');
  before = (await api('h1', 'GET', `/v1/vms/${KEEPER}`)).json;
}, 120_000);
afterAll(() => cluster.stop());

describe('the peer port after a valid handshake, fuzzed', () => {
  it('every message type with junk fields: refused or harmless, the host alive and serving, the kept VM untouched', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...HOSTS), fc.array(peerMessage, { minLength: 1, maxLength: 4 }), async (host, msgs) => {
        const p = await openPeerAs(host);
        try {
          for (const m of msgs) if (!p.isClosed()) p.sock.write(frame(m));
          // a bound for the host to act on them (its answers, if any, are not what is checked)
          const until = Date.now() + 50;
          while (Date.now() < until) await new Promise((r) => setTimeout(r, 5));
          for (const id of HOSTS) expect(cluster.host(id).proc.exitCode, `host ${id} after ${fc.stringify(msgs)} to ${host}`).toBeNull();
        } finally {
          p.sock.destroy();
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
    for (const id of HOSTS) expect((await fetch(`${cluster.host(id).api}/healthz`)).status).toBe(200);
    expect(await ask(before.primary, `c${Date.now()} GET k`)).toMatch(/ VALUE 1$/);
    const after = (await api('h1', 'GET', `/v1/vms/${KEEPER}`)).json;
    expect(after).toMatchObject({ name: KEEPER, gen: before.gen, primary: before.primary, backup: before.backup, state: 'running' });
  }, 300_000);
});
