;; Unbounded recursion: only the deterministic depth limit stops it.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func $r (param i32) (result i32)
    (call $r (i32.add (local.get 0) (i32.const 1))))
  (func (export "_start")
    (drop (call $r (i32.const 0)))))
