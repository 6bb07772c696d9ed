;; run(verse-id, args) calls generator.execute(code "1") verse-id times in the instance named by `args` and
;; returns ok(args), or err(code) with the first provider error's code: the time per call is what a provider
;; call from a component costs. Its types are the world's full records (0.1.0), as a toolchain would emit.
(component
  (import "worldrt:verse/generator@0.1.0" (instance $generator
    (type $request (record (field "instance-id" string) (field "code" string) (field "language" string)
                           (field "timeout-ms" u32) (field "env" (list (tuple string string)))
                           (field "input-json" string) (field "seed" u64)))
    (export "execute-request" (type $request-t (eq $request)))
    (type $result (record (field "stdout" string) (field "stderr" string) (field "exit-code" s32)
                          (field "value-json" string) (field "duration-ms" f64) (field "cpu-ms" f64)
                          (field "cost-units" f64) (field "state-digest" string) (field "attestation-json" string)
                          (field "instance-id" string) (field "error" string)))
    (export "execution-result" (type $result-t (eq $result)))
    (type $error (record (field "code" string) (field "message" string)))
    (export "provider-error" (type $error-t (eq $error)))
    (export "execute" (func (param "request" $request-t) (result (result $result-t (error $error-t)))))
  ))

  (core module $libc
    (memory (export "memory") 1)
    (data (i32.const 64) "1python")
    (global $next (mut i32) (i32.const 1024))
    ;; A bump allocator that starts over at every call of run: the strings of one reply are dropped at the next.
    (func (export "reset") (global.set $next (i32.const 1024)))
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
  (alias core export $libc "reset" (core func $reset))

  (alias export $generator "execute" (func $execute-func))
  (core func $execute-lowered (canon lower (func $execute-func) (memory $memory) (realloc $realloc)))

  (core module $main
    (import "libc" "memory" (memory 1))
    (import "libc" "reset" (func $reset))
    (import "generator" "execute"
      (func $execute (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64 i32)))
    ;; The execute result lands at 256 (tag; the payload at 264: provider-error's code is at 264/268).
    ;; run's own result goes at 0: tag at 0, string pointer at 4, length at 8. The arguments (the instance
    ;; id) are copied to 128 first, since `reset` lets replies overwrite the memory they were passed in.
    (func (export "run") (param $n i64) (param $ptr i32) (param $len i32) (result i32)
      (memory.copy (i32.const 128) (local.get $ptr) (local.get $len))
      (block $done
        (loop $again
          (br_if $done (i64.eqz (local.get $n)))
          (call $reset)
          (call $execute
            (i32.const 128) (local.get $len)   ;; instance-id
            (i32.const 64) (i32.const 1)       ;; code "1"
            (i32.const 65) (i32.const 6)       ;; language "python"
            (i32.const 10000)                  ;; timeout-ms
            (i32.const 0) (i32.const 0)        ;; env []
            (i32.const 0) (i32.const 0)        ;; input-json ""
            (i64.const 0)                      ;; seed
            (i32.const 256))
          (if (i32.load8_u (i32.const 256))
            (then
              (i32.store8 (i32.const 0) (i32.const 1))
              (i32.store (i32.const 4) (i32.load (i32.const 264)))
              (i32.store (i32.const 8) (i32.load (i32.const 268)))
              (return (i32.const 0))))
          (local.set $n (i64.sub (local.get $n) (i64.const 1)))
          (br $again)))
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (i32.const 128))
      (i32.store (i32.const 8) (local.get $len))
      (i32.const 0))
  )
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "generator" (instance (export "execute" (func $execute-lowered))))
  ))

  (func $run (param "verse-id" u64) (param "args" string) (result (result string (error string)))
    (canon lift (core func $main "run") (memory $memory) (realloc $realloc)))
  (export "run" (func $run))
)
