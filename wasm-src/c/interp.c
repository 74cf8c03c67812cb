/*
 * interp: a small stack-based bytecode VM plus qsort with comparator
 * callbacks — a "larger" C program with many functions and lots of indirect
 * calls (call_indirect in wasm).
 *
 *   interp.wasm [n]      (default n = 10)
 *
 * Each of the n iterations assembles a handful of bytecode programs
 * (parameterised by the iteration number), runs them on the VM — every
 * opcode is executed through a table of handler function pointers — and then
 * sorts generated records with qsort() using several comparators and folds
 * them with a table of reducer callbacks.  Prints
 *   "interp(n) = steps <vm instructions executed> checksum 0x<64-bit>".
 */
#include <stdlib.h>

#include "common.h"

/* ------------------------------------------------------------------------ */
/* Virtual machine                                                          */

enum opcode {
  OP_HALT, OP_PUSH, OP_POP, OP_DUP, OP_SWAP, OP_OVER, OP_ROT,
  OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_NEG,
  OP_AND, OP_OR, OP_XOR, OP_NOT, OP_SHL, OP_SHR,
  OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_MIN, OP_MAX,
  OP_LOAD, OP_STORE, OP_INC,
  OP_MLOAD, OP_MSTORE,
  OP_JMP, OP_JZ, OP_JNZ,
  OP_CALL, OP_RET,
  OP_EMIT,
  OP_COUNT
};

enum vm_error { VM_OK, VM_STACK_OVERFLOW, VM_STACK_UNDERFLOW, VM_BAD_OPCODE, VM_BAD_PC,
                VM_BAD_LOCAL, VM_BAD_ADDRESS, VM_CALL_DEPTH };

#define STACK_MAX 256
#define FRAMES_MAX 64
#define NLOCALS 8
#define MEM_WORDS 8192
#define CODE_MAX 1024

struct frame {
  uint32_t ret_pc;
  int64_t locals[NLOCALS];
};

typedef struct vm {
  const int32_t *code;
  uint32_t code_len;
  uint32_t pc;
  uint32_t sp;
  uint32_t fsp; /* index of the current frame */
  int running;
  int error;
  uint64_t steps;
  uint64_t emitted; /* running hash of emitted values */
  int64_t stack[STACK_MAX];
  struct frame frames[FRAMES_MAX];
  int64_t mem[MEM_WORDS];
} vm_t;

static vm_t the_vm;

static void vm_fault(vm_t *vm, int err) {
  vm->error = err;
  vm->running = 0;
}

static inline void push(vm_t *vm, int64_t v) {
  if (vm->sp >= STACK_MAX) {
    vm_fault(vm, VM_STACK_OVERFLOW);
    return;
  }
  vm->stack[vm->sp++] = v;
}

static inline int64_t pop(vm_t *vm) {
  if (vm->sp == 0) {
    vm_fault(vm, VM_STACK_UNDERFLOW);
    return 0;
  }
  return vm->stack[--vm->sp];
}

static inline int32_t operand(vm_t *vm) {
  if (vm->pc >= vm->code_len) {
    vm_fault(vm, VM_BAD_PC);
    return 0;
  }
  return vm->code[vm->pc++];
}

static inline int64_t *local_slot(vm_t *vm, int32_t idx) {
  if (idx < 0 || idx >= NLOCALS) {
    vm_fault(vm, VM_BAD_LOCAL);
    return &vm->frames[vm->fsp].locals[0];
  }
  return &vm->frames[vm->fsp].locals[idx];
}

static inline int64_t *mem_slot(vm_t *vm, int64_t addr) {
  if (addr < 0 || addr >= MEM_WORDS) {
    vm_fault(vm, VM_BAD_ADDRESS);
    return &vm->mem[0];
  }
  return &vm->mem[addr];
}

/* Opcode handlers: one function each, dispatched through `handlers`. */
static void op_halt(vm_t *vm) { vm->running = 0; }
static void op_push(vm_t *vm) { push(vm, operand(vm)); }
static void op_pop(vm_t *vm) { (void)pop(vm); }
static void op_dup(vm_t *vm) { int64_t a = pop(vm); push(vm, a); push(vm, a); }
static void op_swap(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, b); push(vm, a); }
static void op_over(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a); push(vm, b); push(vm, a); }
static void op_rot(vm_t *vm) { /* a b c -> b c a */
  int64_t c = pop(vm), b = pop(vm), a = pop(vm);
  push(vm, b); push(vm, c); push(vm, a);
}
static void op_add(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, (int64_t)((uint64_t)a + (uint64_t)b)); }
static void op_sub(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, (int64_t)((uint64_t)a - (uint64_t)b)); }
static void op_mul(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, (int64_t)((uint64_t)a * (uint64_t)b)); }
/* Division by zero (and INT64_MIN / -1) yield 0: the VM itself never traps. */
static void op_div(vm_t *vm) {
  int64_t b = pop(vm), a = pop(vm);
  push(vm, (b == 0 || (b == -1 && a == INT64_MIN)) ? 0 : a / b);
}
static void op_mod(vm_t *vm) {
  int64_t b = pop(vm), a = pop(vm);
  push(vm, (b == 0 || b == -1) ? 0 : a % b);
}
static void op_neg(vm_t *vm) { push(vm, (int64_t)(0 - (uint64_t)pop(vm))); }
static void op_and(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a & b); }
static void op_or(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a | b); }
static void op_xor(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a ^ b); }
static void op_not(vm_t *vm) { push(vm, ~pop(vm)); }
static void op_shl(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, (int64_t)((uint64_t)a << (b & 63))); }
static void op_shr(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, (int64_t)((uint64_t)a >> (b & 63))); }
static void op_eq(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a == b); }
static void op_ne(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a != b); }
static void op_lt(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a < b); }
static void op_le(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a <= b); }
static void op_gt(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a > b); }
static void op_min(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a < b ? a : b); }
static void op_max(vm_t *vm) { int64_t b = pop(vm), a = pop(vm); push(vm, a > b ? a : b); }
static void op_load(vm_t *vm) { push(vm, *local_slot(vm, operand(vm))); }
static void op_store(vm_t *vm) { int64_t v = pop(vm); *local_slot(vm, operand(vm)) = v; }
static void op_inc(vm_t *vm) { int64_t *s = local_slot(vm, operand(vm)); *s += 1; }
static void op_mload(vm_t *vm) { push(vm, *mem_slot(vm, pop(vm))); }
static void op_mstore(vm_t *vm) { /* addr value -> */
  int64_t v = pop(vm), addr = pop(vm);
  *mem_slot(vm, addr) = v;
}
static void jump_to(vm_t *vm, int32_t target) {
  if (target < 0 || (uint32_t)target >= vm->code_len) vm_fault(vm, VM_BAD_PC);
  else vm->pc = (uint32_t)target;
}
static void op_jmp(vm_t *vm) { jump_to(vm, operand(vm)); }
static void op_jz(vm_t *vm) { int32_t t = operand(vm); if (pop(vm) == 0) jump_to(vm, t); }
static void op_jnz(vm_t *vm) { int32_t t = operand(vm); if (pop(vm) != 0) jump_to(vm, t); }
/* CALL target nargs: pops nargs values into the new frame's locals 0..nargs-1. */
static void op_call(vm_t *vm) {
  int32_t target = operand(vm);
  int32_t nargs = operand(vm);
  if (vm->fsp + 1 >= FRAMES_MAX) {
    vm_fault(vm, VM_CALL_DEPTH);
    return;
  }
  if (nargs < 0 || nargs > NLOCALS) {
    vm_fault(vm, VM_BAD_LOCAL);
    return;
  }
  struct frame *f = &vm->frames[++vm->fsp];
  for (int i = 0; i < NLOCALS; i++) f->locals[i] = 0;
  for (int i = nargs - 1; i >= 0; i--) f->locals[i] = pop(vm);
  f->ret_pc = vm->pc;
  jump_to(vm, target);
}
static void op_ret(vm_t *vm) {
  if (vm->fsp == 0) {
    vm->running = 0;
    return;
  }
  vm->pc = vm->frames[vm->fsp--].ret_pc;
}
static void op_emit(vm_t *vm) {
  uint64_t v = (uint64_t)pop(vm);
  vm->emitted = (vm->emitted ^ v) * 0x100000001B3ull + (vm->emitted >> 29);
}

typedef void (*handler_fn)(vm_t *);

static handler_fn const handlers[OP_COUNT] = {
    [OP_HALT] = op_halt,   [OP_PUSH] = op_push,     [OP_POP] = op_pop,   [OP_DUP] = op_dup,
    [OP_SWAP] = op_swap,   [OP_OVER] = op_over,     [OP_ROT] = op_rot,   [OP_ADD] = op_add,
    [OP_SUB] = op_sub,     [OP_MUL] = op_mul,       [OP_DIV] = op_div,   [OP_MOD] = op_mod,
    [OP_NEG] = op_neg,     [OP_AND] = op_and,       [OP_OR] = op_or,     [OP_XOR] = op_xor,
    [OP_NOT] = op_not,     [OP_SHL] = op_shl,       [OP_SHR] = op_shr,   [OP_EQ] = op_eq,
    [OP_NE] = op_ne,       [OP_LT] = op_lt,         [OP_LE] = op_le,     [OP_GT] = op_gt,
    [OP_MIN] = op_min,     [OP_MAX] = op_max,       [OP_LOAD] = op_load, [OP_STORE] = op_store,
    [OP_INC] = op_inc,     [OP_MLOAD] = op_mload,   [OP_MSTORE] = op_mstore,
    [OP_JMP] = op_jmp,     [OP_JZ] = op_jz,         [OP_JNZ] = op_jnz,   [OP_CALL] = op_call,
    [OP_RET] = op_ret,     [OP_EMIT] = op_emit,
};

/* Runs `code` on a fresh VM state (memory is kept between runs). */
__attribute__((noinline)) static int vm_run(vm_t *vm, const int32_t *code, uint32_t len) {
  vm->code = code;
  vm->code_len = len;
  vm->pc = 0;
  vm->sp = 0;
  vm->fsp = 0;
  vm->error = VM_OK;
  vm->running = 1;
  for (int i = 0; i < NLOCALS; i++) vm->frames[0].locals[i] = 0;
  while (vm->running) {
    if (vm->pc >= vm->code_len) {
      vm_fault(vm, VM_BAD_PC);
      break;
    }
    int32_t op = vm->code[vm->pc++];
    if (op < 0 || op >= OP_COUNT) {
      vm_fault(vm, VM_BAD_OPCODE);
      break;
    }
    handlers[op](vm);
    vm->steps++;
  }
  return vm->error;
}

/* ------------------------------------------------------------------------ */
/* Assembler with forward labels                                            */

#define LABELS_MAX 32
#define FIXUPS_MAX 64

typedef struct assembler {
  int32_t code[CODE_MAX];
  uint32_t len;
  int32_t labels[LABELS_MAX];
  uint32_t nlabels;
  struct { uint32_t at; uint32_t label; } fixups[FIXUPS_MAX];
  uint32_t nfixups;
  int overflow;
} assembler_t;

static void as_init(assembler_t *a) {
  a->len = 0;
  a->nlabels = 0;
  a->nfixups = 0;
  a->overflow = 0;
}

static void as_word(assembler_t *a, int32_t w) {
  if (a->len >= CODE_MAX) {
    a->overflow = 1;
    return;
  }
  a->code[a->len++] = w;
}

static void as_op(assembler_t *a, enum opcode op) { as_word(a, op); }

static void as_op1(assembler_t *a, enum opcode op, int32_t imm) {
  as_word(a, op);
  as_word(a, imm);
}

static uint32_t as_label(assembler_t *a) {
  if (a->nlabels >= LABELS_MAX) {
    a->overflow = 1;
    return 0;
  }
  a->labels[a->nlabels] = -1;
  return a->nlabels++;
}

static void as_bind(assembler_t *a, uint32_t label) { a->labels[label] = (int32_t)a->len; }

static void as_ref(assembler_t *a, uint32_t label) {
  if (a->nfixups >= FIXUPS_MAX) {
    a->overflow = 1;
    return;
  }
  a->fixups[a->nfixups].at = a->len;
  a->fixups[a->nfixups].label = label;
  a->nfixups++;
  as_word(a, 0);
}

static void as_jump(assembler_t *a, enum opcode op, uint32_t label) {
  as_word(a, op);
  as_ref(a, label);
}

static void as_call(assembler_t *a, uint32_t label, int32_t nargs) {
  as_word(a, OP_CALL);
  as_ref(a, label);
  as_word(a, nargs);
}

static int as_finish(assembler_t *a) {
  for (uint32_t i = 0; i < a->nfixups; i++) {
    int32_t target = a->labels[a->fixups[i].label];
    if (target < 0) return -1;
    a->code[a->fixups[i].at] = target;
  }
  return a->overflow ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Program generators                                                       */

/* acc = ((acc + i*i) ^ (i >> 3)) & 0xfffffff  for i in [0, n) */
static void gen_sumsq(assembler_t *a, int32_t n) {
  uint32_t loop = as_label(a), end = as_label(a);
  as_op1(a, OP_PUSH, 0); as_op1(a, OP_STORE, 0);
  as_op1(a, OP_PUSH, 0); as_op1(a, OP_STORE, 1);
  as_bind(a, loop);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, n); as_op(a, OP_LT); as_jump(a, OP_JZ, end);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_LOAD, 0); as_op(a, OP_DUP); as_op(a, OP_MUL); as_op(a, OP_ADD);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, 3); as_op(a, OP_SHR); as_op(a, OP_XOR);
  as_op1(a, OP_PUSH, 0xfffffff); as_op(a, OP_AND); as_op1(a, OP_STORE, 1);
  as_op1(a, OP_INC, 0);
  as_jump(a, OP_JMP, loop);
  as_bind(a, end);
  as_op1(a, OP_LOAD, 1); as_op(a, OP_EMIT); as_op(a, OP_HALT);
}

/* Recursive fib(k) through CALL/RET. */
static void gen_fibrec(assembler_t *a, int32_t k) {
  uint32_t fib = as_label(a), rec = as_label(a);
  as_op1(a, OP_PUSH, k); as_call(a, fib, 1); as_op(a, OP_EMIT); as_op(a, OP_HALT);
  as_bind(a, fib);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, 2); as_op(a, OP_LT); as_jump(a, OP_JZ, rec);
  as_op1(a, OP_LOAD, 0); as_op(a, OP_RET);
  as_bind(a, rec);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, 1); as_op(a, OP_SUB); as_call(a, fib, 1);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, 2); as_op(a, OP_SUB); as_call(a, fib, 1);
  as_op(a, OP_ADD); as_op(a, OP_RET);
}

/* Sum of Collatz stopping times of 1..m (local0 = i, local1 = x, local2 = total). */
static void gen_collatz(assembler_t *a, int32_t m) {
  uint32_t outer = as_label(a), inner = as_label(a), odd = as_label(a), next = as_label(a),
           done_i = as_label(a), end = as_label(a);
  as_op1(a, OP_PUSH, 1); as_op1(a, OP_STORE, 0);
  as_bind(a, outer);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, m); as_op(a, OP_GT); as_jump(a, OP_JNZ, end);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_STORE, 1);
  as_bind(a, inner);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 1); as_op(a, OP_NE); as_jump(a, OP_JZ, done_i);
  as_op1(a, OP_INC, 2);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 2); as_op(a, OP_MOD); as_jump(a, OP_JNZ, odd);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 2); as_op(a, OP_DIV); as_op1(a, OP_STORE, 1);
  as_jump(a, OP_JMP, next);
  as_bind(a, odd);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 3); as_op(a, OP_MUL); as_op1(a, OP_PUSH, 1); as_op(a, OP_ADD);
  as_op1(a, OP_STORE, 1);
  as_bind(a, next);
  as_jump(a, OP_JMP, inner);
  as_bind(a, done_i);
  as_op1(a, OP_INC, 0);
  as_jump(a, OP_JMP, outer);
  as_bind(a, end);
  as_op1(a, OP_LOAD, 2); as_op(a, OP_EMIT); as_op(a, OP_HALT);
}

/* Sieve of Eratosthenes in VM memory: count primes below m (m <= MEM_WORDS). */
static void gen_sieve(assembler_t *a, int32_t m) {
  uint32_t clr = as_label(a), clr_end = as_label(a), outer = as_label(a), outer_end = as_label(a),
           skip = as_label(a), mark = as_label(a), mark_end = as_label(a), cnt = as_label(a),
           cnt_end = as_label(a), notp = as_label(a);
  /* for i in [0, m): mem[i] = 0 */
  as_op1(a, OP_PUSH, 0); as_op1(a, OP_STORE, 0);
  as_bind(a, clr);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, m); as_op(a, OP_LT); as_jump(a, OP_JZ, clr_end);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, 0); as_op(a, OP_MSTORE);
  as_op1(a, OP_INC, 0); as_jump(a, OP_JMP, clr);
  as_bind(a, clr_end);
  /* for i = 2; i*i < m; i++: if !mem[i]: for j = i*i; j < m; j += i: mem[j] = 1 */
  as_op1(a, OP_PUSH, 2); as_op1(a, OP_STORE, 0);
  as_bind(a, outer);
  as_op1(a, OP_LOAD, 0); as_op(a, OP_DUP); as_op(a, OP_MUL); as_op1(a, OP_PUSH, m); as_op(a, OP_LT);
  as_jump(a, OP_JZ, outer_end);
  as_op1(a, OP_LOAD, 0); as_op(a, OP_MLOAD); as_jump(a, OP_JNZ, skip);
  as_op1(a, OP_LOAD, 0); as_op(a, OP_DUP); as_op(a, OP_MUL); as_op1(a, OP_STORE, 1);
  as_bind(a, mark);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, m); as_op(a, OP_LT); as_jump(a, OP_JZ, mark_end);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 1); as_op(a, OP_MSTORE);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_LOAD, 0); as_op(a, OP_ADD); as_op1(a, OP_STORE, 1);
  as_jump(a, OP_JMP, mark);
  as_bind(a, mark_end);
  as_bind(a, skip);
  as_op1(a, OP_INC, 0); as_jump(a, OP_JMP, outer);
  as_bind(a, outer_end);
  /* count: local2 = #primes, local3 = xor of primes */
  as_op1(a, OP_PUSH, 2); as_op1(a, OP_STORE, 0);
  as_bind(a, cnt);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, m); as_op(a, OP_LT); as_jump(a, OP_JZ, cnt_end);
  as_op1(a, OP_LOAD, 0); as_op(a, OP_MLOAD); as_jump(a, OP_JNZ, notp);
  as_op1(a, OP_INC, 2);
  as_op1(a, OP_LOAD, 3); as_op1(a, OP_LOAD, 0); as_op(a, OP_XOR); as_op1(a, OP_STORE, 3);
  as_bind(a, notp);
  as_op1(a, OP_INC, 0); as_jump(a, OP_JMP, cnt);
  as_bind(a, cnt_end);
  as_op1(a, OP_LOAD, 2); as_op(a, OP_EMIT);
  as_op1(a, OP_LOAD, 3); as_op(a, OP_EMIT); as_op(a, OP_HALT);
}

/* sum of gcd(i, j) for 1 <= i, j <= k, gcd on the operand stack (OVER/SWAP/ROT). */
static void gen_gcd(assembler_t *a, int32_t k) {
  uint32_t li = as_label(a), lj = as_label(a), lj_end = as_label(a), g = as_label(a), g_end = as_label(a),
           end = as_label(a);
  as_op1(a, OP_PUSH, 1); as_op1(a, OP_STORE, 0);
  as_bind(a, li);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, k); as_op(a, OP_LE); as_jump(a, OP_JZ, end);
  as_op1(a, OP_PUSH, 1); as_op1(a, OP_STORE, 1);
  as_bind(a, lj);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, k); as_op(a, OP_LE); as_jump(a, OP_JZ, lj_end);
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_LOAD, 1); /* stack: a b */
  as_bind(a, g);
  as_op(a, OP_DUP); as_jump(a, OP_JZ, g_end); /* b == 0 -> done */
  as_op(a, OP_SWAP); as_op(a, OP_OVER);       /* b a b */
  as_op(a, OP_MOD);                           /* b (a mod b) */
  as_jump(a, OP_JMP, g);
  as_bind(a, g_end);
  as_op(a, OP_POP);                           /* a */
  as_op1(a, OP_LOAD, 2); as_op(a, OP_ADD); as_op1(a, OP_STORE, 2);
  as_op1(a, OP_INC, 1); as_jump(a, OP_JMP, lj);
  as_bind(a, lj_end);
  as_op1(a, OP_INC, 0); as_jump(a, OP_JMP, li);
  as_bind(a, end);
  as_op1(a, OP_LOAD, 2); as_op(a, OP_EMIT); as_op(a, OP_HALT);
}

/* Bit-mixing loop exercising the remaining opcodes. */
static void gen_mix(assembler_t *a, int32_t n, int32_t seed) {
  uint32_t loop = as_label(a), end = as_label(a);
  as_op1(a, OP_PUSH, seed); as_op1(a, OP_STORE, 1); /* x */
  as_op1(a, OP_PUSH, 0); as_op1(a, OP_STORE, 2);    /* y */
  as_op1(a, OP_PUSH, n); as_op1(a, OP_STORE, 0);    /* counter */
  as_bind(a, loop);
  as_op1(a, OP_LOAD, 0); as_jump(a, OP_JZ, end);
  /* x = rotl64(x, 5) ^ counter, i.e. ((x << 5) | (x >> 59)) ^ counter */
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 5); as_op(a, OP_SHL);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 59); as_op(a, OP_SHR); as_op(a, OP_OR);
  as_op1(a, OP_LOAD, 0); as_op(a, OP_XOR); as_op1(a, OP_STORE, 1);
  /* y = max(min(y + (x & 0xffff), ~x & 0xfffff), -(counter)) + (x == y) */
  as_op1(a, OP_LOAD, 2); as_op1(a, OP_LOAD, 1); as_op1(a, OP_PUSH, 0xffff); as_op(a, OP_AND); as_op(a, OP_ADD);
  as_op1(a, OP_LOAD, 1); as_op(a, OP_NOT); as_op1(a, OP_PUSH, 0xfffff); as_op(a, OP_AND); as_op(a, OP_MIN);
  as_op1(a, OP_LOAD, 0); as_op(a, OP_NEG); as_op(a, OP_MAX);
  as_op1(a, OP_LOAD, 1); as_op1(a, OP_LOAD, 2); as_op(a, OP_EQ); as_op(a, OP_ADD);
  as_op1(a, OP_STORE, 2);
  /* a b c ROT -> b c a; drop twice leaves b: exercise ROT and POP */
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_LOAD, 1); as_op1(a, OP_LOAD, 2); as_op(a, OP_ROT);
  as_op(a, OP_POP); as_op(a, OP_POP); as_op1(a, OP_STORE, 3);
  /* counter -= 1 */
  as_op1(a, OP_LOAD, 0); as_op1(a, OP_PUSH, 1); as_op(a, OP_SUB); as_op1(a, OP_STORE, 0);
  as_jump(a, OP_JMP, loop);
  as_bind(a, end);
  as_op1(a, OP_LOAD, 1); as_op(a, OP_EMIT);
  as_op1(a, OP_LOAD, 2); as_op(a, OP_EMIT);
  as_op1(a, OP_LOAD, 3); as_op(a, OP_EMIT); as_op(a, OP_HALT);
}

typedef void (*gen1_fn)(assembler_t *, int32_t);

struct program {
  const char *name;
  gen1_fn gen;
  int32_t base;
  int32_t spread;
};

static const struct program programs[] = {
    {"sumsq", gen_sumsq, 600, 100},
    {"fibrec", gen_fibrec, 11, 3},
    {"collatz", gen_collatz, 40, 20},
    {"sieve", gen_sieve, 600, 200},
    {"gcd", gen_gcd, 10, 4},
};

static assembler_t the_asm;

static int run_programs(vm_t *vm, uint32_t iter) {
  for (size_t p = 0; p < sizeof programs / sizeof programs[0]; p++) {
    as_init(&the_asm);
    programs[p].gen(&the_asm, programs[p].base + (int32_t)(iter * 7u % (uint32_t)programs[p].spread));
    if (as_finish(&the_asm) != 0) return -1;
    int err = vm_run(vm, the_asm.code, the_asm.len);
    if (err != VM_OK) return err;
  }
  as_init(&the_asm);
  gen_mix(&the_asm, 400, (int32_t)(iter * 2654435761u));
  if (as_finish(&the_asm) != 0) return -1;
  return vm_run(vm, the_asm.code, the_asm.len);
}

/* ------------------------------------------------------------------------ */
/* qsort with comparator callbacks, reducers through function pointers      */

struct record {
  uint32_t key;
  int32_t score;
  uint16_t group;
  char tag[6];
};

#define NRECORDS 300

static struct record records[NRECORDS];

static uint32_t rng_state;

static uint32_t rng_next(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rng_state = x;
}

static void gen_records(uint32_t seed) {
  rng_state = seed * 2654435761u + 0x9E3779B9u;
  if (rng_state == 0) rng_state = 1;
  for (int i = 0; i < NRECORDS; i++) {
    struct record *r = &records[i];
    r->key = rng_next();
    r->score = (int32_t)(rng_next() % 20001u) - 10000;
    r->group = (uint16_t)(rng_next() % 17u);
    for (int j = 0; j < 5; j++) r->tag[j] = (char)('a' + rng_next() % 26u);
    r->tag[5] = '\0';
  }
}

static int cmp_key(const void *pa, const void *pb) {
  const struct record *a = pa, *b = pb;
  return (a->key > b->key) - (a->key < b->key);
}

static int cmp_score_desc(const void *pa, const void *pb) {
  const struct record *a = pa, *b = pb;
  if (a->score != b->score) return (a->score < b->score) - (a->score > b->score);
  return cmp_key(pa, pb);
}

static int cmp_tag(const void *pa, const void *pb) {
  const struct record *a = pa, *b = pb;
  int c = strcmp(a->tag, b->tag);
  return c ? c : cmp_key(pa, pb);
}

static int cmp_group_then_score(const void *pa, const void *pb) {
  const struct record *a = pa, *b = pb;
  if (a->group != b->group) return (int)a->group - (int)b->group;
  if (a->score != b->score) return (a->score > b->score) - (a->score < b->score);
  return cmp_key(pa, pb);
}

typedef int (*cmp_fn)(const void *, const void *);

static cmp_fn const comparators[] = {cmp_key, cmp_score_desc, cmp_tag, cmp_group_then_score};

typedef uint64_t (*reduce_fn)(uint64_t acc, const struct record *r, size_t index);

static uint64_t red_positional(uint64_t acc, const struct record *r, size_t i) {
  return (acc ^ ((uint64_t)r->key * (i + 1))) * 0x100000001B3ull;
}
static uint64_t red_score(uint64_t acc, const struct record *r, size_t i) {
  return acc * 31u + (uint64_t)(int64_t)r->score + i;
}
static uint64_t red_tag(uint64_t acc, const struct record *r, size_t i) {
  (void)i;
  for (const char *p = r->tag; *p; p++) acc = (acc ^ (uint8_t)*p) * 0x100000001B3ull;
  return acc;
}
static uint64_t red_group(uint64_t acc, const struct record *r, size_t i) {
  return acc + ((uint64_t)r->group << (i % 48));
}

static reduce_fn const reducers[] = {red_positional, red_score, red_tag, red_group};

__attribute__((noinline)) static uint64_t fold(reduce_fn f, uint64_t acc) {
  for (size_t i = 0; i < NRECORDS; i++) acc = f(acc, &records[i], i);
  return acc;
}

static int is_sorted(cmp_fn cmp) {
  for (size_t i = 1; i < NRECORDS; i++)
    if (cmp(&records[i - 1], &records[i]) > 0) return 0;
  return 1;
}

static uint64_t sort_phase(uint32_t iter) {
  gen_records(iter);
  uint64_t acc = 0xcbf29ce484222325ull;
  for (size_t c = 0; c < sizeof comparators / sizeof comparators[0]; c++) {
    size_t which = (c + iter) % (sizeof comparators / sizeof comparators[0]);
    qsort(records, NRECORDS, sizeof records[0], comparators[which]);
    if (!is_sorted(comparators[which])) return 0;
    acc = fold(reducers[(c + iter / 3) % (sizeof reducers / sizeof reducers[0])], acc);
  }
  return acc;
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  int64_t n = arg_size(argc, argv, 10, "interp.wasm [iterations]");
  if (n < 0) return 2;
  vm_t *vm = &the_vm;
  uint64_t checksum = 0;
  for (int64_t i = 0; i < n; i++) {
    int err = run_programs(vm, (uint32_t)i);
    if (err != 0) {
      out_str("interp: vm error ");
      out_i64(err);
      out_str(" in iteration ");
      out_i64(i);
      out_char('\n');
      out_flush_fd(2);
      return 1;
    }
    uint64_t s = sort_phase((uint32_t)i);
    if (s == 0) {
      out_str("interp: qsort produced unsorted output\n");
      out_flush_fd(2);
      return 1;
    }
    checksum = (checksum ^ s) * 0x9E3779B97F4A7C15ull + vm->emitted;
  }
  out_str("interp(");
  out_u64((uint64_t)n);
  out_str(") = steps ");
  out_u64(vm->steps);
  out_str(" checksum ");
  out_hex(checksum ^ vm->emitted, 16);
  out_char('\n');
  out_flush();
  return 0;
}
