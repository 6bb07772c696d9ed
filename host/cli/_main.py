"""The ``worldrt`` parser, built from each command group, and ``main``: one line and exit 2 per error."""

from __future__ import annotations

import argparse
import signal

import grpc

from worldrt.errors import WorldError
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

GROUPS = (_providers, _links, _components, _serving, _verses, _reports, _images, _instances, _processes, _lattice,
          _apis)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="worldrt", description="Run portable verse programs across providers.")
    commands = top.add_subparsers(dest="command", required=True)
    parents = Parents.make()
    for group in GROUPS:
        group.add_commands(commands, parents)
    return top


def _terminate(_signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so an embedded host stops its providers and writes its queued rows.
    raise KeyboardInterrupt


def _say(problem: str) -> int:
    err_console.print(f"worldrt: {' '.join(problem.split())}", markup=False, highlight=False, soft_wrap=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 when the command ran and its answer is "no" (a component returned err, an audit
    found unbalanced runs), 2 on an error, 130 when interrupted."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code: int = args.func(args)
    except WorldError as exc:
        return _say(str(exc))
    except grpc.RpcError as exc:
        return _say(f"{exc.code().name}: {exc.details()}")
    except OSError as exc:
        return _say(f"{exc.filename or ''}: {exc.strerror or exc}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        return 130
    return code
