// The virtual NIC's per-connection state stays bounded however many
// connections a guest has served: a raw guest (the kv sample's kind) that
// never closes the connections its clients ended keeps the send windows of
// only the newest STREAMS_DONE_MAX of them, and a replica restored from a
// snapshot of the NIC drops the same windows next as the one it copies.
import { describe, expect, it } from 'vitest';
import { VirtualNic, SEND_WINDOW_BYTES } from '../host/runtime/nic.ts';
import { STREAMS_DONE_MAX } from '../host/limits.ts';

const none = new Uint8Array(0);
/** One TCP connection through a published port, as the ingress feeds it: its opening (with a window), a request, its end; the guest reads all three. */
function serve(nic: VirtualNic, conn: number): void {
  nic.arrive({ conn, bytes: none, eof: false, window: SEND_WINDOW_BYTES });
  nic.arrive({ conn, bytes: new TextEncoder().encode('r SET k v'), eof: false });
  const req = nic.take();
  expect(req?.conn).toBe(conn);
  nic.emit(conn, new TextEncoder().encode('r OK 1'));
  nic.arrive({ conn, bytes: none, eof: true });
  expect(nic.take()).toEqual({ conn, bytes: none, eof: true });
}

describe('virtual NIC: bounded per-connection state', () => {
  it('keeps the windows of only the newest STREAMS_DONE_MAX ended connections a raw guest never closed', () => {
    const nic = new VirtualNic();
    const n = STREAMS_DONE_MAX + 500;
    for (let conn = 1; conn <= n; conn++) serve(nic, conn);
    const img = nic.image();
    expect(img.windows!.length).toBe(STREAMS_DONE_MAX);
    expect(img.ended!.length).toBe(STREAMS_DONE_MAX);
    // the newest keep their flow control (the guest may still answer a client that half-closed), the oldest lost it
    expect(nic.sendRoom(n)).toBe(SEND_WINDOW_BYTES - 'r OK 1'.length);
    expect(nic.sendRoom(1)).toBe(Infinity);
  });

  it('a live connection keeps its window however many others end, and a closed one leaves nothing', () => {
    const nic = new VirtualNic();
    nic.arrive({ conn: 1, bytes: none, eof: false, window: SEND_WINDOW_BYTES });
    for (let conn = 2; conn <= STREAMS_DONE_MAX + 10; conn++) serve(nic, conn);
    expect(nic.sendRoom(1)).toBe(SEND_WINDOW_BYTES);
    nic.close(STREAMS_DONE_MAX + 10);
    expect(nic.image().ended).not.toContain(STREAMS_DONE_MAX + 10);
  });

  it('remembers the newest STREAMS_DONE_MAX connections the guest closed whose peer never ended (client-port clients gone)', () => {
    const nic = new VirtualNic();
    const n = STREAMS_DONE_MAX + 500;
    for (let conn = 1; conn <= n; conn++) {
      nic.arrive({ conn, bytes: new TextEncoder().encode('hello'), eof: false });
      nic.take();
      nic.close(conn);
    }
    const closed = nic.image().closed;
    expect(closed.length).toBe(STREAMS_DONE_MAX);
    expect(closed).toContain(n);
    expect(closed).not.toContain(1);
    // the newest still drop what comes late
    nic.arrive({ conn: n, bytes: new TextEncoder().encode('late'), eof: false });
    expect(nic.queued).toBe(0);
  });

  it('a NIC restored from an image drops the same windows next as its original (same state digest)', () => {
    const a = new VirtualNic();
    for (let conn = 1; conn <= STREAMS_DONE_MAX; conn++) serve(a, conn);
    const b = new VirtualNic();
    b.restore(structuredClone(a.image()));
    expect(b.state()).toBe(a.state());
    for (const nic of [a, b]) for (let conn = 1000001; conn <= 1000020; conn++) serve(nic, conn);
    expect(b.state()).toBe(a.state());
    expect(b.sendRoom(20)).toBe(Infinity);
    expect(b.sendRoom(21)).toBe(SEND_WINDOW_BYTES - 'r OK 1'.length);
  });
});
