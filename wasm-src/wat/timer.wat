;; A timer-driven guest: it programs a 1 ms timer and computes; each tick's
;; handler records, in memory, how far the loop had got when the tick arrived.
(module
  (import "ftvm_io" "timer_set" (func $timer_set (param i64)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (global $ticks (mut i32) (i32.const 0))
  (global $i (mut i32) (i32.const 0))
  (func (export "ftvm_interrupt") (param $kind i32)
    (i32.store (i32.mul (i32.and (global.get $ticks) (i32.const 1023)) (i32.const 4)) (global.get $i))
    (global.set $ticks (i32.add (global.get $ticks) (i32.const 1))))
  (func (export "_start")
    (call $timer_set (i64.const 1000000))
    (loop $l
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (global.get $i) (i32.const 3000000))))
    (call $exit (i32.and (global.get $ticks) (i32.const 255)))))
