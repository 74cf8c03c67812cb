;; A reactor that answers every NIC message with the message itself followed by
;; the VM's clocks as it reads them while handling it, in decimal ns:
;; "<message> <monotonic> <process cputime> <realtime>". The clocks test
;; (test/vm-clock.*.test.ts) watches them across every kind of switch.
(module
  (import "ftvm_io" "nic_recv" (func $recv (param i32 i32 i32) (result i32)))
  (import "ftvm_io" "nic_send" (func $send (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0: conn, 8: a clock's value, 16..40: digits, 1024: the reply, 65536: the message (at most 1024 bytes)
  (func (export "_initialize"))
  ;; Writes clock $id's value in decimal at $p, after a space; returns the end.
  (func $put (param $p i32) (param $id i32) (result i32) (local $v i64) (local $i i32)
    (i32.store8 (local.get $p) (i32.const 32))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (drop (call $clock (local.get $id) (i64.const 0) (i32.const 8)))
    (local.set $v (i64.load (i32.const 8)))
    (local.set $i (i32.const 40))
    (loop $digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (local.get $i) (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (block $done
      (loop $copy
        (br_if $done (i32.ge_u (local.get $i) (i32.const 40)))
        (i32.store8 (local.get $p) (i32.load8_u (local.get $i)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (local.get $p))
  (func (export "ftvm_interrupt") (param $kind i32) (local $n i32) (local $j i32) (local $p i32)
    (if (i32.ne (local.get $kind) (i32.const 2)) (then (return)))
    (block $empty
      (loop $next
        (local.set $n (call $recv (i32.const 0) (i32.const 65536) (i32.const 1024)))
        (br_if $empty (i32.lt_s (local.get $n) (i32.const 0)))
        (if (i32.gt_s (local.get $n) (i32.const 0))
          (then
            (local.set $j (i32.const 0))
            (block $copied
              (loop $copy
                (br_if $copied (i32.ge_u (local.get $j) (local.get $n)))
                (i32.store8 (i32.add (i32.const 1024) (local.get $j)) (i32.load8_u (i32.add (i32.const 65536) (local.get $j))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $copy)))
            (local.set $p (i32.add (i32.const 1024) (local.get $n)))
            (local.set $p (call $put (local.get $p) (i32.const 1)))
            (local.set $p (call $put (local.get $p) (i32.const 2)))
            (local.set $p (call $put (local.get $p) (i32.const 0)))
            (drop (call $send (i32.load (i32.const 0)) (i32.const 1024) (i32.sub (local.get $p) (i32.const 1024))))))
        (br $next)))))
