// The README "Limits" table, made from host/limits.ts: its doc comments and
// values. test/limits.test.ts checks the README against it; print it with
// `npx tsx test/limits-table.ts`.

import { readFileSync } from 'node:fs';
import { currentLimits } from '../host/limits.ts';

/** The unit a limit's name ends with (a name without one counts items). */
export function unitOf(name: string): string {
  if (/_BYTES(_|$)/.test(name)) return 'bytes';
  if (/_MS(_|$)/.test(name)) return 'ms';
  if (/_US(_|$)/.test(name)) return 'µs';
  if (/_PAGES(_|$)/.test(name)) return '64 KiB pages';
  if (/_SLOTS(_|$)/.test(name)) return 'frame slots';
  return 'count';
}

function shown(v: number, unit: string): string {
  if (unit === 'bytes') {
    for (const [n, u] of [[2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']] as const) if (v >= n && v % n === 0) return `${v / n} ${u}`;
    return `${v} bytes`;
  }
  return `${v.toLocaleString('en-US')}${unit === 'count' ? '' : ` ${unit}`}`;
}

/** Each limit of host/limits.ts in source order: name, doc comment (one line), value. */
export function limitDocs(): { name: string; doc: string; value: number }[] {
  const src = readFileSync(new URL('../host/limits.ts', import.meta.url), 'utf8');
  const values = currentLimits();
  const out: { name: string; doc: string; value: number }[] = [];
  for (const m of src.matchAll(/\/\*\*([\s\S]*?)\*\/\s*export const (\w+) = [^;]+;/g)) {
    const doc = m[1]!.split('\n').map((l) => l.replace(/^\s*\*\s?/, '').trim()).filter(Boolean).join(' ');
    out.push({ name: m[2]!, doc, value: values[m[2]!]! });
  }
  return out;
}

/** The README table (markdown, one row per limit). */
export function limitsTable(): string {
  const rows = limitDocs().map(({ name, doc, value }) => `| \`${name}\` | ${shown(value, unitOf(name))} | ${doc.replace(/\|/g, '\\|')} |`);
  return ['| limit | value | what it bounds |', '|---|---|---|', ...rows].join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, ''))) console.log(limitsTable());
