;; run(verse-id, args) calls generator.stop on the instance named by `args`: ok(instance-id) when it is
;; stopped, err("CODE: message") with the provider's error otherwise. Its records are a subset of the
;; world's (a component built against fewer fields still runs).
(component
  (import "worldrt:verse/generator@0.1.0" (instance $generator
    (type $ref (record (field "instance-id" string)))
    (export "instance-ref" (type $ref-t (eq $ref)))
    (type $instance (record (field "instance-id" string) (field "provider-id" string)))
    (export "instance" (type $instance-t (eq $instance)))
    (type $error (record (field "code" string) (field "message" string)))
    (export "provider-error" (type $error-t (eq $error)))
    (export "stop" (func (param "request" $ref-t) (result (result $instance-t (error $error-t)))))
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
      (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1)))
                          (i32.const -1))
                (then unreachable))))
      (local.get $ptr))
  )
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $memory))
  (alias core export $libc "realloc" (core func $realloc))

  (alias export $generator "stop" (func $stop-func))
  (core func $stop-lowered (canon lower (func $stop-func) (memory $memory) (realloc $realloc)))

  (core module $main
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "generator" "stop" (func $stop (param i32 i32 i32)))
    ;; The stop result lands at 16: tag at 16, then instance-id (ok) or code, message (err) from 20.
    ;; run's own result goes at 0: tag at 0, string pointer at 4, length at 8.
    (func (export "run") (param $verse-id i64) (param $ptr i32) (param $len i32) (result i32)
      (local $code i32) (local $code-len i32) (local $msg i32) (local $msg-len i32) (local $out i32)
      (call $stop (local.get $ptr) (local.get $len) (i32.const 16))
      (if (i32.eqz (i32.load8_u (i32.const 16)))
        (then
          (i32.store8 (i32.const 0) (i32.const 0))
          (i32.store (i32.const 4) (i32.load (i32.const 20)))
          (i32.store (i32.const 8) (i32.load (i32.const 24))))
        (else
          (local.set $code (i32.load (i32.const 20)))
          (local.set $code-len (i32.load (i32.const 24)))
          (local.set $msg (i32.load (i32.const 28)))
          (local.set $msg-len (i32.load (i32.const 32)))
          (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                         (i32.add (i32.add (local.get $code-len) (local.get $msg-len)) (i32.const 2))))
          (memory.copy (local.get $out) (local.get $code) (local.get $code-len))
          (i32.store16 (i32.add (local.get $out) (local.get $code-len)) (i32.const 0x203a)) ;; ": "
          (memory.copy (i32.add (i32.add (local.get $out) (local.get $code-len)) (i32.const 2))
                       (local.get $msg) (local.get $msg-len))
          (i32.store8 (i32.const 0) (i32.const 1))
          (i32.store (i32.const 4) (local.get $out))
          (i32.store (i32.const 8) (i32.add (i32.add (local.get $code-len) (local.get $msg-len)) (i32.const 2)))))
      (i32.const 0))
  )
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "generator" (instance (export "stop" (func $stop-lowered))))
  ))

  (func $run (param "verse-id" u64) (param "args" string) (result (result string (error string)))
    (canon lift (core func $main "run") (memory $memory) (realloc $realloc)))
  (export "run" (func $run))
)
