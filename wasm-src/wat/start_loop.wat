;; A start function that calls the host and then loops forever.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func $init
    (global.set $g (i32.add (i32.const 2) (i32.const 3)))
    (drop (call $yield))
    (loop $l (br $l)))
  (start $init)
  (func (export "_start")))
