// The status page at GET /ui, driven in Debian's headless Chromium against a
// real cluster of two host processes. It proves that the page shows the hosts
// and a VM with its replicas, charts lag and log rate under load, drives a
// test failover (the backup is re-created) and a kill, refuses a wrong token
// and then takes the right one from its form, shows API errors by their codes,
// stays readable with fields missing, and never turns a VM name into markup.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import type { TestHost } from '../host/cluster/local.ts';
import { Cluster } from './cluster.ts';

const CHROMIUM = '/usr/bin/chromium';
/** the longest any one wait in this file may take */
const WAIT_MS = 30_000;
const TEST_MS = 120_000;
/** the charts' height and padding in ui.html: a point below the bottom edge would be a negative value */
const CHART_Y_MAX = 48 - 3;

let cluster: Cluster | null = null;
let browser: Browser | null = null;
let h1: TestHost;
let token: string;
/** the page of the first three tests, opened with the token in its fragment */
let page: Page;
const pageErrors: string[] = [];

async function rest(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const r = await fetch(`${h1.api}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser!.newContext();
  const p = await context.newPage();
  p.setDefaultTimeout(WAIT_MS);
  return { context, page: p };
}

const field = (row: Locator, name: string) => row.locator(`[data-field="${name}"]`);
const points = async (row: Locator, chart: 'lag' | 'lograte') => Number(await row.locator(`svg[data-chart="${chart}"] polyline`).getAttribute('data-points'));

/** Sends `<id> SET x <id>` on a few API connections until stopped, ignoring refusals (during a failover). */
class Load {
  private stopped = false;
  private done: Promise<void> = Promise.resolve();
  sent = 0;

  start(conns: number[]): void {
    this.done = (async () => {
      while (!this.stopped) {
        await Promise.all(conns.map((conn) => rest('POST', '/v1/vms/kv/messages', { conn, data: `${++this.sent} SET x ${this.sent}` }).catch(() => null)));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: \`make chromium\` installs it`);
  cluster = new Cluster();
  token = cluster.token;
  h1 = await cluster.add('h1');
  await cluster.add('h2');
  await cluster.linked();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: WAIT_MS });
}, TEST_MS);

afterAll(async () => {
  try {
    await browser?.close();
  } finally {
    await cluster?.stop();
  }
});

describe('the status page', () => {
  it('serves one self-contained page without the token, and forbids anything but itself', async () => {
    const r = await fetch(`${h1.api}/ui`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(r.headers.get('content-security-policy')).toMatch(/default-src 'none'.*connect-src 'self'/);
    const html = await r.text();
    expect(html).toMatch(/^<!doctype html>/i);
    // no external resources of any kind
    expect(html).not.toMatch(/\b(src|href)=["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(/i);
  });

  it('shows the hosts and the VM with its replicas, and charts lag and log rate under load', async () => {
    expect((await rest('POST', '/v1/vms', { name: 'kv', sample: 'kv' })).status).toBe(201);
    ({ page } = await newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && /Content Security Policy/i.test(m.text()) && pageErrors.push(m.text()));
    await page.goto(`${h1.api}/ui#token=${token}`);

    const row = page.locator('tr[data-vm="kv"]');
    await row.waitFor();
    // the token left the address bar once the page had it
    expect(page.url()).toBe(`${h1.api}/ui`);
    expect(await page.locator('#self').textContent()).toBe('h1');
    await expect.poll(() => page.locator('#hosts li[data-alive="true"]').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-host'))), { timeout: WAIT_MS }).toEqual(['h1', 'h2']);
    await expect.poll(() => field(row, 'primary').textContent(), { timeout: WAIT_MS }).toBe('h1');
    await expect.poll(() => field(row, 'backup').textContent(), { timeout: WAIT_MS }).toBe('h2');
    expect(await field(row, 'gen').textContent()).toBe('1');
    expect(await field(row, 'name').textContent()).toBe('kv');

    // the VM answers, then keeps getting load while the page polls
    const conns = await Promise.all([0, 1, 2].map(async () => ((await rest('POST', '/v1/connections')).json as { conn: number }).conn));
    expect((await rest('POST', '/v1/vms/kv/messages', { conn: conns[0], data: 'a SET x 1' })).status).toBe(202);
    const outs = (await rest('GET', `/v1/vms/kv/outputs?conn=${conns[0]}&waitMs=${WAIT_MS / 2}`)).json as { data: string }[];
    expect(outs.map((o) => o.data)).toEqual(['a OK 1']);
    const load = new Load();
    load.start(conns);
    try {
      const before = { lag: await points(row, 'lag'), lograte: await points(row, 'lograte') };
      await expect.poll(() => points(row, 'lag'), { timeout: WAIT_MS }).toBeGreaterThanOrEqual(before.lag + 3);
      await expect.poll(() => points(row, 'lograte'), { timeout: WAIT_MS }).toBeGreaterThanOrEqual(before.lograte + 3);
      // bytes of log flow to the backup: the rate is above zero, in the chart and in the table
      await expect.poll(() => row.locator('svg[data-chart="lograte"] text').textContent(), { timeout: WAIT_MS }).toMatch(/^max [1-9]/);
      await expect.poll(() => field(row, 'lograte').textContent(), { timeout: WAIT_MS }).toMatch(/^[1-9][\d.]* (B|kB|MB)\/s$/);
      expect(await field(row, 'lagMs').textContent()).toMatch(/^[\d.,]+ ms$/);
      expect(await field(row, 'count').textContent()).toMatch(/^[\d,]+$/);
      expect(await field(row, 'state').textContent()).toBe('running');
    } finally {
      await load.stop();
    }
    expect(load.sent).toBeGreaterThan(0);
  }, TEST_MS);

  it('"Test failover" moves the primary to h2 in generation 2; a new backup is made on h1', async () => {
    const row = page.locator('tr[data-vm="kv"]');
    const conns = await Promise.all([0, 1].map(async () => ((await rest('POST', '/v1/connections')).json as { conn: number }).conn));
    const load = new Load();
    load.start(conns);
    try {
      await row.locator('[data-action="failover"]').click();
      await expect.poll(() => page.locator('#status').textContent(), { timeout: WAIT_MS }).toBe('failover of kv requested');
      await expect.poll(async () => [await field(row, 'primary').textContent(), await field(row, 'gen').textContent()], { timeout: WAIT_MS }).toEqual(['h2', '2']);
      await expect.poll(() => field(row, 'backup').textContent(), { timeout: WAIT_MS }).toBe('h1');
      // the log count starts over on the new primary; the page skips that drop rather than charting a negative rate
      const rateBefore = await points(row, 'lograte');
      await expect.poll(() => points(row, 'lograte'), { timeout: WAIT_MS }).toBeGreaterThanOrEqual(rateBefore + 2);
      const ys = (await row.locator('svg[data-chart="lograte"] polyline').getAttribute('points'))!.split(' ').map((p) => Number(p.split(',')[1]));
      expect(ys.length).toBeGreaterThan(0);
      for (const y of ys) expect(y).toBeLessThanOrEqual(CHART_Y_MAX);
    } finally {
      await load.stop();
    }
  }, TEST_MS);

  it('"Kill" asks first, then the VM is gone from the table and from the API', async () => {
    const row = page.locator('tr[data-vm="kv"]');
    const asked: string[] = [];
    page.once('dialog', (d) => {
      asked.push(`${d.type()}: ${d.message()}`);
      void d.accept();
    });
    await row.locator('[data-action="kill"]').click();
    await row.waitFor({ state: 'detached' });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatch(/^confirm: .*kv/);
    expect(await page.locator('#status').textContent()).toBe('kv killed');
    expect(await page.locator('#empty').isVisible()).toBe(true);
    expect((await rest('GET', '/v1/vms/kv')).status).toBe(404);
    expect(pageErrors).toEqual([]);
  }, TEST_MS);

  it('a wrong token is refused with a clear message; the form then takes the right one', async () => {
    const { context, page: p } = await newPage();
    try {
      await p.goto(`${h1.api}/ui#token=wrong-token`);
      await expect.poll(() => p.locator('#auth-msg').textContent(), { timeout: WAIT_MS }).toMatch(/token refused/i);
      expect(await p.locator('#auth').isVisible()).toBe(true);
      expect(await p.locator('#main').isVisible()).toBe(false);
      await p.locator('#token-input').fill(token);
      await p.locator('#token-form button[type="submit"]').click();
      await expect.poll(() => p.locator('#self').textContent(), { timeout: WAIT_MS }).toBe('h1');
      expect(await p.locator('#auth').isVisible()).toBe(false);
      // a page opened with no token at all asks for one
      const { context: c2, page: p2 } = await newPage();
      try {
        await p2.goto(`${h1.api}/ui`);
        await p2.locator('#token-form').waitFor();
        expect(await p2.locator('#auth-msg').textContent()).not.toMatch(/refused/i);
      } finally {
        await c2.close();
      }
    } finally {
      await context.close();
    }
  }, TEST_MS);

  it('shows an action\'s error code and message in #status, "–" for missing fields, and VM names as text only', async () => {
    const { context, page: p } = await newPage();
    const hostile = '<img src=x onerror="window.__pwned=1">';
    try {
      // the host's real list plus two entries it would never send: one with the numbers missing, one named like markup
      await p.route(
        (url) => url.pathname === '/v1/vms',
        async (route) => {
          if (route.request().method() !== 'GET') return route.continue();
          const res = await route.fetch();
          const list = (await res.json()) as unknown[];
          await route.fulfill({ response: res, json: [...list, { name: 'ghost', primary: 'h1', backup: null, state: 'running', lagMs: -1, extra: { x: 1 } }, { name: hostile, gen: 1, primary: 'h1' }] });
        },
      );
      await p.goto(`${h1.api}/ui#token=${token}`);
      const ghost = p.locator('tr[data-vm="ghost"]');
      await ghost.waitFor();
      for (const f of ['gen', 'count', 'lagMs', 'lograte', 'backup']) expect(await field(ghost, f).textContent(), f).toBe('–');
      expect(await points(ghost, 'lag')).toBe(0);

      const names = await p.locator('tr[data-vm] [data-field="name"]').allTextContents();
      expect(names).toContain(hostile);
      expect(await p.locator('#vms img').count()).toBe(0);
      expect(await p.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();

      await ghost.locator('[data-action="failover"]').click();
      await expect.poll(() => p.locator('#status').textContent(), { timeout: WAIT_MS }).toMatch(/FTVM_ERR_NOT_FOUND: no VM named ghost$/);
      expect(await p.locator('#status').getAttribute('class')).toBe('error');
      await ghost.locator('[data-action="restart-backup"]').click();
      await expect.poll(() => p.locator('#status').textContent(), { timeout: WAIT_MS }).toMatch(/^Restart backup ghost failed — FTVM_ERR_NOT_FOUND: no VM named ghost$/);
    } finally {
      // the page polls on: a poll caught mid-route must not outlive the context
      await p.unrouteAll({ behavior: 'ignoreErrors' });
      await context.close();
    }
  }, TEST_MS);

  it('an ended VM shows how it ended: its exit status, or "trap" with the message on hover', async () => {
    expect((await rest('POST', '/v1/vms', { name: 'fib', sample: 'fib', args: ['10'] })).status).toBe(201);
    expect((await rest('POST', '/v1/vms', { name: 'trap', sample: 'trap', args: ['100'] })).status).toBe(201);
    const { context, page: p } = await newPage();
    try {
      await p.goto(`${h1.api}/ui#token=${token}`);
      await expect.poll(() => field(p.locator('tr[data-vm="fib"]'), 'state').textContent(), { timeout: WAIT_MS }).toBe('ended \u00b7 exit 0');
      const trap = field(p.locator('tr[data-vm="trap"]'), 'state');
      await expect.poll(() => trap.textContent(), { timeout: WAIT_MS }).toBe('ended \u00b7 trap');
      expect(await trap.locator('span').getAttribute('title')).toMatch(/\S/);
    } finally {
      await context.close();
    }
  }, TEST_MS);
});
