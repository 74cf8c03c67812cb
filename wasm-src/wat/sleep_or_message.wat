;; Waits up to 60 s for a connection on the listening socket (fd 3, where
;; wasmtime --tcplisten puts it, before any preopen): one poll_oneoff with a relative
;; CLOCK_MONOTONIC subscription (userdata 1) and an fd_read subscription on
;; fd 3 (userdata 2). Reads the monotonic clock before and after. Exit code:
;; 0 when the first event is the socket's and less than 60 s passed, 1 when
;; it is the clock's, 2 when poll_oneoff failed, 4 when 60 s or more passed.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; 0, 8: clock readings; 64: two subscriptions (48 bytes each); 256: events; 512: nevents
  (func (export "_start")
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
    (i64.store (i32.const 64) (i64.const 1))
    (i32.store8 (i32.const 72) (i32.const 0))             ;; clock
    (i32.store (i32.const 80) (i32.const 1))              ;; CLOCK_MONOTONIC
    (i64.store (i32.const 88) (i64.const 60000000000))    ;; 60 s
    (i64.store (i32.const 112) (i64.const 2))
    (i32.store8 (i32.const 120) (i32.const 1))            ;; fd_read
    (i32.store (i32.const 128) (i32.const 3))             ;; fd 3
    (if (call $poll (i32.const 64) (i32.const 256) (i32.const 2) (i32.const 512))
      (then (call $exit (i32.const 2))))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 8)))
    (if (i64.ge_u (i64.sub (i64.load (i32.const 8)) (i64.load (i32.const 0))) (i64.const 60000000000))
      (then (call $exit (i32.const 4))))
    (call $exit (select (i32.const 0) (i32.const 1) (i64.eq (i64.load (i32.const 256)) (i64.const 2))))))
