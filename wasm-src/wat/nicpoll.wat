;; A computing guest that polls its virtual NIC: every 1000 iterations it takes
;; at most one queued message, folds its bytes into a checksum, and answers on
;; the same connection with 8 bytes: the message's length and the iteration it
;; was seen at. The exit code is the checksum's low byte.
(module
  (import "ftvm_io" "nic_recv" (func $recv (param i32 i32 i32) (result i32)))
  (import "ftvm_io" "nic_send" (func $send (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  ;; 0: conn, 8: reply, 65536: receive buffer (64 KiB)
  (global $i (mut i32) (i32.const 0))
  (global $sum (mut i32) (i32.const 0))
  (func $poll (local $n i32) (local $j i32)
    (local.set $n (call $recv (i32.const 0) (i32.const 65536) (i32.const 65536)))
    (if (i32.ge_s (local.get $n) (i32.const 0))
      (then
        (local.set $j (i32.const 0))
        (block $done
          (loop $fold
            (br_if $done (i32.ge_u (local.get $j) (local.get $n)))
            (global.set $sum
              (i32.add (i32.mul (global.get $sum) (i32.const 31))
                       (i32.load8_u (i32.add (i32.const 65536) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $fold)))
        (i32.store (i32.const 8) (local.get $n))
        (i32.store (i32.const 12) (global.get $i))
        (drop (call $send (i32.load (i32.const 0)) (i32.const 8) (i32.const 8))))))
  (func (export "_start")
    (loop $l
      (if (i32.eqz (i32.rem_u (global.get $i) (i32.const 1000))) (then (call $poll)))
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (global.get $i) (i32.const 2000000))))
    (call $exit (i32.and (global.get $sum) (i32.const 255)))))
