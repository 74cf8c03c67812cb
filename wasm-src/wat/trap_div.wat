;; An integer division by zero (the divisor comes from memory, so no optimizer can see it).
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $yield))
    (drop (i32.div_s (i32.const 1) (i32.load (i32.const 0))))
    (call $exit (i32.const 0))))
