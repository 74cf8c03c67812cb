// Proves that every limit of the host lives in host/limits.ts, that the
// dependencies between limits hold (and that checkLimits notices when one is
// broken), and that the README "Limits" table shows the file as it is.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkLimits, currentLimits, LimitsError, limitProblems } from '../host/limits.ts';
import { limitsTable } from './limits-table.ts';

const root = new URL('..', import.meta.url).pathname;

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('limits', () => {
  it('the limits as they are satisfy every dependency between them', () => {
    expect(limitProblems()).toEqual([]);
    expect(() => checkLimits()).not.toThrow();
  });

  it('a broken dependency stops checkLimits with FTVM_ERR_LIMITS naming it', () => {
    const l = currentLimits();
    const broken = { ...l, SNAPSHOT_CHUNK_BYTES: l.PEER_FRAME_BYTES_MAX, NIC_MESSAGE_BYTES_MAX: l.CLIENT_FRAME_BYTES_MAX + 1 };
    const problems = limitProblems(broken);
    expect(problems).toContain('a snapshot chunk and its envelope fit a peer frame');
    expect(problems).toContain('a NIC message and its envelope fit a client frame');
    let err: unknown;
    try {
      checkLimits(broken);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LimitsError);
    expect((err as LimitsError).code).toBe('FTVM_ERR_LIMITS');
    expect((err as LimitsError).problems).toEqual(problems);
    expect(limitProblems({ ...l, MODULE_CHUNK_BYTES: l.PEER_FRAME_BYTES_MAX })).toEqual(['a module chunk and its envelope fit a peer frame']);
    expect(limitProblems({ ...l, UNACKED_LOG_BYTES_MAX: l.LOG_FRAME_BYTES_MAX })).toContain('the unacknowledged log holds a few log frames');
    expect(limitProblems({ ...l, LOG_ENTRY_CHUNK_BYTES: l.LOG_FRAME_BYTES_MAX })).toContain('a log entry chunk and its entry fields fit a log frame');
    expect(limitProblems({ ...l, FDS_MAX: 0 })).toEqual(['every limit is a positive safe integer']);
  });

  it('no file under host/ defines a limit of its own with a number', () => {
    // A constant named like a limit and set from a literal belongs in limits.ts.
    // Metering-pass tuning (it changes counts and is versioned with the pass),
    // the benchmarks and the conformance runner are left where they are.
    const skip = /\/host\/(limits\.ts|bench\/|meter\/(index|instrument)\.ts|cli\/conformance\.ts)/;
    // Constants of the WASI ABI and of formats are not limits of the host.
    const notLimits = new Set(['ADVICE_MAX', 'SIGNAL_MAX', 'U32_MAX', 'LOG_VERSION_MIN', 'PROGRESS_MIN_BYTES', 'MSGPACK_STRING_OVERHEAD_BYTES', 'SIGNAL_SLOT_MAX']);
    const found: string[] = [];
    for (const f of tsFiles(join(root, 'host'))) {
      if (skip.test(f)) continue;
      for (const line of readFileSync(f, 'utf8').split('\n')) {
        const m = /^(?:export )?const ([A-Z0-9_]*(?:_MAX|_MIN|_BYTES|_MS|_US|_CHUNK)(?:_[A-Z]+)?) *= *[0-9]/.exec(line);
        if (m && !notLimits.has(m[1]!)) found.push(`${f.slice(root.length)}: ${line}`);
      }
    }
    expect(found).toEqual([]);
  });

  it('the README "Limits" table is the one made from host/limits.ts', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const m = /<!-- limits-table: generated from host\/limits\.ts -->\n([\s\S]*?)\n<!-- \/limits-table -->/.exec(readme);
    expect(m, 'README has the limits table markers').not.toBeNull();
    expect(m![1]).toBe(limitsTable());
  });
});
