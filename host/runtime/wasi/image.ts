/**
 * The WASI host's state outside guest memory, two ways:
 *  - `DeviceImage`: everything, structured-clonable, for a VM snapshot
 *    (`deviceImage` / `restoreDevices`);
 *  - `deviceState`: a canonical string for the state digest, which record
 *    and replay compare. It holds everything a call can change: stdin
 *    position, every descriptor (kind, inode, offset, fdflags, rights,
 *    preopen name, filesystem), every filesystem's `snapshot()` (inodes,
 *    link counts, times, symlink targets, entries with readdir sequence
 *    numbers, inodes held open after unlinking) and the NIC. Paths do not
 *    appear: a file is its inode.
 */
import type { WasiCtx } from './ctx.ts';
import type { FdEntry } from './fdtable.ts';
import type { NicImage } from '../nic.ts';
import { VirtualFs, type FsImage, type VfsNode } from './vfs.ts';

/** Everything a WasiHost holds besides guest memory, for a VM snapshot (structured-clonable). */
export interface DeviceImage {
  stdin: Uint8Array;
  stdinPos: number;
  stdinStreamed: number;
  stdinEof: boolean;
  /** the preopened filesystems, in `WasiCtx.filesystems` order */
  filesystems: FsImage[];
  fds: ({ fd: number; flags: number; base: bigint; inheriting: bigint } & (
    | { kind: 'stdio'; stream: 0 | 1 | 2 }
    | { kind: 'listen' }
    | { kind: 'file'; fs: number; ino: bigint; offset: number }
    | { kind: 'dir'; fs: number; ino: bigint; preopen: string | null }
    | { kind: 'sock'; conn: number }
  ))[];
  nic: NicImage;
}

/** Inodes held by descriptors, per filesystem (an unlinked file stays alive while open). */
function openNodes(ctx: WasiCtx): Map<VirtualFs, VfsNode[]> {
  const held = new Map<VirtualFs, VfsNode[]>(ctx.filesystems.map((fs) => [fs, []]));
  for (const [, f] of ctx.fds.sorted()) if (f.kind === 'file' || f.kind === 'dir') held.get(f.fs)?.push(f.node);
  return held;
}

/** The devices' whole state. */
export function deviceImage(ctx: WasiCtx): DeviceImage {
  const held = openNodes(ctx);
  const fds: DeviceImage['fds'] = ctx.fds.sorted().map(([fd, f]) => {
    const common = { fd, flags: f.flags, base: f.base, inheriting: f.inheriting };
    switch (f.kind) {
      case 'stdio':
        return { ...common, kind: 'stdio', stream: f.stream };
      case 'listen':
        return { ...common, kind: 'listen' };
      case 'sock':
        return { ...common, kind: 'sock', conn: f.sock.conn };
      case 'file':
        return { ...common, kind: 'file', fs: ctx.fsIndex(f.fs), ino: f.node.ino, offset: f.offset };
      case 'dir':
        return { ...common, kind: 'dir', fs: ctx.fsIndex(f.fs), ino: f.node.ino, preopen: f.preopen };
    }
  });
  return {
    stdin: ctx.stdin.slice(),
    stdinPos: ctx.stdinPos,
    stdinStreamed: ctx.stdinStreamed,
    stdinEof: ctx.stdinEof,
    filesystems: ctx.filesystems.map((fs) => fs.image(held.get(fs))),
    fds,
    nic: ctx.nic.image(),
  };
}

/** Puts a context built for the image's filesystems in the image's state. Error when the image names what it does not hold. */
export function restoreDevices(ctx: WasiCtx, img: DeviceImage, byIno: Map<bigint, VfsNode>[]): void {
  ctx.stdinPos = img.stdinPos;
  ctx.stdinStreamed = img.stdinStreamed;
  ctx.stdinEof = img.stdinEof;
  ctx.nic.restore(img.nic);
  ctx.fds.clear();
  for (const f of img.fds) {
    const common = { flags: f.flags, base: f.base, inheriting: f.inheriting };
    let entry: FdEntry;
    switch (f.kind) {
      case 'stdio':
        entry = { ...common, kind: 'stdio', stream: f.stream };
        break;
      case 'listen':
        entry = { ...common, kind: 'listen' };
        break;
      case 'sock': {
        const sock = ctx.nic.socket(f.conn);
        if (!sock) throw new Error(`device image: fd ${f.fd} names connection ${f.conn}, which has no socket`);
        entry = { ...common, kind: 'sock', sock };
        break;
      }
      case 'file': {
        const node = byIno[f.fs]?.get(f.ino);
        if (node?.kind !== 'file') throw new Error(`device image: fd ${f.fd} names inode ${f.ino}, which is not a file`);
        entry = { ...common, kind: 'file', node, fs: ctx.filesystems[f.fs]!, offset: f.offset };
        break;
      }
      case 'dir': {
        const node = byIno[f.fs]?.get(f.ino);
        if (node?.kind !== 'dir') throw new Error(`device image: fd ${f.fd} names inode ${f.ino}, which is not a directory`);
        entry = { ...common, kind: 'dir', node, fs: ctx.filesystems[f.fs]!, preopen: f.preopen };
        break;
      }
    }
    ctx.fds.set(f.fd, entry);
  }
}

/** The filesystems of an image, and each one's inodes by number. */
export function filesystemsFromImage(img: DeviceImage): { filesystems: VirtualFs[]; byIno: Map<bigint, VfsNode>[] } {
  const built = img.filesystems.map((fi) => VirtualFs.fromImage(fi));
  return { filesystems: built.map((b) => b.fs), byIno: built.map((b) => b.byIno) };
}

/** The canonical device state for the state digest (see the module comment). */
export function deviceState(ctx: WasiCtx): string {
  const held = openNodes(ctx);
  const fds = ctx.fds.sorted().map(([fd, f]) => {
    const rights = [f.base.toString(16), f.inheriting.toString(16)];
    switch (f.kind) {
      case 'stdio':
        return [fd, 'stdio', f.stream, f.flags, rights];
      case 'listen':
        return [fd, 'listen', f.flags, rights];
      case 'sock':
        return [fd, 'sock', f.sock.conn, f.flags, rights];
      case 'file':
        return [fd, 'file', ctx.fsIndex(f.fs), Number(f.node.ino), f.offset, f.flags, rights];
      case 'dir':
        return [fd, 'dir', ctx.fsIndex(f.fs), Number(f.node.ino), f.preopen, f.flags, rights];
    }
  });
  return JSON.stringify({
    stdin: ctx.stdinRead ? ['streamed', ctx.stdinStreamed, ctx.stdinEof] : [ctx.stdinPos, ctx.stdin.length],
    fds,
    fs: ctx.filesystems.map((fs) => fs.snapshot(held.get(fs))),
    nic: ctx.nic.state(),
  });
}
