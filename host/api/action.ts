// One action type for every request that changes a VM, whichever door it came
// through (the REST API, the client port, the command line, FtHost.startVm
// itself), checked once against one set of rules before anything is created;
// as Firecracker turns every API request into one `VmmAction`
// (src/vmm/src/rpc_interface.rs) and validates it before the VMM sees it.
//
//   action           allowed when                        errors (host/errors.ts)
//   start            the name is free                    BAD_REQUEST, TOO_LARGE (here);
//                                                        EXISTS, CONFLICT, MODULE_NOT_FOUND,
//                                                        the module's own (FtHost.startVm)
//   stop             the VM exists                       NOT_FOUND, UNAVAILABLE
//   failover         the VM runs with a backup           NOT_FOUND, CONFLICT, VM_ENDED, UNAVAILABLE
//   restart-backup   a reactor VM runs, no backup being  NOT_FOUND, CONFLICT, VM_ENDED, UNAVAILABLE
//                    made
//   migrate          a reactor VM runs with its backup   BAD_REQUEST (here); NOT_FOUND, CONFLICT,
//                    in place, none moving               VM_ENDED, UNAVAILABLE (FtHost.migrateVm)
//   send             any time (the host routes it)       BAD_REQUEST, TOO_LARGE (here)
//
// Types are exact: a number is never taken for a string ("name": 5 is refused,
// not made the VM "5"), a string never for a number, and no field is unknown.
// Every limit is checked here, so that what is accepted can be run, logged and
// shipped: the start entry (the name, args and env) must fit one log frame
// (log/format.ts FRAME_BYTES_MAX), which also makes the backup request that
// carries it fit one peer frame (cluster/wire.ts PEER_FRAME_MAX); stdin is
// logged in chunks and bounded well under the unacknowledged-log bound.
// The rules on strings are the ones a process's argv and environ obey
// (POSIX execve): no NUL anywhere, and an environment name is non-empty and
// holds no '='.

import { FtvmError } from '../errors.ts';
import { encodeFrame, FRAME_BYTES_MAX, type EntryPayloads } from '../log/format.ts';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from '../meter/abi.ts';
import { NAME_RE } from '../cluster/arbiter.ts';
import { PUBLISH_PORTS_MAX } from '../cluster/ingress.ts';
import { HASH_RE } from '../cluster/module-store.ts';
import { MODULE_CHUNK_BYTES, PEER_FRAME_MAX } from '../cluster/wire.ts';
import { MAX_MESSAGE_BYTES } from '../runtime/nic.ts';
import { VM_ARGS_MAX, VM_ENV_MAX, VM_STRING_BYTES_MAX, VM_ARGV_ENV_BYTES_MAX, VM_STDIN_BYTES_MAX, VM_CPU_PERCENT_MAX } from '../limits.ts';
export { VM_ARGS_MAX, VM_ENV_MAX, VM_STRING_BYTES_MAX, VM_ARGV_ENV_BYTES_MAX, VM_STDIN_BYTES_MAX, VM_CPU_PERCENT_MAX };

// ---- limits (each with its unit; the ones it depends on are checked below) ----

/** The most memory a guest may grow to, in MiB (the metering's memory limit). */
export const VM_MEMORY_MIB_MAX = DEFAULT_MEMORY_LIMIT_PAGES / 16;
/** A state digest is logged at the first check point at or past every multiple of this many counts. */
export const VM_DIGEST_EVERY_COUNTS = 10_000_000n;

/** msgpack's bytes around one string, at most (str32 header). */
const MSGPACK_STRING_OVERHEAD_BYTES = 5;
// The dependent limits, checked when the module loads (a wrong edit stops ftvm at start-up):
// every string at its worst overhead, plus the rest of the entry (under 1 KiB), fits one log frame ...
if (VM_ARGV_ENV_BYTES_MAX + (1 + VM_ARGS_MAX + 2 * VM_ENV_MAX) * MSGPACK_STRING_OVERHEAD_BYTES + 1024 > FRAME_BYTES_MAX) {
  throw new Error('limits: the largest start entry does not fit one log frame (VM_ARGV_ENV_BYTES_MAX, VM_ARGS_MAX, VM_ENV_MAX, FRAME_BYTES_MAX)');
}
// ... and the backup request that carries it with modules inline (at most one module chunk's worth) fits one peer frame.
if (FRAME_BYTES_MAX + MODULE_CHUNK_BYTES + 64 * 1024 > PEER_FRAME_MAX) {
  throw new Error('limits: a backup request with its start entry does not fit one peer frame (FRAME_BYTES_MAX, MODULE_CHUNK_BYTES, PEER_FRAME_MAX)');
}
if (VM_STRING_BYTES_MAX > VM_ARGV_ENV_BYTES_MAX) throw new Error('limits: VM_STRING_BYTES_MAX is above VM_ARGV_ENV_BYTES_MAX');

// ---- the actions ----

/**
 * What a VM is started with, checked: every field present, of its exact type,
 * within its limit. `module` (its bytes) or `moduleHash` (a module the host
 * has), never both.
 */
export interface StartAction {
  kind: 'start';
  /** the VM's name (arbiter.ts NAME_RE), also the guest's argv[0] */
  name: string;
  module?: Uint8Array;
  /** SHA-256 of a module the host has, 64 lower-case hex digits */
  moduleHash?: string;
  /** the guest's arguments after its name */
  args: string[];
  env: Record<string, string>;
  /** stdin, whole, logged at start (empty: none) */
  stdin: Uint8Array;
  memoryMiB: number;
  cpuPercent: number;
  /** TCP ports every live host serves the VM on, distinct */
  publish: number[];
}

/** A request about one VM that names it only: delete it, test a failover, re-create its backup. */
export interface VmOpAction {
  kind: 'stop' | 'failover' | 'restart-backup';
  vm: string;
}

/** A message to a VM's NIC on connection `conn`: 1..MAX_MESSAGE_BYTES bytes, or an end of stream with none. */
export interface SendAction {
  kind: 'send';
  vm: string;
  /** the connection (u32) */
  conn: number;
  bytes: Uint8Array;
  eof: boolean;
}

/** A live migration: VM `vm`'s `replica` (the primary unless said) moves to host `to` (FtHost.migrateVm). */
export interface MigrateAction {
  kind: 'migrate';
  vm: string;
  /** a host's id (NAME_RE) */
  to: string;
  replica: 'primary' | 'backup';
}

/** Every request that changes a VM. */
export type VmAction = StartAction | VmOpAction | SendAction | MigrateAction;

// ---- checks ----

const bad = (message: string): never => {
  throw new FtvmError('FTVM_ERR_BAD_REQUEST', message);
};
const tooLarge = (message: string): never => {
  throw new FtvmError('FTVM_ERR_TOO_LARGE', message);
};

/** A JSON-like plain object (not an array, not a class instance), else null. */
function plainObject(v: unknown): Record<string, unknown> | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return null;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null ? (v as Record<string, unknown>) : null;
}

function typeName(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** Refuses any key of `o` not in `known`, naming it. */
function onlyKnown(o: Record<string, unknown>, known: readonly string[], what: string): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) bad(`${what} has no field ${JSON.stringify(k)} (known: ${known.join(', ')})`);
}

/** The VM name `v`: a string matching NAME_RE. */
export function checkVmName(v: unknown, field = 'name'): string {
  if (v === undefined) return bad(`"${field}" is missing: a VM needs a name`);
  if (typeof v !== 'string') return bad(`"${field}" must be a string, not ${typeName(v)}`);
  if (!NAME_RE.test(v)) return bad(`"${field}" ${JSON.stringify(v.slice(0, 80))} must match ${NAME_RE}`);
  return v;
}

function integerIn(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) return bad(`"${field}" must be an integer from ${min} to ${max}, not ${typeName(v) === 'a number' ? v : typeName(v)}`);
  if (v < min || v > max) return bad(`"${field}" must be an integer from ${min} to ${max}, not ${v}`);
  return v;
}

/** Checks the args and env against the string rules and the limits; returns the bytes argv and environ take with `name` as argv[0]. */
function checkArgv(name: string, args: unknown, env: unknown): { args: string[]; env: Record<string, string> } {
  let total = Buffer.byteLength(name) + 1;
  let outArgs: string[] = [];
  if (args !== undefined) {
    if (!Array.isArray(args)) return bad(`"args" must be an array of strings, not ${typeName(args)}`);
    if (args.length > VM_ARGS_MAX) return tooLarge(`"args" has ${args.length} arguments, more than ${VM_ARGS_MAX}`);
    for (let i = 0; i < args.length; i++) {
      const a: unknown = args[i];
      if (typeof a !== 'string') return bad(`"args"[${i}] must be a string, not ${typeName(a)}`);
      if (a.includes('\0')) return bad(`"args"[${i}] holds a NUL character, which an argument cannot`);
      const bytes = Buffer.byteLength(a);
      if (bytes > VM_STRING_BYTES_MAX) return tooLarge(`"args"[${i}] has ${bytes} bytes, more than ${VM_STRING_BYTES_MAX}`);
      total += bytes + 1;
    }
    outArgs = args as string[];
  }
  let outEnv: Record<string, string> = {};
  if (env !== undefined) {
    const o = plainObject(env);
    if (!o) return bad(`"env" must be an object of strings, not ${typeName(env)}`);
    const keys = Object.keys(o);
    if (keys.length > VM_ENV_MAX) return tooLarge(`"env" has ${keys.length} variables, more than ${VM_ENV_MAX}`);
    for (const k of keys) {
      const v = o[k];
      const shown = JSON.stringify(k.slice(0, 80));
      if (k === '') return bad('"env" has an empty variable name');
      if (k.includes('=') || k.includes('\0')) return bad(`"env" name ${shown} holds ${k.includes('=') ? "'='" : 'a NUL character'}, which a variable name cannot`);
      if (typeof v !== 'string') return bad(`"env".${shown} must be a string, not ${typeName(v)}`);
      if (v.includes('\0')) return bad(`"env".${shown} holds a NUL character, which a value cannot`);
      const bytes = Buffer.byteLength(k) + 1 + Buffer.byteLength(v);
      if (bytes > VM_STRING_BYTES_MAX) return tooLarge(`"env".${shown} takes ${bytes} bytes as NAME=value, more than ${VM_STRING_BYTES_MAX}`);
      total += bytes + 1;
    }
    outEnv = o as Record<string, string>;
  }
  if (total > VM_ARGV_ENV_BYTES_MAX) return tooLarge(`the name, "args" and "env" take ${total} bytes together, more than ${VM_ARGV_ENV_BYTES_MAX}`);
  return { args: outArgs, env: outEnv };
}

const START_FIELDS = ['name', 'module', 'moduleHash', 'args', 'env', 'stdin', 'memoryMiB', 'cpuPercent', 'publish'] as const;

/**
 * Checks a request to start a VM and returns it as a StartAction with every
 * default filled in. `raw` has StartAction's fields but `kind` (each optional
 * but `name`, and exactly one of `module` (Uint8Array) and `moduleHash`);
 * `stdin` is bytes. An absent field is `undefined`; anything else of the
 * wrong type, and any unknown field, is refused.
 * Errors: FtvmError FTVM_ERR_BAD_REQUEST (a type, a pattern, a range, a
 * string rule), FTVM_ERR_TOO_LARGE (a count or size limit: VM_ARGS_MAX,
 * VM_ENV_MAX, VM_STRING_BYTES_MAX, VM_ARGV_ENV_BYTES_MAX, VM_STDIN_BYTES_MAX,
 * or a start entry larger than one log frame).
 */
export function checkStart(raw: unknown): StartAction {
  const o = plainObject(raw);
  if (!o) return bad(`a start request must be an object, not ${typeName(raw)}`);
  onlyKnown(o, START_FIELDS, 'a start request');
  const name = checkVmName(o.name);
  if ((o.module === undefined) === (o.moduleHash === undefined)) return bad('give exactly one of a module and a module hash');
  if (o.module !== undefined && !(o.module instanceof Uint8Array)) return bad(`"module" must be bytes, not ${typeName(o.module)}`);
  if (o.moduleHash !== undefined && (typeof o.moduleHash !== 'string' || !HASH_RE.test(o.moduleHash))) return bad('a module hash is 64 lower-case hex digits (SHA-256)');
  const { args, env } = checkArgv(name, o.args, o.env);
  let stdin: Uint8Array = new Uint8Array(0);
  if (o.stdin !== undefined) {
    if (!(o.stdin instanceof Uint8Array)) return bad(`"stdin" must be bytes, not ${typeName(o.stdin)}`);
    if (o.stdin.length > VM_STDIN_BYTES_MAX) return tooLarge(`"stdin" has ${o.stdin.length} bytes, more than ${VM_STDIN_BYTES_MAX}`);
    stdin = o.stdin;
  }
  const memoryMiB = o.memoryMiB === undefined ? VM_MEMORY_MIB_MAX : integerIn(o.memoryMiB, 'memoryMiB', 1, VM_MEMORY_MIB_MAX);
  const cpuPercent = o.cpuPercent === undefined ? VM_CPU_PERCENT_MAX : integerIn(o.cpuPercent, 'cpuPercent', 1, VM_CPU_PERCENT_MAX);
  let publish: number[] = [];
  if (o.publish !== undefined) {
    if (!Array.isArray(o.publish)) return bad(`"publish" must be an array of TCP ports, not ${typeName(o.publish)}`);
    if (o.publish.length > PUBLISH_PORTS_MAX) return tooLarge(`"publish" names ${o.publish.length} ports, more than ${PUBLISH_PORTS_MAX}`);
    publish = o.publish.map((p, i) => integerIn(p, `publish[${i}]`, 1, 65535));
    if (new Set(publish).size !== publish.length) return bad('"publish" names a port twice');
  }
  const action: StartAction = { kind: 'start', name, ...(o.module !== undefined ? { module: o.module as Uint8Array } : { moduleHash: o.moduleHash as string }), args, env, stdin, memoryMiB, cpuPercent, publish };
  // What is accepted must be loggable: encode the start entry it makes (a
  // SHA-256's worth of hash in place of the real one) as the log would.
  try {
    encodeFrame([{ seq: 0, count: 0n, kind: 'start', payload: startEntryOf(action, '0'.repeat(64)) }]);
  } catch (e) {
    return tooLarge(`the start entry would not fit one log frame: ${(e as Error).message}`);
  }
  return action;
}

/**
 * The start entry a VM of `action` logs (log/format.ts), for the module of
 * SHA-256 `moduleHash`: argv[0] is the VM's name, as every runner gives it;
 * a state digest every `digestEvery` counts (the host's --digest-every).
 */
export function startEntryOf(action: StartAction, moduleHash: string, digestEvery: bigint = VM_DIGEST_EVERY_COUNTS): EntryPayloads['start'] {
  return {
    module: moduleHash,
    args: [action.name, ...action.args],
    env: action.env,
    digestEvery,
    depthLimit: DEFAULT_DEPTH_LIMIT,
    memoryLimitPages: action.memoryMiB * 16,
    canonicalizeNaNs: false,
  };
}

/**
 * Checks a `start` message of the client port (cluster/wire.ts: `vm`, then
 * StartAction's fields, and the frame's own `t`, `id` and `v`) and returns
 * its StartAction. Errors: as checkStart.
 */
export function checkClientStart(m: Record<string, unknown>): StartAction {
  const { t: _t, id: _id, v: _v, vm, ...rest } = m;
  if ('name' in rest) return bad('a start message names its VM in "vm"');
  return checkStart({ ...rest, name: checkVmName(vm, 'vm') });
}

/** The JSON body of POST /v1/vms, type-checked (see checkStartBody). */
export interface StartBody {
  name: string;
  sample?: string;
  /** base64 */
  module?: string;
  moduleHash?: string;
  args?: string[];
  env?: Record<string, string>;
  stdin?: string;
  /** base64 */
  stdinBase64?: string;
  memoryMiB?: number;
  cpuPercent?: number;
  publish?: number[];
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const BODY_FIELDS = ['name', 'sample', 'module', 'moduleHash', 'args', 'env', 'stdin', 'stdinBase64', 'memoryMiB', 'cpuPercent', 'publish'] as const;

/**
 * Checks the JSON body of POST /v1/vms (as `ftvm vm start` builds it) by the
 * rules of checkStart, before any module is read: exact types, exactly one of
 * `sample`, `module` (base64) and `moduleHash`, at most one of `stdin` and
 * `stdinBase64` (base64), and every limit. The command line calls it before
 * it sends a request, the REST API before it reads a module. Returns the
 * body, typed, and its stdin as bytes (undefined: none given).
 * Errors: as checkStart.
 */
export function checkStartBody(raw: unknown): { body: StartBody; stdin: Uint8Array | undefined } {
  const o = plainObject(raw);
  if (!o) return bad(`the body must be a JSON object, not ${typeName(raw)}`);
  onlyKnown(o, BODY_FIELDS, 'the body');
  for (const k of ['sample', 'module', 'moduleHash', 'stdin', 'stdinBase64'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'string') return bad(`"${k}" must be a string, not ${typeName(o[k])}`);
  }
  if ([o.sample, o.module, o.moduleHash].filter((x) => x !== undefined).length !== 1) return bad('give exactly one of "sample", "module" and "moduleHash"');
  if (o.module !== undefined && !BASE64_RE.test(o.module as string)) return bad('"module" is not base64');
  if (o.stdin !== undefined && o.stdinBase64 !== undefined) return bad('give at most one of "stdin" and "stdinBase64"');
  if (o.stdinBase64 !== undefined && !BASE64_RE.test(o.stdinBase64 as string)) return bad('"stdinBase64" is not base64');
  const stdin = o.stdin !== undefined ? Buffer.from(o.stdin as string, 'utf8') : o.stdinBase64 !== undefined ? Buffer.from(o.stdinBase64 as string, 'base64') : undefined;
  // The rest by checkStart's rules, with a stand-in for the module (it is read later).
  checkStart({
    name: o.name,
    moduleHash: o.moduleHash ?? '0'.repeat(64),
    args: o.args,
    env: o.env,
    stdin: stdin && new Uint8Array(stdin.buffer, stdin.byteOffset, stdin.length),
    memoryMiB: o.memoryMiB,
    cpuPercent: o.cpuPercent,
    publish: o.publish,
  });
  return { body: o as unknown as StartBody, stdin: stdin && new Uint8Array(stdin.buffer, stdin.byteOffset, stdin.length) };
}

/**
 * Checks a request that names one VM (stop, failover, restart-backup).
 * Errors: FtvmError FTVM_ERR_BAD_REQUEST (an unknown kind, a bad name).
 */
export function checkVmOp<K extends VmOpAction['kind']>(kind: K, vm: unknown): VmOpAction & { kind: K } {
  if (kind !== 'stop' && kind !== 'failover' && kind !== 'restart-backup') return bad(`no VM operation ${JSON.stringify(kind)}`);
  return { kind, vm: checkVmName(vm, 'vm') };
}

/**
 * Checks a migration request: VM `vm` and the body `{"to": HOST, "replica"?:
 * "primary" | "backup"}` (no other field; `replica` defaults to "primary").
 * Errors: FtvmError FTVM_ERR_BAD_REQUEST (a bad name, a body that is not an
 * object, `to` missing or not a host id, an unknown `replica` or field).
 */
export function checkMigrate(vm: unknown, body: unknown): MigrateAction {
  const name = checkVmName(vm, 'vm');
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return bad(`a migration's body is an object {"to": HOST}, not ${typeName(body)}`);
  const o = body as Record<string, unknown>;
  onlyKnown(o, ['to', 'replica'], 'a migration');
  if (o.to === undefined) return bad('"to" is missing: the id of the host to move to');
  if (typeof o.to !== 'string') return bad(`"to" must be a string (a host id), not ${typeName(o.to)}`);
  if (!NAME_RE.test(o.to)) return bad(`"to" ${JSON.stringify(o.to.slice(0, 80))} is no host id: it must match ${NAME_RE}`);
  if (o.replica !== undefined && o.replica !== 'primary' && o.replica !== 'backup') return bad(`"replica" is "primary" or "backup", not ${JSON.stringify(o.replica)}`);
  return { kind: 'migrate', vm: name, to: o.to, replica: (o.replica as 'primary' | 'backup' | undefined) ?? 'primary' };
}

/**
 * The bytes of a message's "base64" field (POST /v1/vms/:name/messages),
 * decoded. Errors: FtvmError FTVM_ERR_BAD_REQUEST when `text` is not base64
 * (RFC 4648 section 4's alphabet, "=" padding at the end only), the rule
 * "module" and "stdinBase64" follow: Buffer.from would skip what it cannot
 * read and deliver the rest to the guest as junk.
 */
export function messageBase64(text: string): Uint8Array {
  if (!BASE64_RE.test(text)) return bad('"base64" is not base64');
  const b = Buffer.from(text, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/**
 * Checks a message to a VM: `conn` a u32, `bytes` 1..MAX_MESSAGE_BYTES bytes,
 * or none with `eof`. Errors: FtvmError FTVM_ERR_BAD_REQUEST (a type, an
 * empty message without eof, bytes with eof), FTVM_ERR_TOO_LARGE (more than
 * MAX_MESSAGE_BYTES).
 */
export function checkSend(vm: unknown, conn: unknown, bytes: unknown, eof: unknown = false): SendAction {
  const name = checkVmName(vm, 'vm');
  if (typeof conn !== 'number' || !Number.isInteger(conn) || conn < 0 || conn > 0xffffffff) return bad(`"conn" must be an integer from 0 to ${0xffffffff}`);
  if (!(bytes instanceof Uint8Array)) return bad(`a message's data must be bytes, not ${typeName(bytes)}`);
  if (typeof eof !== 'boolean') return bad(`"eof" must be a boolean, not ${typeName(eof)}`);
  if (bytes.length > MAX_MESSAGE_BYTES) return tooLarge(`a message has ${bytes.length} bytes, more than ${MAX_MESSAGE_BYTES}`);
  if (eof ? bytes.length > 0 : bytes.length === 0) return bad(`a message has 1..${MAX_MESSAGE_BYTES} bytes of data, or is an end of stream with none`);
  return { kind: 'send', vm: name, conn, bytes, eof };
}
