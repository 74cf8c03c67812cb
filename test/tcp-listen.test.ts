// `ftvm run --tcplisten ADDR`: servers written for `wasmtime run --tcplisten`
// run unmodified, with real clients over real TCP. The http sample against
// curl, the kvresp sample against Debian's redis-cli and redis-benchmark
// (`make redis-tools` installs them), and a small non-blocking server built
// here from wasm-src/real/c/tcpecho.c, which also reports the descriptor
// layout it finds (the listener at fd 3, the preopens after it).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FTVM, ftvm, scratch } from './ftvm-cli.ts';
import { buildProgram } from './toolchain.ts';
import { INTERRUPT_NIC } from '../host/runtime/events.ts';
import { VirtualNic } from '../host/runtime/nic.ts';
import { LiveConnections, TcpListenBridge, UNREAD_MAX_BYTES } from '../host/runtime/tcp-listen.ts';

const children = new Set<ChildProcess>();
const sockets = new Set<Socket>();
const tmp = scratch();
afterAll(() => tmp.done());
afterEach(() => {
  for (const s of sockets) s.destroy();
  sockets.clear();
});
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** A polled condition, up to `ms`. */
async function until<T>(what: string, get: () => T | undefined | null | false, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Served {
  port: number;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** the exit code (or the signal's name) once the process ended */
  exited: Promise<number | string>;
}

/** Starts `ftvm run GUEST --tcplisten 127.0.0.1:0 EXTRA...` (or `ftvm record ...`) and waits for its "listening on" line. */
async function serve(guest: string, extra: string[] = [], command: 'run' | 'record' = 'run'): Promise<Served> {
  const child = spawn(process.execPath, [FTVM, command, guest, '--tcplisten', '127.0.0.1:0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const line = await until('"ftvm: listening on"', () => /^ftvm: listening on 127\.0\.0\.1:(\d+)$/m.exec(err) ?? (child.exitCode !== null && new Error(err)), 120_000);
  if (line instanceof Error) throw new Error(`ftvm run ${guest} ended before listening: ${line.message}`);
  return { port: Number(line[1]), child, stdout: () => out, stderr: () => err, exited };
}

/** Runs a client program; resolves with its exit code and output (it is killed after `ms`). */
function client(cmd: string, args: string[], ms = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = execFile(cmd, args, { timeout: ms, maxBuffer: 64 << 20, encoding: 'latin1' }, (e, stdout, stderr) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stdout, stderr }),
    );
    children.add(c);
  });
}

/** A raw TCP connection and everything it received. */
async function open(port: number, allowHalfOpen = false): Promise<{ s: Socket; got: () => Buffer; ended: Promise<'end' | 'error'> }> {
  const s = connect({ port, host: '127.0.0.1', allowHalfOpen });
  sockets.add(s);
  const chunks: Buffer[] = [];
  s.on('data', (b: Buffer) => chunks.push(b));
  const ended = new Promise<'end' | 'error'>((resolve) => {
    s.on('end', () => resolve('end'));
    s.on('error', () => resolve('error'));
  });
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  return { s, got: () => Buffer.concat(chunks), ended };
}

/** The kernel's state of the IPv4 TCP connection 127.0.0.1:local -> :remote (/proc/net/tcp), or null when it has none. */
function tcpState(local: number, remote: number): string | null {
  const STATES: Record<string, string> = { '01': 'ESTABLISHED', '07': 'CLOSE', '08': 'CLOSE_WAIT' };
  const hex = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(local)}`) && f[2]?.endsWith(`:${hex(remote)}`)) return STATES[f[3]!] ?? f[3]!;
  }
  return null;
}

function fnv1a32(b: Uint8Array): string {
  let h = 2166136261;
  for (const x of b) h = Math.imul(h ^ x, 16777619) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** The /big body: byte i = 'a' + ((i ^ (i >> 7)) % 26). */
function bigBody(): Buffer {
  const b = Buffer.alloc(1_000_000);
  for (let i = 0; i < b.length; i++) b[i] = 97 + (((i ^ (i >> 7)) >>> 0) % 26);
  return b;
}

describe('the http sample under ftvm run --tcplisten, with curl', () => {
  let srv: Served;
  let url: string;
  beforeAll(async () => {
    srv = await serve('http');
    url = `http://127.0.0.1:${srv.port}`;
  }, 180_000);
  afterAll(() => void srv?.child.kill('SIGKILL'));

  it('keeps the connection alive: two URLs in one curl invocation share one connection', async () => {
    // Proves: keep-alive across NIC messages: the second request reuses the first's TCP connection (curl connects once).
    const r = await client('curl', ['-s', '-w', '%{http_code} %{num_connects}\\n', '-o', '/dev/null', '-o', '/dev/null', `${url}/`, `${url}/nope`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('200 1\n404 0\n');
    const page = await client('curl', ['-s', `${url}/`]);
    expect(page.stdout).toContain('<h1>Hello from a WebAssembly guest</h1>');
  });

  it('keeps an HTTP/1.0 connection that asks for keep-alive, and says so (as ab -k needs)', async () => {
    // Proves: an HTTP/1.0 client that asks for keep-alive is told so (RFC 9112 section 9.3) and its connection serves a second request.
    const c = await open(srv.port);
    c.s.write('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await until('the first answer', () => (c.got().toString().includes('</html>') ? true : undefined), 10_000);
    expect(c.got().toString()).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*Connection: keep-alive\r\n/);
    c.s.write('GET /nope HTTP/1.0\r\n\r\n');
    await until('the second answer, and the close', () => (c.got().toString().includes('404') ? true : undefined), 10_000);
    expect(c.got().toString()).toMatch(/HTTP\/1\.1 404 Not Found\r\n[^]*Connection: close\r\n/);
    expect(await c.ended).toBe('end');
  });

  it('GET /big is exactly the 1,000,000 bytes the server generates, with its Content-Length', async () => {
    // Proves: a response far larger than one NIC message (64 KiB) arrives whole and in order.
    const file = join(tmp.dir, 'big.out');
    const r = await client('curl', ['-s', '-D', '-', '-o', file, `${url}/big`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Content-Length: 1000000\r\n/);
    const got = readFileSync(file);
    expect(got.length).toBe(1_000_000);
    expect(got.equals(bigBody())).toBe(true);
  });

  it('POST /echo reads chunked and Content-Length bodies (and 100-continue) and answers their length and checksum', async () => {
    // Proves: a request body of 300 KB, sent chunked and plain, crosses many messages and is read whole by the guest.
    const body = randomBytes(300_000);
    const file = join(tmp.dir, 'body.bin');
    writeFileSync(file, body);
    const want = `{"length":300000,"fnv1a32":"${fnv1a32(body)}"}\n`;
    const chunked = await client('curl', ['-s', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, `${url}/echo`]);
    expect(chunked.stdout).toBe(want);
    const plain = await client('curl', ['-s', '--data-binary', `@${file}`, `${url}/sum`]);
    expect(plain.stdout).toBe(want);
  });

  it('honours Connection: close: the server ends the connection after the response', async () => {
    // Proves: the guest's close reaches the client as a FIN (end of stream) after the bytes it sent.
    const c = await open(srv.port);
    c.s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(await c.ended).toBe('end');
    expect(c.got().toString()).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n[\s\S]*<\/html>\n$/);
  });

  it('a client that resets mid-request or mid-response does not disturb the other connections', async () => {
    // Proves: a reset (ECONNRESET on the host) is an end of stream to the guest; the server keeps serving a keep-alive connection opened before it, and new ones.
    const kept = await open(srv.port);
    kept.s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until('the first response', () => kept.got().includes('</html>\n'));
    const midRequest = await open(srv.port);
    midRequest.s.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial');
    const midResponse = await open(srv.port);
    midResponse.s.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    await until('the start of /big', () => midResponse.got().length > 1000);
    midRequest.s.resetAndDestroy();
    midResponse.s.resetAndDestroy();
    const before = kept.got().length;
    kept.s.write('GET /nope HTTP/1.1\r\nHost: x\r\n\r\n');
    await until('the second response on the kept connection', () => kept.got().subarray(before).includes('not found\n'));
    const r = await client('curl', ['-s', `${url}/`]);
    expect(r.stdout).toContain('</html>');
  });

  it("a client that does not read stalls only its own connection: the guest's send window closes, others are served, and every byte arrives once it reads", async () => {
    // Proves: output to a client that does not read is bounded by the connection's send window (nic.ts SEND_WINDOW_BYTES):
    // 100 MB of answers asked for grow ftvm's memory by far less (without the window they would wait in its memory), the
    // non-blocking server goes on serving another client, and nothing is lost or reset.
    const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${srv.child.pid}/status`, 'utf8'))![1]) / 1024;
    const before = rssMiB();
    const c = await open(srv.port);
    c.s.pause(); // nothing is read
    const N = 100;
    c.s.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(N));
    // the server answers another client meanwhile
    const r = await client('curl', ['-s', `${url}/`]);
    expect(r.stdout).toContain('</html>');
    const grown = rssMiB() - before;
    expect(grown).toBeLessThan(64);
    expect(tcpState(c.s.localPort!, srv.port)).toBe('ESTABLISHED');
    c.s.resume();
    await until('every answer', () => (c.got().toString('latin1').split('HTTP/1.1 200').length - 1 === N && c.got().length >= N * 1_000_000 ? true : undefined), 120_000);
    const all = c.got().toString('latin1');
    const first = all.indexOf('\r\n\r\n') + 4;
    expect(Buffer.from(all.slice(first, first + 1_000_000), 'latin1').equals(bigBody())).toBe(true);
    c.s.destroy();
  });
});

describe('the kvresp sample under ftvm run --tcplisten, with redis-cli and redis-benchmark', () => {
  let srv: Served;
  let cli: (...args: string[]) => Promise<string>;
  beforeAll(async () => {
    srv = await serve('kvresp');
    cli = async (...args) => {
      const r = await client('redis-cli', ['-p', String(srv.port), ...args]);
      if (r.code !== 0) throw new Error(`redis-cli ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
      return r.stdout;
    };
  }, 180_000);
  afterAll(() => void srv?.child.kill('SIGKILL'));

  it('serves ioredis (npm) with its default options: the ready check, commands and a pipeline of 100', async () => {
    // Proves: a database driver from the registry, with its connect-time checks (INFO), works unchanged.
    const redis = new Redis({ port: srv.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      expect(await redis.set('drv', 'x')).toBe('OK');
      expect(await redis.get('drv')).toBe('x');
      const p = redis.pipeline();
      for (let i = 0; i < 100; i++) p.incr('drv:n');
      const res = await p.exec();
      expect(res!.map(([e, v]) => (e ? String(e) : v))).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      expect(await redis.mget('drv', 'drv:n', 'none')).toEqual(['x', '100', null]);
    } finally {
      redis.disconnect();
    }
  });

  it('takes an empty or negative array count as no request, and answers HELLO as a RESP2 server', async () => {
    // Proves: a malformed count neither runs a stale command nor answers; HELLO 3 gets the error drivers fall back on.
    const c = await open(srv.port);
    c.s.write('*-3\r\n*0\r\nPING\r\nHELLO 3\r\nHELLO\r\n');
    await until('four answers', () => (c.got().toString().split('\r\n').length >= 10 ? true : undefined), 10_000);
    const text = c.got().toString();
    expect(text.startsWith('+PONG\r\n-NOPROTO ')).toBe(true);
    expect(text).toContain('$5\r\nproto\r\n:2\r\n');
    c.s.destroy();
  });

  it('answers redis-cli: PING, SET, GET, INCR, MGET, EXISTS, DEL, and an unknown command', async () => {
    // Proves: RESP2 requests and replies of every kind (simple, bulk, nil, integer, array, error) pass through the NIC intact.
    expect(await cli('PING')).toBe('PONG\n');
    expect(await cli('SET', 'greeting', 'hello world')).toBe('OK\n');
    expect(await cli('GET', 'greeting')).toBe('hello world\n');
    expect(await cli('INCR', 'n')).toBe('1\n');
    expect(await cli('INCR', 'n')).toBe('2\n');
    expect(await cli('MGET', 'greeting', 'n', 'missing')).toBe('hello world\n2\n\n');
    expect(await cli('EXISTS', 'greeting', 'missing', 'n')).toBe('2\n');
    expect(await cli('DEL', 'greeting', 'missing')).toBe('1\n');
    expect(await cli('GET', 'greeting')).toBe('\n');
    expect(await cli('NOSUCH', 'x')).toMatch(/^ERR unknown command 'NOSUCH'\n/);
  });

  it('pipelined and inline commands are answered in order; limits give -ERR', async () => {
    // Proves: many commands in one read are all answered, in order; an inline command works; an oversized key is refused cleanly and the connection goes on.
    const c = await open(srv.port);
    const bigKey = 'k'.repeat(2000);
    c.s.write(`PING\r\n*3\r\n$3\r\nSET\r\n$1\r\np\r\n$2\r\n42\r\n*2\r\n$3\r\nGET\r\n$1\r\np\r\n*2\r\n$3\r\nGET\r\n$${bigKey.length}\r\n${bigKey}\r\nECHO hi\r\n`);
    const want = '+PONG\r\n+OK\r\n$2\r\n42\r\n-ERR key too long\r\n$2\r\nhi\r\n';
    await until('five replies', () => c.got().length >= want.length);
    expect(c.got().toString()).toBe(want);
  });

  it('redis-benchmark -t ping,set,get,incr -n 5000 -P 16 completes with no error, and the counter has the value the load implies', async () => {
    // Proves: 50 concurrent pipelined clients are served without loss: redis-benchmark sends INCR in pipelines of 16 until 5000 are issued, ceil(5000/16)*16 = 5008.
    const r = await client('redis-benchmark', ['-p', String(srv.port), '-t', 'ping,set,get,incr', '-n', '5000', '-P', '16', '-q'], 300_000);
    expect(r.code).toBe(0);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/error|WARNING/i);
    for (const t of ['PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR']) expect(r.stdout).toMatch(new RegExp(`${t}: [\\d.]+ requests per second`));
    expect(await cli('GET', 'counter:__rand_int__')).toBe(`${Math.ceil(5000 / 16) * 16}\n`);
    expect(await cli('GET', 'key:__rand_int__')).toMatch(/^.{3}\n$/); // redis-benchmark's 3-byte value (-d 3)
  }, 300_000);

  it('a client that resets mid-command does not disturb the others', async () => {
    // Proves: a half-sent RESP command followed by a reset leaves the store and the other connections as they were.
    const kept = await open(srv.port);
    kept.s.write('SET r 1\r\n');
    await until('+OK', () => kept.got().toString() === '+OK\r\n');
    const cut = await open(srv.port);
    cut.s.write('*3\r\n$3\r\nSET\r\n$1\r\nr\r\n$5\r\nab');
    await new Promise((r) => setTimeout(r, 50)); // let the partial command reach the guest first (not a wait for a result)
    cut.s.resetAndDestroy();
    kept.s.write('INCR r\r\n');
    await until(':2', () => kept.got().toString() === '+OK\r\n:2\r\n');
    expect(await cli('GET', 'r')).toBe('2\n');
  });
});

describe('a server written for wasmtime --tcplisten (non-blocking accept and recv, shutdown, poll with a timeout)', () => {
  let wasm: string;
  beforeAll(() => {
    wasm = buildProgram('c', 'tcpecho', 'wasm');
  }, 300_000);

  it('sees the listener at fd 3 and its --dir preopens after it, found by wasi-libc, and serves unmodified', async () => {
    // Proves: wasmtime's layout (fd 3 the socket, fd 4, 5 the --dir preopens); wasi-libc's preopen scan gets past the socket (a file opens by path); accept on the non-blocking listener says EAGAIN; accept returns when a client connects (the server greets it first); lines echo; shutdown(SHUT_WR) reaches the client as end of stream while the server still reads; the guest's exit status is ftvm's, and ftvm ends even when a client never closes.
    const data = join(tmp.dir, 'data');
    const other = join(tmp.dir, 'other');
    mkdirSync(data, { recursive: true });
    mkdirSync(other, { recursive: true });
    writeFileSync(join(data, 'greet.txt'), 'hello from a file\n');
    const srv = await serve(wasm, ['--dir', `${data}::/data`, '--dir', `${other}::/other`, '--', '/data/greet.txt']);
    await until('"ready"', () => srv.stderr().includes('ready\n'));
    expect(srv.stdout()).toBe('fd 3: socket\nfd 4: preopen /data\nfd 5: preopen /other\nfile: hello from a file\naccept: EAGAIN\n');
    const greeted = await open(srv.port);
    await until('the greeting of a client that has sent nothing', () => greeted.got().toString() === 'hi\n'); // accept returned on connect
    const a = await open(srv.port);
    const b = await open(srv.port);
    const lingering = await open(srv.port, true); // never closes its side, even after the server's FIN
    a.s.write('hello\n');
    b.s.write('other\nconnection\n');
    await until('HELLO', () => a.got().toString() === 'hi\nHELLO\n');
    await until('OTHER', () => b.got().toString() === 'hi\nOTHER\nCONNECTION\n');
    a.s.write('bye\n');
    expect(await a.ended).toBe('end'); // the server shut down its sending side
    expect(a.got().toString()).toBe('hi\nHELLO\nBYE\n');
    a.s.write('still read\n'); // the server still reads (and drops) what comes
    a.s.end();
    b.s.write('stop\n');
    expect(await srv.exited).toBe(7); // ftvm ends although `lingering` never closed
    expect(await lingering.ended).toBe('end');
    expect(srv.stderr()).toMatch(/stop after \d+ poll timeouts/);
  }, 180_000);
});

describe('ftvm record --tcplisten', () => {
  it('logs every connection, so that ftvm replay reproduces what the guest sent with no client', async () => {
    // Proves: live TCP input goes through the same log as --messages: the replay of a recording stopped by SIGTERM reproduces every entry and prints both responses.
    const log = join(tmp.dir, 'http.log');
    const srv = await serve('http', ['--log', log], 'record');
    const url = `http://127.0.0.1:${srv.port}`;
    expect((await client('curl', ['-s', '-H', 'Connection: close', `${url}/`])).stdout).toContain('</html>');
    expect((await client('curl', ['-s', '-H', 'Connection: close', '--data-binary', 'hello', `${url}/echo`])).stdout).toBe(`{"length":5,"fnv1a32":"${fnv1a32(Buffer.from('hello'))}"}\n`);
    srv.child.kill('SIGTERM');
    expect(await srv.exited).toBe('SIGTERM');
    const r = await ftvm(['replay', 'http', '--log', log]);
    expect(r.code).toBe(4); // FTVM_ERR_LOG_INCOMPLETE: the guest was stopped, not ended
    expect(r.stderr).toMatch(/replayed (\d+) of \1 entries/);
    const sends = r.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { send: { conn: number; base64?: string; eof?: boolean } }).send);
    const text = (conn: number): string => sends.filter((m) => m.conn === conn && m.base64).map((m) => Buffer.from(m.base64!, 'base64').toString()).join('');
    expect(text(1)).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*<\/html>\n$/);
    expect(text(2)).toMatch(/"length":5/);
    expect(sends.filter((m) => m.eof).map((m) => m.conn)).toEqual([1, 2]);
  }, 180_000);
});

describe('the bridge between real connections and the NIC (runtime/tcp-listen.ts), in one process', () => {
  it("pauses a connection while the guest has more than UNREAD_MAX_BYTES of it unread, and resumes as it reads; every byte arrives, in order", async () => {
    // Proves: the inbound bound: a client sending 6 MB to a guest that reads nothing gets no more than the bound (plus what was in flight) into the NIC; reading lets the rest through, intact.
    const bridge = new TcpListenBridge();
    const live = new LiveConnections(bridge.wire());
    const nic = new VirtualNic((m) => live.send(m));
    live.attach(nic);
    const bound = await bridge.listen('127.0.0.1:0');
    try {
      const sent = randomBytes(6_000_000);
      const c = await open(Number(bound.split(':')[1]));
      c.s.write(sent);
      let delivered = 0;
      const deliver = (): void => {
        for (const i of live.poll()) {
          if (i.kind !== INTERRUPT_NIC) continue;
          delivered += i.msg.bytes.length;
          nic.arrive(i.msg);
        }
      };
      // Nothing is read: deliveries stop near the bound.
      await until('the bound to be reached', () => (deliver(), delivered > UNREAD_MAX_BYTES));
      const stalled = Date.now() + 500;
      await until('half a second of no reading', () => (deliver(), Date.now() > stalled));
      expect(delivered).toBeLessThan(UNREAD_MAX_BYTES + 512 * 1024);
      expect(c.s.writableLength).toBeGreaterThan(0); // TCP pushed back: the client still holds bytes it could not send
      // Reading lets the rest through.
      const s = nic.accept()!;
      const got: Uint8Array[] = [];
      let n = 0;
      await until('every byte', () => {
        deliver();
        const b = nic.read(s, Number.MAX_SAFE_INTEGER);
        got.push(b);
        n += b.length;
        return n >= sent.length;
      });
      expect(Buffer.concat(got).equals(sent)).toBe(true);
    } finally {
      bridge.destroy();
    }
  });
});

describe('ftvm run --tcplisten: command line', () => {
  it('refuses a malformed address (FTVM_ERR_USAGE) and one it cannot listen on (FTVM_ERR_TCPLISTEN)', async () => {
    // Proves: a bad ADDR is a usage error (exit 2); a port in use is named with its code (exit 1); neither runs the guest.
    const bad = await ftvm(['run', 'http', '--tcplisten', 'localhost']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^ftvm run: FTVM_ERR_USAGE: --tcplisten expects HOST:PORT/m);
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const busy = await ftvm(['run', 'http', '--tcplisten', `127.0.0.1:${port}`]);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(/^ftvm: FTVM_ERR_TCPLISTEN: --tcplisten 127\.0\.0\.1:\d+: cannot listen: EADDRINUSE$/m);
    } finally {
      taken.close();
    }
  });

  it('--help names the layout', async () => {
    const r = await ftvm(['run', '--help']);
    expect(r.stdout).toMatch(/--tcplisten ADDR/);
    expect(r.stdout).toMatch(/fd 3/);
  });
});
