// How `ftvm run`, `record`, `replay`, `bench` and `conformance` fail: one
// catalogue of exit statuses, one error class for the command line's own
// refusals, and one function (describeFailure) that turns anything thrown
// into the single line `ftvm: FTVM_ERR_X: message` and an exit status. No
// failure of these commands prints a stack trace.
//
// Exit statuses (the guest's own status passes through when it is 0..123,
// see guest-io.ts exitStatus):
//   0    success (replay: the log was reproduced)
//   1    a failure: a file that cannot be read or written, a module or log
//        that is refused, output that could not be written (FTVM_ERR_OUTPUT_LOST),
//        a guest exit status outside 0..123 (FTVM_ERR_EXIT_STATUS)
//   2    the command line is wrong (FTVM_ERR_USAGE and the other codes marked so)
//   3    replay diverged from the log (FTVM_ERR_DIVERGENCE)
//   4    replay reproduced the whole log, but the log ends before the guest
//        did (FTVM_ERR_LOG_INCOMPLETE: a recording that was stopped)
//   124  the guest was stopped at its deadline (FTVM_ERR_DEADLINE)
//   125  the guest trapped (FTVM_ERR_TRAP)
// A signal that stops ftvm gives the shell's usual status (128 + the signal).
// Each code's exit status is the error catalogue's (host/errors.ts), so a code
// gives the same status whichever command raises it.

import { exitStatusOf, isErrorCode, type FtvmErrorCode } from '../errors.ts';

/** The exit statuses of the command line, see the table above. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  diverged: 3,
  incomplete: 4,
  deadline: 124,
  trap: 125,
} as const;

/** The codes the command line itself raises (others come from the parts it calls: log, meter, runtime). */
export type CliErrorCode = Extract<
  FtvmErrorCode,
  | 'FTVM_ERR_USAGE'
  | 'FTVM_ERR_GUEST_NOT_FOUND'
  | 'FTVM_ERR_FILE_NOT_FOUND'
  | 'FTVM_ERR_FILE_IS_DIR'
  | 'FTVM_ERR_FILE_ACCESS'
  | 'FTVM_ERR_FILE_IO'
  | 'FTVM_ERR_MEMORY_RANGE'
  | 'FTVM_ERR_MESSAGES'
  | 'FTVM_ERR_LOG_WRITE'
  | 'FTVM_ERR_LOG_INCOMPLETE'
  | 'FTVM_ERR_OUTPUT_LOST'
  | 'FTVM_ERR_INTERNAL'
>;

/** A refusal of the command line: its stable code, a one-line message and the exit status it gives (by default the catalogue's for the code). */
export class CliError extends Error {
  constructor(
    readonly code: CliErrorCode,
    message: string,
    readonly exitStatus: number = exitStatusOf(code),
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A wrong command line (exit status 2): FTVM_ERR_USAGE, `message` says what and where to look. */
export function usageError(message: string): CliError {
  return new CliError('FTVM_ERR_USAGE', message, EXIT.usage);
}

const ERRNO_CODE: Record<string, CliErrorCode> = {
  ENOENT: 'FTVM_ERR_FILE_NOT_FOUND',
  ENOTDIR: 'FTVM_ERR_FILE_NOT_FOUND',
  EISDIR: 'FTVM_ERR_FILE_IS_DIR',
  EACCES: 'FTVM_ERR_FILE_ACCESS',
  EPERM: 'FTVM_ERR_FILE_ACCESS',
  EROFS: 'FTVM_ERR_FILE_ACCESS',
};

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
};

/**
 * A failed file operation as a CliError naming the path once:
 * `<what> <path>: cannot <verb> (<reason>)`. `what` is the option or role
 * ("--log", "--stdin", "guest"). Codes: FTVM_ERR_FILE_NOT_FOUND (ENOENT,
 * ENOTDIR), FTVM_ERR_FILE_IS_DIR, FTVM_ERR_FILE_ACCESS (EACCES, EPERM,
 * EROFS), FTVM_ERR_FILE_IO (anything else); exit status 1.
 */
export function fileError(e: unknown, what: string, path: string, verb: 'read' | 'write' | 'create'): CliError {
  const errno = (e as NodeJS.ErrnoException).code ?? '';
  const reason = ERRNO_TEXT[errno] ?? (errno ? `${errno}: ${firstLine((e as Error).message)}` : firstLine(String((e as Error)?.message ?? e)));
  return new CliError(ERRNO_CODE[errno] ?? 'FTVM_ERR_FILE_IO', `${what} ${path}: cannot ${verb} (${reason})`);
}

/** Runs `f`, turning a thrown file error into fileError(what, path, verb). */
export function onFile<T>(what: string, path: string, verb: 'read' | 'write' | 'create', f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw fileError(e, what, path, verb);
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

/**
 * What a failure prints and the exit status it gives. Accepts anything
 * thrown: a CliError (its code and status), node:util parseArgs' errors
 * (ERR_PARSE_ARGS_*: FTVM_ERR_USAGE, 2), an error with a catalogued
 * `FTVM_ERR_*` code from another part (the catalogue's exit status, e.g. 3 for
 * a DivergenceError; an uncatalogued FTVM_ERR_* code: 1), a Node system error
 * (fileError's codes, 1), and anything else (FTVM_ERR_INTERNAL, 1). `cmd` names
 * the command for the usage hint. The line has no trailing newline.
 */
export function describeFailure(err: unknown, cmd?: string): { line: string; status: number } {
  const e = err as Error & { code?: unknown; path?: unknown; exitStatus?: unknown };
  const hint = cmd ? ` (see ftvm ${cmd} --help)` : '';
  if (e instanceof CliError) return { line: `ftvm: ${e.code}: ${e.message}`, status: e.exitStatus };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (code.startsWith('ERR_PARSE_ARGS_')) {
    // node:util's own text says what is wrong in its first sentence; the rest is advice about quoting.
    const first = firstLine(e.message).replace(/\. To specify .*$/, '').replace(/\.$/, '');
    const option = /Option '(-[^' ]+)/.exec(first)?.[1];
    const said = /ambiguous/.test(first) && option ? `${option} needs a value; a value that starts with "-" is written ${option}=-VALUE` : first;
    return { line: `ftvm: FTVM_ERR_USAGE: ${said}${hint}`, status: EXIT.usage };
  }
  if (isErrorCode(code)) return { line: `ftvm: ${code}: ${firstLine(e.message)}`, status: typeof e.exitStatus === 'number' ? e.exitStatus : exitStatusOf(code) };
  if (code.startsWith('FTVM_ERR_')) return { line: `ftvm: ${code}: ${firstLine(e.message)}`, status: typeof e.exitStatus === 'number' ? e.exitStatus : EXIT.failure };
  if (/^E[A-Z]+$/.test(code) && typeof e.path === 'string') {
    const f = fileError(e, 'file', e.path, 'read');
    return { line: `ftvm: ${f.code}: ${f.message}`, status: EXIT.failure };
  }
  const message = e instanceof Error ? firstLine(e.message) : String(err);
  return { line: `ftvm: FTVM_ERR_INTERNAL: ${message}`, status: EXIT.failure };
}
