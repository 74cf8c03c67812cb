;; stackwalk: a command guest whose stack is deep while it waits for input.
;; It reads stdin one byte per fd_read; each newline makes it recurse one
;; level deeper (at most 8), so the reads happen with up to 9 frames of its
;; own on the stack, each holding locals. It keeps a hash in a local, in a
;; global and in memory at 1024 (inside the region a snapshot's unwinder
;; borrows), and at end of input writes the hash, the global and the memory
;; word to stdout: 20 bytes that differ if any frame, global or byte of
;; memory was lost on the way.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $total (mut i32) (i32.const 0))
  (func $byte (result i32)
    (i32.store (i32.const 16) (i32.const 100))
    (i32.store (i32.const 20) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (result i32) (i32.eqz (i32.load (i32.const 24)))
      (then (i32.const -1))
      (else (i32.load8_u (i32.const 100)))))
  (func $walk (param $depth i32) (param $acc i64) (result i64)
    (local $b i32)
    (local $mix f64)
    (local.set $mix (f64.convert_i32_u (local.get $depth)))
    (block $done
      (loop $next
        (local.set $b (call $byte))
        (br_if $done (i32.lt_s (local.get $b) (i32.const 0)))
        (global.set $total (i32.add (global.get $total) (local.get $b)))
        (local.set $mix (f64.add (local.get $mix) (f64.convert_i32_u (local.get $b))))
        (local.set $acc
          (i64.add (i64.mul (local.get $acc) (i64.const 31))
            (i64.add (i64.extend_i32_u (local.get $b)) (i64.trunc_f64_u (local.get $mix)))))
        (i64.store (i32.const 1024) (i64.xor (i64.load (i32.const 1024)) (local.get $acc)))
        (if (i32.and (i32.eq (local.get $b) (i32.const 10)) (i32.lt_u (local.get $depth) (i32.const 8)))
          (then (local.set $acc (call $walk (i32.add (local.get $depth) (i32.const 1)) (local.get $acc)))))
        (br $next)))
    (local.get $acc))
  (func (export "_start")
    (i64.store (i32.const 200) (call $walk (i32.const 0) (i64.const 7)))
    (i32.store (i32.const 208) (global.get $total))
    (i64.store (i32.const 212) (i64.load (i32.const 1024)))
    (i32.store (i32.const 32) (i32.const 200))
    (i32.store (i32.const 36) (i32.const 20))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))))
