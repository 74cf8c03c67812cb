// The error catalogue: every stable code ftvm raises, once, with what it
// means, the HTTP status the REST API answers it with, and the exit status
// the command line gives for it. Every door uses this table: the REST API
// (api/server.ts: its status, and the enum of its OpenAPI error schema), the
// client port (the code travels in its `error` answer), and the command line
// (cli/errors.ts: its exit status). The README's "Errors" section shows the
// same table; test/errors.catalogue.test.ts keeps the three in step and
// checks that every code the sources raise is here.
//
// A code is a stable name a caller matches on; the message is for people and
// may change. Codes are never reused for another meaning. As fastify's
// lib/errors.js (FST_ERR_*) and undici's UND_ERR_* do, each error object
// carries its `code`; this module adds the one place that says what a code
// means at each door.
//
// Exit statuses follow cli/errors.ts: 1 a failure, 2 a wrong command line
// (or request), 3 a replay that diverged, 4 a log that ends before the guest
// did, 124 the guest's deadline, 125 a guest trap. Codes that only one door
// raises still have both numbers, so that whatever carries them (a forwarded
// error, a client of the API) answers the same way.

/** One code's entry: a one-line meaning, its HTTP status and its CLI exit status. */
export interface ErrorEntry {
  /** what the code says, in one line (the README table shows it) */
  meaning: string;
  /** the HTTP status the REST API answers with (RFC 9110 section 15) */
  http: number;
  /** the exit status of `ftvm` (cli/errors.ts EXIT) */
  exit: number;
}

const e = (http: number, exit: number, meaning: string): ErrorEntry => ({ meaning, http, exit });

/** The catalogue, grouped by the part of ftvm that raises the codes. */
export const ERROR_CATALOGUE = {
  // ---- requests (REST API, client port, command line) ----
  FTVM_ERR_BAD_REQUEST: e(400, 2, 'a request is malformed: a field of the wrong type, missing, unknown, or out of range'),
  FTVM_ERR_TOO_LARGE: e(413, 1, 'a request, module or field is larger than its limit'),
  FTVM_ERR_UNAUTHORIZED: e(401, 1, 'the request carries no valid credentials (the API token)'),
  FTVM_ERR_UNSUPPORTED_MEDIA_TYPE: e(415, 1, 'a request body is not of the media type its route takes: application/json, or application/wasm for a module upload'),
  FTVM_ERR_NOT_FOUND: e(404, 1, 'no such VM, connection, route or directory'),
  FTVM_ERR_MODULE_NOT_FOUND: e(404, 1, 'no module of that SHA-256 on this host: upload it first'),
  FTVM_ERR_EXISTS: e(409, 1, 'a VM of that name exists already'),
  FTVM_ERR_NOT_PRIMARY: e(409, 1, 'the host asked runs no primary of the VM (a failover moved it)'),
  FTVM_ERR_CONFLICT: e(409, 1, 'the VM is not in a state that allows the request (no backup yet, a backup being made, a migration under way, a port taken), or a migration names a host it cannot move to'),
  FTVM_ERR_VM_ENDED: e(409, 1, 'the guest has ended: there is nothing to fail over and no backup to restart'),
  FTVM_ERR_UNAVAILABLE: e(503, 1, 'the host cannot do it now (busy, shutting down, or the host it needs is silent): try again'),
  FTVM_ERR_BUSY: e(503, 1, "the VM's input queue is full (its guest does not take messages as fast as they come): nothing was queued; send again later"),
  FTVM_ERR_STORE_FULL: e(507, 1, "the host's module store is full of modules that VMs use"),
  FTVM_ERR_INTERNAL: e(500, 1, 'a failure that is no caller\'s fault (a bug): the message says what'),
  // ---- modules: checked, metered, loaded ----
  FTVM_ERR_INVALID_MODULE: e(400, 1, 'the bytes are not a valid WebAssembly module'),
  FTVM_ERR_UNSUPPORTED_IMPORT: e(400, 1, 'the module imports something ftvm does not provide'),
  FTVM_ERR_UNSUPPORTED_FEATURE: e(400, 1, 'the module uses a feature ftvm cannot make deterministic or meter (threads, relaxed SIMD, ...)'),
  FTVM_ERR_NO_ENTRY: e(400, 1, 'the module exports no entry ftvm can start (_start, or a reactor\'s)'),
  FTVM_ERR_MEMORY_LIMIT: e(400, 1, "the module's initial memory is larger than the VM's memory limit"),
  FTVM_ERR_NAME_CLASH: e(400, 1, 'the module already uses a name the metering needs'),
  FTVM_ERR_MODULE_TOO_DEEP: e(400, 1, 'the module nests expressions deeper than the metering can follow'),
  FTVM_ERR_NO_INTERRUPTS: e(400, 1, 'the guest programs a timer, which only record/replay and the service deliver'),
  FTVM_ERR_HOST_STACK: e(500, 1, "the host thread's native stack ran out before the guest's deterministic depth limit: lower it"),
  // ---- a running guest ----
  FTVM_ERR_TRAP: e(500, 125, 'the guest trapped'),
  FTVM_ERR_DEADLINE: e(500, 124, 'the guest was stopped at its deadline'),
  FTVM_ERR_EXIT_STATUS: e(500, 1, "the guest's exit status is outside what a process exit status can carry (0..123)"),
  FTVM_ERR_DEPTH_EXCEEDED: e(500, 125, 'the guest passed its call-depth limit (reported as a trap)'),
  FTVM_ERR_SNAPSHOT: e(500, 1, 'a snapshot of the guest cannot be taken or restored'),
  FTVM_ERR_WORKER_TIMEOUT: e(500, 1, 'a guest worker did not finish in time'),
  FTVM_ERR_REPLICA: e(500, 1, "a VM's replica worker failed"),
  FTVM_ERR_INVARIANT: e(500, 70, 'an invariant of the host does not hold (a bug): the process stops rather than corrupt state (host/assert.ts)'),
  FTVM_ERR_LIMITS: e(500, 1, 'the limits of host/limits.ts do not fit each other: the host does not start'),
  FTVM_ERR_OUTPUT_LOST: e(500, 1, "the guest's output could not be written where it goes"),
  FTVM_ERR_TCPLISTEN: e(500, 1, 'the address given to --tcplisten cannot be listened on'),
  // ---- the log ----
  FTVM_ERR_LOG_FOREIGN: e(400, 1, 'the file is not an ftvm log'),
  FTVM_ERR_LOG_VERSION: e(400, 1, 'the log was written by a version this ftvm does not read'),
  FTVM_ERR_LOG_HEADER: e(400, 1, "the log's header is damaged"),
  FTVM_ERR_LOG_TRUNCATED: e(400, 1, 'the log ends inside a frame'),
  FTVM_ERR_LOG_FRAME_SIZE: e(400, 1, 'a log frame is larger than the limit'),
  FTVM_ERR_LOG_CHECKSUM: e(400, 1, "a log frame fails its checksum"),
  FTVM_ERR_LOG_DECODE: e(400, 1, 'a log frame does not decode'),
  FTVM_ERR_LOG_ENTRY: e(400, 1, 'a log entry is malformed or out of order'),
  FTVM_ERR_LOG_ENTRY_TOO_LARGE: e(413, 1, 'an entry or frame is too large to be logged'),
  FTVM_ERR_LOG_WRITE: e(500, 1, 'the log could not be written'),
  FTVM_ERR_LOG_INCOMPLETE: e(400, 4, 'the log ends before the guest did (a recording that was stopped)'),
  FTVM_ERR_DIVERGENCE: e(409, 3, 'the replay differs from the log'),
  // ---- the TCP channels (peer and client frames) ----
  FTVM_ERR_FRAME_SIZE: e(413, 1, 'a frame is larger than its channel allows'),
  FTVM_ERR_FRAME_CHECKSUM: e(400, 1, 'a frame fails its checksum'),
  FTVM_ERR_FRAME_DECODE: e(400, 1, 'a frame does not decode'),
  FTVM_ERR_FRAME_VERSION: e(400, 1, 'a frame carries another wire version'),
  FTVM_ERR_AUTH: e(401, 1, 'a peer failed the HMAC handshake'),
  FTVM_ERR_TOO_MANY_CONNECTIONS: e(503, 1, 'the client port has as many connections open as it allows (in all, or from that address)'),
  FTVM_ERR_BAD_MESSAGE: e(400, 1, 'a peer message is not one the protocol knows, or a field is wrong'),
  FTVM_ERR_ARBITER: e(503, 1, 'the arbiter cannot be reached or refused the request'),
  // ---- the command line ----
  FTVM_ERR_USAGE: e(400, 2, 'the command line is wrong'),
  FTVM_ERR_PRIVILEGE: e(403, 1, 'the command needs a privilege it does not have (ftvm chaos: root, for network namespaces)'),
  FTVM_ERR_GUEST_NOT_FOUND: e(404, 1, 'no such guest file or sample'),
  FTVM_ERR_FILE_NOT_FOUND: e(404, 1, 'a file named on the command line does not exist'),
  FTVM_ERR_FILE_IS_DIR: e(400, 1, 'a file named on the command line is a directory'),
  FTVM_ERR_FILE_ACCESS: e(403, 1, 'a file named on the command line may not be read or written'),
  FTVM_ERR_FILE_IO: e(500, 1, 'reading or writing a file failed'),
  FTVM_ERR_FILE: e(500, 1, 'a directory ftvm needs cannot be made'),
  FTVM_ERR_MEMORY_RANGE: e(400, 2, "--memory names bytes outside the guest's memory"),
  FTVM_ERR_MESSAGES: e(400, 2, 'a --messages file is malformed'),
  FTVM_ERR_DIR_SYNTAX: e(400, 1, '--dir is not HOST or HOST::GUEST'),
  FTVM_ERR_DIR_NOT_FOUND: e(404, 1, 'a --dir directory does not exist'),
  FTVM_ERR_DIR_NOT_A_DIR: e(400, 1, 'a --dir path is not a directory'),
  FTVM_ERR_DIR_DUPLICATE: e(400, 1, 'two --dir options give the same guest name'),
  FTVM_ERR_DIR_TOO_MANY: e(400, 1, 'more directories than a log can name are preopened'),
  FTVM_ERR_OUT_NOT_EMPTY: e(409, 1, '--out names a directory that is not empty'),
  FTVM_ERR_NO_TESTS: e(400, 2, 'ftvm conformance finds no tests (or too many)'),
  FTVM_ERR_BAD_SPEC: e(400, 2, "a conformance test's JSON is malformed"),
  FTVM_ERR_BUILD_LOCKED: e(503, 1, 'another build holds the lock on dist/'),
} as const satisfies Record<`FTVM_ERR_${string}`, ErrorEntry>;

/** Every stable error code ftvm raises (the catalogue's keys). */
export type FtvmErrorCode = keyof typeof ERROR_CATALOGUE;

/** The catalogue's codes, in its order. */
export const ERROR_CODES: readonly FtvmErrorCode[] = Object.keys(ERROR_CATALOGUE) as FtvmErrorCode[];

/** Whether `code` is a catalogued code (a string of the catalogue's keys). */
export function isErrorCode(code: unknown): code is FtvmErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CATALOGUE, code);
}

/** The HTTP status of `code` (the catalogue's). */
export function httpStatusOf(code: FtvmErrorCode): number {
  return ERROR_CATALOGUE[code].http;
}

/** The exit status of `ftvm` for `code` (the catalogue's). */
export function exitStatusOf(code: FtvmErrorCode): number {
  return ERROR_CATALOGUE[code].exit;
}

/**
 * An error with a catalogued code and a one-line message for people. The
 * parts of ftvm that have no error class of their own raise this one; the
 * others (HostError, MeterError, LogFormatError, ...) type their `code` with
 * FtvmErrorCode, so every door can look any of them up here.
 */
export class FtvmError extends Error {
  constructor(
    readonly code: FtvmErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'FtvmError';
  }
}
