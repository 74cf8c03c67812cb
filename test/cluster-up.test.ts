// `ftvm cluster up` as a user runs it: a child process that brings up a local
// cluster, prints the API URLs and the token as one JSON line, serves the REST
// API on every host (a VM started through one host is seen and reached through
// another), and stops every host on SIGTERM.
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { eventually } from './cluster.ts';

const FTVM = fileURLToPath(new URL('../host/cli/ftvm.mjs', import.meta.url));

describe('ftvm cluster up', () => {
  it('brings up hosts with one token; the REST API starts a VM and reaches it through any host; SIGTERM stops them all', async () => {
    const proc = spawn(process.execPath, [FTVM, 'cluster', 'up', '--hosts', '2', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      let out = '';
      let err = '';
      proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const info = await eventually('the JSON line', () => (out.includes('\n') ? (JSON.parse(out.split('\n')[0]!) as { token: string; hosts: { id: string; pid: number; api: string }[] }) : undefined), 60_000);
      expect(info.hosts.map((h) => h.id)).toEqual(['h1', 'h2']);
      expect(info.hosts.every((h) => Number.isInteger(h.pid) && h.pid > 0)).toBe(true);
      const call = async (host: number, method: string, path: string, body?: unknown) => {
        const r = await fetch(`${info.hosts[host]!.api}${path}`, {
          method,
          headers: { authorization: `Bearer ${info.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        });
        return { status: r.status, json: (await r.json()) as Record<string, unknown> };
      };
      expect((await fetch(`${info.hosts[0]!.api}/v1/vms`)).status).toBe(401);
      const started = await call(0, 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
      expect(started.status).toBe(201);
      expect(started.json).toMatchObject({ primary: 'h1', backup: 'h2' });
      // through the other host: it knows the VM and forwards messages to the primary
      await eventually('h2 knows kv', async () => ((await call(1, 'GET', '/v1/vms/kv')).status === 200 ? true : undefined));
      const { conn } = (await call(1, 'POST', '/v1/connections')).json as { conn: number };
      expect((await call(1, 'POST', '/v1/vms/kv/messages', { conn, data: 'a SET x 1' })).status).toBe(202);
      const outs = (await call(1, 'GET', `/v1/vms/kv/outputs?conn=${conn}&waitMs=10000`)).json as unknown as { data: string }[];
      expect(outs.map((o) => o.data)).toEqual(['a OK 1']);
      // the same through `ftvm vm`
      const vm = (...args: string[]) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const p = spawn(process.execPath, [FTVM, 'vm', ...args, '--api', info.hosts[1]!.api, '--token', info.token], { stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
          p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
          p.once('exit', (code) => resolve({ code, stdout, stderr }));
        });
      const st = await vm('start', 'kv2', '--sample', 'kv');
      expect(st.code).toBe(0);
      expect(JSON.parse(st.stdout)).toMatchObject({ name: 'kv2', primary: 'h2', backup: 'h1' });
      const sent = await vm('send', 'kv2', 'q SET y 2');
      expect(JSON.parse(sent.stdout).map((o: { data: string }) => o.data)).toEqual(['q OK 1']);
      expect(JSON.parse((await vm('ls')).stdout).map((v: { name: string }) => v.name)).toEqual(['kv', 'kv2']);
      const nope = await vm('show', 'ghost');
      expect(nope.code).toBe(1);
      expect(nope.stderr).toMatch(/FTVM_ERR_NOT_FOUND: no VM named ghost/);
      // tail follows a connection's outputs while send writes on it
      const tailer = spawn(process.execPath, [FTVM, 'vm', 'tail', 'kv2', '--count', '2', '--api', info.hosts[0]!.api, '--token', info.token], { stdio: ['ignore', 'pipe', 'pipe'] });
      let tailOut = '';
      let tailErr = '';
      tailer.stdout.setEncoding('utf8').on('data', (d: string) => (tailOut += d));
      tailer.stderr.setEncoding('utf8').on('data', (d: string) => (tailErr += d));
      const tailDone = new Promise<number | null>((r) => tailer.once('exit', (code) => r(code)));
      try {
        const tconn = await eventually('tail says its connection', () => /connection (\d+)/.exec(tailErr)?.[1]);
        // the connection is h1's (tail asked h1), so send through h1
        const sendOn = (t: string) =>
          new Promise<number | null>((resolve) => {
            const p = spawn(process.execPath, [FTVM, 'vm', 'send', 'kv2', t, '--conn', tconn, '--wait-ms', '0', '--api', info.hosts[0]!.api, '--token', info.token], { stdio: 'ignore' });
            p.once('exit', resolve);
          });
        expect(await sendOn('t1 SET z 9')).toBe(0);
        expect(await sendOn('t2 GET z')).toBe(0);
        expect(await Promise.race([tailDone, new Promise((r) => setTimeout(() => r('timeout'), 30_000))])).toBe(0);
        expect(tailOut.trim().split('\n').map((l) => JSON.parse(l).data)).toEqual(['t1 OK 2', 't2 VALUE 9']);
      } finally {
        tailer.kill('SIGKILL');
      }
      // restart-backup is forwarded to kv2's primary (h2) and makes a new backup, generation 2
      expect((await vm('restart-backup', 'kv2')).code).toBe(0);
      await eventually('kv2 in generation 2 with a backup', async () => {
        const v = JSON.parse((await vm('show', 'kv2')).stdout);
        return v.gen === 2 && v.state === 'running' ? true : undefined;
      });
      // a command guest with stdin and limits
      const stdinFile = join(tmpdir(), `ftvm-stdin-${process.pid}`);
      writeFileSync(stdinFile, 'twelve bytes');
      try {
        const ent = await vm('start', 'ent', '--sample', 'entropy', '--stdin-file', stdinFile, '--memory-mib', '4', '--cpu-percent', '50', '--env', 'A=b');
        expect(ent.code).toBe(0);
        expect(JSON.parse(ent.stdout)).toMatchObject({ name: 'ent', memoryMiB: 4, cpuPercent: 50 });
        const bad = await vm('start', 'ent2', '--sample', 'entropy', '--memory-mib', 'lots');
        expect(bad.code).toBe(2); // a wrong command line
        expect(bad.stderr).toMatch(/^ftvm vm start: FTVM_ERR_USAGE: --memory-mib expects an integer/);
      } finally {
        rmSync(stdinFile, { force: true });
      }
      expect((await vm('kill', 'kv2')).code).toBe(0);
      expect((await vm('show', 'kv2')).code).toBe(1);
      // a host killed by its pid is said, and the other goes on serving
      process.kill(info.hosts[1]!.pid, 'SIGKILL');
      await eventually('the death said', () => (err.includes(`host h2 (pid ${info.hosts[1]!.pid}) exited (SIGKILL); the others go on`) ? true : undefined), 30_000);
      expect((await call(0, 'GET', '/v1/vms/kv')).status).toBe(200);
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 120_000);
});
