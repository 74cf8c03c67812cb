// A host's named events: numbered, bounded, read after a number, and said as one sentence each.
import { describe, expect, it } from 'vitest';
import { EVENTS_MAX, EventLog, eventText } from '../host/ft/events.ts';

describe('host events', () => {
  it('are numbered from 1, read after a number, and the oldest dropped past the bound', () => {
    const log = new EventLog();
    for (let i = 0; i < EVENTS_MAX + 10; i++) log.add({ event: 'partner-silent', vm: `v${i}`, role: 'primary', partner: 'h2' });
    const all = log.after(0);
    expect(all.length).toBe(EVENTS_MAX);
    expect(all[0]!.seq).toBe(11);
    expect(all.at(-1)!.seq).toBe(EVENTS_MAX + 10);
    expect(log.after(EVENTS_MAX + 8).map((e) => (e as { vm?: string }).vm)).toEqual([`v${EVENTS_MAX + 8}`, `v${EVENTS_MAX + 9}`]);
    expect(log.after(0, 3).map((e) => e.seq)).toEqual([11, 12, 13]);
    expect(log.nextSeq).toBe(EVENTS_MAX + 11);
  });

  it('say in the log what they name', () => {
    expect(eventText({ event: 'backup-following', vm: 'kv', primary: 'h2', from: 'snapshot', seq: 310 })).toBe('kv: backup of h2 from a snapshot at entry 310');
    expect(eventText({ event: 'generation-won', vm: 'kv', gen: 3, role: 'backup' })).toBe('kv: won generation 3; going live');
    expect(eventText({ event: 'replica-dropped', vm: 'kv', role: 'primary', why: 'lost the arbiter to another replica' })).toBe('kv: primary dropped (lost the arbiter to another replica)');
  });
});
