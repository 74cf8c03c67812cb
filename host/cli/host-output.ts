// ftvm's own stdout and stderr, as `run`, `record` and `replay` write the
// guest's output and their own lines to them.
//
// Writes are synchronous (fs.writeSync on fd 1 and 2), so a failure is known
// at the write that caused it and never surfaces later as an unhandled
// stream error. The guest's view does not depend on them: what fd_write
// returns to the guest is decided before its bytes get here (and logged by
// `record`), so a closed pipe changes nothing a replay checks. The rules,
// as node:wasi's command line behaves for EPIPE:
//   - EPIPE (the reader went away, `ftvm run ... | head -2`; ECONNRESET when
//     the stream is a socket, as Node's child_process gives): writing to that
//     stream stops quietly; the guest runs on and ftvm's exit status is the
//     guest's.
//   - any other error (ENOSPC on `> /dev/full`, EIO): one line
//     `ftvm: FTVM_ERR_OUTPUT_LOST: stdout: ...` on stderr, later output to that
//     stream is dropped, and the command exits 1 at the end (output was lost).
//   - EAGAIN (a descriptor someone made non-blocking): the write waits, in
//     steps of at most 10 ms, as a blocking write would.

import { writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { sleepNs } from '../runtime/events.ts';

/** One of ftvm's own output streams (fd 1 or 2); see the rules above. */
export class HostOutput {
  /** 'open'; 'closed' after EPIPE or ECONNRESET (quietly); 'failed' after any other error (reported once) */
  state: 'open' | 'closed' | 'failed' = 'open';
  /** the error that made the stream 'failed' (errno code and text), null otherwise */
  failure: { code: string; message: string } | null = null;
  /** whether the stream is a terminal (for progress bars) */
  readonly isTTY: boolean;
  /** called once when the stream fails with an error other than EPIPE */
  onFailure: ((out: HostOutput) => void) | null = null;

  constructor(
    readonly fd: number,
    readonly name: 'stdout' | 'stderr',
  ) {
    this.isTTY = isatty(fd);
  }

  /** Writes all of `data` (bytes, or a string as UTF-8) or, once the stream is closed or failed, nothing. Never throws. */
  write(data: Uint8Array | string): void {
    if (this.state !== 'open') return;
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let at = 0;
    let backoffMs = 1;
    while (at < buf.length) {
      try {
        at += writeSync(this.fd, buf, at, buf.length - at);
        backoffMs = 1;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          sleepNs(BigInt(backoffMs) * 1_000_000n);
          backoffMs = Math.min(backoffMs * 2, 10);
          continue;
        }
        if (code === 'EPIPE' || code === 'ECONNRESET') {
          this.state = 'closed';
          return;
        }
        this.state = 'failed';
        this.failure = { code, message: (e as Error).message.split('\n')[0]! };
        this.onFailure?.(this);
        return;
      }
    }
  }

  /** The function form of write, for RunOptions.onStdout and the like. */
  readonly sink = (data: Uint8Array | string): void => this.write(data);
}

/** ftvm's stdout. */
export const hostStdout = new HostOutput(1, 'stdout');
/** ftvm's stderr. */
export const hostStderr = new HostOutput(2, 'stderr');

// A stream that fails says so once on stderr (when stderr itself still works).
for (const out of [hostStdout, hostStderr]) {
  out.onFailure = (o) => {
    hostStderr.write(`ftvm: FTVM_ERR_OUTPUT_LOST: ${o.name}: write failed (${o.failure!.code}); output to it is dropped from here on and ftvm will exit 1\n`);
  };
}

/** Whether output was lost (a stream failed with an error other than EPIPE): the command then exits 1. */
export function outputLost(): boolean {
  return hostStdout.state === 'failed' || hostStderr.state === 'failed';
}

/**
 * For the long-running commands (`ftvm host`, `ftvm cluster up`), which write
 * through process.stdout and process.stderr so that a slow reader never
 * blocks their event loop: a write error on either (EPIPE when the reader
 * went away, ENOSPC) is dropped instead of ending the process as an
 * unhandled 'error' event would; the host keeps serving its VMs.
 */
export function keepWritingOnErrors(): void {
  for (const s of [process.stdout, process.stderr]) if (s.listenerCount('error') === 0) s.on('error', () => {});
}
