// The processes example in JavaScript (see components/examples/processes for the Python one): in the
// instance named by args, it starts a process with piped stdin, writes stdin by offset and closes it,
// pulls the output by offset until it ends, and waits for the process.
//
// run(verseId, args): args is {"instance_id", "argv": [...], "stdin": "text", "max_bytes", "wait_ms"};
// it returns {"stdout", "stderr", "reads", "state", "exit_code"} as JSON, or the provider's error as
// "CODE: message".
//
// WIT in JavaScript: s64 fields (offsets) are BigInt, enums are their case names as strings, list<u8> is
// a Uint8Array.

import {
  readProcessOutput, startProcess, waitProcess, writeProcessStdin,
} from 'worldrt:verse/generator@0.2.0';

function call(fn, request) {
  try {
    return fn(request);
  } catch (e) {
    throw `${e.payload.code}: ${e.payload.message}`;
  }
}

export function run(verseId, args) {
  const spec = JSON.parse(args);
  const instanceId = spec.instance_id;
  const proc = call(startProcess, {
    instanceId, argv: spec.argv, env: [], cwd: '', stdin: true, timeoutMs: 0, tag: 'js', processId: '',
  });
  const processId = proc.processId;
  const data = new TextEncoder().encode(spec.stdin ?? '');
  const written = call(writeProcessStdin, { instanceId, processId, offset: 0n, data, eof: true });

  const out = { stdout: [], stderr: [] };
  const offsets = { stdout: 0n, stderr: 0n };
  const reads = [];
  for (let ended = false; !ended && reads.length < 100000;) {
    const got = call(readProcessOutput, {
      instanceId, processId, stream: 'both', stdoutOffset: offsets.stdout, stderrOffset: offsets.stderr,
      maxBytes: spec.max_bytes ?? 0, waitMs: spec.wait_ms ?? 10000,
    });
    let size = 0;
    for (const chunk of got.chunks) {
      out[chunk.stream].push(...chunk.data);
      size += chunk.data.length;
    }
    offsets.stdout = got.stdoutOffset;
    offsets.stderr = got.stderrOffset;
    reads.push(size);
    ended = got.ended;
  }
  const done = call(waitProcess, { instanceId, processId, timeoutMs: 20000 });
  const text = (bytes) => new TextDecoder().decode(new Uint8Array(bytes));
  return JSON.stringify({
    stdout: text(out.stdout), stderr: text(out.stderr), reads, stdin_offset: Number(written.offset),
    state: done.state, exit_code: done.exitCode,
  });
}
