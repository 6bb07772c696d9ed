"""What every command shares: the flags, the session with a host, and printing data as tables or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from worldrt.errors import InvalidArgument

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status
    from rich.table import Table

    from worldrt.host import Session


class LazyConsole:
    """rich's Console, made at its first use: a command that prints JSON never imports rich (about 30 ms
    of every start)."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._made: Console | None = None

    @property
    def rich(self) -> Console:
        if self._made is None:
            from rich.console import Console

            self._made = Console(stderr=self._stderr)
        return self._made

    def print(self, *objects: Any, **options: Any) -> None:
        self.rich.print(*objects, **options)

    def print_json(self, text: str) -> None:
        self.rich.print_json(text)

    def status(self, message: str) -> Status:
        return self.rich.status(message)


console = LazyConsole()
err_console = LazyConsole(stderr=True)
Commands = argparse._SubParsersAction  # argparse has no public name for what add_subparsers returns


class CliError(InvalidArgument):
    """A command line the CLI refuses; the message says what to change."""


@dataclass(frozen=True)
class Parents:
    """Flag sets commands inherit: ``base`` (--json, --db, --home), ``common`` (base and how to reach a
    host) and ``serving`` (what a server requires of its clients)."""

    base: argparse.ArgumentParser
    common: argparse.ArgumentParser
    serving: argparse.ArgumentParser

    @classmethod
    def make(cls) -> Parents:
        base = argparse.ArgumentParser(add_help=False)
        base.add_argument("--json", action="store_true", help="print data as JSON")
        base.add_argument("--db", help="registry file (default $WORLDRT_DB or .worldrt/world.duckdb)")
        base.add_argument("--home", help="state directory (default $WORLDRT_STATE_DIR or .worldrt)")
        common = argparse.ArgumentParser(add_help=False, parents=[base])
        common.add_argument("--host", help="address of a running host (default unix:HOME/host.sock)")
        common.add_argument("--token-file", metavar="PATH",
                            help="the running host's token (default $WORLDRT_TOKEN, else HOME/host.token)")
        common.add_argument("--tls-ca", metavar="PEM",
                            help="CA of a HOST:PORT host's certificate (default $WORLDRT_TLS_CA)")
        common.add_argument("--tls-cert", metavar="PEM",
                            help="client certificate, for a host that requires one (default $WORLDRT_TLS_CERT)")
        common.add_argument("--tls-key", metavar="PEM", help="its key (default $WORLDRT_TLS_KEY)")
        serving = argparse.ArgumentParser(add_help=False)
        serving.add_argument("--token-file", metavar="PATH",
                             help="require the bearer token in this file, which only its owner may read "
                                  "(default $WORLDRT_TOKEN)")
        serving.add_argument("--token", type=_no_token_flag, help=argparse.SUPPRESS)
        serving.add_argument("--tls-cert", metavar="PEM", help="serve HOST:PORT with TLS: this certificate ...")
        serving.add_argument("--tls-key", metavar="PEM", help="... and its key")
        serving.add_argument("--tls-client-ca", metavar="PEM",
                             help="mutual TLS: accept only clients with a certificate this CA signed")
        return cls(base, common, serving)


def _no_token_flag(value: str) -> str:
    raise argparse.ArgumentTypeError(
        "--token is gone: a token on the command line is readable by anyone in /proc/PID/cmdline; put it in "
        "WORLDRT_TOKEN or in a file only you can read, passed with --token-file PATH")


def home(args: argparse.Namespace) -> Path:
    from worldrt.host import default_home

    return Path(args.home) if args.home else default_home()


def connect_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that name a host, as ``worldrt.host.host_session`` and ``worldrt.Client.connect`` take them."""
    return {"home": home(args), "db": args.db, "token_file": args.token_file, "tls_ca": args.tls_ca,
            "tls_cert": args.tls_cert, "tls_key": args.tls_key}


def session(args: argparse.Namespace, start: Sequence[str] = (), warm: int | None = None) -> Session:
    """The host the flags name: a running one, or one embedded in this process for the command. That one
    starts the providers in ``start`` while it loads, and its sandbox providers keep ``warm`` sandboxes
    started ahead of a Start (None: their defaults, 2 for morph and 4 for modal)."""
    from worldrt.host import host_session

    return host_session(args.host, **connect_options(args), start=start, warm=warm)


def key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CliError(f"expected KEY=VALUE, got {item!r}")
    return key, value


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def emit(args: argparse.Namespace, data: Any, render: Callable[[], None]) -> None:
    """``data`` as JSON with --json, else what ``render`` prints."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    from rich.table import Table

    grid = Table(title=title)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    return grid


def component_text(data: bytes) -> str:
    """A component's output as text safe to print: terminal control characters become "?"."""
    text = data.decode("utf-8", "replace")
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)


def show_component_output(event: Any) -> None:
    """Write an InvokeEvent's component output to this process's stderr, never its stdout."""
    import sys

    sys.stderr.write(component_text(event.output.data))
    sys.stderr.flush()
