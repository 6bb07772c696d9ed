"""`worldrt instance`: start, exec (``-i``: a process fed from our stdin), snapshot, branch, merge, stop and list
instances, built on ``worldrt.Client``.

Instances live as long as the host that started them, so these commands use a running host
(``worldrt host serve``) and refuse to embed one. Ids are printed one per line (``ID=$(worldrt instance
start morph)``); ``--json`` prints what the client returned. ``instance exec`` streams the run's stdout and
stderr to this process's, prints the value of Python's final expression (if any) as JSON, and exits with
the run's exit status; a failed call is one line on stderr and the exit status of its error's kind, as
for every command (``worldrt --help`` lists them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from worldrt.host.cli._common import CliError, Commands, Parents, connect_options, console, emit, key_value

if TYPE_CHECKING:
    from rich.table import Table

    from worldrt.client import Client, ExecResult, Instance, InstanceInfo

PROVIDERS = ("morph", "modal")


class _ArgvParser(argparse.ArgumentParser):
    """A parser that keeps what follows the first ``--`` as ``argv`` (None when there is no ``--``), so
    ``exec ID -- ls -l`` is told apart from ``exec ID CODE``."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        argv = None
        if "--" in words:
            cut = words.index("--")
            words, argv = words[:cut], words[cut + 1:]
        parsed, extra = super().parse_known_args(words, namespace)
        parsed.argv = argv
        return parsed, extra


def client(args: argparse.Namespace) -> Client:
    """The running host the flags name, through the client (never an embedded one)."""
    from worldrt.client import Client

    return Client.connect(args.host, embed=False, **connect_options(args))


def info_dict(info: InstanceInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["created_at"] = info.created_at.isoformat() if info.created_at else None
    return data


def _limits(args: argparse.Namespace) -> Any:
    from worldrt.client import Limits

    given = {name: getattr(args, name) or 0 for name in ("memory_mb", "cpu_s", "processes", "disk_mb")}
    return Limits(**given) if any(given.values()) else None


def instance_start(args: argparse.Namespace) -> int:
    with client(args) as rt:
        inst = rt.start(args.provider, image=args.image, limits=_limits(args), ttl_s=args.ttl,
                        metadata=dict(key_value(m) for m in args.meta))
    emit(args, info_dict(inst.info), lambda: print(inst.id))
    return 0


def _exit_status(result: ExecResult) -> int:
    code = result.exit_code
    return code if 0 <= code <= 255 else 1


def instance_exec(args: argparse.Namespace) -> int:
    if args.argv is not None and args.code is not None:
        raise CliError("give CODE or a command after --, not both")
    if args.argv is None and args.code is None:
        raise CliError("give the code to run, or a command after --: worldrt instance exec ID -- ls -l")
    if args.argv == []:
        raise CliError("give the command to run after --")
    if args.interactive:
        return _exec_interactive(args)
    options = {"language": args.language, "argv": args.argv, "env": dict(key_value(e) for e in args.env),
               "timeout_s": args.timeout}
    with client(args) as rt:
        inst = rt.instance(args.instance, provider=args.provider)
        if args.json:
            result = inst.exec(args.code or "", **options)
            print(json.dumps(dataclasses.asdict(result), indent=2, sort_keys=True, default=str))
            return _exit_status(result)
        from worldrt.client import ExecResult

        last = None
        for item in inst.exec_stream(args.code or "", **options):
            if isinstance(item, ExecResult):
                last = item
            else:
                out = sys.stdout if item.stream == "stdout" else sys.stderr
                out.write(item.text)
                out.flush()
    assert last is not None
    if last.value is not None:
        print(last.value_json)
    return _exit_status(last)


def _exec_interactive(args: argparse.Namespace) -> int:
    """``exec -i``: the command as a process with this terminal's stdin piped to it, its output to ours."""
    from worldrt.host.cli._processes import run_interactive

    if args.argv is None:
        raise CliError("exec -i runs a command: worldrt instance exec -i ID -- PROGRAM [ARG ...]")
    if args.json:
        raise CliError("exec -i passes the command's bytes through: it has no --json")
    with client(args) as rt:
        inst = rt.instance(args.instance, provider=args.provider)
        return run_interactive(inst, args.argv, dict(key_value(e) for e in args.env), args.timeout)


def instance_snapshot(args: argparse.Namespace) -> int:
    with client(args) as rt:
        snap = rt.instance(args.instance, provider=args.provider).snapshot(ttl_s=args.ttl)
    data = dataclasses.asdict(snap.info)
    data["created_at"] = snap.info.created_at.isoformat() if snap.info.created_at else None
    emit(args, data, lambda: print(snap.id))
    return 0


def instance_branch(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CliError(f"--count must be 1 or more, got {args.count}")
    with client(args) as rt:
        made = rt.snapshot(args.snapshot, provider=args.provider).branch(args.count, ttl_s=args.ttl)
    emit(args, {"instances": [info_dict(i.info) for i in made]}, lambda: print("\n".join(i.id for i in made)))
    return 0


def instance_merge(args: argparse.Namespace) -> int:
    from worldrt.client import Oracle

    if bool(args.winner) == bool(args.score):
        raise CliError("name the survivor with --winner ID, or give every instance a --score ID=VALUE")
    scores = {}
    for item in args.score:
        ident, value = key_value(item)
        try:
            scores[ident] = float(value)
        except ValueError:
            raise CliError(f"--score {item}: {value!r} is not a number") from None
    oracle = Oracle(winner=args.winner) if args.winner else Oracle(scores=scores, rule=args.rule)
    with client(args) as rt:
        survivor = rt.merge([rt.instance(i, provider=args.provider) for i in args.instances], oracle)
    emit(args, info_dict(survivor.info), lambda: print(survivor.id))
    return 0


def instance_stop(args: argparse.Namespace) -> int:
    with client(args) as rt:
        for ident in args.instances:
            rt.instance(ident, provider=args.provider).stop()
    emit(args, {"stopped": args.instances}, lambda: print("\n".join(f"stopped {i}" for i in args.instances)))
    return 0


def instance_ls(args: argparse.Namespace) -> int:
    with client(args) as rt:
        found: list[Instance] = rt.instances(args.provider)
    emit(args, {"instances": [info_dict(i.info) for i in found]}, lambda: console.print(_listing(args.provider, found)))
    return 0


def _listing(provider: str, found: list[Instance]) -> Table:
    """Ids whole (a listing is where one copies them from); the rest may wrap."""
    from rich.table import Table

    grid = Table(title=f"instances on {provider}")
    grid.add_column("id", no_wrap=True)
    grid.add_column("image", no_wrap=True)
    for column in ("from snapshot", "created", "memory MiB", "metadata"):
        grid.add_column(column)
    for i in found:
        grid.add_row(i.id, i.image[:12], i.info.snapshot_id,
                     i.created_at.strftime("%Y-%m-%d %H:%M:%S") if i.created_at else "", str(i.info.limits.memory_mb),
                     " ".join(f"{k}={v}" for k, v in sorted(i.info.metadata.items())))
    return grid


def add_commands(commands: Commands, parents: Parents) -> None:
    provider = argparse.ArgumentParser(add_help=False)
    provider.add_argument("--provider", default="morph", choices=PROVIDERS,
                          help="the provider that holds the instance (default morph)")
    group = commands.add_parser(
        "instance", help="instances of sandbox providers, through a running host",
        description="Start, run code in, snapshot, branch, merge, stop and list instances. They live as long as the "
                    "host that started them, so these commands need a running host (worldrt host serve)."
    ).add_subparsers(dest="action", required=True, parser_class=_ArgvParser)

    start = group.add_parser("start", parents=[parents.common], help="start an instance; prints its id")
    start.add_argument("provider", nargs="?", default="morph", choices=PROVIDERS, metavar="PROVIDER",
                       help="morph (default) or modal")
    start.add_argument("--image", help="an image name or digest (default: the default image)")
    start.add_argument("--ttl", type=int, metavar="S", help="seconds it may live (default: the provider's)")
    for name, what in (("memory_mb", "MiB of memory"), ("cpu_s", "CPU seconds"), ("processes", "processes"),
                       ("disk_mb", "MiB of disk")):
        start.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, metavar="N", help=what)
    start.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata (repeatable)")
    start.set_defaults(func=instance_start)

    run = group.add_parser("exec", parents=[parents.common, provider],
                           help="run CODE, or a command after --, in an instance; its exit status is ours",
                           usage="worldrt instance exec [options] ID (CODE | -- PROGRAM [ARG ...])")
    run.add_argument("instance", metavar="ID")
    run.add_argument("code", nargs="?", metavar="CODE", help="code in --language (default python)")
    run.add_argument("--language", default="python", help="python (default), shell, js or cpp")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment (repeatable)")
    run.add_argument("--timeout", type=float, metavar="S", help="seconds the run may take")
    run.add_argument("-i", "--interactive", action="store_true",
                     help="run the command as a process with our stdin piped to it (until its end) and its bytes "
                          "to our stdout and stderr")
    run.set_defaults(func=instance_exec)

    snapshot = group.add_parser("snapshot", parents=[parents.common, provider], help="snapshot an instance; prints its id")
    snapshot.add_argument("instance", metavar="ID")
    snapshot.add_argument("--ttl", type=int, metavar="S", help="seconds it is kept while unused")
    snapshot.set_defaults(func=instance_snapshot)

    branch = group.add_parser("branch", parents=[parents.common, provider],
                              help="branch a snapshot into live instances; prints their ids")
    branch.add_argument("snapshot", metavar="SNAPSHOT")
    branch.add_argument("-n", "--count", type=int, default=3, help="how many (default 3)")
    branch.add_argument("--ttl", type=int, metavar="S", help="seconds each may live")
    branch.set_defaults(func=instance_branch)

    merge = group.add_parser("merge", parents=[parents.common, provider],
                             help="keep one instance, stop the others; prints the survivor's id")
    merge.add_argument("instances", nargs="+", metavar="ID")
    merge.add_argument("--winner", metavar="ID", help="the survivor")
    merge.add_argument("--score", action="append", default=[], metavar="ID=VALUE", help="each instance's score")
    merge.add_argument("--rule", default="max", choices=("max", "min"), help="which score wins (default max)")
    merge.set_defaults(func=instance_merge)

    stop = group.add_parser("stop", parents=[parents.common, provider], help="stop instances")
    stop.add_argument("instances", nargs="+", metavar="ID")
    stop.set_defaults(func=instance_stop)

    ls = group.add_parser("ls", parents=[parents.common, provider], help="the instances a provider holds")
    ls.set_defaults(func=instance_ls)
