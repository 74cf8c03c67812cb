;; An if whose arms are straight-line code, as the operand of a host call.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $exit
      (if (result i32) (i32.const 0)
        (then (i32.add (i32.const 1) (i32.const 2)))
        (else (i32.const 5))))))
