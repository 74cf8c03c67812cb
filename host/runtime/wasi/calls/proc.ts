/** proc_exit and proc_raise. */
import { Errno, SIGNAL_MAX } from '../abi.ts';
import { WasiExit } from '../errors.ts';
import { u32 } from '../memory.ts';

type HostFn = (...args: any[]) => number | void;

/**
 * proc_raise(sig), as wasmtime's preview1 host answers it: signals are not
 * delivered to a preview1 guest; every defined signal gives ENOTSUP and the
 * guest keeps running (wasi-libc's raise() then fails), and a value outside
 * the witx `signal` enum gives EINVAL. Nothing changes, so nothing is logged.
 */
function procRaise(sig: number): number {
  if (sig > SIGNAL_MAX) return Errno.INVAL;
  return Errno.NOTSUP;
}

/** The proc_* imports. proc_exit throws WasiExit with the full u32 status. */
export function procCalls(): Record<string, HostFn> {
  return {
    proc_exit: (code: number): void => {
      throw new WasiExit(u32(code));
    },
    proc_raise: (sig: number) => procRaise(u32(sig)),
  };
}
