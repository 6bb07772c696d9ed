"""The ``worldrt`` parser, built from each command group, and ``main``: one line per error, and the exit
status of its kind (``worldrt.errors.EXIT_CODES``, shown in ``worldrt --help``)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import grpc

from worldrt import telemetry
from worldrt.errors import EXIT_CODES, Cancelled, WorldError, exit_code_table, from_rpc_error, kind_of_os_error
from worldrt.host.cli import (
    _apis,
    _components,
    _images,
    _instances,
    _lattice,
    _links,
    _processes,
    _providers,
    _reports,
    _serving,
    _verses,
)
from worldrt.host.cli._common import Parents, err_console
from worldrt.providers import exit_now

GROUPS = (_providers, _links, _components, _serving, _verses, _reports, _images, _instances, _processes, _lattice,
          _apis)
# The group that adds each top-level command.
COMMANDS = {"providers": _providers, "provider": _providers, "link": _links, "component": _components,
            "host": _serving, "tls": _serving, "verse": _verses, "audit": _reports, "analytics": _reports,
            "invocations": _reports, "image": _images, "files": _images, "instance": _instances,
            "process": _processes, "lattice": _lattice, "registry": _lattice, "api": _apis}


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given a command line that begins with a command, only that command's group
    (building all eleven took 20-30 ms of each command's start)."""
    group = COMMANDS.get(argv[0]) if argv else None
    top = argparse.ArgumentParser(prog="worldrt", description="Run portable verse programs across providers.",
                                  epilog=f"exit status:\n{exit_code_table()}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    parents = Parents.make()
    for each in GROUPS if group is None else (group,):
        each.add_commands(commands, parents)
    return top


def _terminate(_signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so an embedded host stops its providers and writes its queued rows.
    raise KeyboardInterrupt


def _say(problem: str, exit_code: int) -> int:
    err_console.print(f"worldrt: {' '.join(problem.split())}", markup=False, highlight=False, soft_wrap=True)
    return exit_code


def run() -> NoReturn:
    """The ``worldrt`` command: ``main`` on the process's arguments, then its exit status."""
    exit_now(main())


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 when the command ran and its answer is "no" (a component returned err, an audit
    found unbalanced runs), else the status of the error's kind (``worldrt.errors.EXIT_CODES``: 2 for a
    wrong command line or request, 3 for not found, ..., 130 when interrupted)."""
    args = parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(args, "otel"):  # a server: it sets up its own telemetry from its flags
        return _run(args)
    # A command is one trace while the standard OTEL_* variables ask for traces; the host it reaches (and
    # an embedded host's daemons) continue it.
    traced = telemetry.start_tracing("worldrt-cli")
    try:
        with telemetry.span(f"worldrt {args.func.__name__.replace('_', ' ')}") as command:
            return _run(args, command)
    finally:
        if traced:
            telemetry.stop_tracing(grace_s=1.0)  # a collector that does not answer costs a command 1 s at most


def _run(args: argparse.Namespace, command: telemetry.Span = telemetry.NOOP) -> int:
    try:
        code: int = args.func(args)
    except WorldError as exc:
        command.failed(exc)
        return _say(str(exc), exc.exit_code)
    except grpc.RpcError as exc:
        error = from_rpc_error(exc)
        command.failed(error)
        return _say(f"{error.code.name}: {error.message}", error.exit_code)
    except OSError as exc:
        problem = f"{exc.filename or ''}: {exc.strerror or exc}" if exc.filename else str(exc)
        command.failed(exc)
        return _say(problem, EXIT_CODES[kind_of_os_error(exc)])
    except KeyboardInterrupt:
        command.status(grpc.StatusCode.CANCELLED)
        return EXIT_CODES[Cancelled]
    return code
