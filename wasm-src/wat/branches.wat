;; if/else arms of different cost, a br_table into nested blocks, and a br out.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32) (local $acc i32)
    (loop $l
      (if (i32.and (local.get $i) (i32.const 1))
        (then (local.set $acc (i32.add (local.get $acc) (i32.const 3))))
        (else
          (local.set $acc (i32.sub (local.get $acc) (i32.const 1)))
          (local.set $acc (i32.mul (local.get $acc) (i32.const 2)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 4))))
    (drop (call $yield))
    (block $out
      (block $b2
        (block $b1
          (br_table $b1 $b2 $out (i32.rem_u (local.get $acc) (i32.const 3))))
        (local.set $acc (i32.const 100))
        (br $out))
      (local.set $acc (i32.const 200)))
    (call $exit (local.get $acc))))
