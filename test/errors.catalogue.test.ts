// What this proves: the error catalogue (host/errors.ts) is the one list of
// codes. Every FTVM_ERR_* code the sources raise is in it; every catalogued
// code is in the README's "Errors" table with the same HTTP status and exit
// status, and the table has no other row; the OpenAPI document's error schema
// lists exactly the catalogue's codes; the REST API answers each code with the
// catalogue's status, and the command line exits with the catalogue's status.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { FileArbiter } from '../host/cluster/arbiter.ts';
import { FtHost } from '../host/cluster/host.ts';
import { buildApi } from '../host/api/server.ts';
import { CliError, describeFailure } from '../host/cli/errors.ts';
import { ERROR_CATALOGUE, ERROR_CODES, FtvmError, isErrorCode, type FtvmErrorCode } from '../host/errors.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Strings that look like codes but are none: `FTVM_ERR_X` stands for "a code"
 * in help texts and comments, and `FTVM_ERR_HTTP_` prefixes the status of an
 * answer that carried no code (`ftvm vm`, FTVM_ERR_HTTP_502).
 */
const NOT_CODES = new Set(['FTVM_ERR_X', 'FTVM_ERR_HTTP_']);

/** Every FTVM_ERR_* string in host/'s sources (.ts, .mjs, .html), with a file that has it. */
function codesInSources(): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|mjs|html)$/.test(name)) {
        for (const m of readFileSync(path, 'utf8').matchAll(/FTVM_ERR_[A-Z0-9_]+/g)) if (!found.has(m[0])) found.set(m[0], path.slice(ROOT.length));
      }
    }
  };
  walk(join(ROOT, 'host'));
  return found;
}

/** The rows of the README's "Errors" table: code, HTTP status, exit status. */
function readmeRows(): [code: string, http: number, exit: number][] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Errors\n'), readme.indexOf('\n## ', readme.indexOf('\n## Errors\n') + 1));
  expect(section.length).toBeGreaterThan(100);
  return [...section.matchAll(/^\| `(FTVM_ERR_[A-Z0-9_]+)` \| (\d+) \| (\d+) \|/gm)].map((m) => [m[1]!, Number(m[2]), Number(m[3])]);
}

describe('the error catalogue', () => {
  it('holds every code the sources raise', () => {
    const missing = [...codesInSources()].filter(([code]) => !NOT_CODES.has(code) && !isErrorCode(code));
    expect(missing, 'codes raised in host/ but not in host/errors.ts').toEqual([]);
  });

  it('holds no code that nothing raises', () => {
    // a code named only in the catalogue itself is raised by no one
    expect(ERROR_CODES.filter((code) => countOutside(code) === 0)).toEqual([]);
  });

  it('is the README table, row for row, with the same statuses', () => {
    const rows = readmeRows();
    expect(rows.map(([c]) => c)).toEqual([...ERROR_CODES]);
    for (const [code, http, exit] of rows) expect([code, http, exit]).toEqual([code, ERROR_CATALOGUE[code as FtvmErrorCode].http, ERROR_CATALOGUE[code as FtvmErrorCode].exit]);
  });

  it('gives each code a status the HTTP and exit-status ranges allow', () => {
    for (const code of ERROR_CODES) {
      const { http, exit, meaning } = ERROR_CATALOGUE[code];
      expect([code, http >= 400 && http <= 599, exit >= 1 && exit <= 125, meaning.length > 10, meaning.includes('\n')]).toEqual([code, true, true, true, false]);
    }
  });

  it('gives the command line its exit statuses', () => {
    for (const code of ERROR_CODES) {
      expect([code, describeFailure(new FtvmError(code, 'what went wrong')).status]).toEqual([code, ERROR_CATALOGUE[code].exit]);
      expect(describeFailure(new FtvmError(code, 'what went wrong')).line).toBe(`ftvm: ${code}: what went wrong`);
    }
    expect(new CliError('FTVM_ERR_USAGE', 'x').exitStatus).toBe(2);
    expect(new CliError('FTVM_ERR_FILE_NOT_FOUND', 'x').exitStatus).toBe(1);
  });
});

/** How many files other than host/errors.ts name `code`. */
function countOutside(code: string): number {
  let n = 0;
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|mjs|html)$/.test(name) && !path.endsWith(join('host', 'errors.ts')) && readFileSync(path, 'utf8').includes(code)) n++;
    }
  };
  walk(join(ROOT, 'host'));
  return n;
}

describe('the REST API and the catalogue', () => {
  let dir: string;
  let host: FtHost;
  let app: FastifyInstance;
  let token: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftvm-errors-'));
    host = new FtHost({ id: 'e1', secret: 's', arbiter: new FileArbiter(join(dir, 'arbiter')), dataDir: join(dir, 'data') });
    await host.start();
    ({ app, token } = await buildApi(host));
  });
  afterAll(async () => {
    await app?.close();
    await host?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists exactly the catalogue in the OpenAPI error schema, on every error response', async () => {
    const doc = (await app.inject({ url: '/v1/openapi.json', headers: { authorization: `Bearer ${token}` } })).json();
    const enums: string[][] = [];
    for (const ops of Object.values(doc.paths as Record<string, Record<string, any>>)) {
      for (const op of Object.values(ops)) {
        for (const [status, r] of Object.entries((op.responses ?? {}) as Record<string, any>)) {
          const code = r.content?.['application/json']?.schema?.properties?.error?.properties?.code;
          if (Number(status) >= 400) {
            expect(code?.enum, `${status} of ${op.operationId ?? JSON.stringify(op.summary ?? '')}`).toBeDefined();
            enums.push(code.enum);
          }
        }
      }
    }
    expect(enums.length).toBeGreaterThan(20);
    for (const e of enums) expect(e).toEqual([...ERROR_CODES]);
  });

  it("answers every code with the catalogue's status", async () => {
    // GET /v1/events reads the host's event log; here it throws each code in turn
    const events = host.events;
    const after = events.after.bind(events);
    try {
      for (const code of ERROR_CODES) {
        events.after = () => {
          throw new FtvmError(code, `a ${code} for the test`);
        };
        const r = await app.inject({ url: '/v1/events', headers: { authorization: `Bearer ${token}` } });
        expect([code, r.statusCode, r.json()]).toEqual([code, ERROR_CATALOGUE[code].http, { error: { code, message: `a ${code} for the test` } }]);
      }
    } finally {
      events.after = after;
    }
    expect((await app.inject({ url: '/v1/events', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200);
  });
});
