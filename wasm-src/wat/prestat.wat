;; Exits with the errno fd_prestat_get gives for fd 3: 0 when a directory is
;; preopened there, 8 (EBADF) when nothing is open at fd 3.
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (call $prestat (i32.const 3) (i32.const 16)))))
