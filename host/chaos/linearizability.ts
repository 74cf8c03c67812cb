// A linearizability checker for the history a chaos campaign's clients record
// against a register store (the kv sample: SET, GET and DEL of a key).
//
// The question (Herlihy and Wing, "Linearizability: A Correctness Condition
// for Concurrent Objects", 1990): is there one total order of the operations
// that (1) keeps every operation that completed before another was invoked
// before it (real-time order) and (2) is a legal sequential history of the
// object? If there is, every client saw a single copy of the store that
// changed atomically at some instant inside each operation's interval.
//
// Model. One register per key, holding a string or nothing (null); at first
// every register holds `initial` (default null: the key is absent). `write v`
// sets it to v, `delete` sets it to null, `read` must return what it holds
// (null: NOTFOUND) and changes nothing.
//
// What each status means to the check (Jepsen's :ok, :fail and :info):
// - ok: it took effect at one instant in [invokeMs, completeMs].
// - fail: it certainly did not take effect; it is dropped.
// - unknown: it may have taken effect at any instant after invokeMs, or never;
//   its completion is +infinity, so it orders no other operation after itself.
//   An unknown read tells nothing (it returned nothing) and is dropped.
// Times: an operation precedes another in real time only when its completeMs
// is strictly less than the other's invokeMs; equal times count as concurrent
// (the two clocks' readings cannot order them), as Porcupine orders a call
// before a return at the same instant.
//
// P-compositionality (Herlihy and Wing, section 3.3): a history is
// linearizable exactly when its sub-history on each object is, so each key is
// checked alone; the keys are independent registers.
//
// The search for one key is Wing and Gong's ("Testing and verifying
// concurrent objects", 1993) with Lowe's memoisation ("Testing for
// linearizability", 2017), in the manner of Porcupine (Athalye): the call and
// return events, sorted by time, form a doubly linked list. Walking it from
// the head, a call whose operation is legal in the current state is
// linearized next: the operation is taken out of the list (its call and its
// return), pushed on a stack, and the walk starts again at the head. Reaching
// a return means its operation was not linearized before it had to be: pop
// the last choice, put its operation back, and go on after its call. The list
// running empty (or reaching the return of an unknown operation, after which
// there are only such) is a linearization; popping an empty stack proves there
// is none. A cache of the configurations already entered (the set of
// linearized operations, and the register's value) prunes every
// configuration reached a second time by another order: its outcome is known
// to be a dead end. The search keeps its stack in typed arrays and never
// recurses, so histories of many thousands of operations on one key run in
// constant native stack.
//
// Three rules, which follow from the register model, keep the search close to
// linear on what clients of a store produce (measured: 32 clients at once on
// one key, 32,000 operations, about 2 states per operation):
// - A set is written as its end (one past the highest operation linearized,
//   operations numbered by invocation) and its gaps (the lower ones not yet
//   linearized): a few words per configuration, where a bitset would cost a
//   bit per operation of the key.
// - A write is not tried while it would strand a read: when the register holds
//   v, a read of v is not linearized yet, and every writer of v left was
//   invoked after that read completed (or none is left), the register can
//   never hold v again in time.
// - A value no read left returns is "dead", and all dead values are one state
//   to the cache. A read taken at its turn, and a write from a dead value to
//   a dead value, are no choice: if any linearization goes on from there, one
//   goes on with that move (see searchKey), so undoing it undoes the
//   configuration it was made in as well.
// Writes of few distinct values by many clients at once (say 32 clients
// writing 50 values) defeat these rules, and the search may then reach its
// bound ('unknown'); clients that write unique values (as Jepsen's do) do not.
//
// Before searching, the history of a key is trimmed, which never changes the
// verdict:
// - an unknown write (or delete) whose value no ok read returns at or after
//   its invocation is dropped: had it taken effect, no read could have been
//   linearized between it and the next write, so leaving it out changes no
//   read;
// - an unknown write that is the only writer of a value some ok read returns
//   (and that value is not `initial`) must have taken effect before that read
//   returned: its completion becomes the earliest completeMs of such a read;
// - an ok read of a value that is not `initial` and that no write invoked
//   before the read returned could have written is a violation at once.
//
// Bounds. The search is exponential in the worst case (the problem is
// NP-complete: Gibbons and Korach, 1997); `timeoutMs` (default
// CHECK_TIMEOUT_MS_DEFAULT, 10 s) bounds the whole check, shared across keys:
// each key in turn gets an equal share of the time left (so a key that
// finishes early leaves its share to the others), and the keys cut off get a
// second try from the start, with equal shares of whatever is left. A key
// still cut off then is reported as unknown; the check returns 'unknown'
// unless another key is a violation. The clock is read every
// TIME_CHECK_STEPS steps of the search, so a check overruns its bound by at
// most that many steps per key cut off (well under a millisecond each), plus
// the preparation of each key, which is not bounded but takes O(n log n) for
// n operations (a few ms for thousands). The memo cache of one key holds at
// most CACHE_ENTRIES_MAX configurations and CACHE_WORDS_MAX 32-bit words of
// sets (with its index, about 50 MiB at most); a full cache stops remembering,
// which costs time (the search may repeat work), never a wrong verdict. Only
// one key's search is alive at a time.

import { FtvmError } from '../errors.ts';
import { LINEARIZABILITY_CHECK_MS_DEFAULT, LINEARIZABILITY_CACHE_ENTRIES_MAX, LINEARIZABILITY_CACHE_WORDS_MAX } from '../limits.ts';

/** One client operation on one key of a register store (the kv sample: SET/GET/DEL). */
export interface Op {
  /** the client (a process in Jepsen's words) that issued it; one op at a time per process */
  process: number;
  key: string;
  f: 'write' | 'read' | 'delete';
  /** write: the value written; read: the value read (null: NOTFOUND); delete: null */
  value: string | null;
  /** ms (any monotonic origin) when it was invoked */
  invokeMs: number;
  /** ms when its answer came; null when it never came (status 'unknown') */
  completeMs: number | null;
  /** ok: it took effect and answered; fail: it certainly did not take effect; unknown: it may have, at any time after invokeMs */
  status: 'ok' | 'fail' | 'unknown';
}

/** The verdict of `checkLinearizable` on a whole history. */
export interface CheckResult {
  /** 'unknown' when the search ran past its time bound for some key */
  result: 'ok' | 'violation' | 'unknown';
  /** for a violation: the key, and the ops of that key (sorted by invokeMs) */
  key?: string;
  ops?: Op[];
  /** for 'unknown': the keys whose search was cut off */
  unknownKeys?: string[];
  /** search states visited, over all keys */
  explored: number;
  ms: number;
}

/** The bound on a whole check's search time when the caller gives none (ms), and the memo cache's bounds per key (host/limits.ts). */
export { LINEARIZABILITY_CHECK_MS_DEFAULT as CHECK_TIMEOUT_MS_DEFAULT, LINEARIZABILITY_CACHE_ENTRIES_MAX as CACHE_ENTRIES_MAX, LINEARIZABILITY_CACHE_WORDS_MAX as CACHE_WORDS_MAX };
/** How many steps of the search pass between two readings of the clock. */
export const TIME_CHECK_STEPS = 256;

const FS = new Set(['write', 'read', 'delete']);
const STATUSES = new Set(['ok', 'fail', 'unknown']);

/**
 * Checks that `history` is linearizable as a store of registers, one per key
 * (the model, the meaning of each status and the bounds are in this module's
 * header). `opts.timeoutMs` (> 0, default CHECK_TIMEOUT_MS_DEFAULT) bounds the
 * search over all keys; `opts.initial` is every register's value before the
 * first operation (default null: absent).
 *
 * Returns 'ok', 'violation' (with the first key found that has no
 * linearization, and all of that key's operations, fail and unknown ones
 * included, sorted by invokeMs; keys are searched in the order they first
 * appear in `history`, those the bound cut off once more after the others),
 * or 'unknown' (with the keys whose search the bound cut off twice) when no
 * key is a violation; `explored` counts the configurations the searches
 * entered (a second try counts again), `ms` the time the check took.
 *
 * Throws FtvmError FTVM_ERR_BAD_REQUEST on a malformed history (not an
 * array; an operation with a field missing or of the wrong type; an unknown
 * `f` or `status`; a write whose value is not a string, a delete whose value
 * is not null; a time that is not finite; completeMs < invokeMs; an ok
 * operation without completeMs; two operations of one process that overlap)
 * or malformed options. An operation whose completeMs is null frees its
 * process: the client stopped waiting, so its next operation does not overlap
 * it (the operation itself may still take effect at any later time).
 */
export function checkLinearizable(history: readonly Op[], opts?: { timeoutMs?: number; initial?: string | null }): CheckResult {
  const t0 = performance.now();
  const timeoutMs = opts?.timeoutMs ?? LINEARIZABILITY_CHECK_MS_DEFAULT;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new FtvmError('FTVM_ERR_BAD_REQUEST', `timeoutMs must be a finite number of ms above 0, not ${String(timeoutMs)}`);
  }
  const initial = opts?.initial ?? null;
  if (initial !== null && typeof initial !== 'string') {
    throw new FtvmError('FTVM_ERR_BAD_REQUEST', `initial must be a string or null, not ${typeof initial}`);
  }
  validateHistory(history);
  const deadlineMs = t0 + timeoutMs;

  const byKey = new Map<string, Op[]>();
  for (const op of history) {
    let ops = byKey.get(op.key);
    if (!ops) byKey.set(op.key, (ops = []));
    ops.push(op);
  }
  const violation = (key: string, explored: number): CheckResult => ({
    result: 'violation',
    key,
    ops: [...byKey.get(key)!].sort((a, b) => a.invokeMs - b.invokeMs),
    explored,
    ms: performance.now() - t0,
  });

  let explored = 0;
  const keys = [...byKey.keys()];
  let cut: string[] = [];
  // Two passes: every key with an equal share of the time left, then the keys
  // cut off with equal shares of what is left after the first pass.
  for (let pass = 0; pass < 2; pass++) {
    const todo = pass === 0 ? keys : cut;
    const stillCut: string[] = [];
    for (let i = 0; i < todo.length; i++) {
      const key = todo[i];
      const prepared = prepareKey(byKey.get(key)!, initial);
      if (prepared === 'violation') return violation(key, explored);
      const now = performance.now();
      const shareMs = Math.max(0, deadlineMs - now) / (todo.length - i);
      const r = searchKey(prepared, now + shareMs);
      explored += r.explored;
      if (r.verdict === 'violation') return violation(key, explored);
      if (r.verdict === 'cut') stillCut.push(key);
    }
    cut = stillCut;
    if (cut.length === 0) break;
  }
  const ms = performance.now() - t0;
  if (cut.length > 0) return { result: 'unknown', unknownKeys: cut, explored, ms };
  return { result: 'ok', explored, ms };
}

/** Throws FTVM_ERR_BAD_REQUEST, naming the operation, unless `history` is a well-formed history (see checkLinearizable). */
function validateHistory(history: readonly Op[]): void {
  if (!Array.isArray(history)) throw new FtvmError('FTVM_ERR_BAD_REQUEST', 'a history must be an array of operations');
  const bad = (i: number, what: string): never => {
    throw new FtvmError('FTVM_ERR_BAD_REQUEST', `history[${i}]: ${what}`);
  };
  const byProcess = new Map<number, number[]>();
  for (let i = 0; i < history.length; i++) {
    const op = history[i] as unknown as Record<string, unknown>;
    if (typeof op !== 'object' || op === null) bad(i, 'not an object');
    if (typeof op.process !== 'number' || !Number.isInteger(op.process)) bad(i, `process must be an integer, not ${String(op.process)}`);
    if (typeof op.key !== 'string') bad(i, 'key must be a string');
    if (typeof op.f !== 'string' || !FS.has(op.f)) bad(i, `f must be write, read or delete, not ${String(op.f)}`);
    if (typeof op.status !== 'string' || !STATUSES.has(op.status)) bad(i, `status must be ok, fail or unknown, not ${String(op.status)}`);
    if (op.f === 'write' && typeof op.value !== 'string') bad(i, 'a write must carry the string it wrote as its value');
    if (op.f === 'delete' && op.value !== null) bad(i, 'a delete must have the value null');
    if (op.f === 'read' && op.value !== null && typeof op.value !== 'string') bad(i, 'a read must carry a string or null as its value');
    if (typeof op.invokeMs !== 'number' || !Number.isFinite(op.invokeMs)) bad(i, `invokeMs must be a finite number, not ${String(op.invokeMs)}`);
    if (op.completeMs !== null) {
      if (typeof op.completeMs !== 'number' || !Number.isFinite(op.completeMs)) bad(i, `completeMs must be a finite number or null, not ${String(op.completeMs)}`);
      if ((op.completeMs as number) < (op.invokeMs as number)) bad(i, `completeMs ${String(op.completeMs)} is before invokeMs ${String(op.invokeMs)}`);
    } else if (op.status === 'ok') {
      bad(i, 'an ok operation must have a completeMs');
    }
    let own = byProcess.get(op.process as number);
    if (!own) byProcess.set(op.process as number, (own = []));
    own.push(i);
  }
  for (const [process, own] of byProcess) {
    // By invocation; at one instant, an operation the client stopped waiting
    // for (completeMs null) or one that took no time comes first.
    const doneMs = (i: number): number => history[i].completeMs ?? history[i].invokeMs;
    own.sort((a, b) => history[a].invokeMs - history[b].invokeMs || doneMs(a) - doneMs(b));
    for (let j = 1; j < own.length; j++) {
      const a = history[own[j - 1]];
      const b = history[own[j]];
      if (a.completeMs !== null && a.completeMs > b.invokeMs) {
        throw new FtvmError(
          'FTVM_ERR_BAD_REQUEST',
          `history[${own[j - 1]}] and history[${own[j]}]: process ${process} has two operations at once ([${a.invokeMs}, ${a.completeMs}] and from ${b.invokeMs})`,
        );
      }
    }
  }
}

/** One key's history, trimmed and laid out for the search. */
interface Prepared {
  /** operations kept */
  n: number;
  /** per operation: 1 a read, 0 a write or delete */
  isRead: Uint8Array;
  /** per operation: the value's id (0 is null) */
  value: Int32Array;
  /** per operation: the list nodes of its call and its return */
  callNode: Int32Array;
  retNode: Int32Array;
  /** the event list: node 0 is the head, node 2n+1 the tail, nodes 1..2n the events in time order */
  next: Int32Array;
  prev: Int32Array;
  /** per node: its operation, whether it is a call, whether it is a return at +infinity */
  nodeOp: Int32Array;
  nodeIsCall: Uint8Array;
  nodeIsInf: Uint8Array;
  /** the register's value id before the first operation */
  initial: number;
  /** how many value ids there are (0..values-1) */
  values: number;
  /** per operation: its invocation and its completion (+infinity for an unknown one) */
  callMs: Float64Array;
  retMs: Float64Array;
  /** the reads, by value then by completion: those of value v at readFrom[v]..readFrom[v+1]-1 */
  readOrder: Int32Array;
  readFrom: Int32Array;
  /** the writes and deletes, by value then by invocation: those of value v at writerFrom[v]..writerFrom[v+1]-1 */
  writerOrder: Int32Array;
  writerFrom: Int32Array;
  /** per operation: where it sits in readOrder or writerOrder */
  orderPos: Int32Array;
}

/** Trims one key's operations and builds its event list, or finds a read no write explains ('violation'). */
function prepareKey(ops: readonly Op[], initialValue: string | null): Prepared | 'violation' {
  const ids = new Map<string, number>();
  const idOf = (v: string | null): number => {
    if (v === null) return 0;
    let id = ids.get(v);
    if (id === undefined) ids.set(v, (id = ids.size + 1));
    return id;
  };
  const initial = idOf(initialValue);

  // Reads that answered, by value: the earliest and the latest completion.
  const readFirstDone = new Map<number, number>();
  const readLastDone = new Map<number, number>();
  for (const op of ops) {
    if (op.f !== 'read' || op.status !== 'ok') continue;
    const v = idOf(op.value);
    const done = op.completeMs!;
    if (!(readFirstDone.get(v)! <= done)) readFirstDone.set(v, done);
    if (!(readLastDone.get(v)! >= done)) readLastDone.set(v, done);
  }
  // Writes and deletes that may have taken effect and can matter to a read.
  const kept: { op: Op; v: number }[] = [];
  const writers = new Map<number, number>();
  const firstWriteInvoke = new Map<number, number>();
  for (const op of ops) {
    if (op.status === 'fail') continue;
    if (op.f === 'read') {
      if (op.status === 'ok') kept.push({ op, v: idOf(op.value) });
      continue;
    }
    const v = idOf(op.value);
    if (op.status === 'unknown' && !(readLastDone.get(v)! >= op.invokeMs)) continue;
    kept.push({ op, v });
    writers.set(v, (writers.get(v) ?? 0) + 1);
    if (!(firstWriteInvoke.get(v)! <= op.invokeMs)) firstWriteInvoke.set(v, op.invokeMs);
  }
  for (const { op, v } of kept) {
    if (op.f === 'read' && v !== initial && !(firstWriteInvoke.get(v)! <= op.completeMs!)) return 'violation';
  }

  // Operations are numbered in the order of their invocations (the search's
  // sets rely on it).
  kept.sort((x, y) => x.op.invokeMs - y.op.invokeMs);
  const n = kept.length;
  const isRead = new Uint8Array(n);
  const value = new Int32Array(n);
  const callMs = new Float64Array(n);
  const retMs = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const { op, v } = kept[i];
    isRead[i] = op.f === 'read' ? 1 : 0;
    value[i] = v;
    callMs[i] = op.invokeMs;
    if (op.status === 'ok') retMs[i] = op.completeMs!;
    else if (v !== initial && writers.get(v) === 1 && readFirstDone.has(v)) retMs[i] = readFirstDone.get(v)!;
    else retMs[i] = Infinity;
  }
  // Events 2i (call of i) and 2i+1 (return of i), by time; at one instant
  // calls before returns, so that equal times are concurrent.
  const events = new Int32Array(2 * n);
  for (let e = 0; e < 2 * n; e++) events[e] = e;
  const timeOf = (e: number): number => ((e & 1) === 0 ? callMs[e >> 1] : retMs[e >> 1]);
  events.sort((a, b) => timeOf(a) - timeOf(b) || (a & 1) - (b & 1) || a - b);

  const nodes = 2 * n + 2;
  const next = new Int32Array(nodes);
  const prev = new Int32Array(nodes);
  const nodeOp = new Int32Array(nodes).fill(-1);
  const nodeIsCall = new Uint8Array(nodes);
  const nodeIsInf = new Uint8Array(nodes);
  const callNode = new Int32Array(n);
  const retNode = new Int32Array(n);
  for (let p = 0; p < nodes; p++) {
    next[p] = p + 1;
    prev[p] = p - 1;
  }
  for (let p = 0; p < 2 * n; p++) {
    const e = events[p];
    const node = p + 1;
    const i = e >> 1;
    nodeOp[node] = i;
    if ((e & 1) === 0) {
      nodeIsCall[node] = 1;
      callNode[i] = node;
    } else {
      nodeIsInf[node] = retMs[i] === Infinity ? 1 : 0;
      retNode[i] = node;
    }
  }
  const values = ids.size + 1;
  const readOrder = new Int32Array(n);
  const writerOrder = new Int32Array(n);
  const readFrom = new Int32Array(values + 1);
  const writerFrom = new Int32Array(values + 1);
  const orderPos = new Int32Array(n);
  let reads = 0;
  let writes = 0;
  for (let i = 0; i < n; i++) {
    if (isRead[i] === 1) readOrder[reads++] = i;
    else writerOrder[writes++] = i;
  }
  const readsByValue = readOrder.subarray(0, reads).sort((a, b) => value[a] - value[b] || retMs[a] - retMs[b] || a - b);
  const writersByValue = writerOrder.subarray(0, writes).sort((a, b) => value[a] - value[b] || a - b);
  const starts = (order: Int32Array, from: Int32Array): void => {
    // from[v] = the first position whose value is v or more
    let k = 0;
    for (let v = 0; v <= values; v++) {
      while (k < order.length && value[order[k]] < v) k++;
      from[v] = k;
    }
    for (let k2 = 0; k2 < order.length; k2++) orderPos[order[k2]] = k2;
  };
  starts(readsByValue, readFrom);
  starts(writersByValue, writerFrom);
  return {
    n,
    isRead,
    value,
    callNode,
    retNode,
    next,
    prev,
    nodeOp,
    nodeIsCall,
    nodeIsInf,
    initial,
    values,
    callMs,
    retMs,
    readOrder,
    readFrom,
    writerOrder,
    writerFrom,
    orderPos,
  };
}

/** Seeded 32-bit words for the sets' hashes (xorshift32): the same history always takes the same path. */
function hashWords(n: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  let x = seed | 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
  }
  return out;
}

/**
 * The configurations one key's search has entered: an open-addressing hash
 * table over typed arrays, bounded by CACHE_ENTRIES_MAX entries and
 * CACHE_WORDS_MAX words. A configuration is the register's value and the set
 * of operations linearized, written as its end (one past the highest
 * operation linearized; operations are numbered in invocation order) and its
 * gaps (the operations below the end not linearized yet, ascending). The
 * search only ever leaves a few operations behind (those still running, and
 * unknown ones that have not taken effect), so a set costs a few words where
 * a bitset would cost one bit per operation of the key.
 */
class ConfigCache {
  private table = new Int32Array(1 << 10).fill(-1);
  private mask = (1 << 10) - 1;
  private hashA = new Int32Array(1 << 9);
  private hashB = new Int32Array(1 << 9);
  private state = new Int32Array(1 << 9);
  private offset = new Int32Array(1 << 9);
  private pool = new Int32Array(1 << 12);
  private count = 0;
  private used = 0;

  /**
   * Remembers the configuration (`set[0..len)`: its end then its gaps;
   * `state`), whose set hashes to (a, b). False when it was remembered
   * already (a dead end); true when it is new, or the cache is full.
   */
  add(set: Int32Array, len: number, a: number, b: number, state: number): boolean {
    let slot = (a ^ Math.imul(b ^ state, 0x9e3779b1)) & this.mask;
    for (;;) {
      const e = this.table[slot];
      if (e < 0) break;
      if (this.hashA[e] === a && this.hashB[e] === b && this.state[e] === state) {
        const o = this.offset[e];
        if (this.pool[o] === len) {
          let same = true;
          for (let k = 0; k < len; k++) {
            if (this.pool[o + 1 + k] !== set[k]) {
              same = false;
              break;
            }
          }
          if (same) return false;
        }
      }
      slot = (slot + 1) & this.mask;
    }
    if (this.count >= LINEARIZABILITY_CACHE_ENTRIES_MAX || this.used + 1 + len > LINEARIZABILITY_CACHE_WORDS_MAX) return true;
    const e = this.count++;
    if (e >= this.state.length) this.growEntries();
    while (this.used + 1 + len > this.pool.length) this.pool = grown(this.pool, Math.min(this.pool.length * 2, LINEARIZABILITY_CACHE_WORDS_MAX));
    this.hashA[e] = a;
    this.hashB[e] = b;
    this.state[e] = state;
    this.offset[e] = this.used;
    this.pool[this.used] = len;
    this.pool.set(set.subarray(0, len), this.used + 1);
    this.used += 1 + len;
    this.table[slot] = e;
    if (this.count * 2 > this.table.length) this.growTable();
    return true;
  }

  private growEntries(): void {
    const size = Math.min(this.state.length * 2, LINEARIZABILITY_CACHE_ENTRIES_MAX);
    this.hashA = grown(this.hashA, size);
    this.hashB = grown(this.hashB, size);
    this.state = grown(this.state, size);
    this.offset = grown(this.offset, size);
  }

  private growTable(): void {
    const table = new Int32Array(this.table.length * 2).fill(-1);
    const mask = table.length - 1;
    for (let e = 0; e < this.count; e++) {
      let slot = (this.hashA[e] ^ Math.imul(this.hashB[e] ^ this.state[e], 0x9e3779b1)) & mask;
      while (table[slot] >= 0) slot = (slot + 1) & mask;
      table[slot] = e;
    }
    this.table = table;
    this.mask = mask;
  }
}

/** A copy of `old` in a new array of `size` elements. */
function grown(old: Int32Array, size: number): Int32Array<ArrayBuffer> {
  const fresh = new Int32Array(size);
  fresh.set(old);
  return fresh;
}

/**
 * Wing and Gong's search with Lowe's memoisation over one prepared key
 * (this module's header), until `deadlineMs` (performance.now() time).
 * 'cut' when the deadline came first; `explored` counts configurations entered.
 */
function searchKey(p: Prepared, deadlineMs: number): { verdict: 'ok' | 'violation' | 'cut'; explored: number } {
  const { n, isRead, value, callNode, retNode, next, prev, nodeOp, nodeIsCall, nodeIsInf } = p;
  const HEAD = 0;
  const TAIL = 2 * n + 1;
  const za = hashWords(n, 0x2545f491);
  const zb = hashWords(n, 0x6c8e9cf5);
  const cache = new ConfigCache();
  // the configuration being tried: its end, then its gaps (at most n words)
  const set = new Int32Array(n + 1);
  const stackOp = new Int32Array(n);
  const stackState = new Int32Array(n);
  const stackEnd = new Int32Array(n);
  const stackForced = new Uint8Array(n);
  let depth = 0;
  // The register's value, or DEAD: a value no read left returns.
  const DEAD = p.values;
  let state = p.initial;
  const { callMs, retMs, readOrder, readFrom, writerOrder, writerFrom, orderPos } = p;
  const linearized = new Uint8Array(n);
  // Per value: the first of its reads (by completion), and of its writers (by
  // invocation), that may not be linearized yet; all before are.
  const firstRead = readFrom.slice(0, p.values);
  const firstWriter = writerFrom.slice(0, p.values);
  /**
   * Whether leaving value `v` now strands one of its reads: a read of v not
   * linearized yet that completed before every writer of v not linearized yet
   * was invoked (or there is none) can never again find the register at v.
   */
  const strands = (v: number): boolean => {
    if (v === DEAD) return false;
    let i = firstRead[v];
    const readTo = readFrom[v + 1];
    while (i < readTo && linearized[readOrder[i]] === 1) i++;
    firstRead[v] = i;
    if (i === readTo) return false;
    let j = firstWriter[v];
    const writerTo = writerFrom[v + 1];
    while (j < writerTo && linearized[writerOrder[j]] === 1) j++;
    firstWriter[v] = j;
    return j === writerTo || callMs[writerOrder[j]] > retMs[readOrder[i]];
  };
  /**
   * `v`, or DEAD when no read left could return it. Dead values are all
   * alike to what remains of the history, so the cache keeps one
   * configuration for all of them.
   */
  const canonical = (v: number): number => {
    if (v === DEAD) return DEAD;
    let i = firstRead[v];
    const readTo = readFrom[v + 1];
    while (i < readTo && linearized[readOrder[i]] === 1) i++;
    firstRead[v] = i;
    return i === readTo ? DEAD : v;
  };
  /** Marks `op` as not linearized (again). */
  const unmark = (op: number): void => {
    linearized[op] = 0;
    const first = isRead[op] === 1 ? firstRead : firstWriter;
    if (orderPos[op] < first[value[op]]) first[value[op]] = orderPos[op];
  };
  state = canonical(state);
  let end = 0;
  let ha = 0;
  let hb = 0;
  let explored = 0;
  let steps = 0;
  const unlink = (x: number): void => {
    next[prev[x]] = next[x];
    prev[next[x]] = prev[x];
  };
  const relink = (x: number): void => {
    next[prev[x]] = x;
    prev[next[x]] = x;
  };

  let cur = next[HEAD];
  for (;;) {
    if (++steps === TIME_CHECK_STEPS) {
      steps = 0;
      if (performance.now() > deadlineMs) return { verdict: 'cut', explored };
    }
    if (cur === TAIL) return { verdict: 'ok', explored };
    const op = nodeOp[cur];
    if (nodeIsCall[cur] === 1) {
      // The register after `op`, or -1 when `op` cannot go now: a read of
      // another value, or a write that leaves the value for ever while a read
      // still needs it (nothing left could write it again in time). The
      // second prunes, at the first step, every order that puts a write
      // between another write and its reads; with unique values it keeps the
      // search close to linear.
      let after: number;
      if (isRead[op] === 1) after = state === value[op] ? state : -1;
      else after = value[op] !== state && strands(state) ? -1 : value[op];
      if (after >= 0) {
        linearized[op] = 1;
        after = canonical(after);
        // Taking `op` is no choice when it is a read (see the undoing below),
        // or a write from a dead value to a dead value: no read can tell
        // where between the two it went.
        const forced = isRead[op] === 1 || (state === DEAD && after === DEAD);
        // The set with `op` added: its end, and its gaps, which are the calls
        // still in the list below the end. Calls sit in the list in the order
        // of their operations' numbers, and each return met on the way belongs
        // to a call met before it, so the walk is about twice the gaps long.
        const newEnd = op + 1 > end ? op + 1 : end;
        let len = 1;
        set[0] = newEnd;
        for (let x = next[HEAD]; x !== TAIL; x = next[x]) {
          if (nodeIsCall[x] === 0) continue;
          const o = nodeOp[x];
          if (o >= newEnd) break;
          if (o !== op) set[len++] = o;
        }
        const a = ha ^ za[op];
        const b = hb ^ zb[op];
        if (cache.add(set, len, a, b, after)) {
          stackOp[depth] = op;
          stackState[depth] = state;
          stackEnd[depth] = end;
          stackForced[depth] = forced ? 1 : 0;
          depth++;
          state = after;
          end = newEnd;
          ha = a;
          hb = b;
          explored++;
          // lift: out with the call, then the return (put back in the reverse order)
          unlink(callNode[op]);
          unlink(retNode[op]);
          cur = next[HEAD];
          continue;
        }
        unmark(op);
        // A forced move to a configuration known to be a dead end: this
        // configuration is one too (see below). Otherwise try the next.
        if (!forced) {
          cur = next[cur];
          continue;
        }
      } else {
        cur = next[cur];
        continue;
      }
    } else if (nodeIsInf[cur] === 1) {
      // Every operation still in the list before here is an unknown one:
      // they never took effect, and that is a linearization.
      return { verdict: 'ok', explored };
    }
    // A dead end: undo the last choice and try the next operation after it.
    // A read taken at its turn (the walk reached its call, so nothing it must
    // follow is left, and the register held its value) is never a choice: if
    // any linearization goes on from there, one takes the read first (it
    // changes nothing, and taking it earlier breaks no real-time order). The
    // same holds of a write of a dead value taken while the register holds a
    // dead value: moved to its turn, it changes what the register holds only
    // where no read looks. So undoing a forced move makes the configuration it
    // was taken in a dead end too, and the undoing goes on. Without this,
    // every undone move is followed by tries of the other moves after it: k
    // reads pending at once cost k^2 states instead of k, and writes nobody
    // reads multiply the orders the cache has to tell apart.
    for (;;) {
      if (depth === 0) return { verdict: 'violation', explored };
      depth--;
      const back = stackOp[depth];
      state = stackState[depth];
      end = stackEnd[depth];
      ha ^= za[back];
      hb ^= zb[back];
      relink(retNode[back]);
      relink(callNode[back]);
      unmark(back);
      if (stackForced[depth] === 0) {
        cur = next[callNode[back]];
        break;
      }
    }
  }
}
