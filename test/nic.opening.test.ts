// An empty message that is not an end-of-stream opens a connection: a guest
// serving sockets accepts it before its client says anything; a guest using
// the raw NIC ABI never sees it.
import { describe, expect, it } from 'vitest';
import { VirtualNic } from '../host/runtime/nic.ts';

const enc = (s: string) => new TextEncoder().encode(s);

describe('the opening of a connection', () => {
  it('is accepted as a socket with nothing to read, and what follows is its stream', () => {
    const nic = new VirtualNic();
    nic.arrive({ conn: 5, bytes: new Uint8Array(0), eof: false });
    expect(nic.queued).toBe(1);
    const s = nic.accept()!;
    expect(s.conn).toBe(5);
    expect(nic.readable(s)).toBe(0);
    nic.arrive({ conn: 5, bytes: enc('hello'), eof: false });
    nic.arrive({ conn: 5, bytes: new Uint8Array(0), eof: false });
    expect(new TextDecoder().decode(nic.read(s, 100))).toBe('hello');
    expect(nic.unread(5)).toBe(0);
  });

  it('is not a message for the raw ABI: take and peekSize skip it', () => {
    const nic = new VirtualNic();
    nic.arrive({ conn: 1, bytes: new Uint8Array(0), eof: false });
    nic.arrive({ conn: 1, bytes: enc('GET x'), eof: false });
    expect(nic.unread(1)).toBe(5);
    expect(nic.peekSize()).toBe(5);
    expect(new TextDecoder().decode(nic.take()!.bytes)).toBe('GET x');
    nic.arrive({ conn: 2, bytes: new Uint8Array(0), eof: false });
    expect(nic.take()).toBeNull();
    // an end-of-stream is a message: it stays
    nic.arrive({ conn: 3, bytes: new Uint8Array(0), eof: true });
    expect(nic.take()).toMatchObject({ conn: 3, eof: true });
  });
});
