// The address of `--tcplisten ADDR`, as wasmtime's CLI takes it (a Rust
// SocketAddr): "HOST:PORT", or "[IPV6]:PORT". Kept apart from tcp-listen.ts so
// that the command line checks it without loading node:net.

const ADDR = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/;

/** "HOST:PORT" or "[IPV6]:PORT" with PORT 0..65535 (0: any free port): its parts; null otherwise. */
export function parseListenAddr(addr: string): { host: string; port: number } | null {
  const m = ADDR.exec(addr);
  if (!m || Number(m[3]) > 65535) return null;
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}

/** Whether `addr` is one parseListenAddr accepts. */
export function isListenAddr(addr: string): boolean {
  return parseListenAddr(addr) !== null;
}
