;; The smallest verse component: run(verse-id, args) logs `args` at info level and returns ok(args).
;; Written by hand in the component text format; the host loads .wat files as they are.
(component
  (import "worldrt:verse/log@0.1.0" (instance $log
    (type $level (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level-t (eq $level)))
    (export "log" (func (param "level" $level-t) (param "message" string)))
  ))

  ;; Linear memory and a bump allocator the canonical ABI uses to pass strings in.
  (core module $libc
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
                 (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1)))
                          (i32.const -1))
                (then unreachable))))
      (local.get $ptr))
  )
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $memory))
  (alias core export $libc "realloc" (core func $realloc))

  (alias export $log "log" (func $log-func))
  (core func $log-lowered (canon lower (func $log-func) (memory $memory)))

  (core module $main
    (import "libc" "memory" (memory 1))
    (import "log" "log" (func $log (param i32 i32 i32)))
    ;; run(verse-id: i64, args-ptr, args-len) -> pointer to result<string, string> (tag, ptr, len)
    (func (export "run") (param $verse-id i64) (param $ptr i32) (param $len i32) (result i32)
      (call $log (i32.const 2) (local.get $ptr) (local.get $len))
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (local.get $ptr))
      (i32.store (i32.const 8) (local.get $len))
      (i32.const 0))
  )
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "log" (instance (export "log" (func $log-lowered))))
  ))

  (func $run (param "verse-id" u64) (param "args" string) (result (result string (error string)))
    (canon lift (core func $main "run") (memory $memory) (realloc $realloc)))
  (export "run" (func $run))
)
