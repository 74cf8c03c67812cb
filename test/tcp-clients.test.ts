// Real clients (curl, redis-cli, redis-benchmark) against the http and kvresp
// samples through a cluster's published ports: every host serves them, and a
// pipelined load through a surviving host rides out kill -9 of the primary's
// host with no error and every INCR applied once.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { apiOf, Cluster, eventually } from './cluster.ts';

let c: Cluster | null = null;
afterEach(async () => {
  await c?.stop();
  c = null;
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Runs a client to its end (bounded): its exit code and output. */
function client(cmd: string, args: string[], ms = 180_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: ms, maxBuffer: 64 << 20, encoding: 'latin1' }, (e, stdout, stderr) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stdout, stderr }),
    );
  });
}

/** The http sample's /big body: byte i = 'a' + ((i ^ (i >> 7)) % 26). */
function bigBody(): Buffer {
  const b = Buffer.alloc(1_000_000);
  for (let i = 0; i < b.length; i++) b[i] = 97 + (((i ^ (i >> 7)) >>> 0) % 26);
  return b;
}

/** Three hosts and a VM of `sample` publishing one port; resolves once every host serves it. */
async function published(sample: string): Promise<{ port: number; hosts: Record<string, string> }> {
  c = new Cluster();
  await Promise.all(['h1', 'h2', 'h3'].map((id) => c!.add(id)));
  await c.linked();
  const api = apiOf(c);
  const port = await freePort();
  const r = await api('h1', 'POST', '/v1/vms', { name: sample, sample, publish: [port] });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  await eventually('a backup', async () => ((await api('h1', 'GET', `/v1/vms/${sample}`)).json.state === 'running' ? true : undefined));
  const hosts = Object.fromEntries(['h1', 'h2', 'h3'].map((id) => [id, c!.host(id).public]));
  return { port, hosts };
}

describe('real clients through published ports', () => {
  it('curl against http through every host: a page, keep-alive, the 1 MB body and a chunked request', async () => {
    const { port, hosts } = await published('http');
    const big = createHash('sha256').update(bigBody()).digest('hex');
    for (const [id, addr] of Object.entries(hosts)) {
      const url = `http://${addr}:${port}`;
      // a host opens the port once it hears of the VM: curl tries again while it is refused
      const page = await client('curl', ['-sS', '--retry', '20', '--retry-connrefused', '--retry-delay', '1', '-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{num_connects}', url + '/', url + '/']);
      expect(page.code, `${id}: ${page.stderr}`).toBe(0);
      // two requests, one connection (keep-alive)
      expect(page.stdout).toBe('200 1200 0');
      const body = await client('curl', ['-sS', url + '/big']);
      expect(body.code, body.stderr).toBe(0);
      expect(body.stdout.length).toBe(1_000_000);
      expect(createHash('sha256').update(Buffer.from(body.stdout, 'latin1')).digest('hex'), `${id}: /big`).toBe(big);
      const chunked = await client('curl', ['-sS', '-H', 'Transfer-Encoding: chunked', '--data-binary', 'x'.repeat(100_000), url + '/sum']);
      expect(chunked.code, chunked.stderr).toBe(0);
      expect(chunked.stdout).toMatch(/100000/);
    }
  });

  it('redis-cli against kvresp through every host sees one store', async () => {
    const { port, hosts } = await published('kvresp');
    const cli = async (addr: string, ...args: string[]) => {
      const r = await client('redis-cli', ['-h', addr, '-p', String(port), ...args]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    await eventually('h3 serves the port', async () => ((await client('redis-cli', ['-h', hosts.h3!, '-p', String(port), 'PING'])).stdout.trim() === 'PONG' ? true : undefined));
    expect(await cli(hosts.h1!, 'SET', 'a', '1')).toBe('OK');
    expect(await cli(hosts.h2!, 'INCR', 'a')).toBe('2');
    expect(await cli(hosts.h3!, 'MGET', 'a', 'nope')).toBe('2');
    expect(await cli(hosts.h3!, 'EXISTS', 'a', 'nope')).toBe('1');
    expect(await cli(hosts.h2!, 'DEL', 'a')).toBe('1');
    expect(await cli(hosts.h1!, 'GET', 'a')).toBe('');
  });

  it("redis-benchmark through a surviving host rides out kill -9 of the primary's host: no error, every INCR applied once", async () => {
    const { port, hosts } = await published('kvresp');
    const at = (id: string) => ['-h', hosts[id]!, '-p', String(port)];
    await eventually('h3 serves the port', async () => ((await client('redis-cli', [...at('h3'), 'PING'])).stdout.trim() === 'PONG' ? true : undefined));
    const N = 40_000; // a multiple of the pipeline (16): exactly N INCRs are sent
    const bench = client('redis-benchmark', [...at('h3'), '-t', 'incr', '-n', String(N), '-P', '16', '-c', '8', '-q'], 300_000);
    // kill the primary's host while the load runs
    await eventually('the load under way', async () => Number((await client('redis-cli', [...at('h2'), 'GET', 'counter:__rand_int__'])).stdout.trim() || 0) > N / 10 || undefined, 120_000);
    await c!.kill('h1');
    const r = await bench;
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/error|reset/i);
    expect((await client('redis-cli', [...at('h2'), 'GET', 'counter:__rand_int__'])).stdout.trim()).toBe(String(N));
    const info = (await apiOf(c!)('h2', 'GET', '/v1/vms/kvresp')).json;
    expect(info.primary).not.toBe('h1');
  });
});
