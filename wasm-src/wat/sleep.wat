;; Sleeps 200 ms the way wasi-libc's nanosleep does (poll_oneoff with one
;; relative CLOCK_MONOTONIC subscription), reading the monotonic clock before
;; and after. Prints "slept\n". Exit code: 0 when the clock shows at least
;; 200 ms passed, 1 when it shows less, 2 when poll_oneoff failed, 3 when the
;; event is not the clock's.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; 0, 8: clock readings; 64: subscription (48 bytes); 128: event (32 bytes);
  ;; 192: nevents; 256: iovec; 272: nwritten; 512: text
  (data (i32.const 512) "slept\n")
  (func (export "_start")
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
    (i64.store (i32.const 64) (i64.const 7))              ;; userdata
    (i32.store8 (i32.const 72) (i32.const 0))             ;; eventtype clock
    (i32.store (i32.const 80) (i32.const 1))              ;; CLOCK_MONOTONIC
    (i64.store (i32.const 88) (i64.const 200000000))      ;; timeout: 200 ms
    (i64.store (i32.const 96) (i64.const 0))              ;; precision
    (i32.store16 (i32.const 104) (i32.const 0))           ;; relative
    (if (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 192))
      (then (call $exit (i32.const 2))))
    (if (i32.or (i64.ne (i64.load (i32.const 128)) (i64.const 7))
                (i32.ne (i32.load8_u (i32.const 138)) (i32.const 0)))
      (then (call $exit (i32.const 3))))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 8)))
    (i32.store (i32.const 256) (i32.const 512))
    (i32.store (i32.const 260) (i32.const 6))
    (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 272)))
    (call $exit
      (select (i32.const 0) (i32.const 1)
        (i64.ge_u (i64.sub (i64.load (i32.const 8)) (i64.load (i32.const 0))) (i64.const 200000000))))))
