;; br_if whose condition calls a guest function; taken and not taken, with code after it.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func $one (result i32) (i32.const 1))
  (func (export "_start")
    (block $b
      (br_if $b (i32.eqz (call $one)))
      (drop (i32.const 7)))
    (drop (call $yield))
    (block $c
      (br_if $c (call $one))
      (drop (i32.const 5))
      (drop (i32.const 6)))
    (drop (call $yield))
    (call $exit (i32.const 0))))
