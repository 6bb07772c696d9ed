;; run(verse-id, args) calls log(debug, args) verse-id times and returns ok(args): the host import call
;; overhead is the time per call.
(component
  (import "worldrt:verse/log@0.1.0" (instance $log
    (type $level (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level-t (eq $level)))
    (export "log" (func (param "level" $level-t) (param "message" string)))
  ))
  (core module $libc
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
                 (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $ptr) (local.get $size)))
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
    (func (export "run") (param $n i64) (param $ptr i32) (param $len i32) (result i32)
      (block $done
        (loop $again
          (br_if $done (i64.eqz (local.get $n)))
          (call $log (i32.const 1) (local.get $ptr) (local.get $len))
          (local.set $n (i64.sub (local.get $n) (i64.const 1)))
          (br $again)))
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
