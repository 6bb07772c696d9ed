"""`worldrt process`: start, read, write, wait for, signal and list long-lived processes in an instance,
built on ``worldrt.Client``; and the stdin pump of ``worldrt instance exec -i``.

Like `worldrt instance`, these need a running host (processes live in its instances). ``start`` prints the
process id; ``logs`` writes the process's stdout to ours and its stderr to ours (``--json``: one JSON
object per chunk and line, its bytes in base64 and as text); ``wait`` exits with the process's own status
(128+N when signal N killed it, 124 when its timeout did, 1 when it still runs at --timeout), so a script
tells a failed call (one line on stderr, the status of its error's kind, as for every command) from the
process's own status by that line.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

from worldrt.host.cli._common import CliError, Commands, Parents, console, emit, key_value

if TYPE_CHECKING:
    from rich.table import Table

    from worldrt.client import Instance, Process, ProcessStatus

PROVIDERS = ("morph", "modal")
StreamChoice = Literal["both", "stdout", "stderr"]
# What one stdin write carries at most, and how long a write waits for a process that does not read.
STDIN_CHUNK = 64 * 1024
STDIN_BACKOFF_S = (0.01, 0.5)
TIMED_OUT_STATUS = 124


def status_dict(status: ProcessStatus) -> dict[str, Any]:
    data = dataclasses.asdict(status)
    for key in ("started_at", "ended_at"):
        data[key] = data[key].isoformat() if data[key] else None
    data["argv"] = list(status.argv)
    return data


def exit_status(status: ProcessStatus) -> int:
    """The process's status as ours: its exit code, 128+N for signal N, 124 for its timeout, 1 running."""
    if status.state == "exited":
        return status.exit_code if 0 <= status.exit_code <= 255 else 1
    if status.state == "killed":
        return 128 + status.signal
    if status.state == "timed_out":
        return TIMED_OUT_STATUS
    return 1


def _instance(args: argparse.Namespace) -> tuple[Any, Instance]:
    from worldrt.host.cli._instances import client

    rt = client(args)
    return rt, rt.instance(args.instance, provider=args.provider)


def write_all(proc: Process, data: bytes, offset: int | None = None) -> int:
    """Write ``data`` to the process's stdin at ``offset`` (None: where it stands) in chunks, waiting (with
    a growing pause) while it has not read what it was given; the bytes accepted so far."""
    from worldrt.errors import ResourceExhausted

    view = memoryview(data)
    position = offset
    while True:
        piece = bytes(view[:STDIN_CHUNK])
        pause = STDIN_BACKOFF_S[0]
        while True:
            try:
                position = proc.write(piece, position if position == offset else None)
                break
            except ResourceExhausted:  # it has not read enough yet: nothing was applied
                time.sleep(pause)
                pause = min(pause * 2, STDIN_BACKOFF_S[1])
        view = view[len(piece):]
        if not view:
            return position


def pump_stdin(proc: Process, source: BinaryIO, failures: list[BaseException]) -> None:
    """Copy ``source`` to the process's stdin until its end, then close the process's stdin. A failure
    (the process closed stdin, exited) ends the copy and is kept in ``failures``."""
    from worldrt.errors import FailedPrecondition, NotFound

    try:
        fd = source.fileno()
        while chunk := os.read(fd, STDIN_CHUNK):
            write_all(proc, chunk)
        proc.close_stdin()
    except (FailedPrecondition, NotFound):
        pass  # it stopped reading (closed stdin or ended): the rest of ours is not wanted
    except BaseException as exc:  # noqa: BLE001 - reported by the thread that waits for the process
        failures.append(exc)


def copy_output(proc: Process, stream: str = "both", offset: int = 0, *, follow: bool = True) -> None:
    """The process's stdout to ours and its stderr to ours, bytes as they come."""
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for chunk in proc.output(cast("StreamChoice", stream), offset, follow=follow):
        out = outs[chunk.stream]
        out.write(chunk.data)
        out.flush()


def run_interactive(inst: Instance, argv: list[str], env: dict[str, str], timeout_s: float | None) -> int:
    """``instance exec -i``: ``argv`` in the instance with our stdin piped to it and its output to ours; its
    exit status. Interrupted (Ctrl-C), the process is killed."""
    proc = inst.spawn(argv, env=env, stdin=True, timeout_s=timeout_s)
    failures: list[BaseException] = []
    pump = threading.Thread(target=pump_stdin, args=(proc, sys.stdin.buffer, failures), name="stdin", daemon=True)
    pump.start()
    try:
        copy_output(proc)
        status = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        raise
    if failures:
        raise failures[0]
    return exit_status(status)


# the commands ------------------------------------------------------------------------------------------
def process_start(args: argparse.Namespace) -> int:
    if not args.argv:
        raise CliError("give the command after --: worldrt process start INSTANCE -- PROGRAM [ARG ...]")
    rt, inst = _instance(args)
    with rt:
        proc = inst.spawn(args.argv, env=dict(key_value(e) for e in args.env), cwd=args.cwd, stdin=args.stdin,
                          timeout_s=args.timeout, tag=args.tag)
    assert proc.last_status is not None
    emit(args, status_dict(proc.last_status), lambda: print(proc.id))
    return 0


def process_logs(args: argparse.Namespace) -> int:
    rt, inst = _instance(args)
    with rt:
        proc = inst.process(args.process)
        if not args.json:
            copy_output(proc, args.stream, args.offset, follow=args.follow)
            return 0
        for chunk in proc.output(cast("StreamChoice", args.stream), args.offset, follow=args.follow):
            print(json.dumps({"stream": chunk.stream, "offset": chunk.offset, "size": len(chunk.data),
                              "data": base64.b64encode(chunk.data).decode(),
                              "text": chunk.data.decode("utf-8", "replace")}), flush=True)
    return 0


def process_write(args: argparse.Namespace) -> int:
    if args.data is None and not args.eof:
        raise CliError("give DATA, or - to send this command's stdin, or --eof to close the process's stdin")
    data = b""
    if args.data == "-":
        data = sys.stdin.buffer.read()
    elif args.data is not None:
        data = args.data.encode()
    rt, inst = _instance(args)
    with rt:
        proc = inst.process(args.process)
        position = write_all(proc, data, args.offset)
        if args.eof:
            proc.close_stdin()
    emit(args, {"offset": position, "written": len(data), "closed": bool(args.eof)}, lambda: print(position))
    return 0


def process_wait(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout < 0:
        raise CliError(f"--timeout must be 0 seconds or more, got {args.timeout:g}")
    rt, inst = _instance(args)
    with rt:
        status = inst.process(args.process).wait(args.timeout)
    emit(args, status_dict(status), lambda: print(_said(status)))
    return exit_status(status)


def _said(status: ProcessStatus) -> str:
    if status.state == "exited":
        return f"exited {status.exit_code}"
    if status.state in ("killed", "timed_out"):
        return f"{status.state.replace('_', ' ')} by signal {status.signal}"
    return "running"


def process_kill(args: argparse.Namespace) -> int:
    rt, inst = _instance(args)
    with rt:
        status = inst.process(args.process).signal(args.signal, group=not args.leader_only)
    emit(args, status_dict(status), lambda: print(f"signalled {status.id}: {_said(status)}"))
    return 0


def process_ls(args: argparse.Namespace) -> int:
    rt, inst = _instance(args)
    with rt:
        found = [p.last_status for p in inst.processes()]
    statuses = [s for s in found if s is not None]
    emit(args, {"processes": [status_dict(s) for s in statuses]}, lambda: console.print(_listing(args.instance, statuses)))
    return 0


def _listing(instance: str, statuses: list[ProcessStatus]) -> Table:
    """Ids whole (a listing is where one copies them from); the rest may wrap."""
    from rich.table import Table

    grid = Table(title=f"processes in {instance}")
    grid.add_column("id", no_wrap=True)
    for column in ("pid", "state", "tag", "argv", "stdout bytes", "stderr bytes"):
        grid.add_column(column)
    for s in statuses:
        grid.add_row(s.id, str(s.pid), _said(s), s.tag, " ".join(s.argv), str(s.stdout_size), str(s.stderr_size))
    return grid


def add_commands(commands: Commands, parents: Parents) -> None:
    from worldrt.host.cli._instances import _ArgvParser

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--provider", default="morph", choices=PROVIDERS,
                       help="the provider that holds the instance (default morph)")
    where.add_argument("instance", metavar="INSTANCE")
    one = argparse.ArgumentParser(add_help=False, parents=[where])
    one.add_argument("process", metavar="PID", help="the process id `process start` printed")
    group = commands.add_parser(
        "process", help="long-lived processes in an instance, through a running host",
        description="Start processes in an instance and read their output by offset, write their stdin, wait for "
                    "them, signal them and list them. They live in the instance, so these need a running host."
    ).add_subparsers(dest="action", required=True, parser_class=_ArgvParser)

    start = group.add_parser("start", parents=[parents.common, where], help="start a process; prints its id",
                             usage="worldrt process start [options] INSTANCE -- PROGRAM [ARG ...]")
    start.add_argument("--cwd", metavar="DIR", help="its working directory (under /workspace; default /workspace)")
    start.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment (repeatable)")
    start.add_argument("--stdin", action="store_true", help="pipe its stdin (write it with `process write`)")
    start.add_argument("--timeout", type=float, metavar="S", help="kill it (and its process group) after S seconds")
    start.add_argument("--tag", default="", help="a label shown in listings")
    start.set_defaults(func=process_start)

    logs = group.add_parser("logs", parents=[parents.common, one], help="its output: stdout to ours, stderr to ours")
    logs.add_argument("--follow", "-f", action="store_true", help="follow the output until it ends")
    logs.add_argument("--offset", type=int, default=0, metavar="N", help="start at byte N of each stream read")
    logs.add_argument("--stream", default="both", choices=("stdout", "stderr", "both"))
    logs.set_defaults(func=process_logs)

    write = group.add_parser("write", parents=[parents.common, one], help="write to its stdin; prints its offset")
    write.add_argument("data", nargs="?", metavar="DATA|-", help="the bytes to write (UTF-8), or - for our stdin")
    write.add_argument("--eof", action="store_true", help="then close its stdin")
    write.add_argument("--offset", type=int, metavar="N",
                       help="write at stdin offset N (a retry of an earlier write is not applied twice); "
                            "default: where its stdin stands")
    write.set_defaults(func=process_write)

    wait = group.add_parser("wait", parents=[parents.common, one], help="wait for it to end; its exit status is ours")
    wait.add_argument("--timeout", type=float, metavar="S", help="wait at most S seconds (then exit 1: running)")
    wait.set_defaults(func=process_wait)

    kill = group.add_parser("kill", parents=[parents.common, one], help="signal it and its process group")
    kill.add_argument("--signal", "-s", default="KILL", metavar="SIG", help="a name or number (default KILL)")
    kill.add_argument("--leader-only", action="store_true", help="signal the process alone, not its group")
    kill.set_defaults(func=process_kill)

    ls = group.add_parser("ls", parents=[parents.common, where], help="its processes, running and recently ended")
    ls.set_defaults(func=process_ls)
