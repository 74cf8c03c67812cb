;; Copies stdin to stdout in reads of at most 5 bytes (so a short input takes
;; many fd_read calls), until end of file or an error; exits 0.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0: read iovec (buf 64, len 5), 16: nread, 32: write iovec, 48: nwritten, 64: buffer
  (func (export "_start")
    (local $n i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 5))
    (block $done
      (loop $next
        (br_if $done (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 32) (i32.const 64))
        (i32.store (i32.const 36) (local.get $n))
        (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 48)))
        (br $next)))))
