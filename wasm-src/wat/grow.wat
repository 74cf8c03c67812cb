;; memory.grow beyond the memory limit fails with -1; within it, succeeds.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1 100)
  (func (export "_start")
    (local $a i32) (local $b i32)
    (local.set $a (memory.grow (i32.const 2)))
    (local.set $b (memory.grow (i32.const 1)))
    (call $exit (i32.add (i32.mul (i32.eq (local.get $a) (i32.const -1)) (i32.const 10)) (local.get $b)))))
