;; oneconn: a command guest that serves the first connection of its
;; listening socket (fd 3) only: it echoes what it reads, each read a
;; blocking fd_read, until the client ends its stream. The tests of
;; snapshots of a guest blocked in a read (test/unwind.test.ts,
;; test/command-backup.test.ts) run it.
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $fd i32)
    (drop (call $accept (i32.const 3) (i32.const 0) (i32.const 64)))
    (local.set $fd (i32.load (i32.const 64)))
    (block $end
      (loop $next
        (i32.store (i32.const 16) (i32.const 256))
        (i32.store (i32.const 20) (i32.const 512))
        (drop (call $read (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
        (br_if $end (i32.eqz (i32.load (i32.const 24))))
        (i32.store (i32.const 32) (i32.const 256))
        (i32.store (i32.const 36) (i32.load (i32.const 24)))
        (drop (call $write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40)))
        (br $next)))))
